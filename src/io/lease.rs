//! The lease on shared storage: one file per term, won by exclusive create, renewed by its single
//! writer with temp file + fsync + rename, and observed by re-opening it every interval.
//!
//! [`Lease`] is the small synchronous trait the loop needs; [`FileLease`] implements it on a
//! directory of the shared JENKINS_HOME, [`super::lease_etcd::EtcdLease`] in an etcd cluster. Storage can hang
//! (a hard-mounted NFS that lost its server), so the loop never calls it directly: [`LeaseIo`] runs
//! every call on a blocking thread with a deadline, and refuses new calls while one is stuck.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::core::{LeaseObs, TermView};

/// How many term files are kept as history; older ones are pruned by the node that claims a term.
pub const HISTORY_KEEP: u64 = 200;
/// Term files larger than this are garbage, not records.
const MAX_RECORD: u64 = 64 * 1024;

/// Term files are padded with spaces to a multiple of this size. A client that caches file
/// sizes past an open (FUSE's attribute cache, NFS mounted `nocto`) would otherwise read a
/// renewed record cut to the old record's length; with equal sizes it reads it whole.
const RECORD_BLOCK: usize = 1024;

/// A record as stored: JSON, padded with spaces (JSON ignores them) and a newline to a
/// multiple of [`RECORD_BLOCK`].
fn encode_record(record: &TermRecord, path: &Path) -> Result<Vec<u8>, LeaseError> {
    let mut bytes = serde_json::to_vec(record).map_err(|e| io("encode", path, e.into()))?;
    let size = (bytes.len() + 1).div_ceil(RECORD_BLOCK) * RECORD_BLOCK;
    bytes.resize(size - 1, b' ');
    bytes.push(b'\n');
    Ok(bytes)
}
/// The name of the flag file that pauses automatic failover for the whole cluster.
pub const PAUSE_FILE: &str = "paused";

/// Why a lease call failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("storage did not answer within {0:?} (hung mount?)")]
    Timeout(Duration),
    #[error("a previous storage call has not returned yet (hung mount?)")]
    Stuck,
    #[error("the storage call failed: {0}")]
    Join(String),
    /// An etcd call failed: the endpoint(s) tried and why (`http://10.0.0.10:2379: deadline
    /// exceeded (no quorum?)`).
    #[error("etcd {0}")]
    Etcd(String),
}

fn io(op: &'static str, path: &Path, source: std::io::Error) -> LeaseError {
    LeaseError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// One term file's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TermRecord {
    pub term: u64,
    pub node: String,
    /// Grows with every renewal; observers time how long it has been still.
    pub counter: u64,
    /// The holder's role when it wrote this (for history and status only).
    pub state: String,
    #[serde(default)]
    pub released: bool,
    #[serde(default)]
    pub handover_to: Option<String>,
    /// Why this term started ("jenkins01 has not renewed term 6 for 5.0 s").
    pub reason: String,
    /// Why it ended, written by the holder when it releases or hands over.
    #[serde(default)]
    pub end_reason: Option<String>,
    /// Wall-clock times for people (history); never used in a decision.
    pub started_unix_ms: u64,
    pub renewed_unix_ms: u64,
}

impl TermRecord {
    pub fn view(&self) -> TermView {
        TermView {
            term: self.term,
            holder: self.node.clone(),
            counter: self.counter,
            released: self.released,
            handover_to: self.handover_to.clone(),
        }
    }
}

/// What reading a term file gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TermFile {
    Valid(TermRecord),
    /// The file exists (so the term is taken) but its content is not a record: empty (being
    /// created), truncated, bad JSON, or a record of another term.
    Garbage {
        term: u64,
        why: String,
    },
}

impl TermFile {
    pub fn term(&self) -> u64 {
        match self {
            TermFile::Valid(r) => r.term,
            TermFile::Garbage { term, .. } => *term,
        }
    }
}

/// What one observation of the lease directory found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSnapshot {
    pub newest: Option<TermFile>,
    pub paused: bool,
}

impl LeaseSnapshot {
    /// The view the decision core takes. A garbage file is a term that exists but whose record
    /// cannot be read; the core decides what that means (see [`LeaseObs::Garbage`]).
    pub fn obs(&self) -> LeaseObs {
        match &self.newest {
            None => LeaseObs::Empty,
            Some(TermFile::Valid(r)) => LeaseObs::Term(r.view()),
            Some(TermFile::Garbage { term, why }) => LeaseObs::Garbage {
                term: *term,
                why: why.clone(),
            },
        }
    }
}

/// The operations the loop needs from a lease store. Blocking; called through [`LeaseIo`].
pub trait Lease: Send + Sync + 'static {
    /// The newest term and the pause flag, read fresh (never from a cache).
    fn observe(&self) -> Result<LeaseSnapshot, LeaseError>;
    /// One term's file, read fresh; `None` if it does not exist. Cheaper than [`Lease::observe`]
    /// (no listing): a standby uses it to see its holder's renewals as they land.
    fn read(&self, term: u64) -> Result<Option<TermFile>, LeaseError>;
    /// Creates the record's term exclusively. `Ok(false)`: someone else has that term.
    fn claim(&self, record: &TermRecord) -> Result<bool, LeaseError>;
    /// Replaces our own term's record (renewal, release, handover). Single writer per term.
    fn write(&self, record: &TermRecord) -> Result<(), LeaseError>;
    /// Past terms, newest first, at most `limit`.
    fn history(&self, limit: usize) -> Result<Vec<TermFile>, LeaseError>;
    /// Sets or clears the cluster-wide pause flag.
    fn set_paused(&self, paused: bool, by: &str) -> Result<(), LeaseError>;
    /// Asks the store to notify `wake` as soon as the lease changes (a release, a new term, an
    /// expiry), so that the loop decides at once instead of at its next tick. A store that cannot
    /// push changes keeps this default and is simply read every tick (and peeked at between them).
    fn subscribe(&self, _wake: Arc<tokio::sync::Notify>) {}
}

/// The lease as files in a directory on the shared storage.
pub struct FileLease {
    dir: PathBuf,
    /// The highest term we know exists: a directory listing can be stale on NFS, a term cannot shrink.
    highest_known: AtomicU64,
}

impl FileLease {
    /// Opens the lease directory, creating it (one level only: its parent, the shared
    /// JENKINS_HOME, must exist) if needed.
    pub fn open(dir: &Path) -> Result<Self, LeaseError> {
        match fs::create_dir(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(e) => return Err(io("create", dir, e)),
        }
        Ok(FileLease {
            dir: dir.to_path_buf(),
            highest_known: AtomicU64::new(0),
        })
    }

    /// Opens an existing lease directory for reading, without creating anything (for the
    /// read-only commands). A missing directory is an error.
    pub fn existing(dir: &Path) -> Result<Self, LeaseError> {
        match fs::metadata(dir) {
            Ok(m) if m.is_dir() => Ok(FileLease {
                dir: dir.to_path_buf(),
                highest_known: AtomicU64::new(0),
            }),
            Ok(_) => Err(io("open", dir, std::io::Error::other("not a directory"))),
            Err(e) => Err(io("open", dir, e)),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn term_path(&self, term: u64) -> PathBuf {
        self.dir.join(format!("term-{term}"))
    }

    /// Term numbers named in the directory listing.
    fn listed_terms(&self) -> Result<Vec<u64>, LeaseError> {
        let mut terms = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(|e| io("list", &self.dir, e))? {
            let entry = entry.map_err(|e| io("list", &self.dir, e))?;
            if let Some(n) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.strip_prefix("term-"))
                .and_then(|n| n.parse::<u64>().ok())
            {
                terms.push(n);
            }
        }
        Ok(terms)
    }

    /// Opens and reads one term file afresh. `Ok(None)` if it does not exist.
    fn read_term(&self, term: u64) -> Result<Option<TermFile>, LeaseError> {
        let path = self.term_path(term);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("open", &path, e)),
        };
        let mut bytes = Vec::new();
        file.take(MAX_RECORD + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| io("read", &path, e))?;
        Ok(Some(parse_term_file(term, &bytes)))
    }

    fn newest_term(&self) -> Result<Option<u64>, LeaseError> {
        let listed = self.listed_terms()?.into_iter().max().unwrap_or(0);
        let mut newest = listed.max(self.highest_known.load(Ordering::Relaxed));
        // The listing may lag behind: look a few names ahead directly.
        while self.term_path(newest + 1).exists() {
            newest += 1;
        }
        self.highest_known.fetch_max(newest, Ordering::Relaxed);
        Ok((newest > 0).then_some(newest))
    }

    fn prune(&self, newest: u64) {
        if newest <= HISTORY_KEEP {
            return;
        }
        if let Ok(terms) = self.listed_terms() {
            for t in terms.into_iter().filter(|t| *t + HISTORY_KEEP <= newest) {
                let _ = fs::remove_file(self.term_path(t));
            }
        }
    }

    fn sync_dir(&self) -> Result<(), LeaseError> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("fsync", &self.dir, e))
    }
}

/// Parses a term file's bytes. Never fails: what is not a valid record of `term` is garbage.
pub fn parse_term_file(term: u64, bytes: &[u8]) -> TermFile {
    let garbage = |why: String| TermFile::Garbage { term, why };
    if bytes.is_empty() {
        return garbage("empty (being created, or truncated)".into());
    }
    if bytes.len() as u64 > MAX_RECORD {
        return garbage(format!("larger than {MAX_RECORD} bytes"));
    }
    match serde_json::from_slice::<TermRecord>(bytes) {
        Ok(r) if r.term != term => garbage(format!(
            "it says term {} inside the file of term {term}",
            r.term
        )),
        Ok(r) if r.node.is_empty() => garbage("it names no node".into()),
        Ok(r) => TermFile::Valid(r),
        // serde_json quotes an unknown key as decoded: escaped, a `\n` in it stays on the line.
        Err(e) => garbage(format!(
            "not a term record: {}",
            crate::escape_controls(&e.to_string())
        )),
    }
}

impl Lease for FileLease {
    fn read(&self, term: u64) -> Result<Option<TermFile>, LeaseError> {
        self.read_term(term)
    }

    fn observe(&self) -> Result<LeaseSnapshot, LeaseError> {
        let newest = match self.newest_term()? {
            Some(t) => self.read_term(t)?,
            None => None,
        };
        let pause_path = self.dir.join(PAUSE_FILE);
        let paused = match File::open(&pause_path) {
            Ok(_) => true,
            Err(e) if e.kind() == ErrorKind::NotFound => false,
            Err(e) => return Err(io("open", &pause_path, e)),
        };
        Ok(LeaseSnapshot { newest, paused })
    }

    fn claim(&self, record: &TermRecord) -> Result<bool, LeaseError> {
        let path = self.term_path(record.term);
        let mut file = match OpenOptions::new()
            .write(true)
            .create_new(true) // O_CREAT | O_EXCL
            .mode(0o644)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                // Someone else won: and now we know a newer term exists even if listings lag.
                self.highest_known.fetch_max(record.term, Ordering::Relaxed);
                return Ok(false);
            }
            Err(e) => return Err(io("create", &path, e)),
        };
        let written = encode_record(record, &path).and_then(|bytes| {
            file.write_all(&bytes).map_err(|e| io("write", &path, e))?;
            file.sync_all().map_err(|e| io("fsync", &path, e))
        });
        if let Err(e) = written {
            // The create won the term but the record never landed (a full disk, say): nobody
            // acts on an empty term, so take the file back, or every node would have to wait
            // out `lease_timeout` before claiming past it, and every retry would cost that again.
            drop(file);
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        self.highest_known.fetch_max(record.term, Ordering::Relaxed);
        self.sync_dir()?;
        self.prune(record.term);
        Ok(true)
    }

    fn write(&self, record: &TermRecord) -> Result<(), LeaseError> {
        let path = self.term_path(record.term);
        let tmp = self
            .dir
            .join(format!(".term-{}.{}.tmp", record.term, record.node));
        let bytes = encode_record(record, &path)?;
        let written = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)
            .map_err(|e| io("create", &tmp, e))
            .and_then(|mut file| {
                file.write_all(&bytes).map_err(|e| io("write", &tmp, e))?;
                file.sync_all().map_err(|e| io("fsync", &tmp, e))
            });
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        fs::rename(&tmp, &path).map_err(|e| io("rename", &path, e))?;
        self.sync_dir()
    }

    fn history(&self, limit: usize) -> Result<Vec<TermFile>, LeaseError> {
        let mut terms = self.listed_terms()?;
        terms.sort_unstable_by(|a, b| b.cmp(a));
        let mut out = Vec::new();
        for t in terms.into_iter().take(limit) {
            if let Some(f) = self.read_term(t)? {
                out.push(f);
            }
        }
        Ok(out)
    }

    fn set_paused(&self, paused: bool, by: &str) -> Result<(), LeaseError> {
        let path = self.dir.join(PAUSE_FILE);
        if paused {
            fs::write(&path, format!("paused by {by} at {}\n", unix_ms()))
                .map_err(|e| io("write", &path, e))?;
        } else {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io("remove", &path, e)),
            }
        }
        self.sync_dir()
    }
}

/// Wall-clock milliseconds since the epoch, for history records only.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Runs lease calls off the async loop, each on a blocking thread with a deadline.
///
/// A call that misses its deadline keeps its thread (a syscall on a hung mount cannot be
/// cancelled), and until it returns every new call fails at once with [`LeaseError::Stuck`]
/// instead of piling up threads behind it.
#[derive(Clone)]
pub struct LeaseIo {
    lease: Arc<dyn Lease>,
    busy: Arc<AtomicBool>,
    deadline: Duration,
}

impl LeaseIo {
    pub fn new(lease: Arc<dyn Lease>, deadline: Duration) -> Self {
        LeaseIo {
            lease,
            busy: Arc::new(AtomicBool::new(false)),
            deadline,
        }
    }

    pub async fn call<T, F>(&self, f: F) -> Result<T, LeaseError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Lease) -> Result<T, LeaseError> + Send + 'static,
    {
        if self.busy.swap(true, Ordering::AcqRel) {
            return Err(LeaseError::Stuck);
        }
        let lease = self.lease.clone();
        let busy = self.busy.clone();
        let task = tokio::task::spawn_blocking(move || {
            let result = f(lease.as_ref());
            busy.store(false, Ordering::Release);
            result
        });
        match tokio::time::timeout(self.deadline, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => {
                self.busy.store(false, Ordering::Release);
                Err(LeaseError::Join(join.to_string()))
            }
            Err(_) => Err(LeaseError::Timeout(self.deadline)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(term: u64, node: &str, counter: u64) -> TermRecord {
        TermRecord {
            term,
            node: node.into(),
            counter,
            state: "active".into(),
            released: false,
            handover_to: None,
            reason: "test".into(),
            end_reason: None,
            started_unix_ms: 1,
            renewed_unix_ms: 1,
        }
    }

    #[test]
    fn a_renewal_keeps_the_file_size_so_a_stale_cached_size_cannot_cut_it() {
        let dir = tempfile::tempdir().unwrap();
        let a = FileLease::open(dir.path()).unwrap();
        assert!(a.claim(&record(1, "a", 0)).unwrap());
        let path = dir.path().join("term-1");
        let size = fs::metadata(&path).unwrap().len();
        assert_eq!(size % RECORD_BLOCK as u64, 0);
        let mut released = record(1, "a", 123_456_789);
        released.released = true;
        released.handover_to = Some("b".into());
        released.end_reason = Some("releasing term 1: my Jenkins failed 3 health checks".into());
        a.write(&released).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), size);
        match a.read(1).unwrap() {
            Some(TermFile::Valid(r)) => assert_eq!(r, released),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn exclusive_create_has_one_winner() {
        let dir = tempfile::tempdir().unwrap();
        let a = FileLease::open(dir.path()).unwrap();
        let b = FileLease::open(dir.path()).unwrap();
        assert!(a.claim(&record(1, "a", 0)).unwrap());
        assert!(!b.claim(&record(1, "b", 0)).unwrap());
        let snap = b.observe().unwrap();
        assert_eq!(snap.newest, Some(TermFile::Valid(record(1, "a", 0))));
        assert!(!snap.paused);
    }

    #[test]
    fn renewals_are_seen_by_a_fresh_read() {
        let dir = tempfile::tempdir().unwrap();
        let a = FileLease::open(dir.path()).unwrap();
        let b = FileLease::open(dir.path()).unwrap();
        a.claim(&record(3, "a", 0)).unwrap();
        for c in 1..5 {
            a.write(&record(3, "a", c)).unwrap();
            match b.observe().unwrap().newest {
                Some(TermFile::Valid(r)) => assert_eq!(r.counter, c),
                other => panic!("{other:?}"),
            }
        }
        // No temp files are left behind.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn newest_term_wins_and_history_is_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let a = FileLease::open(dir.path()).unwrap();
        for t in 1..=4 {
            a.claim(&record(t, if t % 2 == 0 { "b" } else { "a" }, 0))
                .unwrap();
        }
        assert_eq!(a.observe().unwrap().newest.unwrap().term(), 4);
        let h = a.history(10).unwrap();
        assert_eq!(
            h.iter().map(|f| f.term()).collect::<Vec<_>>(),
            vec![4, 3, 2, 1]
        );
    }

    #[test]
    fn a_garbage_reason_is_one_line() {
        // Found by the term_file fuzz target: serde_json quotes an unknown key as decoded, so a
        // `\r` escape in the file became a line break in the reason `status` and `history` show.
        let content = br#"{"te\rrm\n":7,"node":"a"}"#;
        match parse_term_file(7, content) {
            TermFile::Garbage { why, .. } => {
                assert!(!why.contains(['\n', '\r']), "{why:?}");
                assert!(why.contains(r"unknown field `te\rrm\n`"), "{why}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn garbage_files_are_taken_terms_but_never_records() {
        for (content, expect) in [
            (&b""[..], "empty"),
            (b"{\"term\": 7, \"node\"", "not a term record"),
            (b"\x00\xff garbage", "not a term record"),
            (b"[]", "not a term record"),
        ] {
            match parse_term_file(7, content) {
                TermFile::Garbage { term: 7, why } => assert!(why.contains(expect), "{why}"),
                other => panic!("{other:?}"),
            }
        }
        let wrong = serde_json::to_vec(&record(6, "a", 1)).unwrap();
        assert!(matches!(
            parse_term_file(7, &wrong),
            TermFile::Garbage { .. }
        ));
        let big = vec![b' '; (MAX_RECORD + 10) as usize];
        assert!(matches!(parse_term_file(7, &big), TermFile::Garbage { .. }));

        // A garbage newest term is a taken term: the next claim is for the one after it.
        let dir = tempfile::tempdir().unwrap();
        let a = FileLease::open(dir.path()).unwrap();
        fs::write(dir.path().join("term-5"), "{oops").unwrap();
        let snap = a.observe().unwrap();
        match snap.obs() {
            LeaseObs::Garbage { term, why } => {
                assert_eq!(term, 5);
                assert!(why.contains("not a term record"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            !a.claim(&record(5, "a", 0)).unwrap(),
            "a garbage term is still taken"
        );
    }

    #[test]
    fn pause_flag_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let a = FileLease::open(dir.path()).unwrap();
        a.set_paused(true, "ops").unwrap();
        assert!(a.observe().unwrap().paused);
        a.set_paused(false, "ops").unwrap();
        a.set_paused(false, "ops").unwrap();
        assert!(!a.observe().unwrap().paused);
    }

    #[test]
    fn old_terms_are_pruned_past_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let a = FileLease::open(dir.path()).unwrap();
        for t in 1..=HISTORY_KEEP + 5 {
            a.claim(&record(t, "a", 0)).unwrap();
        }
        let h = a.history(usize::MAX).unwrap();
        assert_eq!(h.len() as u64, HISTORY_KEEP);
        assert_eq!(h[0].term(), HISTORY_KEEP + 5);
    }

    struct Hung;
    impl Lease for Hung {
        fn observe(&self) -> Result<LeaseSnapshot, LeaseError> {
            std::thread::sleep(Duration::from_millis(300));
            Ok(LeaseSnapshot {
                newest: None,
                paused: false,
            })
        }
        fn read(&self, _: u64) -> Result<Option<TermFile>, LeaseError> {
            Ok(None)
        }
        fn claim(&self, _: &TermRecord) -> Result<bool, LeaseError> {
            Ok(true)
        }
        fn write(&self, _: &TermRecord) -> Result<(), LeaseError> {
            Ok(())
        }
        fn history(&self, _: usize) -> Result<Vec<TermFile>, LeaseError> {
            Ok(vec![])
        }
        fn set_paused(&self, _: bool, _: &str) -> Result<(), LeaseError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_hung_call_times_out_and_blocks_new_calls_until_it_returns() {
        let io = LeaseIo::new(Arc::new(Hung), Duration::from_millis(50));
        assert!(matches!(
            io.call(|l| l.observe()).await,
            Err(LeaseError::Timeout(_))
        ));
        assert!(matches!(
            io.call(|l| l.observe()).await,
            Err(LeaseError::Stuck)
        ));
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(io.call(|l| l.claim(&record(1, "a", 0))).await.unwrap());
    }
}
