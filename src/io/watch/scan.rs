//! The poll scanner: one pass over the files of JENKINS_HOME that carry configuration, reporting
//! what changed since the previous pass.
//!
//! It must stay cheap at 10,000 jobs with millions of build files, so it touches only:
//! - the home directory itself, and its `*.xml` files (see [`super::is_root_config_xml`]);
//! - every `jobs/` directory (the root one and each folder's, at any depth), and for each of
//!   their child directories `<child>/config.xml` (one `fstatat`) and, for folders only,
//!   `<child>/jobs`. Whether an item is a folder comes from the root element of its
//!   `config.xml` (`<project>`, `<flow-definition>`, ... are jobs, which have no children);
//! - `nodes/`, `nodes/*/config.xml`, `users/`, `users/users.xml`, `users/*/config.xml`.
//!
//! It never lists an item's own directory, so `builds/`, `workspace/`, `nextBuildNumber` and
//! everything else Jenkins churns are never reached; the lease directory is skipped by name.
//!
//! Two stamps make a pass cheap:
//! - a `jobs/` directory whose (mtime, ctime, inode, size) is unchanged has the same children
//!   (adding, removing or renaming an entry changes its mtime), so its cached child list is
//!   reused instead of calling readdir;
//! - a `config.xml` whose (mtime, ctime, inode, size) is unchanged is not read. A changed stamp
//!   leads to hashing the content; the same content (a touch, or Jenkins re-saving an unchanged
//!   item) is not a change.
//!
//! A stamp taken within [`RACY_WINDOW`] of the scan is "racy" (a second write in the same
//! timestamp tick would not move it), so that file is hashed, or that directory listed, again on
//! the next pass until it settles.
//!
//! A steady-state pass over 10,000 plain jobs is thus about 10,000 `fstatat` calls, each
//! relative to the open `jobs/` directory (no walk of the whole path), and no readdir at all.
//! The children of the root `jobs/` directory are shared out among [`Scanner::set_threads`]
//! threads.
//!
//! On NFS, `stat` answers from the client's attribute cache until it expires (`acregmin` to
//! `acregmax`, 3 to 60 s, for files; `acdirmin` to `acdirmax`, 30 to 60 s, for directories), so
//! the other master's writes show up that much later whatever the poll interval; mount the
//! home with a small `actimeo` to bound the delay.
//!
//! Nothing read from disk can make it panic: an entry that vanishes between readdir and stat is
//! simply not there, a non-UTF-8 name is skipped and reported as a problem, and an unreadable
//! directory keeps its last known state and is reported.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, Metadata};
use std::hash::{DefaultHasher, Hasher};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::stat::{fstatat, FileStat, SFlag};

use super::{
    fs_identity, is_root_config_xml, is_temp_name, Change, ChangeKind, FsIdentity, WatchError,
};

/// How recent a stamp must be to be distrusted (see the module docs). Generous, to absorb some
/// clock skew between an NFS server and this machine.
pub const RACY_WINDOW: Duration = Duration::from_secs(3);

/// Folders nested deeper than this are not followed (a symlink loop, not a real home).
const MAX_DEPTH: usize = 64;

/// At most this many problems are kept per scan; more are counted.
const MAX_PROBLEMS: usize = 50;

/// What a scan found.
#[derive(Debug, Clone, Default)]
pub struct ScanResult {
    /// Changes since the previous scan: items by full name, then global files by path. Always
    /// empty for the first (baseline) scan; [`Scanner::items`] lists what it found.
    pub changes: Vec<Change>,
    pub stats: ScanStats,
    /// Things that could not be read (unreadable directories, non-UTF-8 names). Their last
    /// known state is kept. New problems are also logged once.
    pub problems: Vec<String>,
}

/// How much work a scan did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// `stat` calls on files (`config.xml` and global files).
    pub files_statted: usize,
    /// Directories stat'ed or opened: the home, `nodes/`, `users/`, every `jobs/` directory,
    /// and the `<item>/jobs` probe of every folder (or item of a type not known to be a leaf).
    pub dirs_statted: usize,
    /// Directories whose entries were read (readdir), because their stamp had changed.
    pub dirs_listed: usize,
    /// Files whose content was read and hashed, because their stamp had changed.
    pub files_hashed: usize,
    /// Items (jobs and folders) known after the scan.
    pub items: usize,
    pub duration: Duration,
}

impl ScanStats {
    fn add(&mut self, other: &ScanStats) {
        self.files_statted += other.files_statted;
        self.dirs_statted += other.dirs_statted;
        self.dirs_listed += other.dirs_listed;
        self.files_hashed += other.files_hashed;
    }
}

/// What identifies one version of a file or directory without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    mtime: (i64, i64),
    ctime: (i64, i64),
    size: i64,
    ino: u64,
}

impl Stamp {
    // The field types differ between platforms (i32 or i64 time_t, ...).
    #[allow(clippy::useless_conversion)]
    fn of_stat(st: &FileStat) -> Self {
        Stamp {
            mtime: (i64::from(st.st_mtime), i64::from(st.st_mtime_nsec)),
            ctime: (i64::from(st.st_ctime), i64::from(st.st_ctime_nsec)),
            size: i64::from(st.st_size),
            ino: u64::from(st.st_ino),
        }
    }

    fn of_meta(m: &Metadata) -> Self {
        Stamp {
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
            size: i64::try_from(m.size()).unwrap_or(i64::MAX),
            ino: m.ino(),
        }
    }

    /// Whether the newer of mtime and ctime is after `since_ns` (the scan's time less the racy
    /// window): a write in the same tick might follow unseen.
    fn is_racy(&self, since_ns: i128) -> bool {
        let ns = |(s, n): (i64, i64)| i128::from(s) * 1_000_000_000 + i128::from(n);
        ns(self.mtime).max(ns(self.ctime)) > since_ns
    }
}

/// A configuration file as last seen.
#[derive(Debug, Clone, Copy)]
struct FileState {
    stamp: Stamp,
    hash: u64,
    racy: bool,
    /// For an item's `config.xml`: its type has no children (see [`is_leaf_item`]).
    leaf: bool,
}

/// A `jobs/` directory as last seen.
#[derive(Debug, Default)]
struct JobsDir {
    stamp: Option<Stamp>,
    racy: bool,
    /// Child directories, sorted by name. Items are those with a `config.xml`.
    children: Vec<Child>,
}

/// A job's build records as last seen: the stamps of `nextBuildNumber` and of `builds/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Records {
    next: Option<Stamp>,
    builds: Option<Stamp>,
}

#[derive(Debug)]
struct Child {
    name: String,
    /// `Some` when the child has a `config.xml`, which makes it an item.
    config: Option<FileState>,
    /// Its build records, once stat'ed.
    records: Option<Records>,
    /// The child's own `jobs/` (it is a folder), when it is an item and has one.
    sub: Option<JobsDir>,
}

/// A small directory (the home, `nodes/`, `users/`) as last listed.
#[derive(Debug, Default)]
struct Listing {
    stamp: Option<Stamp>,
    racy: bool,
    exists: bool,
    names: Vec<String>,
}

/// Scans one JENKINS_HOME; keeps what it saw to report changes on the next scan.
///
/// Scanning is blocking filesystem work (and can hang on a hard-mounted NFS that lost its
/// server), so async callers run it on a blocking thread; [`super::HomeWatch`] does.
#[derive(Debug)]
pub struct Scanner {
    home: PathBuf,
    home_dev: u64,
    /// The home's filesystem at start, to tell a remount of the same storage (a new device
    /// number, same filesystem) from an unmount (the bare mount point: another filesystem).
    home_fs: Option<FsIdentity>,
    /// Set when a scan found the home mounted again on a new device; see [`Scanner::take_remounted`].
    remounted: bool,
    /// The lease directory's parent and name, to skip it should it sit under a listed directory.
    lease: Option<(PathBuf, String)>,
    threads: usize,
    racy_window: Duration,
    baseline_done: bool,
    root: Listing,
    nodes: Listing,
    users: Listing,
    globals: BTreeMap<String, FileState>,
    jobs: Option<JobsDir>,
    trace: Option<Vec<PathBuf>>,
    last_problems: HashSet<String>,
}

impl Scanner {
    /// A scanner over `home`. `lease_dir` (default `<home>/.jenkins-ha`) is never entered. The
    /// first [`Scanner::scan`] builds the baseline.
    pub fn new(home: impl Into<PathBuf>, lease_dir: Option<&Path>) -> Result<Self, WatchError> {
        let home = home.into();
        let meta = fs::metadata(&home).map_err(|source| WatchError::Unreadable {
            path: home.clone(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(WatchError::NotADirectory { path: home });
        }
        let lease_dir = lease_dir
            .map(Path::to_path_buf)
            .unwrap_or_else(|| home.join(".jenkins-ha"));
        let lease = match (lease_dir.parent(), lease_dir.file_name()) {
            (Some(parent), Some(name)) => name
                .to_str()
                .map(|name| (parent.to_path_buf(), name.to_string())),
            _ => None,
        };
        let home_fs = fs_identity(&home).ok();
        Ok(Scanner {
            home,
            home_dev: meta.dev(),
            home_fs,
            remounted: false,
            lease,
            threads: 2,
            racy_window: RACY_WINDOW,
            baseline_done: false,
            root: Listing::default(),
            nodes: Listing::default(),
            users: Listing::default(),
            globals: BTreeMap::new(),
            jobs: None,
            trace: None,
            last_problems: HashSet::new(),
        })
    }

    /// How many threads share the `jobs/` tree (default 2; 1 scans on the calling thread only).
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads.max(1);
    }

    /// How recent a stamp must be to be checked again on the next scan (default
    /// [`RACY_WINDOW`]; tests and the benchmark, whose files were all just written, shorten it).
    pub fn set_racy_window(&mut self, window: Duration) {
        self.racy_window = window;
    }

    /// Records every path the scanner stats, opens or lists from now on (for tests and the
    /// benchmark, which check that no churn directory is ever touched). Off by default.
    pub fn set_trace(&mut self, on: bool) {
        self.trace = on.then(Vec::new);
    }

    /// The paths touched since tracing was switched on or last taken.
    pub fn take_trace(&mut self) -> Vec<PathBuf> {
        self.trace.as_mut().map(std::mem::take).unwrap_or_default()
    }

    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Whether the baseline scan has run (after which scans report changes).
    pub fn baseline_done(&self) -> bool {
        self.baseline_done
    }

    /// The full names of all items (jobs and folders) known, sorted.
    pub fn items(&self) -> Vec<String> {
        fn walk(dir: &JobsDir, prefix: &str, out: &mut Vec<String>) {
            for child in &dir.children {
                if child.config.is_some() {
                    let name = format!("{prefix}{}", child.name);
                    if let Some(sub) = &child.sub {
                        walk(sub, &format!("{name}/"), out);
                    }
                    out.push(name);
                }
            }
        }
        let mut out = Vec::new();
        if let Some(jobs) = &self.jobs {
            walk(jobs, "", &mut out);
        }
        out.sort();
        out
    }

    /// The global configuration files known, as paths relative to the home, sorted.
    pub fn globals(&self) -> Vec<String> {
        self.globals.keys().cloned().collect()
    }

    /// The directories whose entries matter: the home, `nodes/`, `nodes/*`, `users/`, `users/*`,
    /// every `jobs/` directory and every child directory of one. Watching exactly these
    /// (non-recursively) with inotify sees every change a scan would find.
    pub fn watch_dirs(&self) -> Vec<PathBuf> {
        fn walk(dir: &JobsDir, path: &Path, out: &mut Vec<PathBuf>) {
            out.push(path.to_path_buf());
            for child in &dir.children {
                let child_path = path.join(&child.name);
                if let Some(sub) = &child.sub {
                    walk(sub, &child_path.join("jobs"), out);
                }
                out.push(child_path);
            }
        }
        let mut out = vec![self.home.clone()];
        for (name, listing) in [("nodes", &self.nodes), ("users", &self.users)] {
            if listing.exists {
                let dir = self.home.join(name);
                out.extend(listing.names.iter().map(|n| dir.join(n)));
                out.push(dir);
            }
        }
        if let Some(jobs) = &self.jobs {
            walk(jobs, &self.home.join("jobs"), &mut out);
        }
        out
    }

    /// One pass. The first builds the baseline and reports no changes.
    ///
    /// Fails only when the home itself cannot be read, or is no longer on the filesystem it was
    /// on at start (unmounted): reporting every job as removed then would be wrong. The state
    /// is left as it was, so the next successful scan reports what changed meanwhile. The same
    /// filesystem mounted again on a new device number (see [`FsIdentity`]) is scanned as before.
    pub fn scan(&mut self) -> Result<ScanResult, WatchError> {
        let started = Instant::now();
        let racy_since_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0)
            - self.racy_window.as_nanos() as i128;
        let unreadable = |source: io::Error| WatchError::Unreadable {
            path: self.home.clone(),
            source,
        };
        let home_meta = fs::metadata(&self.home).map_err(unreadable)?;
        if !home_meta.is_dir() {
            return Err(WatchError::NotADirectory {
                path: self.home.clone(),
            });
        }
        if home_meta.dev() != self.home_dev {
            let now = fs_identity(&self.home).ok();
            match (self.home_fs, now) {
                (Some(was), Some(now)) if was == now => {
                    tracing::info!(
                        "JENKINS_HOME {} is mounted again ({now}, device {} now {}); scanning it",
                        self.home.display(),
                        self.home_dev,
                        home_meta.dev()
                    );
                    self.home_dev = home_meta.dev();
                    self.remounted = true;
                }
                _ => {
                    return Err(WatchError::HomeMoved {
                        path: self.home.clone(),
                    })
                }
            }
        }

        let mut ctx = Ctx::new(!self.baseline_done, racy_since_ns, self.trace.is_some());
        ctx.path = self.home.clone();
        ctx.stats.dirs_statted += 1;
        ctx.trace(|_| self.home.clone());

        self.scan_globals(&mut ctx, Stamp::of_meta(&home_meta));

        ctx.path.push("jobs");
        match open_dir(&ctx.path) {
            Ok(Some(dir)) => {
                let lease = self.lease_in(&ctx.path);
                let jobs = self.jobs.get_or_insert_with(JobsDir::default);
                scan_jobs_dir(&mut ctx, dir, jobs, 0, self.threads, lease);
            }
            Ok(None) => {
                ctx.stats.dirs_statted += 1;
                if let Some(old) = self.jobs.take() {
                    ctx.removed_all(&old);
                }
            }
            Err(e) => ctx.problem(format!("cannot open {}: {e}", ctx.path.display())),
        }

        let Ctx {
            mut changes,
            mut stats,
            problems,
            trace,
            dropped_problems,
            ..
        } = ctx;
        if let (Some(all), Some(new)) = (self.trace.as_mut(), trace) {
            all.extend(new);
        }
        changes.sort_by(|a, b| (&a.what, a.kind).cmp(&(&b.what, b.kind)));
        self.log_problems(&problems, dropped_problems);
        self.baseline_done = true;
        stats.items = self.count_items();
        stats.duration = started.elapsed();
        Ok(ScanResult {
            changes,
            stats,
            problems,
        })
    }

    /// Whether a scan since the last call found the home mounted again on a new device (then
    /// watches on the old mount, such as inotify's, are dead and must be made again).
    pub fn take_remounted(&mut self) -> bool {
        std::mem::take(&mut self.remounted)
    }

    fn count_items(&self) -> usize {
        fn walk(dir: &JobsDir) -> usize {
            dir.children
                .iter()
                .filter(|c| c.config.is_some())
                .map(|c| 1 + c.sub.as_ref().map_or(0, walk))
                .sum()
        }
        self.jobs.as_ref().map_or(0, walk)
    }

    /// The lease directory's name, when it sits directly in `dir`.
    fn lease_in(&self, dir: &Path) -> Option<String> {
        self.lease
            .as_ref()
            .filter(|(parent, _)| parent == dir)
            .map(|(_, name)| name.clone())
    }

    /// Logs problems not seen on the previous scan (so a lasting one is logged once).
    fn log_problems(&mut self, problems: &[String], dropped: usize) {
        let now: HashSet<String> = problems.iter().cloned().collect();
        for p in problems {
            if !self.last_problems.contains(p) {
                tracing::warn!("watching JENKINS_HOME: {p}");
            }
        }
        if dropped > 0 {
            tracing::warn!("watching JENKINS_HOME: and {dropped} more problems");
        }
        self.last_problems = now;
    }

    /// The root `*.xml`, `nodes/` and `users/` files.
    fn scan_globals(&mut self, ctx: &mut Ctx, home_stamp: Stamp) {
        let home = self.home.clone();
        let lease_at_root = self.lease_in(&home);
        refresh_listing(
            ctx,
            &home,
            Some(home_stamp),
            &mut self.root,
            |name, is_dir| !is_dir && is_root_config_xml(name),
        );
        let nodes = home.join("nodes");
        let lease_in_nodes = self.lease_in(&nodes);
        refresh_listing(ctx, &nodes, None, &mut self.nodes, |name, is_dir| {
            is_dir && !is_temp_name(name) && Some(name) != lease_in_nodes.as_deref()
        });
        let users = home.join("users");
        let lease_in_users = self.lease_in(&users);
        refresh_listing(ctx, &users, None, &mut self.users, |name, is_dir| {
            is_dir && !is_temp_name(name) && Some(name) != lease_in_users.as_deref()
        });

        let mut wanted: Vec<String> = Vec::new();
        wanted.extend(
            self.root
                .names
                .iter()
                .filter(|n| Some(n.as_str()) != lease_at_root.as_deref())
                .cloned(),
        );
        wanted.extend(
            self.nodes
                .names
                .iter()
                .map(|n| format!("nodes/{n}/config.xml")),
        );
        if self.users.exists {
            wanted.push("users/users.xml".to_string());
            wanted.extend(
                self.users
                    .names
                    .iter()
                    .map(|n| format!("users/{n}/config.xml")),
            );
        }

        let mut old = std::mem::take(&mut self.globals);
        let mut new = BTreeMap::new();
        for rel in wanted {
            let path = home.join(&rel);
            let prev = old.remove(&rel);
            match check_file(ctx, &path, prev) {
                Checked::Absent => {
                    if prev.is_some() {
                        ctx.change(Change::global(ChangeKind::Removed, rel.clone()));
                    }
                }
                Checked::Keep => {
                    if let Some(state) = prev {
                        new.insert(rel, state);
                    }
                }
                Checked::Same(state) => {
                    new.insert(rel, state);
                }
                Checked::Changed(state) => {
                    let kind = if prev.is_some() {
                        ChangeKind::Modified
                    } else {
                        ChangeKind::Added
                    };
                    ctx.change(Change::global(kind, rel.clone()));
                    new.insert(rel, state);
                }
            }
        }
        // Files no longer listed at all (their directory went away).
        for rel in old.into_keys() {
            ctx.change(Change::global(ChangeKind::Removed, rel));
        }
        self.globals = new;
    }
}

/// Per-scan (and per-thread) working state.
struct Ctx {
    baseline: bool,
    /// Stamps newer than this (ns since the epoch) are racy.
    racy_since_ns: i128,
    changes: Vec<Change>,
    stats: ScanStats,
    problems: Vec<String>,
    dropped_problems: usize,
    trace: Option<Vec<PathBuf>>,
    /// The directory being scanned (a `jobs/` directory while in the tree).
    path: PathBuf,
    /// The full-name prefix of the items in that directory (`""` or `"F/G/"`).
    prefix: String,
    /// Scratch space for `<child>/config.xml` and `<child>/jobs`.
    name_buf: Vec<u8>,
    read_buf: Vec<u8>,
}

impl Ctx {
    fn new(baseline: bool, racy_since_ns: i128, trace: bool) -> Self {
        Ctx {
            baseline,
            racy_since_ns,
            changes: Vec::new(),
            stats: ScanStats::default(),
            problems: Vec::new(),
            dropped_problems: 0,
            trace: trace.then(Vec::new),
            path: PathBuf::new(),
            prefix: String::new(),
            name_buf: Vec::with_capacity(256),
            read_buf: Vec::new(),
        }
    }

    /// A context for a worker thread, continuing from this one's position.
    fn fork(&self) -> Self {
        let mut ctx = Ctx::new(self.baseline, self.racy_since_ns, self.trace.is_some());
        ctx.path = self.path.clone();
        ctx.prefix = self.prefix.clone();
        ctx
    }

    fn join(&mut self, other: Ctx) {
        self.changes.extend(other.changes);
        self.stats.add(&other.stats);
        for p in other.problems {
            self.problem(p);
        }
        self.dropped_problems += other.dropped_problems;
        if let (Some(mine), Some(theirs)) = (self.trace.as_mut(), other.trace) {
            mine.extend(theirs);
        }
    }

    fn change(&mut self, change: Change) {
        if !self.baseline {
            self.changes.push(change);
        }
    }

    fn problem(&mut self, problem: String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(problem);
        } else {
            self.dropped_problems += 1;
        }
    }

    fn trace(&mut self, path: impl FnOnce(&Self) -> PathBuf) {
        if self.trace.is_some() {
            let path = path(self);
            if let Some(trace) = self.trace.as_mut() {
                trace.push(path);
            }
        }
    }

    /// Reports every item of a `jobs/` directory that went away, and their descendants.
    fn removed_all(&mut self, dir: &JobsDir) {
        for child in &dir.children {
            self.removed_child(child);
        }
    }

    fn removed_child(&mut self, child: &Child) {
        if child.config.is_none() {
            return;
        }
        let name = format!("{}{}", self.prefix, child.name);
        self.change(Change::item(ChangeKind::Removed, name.clone()));
        if let Some(sub) = &child.sub {
            let len = self.prefix.len();
            self.prefix.push_str(&child.name);
            self.prefix.push('/');
            self.removed_all(sub);
            self.prefix.truncate(len);
        }
    }

    /// Reads and hashes a file, returning the stamp of what was read.
    fn hash(&mut self, path: &Path) -> io::Result<FileState> {
        self.stats.files_hashed += 1;
        let mut file = File::open(path)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::new(io::ErrorKind::NotFound, "not a file"));
        }
        if self.read_buf.is_empty() {
            self.read_buf.resize(64 * 1024, 0);
        }
        let mut hasher = DefaultHasher::new();
        let mut leaf = None;
        loop {
            let n = match file.read(&mut self.read_buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let chunk = &self.read_buf[..n];
            // The root element is near the start; a first read shorter than that (a pipe, a
            // very long comment) just means "maybe a folder".
            leaf.get_or_insert_with(|| is_leaf_item(chunk));
            hasher.write(chunk);
        }
        let stamp = Stamp::of_meta(&meta);
        Ok(FileState {
            stamp,
            hash: hasher.finish(),
            racy: stamp.is_racy(self.racy_since_ns),
            leaf: leaf.unwrap_or(false),
        })
    }
}

/// Root elements (XStream aliases and class names) of item types that never have children:
/// freestyle, Pipeline, Maven, matrix and multijob projects, build flows, external jobs.
/// Jenkins only loads `jobs/` for item groups (folders, multibranch projects, organization
/// folders), so these are never probed for one. Any other root element is treated as a
/// possible folder.
const LEAF_ITEM_ROOTS: &[&[u8]] = &[
    b"project",
    b"hudson.model.FreeStyleProject",
    b"flow-definition",
    b"org.jenkinsci.plugins.workflow.job.WorkflowJob",
    b"maven2-moduleset",
    b"hudson.maven.MavenModuleSet",
    b"matrix-project",
    b"hudson.matrix.MatrixProject",
    b"com.tikal.jenkins.plugins.multijob.MultiJobProject",
    b"com.cloudbees.plugins.flow.BuildFlow",
    b"hudson.model.ExternalJob",
];

/// Whether an item's `config.xml` (its first bytes) is of a type that has no children.
fn is_leaf_item(xml: &[u8]) -> bool {
    root_element(xml).is_some_and(|root| LEAF_ITEM_ROOTS.contains(&root))
}

/// The name of the first element of an XML document: after a BOM, whitespace, the XML
/// declaration, processing instructions, comments and a DOCTYPE. `None` if it is not within
/// `xml`.
fn root_element(xml: &[u8]) -> Option<&[u8]> {
    let mut rest = xml.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(xml);
    loop {
        rest = &rest[rest.iter().position(|b| !b.is_ascii_whitespace())?..];
        let skip_past = |rest: &[u8], end: &[u8]| {
            rest.windows(end.len())
                .position(|w| w == end)
                .map(|i| i + end.len())
        };
        if rest.starts_with(b"<?") {
            rest = &rest[skip_past(rest, b"?>")?..];
        } else if rest.starts_with(b"<!--") {
            rest = &rest[skip_past(rest, b"-->")?..];
        } else if rest.starts_with(b"<!") {
            rest = &rest[skip_past(rest, b">")?..];
        } else if let Some(tag) = rest.strip_prefix(b"<") {
            let end = tag
                .iter()
                .position(|b| b.is_ascii_whitespace() || *b == b'>' || *b == b'/')?;
            return (end > 0).then(|| &tag[..end]);
        } else {
            return None;
        }
    }
}

/// What [`check_file`] found.
enum Checked {
    /// Not there (or not a regular file).
    Absent,
    /// Could not be read: keep the previous state, report nothing.
    Keep,
    /// Present with the content last seen (possibly with a new stamp).
    Same(FileState),
    /// Present and new, or with new content.
    Changed(FileState),
}

/// Stats a global file and hashes it if its stamp moved.
fn check_file(ctx: &mut Ctx, path: &Path, prev: Option<FileState>) -> Checked {
    ctx.stats.files_statted += 1;
    ctx.trace(|_| path.to_path_buf());
    let stamp = match fs::metadata(path) {
        Ok(m) if m.is_file() => Stamp::of_meta(&m),
        Ok(_) => return Checked::Absent,
        Err(e) if is_gone(&e) => return Checked::Absent,
        Err(e) => {
            ctx.problem(format!("cannot stat {}: {e}", path.display()));
            return Checked::Keep;
        }
    };
    rehash_if_moved(ctx, path, prev, stamp)
}

/// The shared tail of a stat: same stamp → same; else hash and compare.
fn rehash_if_moved(ctx: &mut Ctx, path: &Path, prev: Option<FileState>, stamp: Stamp) -> Checked {
    if let Some(prev) = prev {
        if prev.stamp == stamp && !prev.racy {
            return Checked::Same(prev);
        }
    }
    match ctx.hash(path) {
        Ok(state) => match prev {
            Some(prev) if prev.hash == state.hash => Checked::Same(state),
            _ => Checked::Changed(state),
        },
        // Vanished between stat and open: the next scan sees it gone.
        Err(e) if is_gone(&e) => match prev {
            Some(_) => Checked::Keep,
            None => Checked::Absent,
        },
        Err(e) => {
            ctx.problem(format!("cannot read {}: {e}", path.display()));
            Checked::Keep
        }
    }
}

fn is_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// Re-lists a small directory if its stamp moved. `home_stamp` saves a stat for the home.
fn refresh_listing(
    ctx: &mut Ctx,
    dir: &Path,
    known_stamp: Option<Stamp>,
    listing: &mut Listing,
    keep: impl Fn(&str, bool) -> bool,
) {
    let stamp = match known_stamp {
        Some(s) => s,
        None => {
            ctx.stats.dirs_statted += 1;
            ctx.trace(|_| dir.to_path_buf());
            match fs::metadata(dir) {
                Ok(m) if m.is_dir() => Stamp::of_meta(&m),
                Ok(_) => {
                    *listing = Listing::default();
                    return;
                }
                Err(e) if is_gone(&e) => {
                    *listing = Listing::default();
                    return;
                }
                Err(e) => {
                    ctx.problem(format!("cannot stat {}: {e}", dir.display()));
                    return;
                }
            }
        }
    };
    if listing.exists && listing.stamp == Some(stamp) && !listing.racy {
        return;
    }
    ctx.stats.dirs_listed += 1;
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if is_gone(&e) => {
            *listing = Listing::default();
            return;
        }
        Err(e) => {
            ctx.problem(format!("cannot list {}: {e}", dir.display()));
            return;
        }
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                ctx.problem(format!("cannot list {}: {e}", dir.display()));
                return;
            }
        };
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            ctx.problem(format!(
                "skipped {}: the name is not UTF-8",
                dir.join(&name).display()
            ));
            continue;
        };
        // Follows symlinks only for the type (a symlinked plugin config is still config).
        let is_dir = match entry.file_type() {
            Ok(t) if t.is_symlink() => fs::metadata(entry.path()).is_ok_and(|m| m.is_dir()),
            Ok(t) => t.is_dir(),
            Err(_) => continue,
        };
        if keep(name, is_dir) {
            names.push(name.to_string());
        }
    }
    names.sort_unstable();
    *listing = Listing {
        stamp: Some(stamp),
        racy: stamp.is_racy(ctx.racy_since_ns),
        exists: true,
        names,
    };
}

/// Opens a directory (to stat relative to it); `None` when it is not there.
fn open_dir(path: &Path) -> io::Result<Option<File>> {
    match File::open(path) {
        Ok(dir) => Ok(Some(dir)),
        Err(e) if is_gone(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

fn is_kind(st: &FileStat, kind: SFlag) -> bool {
    (st.st_mode & SFlag::S_IFMT.bits()) == kind.bits()
}

/// Scans an open `jobs/` directory (whose path is `ctx.path`) into `state`.
fn scan_jobs_dir(
    ctx: &mut Ctx,
    dir: File,
    state: &mut JobsDir,
    depth: usize,
    threads: usize,
    lease: Option<String>,
) {
    ctx.stats.dirs_statted += 1;
    ctx.trace(|c| c.path.clone());
    let fd = dir.as_raw_fd();
    let stamp = match dir.metadata() {
        Ok(m) => Stamp::of_meta(&m),
        Err(e) => {
            ctx.problem(format!("cannot stat {}: {e}", ctx.path.display()));
            return;
        }
    };
    if state.stamp != Some(stamp) || state.racy {
        ctx.stats.dirs_listed += 1;
        let Some(names) = list_child_dirs(ctx, lease.as_deref()) else {
            return;
        };
        merge_children(ctx, state, names);
        state.stamp = Some(stamp);
        state.racy = stamp.is_racy(ctx.racy_since_ns);
    }

    if threads > 1 && state.children.len() > 1 {
        scan_children_parallel(ctx, fd, &mut state.children, depth, threads);
    } else {
        for child in &mut state.children {
            scan_child(ctx, fd, child, depth);
        }
    }
}

/// The names of the child directories of an open `jobs/` directory, sorted; `None` (after
/// recording a problem) when it cannot be read.
fn list_child_dirs(ctx: &mut Ctx, lease: Option<&str>) -> Option<Vec<String>> {
    let entries = match fs::read_dir(&ctx.path) {
        Ok(entries) => entries,
        Err(e) => {
            ctx.problem(format!("cannot list {}: {e}", ctx.path.display()));
            return None;
        }
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                ctx.problem(format!("cannot list {}: {e}", ctx.path.display()));
                return None;
            }
        };
        // d_type where the filesystem has it, else lstat; a vanished entry is no directory.
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            ctx.problem(format!(
                "skipped {}: the name is not UTF-8, so it is no Jenkins item",
                entry.path().display()
            ));
            continue;
        };
        if Some(name) == lease || is_temp_name(name) {
            continue;
        }
        names.push(name.to_string());
    }
    names.sort_unstable();
    Some(names)
}

/// Merges a fresh listing into the known children, reporting items whose directory went away.
fn merge_children(ctx: &mut Ctx, state: &mut JobsDir, names: Vec<String>) {
    let old = std::mem::take(&mut state.children);
    let mut old = old.into_iter().peekable();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        while let Some(gone) = old.next_if(|o| o.name < name) {
            ctx.removed_child(&gone);
        }
        match old.next_if(|o| o.name == name) {
            Some(kept) => out.push(kept),
            None => out.push(Child {
                name,
                config: None,
                records: None,
                sub: None,
            }),
        }
    }
    for gone in old {
        ctx.removed_child(&gone);
    }
    state.children = out;
}

/// Shares the children of the root `jobs/` out among threads, one child at a time (folders
/// differ in size), keeping the report in path order.
fn scan_children_parallel(
    ctx: &mut Ctx,
    fd: RawFd,
    children: &mut [Child],
    depth: usize,
    threads: usize,
) {
    let queue = Mutex::new(children.iter_mut().enumerate());
    // Each worker's context, and the changes it found per child index.
    type Worker = (Ctx, Vec<(usize, Vec<Change>)>);
    let results: Vec<Worker> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let mut worker = ctx.fork();
                let queue = &queue;
                s.spawn(move || {
                    let mut ordered = Vec::new();
                    loop {
                        let next = match queue.lock() {
                            Ok(mut q) => q.next(),
                            Err(poisoned) => poisoned.into_inner().next(),
                        };
                        let Some((i, child)) = next else { break };
                        scan_child(&mut worker, fd, child, depth);
                        if !worker.changes.is_empty() {
                            ordered.push((i, std::mem::take(&mut worker.changes)));
                        }
                    }
                    (worker, ordered)
                })
            })
            .collect();
        workers.into_iter().filter_map(|w| w.join().ok()).collect()
    });
    let mut ordered = Vec::new();
    for (worker, changes) in results {
        ctx.join(worker);
        ordered.extend(changes);
    }
    ordered.sort_by_key(|(i, _)| *i);
    ctx.changes.extend(ordered.into_iter().flat_map(|(_, c)| c));
}

/// One child directory of a `jobs/` directory: its `config.xml`, then its own `jobs/`.
///
/// A plain job costs one `fstatat` per scan: its `config.xml` says (by its root element, see
/// [`is_leaf_item`]) that it is a job type that has no children, so its `jobs/` is never looked
/// for. Folders, and item types not known to be leaves, are probed for `jobs/` on every scan.
fn scan_child(ctx: &mut Ctx, fd: RawFd, child: &mut Child, depth: usize) {
    ctx.name_buf.clear();
    ctx.name_buf.extend_from_slice(child.name.as_bytes());
    ctx.name_buf.extend_from_slice(b"/config.xml");
    ctx.stats.files_statted += 1;
    ctx.trace(|c| c.path_of(&child.name, "config.xml"));
    let now = match fstatat(Some(fd), ctx.name_buf.as_slice(), AtFlags::empty()) {
        Ok(st) if is_kind(&st, SFlag::S_IFREG) => Some(Stamp::of_stat(&st)),
        // Gone (the item directory too, perhaps), or not a file: not an item (any more).
        Ok(_) | Err(Errno::ENOENT | Errno::ENOTDIR) => None,
        Err(e) => {
            let path = ctx.path_of(&child.name, "config.xml");
            ctx.problem(format!("cannot stat {}: {e}", path.display()));
            return;
        }
    };

    match (child.config, now) {
        (None, None) => {
            child.sub = None;
            return;
        }
        (Some(_), None) => {
            ctx.removed_child(child);
            child.config = None;
            child.sub = None;
            return;
        }
        (prev, Some(stamp)) => {
            let path = ctx.path_of(&child.name, "config.xml");
            match rehash_if_moved(ctx, &path, prev, stamp) {
                Checked::Absent => return,
                Checked::Keep => {}
                Checked::Same(state) => child.config = Some(state),
                Checked::Changed(state) => {
                    let kind = if prev.is_some() {
                        ChangeKind::Modified
                    } else {
                        ChangeKind::Added
                    };
                    let name = format!("{}{}", ctx.prefix, child.name);
                    ctx.change(Change::item(kind, name));
                    child.config = Some(state);
                }
            }
        }
    }
    let Some(config) = child.config else {
        return;
    };

    // Its build records: two more `fstatat`s, never a listing of `builds/`.
    let records = Records {
        next: stat_at(ctx, fd, &child.name, "nextBuildNumber"),
        builds: stat_at(ctx, fd, &child.name, "builds"),
    };
    if child.records.is_some_and(|was| was != records) {
        let name = format!("{}{}", ctx.prefix, child.name);
        ctx.change(Change::builds(name));
    }
    child.records = Some(records);

    let has_jobs = if config.leaf {
        Ok(false)
    } else {
        // One fstatat; ENOENT for an empty folder.
        ctx.name_buf.clear();
        ctx.name_buf.extend_from_slice(child.name.as_bytes());
        ctx.name_buf.extend_from_slice(b"/jobs");
        ctx.stats.dirs_statted += 1;
        ctx.trace(|c| c.path_of(&child.name, "jobs"));
        match fstatat(Some(fd), ctx.name_buf.as_slice(), AtFlags::empty()) {
            Ok(st) => Ok(is_kind(&st, SFlag::S_IFDIR)),
            Err(Errno::ENOENT | Errno::ENOTDIR) => Ok(false),
            Err(e) => Err(io::Error::from(e)),
        }
    };

    let len = ctx.prefix.len();
    ctx.prefix.push_str(&child.name);
    ctx.prefix.push('/');
    ctx.path.push(&child.name);
    ctx.path.push("jobs");
    let opened = match has_jobs {
        Ok(true) => open_dir(&ctx.path),
        Ok(false) => Ok(None),
        Err(e) => Err(e),
    };
    match opened {
        Ok(Some(dir)) if depth < MAX_DEPTH => {
            let sub = child.sub.get_or_insert_with(JobsDir::default);
            scan_jobs_dir(ctx, dir, sub, depth + 1, 1, None);
        }
        Ok(Some(_)) => {
            ctx.problem(format!(
                "not following {}: folders nested deeper than {MAX_DEPTH} (a symlink loop?)",
                ctx.path.display()
            ));
        }
        Ok(None) => {
            if let Some(old) = child.sub.take() {
                ctx.removed_all(&old);
            }
        }
        Err(e) => ctx.problem(format!("cannot open {}: {e}", ctx.path.display())),
    }
    ctx.path.pop();
    ctx.path.pop();
    ctx.prefix.truncate(len);
}

/// The stamp of `<child>/<file>` (a file or a directory), relative to the open `jobs/`
/// directory; `None` when it is not there or cannot be stat'ed.
fn stat_at(ctx: &mut Ctx, fd: RawFd, child: &str, file: &str) -> Option<Stamp> {
    ctx.name_buf.clear();
    ctx.name_buf.extend_from_slice(child.as_bytes());
    ctx.name_buf.push(b'/');
    ctx.name_buf.extend_from_slice(file.as_bytes());
    ctx.stats.files_statted += 1;
    ctx.trace(|c| c.path_of(child, file));
    fstatat(Some(fd), ctx.name_buf.as_slice(), AtFlags::empty())
        .ok()
        .map(|st| Stamp::of_stat(&st))
}

impl Ctx {
    fn path_of(&self, child: &str, file: &str) -> PathBuf {
        let mut p = self.path.join(child);
        p.push(file);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;
    use std::fs;
    use std::os::unix::ffi::OsStrExt;

    /// A small JENKINS_HOME: two top-level jobs, a folder with a job and a sub-folder with a job,
    /// global files, nodes, users, and churn everywhere.
    fn home() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let h = dir.path();
        let files = [
            ("config.xml", "<hudson/>"),
            ("credentials.xml", "<creds/>"),
            ("queue.xml", "<queue/>"),
            ("queue.xml.bak", "<queue/>"),
            ("secret.key", "k"),
            ("jobs/app/config.xml", "<project>app</project>"),
            ("jobs/app/nextBuildNumber", "3"),
            ("jobs/app/builds/1/build.xml", "<build/>"),
            ("jobs/app/builds/config.xml", "<decoy/>"),
            ("jobs/app/builds/jobs/x/config.xml", "<decoy/>"),
            ("jobs/app/workspace/config.xml", "<decoy/>"),
            ("jobs/lib/config.xml", "<project>lib</project>"),
            ("jobs/F/config.xml", "<folder/>"),
            ("jobs/F/jobs/b/config.xml", "<project>b</project>"),
            ("jobs/F/jobs/b/builds/7/log", "log"),
            ("jobs/F/jobs/G/config.xml", "<folder/>"),
            ("jobs/F/jobs/G/jobs/c/config.xml", "<project>c</project>"),
            ("nodes/agent1/config.xml", "<slave/>"),
            ("users/users.xml", "<users/>"),
            ("users/alice_1/config.xml", "<user/>"),
            ("fingerprints/ab/cd.xml", "<fp/>"),
            ("logs/tasks/x.log", "log"),
            ("plugins/git/config.xml", "<decoy/>"),
            ("secrets/master.key", "k"),
            ("workspace/app/config.xml", "<decoy/>"),
            (".jenkins-ha/term-1.xml", "<term/>"),
        ];
        for (path, content) in files {
            let path = h.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, content).unwrap();
        }
        dir
    }

    fn scanner(h: &Path) -> Scanner {
        let mut s = Scanner::new(h, None).unwrap();
        let first = s.scan().unwrap();
        assert!(first.changes.is_empty(), "{:?}", first.changes);
        assert!(first.problems.is_empty(), "{:?}", first.problems);
        s
    }

    /// A scanner that trusts every stamp at once (no racy window), so that the tests below also
    /// run through the cached paths: unchanged directories not listed, unchanged item
    /// directories not probed for `jobs/`.
    fn trusting(h: &Path) -> Scanner {
        let mut s = Scanner::new(h, None).unwrap();
        s.set_racy_window(Duration::ZERO);
        assert!(s.scan().unwrap().changes.is_empty());
        s
    }

    /// Both kinds of scanner, for the scenario tests.
    const SCANNERS: [fn(&Path) -> Scanner; 2] = [scanner, trusting];

    fn changes(s: &mut Scanner) -> Vec<String> {
        let r = s.scan().unwrap();
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        r.changes.iter().map(ToString::to_string).collect()
    }

    /// Rewrites a file with new content and a distinct stamp (a new inode, like Jenkins'
    /// AtomicFileWriter).
    fn replace(path: &Path, content: &str) {
        let tmp = path.with_file_name("atomic999tmp");
        fs::write(&tmp, content).unwrap();
        fs::rename(&tmp, path).unwrap();
    }

    #[test]
    fn baseline_lists_items_and_globals() {
        let dir = home();
        let s = scanner(dir.path());
        assert_eq!(s.items(), vec!["F", "F/G", "F/G/c", "F/b", "app", "lib"]);
        assert_eq!(
            s.globals(),
            vec![
                "config.xml",
                "credentials.xml",
                "nodes/agent1/config.xml",
                "users/alice_1/config.xml",
                "users/users.xml"
            ]
        );
        assert!(s.baseline_done());
    }

    #[test]
    fn nothing_changed_nothing_reported_and_nothing_listed() {
        let dir = home();
        let mut s = scanner(dir.path());
        // Let the stamps age past the racy window cheaply: pretend the scan runs later.
        let r = s.scan().unwrap();
        assert!(r.changes.is_empty());
        assert_eq!(r.stats.items, 6);
        // 6 item configs, their 6 × 2 build records (nextBuildNumber, builds/), 5 global files.
        assert_eq!(r.stats.files_statted, 23);
    }

    #[test]
    fn edits_are_modified() {
        for make in SCANNERS {
            let dir = home();
            let h = dir.path();
            let mut s = make(h);
            replace(&h.join("jobs/app/config.xml"), "<project>app2</project>");
            fs::write(
                h.join("jobs/F/jobs/G/jobs/c/config.xml"),
                "<project>c, in place</project>",
            )
            .unwrap();
            assert_eq!(
                changes(&mut s),
                vec![
                    "jobs/F/jobs/G/jobs/c/config.xml edited",
                    "jobs/app/config.xml edited"
                ]
            );
            assert!(changes(&mut s).is_empty(), "reported once");
        }
    }

    #[test]
    fn identical_rewrites_are_no_change() {
        let dir = home();
        let h = dir.path();
        let mut s = scanner(h);
        replace(&h.join("jobs/app/config.xml"), "<project>app</project>");
        replace(&h.join("config.xml"), "<hudson/>");
        let f = File::options()
            .write(true)
            .open(h.join("jobs/lib/config.xml"))
            .unwrap();
        f.set_modified(SystemTime::now() + Duration::from_secs(5))
            .unwrap();
        let r = s.scan().unwrap();
        assert!(r.changes.is_empty(), "{:?}", r.changes);
        assert!(r.stats.files_hashed >= 3, "{:?}", r.stats);
    }

    #[test]
    fn added_removed_and_renamed_jobs() {
        for make in SCANNERS {
            let dir = home();
            let h = dir.path();
            let mut s = make(h);
            fs::create_dir_all(h.join("jobs/F/jobs/new")).unwrap();
            fs::write(h.join("jobs/F/jobs/new/config.xml"), "<project/>").unwrap();
            fs::remove_dir_all(h.join("jobs/lib")).unwrap();
            assert_eq!(changes(&mut s), vec!["job F/new added", "job lib removed"]);
            fs::rename(h.join("jobs/F/jobs/new"), h.join("jobs/F/jobs/renamed")).unwrap();
            assert_eq!(
                changes(&mut s),
                vec!["job F/new removed", "job F/renamed added"]
            );
            assert_eq!(
                s.items(),
                vec!["F", "F/G", "F/G/c", "F/b", "F/renamed", "app"]
            );
        }
    }

    #[test]
    fn a_directory_becomes_an_item_when_its_config_appears() {
        for make in SCANNERS {
            let dir = home();
            let h = dir.path();
            let mut s = make(h);
            fs::create_dir_all(h.join("jobs/pending")).unwrap();
            assert!(changes(&mut s).is_empty(), "no config.xml yet: not an item");
            fs::write(h.join("jobs/pending/config.xml"), "<project/>").unwrap();
            assert_eq!(changes(&mut s), vec!["job pending added"]);
            fs::remove_file(h.join("jobs/pending/config.xml")).unwrap();
            assert_eq!(changes(&mut s), vec!["job pending removed"]);
        }
    }

    #[test]
    fn folders_added_and_removed_with_their_children() {
        for make in SCANNERS {
            let dir = home();
            let h = dir.path();
            let mut s = make(h);
            fs::remove_dir_all(h.join("jobs/F/jobs/G")).unwrap();
            assert_eq!(
                changes(&mut s),
                vec!["job F/G removed", "job F/G/c removed"]
            );
            fs::create_dir_all(h.join("jobs/N/jobs/x/jobs/y")).unwrap();
            fs::write(h.join("jobs/N/config.xml"), "<folder/>").unwrap();
            fs::write(h.join("jobs/N/jobs/x/config.xml"), "<folder/>").unwrap();
            fs::write(h.join("jobs/N/jobs/x/jobs/y/config.xml"), "<project/>").unwrap();
            assert_eq!(
                changes(&mut s),
                vec!["job N added", "job N/x added", "job N/x/y added"]
            );
            // A folder's jobs/ going away removes its children, not the folder.
            fs::remove_dir_all(h.join("jobs/N/jobs")).unwrap();
            assert_eq!(
                changes(&mut s),
                vec!["job N/x removed", "job N/x/y removed"]
            );
        }
    }

    #[test]
    fn an_empty_folder_gets_its_first_child() {
        for make in SCANNERS {
            let dir = home();
            let h = dir.path();
            fs::create_dir_all(h.join("jobs/E")).unwrap();
            fs::write(h.join("jobs/E/config.xml"), "<folder/>").unwrap();
            let mut s = make(h);
            // The folder's config.xml does not change when its jobs/ appears.
            fs::create_dir_all(h.join("jobs/E/jobs/x")).unwrap();
            fs::write(h.join("jobs/E/jobs/x/config.xml"), "<project/>").unwrap();
            assert_eq!(changes(&mut s), vec!["job E/x added"]);
            fs::remove_dir_all(h.join("jobs/E/jobs")).unwrap();
            assert_eq!(changes(&mut s), vec!["job E/x removed"]);
        }
    }

    #[test]
    fn root_elements() {
        let cases: [(&[u8], Option<&[u8]>); 8] = [
            (b"<project/>", Some(b"project")),
            (
                b"<?xml version='1.1' encoding='UTF-8'?>\n<flow-definition plugin=\"x\">",
                Some(b"flow-definition"),
            ),
            (
                b"\xEF\xBB\xBF<?xml version='1.0'?><!-- c --><!DOCTYPE x>\n <com.cloudbees.hudson.plugins.folder.Folder>",
                Some(b"com.cloudbees.hudson.plugins.folder.Folder"),
            ),
            (b"<project>x</project>", Some(b"project")),
            (b"<?xml version='1.0'", None),
            (b"not xml", None),
            (b"", None),
            (b"<", None),
        ];
        for (xml, root) in cases {
            assert_eq!(root_element(xml), root, "{}", String::from_utf8_lossy(xml));
        }
        assert!(is_leaf_item(b"<?xml version='1.1'?>\n<project>"));
        assert!(is_leaf_item(
            b"<maven2-moduleset plugin=\"maven-plugin@3\">"
        ));
        assert!(!is_leaf_item(
            b"<com.cloudbees.hudson.plugins.folder.Folder>"
        ));
        assert!(!is_leaf_item(
            b"<org.jenkinsci.plugins.workflow.multibranch.WorkflowMultiBranchProject>"
        ));
        assert!(!is_leaf_item(b"<projects>"));
    }

    #[test]
    fn jobs_are_not_searched_for_children_but_folders_are() {
        for make in SCANNERS {
            let dir = home();
            let h = dir.path();
            // A freestyle job's jobs/ is nothing Jenkins loads.
            fs::create_dir_all(h.join("jobs/app/jobs/ghost")).unwrap();
            fs::write(h.join("jobs/app/jobs/ghost/config.xml"), "<project/>").unwrap();
            let mut s = make(h);
            assert!(!s.items().contains(&"app/ghost".to_string()));
            s.set_trace(true);
            s.scan().unwrap();
            let trace = s.take_trace();
            assert!(!trace.contains(&h.join("jobs/app/jobs")), "{trace:?}");
            assert!(trace.contains(&h.join("jobs/F/jobs")), "{trace:?}");
            // A job that becomes a folder (a new root element) gets its children, and back.
            replace(&h.join("jobs/app/config.xml"), "<folder/>");
            assert_eq!(
                changes(&mut s),
                vec!["jobs/app/config.xml edited", "job app/ghost added"]
            );
            replace(&h.join("jobs/app/config.xml"), "<project/>");
            assert_eq!(
                changes(&mut s),
                vec!["jobs/app/config.xml edited", "job app/ghost removed"]
            );
        }
    }

    #[test]
    fn global_files() {
        for make in SCANNERS {
            let dir = home();
            let h = dir.path();
            let mut s = make(h);
            replace(&h.join("config.xml"), "<hudson>2</hudson>");
            fs::write(h.join("hudson.plugins.git.GitTool.xml"), "<git/>").unwrap();
            fs::remove_file(h.join("credentials.xml")).unwrap();
            fs::create_dir_all(h.join("nodes/agent2")).unwrap();
            fs::write(h.join("nodes/agent2/config.xml"), "<slave/>").unwrap();
            replace(&h.join("users/users.xml"), "<users>2</users>");
            assert_eq!(
                changes(&mut s),
                vec![
                    "config.xml edited",
                    "credentials.xml removed",
                    "hudson.plugins.git.GitTool.xml added",
                    "nodes/agent2/config.xml added",
                    "users/users.xml edited",
                ]
            );
            fs::remove_dir_all(h.join("nodes")).unwrap();
            assert_eq!(
                changes(&mut s),
                vec![
                    "nodes/agent1/config.xml removed",
                    "nodes/agent2/config.xml removed"
                ]
            );
        }
    }

    #[test]
    fn churn_is_ignored_and_never_touched() {
        let dir = home();
        let h = dir.path();
        let mut s = Scanner::new(h, None).unwrap();
        s.set_trace(true);
        s.scan().unwrap();
        let churn = [
            "queue.xml",
            "jobs/app/builds/config.xml",
            "jobs/app/builds/jobs/x/config.xml",
            "jobs/app/builds/2/build.xml",
            "jobs/app/workspace/config.xml",
            "jobs/app/atomic123.tmp",
            "jobs/app/atomic8765tmp",
            "jobs/atomic55tmp/config.xml",
            "atomic123.tmp",
            "plugins/git/config.xml",
            "fingerprints/ab/ef.xml",
            "workspace/app/config.xml",
            ".jenkins-ha/term-2.xml",
            "nodes/agent1/slave.log",
        ];
        for path in churn {
            let path = h.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, "churn").unwrap();
        }
        let r = s.scan().unwrap();
        // The only change: a new build directory moved app's `builds/` (a stat, no listing).
        assert_eq!(r.changes, [Change::builds("app")]);
        let trace = s.take_trace();
        assert!(!trace.is_empty());
        for path in &trace {
            let rel = path.strip_prefix(h).unwrap();
            // An item's `builds/` and `nextBuildNumber` are stat'ed themselves; nothing in
            // `builds/` ever is.
            let parts: Vec<_> = rel.components().map(|c| c.as_os_str()).collect();
            let is_record = parts.len() >= 3
                && parts[parts.len() - 3] == "jobs"
                && (parts[parts.len() - 1] == "builds"
                    || parts[parts.len() - 1] == "nextBuildNumber");
            if is_record {
                continue;
            }
            for banned in [
                "builds",
                "workspace",
                "fingerprints",
                "logs",
                "plugins",
                "secrets",
                ".jenkins-ha",
                "nextBuildNumber",
                "queue.xml",
            ] {
                assert!(
                    !rel.components().any(|c| c.as_os_str() == banned),
                    "touched {}",
                    rel.display()
                );
            }
        }
        // A build started elsewhere: the next number moved.
        fs::write(h.join("jobs/F/jobs/b/nextBuildNumber"), "8").unwrap();
        let r = s.scan().unwrap();
        assert_eq!(r.changes, [Change::builds("F/b")]);
    }

    #[test]
    fn a_lease_dir_inside_jobs_is_skipped() {
        let dir = home();
        let h = dir.path();
        fs::create_dir_all(h.join("jobs/.ha")).unwrap();
        fs::write(h.join("jobs/.ha/config.xml"), "<lease/>").unwrap();
        let mut s = Scanner::new(h, Some(&h.join("jobs/.ha"))).unwrap();
        s.scan().unwrap();
        assert!(!s.items().contains(&".ha".to_string()));
        let mut s = Scanner::new(h, None).unwrap();
        s.scan().unwrap();
        assert!(s.items().contains(&".ha".to_string()));
    }

    #[test]
    fn unchanged_jobs_dirs_are_not_listed_again() {
        let dir = home();
        let h = dir.path();
        let mut s = Scanner::new(h, None).unwrap();
        // Everything here was just written: without this, racy stamps are checked again.
        s.set_racy_window(Duration::ZERO);
        s.scan().unwrap();
        let r = s.scan().unwrap();
        assert_eq!(r.stats.dirs_listed, 0, "{:?}", r.stats);
        assert_eq!(r.stats.files_hashed, 0, "{:?}", r.stats);
        fs::create_dir_all(h.join("jobs/F/jobs/new")).unwrap();
        fs::write(h.join("jobs/F/jobs/new/config.xml"), "<project/>").unwrap();
        let r = s.scan().unwrap();
        assert_eq!(r.stats.dirs_listed, 1, "only jobs/F/jobs: {:?}", r.stats);
        assert_eq!(r.changes.len(), 1);
    }

    #[test]
    fn racy_stamps_are_checked_again() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i128;
        let since = now - RACY_WINDOW.as_nanos() as i128;
        let s = |secs_ago: i64| {
            let t = (now / 1_000_000_000) as i64 - secs_ago;
            Stamp {
                mtime: (t, 0),
                ctime: (t, 0),
                size: 1,
                ino: 1,
            }
        };
        assert!(s(0).is_racy(since));
        assert!(s(-100).is_racy(since), "in the future (clock skew)");
        assert!(!s(10).is_racy(since));
    }

    #[test]
    fn vanished_and_unreadable_entries_do_not_panic() {
        let dir = home();
        let h = dir.path();
        let mut s = scanner(h);
        // A job directory that is a file, a dangling config.xml symlink, a config.xml that is a
        // directory, and a non-UTF-8 name.
        fs::write(h.join("jobs/not-a-dir"), "x").unwrap();
        fs::create_dir_all(h.join("jobs/dangling")).unwrap();
        std::os::unix::fs::symlink(h.join("nowhere"), h.join("jobs/dangling/config.xml")).unwrap();
        fs::create_dir_all(h.join("jobs/weird/config.xml")).unwrap();
        let bad = OsStr::from_bytes(b"bad-\xff-name");
        fs::create_dir_all(h.join("jobs").join(bad)).unwrap();
        fs::write(h.join("jobs").join(bad).join("config.xml"), "<p/>").unwrap();
        let r = s.scan().unwrap();
        assert!(r.changes.is_empty(), "{:?}", r.changes);
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
        assert!(r.problems[0].contains("not UTF-8"), "{:?}", r.problems);
        // The whole jobs tree vanishing between scans.
        fs::remove_dir_all(h.join("jobs")).unwrap();
        let r = s.scan().unwrap();
        assert_eq!(r.changes.len(), 6);
        assert!(r.changes.iter().all(|c| c.kind == ChangeKind::Removed));
    }

    #[test]
    fn a_file_vanishing_between_stat_and_read_is_no_change_yet() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("config.xml");
        let mut ctx = Ctx::new(false, 0, false);
        let stamp = Stamp {
            mtime: (1, 0),
            ctime: (1, 0),
            size: 1,
            ino: 1,
        };
        let prev = FileState {
            stamp,
            hash: 7,
            racy: false,
            leaf: false,
        };
        let moved = Stamp { size: 2, ..stamp };
        assert!(matches!(
            rehash_if_moved(&mut ctx, &missing, Some(prev), moved),
            Checked::Keep
        ));
        assert!(matches!(
            rehash_if_moved(&mut ctx, &missing, None, moved),
            Checked::Absent
        ));
        assert!(ctx.problems.is_empty());
    }

    #[test]
    fn scanning_while_jobs_come_and_go_does_not_panic() {
        let dir = home();
        let h = dir.path().to_path_buf();
        let mut s = scanner(&h);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let churner = {
            let (h, stop) = (h.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut i = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let job = h.join(format!("jobs/F/jobs/j{}", i % 7));
                    let _ = fs::create_dir_all(job.join("jobs/x"));
                    let _ = fs::write(job.join("config.xml"), format!("<p>{i}</p>"));
                    let _ = fs::write(job.join("jobs/x/config.xml"), "<p/>");
                    let _ = fs::remove_dir_all(h.join(format!("jobs/F/jobs/j{}", (i + 3) % 7)));
                    i += 1;
                }
            })
        };
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(300) {
            s.scan().unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        churner.join().unwrap();
        s.scan().unwrap();
        // Settled: a fresh scanner sees the same items.
        let mut fresh = Scanner::new(&h, None).unwrap();
        fresh.scan().unwrap();
        assert_eq!(s.items(), fresh.items());
    }

    #[test]
    fn unreadable_directories_keep_their_state() {
        use std::os::unix::fs::PermissionsExt;
        let dir = home();
        let h = dir.path();
        let mut s = scanner(h);
        fs::set_permissions(h.join("jobs/F/jobs"), fs::Permissions::from_mode(0o000)).unwrap();
        if fs::read_dir(h.join("jobs/F/jobs")).is_ok() {
            // Running as root, which reads everything: nothing to test.
            return;
        }
        let r = s.scan().unwrap();
        fs::set_permissions(h.join("jobs/F/jobs"), fs::Permissions::from_mode(0o755)).unwrap();
        assert!(r.changes.is_empty(), "{:?}", r.changes);
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    }

    #[test]
    fn an_unmounted_home_is_an_error_not_a_mass_removal() {
        let dir = home();
        let mut s = scanner(dir.path());
        // As if the bare mount point were there now: another device, another filesystem.
        s.home_dev ^= 1;
        s.home_fs = s.home_fs.map(|f| FsIdentity {
            f_type: f.f_type ^ 1,
            ..f
        });
        let e = s.scan().unwrap_err();
        assert!(e.to_string().contains("unmounted"), "{e}");
        assert!(!s.take_remounted());
        let gone = tempfile::tempdir().unwrap();
        let mut s = scanner(gone.path());
        let path = gone.path().to_path_buf();
        drop(gone);
        assert!(matches!(s.scan(), Err(WatchError::Unreadable { .. })));
        assert!(Scanner::new(&path, None).is_err());
    }

    #[test]
    fn the_same_filesystem_mounted_again_on_a_new_device_is_scanned() {
        let dir = home();
        let h = dir.path();
        let mut s = scanner(h);
        assert!(s.home_fs.is_some());
        // As if the storage came back on a new device number: the same filesystem.
        s.home_dev ^= 1;
        fs::write(h.join("config.xml"), "<hudson>edited while away</hudson>").unwrap();
        let r = s.scan().unwrap();
        assert_eq!(
            r.changes,
            vec![Change::global(ChangeKind::Modified, "config.xml")]
        );
        assert!(s.take_remounted());
        assert!(!s.take_remounted(), "reported once");
        assert!(s.scan().unwrap().changes.is_empty());
        assert!(!s.take_remounted());
    }

    #[test]
    fn single_and_multi_threaded_scans_agree() {
        let dir = home();
        let h = dir.path();
        let mut one = scanner(h);
        one.set_threads(1);
        let mut four = scanner(h);
        four.set_threads(4);
        for i in 0..20 {
            fs::create_dir_all(h.join(format!("jobs/F/jobs/n{i}"))).unwrap();
            fs::write(h.join(format!("jobs/F/jobs/n{i}/config.xml")), "<p/>").unwrap();
            fs::create_dir_all(h.join(format!("jobs/t{i}"))).unwrap();
            fs::write(h.join(format!("jobs/t{i}/config.xml")), "<p/>").unwrap();
        }
        let a = one.scan().unwrap();
        let b = four.scan().unwrap();
        assert_eq!(a.changes.len(), 40);
        assert_eq!(a.changes, b.changes);
        assert_eq!(a.stats.files_statted, b.stats.files_statted);
        assert_eq!(one.items(), four.items());
    }

    #[test]
    fn watch_dirs_cover_what_a_scan_reads() {
        let dir = home();
        let h = dir.path();
        let s = scanner(h);
        let mut dirs: Vec<String> = s
            .watch_dirs()
            .iter()
            .map(|p| p.strip_prefix(h).unwrap().display().to_string())
            .collect();
        dirs.sort();
        assert_eq!(
            dirs,
            vec![
                "",
                "jobs",
                "jobs/F",
                "jobs/F/jobs",
                "jobs/F/jobs/G",
                "jobs/F/jobs/G/jobs",
                "jobs/F/jobs/G/jobs/c",
                "jobs/F/jobs/b",
                "jobs/app",
                "jobs/lib",
                "nodes",
                "nodes/agent1",
                "users",
                "users/alice_1",
            ]
        );
    }
}
