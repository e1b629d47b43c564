//! inotify mode: a tick whenever something happens to a configuration path.
//!
//! Events do not carry the change: a tick only says "scan now", and the [`super::Scanner`]
//! finds and classifies what changed, exactly as in poll mode.
//!
//! notify's recursive mode would walk (and watch) every directory under the home, including the
//! millions of build directories. Instead [`InotifyWatcher::sync`] keeps one non-recursive watch
//! on each directory in [`super::Scanner::watch_dirs`]: the home, `nodes/`, `users/` and their
//! subdirectories, every `jobs/` directory and every item directory. Events on anything else in
//! those directories (`nextBuildNumber`, `builds/`, `atomic*tmp`, `queue.xml`, our own reads) are
//! filtered out by [`is_relevant`]. When new directories get watched (a job was added), a tick is
//! sent too, so that anything written there before the watch existed is scanned.
//!
//! The watch count is about the number of items plus folders; the kernel's limit is
//! `fs.inotify.max_user_watches`, and reaching it is [`WatchError::WatchLimit`].

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use notify::event::{AccessKind, AccessMode, MetadataKind, ModifyKind};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::{is_root_config_xml, is_temp_name, WatchError};

/// Keeps inotify watches on the directories a scan reads, and ticks on relevant events.
pub struct InotifyWatcher {
    watcher: RecommendedWatcher,
    watched: HashSet<PathBuf>,
    tx: mpsc::Sender<()>,
}

impl std::fmt::Debug for InotifyWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InotifyWatcher")
            .field("watched", &self.watched.len())
            .finish()
    }
}

/// Starts watching `home` (non-recursively; call [`InotifyWatcher::sync`] with
/// [`super::Scanner::watch_dirs`] after every scan). Ticks go to `tx`, which should have a small
/// capacity: a tick that finds the channel full is dropped, since one pending tick is enough.
/// Events under `lease_dir` (renewed every few seconds) are ignored.
pub fn spawn_inotify(
    home: &Path,
    lease_dir: Option<&Path>,
    tx: mpsc::Sender<()>,
) -> Result<InotifyWatcher, WatchError> {
    let filter = EventFilter {
        home: home.to_path_buf(),
        lease_dir: lease_dir
            .map(Path::to_path_buf)
            .unwrap_or_else(|| home.join(".jenkins-ha")),
    };
    let ticks = tx.clone();
    let watcher = notify::recommended_watcher(move |event: notify::Result<Event>| {
        let relevant = match event {
            Ok(event) => filter.wants(&event),
            Err(e) => {
                tracing::warn!("inotify on {}: {e}; rescanning", filter.home.display());
                true
            }
        };
        if relevant {
            // Full means a tick is already pending: that is enough.
            let _ = ticks.try_send(());
        }
    })
    .map_err(|e| WatchError::Inotify(e.to_string()))?;
    let mut w = InotifyWatcher {
        watcher,
        watched: HashSet::new(),
        tx,
    };
    w.sync(vec![home.to_path_buf()])?;
    Ok(w)
}

impl InotifyWatcher {
    /// Makes the watched set exactly `dirs` (plus nothing else), adding and removing watches.
    /// Returns how many watches were added; when some were, a tick is sent, since those
    /// directories may have changed before their watch existed. A directory that vanished
    /// meanwhile is skipped (the next scan sees it gone).
    pub fn sync(&mut self, dirs: Vec<PathBuf>) -> Result<usize, WatchError> {
        let wanted: HashSet<PathBuf> = dirs.into_iter().collect();
        let stale: Vec<PathBuf> = self.watched.difference(&wanted).cloned().collect();
        for path in stale {
            // Fails when the kernel already dropped the watch of a deleted directory.
            let _ = self.watcher.unwatch(&path);
            self.watched.remove(&path);
        }
        let mut added = 0;
        for path in wanted {
            if self.watched.contains(&path) {
                continue;
            }
            match self.watcher.watch(&path, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.watched.insert(path);
                    added += 1;
                }
                Err(e) => match e.kind {
                    notify::ErrorKind::MaxFilesWatch => {
                        return Err(WatchError::WatchLimit { path });
                    }
                    notify::ErrorKind::PathNotFound => {}
                    notify::ErrorKind::Io(ref io)
                        if io.kind() == std::io::ErrorKind::NotFound
                            || io.kind() == std::io::ErrorKind::NotADirectory => {}
                    _ => {
                        return Err(WatchError::Inotify(format!("{}: {e}", path.display())));
                    }
                },
            }
        }
        if added > 0 {
            let _ = self.tx.try_send(());
        }
        Ok(added)
    }

    /// Drops every watch and makes them again for `dirs`: after the home was mounted again, the
    /// old watches belong to the old mount and would never fire.
    pub fn rewatch(&mut self, dirs: Vec<PathBuf>) -> Result<usize, WatchError> {
        for path in std::mem::take(&mut self.watched) {
            let _ = self.watcher.unwatch(&path);
        }
        self.sync(dirs)
    }

    /// How many directories are watched.
    pub fn watched(&self) -> usize {
        self.watched.len()
    }
}

/// Decides which events are worth a scan.
struct EventFilter {
    home: PathBuf,
    lease_dir: PathBuf,
}

impl EventFilter {
    fn wants(&self, event: &Event) -> bool {
        if event.need_rescan() {
            return true;
        }
        let kind_matters = match event.kind {
            // Reads, including the scanner's own, and opens; but a write that just finished is
            // a change.
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
            EventKind::Access(_) => false,
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)) => false,
            _ => true,
        };
        kind_matters
            && event
                .paths
                .iter()
                .any(|p| !p.starts_with(&self.lease_dir) && is_relevant(&self.home, p))
    }
}

/// Whether a path (as in an inotify event) is, or may contain, configuration: the home itself,
/// `jobs`, `nodes`, `users`, a root config `*.xml`, `nodes/N[/config.xml]`, `users/users.xml`,
/// `users/N[/config.xml]`, and under `jobs/` at any depth `X`, `X/config.xml`, `X/jobs`, and the
/// build records `X/nextBuildNumber` and `X/builds` (itself, never what is in it). Paths outside
/// the home, temp files and everything else in an item's directory are not.
pub fn is_relevant(home: &Path, path: &Path) -> bool {
    let Ok(rel) = path.strip_prefix(home) else {
        return false;
    };
    let mut parts: Vec<&str> = Vec::new();
    for component in rel.components() {
        match component {
            Component::Normal(name) => match name.to_str() {
                Some(name) => parts.push(name),
                None => return false,
            },
            Component::CurDir => {}
            _ => return false,
        }
    }
    match parts.as_slice() {
        [] => true,
        [name] => matches!(*name, "jobs" | "nodes" | "users") || is_root_config_xml(name),
        ["nodes" | "users", name] => !is_temp_name(name),
        ["nodes" | "users", _, "config.xml"] => true,
        ["jobs", rest @ ..] => under_jobs(rest),
        _ => false,
    }
}

/// The part of a path after a `jobs/` directory.
fn under_jobs(rest: &[&str]) -> bool {
    match rest {
        [name] => !is_temp_name(name),
        [_, "config.xml" | "jobs" | "nextBuildNumber" | "builds"] => true,
        [_, "jobs", more @ ..] => under_jobs(more),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, RenameMode};
    use std::time::Duration;

    #[test]
    fn relevant_paths() {
        let home = Path::new("/var/lib/jenkins");
        let yes = [
            "",
            "config.xml",
            "credentials.xml",
            "jobs",
            "jobs/app",
            "jobs/app/config.xml",
            "jobs/app/jobs",
            "jobs/F/jobs/B",
            "jobs/F/jobs/B/config.xml",
            "jobs/F/jobs/G/jobs/C/config.xml",
            "jobs/app/nextBuildNumber",
            "jobs/app/builds",
            "jobs/F/jobs/B/nextBuildNumber",
            "nodes",
            "nodes/agent1",
            "nodes/agent1/config.xml",
            "users",
            "users/users.xml",
            "users/alice_1234/config.xml",
        ];
        for rel in yes {
            assert!(is_relevant(home, &home.join(rel)), "{rel}");
        }
        let no = [
            "queue.xml",
            "queue.xml.bak",
            ".owner",
            "secret.key",
            "atomic123.tmp",
            "jobs/app/builds/12/build.xml",
            "jobs/app/builds/config.xml",
            "jobs/app/workspace/config.xml",
            "jobs/app/atomic4711tmp",
            "jobs/atomic4711tmp",
            "jobs/F/jobs/B/builds/1/log",
            "nodes/agent1/atomic1.tmp",
            "nodes/agent1/slave.log",
            "users/alice/apiTokenStats.xml",
            "fingerprints/ab/cd.xml",
            "logs/tasks/x.log",
            "plugins/git.jpi",
            "workspace/app/config.xml",
        ];
        for rel in no {
            assert!(!is_relevant(home, &home.join(rel)), "{rel}");
        }
        assert!(!is_relevant(home, Path::new("/etc/passwd")));
    }

    fn filter() -> EventFilter {
        EventFilter {
            home: PathBuf::from("/h"),
            lease_dir: PathBuf::from("/h/.jenkins-ha"),
        }
    }

    fn event(kind: EventKind, path: &str) -> Event {
        Event::new(kind).add_path(PathBuf::from(path))
    }

    #[test]
    fn event_kinds() {
        let f = filter();
        let data = EventKind::Modify(ModifyKind::Data(DataChange::Any));
        assert!(f.wants(&event(data, "/h/jobs/a/config.xml")));
        assert!(f.wants(&event(
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            "/h/jobs/a/config.xml"
        )));
        assert!(f.wants(&event(EventKind::Create(CreateKind::Folder), "/h/jobs/new")));
        assert!(f.wants(&event(
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            "/h/config.xml"
        )));
        // The scanner's own reads must not make it scan again.
        assert!(!f.wants(&event(
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            "/h/jobs/a/config.xml"
        )));
        assert!(!f.wants(&event(
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            "/h/jobs/a/config.xml"
        )));
        // A build started elsewhere: the standby must re-read that job's build records.
        assert!(f.wants(&event(data, "/h/jobs/a/nextBuildNumber")));
        assert!(!f.wants(&event(data, "/h/jobs/a/builds/7/log")));
        assert!(!f.wants(&event(data, "/h/queue.xml")));
        // Overflow: something was lost, scan.
        let overflow = Event::new(EventKind::Other).set_flag(notify::event::Flag::Rescan);
        assert!(f.wants(&overflow));
    }

    #[test]
    fn lease_dir_events_are_ignored() {
        let f = EventFilter {
            home: PathBuf::from("/h"),
            lease_dir: PathBuf::from("/h/jobs"),
        };
        let data = EventKind::Modify(ModifyKind::Data(DataChange::Any));
        assert!(!f.wants(&event(data, "/h/jobs/term-7")));
    }

    async fn wait(rx: &mut mpsc::Receiver<()>, ms: u64) -> bool {
        tokio::time::timeout(Duration::from_millis(ms), rx.recv())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn ticks_on_config_writes_but_not_on_churn() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        std::fs::create_dir_all(home.join("jobs/app/builds")).unwrap();
        std::fs::write(home.join("jobs/app/config.xml"), "<a/>").unwrap();
        let mut scanner = crate::io::watch::Scanner::new(home, None).unwrap();
        scanner.scan().unwrap();
        let (tx, mut rx) = mpsc::channel(1);
        let mut w = spawn_inotify(home, None, tx).unwrap();
        assert!(w.sync(scanner.watch_dirs()).unwrap() >= 2);
        assert_eq!(w.watched(), 3, "home, jobs, jobs/app");
        // The tick for the new watches, then silence.
        assert!(wait(&mut rx, 1000).await);
        std::fs::write(home.join("jobs/app/builds/1"), "x").unwrap();
        std::fs::write(home.join("queue.xml"), "<q/>").unwrap();
        scanner.scan().unwrap();
        assert!(
            !wait(&mut rx, 300).await,
            "churn and our own scan must not tick"
        );
        // A build's next number is a build record: it ticks.
        std::fs::write(home.join("jobs/app/nextBuildNumber"), "2").unwrap();
        assert!(wait(&mut rx, 2000).await, "nextBuildNumber ticks");
        std::fs::write(home.join("jobs/app/config.xml"), "<b/>").unwrap();
        assert!(wait(&mut rx, 2000).await, "a config edit ticks");
        assert_eq!(w.sync(scanner.watch_dirs()).unwrap(), 0);
    }

    #[tokio::test]
    async fn rewatch_makes_every_watch_again() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        std::fs::create_dir_all(home.join("jobs/app")).unwrap();
        std::fs::write(home.join("jobs/app/config.xml"), "<a/>").unwrap();
        let mut scanner = crate::io::watch::Scanner::new(home, None).unwrap();
        scanner.scan().unwrap();
        let (tx, mut rx) = mpsc::channel(1);
        let mut w = spawn_inotify(home, None, tx).unwrap();
        w.sync(scanner.watch_dirs()).unwrap();
        assert!(wait(&mut rx, 1000).await);
        assert_eq!(
            w.rewatch(scanner.watch_dirs()).unwrap(),
            3,
            "all made again"
        );
        assert_eq!(w.watched(), 3);
        assert!(wait(&mut rx, 1000).await, "new watches tick");
        std::fs::write(home.join("jobs/app/config.xml"), "<b/>").unwrap();
        assert!(wait(&mut rx, 2000).await, "a config edit still ticks");
    }
}
