//! The command line's definitions (clap). These help texts are also the man page and the
//! completions ([`super::manual`]).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueHint};

use crate::config::DEFAULT_CONFIG_PATH;

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
#[command(name = "jenkins-ha", version, after_long_help = super::help::after_long_help())]
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
    /// safely (the cluster token, the node.tls certificates, key and CA, HAProxy sockets,
    /// backends and timeout, jenkins.restart_command and jenkins.reload_timeout), logging which
    /// changes need a restart instead. With node.tls the API serves HTTPS only.
    Run {
        /// Log format: `text` (default) or `json` (one JSON object per line, for log shippers).
        #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
        log_format: String,
    },
    /// Validate the config and the files it names; warn about unreachable sockets and Jenkins.
    ///
    /// Exits 2 with one line naming the file, the line and the field when the config is invalid,
    /// when a token file is missing, empty or accessible by other users, or when the node.tls
    /// files do not fit (a key readable by others or of another certificate, a certificate that
    /// node.tls.ca_file did not sign). A node certificate that has expired, expires within 30
    /// days or does not name the address the CLI uses is a warning. Otherwise it asks
    /// every HAProxy socket whether node.name and peer.name are servers of every listed backend,
    /// and probes the local Jenkins; each problem found is a "warning:" line, and it still exits
    /// 0, since a node may be configured before HAProxy or Jenkins are up. The systemd unit runs
    /// it before run.
    CheckConfig,
    /// Show every node as one table, asked of the local sidecar (or the one at --url).
    ///
    /// Asks the local sidecar's API (node.listen; 0.0.0.0 and :: mean loopback; https:// when
    /// node.tls is set) for GET /status and prints the cluster's term and active node, then one
    /// row per node: role, term, Jenkins and HAProxy state, jenkins-ha version, and the reason of
    /// its last decision. Lines below the table flag versions that differ between nodes and
    /// heartbeats that fail (with the cause: a refused token, a TLS certificate that does not
    /// verify, a connection refused). It only reads: it never writes a file or changes anything.
    ///
    /// Exits 0 when the sidecar answered and a node is active, 3 when it answered but no node
    /// is active, and 1 when it did not answer. With --watch it runs until Ctrl-C (or SIGTERM)
    /// and exits with the code of its last round.
    Status {
        /// Print the JSON document instead of the table (with --watch: one JSON object per line,
        /// per round).
        #[arg(long)]
        json: bool,
        /// Ask again every INTERVAL (default 2s) until Ctrl-C. On a terminal the table is
        /// redrawn in place; otherwise one table per round, separated by a blank line.
        #[arg(long, value_name = "INTERVAL", num_args = 0..=1, default_missing_value = "2s",
              value_parser = parse_watch_interval)]
        watch: Option<Duration>,
        /// Ask the sidecar at URL (http://HOST:7070, or https:// with node.tls in the config,
        /// whose CA and certificate are used) instead of the local one.
        #[arg(long, value_name = "URL", value_hint = ValueHint::Url)]
        url: Option<String>,
    },
    /// Planned switchover to the peer (or NODE). Exits 0 once the target is active and every
    /// HAProxy routes to it.
    ///
    /// When stdin is a terminal it first shows what will happen ("switch over from jenkins01 to
    /// jenkins02? [y/N]") and goes ahead only on "y"; --yes skips the question, and scripts
    /// (stdin not a terminal) never see it.
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
        /// Do not ask for confirmation.
        #[arg(short = 'y', long)]
        yes: bool,
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
        shell: super::help::Shell,
    },
    /// Print the man page jenkins-ha(1) to stdout, as roff.
    #[command(hide = true)]
    Man,
}

/// `status --watch INTERVAL`: a duration from 100ms to 1h.
fn parse_watch_interval(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if d < Duration::from_millis(100) || d > Duration::from_secs(3600) {
        return Err(format!("{text:?} must be from 100ms to 1h"));
    }
    Ok(d)
}
