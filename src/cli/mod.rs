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
use self::client::{Sidecar, SidecarError};
use crate::config::Config;
use crate::io::haproxy::HaproxyClient;
use crate::io::jenkins::{Health, JenkinsClient};
use crate::status::{render_table, ClusterStatus};

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
        Cmd::Status { json, watch, url } => status(&cli.config, json, watch, url),
        Cmd::Failover {
            to,
            force,
            wait_builds,
            yes,
        } => failover(&cli.config, to, force, wait_builds.unwrap_or_default(), yes),
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
        "{}: valid (node {}{}, {}, {} HAProxy socket(s), lease in {})",
        config.path.display(),
        config.node.name,
        match &config.node.tls {
            Some(t) if t.require_client_cert => ", API over HTTPS with client certificates",
            Some(_) => ", API over HTTPS",
            None => "",
        },
        config.peers_phrase(),
        config.haproxy.sockets.len(),
        config.lease_location()
    );
    ExitCode::SUCCESS
}

fn status(path: &Path, json: bool, watch: Option<Duration>, url: Option<String>) -> ExitCode {
    // With --url and http://, the config is only needed if it exists (an operator's
    // workstation may have none); https:// needs its node.tls.
    let config = if url.is_some() && !path.exists() {
        None
    } else {
        match load(path) {
            Ok(c) => Some(c),
            Err(code) => return code,
        }
    };
    let sidecar = match (&url, &config) {
        (None, Some(c)) => Sidecar::local(c),
        (Some(u), c) => {
            let u = u.trim_end_matches('/');
            let https = u.starts_with("https://");
            if !https && !u.starts_with("http://") {
                eprintln!("jenkins-ha: --url {u}: must start with http:// or https://");
                return ExitCode::from(2);
            }
            if https && c.as_ref().and_then(|c| c.node.tls.as_ref()).is_none() {
                eprintln!(
                    "jenkins-ha: --url {u}: https:// needs node.tls in {} (its ca_file verifies the sidecar, its certificate identifies this client)",
                    path.display()
                );
                return ExitCode::from(2);
            }
            Sidecar::at(u, c.as_ref())
        }
        (None, None) => return ExitCode::from(2),
    };
    match watch {
        None => block_on(async {
            let round = sidecar.status().await;
            let code = status_code(&round);
            match round {
                Ok((body, status)) => {
                    let text = if json {
                        format!("{}\n", String::from_utf8_lossy(&body).trim_end())
                    } else {
                        render_table(&status)
                    };
                    if !emit(&text) {
                        return ExitCode::from(1);
                    }
                }
                Err(e) => eprintln!("jenkins-ha: {e}"),
            }
            ExitCode::from(code)
        }),
        Some(every) => block_on(watch_status(&sidecar, json, every)),
    }
}

/// The exit code of one `status` round: 0 a node is active, 3 none is, 1 no answer.
fn status_code(round: &Result<(bytes::Bytes, ClusterStatus), SidecarError>) -> u8 {
    match round {
        Ok((_, s)) if s.active.is_some() => 0,
        Ok(_) => EXIT_NO_ACTIVE,
        Err(_) => 1,
    }
}

/// Writes `text` to stdout; false when it cannot (a closed pipe).
fn emit(text: &str) -> bool {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .is_ok()
}

/// `status --watch`: a round every `every` until SIGINT or SIGTERM; the exit code is the last
/// round's (1 when stdout closes). On a terminal each round redraws the screen; elsewhere (a
/// pipe, a file) rounds follow each other, tables separated by a blank line and JSON one object
/// per line, with no escape codes.
async fn watch_status(sidecar: &Sidecar, json: bool, every: Duration) -> ExitCode {
    use futures_util::StreamExt;
    let terminal = std::io::stdout().is_terminal() && !json;
    let mut signals = match signal_hook_tokio::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("jenkins-ha: cannot install signal handlers: {e}");
            return ExitCode::from(1);
        }
    };
    let mut code;
    let mut first = true;
    loop {
        let round = sidecar.status().await;
        code = status_code(&round);
        let text = match (&round, json) {
            (Ok((body, _)), true) => {
                // One line per round: the document, compacted.
                let line = serde_json::from_slice::<serde_json::Value>(body)
                    .map(|v| v.to_string())
                    .unwrap_or_else(|_| String::from_utf8_lossy(body).replace('\n', " "));
                format!("{line}\n")
            }
            (Ok((_, status)), false) => render_table(status),
            (Err(e), _) if terminal => format!("jenkins-ha: {e}\n"),
            (Err(e), _) => {
                eprintln!("jenkins-ha: {e}");
                String::new()
            }
        };
        let text = if terminal {
            // Home and clear the screen, then a header like watch(1)'s.
            format!(
                "\x1b[H\x1b[2JEvery {}: jenkins-ha status ({}), {}; Ctrl-C to stop\n\n{text}",
                crate::config::show(every),
                sidecar.base(),
                humantime::format_rfc3339_seconds(std::time::SystemTime::now())
            )
        } else if !first && !json && !text.is_empty() {
            format!("\n{text}")
        } else {
            text
        };
        if !text.is_empty() {
            first = false;
            if !emit(&text) {
                return ExitCode::from(1);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = signals.next() => break,
        }
    }
    signals.handle().close();
    ExitCode::from(code)
}

/// Asks "switch over from A to B? [y/N]" on the terminal, from the status the local sidecar
/// gives now. True to go ahead. A request the sidecar will refuse, or one with nothing to do,
/// is not asked about: the sidecar's answer says so and nothing changes.
fn confirm_failover(
    config: &Config,
    to: Option<&str>,
    force: bool,
    wait_builds: Duration,
) -> Result<bool, String> {
    use crate::core::cluster::{switchover, Switchover};
    let (_, status) = block_on(Sidecar::local(config).status()).map_err(|e| e.to_string())?;
    let me = status.reporter.as_str();
    let plan = switchover(
        me,
        to,
        force,
        &status.candidates(),
        status.active.as_deref(),
    );
    let mut question = match plan {
        Err(_) | Ok(Switchover::AlreadyActive { .. }) => return Ok(true),
        Ok(Switchover::HandOver { to }) => format!("switch over from {me} to {to}"),
        Ok(Switchover::Forward { to, via }) => format!("switch over from {via} to {to}"),
        Ok(Switchover::ForceTakeover) => format!(
            "force a takeover by {me}: the active node {} is unreachable; {me} takes over once its lease has run out (up to {})",
            status.lease.holder.as_deref().unwrap_or("(unknown)"),
            crate::config::show(config.timing.lease_timeout)
        ),
    };
    if force {
        question.push_str(", overriding the health checks (--force)");
    }
    if !wait_builds.is_zero() {
        question.push_str(&format!(
            ", after waiting up to {} for running builds",
            crate::config::show(wait_builds)
        ));
    }
    eprint!("{question}? [y/N] ");
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| format!("cannot read the answer: {e}"))?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

fn failover(
    path: &Path,
    to: Option<String>,
    force: bool,
    wait_builds: Duration,
    yes: bool,
) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if !yes && std::io::stdin().is_terminal() {
        match confirm_failover(&config, to.as_deref(), force, wait_builds) {
            Ok(true) => {}
            Ok(false) => {
                eprintln!("jenkins-ha: failover not confirmed; nothing changed");
                return ExitCode::from(1);
            }
            Err(e) => {
                eprintln!("jenkins-ha: {e}");
                return ExitCode::from(1);
            }
        }
    }
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
