//! Reads each job's `nextBuildNumber` from JENKINS_HOME, by content, for a promotion's last
//! check of the build numbers, and when the newest build started (`builds/N-1/build.xml`), for
//! the queue of a quiet Jenkins.
//!
//! The watcher tells moved jobs by their stamps (`stat`), and an NFS client caches attributes
//! for seconds (`actimeo`; FUSE for `attr_timeout`): a build the old active started just before
//! it died may not show in a stamp yet. Opening a file revalidates it (NFS close-to-open; FUSE
//! without `kernel_cache` reads through), so reading the content is fresh. The reads run on a
//! few threads: on NFS each costs a round trip or two, and they overlap well.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What reading the numbers found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DiskNumbers {
    /// Job full name → the number in its `nextBuildNumber`.
    pub numbers: BTreeMap<String, u64>,
    /// Items with no `nextBuildNumber` (folders, jobs never built).
    pub absent: usize,
    /// Files that could not be read or held no number: (full name, why).
    pub unreadable: Vec<(String, String)>,
}

/// The directory of item `full_name` (`a/b` → `<home>/jobs/a/jobs/b`).
pub fn item_dir(home: &Path, full_name: &str) -> PathBuf {
    let mut dir = home.to_path_buf();
    for segment in full_name.split('/') {
        dir.push("jobs");
        dir.push(segment);
    }
    dir
}

/// One item's number: `None` when it has no file, an error saying why it is unreadable.
type ReadOne = Result<Option<u64>, String>;

fn read_one(home: &Path, full_name: &str) -> ReadOne {
    let path = item_dir(home, full_name).join("nextBuildNumber");
    match std::fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| format!("{} holds no number", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// A job's newest build as the disk has it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NewestBuild {
    /// Its `nextBuildNumber`.
    pub next: u64,
    /// When build `next - 1` started (`<timestamp>` of its `build.xml`, ms); `None` when there
    /// is none, or it is not written yet (Jenkins saves the number first).
    pub started_ms: Option<u64>,
    /// When the newest builds started by a trigger (a timer or SCM polling, from the causes in
    /// their `build.xml`) started, newest first: walking back from `next - 1` until `want` of
    /// them are found, a build started before `since_ms` is reached, or [`WALK_BACK`] builds
    /// were read.
    pub trigger_starts_ms: Vec<u64>,
}

/// At most this many `build.xml` files read back per job and listing.
pub const WALK_BACK: u64 = 24;

/// A queued job, and how far back its builds matter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobQuery {
    /// The job's full name.
    pub job: String,
    /// Builds started before this (ms) end the walk back (the item's first request, with
    /// some slack for the clocks' skew).
    pub since_ms: u64,
    /// How many trigger builds are wanted (the item's requests).
    pub want: u32,
}

/// Reads `nextBuildNumber`, the start of the build before it, and the starts of the newest
/// trigger builds, for each job, on `threads` threads. Jobs with no readable number are left
/// out. Blocking.
pub fn read_newest_builds(
    home: &Path,
    jobs: &[JobQuery],
    threads: usize,
) -> BTreeMap<String, NewestBuild> {
    let names: Vec<String> = jobs.iter().map(|q| q.job.clone()).collect();
    let numbers = read_next_numbers(home, &names, threads).numbers;
    let wanted: Vec<(&JobQuery, u64)> = jobs
        .iter()
        .filter_map(|q| numbers.get(&q.job).map(|n| (q, *n)))
        .collect();
    on_threads(&wanted, threads, |(query, next)| {
        (query.job.clone(), newest_build(home, query, *next))
    })
    .into_iter()
    .collect()
}

/// One job's newest builds, walking back from `next - 1`.
fn newest_build(home: &Path, query: &JobQuery, next: u64) -> NewestBuild {
    let mut out = NewestBuild {
        next,
        ..NewestBuild::default()
    };
    let newest = next.saturating_sub(1);
    let oldest = newest.saturating_sub(WALK_BACK - 1).max(1);
    for number in (oldest..=newest).rev() {
        let Some(build) = read_build(home, &query.job, number) else {
            // Not written yet (the number is saved first), or gone: look further back.
            continue;
        };
        if number == newest {
            out.started_ms = Some(build.started_ms);
        }
        if build.started_ms < query.since_ms {
            break;
        }
        if build.by_trigger {
            out.trigger_starts_ms.push(build.started_ms);
            if out.trigger_starts_ms.len() >= query.want as usize {
                break;
            }
        }
    }
    out
}

/// What a `build.xml` says of when and why its build ran.
struct BuildFacts {
    started_ms: u64,
    /// Started by a timer or by SCM polling (among its causes).
    by_trigger: bool,
}

/// The cause classes of the triggers a quiet Jenkins also fires (XML element names, as
/// XStream writes `hudson.triggers.TimerTrigger$TimerTriggerCause`).
const TRIGGER_CAUSES: [&str; 2] = [
    "<hudson.triggers.TimerTrigger_-TimerTriggerCause",
    "<hudson.triggers.SCMTrigger_-SCMTriggerCause",
];

/// `<timestamp>` and the causes of `builds/<number>/build.xml` of a job.
fn read_build(home: &Path, job: &str, number: u64) -> Option<BuildFacts> {
    let path = item_dir(home, job)
        .join("builds")
        .join(number.to_string())
        .join("build.xml");
    let xml = std::fs::read_to_string(path).ok()?;
    let start = xml.find("<timestamp>")? + "<timestamp>".len();
    let end = start + xml[start..].find("</timestamp>")?;
    let started_ms = xml[start..end].trim().parse().ok()?;
    let by_trigger = TRIGGER_CAUSES.iter().any(|c| xml.contains(c));
    Some(BuildFacts {
        started_ms,
        by_trigger,
    })
}

/// Reads `nextBuildNumber` of every item in `items` (folders have none), on `threads` threads.
/// Blocking: call it off the async runtime.
pub fn read_next_numbers(home: &Path, items: &[String], threads: usize) -> DiskNumbers {
    let parts = on_threads(items, threads, |name| (name.clone(), read_one(home, name)));
    let mut out = DiskNumbers::default();
    for (name, result) in parts {
        match result {
            Ok(Some(n)) => {
                out.numbers.insert(name, n);
            }
            Ok(None) => out.absent += 1,
            Err(why) => out.unreadable.push((name, why)),
        }
    }
    out
}

/// `f` over every item, the items split among `threads` scoped threads (1 to 64): file reads
/// that each cost a round trip or two on NFS, and overlap well. The results in item order.
fn on_threads<T: Sync, R: Send>(items: &[T], threads: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = threads.clamp(1, 64);
    let chunk = items.len().div_ceil(threads).max(1);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_jobs_through_folders_and_reports_what_it_cannot_read() {
        let home = tempfile::tempdir().unwrap();
        let write = |name: &str, content: Option<&str>| {
            let dir = item_dir(home.path(), name);
            std::fs::create_dir_all(&dir).unwrap();
            if let Some(c) = content {
                std::fs::write(dir.join("nextBuildNumber"), c).unwrap();
            }
        };
        write("top", Some("12\n"));
        write("F", None);
        write("F/sub/deep", Some("7"));
        write("F/bad", Some("not a number"));
        let items: Vec<String> = ["top", "F", "F/sub/deep", "F/bad", "gone"]
            .map(String::from)
            .to_vec();
        let found = read_next_numbers(home.path(), &items, 3);
        assert_eq!(found.numbers.get("top"), Some(&12));
        assert_eq!(found.numbers.get("F/sub/deep"), Some(&7));
        assert_eq!(found.absent, 2, "the folder and the job gone");
        assert_eq!(found.unreadable.len(), 1);
        assert!(found.unreadable[0].1.contains("holds no number"));
    }

    #[test]
    fn the_newest_build_start_comes_from_its_build_xml() {
        let home = tempfile::tempdir().unwrap();
        let dir = item_dir(home.path(), "F/job");
        std::fs::create_dir_all(dir.join("builds/4")).unwrap();
        std::fs::write(dir.join("nextBuildNumber"), "5\n").unwrap();
        std::fs::write(
            dir.join("builds/4/build.xml"),
            "<?xml version='1.1'?>\n<build>\n  <number>4</number>\n  <timestamp>1700000000123</timestamp>\n</build>\n",
        )
        .unwrap();
        let other = item_dir(home.path(), "started-only");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("nextBuildNumber"), "2").unwrap();
        let jobs = ["F/job", "started-only", "never"].map(|job| JobQuery {
            job: job.to_string(),
            since_ms: 0,
            want: 1,
        });
        let found = read_newest_builds(home.path(), &jobs, 2);
        assert_eq!(
            found.get("F/job"),
            Some(&NewestBuild {
                next: 5,
                started_ms: Some(1_700_000_000_123),
                trigger_starts_ms: Vec::new(),
            }),
            "no cause recorded: no trigger build"
        );
        assert_eq!(
            found.get("started-only"),
            Some(&NewestBuild {
                next: 2,
                started_ms: None,
                trigger_starts_ms: Vec::new(),
            }),
            "the number is saved before the build record"
        );
        assert_eq!(found.get("never"), None);
    }

    /// A build record as Jenkins writes it, with its causes.
    fn build_xml(number: u64, started_ms: u64, cause: &str) -> String {
        format!(
            "<?xml version='1.1' encoding='UTF-8'?>\n<build>\n  <actions>\n    <hudson.model.CauseAction>\n      \
             <causeBag class=\"linked-hash-map\">\n        <entry>\n          {cause}\n          <int>1</int>\n        \
             </entry>\n      </causeBag>\n    </hudson.model.CauseAction>\n  </actions>\n  <number>{number}</number>\n  \
             <timestamp>{started_ms}</timestamp>\n</build>\n"
        )
    }

    #[test]
    fn trigger_builds_are_read_back_to_the_first_request() {
        let home = tempfile::tempdir().unwrap();
        let dir = item_dir(home.path(), "cron");
        let timer = "<hudson.triggers.TimerTrigger_-TimerTriggerCause/>";
        let scm = "<hudson.triggers.SCMTrigger_-SCMTriggerCause/>";
        let user = "<hudson.model.Cause_-UserIdCause><userId>ann</userId></hudson.model.Cause_-UserIdCause>";
        for (n, at, cause) in [
            (1, 1_000, timer),
            (2, 2_000, timer),
            (3, 3_000, user),
            (4, 4_000, scm),
            (5, 5_000, timer),
        ] {
            std::fs::create_dir_all(dir.join(format!("builds/{n}"))).unwrap();
            std::fs::write(
                dir.join(format!("builds/{n}/build.xml")),
                build_xml(n, at, cause),
            )
            .unwrap();
        }
        // Build 6 has its number saved, its record not yet written.
        std::fs::write(dir.join("nextBuildNumber"), "7").unwrap();
        let query = |since_ms, want| {
            let q = [JobQuery {
                job: "cron".into(),
                since_ms,
                want,
            }];
            read_newest_builds(home.path(), &q, 1)
                .remove("cron")
                .unwrap()
        };
        // Back to the first request at 1.9 s: the user's build is no trigger's.
        let b = query(1_900, 9);
        assert_eq!(b.started_ms, None, "build 6 has no record yet");
        assert_eq!(b.trigger_starts_ms, [5_000, 4_000, 2_000]);
        // Enough found: the walk stops.
        assert_eq!(query(0, 2).trigger_starts_ms, [5_000, 4_000]);
    }
}
