//! `gen-home`: writes a realistic JENKINS_HOME for the stand-in, the lab and the benchmarks (see
//! `jenkins_ha_lab::home_gen` for the layout, the cost and the determinism).
//!
//! ```text
//! gen-home --home DIR [--jobs 10000] [--folders 100] [--top-level-jobs 100] [--nested-every 4]
//!          [--builds 5] [--timers 0] [--timer-every 3s] [--seed 1] [--user admin] [--nodes 3]
//!          [--threads 4] [--list-timers]
//! ```
//!
//! Prints one summary line; with `--list-timers`, then the full name of each job with a timer.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use jenkins_ha_lab::home_gen::{generate, HomeSpec};

#[derive(Parser, Debug)]
#[command(
    name = "gen-home",
    about = "Writes a JENKINS_HOME with N jobs in nested folders, build histories and timer jobs"
)]
struct Cli {
    /// The directory to write (missing or empty).
    #[arg(long)]
    home: PathBuf,
    /// Jobs in all.
    #[arg(long, default_value_t = 10_000)]
    jobs: usize,
    /// Top-level folders.
    #[arg(long, default_value_t = 100)]
    folders: usize,
    /// Jobs directly under jobs/ (the others go into folders).
    #[arg(long, default_value_t = 100)]
    top_level_jobs: usize,
    /// Every Nth folder holds a nested folder `sub` with half its jobs (0: none).
    #[arg(long, default_value_t = 4)]
    nested_every: usize,
    /// Builds per job on disk.
    #[arg(long, default_value_t = 5)]
    builds: usize,
    /// Jobs with a timer trigger.
    #[arg(long, default_value_t = 0)]
    timers: usize,
    /// Period of the timer triggers (`@every`).
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    timer_every: Duration,
    /// Seed of every choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// User that gets a directory and a users/users.xml entry.
    #[arg(long, default_value = "admin")]
    user: String,
    /// Agents under nodes/.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Writer threads.
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// Also print the full name of each timer job, one per line.
    #[arg(long)]
    list_timers: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim()).map_err(|e| e.to_string())?;
    if d < Duration::from_millis(100) {
        return Err("the stand-in needs timer periods of at least 100ms".into());
    }
    Ok(d)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let spec = HomeSpec {
        jobs: cli.jobs,
        folders: cli.folders,
        top_level_jobs: cli.top_level_jobs,
        nested_every: cli.nested_every,
        builds: cli.builds,
        timers: cli.timers,
        timer_every: cli.timer_every,
        seed: cli.seed,
        user: cli.user,
        nodes: cli.nodes,
        threads: cli.threads,
    };
    match generate(&cli.home, &spec) {
        Ok(r) => {
            println!(
                "gen-home: {} jobs, {} folders ({} items), {} builds each, {} timer jobs, {} files, {:.1} MB in {:.1} s at {}",
                r.jobs.len(),
                r.folders.len(),
                r.items,
                spec.builds,
                r.timer_jobs.len(),
                r.files,
                r.bytes as f64 / 1e6,
                r.elapsed.as_secs_f64(),
                cli.home.display()
            );
            if cli.list_timers {
                for t in &r.timer_jobs {
                    println!("{t}");
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gen-home: {e}");
            ExitCode::FAILURE
        }
    }
}
