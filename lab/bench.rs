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
//! - `scale`: Jenkins at real scale, at 20, 1,000 and 10,000 jobs (generated homes: jobs in
//!   folders and nested folders, 5 builds each, some on a timer so builds run; each stand-in
//!   through its own bindfs mount; the stand-in's default load model, 0.3 s + 4 ms per item +
//!   20 us per build record, so a 10,000-job home loads in about 41 s). For each size: crash
//!   failover (kill -9 of the active's Jenkins), host death (kill -9 of its sidecar and Jenkins)
//!   and switchover (`jenkins-ha failover`), each until the first 200 from the new active, and
//!   each again when the promotion must do a full reload (a new top-level job written through
//!   the active's mount just before, once the standby's watcher has seen it). The promotion's
//!   kind comes from the new active's `status`. Between runs the killed processes restart and
//!   the standby becomes current again.
//! - `poll`: one poll cycle of the JENKINS_HOME watcher on the bindfs mount at 1,000 and 10,000
//!   jobs (the sidecars' own `watch.last_scan_ms` and `files_statted`, sampled while idle).
//! - `builds`: collisions, duplicate builds, lost timer fires and stale next numbers over
//!   alternating crash failovers and switchovers with builds running (a 1,000-job home, 40 jobs
//!   on a 3 s timer, 8 executors), judged by the build ledger (`lab/ledger.rs`).
//!
//! By default every section runs but `builds`, and `scale` and `poll` stop at 1,000 jobs: the
//! whole default run stays near half an hour on 2 cores. The 10,000-job rows and the build
//! ledger run with `--only scale,poll,builds` (sizes: `--sizes 20,1000,10000`, the default when
//! `--only` names `scale` or `poll`; runs at 10,000 jobs: `--big-runs N`, 3 by default; failovers
//! of each kind in `builds`: `--failovers N`, 50 by default).
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

use cluster::home_gen::HomeSpec;
use cluster::{binaries, write_job, Cluster, Spec, NAMES};
use jenkins_ha::core::Role;
use nix::sys::signal::Signal;

const SECTIONS: [&str; 10] = [
    "crash",
    "host-death",
    "switchover",
    "propagation",
    "footprint",
    "flip",
    "etcd",
    "scale",
    "poll",
    "builds",
];

/// What a run without `--only` leaves out (`builds` takes about 25 minutes on its own).
const NOT_BY_DEFAULT: [&str; 1] = ["builds"];
/// The home sizes of `scale` and `poll`: all of them when `--only` names those sections, the
/// small ones in a default run.
const ALL_SIZES: [usize; 3] = [20, 1_000, 10_000];
const DEFAULT_SIZES: [usize; 2] = [20, 1_000];
/// Homes this large run `--big-runs` times (each run waits out a 41 s load or more).
const BIG: usize = 10_000;

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
    /// Whether `--only` was given.
    only_given: bool,
    /// Home sizes for `scale` and `poll`.
    sizes: Vec<usize>,
    sizes_given: bool,
    /// Runs per measurement at 10,000 jobs or more (at most `runs`).
    big_runs: usize,
    /// Crash failovers, and as many switchovers, in `builds`.
    failovers: usize,
}

fn parse_args() -> Args {
    let mut args = Args {
        runs: 10,
        only: SECTIONS
            .iter()
            .filter(|s| !NOT_BY_DEFAULT.contains(s))
            .map(|s| s.to_string())
            .collect(),
        only_given: false,
        sizes: DEFAULT_SIZES.to_vec(),
        sizes_given: false,
        big_runs: 3,
        failovers: 50,
    };
    let positive = |v: Option<String>, what: &str| -> usize {
        v.and_then(|v| v.parse().ok())
            .filter(|n| *n > 0)
            .unwrap_or_else(|| usage(&format!("{what} takes a positive number")))
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
                args.only_given = true;
                for s in &args.only {
                    if !SECTIONS.contains(&s.as_str()) {
                        usage(&format!("unknown section {s:?}"));
                    }
                }
            }
            "--sizes" => {
                let v = it
                    .next()
                    .unwrap_or_else(|| usage("--sizes takes job counts, e.g. 20,1000"));
                args.sizes = v
                    .split(',')
                    .map(|n| {
                        n.trim()
                            .replace('_', "")
                            .parse()
                            .ok()
                            .filter(|n: &usize| *n > 0)
                            .unwrap_or_else(|| usage(&format!("--sizes: not a job count: {n:?}")))
                    })
                    .collect();
                args.sizes_given = true;
            }
            "--big-runs" => args.big_runs = positive(it.next(), "--big-runs"),
            "--failovers" => args.failovers = positive(it.next(), "--failovers"),
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    if args.only_given && !args.sizes_given {
        args.sizes = ALL_SIZES.to_vec();
    }
    args
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("bench: {problem}");
    }
    eprintln!(
        "usage: cargo run --release --example bench -- [--runs N] [--only {}] [--sizes 20,1000,10000] [--big-runs N] [--failovers N]",
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
        let mut cmd = format!(
            "cargo run --release --example bench -- --runs {}",
            args.runs
        );
        if args.only_given {
            cmd.push_str(&format!(" --only {}", args.only.join(",")));
        }
        let want = |s: &str| args.only.iter().any(|o| o == s);
        if args.sizes_given && (want("scale") || want("poll")) {
            let sizes: Vec<String> = args.sizes.iter().map(usize::to_string).collect();
            cmd.push_str(&format!(" --sizes {}", sizes.join(",")));
        }
        if want("scale") && args.sizes.iter().any(|s| *s >= BIG) {
            cmd.push_str(&format!(" --big-runs {}", args.big_runs));
        }
        if want("builds") {
            cmd.push_str(&format!(" --failovers {}", args.failovers));
        }
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
// 7. Jenkins at real scale

/// The timing of the scale clusters (the lab's): a lease of six intervals.
const SCALE_INTERVAL_MS: u64 = 500;
const SCALE_LEASE_MS: u64 = 3000;

/// A cluster on a generated home of `jobs` jobs (folders, nested folders, 5 builds each,
/// `timers` jobs on a timer), both stand-ins through their own bindfs mount, with the stand-in's
/// default load model (0.3 s + 4 ms per item + 20 us per build record).
fn scale_spec(jobs: usize, timers: usize, timer_every: Duration, standin_args: &[&str]) -> Spec {
    Spec {
        interval: ms(SCALE_INTERVAL_MS),
        fall: 3,
        lease_timeout: ms(SCALE_LEASE_MS),
        jobs: 0,
        home: Some(HomeSpec {
            jobs,
            folders: (jobs / 100).clamp(1, 100),
            top_level_jobs: (jobs / 100).clamp(4, 100).min(jobs),
            nested_every: 4,
            builds: 5,
            timers: timers.min(jobs),
            timer_every,
            threads: 2,
            ..HomeSpec::default()
        }),
        reload_base: ms(300),
        reload_per_item: ms(4),
        reload_timeout: Duration::from_secs(600),
        standin_args: standin_args.iter().map(|a| a.to_string()).collect(),
        bindfs: true,
        ..Spec::default()
    }
}

/// "10,000".
fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// `/standin/state?brief=1` of stand-in `i` (without the items: 10,000 of them weigh).
async fn brief_state(c: &Cluster, i: usize) -> Option<serde_json::Value> {
    c.standin_json(i, "state?brief=1").await
}

async fn quiet(c: &Cluster, i: usize) -> Option<bool> {
    brief_state(c, i).await?.get("quietingDown")?.as_bool()
}

/// Waits until exactly one node is active and served through HAProxy, out of quiet-down (its
/// promotion over), and the other is a healthy, quiet standby that is current and knows what
/// its Jenkins loaded (its own `status`). Returns the active.
async fn settle_scale(c: &Cluster, timeout: Duration) -> Option<usize> {
    let start = Instant::now();
    let left = || timeout.saturating_sub(start.elapsed());
    let active = c.wait_one_active(timeout).await?;
    if !c.wait_routed(0, active, left()).await {
        return None;
    }
    c.wait_served_by(0, active, left()).await?;
    let standby = 1 - active;
    c.wait(left(), || async {
        let a = c.status(active).await?;
        let s = c.status(standby).await?;
        let me = &s.nodes[0];
        let ok = a.active.as_deref() == Some(NAMES[active])
            && a.nodes[1].role == Role::Standby
            && a.nodes[1].jenkins_healthy
            && me.role == Role::Standby
            && me.jenkins_healthy
            && me.current
            && me.loaded.as_deref() == Some("known")
            && quiet(c, standby).await == Some(true)
            && quiet(c, active).await == Some(false);
        ok.then_some(active)
    })
    .await
}

/// What the stand-ins loaded at start-up, for the notes: proof of the home's size and model.
async fn load_note(c: &Cluster, jobs: usize) -> (String, Duration) {
    let Some(state) = brief_state(c, 0).await else {
        return ("the stand-in's state is unknown".into(), Duration::ZERO);
    };
    let last = &state["lastLoad"];
    let model = &state["model"];
    let modelled = last["modelledMs"].as_u64().unwrap_or(0);
    (
        format!(
            "{} jobs: the stand-ins' start-up load read {} items and {} build records in {:.1} s (modelled {:.1} s: base {} ms, {} us per item, {} us per build record)",
            thousands(jobs),
            thousands(last["items"].as_u64().unwrap_or(0) as usize),
            thousands(last["buildEntries"].as_u64().unwrap_or(0) as usize),
            last["elapsedMs"].as_u64().unwrap_or(0) as f64 / 1000.0,
            modelled as f64 / 1000.0,
            model["reloadBaseMs"],
            model["loadPerItemUs"],
            model["loadPerBuildEntryUs"],
        ),
        Duration::from_millis(modelled),
    )
}

/// Boots a scale cluster as two hosts booting do, waits for both loads and for the first settled
/// state (the first active's full reload, the standby's check item by item). Returns the
/// cluster, its active, the load note and the modelled load time.
async fn boot_scale(spec: Spec, jobs: usize) -> Option<(Cluster, usize, String, Duration)> {
    let t = Instant::now();
    eprintln!(
        "bench: generating a {}-job home and booting",
        thousands(jobs)
    );
    let mut c = tokio::task::block_in_place(|| Cluster::boot(spec));
    let generated = t.elapsed();
    tokio::task::block_in_place(|| {
        for i in 0..2 {
            c.wait_jenkins_loaded(i, 0);
        }
    });
    let (note, load) = load_note(&c, jobs).await;
    eprintln!(
        "bench: (home generated and processes started in {:.1} s; both Jenkins loaded after {:.1} s) {note}",
        generated.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    let patience = Duration::from_secs(120) + load * 4;
    match settle_scale(&c, patience).await {
        Some(active) => {
            eprintln!(
                "bench: (settled {:.1} s after the boot: {} active, {} a current standby)",
                t.elapsed().as_secs_f64(),
                NAMES[active],
                NAMES[1 - active]
            );
            Some((c, active, note, load))
        }
        None => {
            eprintln!(
                "bench: the {}-job cluster did not settle in {:.0} s; logs:\n{}",
                thousands(jobs),
                patience.as_secs_f64(),
                tail(&c.logs(), 60)
            );
            None
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Failure {
    Crash,
    HostDeath,
    Switchover,
}

impl Failure {
    fn what(self) -> &'static str {
        match self {
            Failure::Crash => "crash failover: kill -9 of the active's Jenkins → first 200 from the new active",
            Failure::HostDeath => "host death: kill -9 of the active's sidecar and Jenkins → first 200 from the new active",
            Failure::Switchover => "switchover: `jenkins-ha failover`, start → exit 0",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Failure::Crash => "crash",
            Failure::HostDeath => "host death",
            Failure::Switchover => "switchover",
        }
    }
}

struct ScaleRun {
    /// The kill (or the command's start) → the first 200 from the new active.
    first_ok: f64,
    /// … → the start of uninterrupted 200s from the new active (its promotion over).
    uninterrupted: f64,
    /// The switchover command, start to exit.
    command: Option<f64>,
    /// With a full reload forced: the write → the standby's watcher listing the new job.
    seen_after: Option<f64>,
    promotion: Option<jenkins_ha::status::PromotionRecord>,
    /// Full reloads of the new active's Jenkins during the run (`status`: reloads.full), and
    /// the last one (its kind says whether the standby followed the change or the promotion
    /// ran it).
    full_reloads: u64,
    last_reload: Option<jenkins_ha::status::ReloadRecord>,
    /// With a full reload forced: whether the new active's Jenkins has the new job loaded.
    new_job_loaded: Option<bool>,
    timeline: Vec<String>,
}

/// The term node `i` holds or knows, by its own `status`.
async fn term_of(c: &Cluster, i: usize) -> u64 {
    c.status(i).await.and_then(|s| s.nodes[0].term).unwrap_or(0)
}

/// One failover of the active at scale. With `full`, a new top-level job is written through the
/// active's mount first (only a full reload loads it), and the failure comes as soon as the
/// standby's watcher lists it.
async fn scale_once(
    c: &mut Cluster,
    active: usize,
    failure: Failure,
    full: bool,
    tag: &str,
    patience: Duration,
) -> Result<ScaleRun, String> {
    let standby = 1 - active;
    let before = term_of(c, active).await;
    let reloads_before = c
        .status(standby)
        .await
        .map(|s| s.nodes[0].reloads.full)
        .ok_or("the standby's sidecar does not answer")?;
    let new_job = format!("zz-new-{tag}");
    let seen_after = if full {
        let items_before = c
            .status(standby)
            .await
            .and_then(|s| s.nodes[0].watch.as_ref().map(|w| w.items))
            .ok_or("the standby's watcher shows no items")?;
        let t = Instant::now();
        let home = c.hosts[active].home.clone();
        tokio::task::block_in_place(|| {
            write_job(&home, &new_job, "created just before the failure")
        });
        let seen = wait_fast(Duration::from_secs(60), || async {
            let s = c.status(standby).await?;
            s.nodes[0]
                .watch
                .as_ref()
                .is_some_and(|w| w.items > items_before)
                .then(|| t.elapsed().as_secs_f64())
        })
        .await
        .ok_or("the standby's watcher never listed the new job")?;
        Some(seen)
    } else {
        tokio::time::sleep(random_phase(ms(SCALE_INTERVAL_MS))).await;
        None
    };
    let w0 = wall();
    let t0 = Instant::now();
    let prober = Prober::start(c, 0, standby, t0);
    let mut command = None;
    match failure {
        Failure::Crash => c.kill_jenkins(active),
        Failure::HostDeath => {
            for p in [&c.hosts[active].sidecar, &c.hosts[active].jenkins]
                .into_iter()
                .flatten()
            {
                p.signal(Signal::SIGKILL);
            }
            c.kill_sidecar(active);
            c.kill_jenkins(active);
        }
        Failure::Switchover => {
            let (code, out, err) = tokio::task::block_in_place(|| c.cli(active, &["failover"]));
            command = Some(t0.elapsed().as_secs_f64());
            if code != Some(0) {
                prober.finish().await;
                return Err(format!("`jenkins-ha failover` exited {code:?}: {out}{err}"));
            }
        }
    }
    let Some(first) = prober.wait_first_ok(t0, patience).await else {
        prober.finish().await;
        return Err(format!(
            "no 200 from the new active within {:.0} s\n{}",
            patience.as_secs_f64(),
            tail(&c.logs(), 60)
        ));
    };
    // The promotion is over once the new active left quiet-down (after its final pass).
    let promotion = c
        .wait(patience, || async {
            let s = c.status(standby).await?;
            let p = s.nodes[0].promotion.clone().filter(|p| p.term > before)?;
            (quiet(c, standby).await == Some(false)).then_some(p)
        })
        .await;
    tokio::time::sleep(ms(300)).await;
    let probes = prober.finish().await;
    let uninterrupted = uninterrupted_from(&probes).unwrap_or(first);
    let reloads = c.status(standby).await.map(|s| s.nodes[0].reloads.clone());
    let new_job_loaded = if full {
        c.jenkins_state(standby)
            .await
            .map(|s| s["items"].get(&new_job).is_some())
    } else {
        None
    };
    let mut timeline = sidecar_log_lines(
        c,
        w0,
        w0 - 0.01,
        w0 + uninterrupted.max(first).as_secs_f64() + 0.01,
    );
    for l in timeline.iter_mut() {
        if l.len() > 400 {
            let cut = (0..=400)
                .rev()
                .find(|i| l.is_char_boundary(*i))
                .unwrap_or(0);
            l.truncate(cut);
            l.push_str(" …");
        }
    }
    if timeline.len() > 40 {
        let n = timeline.len();
        timeline.drain(20..n - 20);
        timeline.insert(20, format!("… ({} lines left out)", n - 40));
    }
    Ok(ScaleRun {
        first_ok: first.as_secs_f64(),
        uninterrupted: uninterrupted.as_secs_f64(),
        command,
        seen_after,
        promotion,
        full_reloads: reloads
            .as_ref()
            .map_or(0, |r| r.full.saturating_sub(reloads_before)),
        last_reload: reloads.and_then(|r| r.last),
        new_job_loaded,
        timeline,
    })
}

/// Brings the failed node back (its Jenkins, and for a host death its sidecar too, started
/// together as a host booting does) and waits until the cluster settled with `active` serving.
async fn recover(
    c: &mut Cluster,
    failed: usize,
    active: usize,
    failure: Failure,
    load: Duration,
) -> bool {
    match failure {
        Failure::Crash => tokio::task::block_in_place(|| c.start_jenkins(failed)),
        Failure::HostDeath => {
            let before = c.spawn_jenkins(failed);
            c.start_sidecar(failed);
            tokio::task::block_in_place(|| c.wait_jenkins_loaded(failed, before));
        }
        Failure::Switchover => {}
    }
    let patience = Duration::from_secs(90) + load * 3;
    settle_scale(c, patience).await == Some(active)
}

/// The rows of one kind at one size.
#[derive(Default)]
struct ScaleRows {
    first_ok: Vec<f64>,
    uninterrupted: Vec<f64>,
    command: Vec<f64>,
    seen_after: Vec<f64>,
    promotion_ms: Vec<f64>,
    kinds: BTreeMap<String, usize>,
    /// The full reload of the run, where there was one: its duration, and where it ran.
    full_reload_s: Vec<f64>,
    full_where: BTreeMap<String, usize>,
    details: Vec<String>,
    timelines: Vec<Vec<String>>,
    failed: Vec<String>,
}

async fn section_scale(report: &mut Report, args: &Args, slow_runs: usize, with_poll: bool) {
    let kinds = [
        (Failure::Crash, false),
        (Failure::Crash, true),
        (Failure::HostDeath, false),
        (Failure::HostDeath, true),
        (Failure::Switchover, false),
        (Failure::Switchover, true),
    ];
    for &jobs in &args.sizes {
        let n = if jobs >= BIG {
            args.big_runs.min(args.runs)
        } else if !args.only_given {
            slow_runs
        } else {
            args.runs
        };
        let timers = (jobs / 100).clamp(4, 40);
        let spec = scale_spec(
            jobs,
            timers,
            Duration::from_secs(5),
            &["--build-duration", "2s", "--executors", "4"],
        );
        let Some((mut c, mut active, load_text, load)) = boot_scale(spec, jobs).await else {
            report.note(format!(
                "scale {}: the cluster did not settle",
                thousands(jobs)
            ));
            continue;
        };
        report.note(format!("scale: {load_text}"));
        if with_poll && jobs >= 1_000 {
            poll_rows(report, &c, jobs).await;
        }
        let patience = Duration::from_secs(60) + load * 3;
        let mut rows: Vec<ScaleRows> = kinds.iter().map(|_| ScaleRows::default()).collect();
        'runs: for run in 0..n {
            for (k, &(failure, full)) in kinds.iter().enumerate() {
                let tag = format!("{jobs}-{run}-{k}");
                let t = Instant::now();
                let r = scale_once(&mut c, active, failure, full, &tag, patience).await;
                let old = active;
                match r {
                    Ok(r) => {
                        let p = r.promotion.clone();
                        eprintln!(
                            "bench: scale {} {}{} run {}/{n}: first 200 after {:.2} s, uninterrupted from {:.2} s{}{}; promotion {}",
                            thousands(jobs),
                            failure.short(),
                            if full { " + full reload" } else { "" },
                            run + 1,
                            r.first_ok,
                            r.uninterrupted,
                            r.command.map_or(String::new(), |s| format!(", command {s:.2} s")),
                            r.seen_after.map_or(String::new(), |s| format!(", the standby saw the new job {s:.2} s after the write")),
                            p.as_ref().map_or("none seen".to_string(), |p| format!("{} in {} ms: {}", p.kind, p.took_ms, p.detail)),
                        );
                        let row = &mut rows[k];
                        row.first_ok.push(r.first_ok);
                        row.uninterrupted.push(r.uninterrupted);
                        row.command.extend(r.command);
                        row.seen_after.extend(r.seen_after);
                        match p {
                            Some(p) => {
                                row.promotion_ms.push(p.took_ms as f64);
                                *row.kinds.entry(p.kind.clone()).or_default() += 1;
                                let expected = if full { "full" } else { "incremental" };
                                if p.kind != expected {
                                    row.details.push(format!(
                                        "run {}: {} (term {}, {} ms): {}",
                                        run + 1,
                                        p.kind,
                                        p.term,
                                        p.took_ms,
                                        p.detail
                                    ));
                                }
                            }
                            None => *row.kinds.entry("not seen".into()).or_default() += 1,
                        }
                        if r.full_reloads > 0 {
                            if let Some(last) = &r.last_reload {
                                row.full_reload_s.push(last.duration_ms as f64 / 1000.0);
                                let place = match last.kind.as_str() {
                                    "full" => "followed by the standby before its promotion",
                                    "full (promotion)" => "run by the promotion",
                                    "full (switchover)" => "run by the switchover's catch-up",
                                    other => other,
                                };
                                *row.full_where.entry(place.to_string()).or_default() += 1;
                            }
                            if r.full_reloads > 1 {
                                row.details.push(format!(
                                    "run {}: {} full reloads of the new active's Jenkins",
                                    run + 1,
                                    r.full_reloads
                                ));
                            }
                        } else if full {
                            *row.full_where.entry("none".to_string()).or_default() += 1;
                        }
                        if r.full_reloads > 0 && !full {
                            row.details.push(format!(
                                "run {}: a full reload ran though nothing needed one",
                                run + 1
                            ));
                        }
                        if r.new_job_loaded == Some(false) {
                            row.details.push(format!(
                                "run {}: the new job is not loaded on the new active",
                                run + 1
                            ));
                        }
                        row.timelines.push(r.timeline);
                        active = 1 - active;
                    }
                    Err(e) => {
                        eprintln!(
                            "bench: scale {} {}{} run {}: FAILED: {e}",
                            thousands(jobs),
                            failure.short(),
                            if full { " + full reload" } else { "" },
                            run + 1
                        );
                        rows[k]
                            .failed
                            .push(format!("run {}: {}", run + 1, first_line(&e)));
                        // Bring back what was killed; whoever serves then is the active.
                        if c.hosts[old].sidecar.is_none() {
                            c.start_sidecar(old);
                        }
                        if c.hosts[old].jenkins.is_none() {
                            tokio::task::block_in_place(|| c.start_jenkins(old));
                        }
                        match settle_scale(&c, patience * 2).await {
                            Some(a) => active = a,
                            None => break 'runs,
                        }
                        continue;
                    }
                }
                if !recover(&mut c, old, active, failure, load).await {
                    report.note(format!(
                        "scale {}: the cluster did not settle after {} run {}; stopped there",
                        thousands(jobs),
                        failure.short(),
                        run + 1
                    ));
                    eprintln!("bench: logs:\n{}", tail(&c.logs(), 60));
                    break 'runs;
                }
                eprintln!(
                    "bench: (run and recovery took {:.1} s)",
                    t.elapsed().as_secs_f64()
                );
                // The node that just lost its term may not take it back within lease_timeout.
                tokio::time::sleep(ms(SCALE_LEASE_MS / 2)).await;
            }
        }
        scale_report(report, jobs, n, &kinds, rows);
        let t = Instant::now();
        drop(c);
        eprintln!(
            "bench: (the {}-job cluster removed in {:.1} s)",
            thousands(jobs),
            t.elapsed().as_secs_f64()
        );
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

fn scale_report(
    report: &mut Report,
    jobs: usize,
    n: usize,
    kinds: &[(Failure, bool)],
    rows: Vec<ScaleRows>,
) {
    let size = thousands(jobs);
    for (&(failure, full), row) in kinds.iter().zip(rows) {
        let mut setting = format!(
            "{size} jobs (generated, folders, 5 builds each), bindfs, load model 0.3 s + 4 ms/item + 20 us/build; interval {SCALE_INTERVAL_MS} ms, fall 3, lease_timeout {} s",
            SCALE_LEASE_MS / 1000
        );
        if full {
            setting.push_str("; **a full reload needed**: a new top-level job written through the active's mount just before, once the standby's watcher listed it");
        }
        if jobs >= BIG {
            setting.push_str(&format!("; {n} runs (`--big-runs`)"));
        }
        let kinds_text = row
            .kinds
            .iter()
            .map(|(k, c)| format!("{k} ×{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let what = if full {
            format!(
                "{} — after a change only a full reload applies",
                failure.what()
            )
        } else {
            failure.what().to_string()
        };
        let values = match failure {
            Failure::Switchover => &row.command,
            _ => &row.first_ok,
        };
        report.add("scale", &what, &setting, values, Unit::Secs, None);
        if failure == Failure::Switchover {
            report.add(
                "scale",
                "… the first 200 from the new active (from the command's start)",
                &setting,
                &row.first_ok,
                Unit::Secs,
                None,
            );
        } else {
            report.add(
                "scale",
                "… → uninterrupted 200s from the new active",
                &setting,
                &row.uninterrupted,
                Unit::Secs,
                None,
            );
        }
        report.add(
            "scale",
            &format!(
                "… the promotion's first pass (`status`: promotion.took_ms); kinds: {kinds_text}"
            ),
            &setting,
            &row.promotion_ms,
            Unit::Ms,
            None,
        );
        if full {
            let place = row
                .full_where
                .iter()
                .map(|(k, c)| format!("{k} ×{c}"))
                .collect::<Vec<_>>()
                .join(", ");
            report.add(
                "scale",
                &format!("… the full reload of the new active's Jenkins (`status`: reloads.last.duration_ms); {place}"),
                &setting,
                &row.full_reload_s,
                Unit::Secs,
                None,
            );
            report.add(
                "scale",
                "… the write → the standby's watcher lists the new job (then the failure)",
                &setting,
                &row.seen_after,
                Unit::Secs,
                None,
            );
        }
        let label = format!(
            "scale {size} {}{}",
            failure.short(),
            if full { " + full reload" } else { "" }
        );
        if !row.details.is_empty() {
            report.note(format!(
                "{label}: not as expected (a promotion of kind {}{}): {}",
                if full { "full" } else { "incremental" },
                if full { "" } else { ", no full reload" },
                row.details.join("; ")
            ));
        }
        if !row.failed.is_empty() {
            report.note(format!("{label}: failed runs: {}", row.failed.join("; ")));
        }
        let values = match failure {
            Failure::Switchover => &row.command,
            _ => &row.first_ok,
        };
        let show = (jobs >= BIG && (failure != Failure::Switchover || full))
            || (failure == Failure::Crash && jobs >= 1_000);
        if show {
            if let Some(m) = median_index(values) {
                report.timelines.push((
                    format!(
                        "{label}, the median run ({:.2} s): both sidecars' logs from the {} (+0)",
                        values[m],
                        if failure == Failure::Switchover {
                            "command's start"
                        } else {
                            "kill"
                        }
                    ),
                    row.timelines[m].clone(),
                ));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 8. One poll cycle of the watcher

/// Samples both sidecars' `watch` figures while idle: one row per size, and the stat count.
async fn poll_rows(report: &mut Report, c: &Cluster, jobs: usize) {
    const SAMPLES: usize = 12;
    let mut scans: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut statted = [None, None];
    let mut mode = [String::new(), String::new()];
    let mut items = [0usize; 2];
    let mut roles = [Role::Starting, Role::Starting];
    for _ in 0..SAMPLES {
        for i in 0..2 {
            let Some(s) = c.status(i).await else {
                continue;
            };
            roles[i] = s.nodes[0].role;
            if let Some(w) = &s.nodes[0].watch {
                if let Some(ms) = w.last_scan_ms {
                    scans[i].push(ms);
                }
                statted[i] = w.files_statted.or(statted[i]);
                mode[i] = w.mode.clone();
                items[i] = w.items;
            }
        }
        // The default poll interval is 1 s: each sample a new scan.
        tokio::time::sleep(ms(1100)).await;
    }
    for i in 0..2 {
        let role = if roles[i] == Role::Active {
            "active"
        } else {
            "standby"
        };
        let setting = format!(
            "{} jobs ({} items seen), bindfs mount, watch mode {}, poll_interval 1 s; sampled {SAMPLES} times, 1.1 s apart, idle {role}",
            thousands(jobs),
            thousands(items[i]),
            if mode[i].is_empty() { "unknown" } else { &mode[i] },
        );
        report.add(
            "poll",
            "one poll cycle of the JENKINS_HOME watcher (`status`: watch.last_scan_ms)",
            &setting,
            &scans[i],
            Unit::Ms,
            None,
        );
        if let Some(n) = statted[i] {
            report.add_text(
                "poll",
                "… files stat'ed per cycle (`status`: watch.files_statted: each job's config.xml, nextBuildNumber and builds/, each folder's config.xml, the root files)",
                &setting,
                &thousands(n),
                "1",
                "",
            );
        }
    }
}

async fn section_poll(report: &mut Report, args: &Args) {
    for &jobs in args.sizes.iter().filter(|j| **j >= 1_000) {
        let timers = (jobs / 100).clamp(4, 40);
        let spec = scale_spec(
            jobs,
            timers,
            Duration::from_secs(5),
            &["--build-duration", "2s", "--executors", "4"],
        );
        let Some((c, _active, load_text, _)) = boot_scale(spec, jobs).await else {
            report.note(format!(
                "poll {}: the cluster did not settle",
                thousands(jobs)
            ));
            continue;
        };
        report.note(format!("poll: {load_text}"));
        poll_rows(report, &c, jobs).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 9. The ledger of builds over many failovers

const BUILDS_JOBS: usize = 1_000;
const BUILDS_TIMERS: usize = 40;
const BUILDS_EVERY: Duration = Duration::from_secs(3);

async fn section_builds(report: &mut Report, failovers: usize) {
    use std::collections::BTreeSet;
    let spec = scale_spec(
        BUILDS_JOBS,
        BUILDS_TIMERS,
        BUILDS_EVERY,
        &["--executors", "8", "--build-duration", "300ms"],
    );
    let setting = format!(
        "{} jobs, {BUILDS_TIMERS} on a timer every {} s, 8 executors, builds of 300 ms, bindfs, load model 0.3 s + 4 ms/item; crash failovers and switchovers alternating, the killed Jenkins restarted each time",
        thousands(BUILDS_JOBS),
        BUILDS_EVERY.as_secs()
    );
    let Some((mut c, mut active, load_text, load)) = boot_scale(spec, BUILDS_JOBS).await else {
        report.note("builds: the cluster did not settle".into());
        return;
    };
    report.note(format!("builds: {load_text}"));
    let from = SystemTime::now();
    let patience = Duration::from_secs(60) + load * 3;
    let mut seen: BTreeSet<(String, u64)> = BTreeSet::new();
    let (mut lost, mut duplicates, mut stale) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    let mut not_incremental = Vec::new();
    let (mut crashes, mut switchovers) = (0usize, 0usize);
    let mut first_ok: Vec<f64> = Vec::new();
    let mut stopped = None;
    for round in 0..failovers * 2 {
        tokio::time::sleep(BUILDS_EVERY + random_phase(BUILDS_EVERY)).await;
        for i in 0..2 {
            seen.extend(c.fires(i).await);
        }
        let standby = 1 - active;
        let before = term_of(&c, active).await;
        let crash = round % 2 == 0;
        let t0 = Instant::now();
        if crash {
            c.kill_jenkins(active);
        } else {
            let (code, out, err) = tokio::task::block_in_place(|| c.cli(active, &["failover"]));
            if code != Some(0) {
                stopped = Some(format!(
                    "round {}: `jenkins-ha failover` exited {code:?}: {out}{err}",
                    round + 1
                ));
                break;
            }
        }
        let Some(took) = c.wait_served_by(0, standby, patience).await else {
            stopped = Some(format!("round {}: the new active never served", round + 1));
            break;
        };
        let _ = took;
        first_ok.push(t0.elapsed().as_secs_f64());
        let p = c
            .wait(patience, || async {
                let s = c.status(standby).await?;
                let p = s.nodes[0].promotion.clone().filter(|p| p.term > before)?;
                (quiet(&c, standby).await == Some(false)).then_some(p)
            })
            .await;
        match &p {
            Some(p) if p.kind == "incremental" => {}
            Some(p) => {
                not_incremental.push(format!("round {}: {} ({})", round + 1, p.kind, p.detail))
            }
            None => not_incremental.push(format!("round {}: no promotion seen", round + 1)),
        }
        if crash {
            crashes += 1;
            tokio::task::block_in_place(|| c.start_jenkins(active));
        } else {
            switchovers += 1;
        }
        active = standby;
        if settle_scale(&c, patience).await != Some(active) {
            stopped = Some(format!("round {}: the cluster did not settle", round + 1));
            break;
        }
        let v = c.build_ledger(active, from, BUILDS_EVERY * 2).await;
        lost.extend(v.lost.iter().cloned());
        duplicates.extend(v.duplicates.iter().cloned());
        stale.extend(v.stale_numbers.iter().cloned());
        eprintln!(
            "bench: builds round {}/{} ({}, {:.2} s to the first 200; promotion {}): {}",
            round + 1,
            failovers * 2,
            if crash { "crash" } else { "switchover" },
            first_ok.last().copied().unwrap_or(0.0),
            p.as_ref().map_or("not seen".to_string(), |p| format!(
                "{} in {} ms",
                p.kind, p.took_ms
            )),
            v.summary()
        );
    }
    if let Some(s) = &stopped {
        report.note(format!("builds: stopped early: {s}"));
        eprintln!("bench: logs:\n{}", tail(&c.logs(), 80));
    }
    // The fires of the last rounds get built, then the whole run is judged at once, with every
    // fire any stand-in saw (the killed ones' included, gathered before each failover).
    tokio::time::sleep(BUILDS_EVERY * 3).await;
    for i in 0..2 {
        seen.extend(c.fires(i).await);
    }
    let mut queued = BTreeSet::new();
    for i in 0..2 {
        queued.extend(c.queued_fires(i).await);
    }
    let ms_of = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    };
    let judge_ms = ms_of(from)..ms_of(SystemTime::now() - BUILDS_EVERY * 2);
    let home = c.home.clone();
    let builds = tokio::task::spawn_blocking(move || cluster::ledger::disk_builds(&home))
        .await
        .unwrap_or_default();
    let highest = cluster::ledger::highest_numbers(&builds);
    let next = c.next_numbers(active).await;
    let fires: Vec<(String, u64)> = seen.into_iter().collect();
    let v = cluster::ledger::judge(&cluster::ledger::Evidence {
        builds: &builds,
        fires: &fires,
        queued: &queued,
        judge_ms,
        collisions: cluster::ledger::logged_collisions(&c.dir),
        highest: &highest,
        next_numbers: &next,
    });
    lost.extend(v.lost.iter().cloned());
    duplicates.extend(v.duplicates.iter().cloned());
    stale.extend(v.stale_numbers.iter().cloned());
    eprintln!("bench: builds: the whole run: {}", v.summary());
    let runs = format!("{crashes} crash failovers + {switchovers} switchovers");
    let goal0 = |n: usize| {
        if n == 0 {
            "0: **met**"
        } else {
            "0: **missed**"
        }
    };
    report.add_text(
        "builds",
        "build-number collisions (a `builds/N` overwritten; every stand-in's log, killed ones included)",
        &setting,
        &v.collisions.to_string(),
        &runs,
        goal0(v.collisions),
    );
    report.add_text(
        "builds",
        "duplicate builds (every fire of a build built before)",
        &setting,
        &duplicates.len().to_string(),
        &runs,
        goal0(duplicates.len()),
    );
    report.add_text(
        "builds",
        "lost timer fires (seen by a running Jenkins, never built, not queued)",
        &setting,
        &lost.len().to_string(),
        &runs,
        goal0(lost.len()),
    );
    report.add_text(
        "builds",
        "stale next build numbers on the active (checked after every failover)",
        &setting,
        &stale.len().to_string(),
        &runs,
        goal0(stale.len()),
    );
    report.add_text(
        "builds",
        "builds run and fires judged",
        &setting,
        &format!(
            "{} builds run ({} records on disk), {} fires judged, {} fires in two builds (coalescing)",
            thousands(v.run_builds),
            thousands(v.builds),
            thousands(v.fires_judged),
            v.fires_built_twice
        ),
        &runs,
        "",
    );
    report.add(
        "builds",
        "failover → first 200 from the new active, with builds running",
        &setting,
        &first_ok,
        Unit::Secs,
        None,
    );
    if !not_incremental.is_empty() {
        report.note(format!(
            "builds: {} promotion(s) not incremental: {}",
            not_incremental.len(),
            not_incremental
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    if !v.clean() || !lost.is_empty() || !duplicates.is_empty() || !stale.is_empty() {
        let some = |s: &BTreeSet<String>| s.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
        report.note(format!(
            "builds: the ledger is not clean: {}; over all rounds: lost [{}], duplicates [{}], stale numbers [{}]",
            v.summary(),
            some(&lost),
            some(&duplicates),
            some(&stale)
        ));
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
    if want("scale") {
        section_scale(&mut report, &args, slow_runs, want("poll")).await;
        if !args.only_given && slow_runs < runs {
            report.note(format!(
                "scale: in a default run the rows at 20 and 1,000 jobs ran {slow_runs} times, not {runs}, to keep the whole run near half an hour (`--only scale` runs them {runs} times)"
            ));
        }
        if args.sizes.iter().any(|s| *s >= BIG) && args.big_runs < runs {
            report.note(format!(
                "scale: the rows at {} jobs ran {} times, not {runs} (`--big-runs`): each run waits out a Jenkins start-up of 41 s or more",
                thousands(BIG),
                args.big_runs
            ));
        }
    } else if want("poll") {
        section_poll(&mut report, &args).await;
    }
    if want("builds") {
        section_builds(&mut report, args.failovers).await;
    }
    if !args.only_given {
        report.note(format!(
            "a default run leaves out `builds` and the {}-job rows of `scale` and `poll`: `cargo run --release --example bench -- --only scale,poll,builds` runs them",
            thousands(BIG)
        ));
    }
    report.print(&args, started_at);
}
