//! [`HomeWatch`]: the watcher as the daemon uses it. It picks the mode, runs the scans on a
//! blocking thread (storage can hang), keeps the inotify watches in step with the scans, and
//! hands out [`ReloadPlan`]s:
//!
//! ```no_run
//! # async fn example(config: &jenkins_ha::config::Config) -> Result<(), jenkins_ha::watch::WatchError> {
//! use jenkins_ha::watch::{BatchConfig, HomeWatch};
//! let mut watch = HomeWatch::start(
//!     &config.jenkins.home,
//!     &config.lease_dir,
//!     &config.watch,
//!     BatchConfig::new(config.watch.debounce),
//! )
//! .await?;
//! tracing::info!("watching JENKINS_HOME: {}", watch.reason());
//! loop {
//!     let plan = watch.next_plan().await?; // an Err is one failed scan: log it, call again
//!     tracing::info!("{plan}");
//!     // if plan.full: jenkins.reload(), then wait_ready; then reload_item() for plan.items,
//!     // and on JenkinsError::ItemNotLoaded call watch.item_not_loaded(name).
//! }
//! # }
//! ```
//!
//! Scans: in poll mode every `watch.poll_interval`; in inotify mode on each tick, plus a safety
//! rescan every [`INOTIFY_SAFETY_RESCAN`] (10 minutes), which catches what inotify cannot report
//! (a watch added just after a write, a lost tick) without pretending to make inotify work on a
//! shared filesystem: a change made through another mount is still seen only minutes later.
//!
//! [`HomeWatch::next_plan`] is cancel-safe: a scan that finishes while nobody waits keeps its
//! result for the next call.

use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::lock;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::WatchConfig;
use super::{
    detect, spawn_inotify, BatchConfig, Batcher, Effective, InotifyWatcher, ReloadPlan, ScanResult,
    ScanStats, Scanner, WatchError,
};

/// In inotify mode, a full scan this often even without events.
pub const INOTIFY_SAFETY_RESCAN: Duration = Duration::from_secs(600);

/// The parts that do blocking IO, used on a blocking thread.
struct Io {
    scanner: Scanner,
    inotify: Option<InotifyWatcher>,
}

impl Io {
    fn scan(&mut self) -> Result<ScanResult, WatchError> {
        let result = self.scanner.scan()?;
        let remounted = self.scanner.take_remounted();
        if let Some(inotify) = self.inotify.as_mut() {
            if remounted {
                inotify.rewatch(self.scanner.watch_dirs())?;
            } else {
                inotify.sync(self.scanner.watch_dirs())?;
            }
        }
        Ok(result)
    }
}

/// How long after a scan the next one comes without a tick.
fn scan_interval(mode: Effective, poll_interval: Duration) -> Duration {
    match mode {
        Effective::Poll => poll_interval,
        Effective::Inotify => INOTIFY_SAFETY_RESCAN,
    }
}

/// The JENKINS_HOME watcher: scans, classifies and batches; see the module docs.
pub struct HomeWatch {
    mode: Effective,
    reason: String,
    io: Arc<Mutex<Io>>,
    ticks: mpsc::Receiver<()>,
    results_tx: mpsc::UnboundedSender<Result<ScanResult, WatchError>>,
    results: mpsc::UnboundedReceiver<Result<ScanResult, WatchError>>,
    batcher: Batcher,
    origin: Instant,
    poll_interval: Duration,
    scanning: bool,
    scan_wanted: bool,
    next_scan: Instant,
    items: usize,
    last_stats: Option<ScanStats>,
    problems: Vec<String>,
}

impl HomeWatch {
    /// Detects the mode, runs the baseline scan and starts inotify if that is the mode.
    pub async fn start(
        home: &Path,
        lease_dir: &Path,
        config: &WatchConfig,
        batch: BatchConfig,
    ) -> Result<Self, WatchError> {
        let (mode, reason) = detect(home, config.mode)?;
        let (tick_tx, ticks) = mpsc::channel(1);
        let home = home.to_path_buf();
        let lease_dir = lease_dir.to_path_buf();
        let (io, baseline) = tokio::task::spawn_blocking(move || {
            let scanner = Scanner::new(&home, Some(&lease_dir))?;
            let inotify = match mode {
                Effective::Inotify => Some(spawn_inotify(&home, Some(&lease_dir), tick_tx)?),
                Effective::Poll => None,
            };
            let mut io = Io { scanner, inotify };
            let baseline = io.scan()?;
            Ok::<_, WatchError>((io, baseline))
        })
        .await
        .map_err(|e| WatchError::Join(e.to_string()))??;
        let (results_tx, results) = mpsc::unbounded_channel();
        let now = Instant::now();
        let mut watch = HomeWatch {
            mode,
            reason,
            io: Arc::new(Mutex::new(io)),
            ticks,
            results_tx,
            results,
            batcher: Batcher::new(batch),
            origin: now,
            poll_interval: config.poll_interval,
            scanning: false,
            scan_wanted: false,
            next_scan: now + scan_interval(mode, config.poll_interval),
            items: 0,
            last_stats: None,
            problems: Vec::new(),
        };
        watch.absorb(baseline);
        tracing::info!(
            "watching JENKINS_HOME ({}): {} items, baseline in {:?}",
            watch.reason,
            watch.items,
            watch.last_stats.map(|s| s.duration).unwrap_or_default()
        );
        Ok(watch)
    }

    pub fn mode(&self) -> Effective {
        self.mode
    }

    /// Why this mode, for `status`.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The items known after the last scan (jobs and folders).
    pub fn items(&self) -> usize {
        self.items
    }

    /// The work the last successful scan did.
    pub fn last_stats(&self) -> Option<ScanStats> {
        self.last_stats
    }

    /// Scans now and returns everything pending, ignoring the debounce and the full-reload gap:
    /// a promotion calls this so that edits seen by nobody yet are applied with it.
    pub async fn flush(&mut self) -> Result<Option<ReloadPlan>, WatchError> {
        // Let a scan already running finish first, then scan once more for the latest state.
        while self.scanning {
            match self.results.recv().await {
                Some(result) => self.finish_scan(result)?,
                None => break,
            }
        }
        self.start_scan();
        if let Some(result) = self.results.recv().await {
            self.finish_scan(result)?;
        }
        let now = self.now();
        Ok(self.batcher.take_now(now))
    }

    /// Everything pending now, without a new scan (and ignoring the debounce and the
    /// full-reload gap): what the last scans found.
    pub fn take_pending(&mut self) -> Option<ReloadPlan> {
        let now = self.now();
        self.batcher.take_now(now)
    }

    /// Whether changes wait in the batch (debounce, or the full-reload gap).
    pub fn pending(&self) -> bool {
        self.batcher.is_pending()
    }

    /// What the last scan could not read.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// See [`Batcher::item_not_loaded`].
    pub fn item_not_loaded(&mut self, full_name: &str) {
        let now = self.now();
        self.batcher.item_not_loaded(now, full_name);
    }

    /// Every item (job and folder) the last scan found, sorted (a folder before its children);
    /// `None` while a scan holds the scanner (the storage may hang): ask again later.
    pub fn item_names(&self) -> Option<Vec<String>> {
        self.io.try_lock().ok().map(|io| io.scanner.items())
    }

    /// Items whose per-item reload failed (Jenkins did not answer, say): they go back into the
    /// batch as edited, so the next plan (or a promotion's flush) reloads them again.
    pub fn retry_items(&mut self, items: &[String]) {
        let now = self.now();
        self.batcher.push(
            now,
            items
                .iter()
                .map(|item| super::Change::item(super::ChangeKind::Modified, item.clone())),
        );
    }

    /// See [`Batcher::force_full`].
    pub fn force_full(&mut self, reason: impl Into<String>) {
        let now = self.now();
        self.batcher.force_full(now, reason);
    }

    /// Puts a plan that was not carried out (its full reload failed or was abandoned) back into
    /// the batch: its items as edited, and a full reload if it had one. The next plan, or the
    /// flush of a promotion, carries them again.
    pub fn requeue(&mut self, plan: &ReloadPlan) {
        let now = self.now();
        self.batcher.push(
            now,
            plan.items
                .iter()
                .map(|item| super::Change::item(super::ChangeKind::Modified, item.clone())),
        );
        if plan.full {
            self.batcher
                .force_full(now, format!("again, the last one did not finish: {plan}"));
        }
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn absorb(&mut self, result: ScanResult) {
        let now = self.now();
        self.items = result.stats.items;
        self.last_stats = Some(result.stats);
        self.problems = result.problems;
        for change in &result.changes {
            tracing::debug!("JENKINS_HOME: {change}");
        }
        self.batcher.push(now, result.changes);
    }

    fn start_scan(&mut self) {
        self.scanning = true;
        self.scan_wanted = false;
        let io = Arc::clone(&self.io);
        let tx = self.results_tx.clone();
        tokio::task::spawn_blocking(move || {
            let result = lock(&io).scan();
            let _ = tx.send(result);
        });
    }

    /// Waits for the next plan. An `Err` is one scan that failed (the home is unreadable or was
    /// unmounted); the state is kept and the next call scans again after the poll interval.
    pub async fn next_plan(&mut self) -> Result<ReloadPlan, WatchError> {
        self.scan_until_plan(true).await
    }

    /// Scans as [`HomeWatch::next_plan`] does, but never hands out a plan: the changes stay in
    /// the batch for a later `next_plan` or [`HomeWatch::flush`]. For a node that does not know
    /// yet what its Jenkins is for. Returns only with a failed scan, as `next_plan` does.
    pub async fn hold_plans(&mut self) -> WatchError {
        loop {
            if let Err(e) = self.scan_until_plan(false).await {
                return e;
            }
        }
    }

    /// The scan loop; with `hand_out`, it returns the first plan that is due.
    async fn scan_until_plan(&mut self, hand_out: bool) -> Result<ReloadPlan, WatchError> {
        loop {
            while let Ok(result) = self.results.try_recv() {
                self.finish_scan(result)?;
            }
            if hand_out {
                if let Some(plan) = self.batcher.take(self.now()) {
                    return Ok(plan);
                }
            }
            if !self.scanning && (self.scan_wanted || Instant::now() >= self.next_scan) {
                self.start_scan();
            }
            let mut wake = Instant::now() + INOTIFY_SAFETY_RESCAN;
            if !self.scanning {
                wake = wake.min(self.next_scan);
            }
            if let Some(due) = self.batcher.next_due().filter(|_| hand_out) {
                wake = wake.min(self.origin + due);
            }
            let inotify = self.mode == Effective::Inotify;
            tokio::select! {
                Some(result) = self.results.recv() => self.finish_scan(result)?,
                Some(()) = self.ticks.recv(), if inotify => self.scan_wanted = true,
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    fn finish_scan(&mut self, result: Result<ScanResult, WatchError>) -> Result<(), WatchError> {
        self.scanning = false;
        let now = Instant::now();
        match result {
            Ok(result) => {
                self.next_scan = now + scan_interval(self.mode, self.poll_interval);
                self.absorb(result);
                Ok(())
            }
            Err(e) => {
                self.next_scan = now + self.poll_interval;
                Err(e)
            }
        }
    }
}

impl std::fmt::Debug for HomeWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HomeWatch")
            .field("mode", &self.mode)
            .field("reason", &self.reason)
            .field("items", &self.items)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::watch::WatchMode;
    use std::fs;

    fn config(mode: WatchMode) -> WatchConfig {
        WatchConfig {
            mode,
            poll_interval: Duration::from_millis(50),
            debounce: Duration::from_millis(100),
        }
    }

    fn home() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("jobs/F/jobs/b")).unwrap();
        fs::write(dir.path().join("config.xml"), "<hudson/>").unwrap();
        fs::write(dir.path().join("jobs/F/config.xml"), "<folder/>").unwrap();
        fs::write(dir.path().join("jobs/F/jobs/b/config.xml"), "<job/>").unwrap();
        dir
    }

    /// A watcher over `dir` (lease directory inside it), debounce 100 ms.
    async fn started(dir: &tempfile::TempDir, mode: WatchMode) -> HomeWatch {
        let lease = dir.path().join(".jenkins-ha");
        HomeWatch::start(
            dir.path(),
            &lease,
            &config(mode),
            BatchConfig::new(Duration::from_millis(100)),
        )
        .await
        .unwrap()
    }

    /// Edits the nested job F/b and adds the job `new`: a full reload plus one item reload.
    fn edit_nested_and_add_job(dir: &tempfile::TempDir) {
        fs::write(dir.path().join("jobs/F/jobs/b/config.xml"), "<job>2</job>").unwrap();
        fs::create_dir_all(dir.path().join("jobs/new")).unwrap();
        fs::write(dir.path().join("jobs/new/config.xml"), "<job/>").unwrap();
    }

    async fn plan_within(watch: &mut HomeWatch, secs: u64) -> ReloadPlan {
        tokio::time::timeout(Duration::from_secs(secs), watch.next_plan())
            .await
            .expect("a plan in time")
            .unwrap()
    }

    #[tokio::test]
    async fn poll_mode_end_to_end() {
        let dir = home();
        let mut watch = started(&dir, WatchMode::Poll).await;
        assert_eq!(watch.mode(), Effective::Poll);
        assert_eq!(watch.items(), 2);
        fs::write(dir.path().join("jobs/F/jobs/b/config.xml"), "<job>2</job>").unwrap();
        let plan = plan_within(&mut watch, 5).await;
        assert!(!plan.full);
        assert_eq!(plan.items, vec!["F/b"]);
        fs::create_dir_all(dir.path().join("jobs/new")).unwrap();
        fs::write(dir.path().join("jobs/new/config.xml"), "<job/>").unwrap();
        let plan = plan_within(&mut watch, 5).await;
        assert!(plan.full);
        assert_eq!(plan.reasons, vec!["job new added"]);
    }

    #[tokio::test]
    async fn a_requeued_plan_comes_back_whole() {
        let dir = home();
        let mut watch = started(&dir, WatchMode::Inotify).await;
        edit_nested_and_add_job(&dir);
        let plan = plan_within(&mut watch, 1).await;
        assert!(plan.full);
        assert_eq!(plan.items, vec!["F/b"]);
        assert!(!watch.pending());
        // Its full reload was abandoned: a promotion's flush takes all of it again.
        watch.requeue(&plan);
        assert!(watch.pending());
        let again = watch.flush().await.unwrap().expect("the requeued plan");
        assert!(again.full);
        assert_eq!(again.items, vec!["F/b"]);
    }

    #[tokio::test]
    async fn held_plans_wait_in_the_batch() {
        let dir = home();
        let mut watch = started(&dir, WatchMode::Inotify).await;
        edit_nested_and_add_job(&dir);
        // Scans go on, well past the debounce, but no plan comes out.
        let held = tokio::time::timeout(Duration::from_millis(800), watch.hold_plans()).await;
        assert!(held.is_err(), "hold_plans returned: {held:?}");
        assert!(
            watch.pending(),
            "the changes were scanned and wait in the batch"
        );
        // Then the first call hands them all out at once.
        let plan = plan_within(&mut watch, 1).await;
        assert!(plan.full);
        assert_eq!(plan.items, vec!["F/b"]);
        assert!(!watch.pending());
    }

    #[tokio::test]
    async fn inotify_mode_end_to_end() {
        let dir = home();
        let mut watch = started(&dir, WatchMode::Inotify).await;
        assert_eq!(watch.mode(), Effective::Inotify);
        // A new nested job: the tick comes from the watch on jobs/F/jobs.
        fs::create_dir_all(dir.path().join("jobs/F/jobs/c")).unwrap();
        fs::write(dir.path().join("jobs/F/jobs/c/config.xml"), "<job/>").unwrap();
        let plan = plan_within(&mut watch, 5).await;
        assert!(!plan.full, "a reload of F reads its new child");
        assert_eq!(plan.items, ["F"]);
        assert_eq!(plan.reasons, vec!["job F/c added"]);
        // Its config is then edited: the new directory was watched by the sync after the scan.
        tokio::time::sleep(Duration::from_millis(50)).await;
        fs::write(dir.path().join("jobs/F/jobs/c/config.xml"), "<job>2</job>").unwrap();
        let plan = plan_within(&mut watch, 5).await;
        assert_eq!(plan.items, vec!["F/c"]);
        assert!(!plan.full);
    }
}
