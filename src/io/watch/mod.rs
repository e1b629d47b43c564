//! The JENKINS_HOME watcher: notices configuration changes on disk so that the standby can reload
//! its Jenkins.
//!
//! The pieces, each in its own file:
//!
//! - [`detect`] ([`mode`]): inotify or polling? `auto` polls on remote and FUSE filesystems
//!   (NFS, SMB, FUSE, Ceph, ...), where inotify never sees the other master's writes.
//! - [`Scanner`] ([`scan`]): one pass over the files that carry configuration, and only those,
//!   reporting [`Change`]s since the previous pass. Both modes use it: in poll mode it runs every
//!   `watch.poll_interval`; in inotify mode an event only says "scan now", so changes are
//!   classified by the same code either way.
//! - [`InotifyWatcher`] ([`inotify`]): non-recursive inotify watches on exactly the directories
//!   the scanner looks at, sending a tick on events that touch a configuration path.
//! - [`Batcher`] ([`batch`]): pure. Debounces and coalesces changes into a [`ReloadPlan`] (full
//!   reload or per-item reloads) and rate-limits full reloads.
//! - [`HomeWatch`] ([`driver`]): wires the four together for the daemon: `next_plan().await`.
//!
//! What counts as configuration (from `shared/design/jenkins.md`): the root `config.xml` and the
//! other root `*.xml` (not `queue.xml`, see [`ROOT_XML_CHURN`]); `jobs/*/config.xml` and nested
//! `jobs/F/jobs/C/config.xml` at any depth; `nodes/*/config.xml`; `users/users.xml` and
//! `users/*/config.xml`. Nothing else is ever opened, listed or stat'ed: not `builds/`,
//! `workspace/`, `fingerprints/`, `logs/`, `plugins/`, `war/`, `cache/`, `secrets/`, nor the
//! lease directory.

pub mod batch;
pub mod driver;
pub mod inotify;
pub mod mode;
pub mod scan;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use batch::{BatchConfig, Batcher, ReloadPlan};
pub use driver::HomeWatch;
pub use inotify::{is_relevant, spawn_inotify, InotifyWatcher};
pub use mode::{detect, fs_identity, Effective, FsIdentity};
pub use scan::{ScanResult, ScanStats, Scanner};

/// How the JENKINS_HOME watcher notices changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WatchMode {
    Auto,
    Inotify,
    Poll,
}

/// The watcher's settings (`watch.*` in the config).
#[derive(Debug, Clone)]
pub struct WatchConfig {
    pub mode: WatchMode,
    pub poll_interval: Duration,
    pub debounce: Duration,
}

/// Why the watcher could not do its job. One line, naming the path and what to do.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("{path} is not a directory (is the shared JENKINS_HOME mounted?)")]
    NotADirectory { path: PathBuf },
    #[error("cannot read {path}: {source} (is the shared JENKINS_HOME mounted and readable?)")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("statfs {path}: {source}")]
    Statfs { path: PathBuf, source: nix::Error },
    #[error(
        "{path} is no longer on the filesystem it was on when the watcher started \
         (unmounted?); not scanning, so as not to report every job as removed"
    )]
    HomeMoved { path: PathBuf },
    #[error(
        "inotify watch limit reached while watching {path}: raise the sysctl \
         fs.inotify.max_user_watches, or set watch.mode: poll"
    )]
    WatchLimit { path: PathBuf },
    #[error("inotify: {0} (set watch.mode: poll to avoid inotify)")]
    Inotify(String),
    #[error("the scan task failed: {0}")]
    Join(String),
}

/// Whether something appeared, changed or disappeared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChangeKind {
    Added,
    Modified,
    Removed,
}

impl ChangeKind {
    fn verb(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Modified => "edited",
            ChangeKind::Removed => "removed",
        }
    }
}

/// What changed: an item's `config.xml`, or a global configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// A job or folder, by its full name (`folder/job`). Added and removed mean the item itself
    /// appeared or disappeared; modified means its `config.xml` has new content.
    Item { full_name: String },
    /// A global file, by its path relative to JENKINS_HOME (`config.xml`, `nodes/a/config.xml`).
    Global { path: String },
    /// A job's build records moved: its `nextBuildNumber` or its `builds/` directory (stat only,
    /// never listed). Not configuration, but a Jenkins that has not re-read them would give its
    /// next build a number that is already taken.
    Builds { full_name: String },
}

/// One change found by a scan.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Change {
    pub kind: ChangeKind,
    pub what: Target,
}

impl Change {
    pub fn item(kind: ChangeKind, full_name: impl Into<String>) -> Self {
        Change {
            kind,
            what: Target::Item {
                full_name: full_name.into(),
            },
        }
    }

    pub fn builds(full_name: impl Into<String>) -> Self {
        Change {
            kind: ChangeKind::Modified,
            what: Target::Builds {
                full_name: full_name.into(),
            },
        }
    }

    pub fn global(kind: ChangeKind, path: impl Into<String>) -> Self {
        Change {
            kind,
            what: Target::Global { path: path.into() },
        }
    }
}

/// A short phrase for logs and plans: `jobs/app/config.xml edited`, `job F/new added`,
/// `credentials.xml edited`, `job app built`.
impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.what, self.kind) {
            (Target::Item { full_name }, ChangeKind::Modified) => {
                write!(f, "{} edited", item_config_path(full_name))
            }
            (Target::Item { full_name }, kind) => write!(f, "job {full_name} {}", kind.verb()),
            (Target::Global { path }, kind) => write!(f, "{path} {}", kind.verb()),
            (Target::Builds { full_name }, _) => write!(f, "job {full_name} built"),
        }
    }
}

/// `F/B` → `jobs/F/jobs/B/config.xml`.
pub fn item_config_path(full_name: &str) -> String {
    let mut path = String::with_capacity(full_name.len() + 20);
    for segment in full_name.split('/') {
        path.push_str("jobs/");
        path.push_str(segment);
        path.push('/');
    }
    path.push_str("config.xml");
    path
}

/// Root `*.xml` files that are runtime state rather than configuration, and never trigger a
/// reload: the build queue (saved on every change of the queue, and on every reload) and the
/// list of running Pipelines (saved whenever a Pipeline starts or ends). Reloading the standby
/// on these would reload it for every build the active runs.
pub const ROOT_XML_CHURN: &[&str] = &[
    "queue.xml",
    "org.jenkinsci.plugins.workflow.flow.FlowExecutionList.xml",
    "org.jenkinsci.plugins.resourcedisposer.AsyncResourceDisposer.xml",
];

/// Whether a name in the JENKINS_HOME root is a global configuration file.
pub fn is_root_config_xml(name: &str) -> bool {
    name.ends_with(".xml")
        && name.len() > ".xml".len()
        && !name.starts_with('.')
        && !is_temp_name(name)
        && !ROOT_XML_CHURN.contains(&name)
}

/// Temporary files of interrupted or in-progress writes: Jenkins' `AtomicFileWriter` writes
/// `atomic<random>tmp` (and older versions `atomic<random>.tmp`) next to its target before the
/// rename; editors leave `~`, `.swp` and `.#` files.
pub fn is_temp_name(name: &str) -> bool {
    (name.starts_with("atomic") && name.ends_with("tmp"))
        || name.ends_with(".tmp")
        || name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".swx")
        || name.starts_with(".#")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_config_paths() {
        assert_eq!(item_config_path("app"), "jobs/app/config.xml");
        assert_eq!(item_config_path("F/G/B"), "jobs/F/jobs/G/jobs/B/config.xml");
    }

    #[test]
    fn change_phrases() {
        let c = Change::item(ChangeKind::Modified, "app");
        assert_eq!(c.to_string(), "jobs/app/config.xml edited");
        let c = Change::item(ChangeKind::Added, "F/new-job");
        assert_eq!(c.to_string(), "job F/new-job added");
        let c = Change::global(ChangeKind::Removed, "nodes/a/config.xml");
        assert_eq!(c.to_string(), "nodes/a/config.xml removed");
    }

    #[test]
    fn root_xml_rules() {
        assert!(is_root_config_xml("config.xml"));
        assert!(is_root_config_xml("credentials.xml"));
        assert!(is_root_config_xml("nodeMonitors.xml"));
        assert!(is_root_config_xml("hudson.plugins.git.GitTool.xml"));
        assert!(!is_root_config_xml("queue.xml"));
        assert!(!is_root_config_xml("queue.xml.bak"));
        assert!(!is_root_config_xml(
            "org.jenkinsci.plugins.workflow.flow.FlowExecutionList.xml"
        ));
        assert!(!is_root_config_xml(".xml"));
        assert!(!is_root_config_xml(".config.xml"));
        assert!(!is_root_config_xml("nextBuildNumber"));
        assert!(!is_root_config_xml("atomic123.xml.tmp"));
        assert!(!is_root_config_xml("config.xml~"));
    }

    #[test]
    fn temp_names() {
        assert!(is_temp_name("atomic123.tmp"));
        assert!(is_temp_name("atomic8723469817tmp"));
        assert!(is_temp_name("config.xml.tmp"));
        assert!(is_temp_name(".#config.xml"));
        assert!(!is_temp_name("config.xml"));
        assert!(!is_temp_name("atomics"));
    }
}
