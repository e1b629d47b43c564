//! The command line: the front ends of every subcommand, on top of the daemon and the local
//! sidecar's API.
//!
//! Errors leave here as one line on stderr; config errors exit 2 before anything starts.
//!
//! - [`args`]: the clap definitions (also the man page and the completions, [`manual`]);
//! - [`help`]: the sections after the options (exit status, environment, files);
//! - [`client`]: the client of a sidecar's API;
//! - [`ops`]: `failover`, `pause`, `resume` and `history`.

pub mod args;
pub mod client;
pub mod help;
pub mod manual;
pub mod ops;

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use self::args::{Cli, Cmd};
use self::client::Sidecar;
use crate::config::Config;
use crate::io::haproxy::HaproxyClient;
use crate::io::jenkins::{Health, JenkinsClient};
use crate::status::render_table;

/// `status` when the sidecar answered but no node is active.
pub const EXIT_NO_ACTIVE: u8 = 3;

fn load(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("jenkins-ha: {e}");
        ExitCode::from(2)
    })
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Run { log_format } => run(&cli.config, log_format == "json"),
        Cmd::CheckConfig => check_config(&cli.config),
        Cmd::Status { json } => status(&cli.config, json),
        Cmd::Failover {
            to,
            force,
            wait_builds,
        } => failover(&cli.config, to, force, wait_builds.unwrap_or_default()),
        Cmd::Pause => pause(&cli.config, true),
        Cmd::Resume => pause(&cli.config, false),
        Cmd::History { json, limit } => history(&cli.config, json, limit),
        Cmd::Completions { shell } => manual::completions(shell),
        Cmd::Man => manual::man(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .enable_all()
        .build()
        .unwrap_or_else(|e| {
            eprintln!("jenkins-ha: cannot start the async runtime: {e}");
            std::process::exit(1)
        })
}

/// Runs `work` on a fresh runtime, then drops the runtime without waiting for blocking threads
/// stuck in a hung mount: a storage call that never returns must not hold up the exit.
fn block_on<T>(work: impl std::future::Future<Output = T>) -> T {
    let rt = runtime();
    let out = rt.block_on(work);
    rt.shutdown_timeout(Duration::from_millis(500));
    out
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("JENKINS_HA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never into journald or a file.
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

fn run(path: &Path, json_logs: bool) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    init_logging(json_logs);
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    block_on(crate::daemon::start::run(config, path.to_path_buf()))
}

fn check_config(path: &Path) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Err(e) = config.check_home() {
        eprintln!("jenkins-ha: {e}");
        return ExitCode::from(2);
    }
    for w in &config.warnings {
        println!("warning: {w}");
    }
    block_on(async {
        for endpoint in &config.haproxy.sockets {
            let client = HaproxyClient::new(endpoint.clone(), Duration::from_secs(2));
            match client.show_servers_state(None).await {
                Ok(states) => {
                    for b in &config.haproxy.backends {
                        let names = std::iter::once(&config.node.name)
                            .chain(config.peers.iter().map(|p| &p.name));
                        for server in names {
                            if !states
                                .iter()
                                .any(|s| &s.backend == b && &s.server == server)
                            {
                                println!("warning: HAProxy {endpoint}: no server {b}/{server}");
                            }
                        }
                    }
                }
                Err(e) => println!("warning: HAProxy {endpoint}: {e}"),
            }
        }
        let token = config
            .jenkins
            .api_token
            .as_ref()
            .map(|t| t.expose().to_string());
        if let Ok(client) = JenkinsClient::new(
            &config.jenkins.url,
            config.jenkins.user.clone(),
            token,
            config.jenkins.timeout,
        ) {
            match client.probe().await.health {
                Health::Up => {
                    if let Err(e) = client.info().await {
                        println!("warning: Jenkins {}: {e}", config.jenkins.url);
                    }
                }
                Health::GettingReady => println!(
                    "warning: Jenkins {} is getting ready (503)",
                    config.jenkins.url
                ),
                Health::Down(why) => println!("warning: Jenkins {}: {why}", config.jenkins.url),
            }
        }
    });
    println!(
        "{}: valid (node {}, {}, {} HAProxy socket(s), lease in {})",
        config.path.display(),
        config.node.name,
        config.peers_phrase(),
        config.haproxy.sockets.len(),
        config.lease_location()
    );
    ExitCode::SUCCESS
}

fn status(path: &Path, json: bool) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let sidecar = Sidecar::local(&config);
    let (body, status) = match block_on(sidecar.status()) {
        Ok(answer) => answer,
        Err(e) => {
            eprintln!("jenkins-ha: {e}");
            return ExitCode::from(1);
        }
    };
    if json {
        println!("{}", String::from_utf8_lossy(&body).trim_end());
    } else {
        print!("{}", render_table(&status));
    }
    if status.active.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_NO_ACTIVE)
    }
}

fn failover(path: &Path, to: Option<String>, force: bool, wait_builds: Duration) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    report(block_on(ops::failover(
        &config,
        to,
        force,
        wait_builds,
        &mut |line| println!("{line}"),
    )))
}

/// An operator command's last line: on stdout and exit 0, or one line on stderr and exit 1.
fn report(result: Result<String, String>) -> ExitCode {
    match result {
        Ok(done) => {
            println!("{done}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("jenkins-ha: {e}");
            ExitCode::from(1)
        }
    }
}

fn pause(path: &Path, paused: bool) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    report(block_on(ops::set_paused(&config, paused)))
}

fn history(path: &Path, json: bool, limit: usize) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match ops::history(&config, limit) {
        Ok(rows) if json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&rows).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Ok(rows) => {
            print!("{}", ops::render_history(&rows));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("jenkins-ha: {e}");
            ExitCode::from(1)
        }
    }
}
