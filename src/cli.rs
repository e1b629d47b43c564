//! The command line: clap definitions and the front ends of `run`, `check-config` and `status`.
//!
//! Errors leave here as one line on stderr; config errors exit 2 before anything starts.
//! The help texts here are also the man page: `jenkins-ha man` renders them (see [`crate::manual`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueHint};

use crate::config::{Config, DEFAULT_CONFIG_PATH};
use crate::haproxy::HaproxyClient;
use crate::http_client::HttpClient;
use crate::jenkins::{Health, JenkinsClient};
use crate::node::{Node, Shared};
use crate::status::{render_table, ClusterStatus};

/// Keeps one of two Jenkins masters on a shared JENKINS_HOME active behind HAProxy.
///
/// jenkins-ha runs beside each of two Jenkins masters that share one JENKINS_HOME (NFS) behind
/// HAProxy. Together the two sidecars keep exactly one master active: HAProxy routes to it and it
/// runs builds. The other master is a standby: it is kept in quiet-down, so it starts no builds,
/// and in maint in HAProxy. When the active fails, the standby takes over and flips HAProxy
/// through its runtime API. Two actives never run at the same moment.
///
/// The lease on the shared storage (lease.dir, default <jenkins.home>/.jenkins-ha) is the only
/// truth about who is active. A node that cannot renew its lease in time steps down on its own.
/// Every decision is logged as one sentence saying what the node did and why; jenkins-ha status
/// shows the last one of each node.
///
/// Every command reads the config file given by -c, else $JENKINS_HA_CONFIG, else
/// /etc/jenkins-ha/config.yaml (the packaged one is commented key by key).
#[derive(Debug, Parser)]
#[command(name = "jenkins-ha", version, after_long_help = crate::manual::after_long_help())]
pub struct Cli {
    /// The config file (YAML).
    #[arg(short, long, global = true, env = "JENKINS_HA_CONFIG", default_value = DEFAULT_CONFIG_PATH,
          value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run the daemon (what the systemd unit starts).
    ///
    /// Loads and validates the config (exit 2 if it is invalid, before anything listens), serves
    /// the HTTP API on node.listen and runs the decision loop once per timing.interval: renew or
    /// watch the lease, check the local Jenkins, set the HAProxy servers, send heartbeats to the
    /// peer. It logs to stderr (the journal under systemd), filtered by $JENKINS_HA_LOG.
    /// SIGTERM or SIGINT stops it cleanly: an active node releases its term so that the peer
    /// takes over at once, and it exits 0. It exits 1 if it cannot start, for example when
    /// node.listen cannot be bound. SIGHUP re-reads the config and applies what can change
    /// safely (the cluster token, HAProxy sockets, backends and timeout, jenkins.restart_command
    /// and jenkins.reload_timeout), logging which changes need a restart instead.
    Run {
        /// Log format: `text` (default) or `json` (one JSON object per line, for log shippers).
        #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
        log_format: String,
    },
    /// Validate the config and the files it names; warn about unreachable sockets and Jenkins.
    ///
    /// Exits 2 with one line naming the file, the line and the field when the config is invalid,
    /// or when a token file is missing, empty or accessible by other users. Otherwise it asks
    /// every HAProxy socket whether node.name and peer.name are servers of every listed backend,
    /// and probes the local Jenkins; each problem found is a "warning:" line, and it still exits
    /// 0, since a node may be configured before HAProxy or Jenkins are up. The systemd unit runs
    /// it before run.
    CheckConfig,
    /// Show both nodes as one table, asked of the local sidecar.
    ///
    /// Asks the local sidecar's API (node.listen; 0.0.0.0 and :: mean loopback) for GET /status
    /// and prints the cluster's term and active node, then one row per node: role, term, Jenkins
    /// and HAProxy state, and the reason of its last decision. Exits 1 if the local sidecar does
    /// not answer.
    Status {
        /// Print the JSON document instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Planned switchover to the peer (or NODE). Exits 0 once the target is active and every
    /// HAProxy routes to it.
    Failover {
        /// The node to make active (default: the one that is not active).
        #[arg(long, value_name = "NODE")]
        to: Option<String>,
        /// Go ahead although the target looks unhealthy or the active is unreachable. The
        /// active's lease is still waited out: force never risks two actives.
        #[arg(long)]
        force: bool,
        /// Quiet the active Jenkins and wait up to this long for its running builds to end
        /// before handing over (e.g. 10m).
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        wait_builds: Option<Duration>,
    },
    /// Maintenance mode: no automatic failover or step-down until `resume` (the lease is still
    /// held and renewed; a planned `failover` still works).
    Pause,
    /// End maintenance mode.
    Resume,
    /// The past terms from the term files on the shared storage: term, node, times, reasons.
    History {
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
        /// How many terms, newest first.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Print the completion script for SHELL to stdout.
    ///
    /// The Debian package installs all three. By hand, write the script where the shell looks:
    /// jenkins-ha completions bash > /usr/share/bash-completion/completions/jenkins-ha (zsh:
    /// /usr/share/zsh/vendor-completions/_jenkins-ha; fish:
    /// /usr/share/fish/vendor_completions.d/jenkins-ha.fish).
    Completions {
        /// The shell to write the script for.
        shell: crate::manual::Shell,
    },
    /// Print the man page jenkins-ha(1) to stdout, as roff.
    #[command(hide = true)]
    Man,
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
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
        Cmd::Completions { shell } => crate::manual::completions(shell),
        Cmd::Man => crate::manual::man(),
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

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("JENKINS_HA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

fn run(path: &std::path::Path, json_logs: bool) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    init_logging(json_logs);
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    runtime().block_on(async move {
        let listener = match tokio::net::TcpListener::bind(config.node.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!(
                    "jenkins-ha: node.listen: cannot listen on {}: {e}",
                    config.node.listen
                );
                return ExitCode::from(1);
            }
        };
        tracing::info!(
            "jenkins-ha {} starting as {} (peer {}), API on {}, lease in {}",
            env!("CARGO_PKG_VERSION"),
            config.node.name,
            config.peer.name,
            config.node.listen,
            config.lease_location()
        );
        let shared = Shared::new(config);
        let node = match Node::start(shared.clone()) {
            Ok(n) => n,
            Err(e) => {
                eprintln!("jenkins-ha: {e}");
                return ExitCode::from(1);
            }
        };
        tokio::spawn(crate::api::serve(listener, shared.clone()));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        match signal_hook_tokio::Signals::new([
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGHUP,
        ]) {
            Ok(mut signals) => {
                let shared = shared.clone();
                let path = path.to_path_buf();
                tokio::spawn(async move {
                    use futures_util::StreamExt;
                    while let Some(sig) = signals.next().await {
                        if sig == signal_hook::consts::SIGHUP {
                            match Config::load(&path) {
                                Ok(new) => {
                                    shared.reload_config(&new);
                                }
                                Err(e) => tracing::error!(
                                    "SIGHUP: config not reloaded, keeping the running one: {e}"
                                ),
                            }
                            continue;
                        }
                        tracing::info!("signal {sig} received: stopping cleanly");
                        let _ = stop_tx.send(());
                        return;
                    }
                });
            }
            Err(e) => {
                eprintln!("jenkins-ha: cannot install signal handlers: {e}");
                return ExitCode::from(1);
            }
        }
        node.run(stop_rx).await;
        ExitCode::SUCCESS
    })
}

fn check_config(path: &std::path::Path) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    for w in &config.warnings {
        println!("warning: {w}");
    }
    runtime().block_on(async {
        for endpoint in &config.haproxy.sockets {
            let client = HaproxyClient::new(endpoint.clone(), Duration::from_secs(2));
            match client.show_servers_state(None).await {
                Ok(states) => {
                    for b in &config.haproxy.backends {
                        for server in [&config.node.name, &config.peer.name] {
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
        "{}: valid (node {}, peer {}, {} HAProxy socket(s), lease in {})",
        config.path.display(),
        config.node.name,
        config.peer.name,
        config.haproxy.sockets.len(),
        config.lease_location()
    );
    ExitCode::SUCCESS
}

/// The address to reach our own API at: `0.0.0.0` and `::` become loopback.
pub fn local_api(listen: SocketAddr) -> SocketAddr {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    addr
}

fn status(path: &std::path::Path, json: bool) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let url = format!("http://{}/status", local_api(config.node.listen));
    let result = runtime().block_on(async {
        HttpClient::new()
            .send(
                hyper::Method::GET,
                &url,
                &[],
                bytes::Bytes::new(),
                Duration::from_secs(3),
            )
            .await
    });
    let response = match result {
        Ok(r) if r.status.is_success() => r,
        Ok(r) => {
            eprintln!(
                "jenkins-ha: the local sidecar at {url} answered {}",
                r.status
            );
            return ExitCode::from(1);
        }
        Err(e) => {
            eprintln!(
                "jenkins-ha: the local sidecar does not answer: {e} (is jenkins-ha running?)"
            );
            return ExitCode::from(1);
        }
    };
    if json {
        println!("{}", String::from_utf8_lossy(&response.body).trim_end());
        return ExitCode::SUCCESS;
    }
    match serde_json::from_slice::<ClusterStatus>(&response.body) {
        Ok(s) => {
            print!("{}", render_table(&s));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("jenkins-ha: the local sidecar sent a status this version cannot read: {e}");
            ExitCode::from(1)
        }
    }
}

fn failover(
    path: &std::path::Path,
    to: Option<String>,
    force: bool,
    wait_builds: Duration,
) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let result = runtime().block_on(crate::ops::failover(
        &config,
        to,
        force,
        wait_builds,
        &mut |line| println!("{line}"),
    ));
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

fn pause(path: &std::path::Path, paused: bool) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match runtime().block_on(crate::ops::set_paused(&config, paused)) {
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

fn history(path: &std::path::Path, json: bool, limit: usize) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match crate::ops::history(&config, limit) {
        Ok(rows) if json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&rows).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Ok(rows) => {
            print!("{}", crate::ops::render_history(&rows));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("jenkins-ha: {e}");
            ExitCode::from(1)
        }
    }
}
