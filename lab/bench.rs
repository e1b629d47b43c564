//! The benchmark harness (`scripts/bench`, or `cargo run --release --example bench -- [--runs N]
//! [--only NAME[,NAME]]`). Every figure comes from real processes on loopback, built by the lab's
//! harness (`lab/cluster.rs`): Debian's HAProxy, two Jenkins stand-ins on one JENKINS_HOME, two
//! jenkins-ha sidecars, and bindfs mounts where NFS semantics matter.
//!
//! Sections (`--only` takes these names):
//! - `crash`: kill -9 of the active's Jenkins until HAProxy serves a 200 from the standby, at
//!   interval 250 ms, 500 ms and 1 s; beside it the manual design (HAProxy alone, `httpchk GET
//!   /login`, `inter 1s fall 1 rise 1`, a backup nobody reloads). Both count stale jobs: items
//!   whose in-memory config on the new serving Jenkins differs from the disk after 20 edits and
//!   2 new jobs made just before the kill.
//! - `host-death`: kill -9 of the active's sidecar and Jenkins together, at lease_timeout 2 s, 5 s
//!   and 10 s (interval = lease_timeout / 5).
//! - `switchover`: `jenkins-ha failover` under a paced wrk load through HAProxy.
//! - `propagation`: an edit through the active's bindfs mount until the standby's Jenkins shows
//!   it, at watch.poll_interval 250 ms, 500 ms and 1 s (debounce 100 ms).
//! - `footprint`: idle RSS and CPU of both daemons over 60 s, binary size, start-up time to the
//!   first decision, and the criterion figures of `benches/decide_tick.rs` when present.
//! - `flip`: from the claim (the new term file's mtime) until every HAProxy socket shows the new
//!   routing, with one and with two HAProxy instances.
//! - `etcd`: the crash failover and the host death again, on the term files and on
//!   `lease.backend: etcd` (a real 3-member etcd cluster the benchmark starts on loopback), run
//!   by run in turns, at timings in whole seconds (an etcd lease's TTL is whole seconds).
//!
//! Progress goes to stderr; the Markdown table (median, p90, max of N runs) and the timelines
//! of representative runs go to stdout.

#[path = "cluster.rs"]
mod cluster;
#[path = "etcd.rs"]
mod etcd;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cluster::{binaries, write_job, Cluster, Spec, NAMES};
use jenkins_ha::core::Role;
use nix::sys::signal::Signal;

const SECTIONS: [&str; 7] = [
    "crash",
    "host-death",
    "switchover",
    "propagation",
    "footprint",
    "flip",
    "etcd",
];

/// Jobs in every benchmark home (top-level), and jobs inside `folder`.
const JOBS: usize = 20;
const FOLDER_JOBS: usize = 5;
/// Debounce of the propagation rows.
const DEBOUNCE_MS: u64 = 100;
/// How long the idle daemons are watched for the footprint.
const IDLE_SECS: u64 = 60;
/// The switchover's wrk run: the failover starts this long into it, and the run lasts this long.
const WRK_LEAD: Duration = Duration::from_millis(200);
const WRK_SECS: u64 = 2;
/// Each wrk connection waits this long between requests (4 connections: about 2,500
/// requests/s here, so that a sub-second switchover still sees well over 1,000).
const WRK_DELAY_MS: u64 = 1;

struct Args {
    runs: usize,
    only: Vec<String>,
}

fn parse_args() -> Args {
    let mut args = Args {
        runs: 10,
        only: SECTIONS.iter().map(|s| s.to_string()).collect(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => {
                args.runs = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|n| *n > 0)
                    .unwrap_or_else(|| usage("--runs takes a positive number"))
            }
            "--only" => {
                let v = it
                    .next()
                    .unwrap_or_else(|| usage("--only takes a section name"));
                args.only = v.split(',').map(str::to_string).collect();
                for s in &args.only {
                    if !SECTIONS.contains(&s.as_str()) {
                        usage(&format!("unknown section {s:?}"));
                    }
                }
            }
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    args
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("bench: {problem}");
    }
    eprintln!(
        "usage: cargo run --release --example bench -- [--runs N] [--only {}]",
        SECTIONS.join("|")
    );
    std::process::exit(2)
}

// ---------------------------------------------------------------------------------------------
// The report

#[derive(Clone, Copy)]
enum Unit {
    Secs,
    Ms,
    Count,
    MiB,
    Ns,
}

impl Unit {
    fn fmt(self, v: f64) -> String {
        match self {
            Unit::Secs => format!("{v:.2} s"),
            Unit::Ms if v < 10.0 => format!("{v:.1} ms"),
            Unit::Ms => format!("{v:.0} ms"),
            Unit::Count => format!("{v:.0}"),
            Unit::MiB => format!("{v:.1} MiB"),
            Unit::Ns => format!("{v:.0} ns"),
        }
    }
}

/// Median (mean of the two middle values for an even count), p90 (nearest rank) and max.
fn stats(values: &[f64]) -> (f64, f64, f64) {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    let p90 = v[((n as f64 * 0.9).ceil() as usize).clamp(1, n) - 1];
    (median, p90, v[n - 1])
}

/// A goal: the figure must stay at or below `limit`.
struct Goal {
    limit: f64,
    text: String,
}

struct Row {
    section: &'static str,
    what: String,
    setting: String,
    median: String,
    p90: String,
    max: String,
    runs: String,
    goal: String,
}

#[derive(Default)]
struct Report {
    load_at_start: String,
    rows: Vec<Row>,
    notes: Vec<String>,
    timelines: Vec<(String, Vec<String>)>,
}

impl Report {
    fn add(
        &mut self,
        section: &'static str,
        what: &str,
        setting: &str,
        values: &[f64],
        unit: Unit,
        goal: Option<Goal>,
    ) {
        if values.is_empty() {
            self.rows.push(Row {
                section,
                what: what.into(),
                setting: setting.into(),
                median: "no run succeeded".into(),
                p90: String::new(),
                max: String::new(),
                runs: "0".into(),
                goal: goal
                    .map(|g| format!("{}: missed", g.text))
                    .unwrap_or_default(),
            });
            return;
        }
        let (median, p90, max) = stats(values);
        let goal = match goal {
            None => String::new(),
            Some(g) if max <= g.limit => format!("{}: **met** (every run)", g.text),
            Some(g) if median <= g.limit => {
                format!(
                    "{}: met at the median, **missed** by the slowest runs",
                    g.text
                )
            }
            Some(g) => format!("{}: **missed**", g.text),
        };
        let eprint_line = format!(
            "bench: {what} [{setting}]: median {}, p90 {}, max {} ({} runs)",
            unit.fmt(median),
            unit.fmt(p90),
            unit.fmt(max),
            values.len()
        );
        eprintln!("{eprint_line}");
        self.rows.push(Row {
            section,
            what: what.into(),
            setting: setting.into(),
            median: unit.fmt(median),
            p90: unit.fmt(p90),
            max: unit.fmt(max),
            runs: values.len().to_string(),
            goal,
        });
    }

    /// A row with one figure (or a sentence) instead of a distribution.
    fn add_text(
        &mut self,
        section: &'static str,
        what: &str,
        setting: &str,
        figure: &str,
        runs: &str,
        goal: &str,
    ) {
        eprintln!("bench: {what} [{setting}]: {figure}");
        self.rows.push(Row {
            section,
            what: what.into(),
            setting: setting.into(),
            median: figure.into(),
            p90: "—".into(),
            max: "—".into(),
            runs: runs.into(),
            goal: goal.into(),
        });
    }

    fn note(&mut self, note: String) {
        eprintln!("bench: note: {note}");
        self.notes.push(note);
    }

    fn print(&self, args: &Args, started: Instant) {
        println!();
        println!(
            "| # | measurement | setting | median | p90 | max | runs | goal |\n|---|---|---|---|---|---|---|---|"
        );
        for r in &self.rows {
            let n = SECTIONS
                .iter()
                .position(|s| *s == r.section)
                .map_or(0, |p| p + 1);
            println!(
                "| {n} | {} | {} | {} | {} | {} | {} | {} |",
                r.what, r.setting, r.median, r.p90, r.max, r.runs, r.goal
            );
        }
        println!();
        let cmd = if args.only.len() == SECTIONS.len() {
            format!(
                "cargo run --release --example bench -- --runs {}",
                args.runs
            )
        } else {
            format!(
                "cargo run --release --example bench -- --runs {} --only {}",
                args.runs,
                args.only.join(",")
            )
        };
        println!(
            "Machine: {} cores, {}, {}. Command: `{cmd}`; whole run {:.0} s; load average at the start {}, at the end {}.",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            os_release(),
            haproxy_version(),
            started.elapsed().as_secs_f64(),
            self.load_at_start,
            load_average()
        );
        for n in &self.notes {
            println!("- {n}");
        }
        for (title, lines) in &self.timelines {
            println!();
            println!("{title}:");
            println!("```");
            for l in lines {
                println!("{l}");
            }
            println!("```");
        }
    }
}

/// The 1-minute load average (other work on the machine shows here).
fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

fn os_release() -> String {
    fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "unknown OS".into())
}

fn haproxy_version() -> String {
    Command::new("haproxy")
        .arg("-v")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(2).map(|v| format!("HAProxy {v}")))
        })
        .unwrap_or_else(|| "HAProxy (version unknown)".into())
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A pseudo-random duration in [0, max): the kill lands at a random phase of the health checks'
/// and ticks instead of right after the benchmark's own settling poll.
fn random_phase(max: Duration) -> Duration {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ (std::process::id() as u64) << 32;
    // splitmix64
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    max.mul_f64((z >> 11) as f64 / (1u64 << 53) as f64)
}

fn wall() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// One request through HAProxy: when it left and came back (since the prober's start), and
/// whether it was a 200 from the expected node.
#[derive(Debug, Clone, Copy)]
struct Probe {
    sent: Duration,
    done: Duration,
    ok: bool,
}

/// Sends `GET /login` through HAProxy every 5 ms, each request on its own without waiting for
/// the ones in flight. (One request at a time would measure HAProxy's retries instead: a
/// request routed to a dead server is retried after a 1 s turn-around, three times.)
struct Prober {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    probes: std::sync::Arc<std::sync::Mutex<Vec<Probe>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Prober {
    fn start(c: &Cluster, k: usize, expect: usize, start: Instant) -> Prober {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let stop = Arc::new(AtomicBool::new(false));
        let probes = Arc::new(Mutex::new(Vec::new()));
        let http = c.http.clone();
        let url = format!("http://127.0.0.1:{}/login", c.haproxies[k].front_port);
        let (stop2, probes2) = (stop.clone(), probes.clone());
        let task = tokio::spawn(async move {
            let mut inflight = Vec::new();
            while !stop2.load(Ordering::Relaxed) {
                let (http, url, probes) = (http.clone(), url.clone(), probes2.clone());
                inflight.push(tokio::spawn(async move {
                    let sent = start.elapsed();
                    let r = http
                        .send(
                            hyper::Method::GET,
                            &url,
                            &[],
                            bytes::Bytes::new(),
                            Duration::from_secs(2),
                        )
                        .await;
                    let ok = r.is_ok_and(|r| {
                        r.status.as_u16() == 200
                            && r.header("X-Standin-Node") == Some(NAMES[expect])
                    });
                    let done = start.elapsed();
                    probes
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(Probe { sent, done, ok });
                }));
                inflight.retain(|t| !t.is_finished());
                tokio::time::sleep(ms(5)).await;
            }
            for t in inflight {
                let _ = t.await;
            }
        });
        Prober { stop, probes, task }
    }

    /// The first 200 from the expected node so far: when it came back.
    fn first_ok(&self) -> Option<Duration> {
        self.probes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|p| p.ok)
            .map(|p| p.done)
            .min()
    }

    /// Waits for the first 200, up to `timeout` after the start.
    async fn wait_first_ok(&self, start: Instant, timeout: Duration) -> Option<Duration> {
        loop {
            if let Some(t) = self.first_ok() {
                return Some(t);
            }
            if start.elapsed() > timeout {
                return None;
            }
            tokio::time::sleep(ms(2)).await;
        }
    }

    /// Stops, waits for the requests in flight and returns every probe.
    async fn finish(self) -> Vec<Probe> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.task.await;
        let mut probes = self
            .probes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        probes.sort_by_key(|p| p.sent);
        probes
    }
}

/// When uninterrupted service began: the first 200 that came back for a request sent after the
/// last request that failed.
fn uninterrupted_from(probes: &[Probe]) -> Option<Duration> {
    let last_failed = probes.iter().filter(|p| !p.ok).map(|p| p.sent).max();
    probes
        .iter()
        .filter(|p| p.ok && last_failed.is_none_or(|f| p.sent > f))
        .map(|p| p.done)
        .min()
}

/// Waits until exactly one node is active, every HAProxy routes to it and serves from it, the
/// peer's Jenkins is healthy and quiet, the active's is not, and the standby's watcher has
/// scanned the home. Returns the active node.
async fn settle(c: &Cluster, timeout: Duration) -> Option<usize> {
    let start = Instant::now();
    let active = c.wait_one_active(timeout).await?;
    for k in 0..c.haproxies.len() {
        if !c.wait_routed(k, active, timeout).await {
            return None;
        }
        c.wait_served_by(k, active, timeout).await?;
    }
    let standby = 1 - active;
    c.wait(timeout.saturating_sub(start.elapsed()), || async {
        let a = c.status(active).await?;
        let s = c.status(standby).await?;
        let ok = a.active.as_deref() == Some(NAMES[active])
            && a.nodes[1].jenkins_healthy
            && a.nodes[1].role == Role::Standby
            && s.nodes[0].role == Role::Standby
            && s.nodes[0].watch.as_ref().is_some_and(|w| w.items > 0)
            && c.quieting_down(standby).await == Some(true)
            && c.quieting_down(active).await == Some(false);
        ok.then_some(active)
    })
    .await
}

/// A cluster with both sidecars, settled; `None` (after printing its logs' tail) otherwise.
/// Tried up to three times: the harness picks each port free and releases it for the process
/// that listens on it, and something else can take it in between.
async fn started(spec: Spec) -> Option<(Cluster, usize)> {
    for attempt in 1..=3 {
        let t = Instant::now();
        // A stand-in that cannot listen on its port fails the start with a panic (the
        // harness has already stopped what it started): try again on other ports.
        let start = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Cluster::start(spec.clone())
        }));
        let Ok(c) = start else {
            eprintln!("bench: the cluster did not start (attempt {attempt} of 3)");
            continue;
        };
        match settle(&c, Duration::from_secs(30)).await {
            Some(active) => {
                eprintln!(
                    "bench: (cluster up and settled in {:.1} s)",
                    t.elapsed().as_secs_f64()
                );
                return Some((c, active));
            }
            None => eprintln!(
                "bench: the cluster did not settle (attempt {attempt} of 3); logs:\n{}",
                tail(&c.logs(), 40)
            ),
        }
    }
    None
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The description in a config.xml (the stand-in's descriptions carry no markup).
fn description_of(xml: &str) -> String {
    xml.split_once("<description>")
        .and_then(|(_, rest)| rest.split_once("</description>"))
        .map(|(d, _)| d.to_string())
        .unwrap_or_default()
}

/// Every item on disk (`jobs/**/config.xml`, through folders) with its description.
fn disk_items(home: &Path) -> BTreeMap<String, String> {
    fn walk(jobs: &Path, prefix: &str, out: &mut BTreeMap<String, String>) {
        let Ok(entries) = fs::read_dir(jobs) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let dir = e.path();
            let Ok(xml) = fs::read_to_string(dir.join("config.xml")) else {
                continue;
            };
            let full = format!("{prefix}{name}");
            out.insert(full.clone(), description_of(&xml));
            if dir.join("jobs").is_dir() {
                walk(&dir.join("jobs"), &format!("{full}/"), out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&home.join("jobs"), "", &mut out);
    out
}

/// What stand-in `i` has in memory: full name → description.
async fn memory_items(c: &Cluster, i: usize) -> Option<BTreeMap<String, String>> {
    let state = c.jenkins_state(i).await?;
    Some(
        state["items"]
            .as_object()?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect(),
    )
}

/// Items whose in-memory description differs from the disk, is missing, or is gone from disk.
fn stale_count(disk: &BTreeMap<String, String>, memory: &BTreeMap<String, String>) -> usize {
    let differ = disk
        .iter()
        .filter(|(name, desc)| memory.get(*name) != Some(*desc))
        .count();
    let gone = memory.keys().filter(|n| !disk.contains_key(*n)).count();
    differ + gone
}

/// 20 edits (15 top-level jobs, the 5 jobs in `folder`) and 2 new jobs, through `home`.
fn edit_before_kill(home: &Path, tag: &str) {
    for j in 0..JOBS - FOLDER_JOBS {
        write_job(home, &format!("job-{j}"), &format!("job {j} edited {tag}"));
    }
    for j in 0..FOLDER_JOBS {
        write_job(
            home,
            &format!("folder/nested-{j}"),
            &format!("nested {j} edited {tag}"),
        );
    }
    write_job(home, &format!("new-{tag}-a"), "new a");
    write_job(home, &format!("new-{tag}-b"), "new b");
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_escape = false;
    for ch in s.chars() {
        match (in_escape, ch) {
            (false, '\x1b') => in_escape = true,
            (false, c) => out.push(c),
            (true, 'm') => in_escape = false,
            (true, _) => {}
        }
    }
    out
}

/// Sidecar log lines of both nodes stamped within [from, to] (wall clock), as
/// `+1.234 s jenkins02 INFO ...`, relative to `origin`.
fn sidecar_log_lines(c: &Cluster, origin: f64, from: f64, to: f64) -> Vec<String> {
    let mut lines: Vec<(f64, String)> = Vec::new();
    for name in NAMES {
        let path = c.dir.join(format!("{name}-sidecar.log"));
        for line in fs::read_to_string(&path).unwrap_or_default().lines() {
            let line = strip_ansi(line);
            let Some((stamp, rest)) = line.split_once(' ') else {
                continue;
            };
            let Ok(t) = humantime::parse_rfc3339(stamp) else {
                continue;
            };
            let t = t
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            if t >= from && t <= to {
                lines.push((t, format!("{:+.3} s {name} {}", t - origin, rest.trim())));
            }
        }
    }
    lines.sort_by(|a, b| a.0.total_cmp(&b.0));
    lines.into_iter().map(|(_, l)| l).collect()
}

/// The wall-clock stamp of the first log line of `node` containing `needle`, after `from`.
fn log_stamp(c: &Cluster, node: &str, needle: &str, from: f64) -> Option<f64> {
    let path = c.dir.join(format!("{node}-sidecar.log"));
    fs::read_to_string(path).ok()?.lines().find_map(|line| {
        let line = strip_ansi(line);
        let (stamp, rest) = line.split_once(' ')?;
        let t = humantime::parse_rfc3339(stamp)
            .ok()?
            .duration_since(UNIX_EPOCH)
            .ok()?
            .as_secs_f64();
        (t >= from && rest.contains(needle)).then_some(t)
    })
}

/// The run whose value is the median (the lower middle for an even count).
fn median_index(values: &[f64]) -> Option<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|a, b| values[*a].total_cmp(&values[*b]));
    idx.get(values.len().saturating_sub(1) / 2).copied()
}

// ---------------------------------------------------------------------------------------------
// 1. Crash failover

struct CrashRun {
    /// Kill → the first 200 from the standby.
    secs: f64,
    /// Kill → the start of uninterrupted 200s from the standby (after its promotion reload).
    stable_secs: f64,
    /// Items stale on the standby's Jenkins at the kill (edits not yet followed).
    stale_at_kill: usize,
    stale_at_200: usize,
    stale_when_active: Option<usize>,
    timeline: Vec<String>,
    /// CPU time both sidecars used from the kill until the promotion was over, ms.
    sidecar_cpu_ms: f64,
    /// From the kill: the old active's "releasing term" and the standby's "won term" log lines.
    released: Option<f64>,
    won: Option<f64>,
}

/// Stand-in `i` shows every item as on disk (the standby followed the edits), within `timeout`.
async fn wait_current(c: &Cluster, i: usize, timeout: Duration) -> bool {
    c.wait(timeout, || async {
        let memory = memory_items(c, i).await?;
        (stale_count(&disk_items(&c.home), &memory) == 0).then_some(())
    })
    .await
    .is_some()
}

/// A crash failover with jenkins-ha. The 20 edits and 2 new jobs are made through the active's
/// mount; with `followed`, the kill waits until the standby's Jenkins shows them (the steady
/// state), otherwise it comes right after the writes (the promotion must pick them up).
async fn crash_jenkins_ha(
    interval_ms: u64,
    run: usize,
    bindfs: bool,
    followed: bool,
    etcd_lease: Option<(Vec<String>, String)>,
) -> Option<CrashRun> {
    let spec = Spec {
        interval: ms(interval_ms),
        fall: 3,
        lease_timeout: ms(interval_ms * 6),
        jobs: JOBS,
        folder_jobs: FOLDER_JOBS,
        bindfs,
        etcd_lease,
        ..Spec::default()
    };
    let (mut c, active) = started(spec).await?;
    let standby = 1 - active;
    let t_edit = Instant::now();
    edit_before_kill(
        &c.hosts[active].home.clone(),
        &format!("r{run}{}", if followed { "f" } else { "k" }),
    );
    if followed {
        if !wait_current(&c, standby, Duration::from_secs(15)).await {
            eprintln!("bench: the standby did not follow the edits within 15 s");
            return None;
        }
        // Its Jenkins passes `rise` checks again after the reload that followed them.
        c.wait(Duration::from_secs(10), || async {
            c.status(active).await?.nodes[1]
                .jenkins_healthy
                .then_some(())
        })
        .await?;
        tokio::time::sleep(random_phase(ms(interval_ms))).await;
    }
    let edit_wait = t_edit.elapsed().as_secs_f64();
    let disk = disk_items(&c.home);
    let stale_at_kill = stale_count(&disk, &memory_items(&c, standby).await?);
    let sidecar_pids = [0, 1].map(|i| c.hosts[i].sidecar.as_ref().map_or(0, |p| p.pid().as_raw()));
    let cpu_before: u64 = sidecar_pids.iter().filter_map(|p| cpu_ticks(*p)).sum();
    let w0 = wall();
    let t0 = Instant::now();
    let prober = Prober::start(&c, 0, standby, t0);
    c.kill_jenkins(active);
    let Some(took) = prober.wait_first_ok(t0, Duration::from_secs(60)).await else {
        eprintln!(
            "bench: no 200 from the standby within 60 s\n{}",
            tail(&c.logs(), 60)
        );
        return None;
    };
    let stale_at_200 = stale_count(&disk, &memory_items(&c, standby).await?);
    // Keep asking until the promotion is over (quiet-down cancelled), and 300 ms more.
    let promoted = c
        .wait(Duration::from_secs(20), || async {
            (c.quieting_down(standby).await == Some(false)).then_some(())
        })
        .await;
    let cpu_after: u64 = sidecar_pids.iter().filter_map(|p| cpu_ticks(*p)).sum();
    tokio::time::sleep(ms(300)).await;
    let probes = prober.finish().await;
    let stable = uninterrupted_from(&probes).unwrap_or(took);
    let stale_when_active = match promoted {
        Some(()) => Some(stale_count(&disk, &memory_items(&c, standby).await?)),
        None => None,
    };
    let t_down = Instant::now();
    let timeline = sidecar_log_lines(&c, w0, w0 - 0.01, w0 + stable.as_secs_f64() + 0.01);
    let released = log_stamp(&c, NAMES[active], "releasing term", w0).map(|t| t - w0);
    let won = log_stamp(&c, NAMES[standby], "won term", w0).map(|t| t - w0);
    drop(c);
    eprintln!(
        "bench: (edits followed in {edit_wait:.1} s; cluster removed in {:.1} s)",
        t_down.elapsed().as_secs_f64()
    );
    Some(CrashRun {
        secs: took.as_secs_f64(),
        stable_secs: stable.as_secs_f64(),
        stale_at_kill,
        stale_at_200,
        stale_when_active,
        timeline,
        sidecar_cpu_ms: cpu_after.saturating_sub(cpu_before) as f64 * 1000.0
            / clock_ticks_per_second(),
        released,
        won,
    })
}

async fn crash_manual(run: usize) -> Option<(f64, usize)> {
    let spec = Spec {
        manual_haproxy: true,
        jobs: JOBS,
        folder_jobs: FOLDER_JOBS,
        ..Spec::default()
    };
    let mut c = Cluster::prepare(spec);
    c.wait_served_by(0, 0, Duration::from_secs(20)).await?;
    // Both servers UP in HAProxy's eyes (the backup's first check passed).
    c.wait(Duration::from_secs(10), || async {
        let states = c.haproxy_states(0).await?;
        states
            .iter()
            .filter(|s| s.backend == "jenkins_http")
            .all(|s| s.op_state == 2)
            .then_some(())
    })
    .await?;
    tokio::time::sleep(random_phase(Duration::from_secs(1))).await;
    edit_before_kill(&c.home.clone(), &format!("m{run}"));
    let t0 = Instant::now();
    let prober = Prober::start(&c, 0, 1, t0);
    c.kill_jenkins(0);
    let took = prober.wait_first_ok(t0, Duration::from_secs(30)).await;
    prober.finish().await;
    let took = took?;
    let disk = disk_items(&c.home);
    let stale = stale_count(&disk, &memory_items(&c, 1).await?);
    Some((took.as_secs_f64(), stale))
}

async fn section_crash(report: &mut Report, runs: usize, slow_runs: usize) {
    for (interval, bindfs, followed) in [
        (250u64, false, true),
        (500, false, true),
        (1000, false, true),
        (500, true, true),
        (500, true, false),
    ] {
        let n = if followed { runs } else { slow_runs };
        let setting = format!(
            "jenkins-ha, interval {interval} ms, fall 3, lease_timeout {} ms{}{}",
            interval * 6,
            if bindfs {
                ", each node on its own bindfs mount"
            } else {
                ""
            },
            if followed {
                ""
            } else {
                "; the edits written right before the kill"
            }
        );
        let (mut secs, mut stable) = (Vec::new(), Vec::new());
        let (mut at_kill, mut at_200, mut when_active) = (Vec::new(), Vec::new(), Vec::new());
        let mut timelines = Vec::new();
        let mut cpu: Vec<f64> = Vec::new();
        let (mut detect, mut handover, mut serve) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..n {
            match crash_jenkins_ha(interval, run, bindfs, followed, None).await {
                Some(r) => {
                    eprintln!(
                        "bench: crash interval {interval} ms run {}/{n}: first 200 {:.2} s, uninterrupted from {:.2} s; stale at the kill {}, at the first 200 {}, once active {:?}",
                        run + 1,
                        r.secs,
                        r.stable_secs,
                        r.stale_at_kill,
                        r.stale_at_200,
                        r.stale_when_active
                    );
                    secs.push(r.secs);
                    stable.push(r.stable_secs);
                    at_kill.push(r.stale_at_kill as f64);
                    at_200.push(r.stale_at_200 as f64);
                    if let Some(s) = r.stale_when_active {
                        when_active.push(s as f64);
                    }
                    timelines.push(r.timeline);
                    cpu.push(r.sidecar_cpu_ms);
                    if let (Some(rel), Some(won)) = (r.released, r.won) {
                        detect.push(rel);
                        handover.push((won - rel) * 1000.0);
                        serve.push(r.secs - won);
                    }
                }
                None => eprintln!(
                    "bench: crash interval {interval} ms run {}: FAILED",
                    run + 1
                ),
            }
        }
        let goal = (interval == 500 && followed).then(|| Goal {
            limit: 2.0,
            text: "≤ 2 s".into(),
        });
        report.add(
            "crash",
            "crash failover: kill -9 of the active's Jenkins → first 200 from the standby",
            &setting,
            &secs,
            Unit::Secs,
            goal,
        );
        report.add(
            "crash",
            "… → uninterrupted 200s from the standby (its promotion reload over)",
            &setting,
            &stable,
            Unit::Secs,
            None,
        );
        report.add(
            "crash",
            "where the time goes (a): kill → the active logs \"releasing term\" (fall checks + the next decision tick)",
            &setting,
            &detect,
            Unit::Secs,
            None,
        );
        report.add(
            "crash",
            "(b): \"releasing term\" → the standby logs \"won term\"",
            &setting,
            &handover,
            Unit::Ms,
            None,
        );
        report.add(
            "crash",
            "(c): \"won term\" → first 200 (HAProxy flip, then the stand-in's promotion reload, about 0.35 s)",
            &setting,
            &serve,
            Unit::Secs,
            None,
        );
        if !followed {
            report.add(
                "crash",
                "stale jobs on the standby at the kill (of 20 edited + 2 new)",
                &setting,
                &at_kill,
                Unit::Count,
                None,
            );
        }
        report.add(
            "crash",
            "stale jobs on the new active at its first 200 (of 20 edited + 2 new)",
            &setting,
            &at_200,
            Unit::Count,
            Some(Goal {
                limit: 0.0,
                text: "0".into(),
            }),
        );
        report.add(
            "crash",
            "stale jobs once its quiet-down is cancelled (builds may start)",
            &setting,
            &when_active,
            Unit::Count,
            Some(Goal {
                limit: 0.0,
                text: "0".into(),
            }),
        );
        if let Some(m) = median_index(&secs) {
            report.timelines.push((
                format!(
                    "Crash failover ({setting}), the median run (first 200 at {:.2} s, uninterrupted from {:.2} s; both sidecars used {:.0} ms of CPU from the kill to the end of the promotion): both sidecars' logs from the kill (+0)",
                    secs[m], stable[m], cpu[m]
                ),
                timelines[m].clone(),
            ));
        }
    }
    let mut secs = Vec::new();
    let mut stale = Vec::new();
    for run in 0..runs {
        match crash_manual(run).await {
            Some((s, n)) => {
                eprintln!(
                    "bench: crash manual run {}/{runs}: {s:.2} s, stale {n}",
                    run + 1
                );
                secs.push(s);
                stale.push(n as f64);
            }
            None => eprintln!("bench: crash manual run {}: FAILED", run + 1),
        }
    }
    let setting = "manual design: HAProxy alone, httpchk GET /login, inter 1s fall 1 rise 1, a backup nobody reloads";
    report.add(
        "crash",
        "crash failover: kill -9 of the serving Jenkins → first 200 from the backup",
        setting,
        &secs,
        Unit::Secs,
        None,
    );
    report.add(
        "crash",
        "stale jobs on the backup at its first 200 (of 20 edited + 2 new)",
        setting,
        &stale,
        Unit::Count,
        None,
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Host death

/// Kill → first 200, kill → "won term", and the timeline.
async fn host_death(
    lease_ms: u64,
    etcd_lease: Option<(Vec<String>, String)>,
) -> Option<(f64, Option<f64>, Vec<String>)> {
    let interval = lease_ms / 5;
    let spec = Spec {
        interval: ms(interval),
        fall: 3,
        lease_timeout: ms(lease_ms),
        jobs: JOBS,
        etcd_lease,
        ..Spec::default()
    };
    let (mut c, active) = started(spec).await?;
    let standby = 1 - active;
    tokio::time::sleep(random_phase(ms(interval))).await;
    let w0 = wall();
    let t0 = Instant::now();
    // Both processes get SIGKILL before either is reaped: the host dies at once.
    for p in [&c.hosts[active].sidecar, &c.hosts[active].jenkins]
        .into_iter()
        .flatten()
    {
        p.signal(Signal::SIGKILL);
    }
    let prober = Prober::start(&c, 0, standby, t0);
    c.kill_sidecar(active);
    c.kill_jenkins(active);
    let took = prober.wait_first_ok(t0, Duration::from_secs(60)).await;
    prober.finish().await;
    let Some(took) = took else {
        eprintln!(
            "bench: no 200 from the standby within 60 s\n{}",
            tail(&c.logs(), 60)
        );
        return None;
    };
    let took = took.as_secs_f64();
    let won = log_stamp(&c, NAMES[standby], "won term", w0).map(|t| t - w0);
    Some((
        took,
        won,
        sidecar_log_lines(&c, w0, w0 - 0.01, w0 + took + 0.01),
    ))
}

async fn section_host_death(report: &mut Report, runs: usize) {
    for lease in [2000u64, 5000, 10000] {
        let n = runs;
        let setting = format!(
            "lease_timeout {} s, interval {} ms, fall 3",
            lease / 1000,
            lease / 5
        );
        let mut secs = Vec::new();
        let mut overhead = Vec::new();
        let (mut claim, mut serve) = (Vec::new(), Vec::new());
        let mut timelines = Vec::new();
        for run in 0..n {
            match host_death(lease, None).await {
                Some((s, won, t)) => {
                    eprintln!(
                        "bench: host death lease {lease} ms run {}/{n}: {s:.2} s (won term at {won:?})",
                        run + 1
                    );
                    secs.push(s);
                    overhead.push(s - lease as f64 / 1000.0);
                    if let Some(w) = won {
                        claim.push(w - lease as f64 / 1000.0);
                        serve.push(s - w);
                    }
                    timelines.push(t);
                }
                None => eprintln!("bench: host death lease {lease} ms run {}: FAILED", run + 1),
            }
        }
        let limit = lease as f64 / 1000.0 + 1.0;
        report.add(
            "host-death",
            "host death: kill -9 of sidecar + Jenkins → first 200 from the standby",
            &setting,
            &secs,
            Unit::Secs,
            Some(Goal {
                limit,
                text: format!("≤ lease_timeout + 1 s = {limit:.0} s"),
            }),
        );
        report.add(
            "host-death",
            "overhead above lease_timeout",
            &setting,
            &overhead,
            Unit::Secs,
            Some(Goal {
                limit: 1.0,
                text: "≤ 1 s".into(),
            }),
        );
        report.add(
            "host-death",
            "where it goes (a): the standby logs \"won term\", after the kill, minus lease_timeout (it counts from its first sight of the holder's last renewal, which it peeks for every quarter interval; below 0 when that renewal came before the kill)",
            &setting,
            &claim,
            Unit::Secs,
            None,
        );
        report.add(
            "host-death",
            "(b): \"won term\" → first 200 (HAProxy flip, then the stand-in's promotion reload)",
            &setting,
            &serve,
            Unit::Secs,
            None,
        );
        if let Some(m) = median_index(&secs) {
            report.timelines.push((
                format!(
                    "Host death at lease_timeout {} s, the median run ({:.2} s): the standby's log from the kill (+0)",
                    lease / 1000,
                    secs[m]
                ),
                timelines[m].clone(),
            ));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 7. The etcd lease beside the term files

/// The crash interval of the `etcd` section: lease_timeout 3 s (interval × 6, as in `crash`).
const ETCD_CRASH_INTERVAL_MS: u64 = 500;
/// The host-death lease_timeout of the `etcd` section (interval 1 s, as in `host-death`).
const ETCD_HOST_DEATH_LEASE_MS: u64 = 5000;

/// The crash failover and the host death on both lease backends, at the same timing, one run of
/// each backend after the other so that both see the same machine. The timings are whole
/// seconds: an etcd lease's TTL is `lease_timeout` rounded up to seconds, so 3 s and 5 s give
/// etcd exactly the lease the term files get. Two masters, as in the other sections.
async fn section_etcd(report: &mut Report, runs: usize) {
    let etcd = etcd::EtcdCluster::start(3);
    eprintln!("bench: etcd: 3 members at {}", etcd.endpoints().join(", "));
    let mut prefixes = 0;
    let mut lease_for = |etcd_backend: bool| {
        prefixes += 1;
        etcd_backend.then(|| (etcd.endpoints(), format!("/jenkins-ha/bench-{prefixes}")))
    };
    let backends = [("term files", false), ("etcd, 3 members", true)];

    let interval = ETCD_CRASH_INTERVAL_MS;
    let mut crash: [Vec<CrashRun>; 2] = Default::default();
    for run in 0..runs {
        for (b, (name, on_etcd)) in backends.iter().enumerate() {
            match crash_jenkins_ha(interval, run, false, true, lease_for(*on_etcd)).await {
                Some(r) => {
                    eprintln!(
                        "bench: crash on {name} run {}/{runs}: first 200 {:.2} s",
                        run + 1,
                        r.secs
                    );
                    crash[b].push(r);
                }
                None => eprintln!("bench: crash on {name} run {}: FAILED", run + 1),
            }
        }
    }
    for (b, (name, _)) in backends.iter().enumerate() {
        let setting = format!(
            "lease on {name}; interval {interval} ms, fall 3, lease_timeout {} s",
            interval * 6 / 1000
        );
        let runs = &crash[b];
        let secs: Vec<f64> = runs.iter().map(|r| r.secs).collect();
        report.add(
            "etcd",
            "crash failover: kill -9 of the active's Jenkins → first 200 from the standby",
            &setting,
            &secs,
            Unit::Secs,
            Some(Goal {
                limit: 2.0,
                text: "≤ 2 s".into(),
            }),
        );
        let (mut detect, mut handover, mut serve) = (Vec::new(), Vec::new(), Vec::new());
        for r in runs {
            if let (Some(rel), Some(won)) = (r.released, r.won) {
                detect.push(rel);
                handover.push((won - rel) * 1000.0);
                serve.push(r.secs - won);
            }
        }
        report.add(
            "etcd",
            "where the time goes (a): kill → the active logs \"releasing term\"",
            &setting,
            &detect,
            Unit::Secs,
            None,
        );
        report.add(
            "etcd",
            "(b): \"releasing term\" → the standby logs \"won term\" (the release written, heard, the claim written)",
            &setting,
            &handover,
            Unit::Ms,
            None,
        );
        report.add(
            "etcd",
            "(c): \"won term\" → first 200",
            &setting,
            &serve,
            Unit::Secs,
            None,
        );
    }

    let lease = ETCD_HOST_DEATH_LEASE_MS;
    let mut death: [Vec<(f64, Option<f64>)>; 2] = Default::default();
    let mut timelines: [Vec<Vec<String>>; 2] = Default::default();
    for run in 0..runs {
        for (b, (name, on_etcd)) in backends.iter().enumerate() {
            match host_death(lease, lease_for(*on_etcd)).await {
                Some((s, won, t)) => {
                    eprintln!(
                        "bench: host death on {name} run {}/{runs}: {s:.2} s (won term at {won:?})",
                        run + 1
                    );
                    death[b].push((s, won));
                    timelines[b].push(t);
                }
                None => eprintln!("bench: host death on {name} run {}: FAILED", run + 1),
            }
        }
    }
    let lease_s = lease as f64 / 1000.0;
    for (b, (name, _)) in backends.iter().enumerate() {
        let setting = format!(
            "lease on {name}; lease_timeout {} s, interval {} ms, fall 3",
            lease / 1000,
            lease / 5
        );
        let secs: Vec<f64> = death[b].iter().map(|(s, _)| *s).collect();
        let overhead: Vec<f64> = secs.iter().map(|s| s - lease_s).collect();
        let claim: Vec<f64> = death[b]
            .iter()
            .filter_map(|(_, won)| won.map(|w| w - lease_s))
            .collect();
        let limit = lease_s + 1.0;
        report.add(
            "etcd",
            "host death: kill -9 of sidecar + Jenkins → first 200 from the standby",
            &setting,
            &secs,
            Unit::Secs,
            Some(Goal {
                limit,
                text: format!("≤ lease_timeout + 1 s = {limit:.0} s"),
            }),
        );
        report.add(
            "etcd",
            "overhead above lease_timeout",
            &setting,
            &overhead,
            Unit::Secs,
            Some(Goal {
                limit: 1.0,
                text: "≤ 1 s".into(),
            }),
        );
        report.add(
            "etcd",
            "where it goes: the standby logs \"won term\", after the kill, minus lease_timeout (on etcd the claim also waits for etcd to expire the dead holder's key)",
            &setting,
            &claim,
            Unit::Secs,
            None,
        );
        if let Some(m) = median_index(&secs) {
            report.timelines.push((
                format!(
                    "Host death with the lease on {name} at lease_timeout {} s, the median run ({:.2} s): the standby's log from the kill (+0)",
                    lease / 1000,
                    secs[m]
                ),
                timelines[b][m].clone(),
            ));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Planned switchover under load

const WRK_SCRIPT: &str = r#"-- Paced load for the switchover benchmark: each connection waits a little between requests,
-- so the load is spread over the whole window instead of saturating the machine.
function delay()
  return DELAY_MS
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d status_errors=%d connect=%d read=%d write=%d timeout=%d p50_us=%d p99_us=%d max_us=%d duration_us=%d\n",
    summary.requests, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max, summary.duration))
end
"#;

#[derive(Debug, Default)]
struct WrkResult {
    requests: u64,
    failed: u64,
    p99_ms: f64,
    max_ms: f64,
    duration_s: f64,
}

fn parse_wrk(out: &str) -> Option<WrkResult> {
    let line = out.lines().find(|l| l.starts_with("BENCH "))?;
    let field = |k: &str| -> Option<f64> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .and_then(|v| v.parse().ok())
    };
    let failed = ["status_errors", "connect", "read", "write", "timeout"]
        .iter()
        .map(|k| field(k).unwrap_or(0.0) as u64)
        .sum();
    Some(WrkResult {
        requests: field("requests")? as u64,
        failed,
        p99_ms: field("p99_us")? / 1000.0,
        max_ms: field("max_us")? / 1000.0,
        duration_s: field("duration_us")? / 1e6,
    })
}

async fn section_switchover(report: &mut Report, runs: usize) {
    if Command::new("wrk").arg("--version").output().is_err() {
        report.note("switchover: wrk is not installed (apt-get install wrk); skipped".into());
        return;
    }
    let spec = Spec {
        interval: ms(500),
        fall: 3,
        lease_timeout: ms(3000),
        jobs: JOBS,
        ..Spec::default()
    };
    let setting = "interval 500 ms, lease_timeout 3 s; wrk -t1 -c4, each connection pausing 1 ms";
    let Some((c, mut active)) = started(spec).await else {
        report.note("switchover: the cluster did not settle".into());
        return;
    };
    let script = c.dir.join("paced.lua");
    fs::write(
        &script,
        WRK_SCRIPT.replace("DELAY_MS", &WRK_DELAY_MS.to_string()),
    )
    .expect("wrk script");
    let url = format!("http://127.0.0.1:{}/login", c.haproxies[0].front_port);
    let (mut failed, mut p99, mut max, mut took, mut requests) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut window_note = None;
    for run in 0..runs {
        let target = 1 - active;
        let wrk = Command::new("wrk")
            .args(["-t1", "-c4", &format!("-d{WRK_SECS}s"), "--latency", "-s"])
            .arg(&script)
            .arg(&url)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wrk");
        tokio::time::sleep(WRK_LEAD).await;
        let t = Instant::now();
        // Alternate the node the command runs on: it talks to its local sidecar either way.
        let (code, out, err) = c.cli(run % 2, &["failover"]);
        let duration = t.elapsed().as_secs_f64();
        let wrk_out = wrk.wait_with_output().expect("wait for wrk");
        let stdout = String::from_utf8_lossy(&wrk_out.stdout).into_owned();
        if code != Some(0) {
            eprintln!(
                "bench: switchover run {}: failover exited {code:?}: {out}{err}",
                run + 1
            );
            continue;
        }
        let Some(w) = parse_wrk(&stdout) else {
            eprintln!(
                "bench: switchover run {}: no result from wrk:\n{stdout}{}",
                run + 1,
                String::from_utf8_lossy(&wrk_out.stderr)
            );
            continue;
        };
        if WRK_LEAD.as_secs_f64() + duration > w.duration_s {
            window_note = Some(format!(
                "switchover: run {} outlasted wrk's run ({duration:.2} s from +{:.1} s in a {:.1} s run)",
                run + 1,
                WRK_LEAD.as_secs_f64(),
                w.duration_s
            ));
        }
        eprintln!(
            "bench: switchover run {}/{runs} to {}: {duration:.2} s, {} requests, {} failed, p99 {:.1} ms",
            run + 1,
            NAMES[target],
            w.requests,
            w.failed,
            w.p99_ms
        );
        failed.push(w.failed as f64);
        p99.push(w.p99_ms);
        max.push(w.max_ms);
        took.push(duration);
        requests.push(w.requests as f64 * duration / w.duration_s);
        active = target;
        // Let the old active settle as a quiet, healthy standby before the next switchover.
        let settled = c
            .wait(Duration::from_secs(15), || async {
                let a = c.status(active).await?;
                (a.nodes[1].jenkins_healthy
                    && a.nodes[1].role == Role::Standby
                    && c.quieting_down(1 - active).await == Some(true))
                .then_some(())
            })
            .await;
        if settled.is_none() {
            report.note(format!(
                "switchover: the cluster did not settle after run {}",
                run + 1
            ));
            break;
        }
        tokio::time::sleep(ms(500)).await;
    }
    if let Some(n) = window_note {
        report.note(n);
    }
    report.add(
        "switchover",
        "planned switchover: `jenkins-ha failover`, start to exit 0",
        setting,
        &took,
        Unit::Secs,
        None,
    );
    report.add(
        "switchover",
        "failed requests (non-2xx/3xx + socket errors) per wrk run",
        setting,
        &failed,
        Unit::Count,
        Some(Goal {
            limit: 0.0,
            text: "0".into(),
        }),
    );
    report.add(
        "switchover",
        &format!(
            "requests inside the switchover window (wrk's rate × the switchover's duration; wrk runs {WRK_SECS} s, the failover starts {:.1} s in)",
            WRK_LEAD.as_secs_f64()
        ),
        setting,
        &requests,
        Unit::Count,
        None,
    );
    report.add(
        "switchover",
        &format!("p99 latency over the {WRK_SECS} s wrk run that contains the switchover"),
        setting,
        &p99,
        Unit::Ms,
        None,
    );
    report.add(
        "switchover",
        &format!("slowest request of the {WRK_SECS} s wrk run"),
        setting,
        &max,
        Unit::Ms,
        None,
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Propagation

/// Polls stand-in `i` every 10 ms until `item` has `description`; the time since `start`.
async fn wait_item(
    c: &Cluster,
    i: usize,
    item: &str,
    description: &str,
    start: Instant,
) -> Option<f64> {
    let deadline = start + Duration::from_secs(30);
    loop {
        if let Some(state) = c.jenkins_state(i).await {
            if state["items"].get(item).and_then(|d| d.as_str()) == Some(description) {
                return Some(start.elapsed().as_secs_f64());
            }
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(ms(10)).await;
    }
}

async fn section_propagation(report: &mut Report, runs: usize, slow_runs: usize) {
    for poll in [250u64, 500, 1000] {
        let spec = Spec {
            interval: ms(500),
            fall: 3,
            lease_timeout: ms(3000),
            jobs: JOBS,
            folder_jobs: FOLDER_JOBS,
            bindfs: true,
            extra_config: format!(
                "watch:\n  mode: auto\n  poll_interval: {poll}ms\n  debounce: {DEBOUNCE_MS}ms\n"
            ),
            ..Spec::default()
        };
        let setting = format!(
            "poll_interval {poll} ms, debounce {DEBOUNCE_MS} ms (bindfs, mode auto → poll)"
        );
        let Some((c, active)) = started(spec).await else {
            report.note(format!(
                "propagation poll {poll} ms: the cluster did not settle"
            ));
            continue;
        };
        let standby = 1 - active;
        let mount = c.hosts[active].home.clone();
        let (mut top, mut nested, mut new) = (Vec::new(), Vec::new(), Vec::new());
        let mut last_new: Option<Instant> = None;
        for run in 0..runs {
            // A new job needs a full reload, and the standby makes at most one per 10 s: the
            // new-job runs are spaced so that each one is measured unthrottled.
            if run < slow_runs {
                if let Some(t) = last_new {
                    let gap = Duration::from_millis(10_500);
                    if t.elapsed() < gap {
                        tokio::time::sleep(gap - t.elapsed()).await;
                    }
                }
                let name = format!("prop-new-{run}");
                tokio::time::sleep(random_phase(ms(poll))).await;
                let t = Instant::now();
                write_job(&mount, &name, "brand new");
                last_new = Some(t);
                match wait_item(&c, standby, &name, "brand new", t).await {
                    Some(s) => new.push(s),
                    None => eprintln!("bench: propagation: {name} never reached the standby"),
                }
                // The full reload's 503 window must be over before the next edit is timed.
                c.wait(Duration::from_secs(10), || async {
                    let s = c.jenkins_state(standby).await?;
                    (!s["reloading"].as_bool().unwrap_or(true)).then_some(())
                })
                .await;
            }
            let job = format!("job-{}", run % (JOBS - FOLDER_JOBS));
            let desc = format!("propagated {run}");
            tokio::time::sleep(random_phase(ms(poll))).await;
            let t = Instant::now();
            write_job(&mount, &job, &desc);
            match wait_item(&c, standby, &job, &desc, t).await {
                Some(s) => top.push(s),
                None => {
                    eprintln!("bench: propagation: the edit of {job} never reached the standby")
                }
            }
            let job = format!("folder/nested-{}", run % FOLDER_JOBS);
            tokio::time::sleep(random_phase(ms(poll))).await;
            let t = Instant::now();
            write_job(&mount, &job, &desc);
            match wait_item(&c, standby, &job, &desc, t).await {
                Some(s) => nested.push(s),
                None => {
                    eprintln!("bench: propagation: the edit of {job} never reached the standby")
                }
            }
            eprintln!(
                "bench: propagation poll {poll} ms run {}/{runs}: top {:?}, nested {:?}, new {:?}",
                run + 1,
                top.last(),
                nested.last(),
                if run < slow_runs { new.last() } else { None }
            );
        }
        let goal = || {
            (poll == 500).then(|| Goal {
                limit: 1.5,
                text: "≤ 1.5 s".into(),
            })
        };
        report.add(
            "propagation",
            "propagation: top-level job edited through the active's mount → the standby's Jenkins shows it",
            &setting,
            &top,
            Unit::Secs,
            goal(),
        );
        report.add(
            "propagation",
            "propagation: job in a folder edited",
            &setting,
            &nested,
            Unit::Secs,
            goal(),
        );
        report.add(
            "propagation",
            "propagation: new job created (a full reload, one per 10 s at most)",
            &setting,
            &new,
            Unit::Secs,
            goal(),
        );
    }
    report.add_text(
        "propagation",
        "propagation in the manual design",
        "a standby nobody reloads",
        "never (until a human reloads it)",
        "—",
        "",
    );
}

// ---------------------------------------------------------------------------------------------
// 5. Footprint

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// A `kB` field of /proc/PID/status, in MiB.
fn status_mib(pid: i32, field: &str) -> Option<f64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

async fn section_footprint(report: &mut Report, runs: usize) {
    let binary = binaries().join("jenkins-ha");
    if let Ok(m) = fs::metadata(&binary) {
        report.add_text(
            "footprint",
            "release binary size (stripped, thin LTO)",
            "target/release/jenkins-ha",
            &format!("{:.1} MiB ({} bytes)", m.len() as f64 / 1048576.0, m.len()),
            "1",
            "",
        );
    }
    let spec = Spec {
        interval: ms(1000),
        fall: 3,
        lease_timeout: ms(5000),
        jobs: JOBS,
        folder_jobs: FOLDER_JOBS,
        bindfs: true,
        extra_config: "watch:\n  mode: auto\n  poll_interval: 1s\n  debounce: 500ms\n".into(),
        ..Spec::default()
    };
    let setting = format!(
        "interval 1 s, watch poll 1 s over a home of {} items (bindfs), HAProxy checking /active every 1 s",
        JOBS + FOLDER_JOBS + 1
    );
    let Some((mut c, active)) = started(spec).await else {
        report.note("footprint: the cluster did not settle".into());
        return;
    };
    let standby = 1 - active;
    // Let the start-up work (first scans, promotion reload) finish before measuring idle.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let pids =
        [active, standby].map(|i| c.hosts[i].sidecar.as_ref().expect("sidecar").pid().as_raw());
    let before = pids.map(cpu_ticks);
    let t = Instant::now();
    eprintln!("bench: footprint: watching both idle daemons for {IDLE_SECS} s");
    let mut rss_samples: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    while t.elapsed() < Duration::from_secs(IDLE_SECS) {
        for (n, pid) in pids.iter().enumerate() {
            if let Some(r) = status_mib(*pid, "VmRSS:") {
                rss_samples[n].push(r);
            }
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let elapsed = t.elapsed().as_secs_f64();
    let after = pids.map(cpu_ticks);
    let hz = clock_ticks_per_second();
    for (n, role) in ["active", "standby"].iter().enumerate() {
        let pid = pids[n];
        report.add(
            "footprint",
            &format!("idle {role}: VmRSS (sampled every 5 s over {IDLE_SECS} s)"),
            &setting,
            &rss_samples[n],
            Unit::MiB,
            Some(Goal {
                limit: 8.0,
                text: "≤ 8 MiB".into(),
            }),
        );
        if let Some(hwm) = status_mib(pid, "VmHWM:") {
            report.note(format!(
                "footprint: the idle {role}'s peak RSS (VmHWM) since its start: {hwm:.1} MiB"
            ));
        }
        if let (Some(b), Some(a)) = (before[n], after[n]) {
            let pct = (a - b) as f64 / hz / elapsed * 100.0;
            let limit = 0.5;
            report.add_text(
                "footprint",
                &format!("idle {role}: CPU, utime+stime over {IDLE_SECS} s, % of one core"),
                &setting,
                &format!(
                    "{pct:.2} % ({} ticks of 1/{hz:.0} s in {elapsed:.0} s)",
                    a - b
                ),
                "1",
                &if pct <= limit {
                    "≤ 0.5 %: **met**".to_string()
                } else {
                    "≤ 0.5 %: **missed**".to_string()
                },
            );
        }
    }
    // Start-up: restart the standby's sidecar and time it from spawn to a role other than
    // `starting` in its own /status.
    let mut startup = Vec::new();
    for run in 0..runs {
        c.sidecar(standby).terminate(Duration::from_secs(10));
        let t = Instant::now();
        c.start_sidecar(standby);
        let first = wait_fast(Duration::from_secs(20), || async {
            let s = c.status(standby).await?;
            (s.nodes[0].role != Role::Starting).then(|| t.elapsed().as_secs_f64())
        })
        .await;
        match first {
            Some(s) => {
                eprintln!(
                    "bench: start-up run {}/{runs}: {:.1} ms",
                    run + 1,
                    s * 1000.0
                );
                startup.push(s * 1000.0);
            }
            None => eprintln!("bench: start-up run {}: no decision within 20 s", run + 1),
        }
        tokio::time::sleep(ms(1500)).await;
    }
    report.add(
        "footprint",
        "start-up: spawn → the first decision (`/status` role other than `starting`), a standby",
        "interval 1 s",
        &startup,
        Unit::Ms,
        None,
    );
    // The pure core, from `cargo bench --bench decide_tick` (scripts/bench runs it first).
    let criterion = binaries()
        .parent()
        .map(|t| t.join("criterion").join("decide"))
        .unwrap_or_default();
    for (dir, what) in [
        (
            "steady active tick",
            "decide: a steady active tick (criterion)",
        ),
        (
            "steady standby tick",
            "decide: a steady standby tick (criterion)",
        ),
    ] {
        let estimates = criterion.join(dir).join("new").join("estimates.json");
        let Some(json) = fs::read(&estimates)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        else {
            report.note(format!(
                "{what}: no criterion result at {} (run `cargo bench --bench decide_tick`)",
                estimates.display()
            ));
            continue;
        };
        let median = json["median"]["point_estimate"]
            .as_f64()
            .unwrap_or(f64::NAN);
        let lo = json["median"]["confidence_interval"]["lower_bound"]
            .as_f64()
            .unwrap_or(f64::NAN);
        let hi = json["median"]["confidence_interval"]["upper_bound"]
            .as_f64()
            .unwrap_or(f64::NAN);
        let modified = fs::metadata(&estimates)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .map_or(String::new(), |age| {
                format!(", measured {:.0} min ago", age.as_secs_f64() / 60.0)
            });
        report.add_text(
            "footprint",
            what,
            "`Core::decide`, interval 500 ms, the same observation each tick",
            &format!(
                "{} (95 % CI of the median {}–{}){modified}",
                Unit::Ns.fmt(median),
                Unit::Ns.fmt(lo),
                Unit::Ns.fmt(hi)
            ),
            "criterion: 100 samples",
            "",
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 6. HAProxy flip latency

/// What every HAProxy shows for the switch to `i`: (the admin states are flipped: `i` ready and
/// the other in maint in both backends; and `i` is also UP by HAProxy's own health check, so
/// that traffic really goes to it).
async fn routing_to(c: &Cluster, i: usize) -> (bool, bool) {
    let (mut flipped, mut up) = (true, true);
    for k in 0..c.haproxies.len() {
        let Some(states) = c.haproxy_states(k).await else {
            return (false, false);
        };
        for b in ["jenkins_http", "jenkins_agent"] {
            let find = |n: usize| {
                states
                    .iter()
                    .find(|s| s.backend == b && s.server == NAMES[n])
            };
            let me = find(i);
            flipped &=
                me.is_some_and(|s| s.is_ready()) && find(1 - i).is_some_and(|s| s.is_maint());
            up &= me.is_some_and(|s| s.op_state == 2);
        }
    }
    (flipped, flipped && up)
}

fn mtime_secs(path: &Path) -> Option<f64> {
    let m = fs::metadata(path).ok()?;
    Some(m.mtime() as f64 + m.mtime_nsec() as f64 / 1e9)
}

struct FlipRun {
    /// Term file mtime → every socket shows the admin states flipped.
    flipped_ms: f64,
    /// Term file mtime → … and the new server UP by HAProxy's check.
    up_ms: f64,
    /// The log's "won term" → admin states flipped.
    flipped_from_log_ms: Option<f64>,
}

/// Kills the active's Jenkins and polls every socket every 2 ms until all route to the standby.
async fn flip_once(c: &Cluster, active: usize) -> Option<FlipRun> {
    let standby = 1 - active;
    let term = c.status(active).await?.lease.term?;
    let next: PathBuf = c.lease_dir().join(format!("term-{}", term + 1));
    let w0 = wall();
    let t0 = Instant::now();
    c.hosts[active].jenkins.as_ref()?.signal(Signal::SIGKILL);
    let mut claimed: Option<f64> = None;
    let mut flipped: Option<f64> = None;
    let up = loop {
        if claimed.is_none() {
            claimed = mtime_secs(&next);
        }
        let (f, u) = routing_to(c, standby).await;
        let now = wall();
        if f && flipped.is_none() {
            flipped = Some(now);
        }
        if u {
            break now;
        }
        if t0.elapsed() > Duration::from_secs(30) {
            eprintln!("bench: flip: not routed to the standby within 30 s");
            return None;
        }
        tokio::time::sleep(ms(2)).await;
    };
    let claimed = claimed.or_else(|| mtime_secs(&next))?;
    let flipped = flipped.unwrap_or(up);
    let won = log_stamp(c, NAMES[standby], &format!("won term {}", term + 1), w0);
    Some(FlipRun {
        flipped_ms: (flipped - claimed) * 1000.0,
        up_ms: (up - claimed) * 1000.0,
        flipped_from_log_ms: won.map(|w| (flipped - w) * 1000.0),
    })
}

async fn section_flip(report: &mut Report, runs: usize) {
    for haproxies in [1usize, 2] {
        let spec = Spec {
            interval: ms(500),
            fall: 3,
            lease_timeout: ms(3000),
            haproxies,
            jobs: JOBS,
            ..Spec::default()
        };
        let setting = format!(
            "{haproxies} HAProxy instance{}, interval 500 ms; sockets polled every 2 ms",
            if haproxies == 1 { "" } else { "s" }
        );
        let Some((mut c, mut active)) = started(spec).await else {
            report.note(format!(
                "flip with {haproxies} HAProxy: the cluster did not settle"
            ));
            continue;
        };
        let (mut flipped, mut up, mut from_log) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..runs {
            tokio::time::sleep(random_phase(ms(500))).await;
            let Some(r) = flip_once(&c, active).await else {
                break;
            };
            eprintln!(
                "bench: flip {haproxies} HAProxy run {}/{runs}: admin states flipped {:.1} ms after the term file's mtime ({:?} ms after the log's \"won term\"), the new server UP after {:.1} ms",
                run + 1,
                r.flipped_ms,
                r.flipped_from_log_ms.map(|v| (v * 10.0).round() / 10.0),
                r.up_ms
            );
            flipped.push(r.flipped_ms);
            up.push(r.up_ms);
            if let Some(l) = r.flipped_from_log_ms {
                from_log.push(l);
            }
            // The killed Jenkins comes back as the standby; the next run kills the new active's.
            let old = active;
            active = 1 - active;
            c.kill_jenkins(old);
            c.start_jenkins(old);
            let since = Instant::now();
            if settle(&c, Duration::from_secs(30)).await != Some(active) {
                report.note(format!(
                    "flip with {haproxies} HAProxy: the cluster did not settle after run {}",
                    run + 1
                ));
                break;
            }
            // A node that released its term may not take it back within lease_timeout.
            let guard = Duration::from_millis(3500);
            if since.elapsed() < guard {
                tokio::time::sleep(guard - since.elapsed()).await;
            }
        }
        report.add(
            "flip",
            "HAProxy flip: the new term file's mtime → every socket shows the new admin states (new ready, old maint)",
            &setting,
            &flipped,
            Unit::Ms,
            None,
        );
        report.add(
            "flip",
            "HAProxy flip: the log's \"won term\" line → every socket shows the new admin states",
            &setting,
            &from_log,
            Unit::Ms,
            None,
        );
        report.add(
            "flip",
            "HAProxy flip: the new term file's mtime → the new server also UP by HAProxy's check of /active (traffic flows)",
            &setting,
            &up,
            Unit::Ms,
            None,
        );
    }
}

// ---------------------------------------------------------------------------------------------

/// Like [`Cluster::wait`], polling every 5 ms.
async fn wait_fast<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(ms(5)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = parse_args();
    let started_at = Instant::now();
    let runs = args.runs;
    // The slow rows (new jobs spaced by the standby's 10 s gap between full reloads, and the
    // crash with edits written right before the kill) run half as often, at least 3 times.
    let slow_runs = (runs / 2).max(3).min(runs);
    binaries();
    eprintln!(
        "bench: {} run(s) per measurement ({slow_runs} for the slow rows); sections: {}",
        runs,
        args.only.join(", ")
    );
    let mut report = Report {
        load_at_start: load_average(),
        ..Report::default()
    };
    let want = |s: &str| args.only.iter().any(|o| o == s);
    if want("crash") {
        section_crash(&mut report, runs, slow_runs).await;
        if slow_runs < runs {
            report.note(format!(
                "the crash with the edits written right before the kill ran {slow_runs} times, not {runs}, to keep the whole benchmark under 20 minutes"
            ));
        }
    }
    if want("host-death") {
        section_host_death(&mut report, runs).await;
    }
    if want("switchover") {
        section_switchover(&mut report, runs).await;
    }
    if want("propagation") {
        section_propagation(&mut report, runs, slow_runs).await;
        if slow_runs < runs {
            report.note(format!(
                "propagation of a new job ran {slow_runs} times per poll interval, not {runs}: each waits out the standby's 10 s gap between full reloads, so that it is measured unthrottled"
            ));
        }
    }
    if want("footprint") {
        section_footprint(&mut report, runs).await;
    }
    if want("flip") {
        section_flip(&mut report, runs).await;
    }
    if want("etcd") {
        section_etcd(&mut report, runs).await;
    }
    report.print(&args, started_at);
}
