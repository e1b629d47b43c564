//! Benchmark of the poll scanner ([`jenkins_ha::io::watch::Scanner`]) on a large JENKINS_HOME:
//! 10,000 jobs in 110 folders (100 top-level folders, 10 of them with a sub-folder) and
//! 1,000,000 build files (100 per job, in `builds/<n>/`), plus global files, nodes, users,
//! fingerprints and a queue.
//!
//! It reports the first (baseline) scan, the steady-state poll cycle (median and p90), the work
//! per cycle (files stat'ed, directories opened and listed, files hashed), a cycle that finds
//! changes, and the resident memory; and it checks, from the scanner's trace, that no path under
//! `builds/` (or any other churn directory) was touched.
//!
//! Run:
//!
//! ```text
//! WATCH_BENCH_HOME=/tmp/watch-bench-home cargo bench --bench watch_scan
//! ```
//!
//! `WATCH_BENCH_HOME` keeps the generated home between runs (it is reused when complete);
//! without it a temporary directory is used and removed at the end. `WATCH_BENCH_CYCLES`
//! (default 50) sets the number of steady-state cycles, `WATCH_BENCH_THREADS` (default 2) the
//! scanner's threads.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use jenkins_ha::io::watch::{scan::RACY_WINDOW, spawn_inotify, ChangeKind, Scanner};

const JOBS_PER_FOLDER: usize = 100;
/// Folders with a sub-folder `sub` holding the last 10 of their 100 jobs.
const DEEP_FOLDERS: usize = 10;
const DEEP_JOBS: usize = 10;

/// The size of the generated home: the real one under `cargo bench`, a small one when
/// `cargo test --all-targets` runs this as a smoke test.
#[derive(Clone, Copy)]
struct Size {
    folders: usize,
    builds_per_job: usize,
    files_per_build: usize,
}

static SIZE: OnceLock<Size> = OnceLock::new();

fn size() -> &'static Size {
    SIZE.get_or_init(|| {
        if std::env::args().any(|a| a == "--bench") {
            Size {
                folders: 100,
                builds_per_job: 10,
                files_per_build: 10,
            }
        } else {
            Size {
                folders: 12,
                builds_per_job: 1,
                files_per_build: 2,
            }
        }
    })
}

fn layout() -> String {
    let s = size();
    format!(
        "layout v2: {}x{JOBS_PER_FOLDER} jobs, {DEEP_FOLDERS} deep folders, {}x{} build files \
         per job\n",
        s.folders, s.builds_per_job, s.files_per_build
    )
}
const MARKER: &str = ".watch-bench-complete";

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("smoke run on a small home (use `cargo bench --bench watch_scan` for figures)");
    }
    let Size {
        folders,
        builds_per_job,
        files_per_build,
    } = *size();
    let build_files = folders * JOBS_PER_FOLDER * builds_per_job * files_per_build;
    // `cargo bench` passes `--bench`; nothing else is expected.
    let cycles: usize = env_or("WATCH_BENCH_CYCLES", 50);
    let threads: usize = env_or("WATCH_BENCH_THREADS", 2);
    let (home, _temp) = match std::env::var_os("WATCH_BENCH_HOME") {
        Some(dir) => (PathBuf::from(dir), None),
        None => {
            let temp = tempfile::tempdir().expect("a temporary directory");
            (temp.path().join("home"), Some(temp))
        }
    };

    println!("watch_scan benchmark");
    println!(
        "command: WATCH_BENCH_HOME={} WATCH_BENCH_CYCLES={cycles} WATCH_BENCH_THREADS={threads} \
         cargo bench --bench watch_scan",
        home.display()
    );
    println!(
        "cpus: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    generate(&home);
    // The machine may be shared: say how busy it is.
    println!(
        "load average before measuring: {}",
        fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );

    let rss_before = rss_kib();
    let mut scanner = Scanner::new(&home, None).expect("the home");
    scanner.set_threads(threads);
    let first = scanner.scan().expect("the baseline scan");
    let rss_after = rss_kib();
    let items = scanner.items().len();
    assert_eq!(items, folders * JOBS_PER_FOLDER + folders + DEEP_FOLDERS);
    println!(
        "first scan (baseline, page cache warm): {:.1} ms; {} items; {} files stat'ed, {} \
         hashed; {} dirs stat'ed, {} listed",
        ms(first.stats.duration),
        items,
        first.stats.files_statted,
        first.stats.files_hashed,
        first.stats.dirs_statted,
        first.stats.dirs_listed
    );

    // Stamps written within the racy window are checked again; let them settle, as they would
    // have on a home that was not just generated.
    std::thread::sleep(RACY_WINDOW + Duration::from_millis(100));
    for _ in 0..2 {
        scanner.scan().expect("a warm-up scan");
    }

    let mut times = Vec::with_capacity(cycles);
    let mut stats = None;
    let cpu_before = cpu_ticks();
    for _ in 0..cycles {
        let r = scanner.scan().expect("a scan");
        assert!(
            r.changes.is_empty(),
            "{:?}",
            &r.changes[..r.changes.len().min(5)]
        );
        times.push(r.stats.duration);
        stats = Some(r.stats);
    }
    let cpu = cpu_ticks().saturating_sub(cpu_before);
    let stats = stats.expect("at least one cycle");
    times.sort();
    let median = times[times.len() / 2];
    let p90 = times[(times.len() * 9 / 10).min(times.len() - 1)];
    println!(
        "steady-state cycle ({cycles} cycles, {threads} threads): median {:.2} ms, p90 {:.2} ms, \
         min {:.2} ms, max {:.2} ms",
        ms(median),
        ms(p90),
        ms(times[0]),
        ms(times[times.len() - 1])
    );
    println!(
        "CPU time per cycle (user + system, all threads; less sensitive to a busy machine than \
         wall time): {:.1} ms",
        cpu as f64 * 10.0 / cycles as f64
    );
    println!(
        "per cycle: {} files stat'ed, {} dirs stat'ed, {} dirs listed, {} files hashed \
         (of {} build files on disk: 0 touched)",
        stats.files_statted, stats.dirs_statted, stats.dirs_listed, stats.files_hashed, build_files
    );

    let mut single = Scanner::new(&home, None).expect("the home");
    single.set_threads(1);
    single.scan().expect("the baseline scan");
    let mut single_times: Vec<Duration> = (0..cycles.min(20))
        .map(|_| single.scan().expect("a scan").stats.duration)
        .collect();
    single_times.sort();
    println!(
        "steady-state cycle on 1 thread ({} cycles): median {:.2} ms",
        single_times.len(),
        ms(single_times[single_times.len() / 2])
    );

    // No path under a churn directory is ever touched: check the trace of one cycle.
    scanner.set_trace(true);
    scanner.scan().expect("a traced scan");
    let trace = scanner.take_trace();
    scanner.set_trace(false);
    let banned = [
        "builds",
        "workspace",
        "fingerprints",
        "logs",
        "plugins",
        "secrets",
        "nextBuildNumber",
        "queue.xml",
        ".jenkins-ha",
    ];
    for path in &trace {
        let rel = path.strip_prefix(&home).expect("a path in the home");
        assert!(
            !rel.components()
                .any(|c| banned.iter().any(|b| c.as_os_str() == *b)),
            "the scanner touched {}",
            path.display()
        );
    }
    println!(
        "trace of one cycle: {} paths touched, none under builds/, workspace/, fingerprints/, \
         logs/, plugins/, secrets/, the lease dir, nor nextBuildNumber or queue.xml",
        trace.len()
    );

    // A cycle that finds changes: 10 nested edits, one identical rewrite, one new job.
    for i in 0..10 {
        let path = home.join(format!("jobs/F{i:03}/jobs/job{:03}/config.xml", i * 3));
        fs::write(&path, config_xml(&format!("edited {i}"))).expect("an edit");
    }
    let same = home.join(format!("jobs/F{:03}/jobs/job050/config.xml", folders / 2));
    let content = fs::read(&same).expect("a config");
    fs::write(&same, content).expect("a rewrite");
    let new_job = home.join(format!("jobs/F{:03}/jobs/new-job", folders - 1));
    fs::create_dir_all(&new_job).expect("a new job");
    fs::write(new_job.join("config.xml"), config_xml("new-job")).expect("a new config");
    let r = scanner.scan().expect("a scan");
    let edited = r
        .changes
        .iter()
        .filter(|c| c.kind == ChangeKind::Modified)
        .count();
    let added = r
        .changes
        .iter()
        .filter(|c| c.kind == ChangeKind::Added)
        .count();
    println!(
        "cycle with changes: {:.2} ms, {edited} edited + {added} added found; {} files hashed, {} \
         dirs listed",
        ms(r.stats.duration),
        r.stats.files_hashed,
        r.stats.dirs_listed
    );
    assert_eq!((edited, added), (10, 1), "{:?}", r.changes);
    // Put the home back as it was, for the next run.
    fs::remove_dir_all(&new_job).expect("removing the new job");
    for i in 0..10 {
        let path = home.join(format!("jobs/F{i:03}/jobs/job{:03}/config.xml", i * 3));
        fs::write(&path, config_xml(&format!("F{i:03}/job{:03}", i * 3))).expect("a restore");
    }

    // inotify mode: how long it takes to watch every directory a scan reads.
    let (tx, _rx) = tokio::sync::mpsc::channel(1);
    let t = Instant::now();
    let mut inotify = spawn_inotify(&home, None, tx).expect("inotify");
    let dirs = scanner.watch_dirs();
    match inotify.sync(dirs) {
        Ok(added) => println!(
            "inotify: {added} watches added in {:.0} ms ({} watched)",
            ms(t.elapsed()),
            inotify.watched()
        ),
        Err(e) => println!("inotify: {e}"),
    }
    drop(inotify);

    let rss_end = rss_kib();
    println!(
        "memory (VmRSS): {} KiB before the scanner, {} KiB after the baseline (+{} KiB), {} KiB \
         at the end; peak (VmHWM) {} KiB",
        rss_before,
        rss_after,
        rss_after.saturating_sub(rss_before),
        rss_end,
        status_kib("VmHWM:")
    );
    let goal = Duration::from_millis(30);
    if folders == 100 {
        println!(
            "goal: under {} ms per steady-state cycle: {}",
            goal.as_millis(),
            if median < goal { "met" } else { "MISSED" }
        );
    }
    if _temp.is_some() {
        let t = Instant::now();
        drop(_temp);
        println!(
            "removed the temporary home in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn status_kib(field: &str) -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// utime + stime of this process, in clock ticks (100 per second on Linux).
fn cpu_ticks() -> u64 {
    let stat = fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line; 12 and 13 after the name.
    field(11) + field(12)
}

fn rss_kib() -> u64 {
    status_kib("VmRSS:")
}

/// A config.xml of realistic size (about 1.5 KB).
fn config_xml(name: &str) -> String {
    format!(
        "<?xml version='1.1' encoding='UTF-8'?>\n<flow-definition plugin=\"workflow-job@1400\">\n  \
         <description>{name}</description>\n  <keepDependencies>false</keepDependencies>\n  \
         <properties>\n    <jenkins.model.BuildDiscarderProperty>\n      <strategy \
         class=\"hudson.tasks.LogRotator\">\n        <daysToKeep>-1</daysToKeep>\n        \
         <numToKeep>100</numToKeep>\n      </strategy>\n    \
         </jenkins.model.BuildDiscarderProperty>\n  </properties>\n  <definition \
         class=\"org.jenkinsci.plugins.workflow.cps.CpsScmFlowDefinition\" \
         plugin=\"workflow-cps@3900\">\n    <scm class=\"hudson.plugins.git.GitSCM\" \
         plugin=\"git@5.2\">\n      <configVersion>2</configVersion>\n      \
         <userRemoteConfigs>\n        <hudson.plugins.git.UserRemoteConfig>\n          \
         <url>https://git.example.com/{name}.git</url>\n          \
         <credentialsId>git-ci</credentialsId>\n        </hudson.plugins.git.UserRemoteConfig>\n      \
         </userRemoteConfigs>\n      <branches>\n        <hudson.plugins.git.BranchSpec>\n          \
         <name>*/main</name>\n        </hudson.plugins.git.BranchSpec>\n      </branches>\n    \
         </scm>\n    <scriptPath>Jenkinsfile</scriptPath>\n    <lightweight>true</lightweight>\n  \
         </definition>\n  <triggers/>\n  <disabled>false</disabled>\n</flow-definition>\n{}",
        " ".repeat(400)
    )
}

/// A folder's config.xml.
fn folder_xml(name: &str) -> String {
    format!(
        "<?xml version='1.1' encoding='UTF-8'?>\n<com.cloudbees.hudson.plugins.folder.Folder \
         plugin=\"cloudbees-folder@6.9\">\n  <description>{name}</description>\n  <properties/>\n  \
         <folderViews class=\"com.cloudbees.hudson.plugins.folder.views.DefaultFolderViewHolder\"/>\n  \
         <healthMetrics/>\n</com.cloudbees.hudson.plugins.folder.Folder>\n"
    )
}

/// Builds the home unless a complete one with the same layout is there.
fn generate(home: &Path) {
    let Size {
        folders,
        builds_per_job,
        files_per_build,
    } = *size();
    if fs::read_to_string(home.join(MARKER)).is_ok_and(|m| m == layout()) {
        println!("reusing the generated home at {}", home.display());
        return;
    }
    if home.exists() {
        println!("removing the incomplete home at {}", home.display());
        fs::remove_dir_all(home).expect("removing an incomplete home");
    }
    println!(
        "generating {} jobs and {} build files at {} (takes a while; progress below)",
        folders * JOBS_PER_FOLDER,
        folders * JOBS_PER_FOLDER * builds_per_job * files_per_build,
        home.display()
    );
    let started = Instant::now();
    let w = |path: PathBuf, content: &str| {
        fs::create_dir_all(path.parent().expect("a parent")).expect("a directory");
        fs::write(&path, content).expect("a file");
    };
    w(
        home.join("config.xml"),
        "<hudson><numExecutors>0</numExecutors></hudson>",
    );
    w(home.join("credentials.xml"), "<credentials/>");
    w(home.join("queue.xml"), "<queue/>");
    w(home.join("nodeMonitors.xml"), "<monitors/>");
    for i in 0..30 {
        w(
            home.join(format!("plugin.config.Plugin{i}.xml")),
            "<plugin/>",
        );
    }
    for i in 0..20 {
        w(home.join(format!("nodes/agent{i}/config.xml")), "<slave/>");
    }
    w(home.join("users/users.xml"), "<users/>");
    for i in 0..50 {
        w(
            home.join(format!("users/user{i}_123/config.xml")),
            "<user/>",
        );
    }
    for i in 0..1000 {
        w(
            home.join(format!("fingerprints/{:02x}/{i}.xml", i % 256)),
            "<fp/>",
        );
    }
    for i in 0..20 {
        w(home.join(format!("plugins/p{i}/META-INF/MANIFEST.MF")), "m");
    }
    w(home.join("secrets/master.key"), "k");
    w(home.join(".jenkins-ha/term-1"), "{}");

    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| loop {
                let f = next.fetch_add(1, Ordering::Relaxed);
                if f >= folders {
                    break;
                }
                make_folder(home, f);
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                if n % 10 == 0 {
                    println!(
                        "  {n}/{folders} folders ({} jobs) after {:.0} s",
                        n * JOBS_PER_FOLDER,
                        started.elapsed().as_secs_f64()
                    );
                    let _ = std::io::stdout().flush();
                }
            });
        }
    });
    fs::write(home.join(MARKER), layout()).expect("the marker");
    println!("generated in {:.1} s", started.elapsed().as_secs_f64());
}

fn make_folder(home: &Path, f: usize) {
    let folder = home.join(format!("jobs/F{f:03}"));
    fs::create_dir_all(folder.join("jobs")).expect("a folder");
    fs::write(folder.join("config.xml"), folder_xml(&format!("F{f:03}"))).expect("a config");
    let deep = f < DEEP_FOLDERS;
    if deep {
        let sub = folder.join("jobs/sub");
        fs::create_dir_all(sub.join("jobs")).expect("a sub-folder");
        fs::write(sub.join("config.xml"), folder_xml("sub")).expect("a config");
    }
    for j in 0..JOBS_PER_FOLDER {
        let in_sub = deep && j >= JOBS_PER_FOLDER - DEEP_JOBS;
        let job = if in_sub {
            folder.join(format!("jobs/sub/jobs/job{j:03}"))
        } else {
            folder.join(format!("jobs/job{j:03}"))
        };
        fs::create_dir_all(&job).expect("a job");
        fs::write(
            job.join("config.xml"),
            config_xml(&format!("F{f:03}/job{j:03}")),
        )
        .expect("a config");
        fs::write(
            job.join("nextBuildNumber"),
            format!("{}\n", size().builds_per_job + 1),
        )
        .expect("nextBuildNumber");
        for b in 1..=size().builds_per_job {
            let build = job.join(format!("builds/{b}"));
            fs::create_dir_all(&build).expect("a build");
            for k in 0..size().files_per_build {
                fs::File::create(build.join(format!("file{k}"))).expect("a build file");
            }
        }
    }
}
