//! The settings that SIGHUP can change while the daemon runs, and the SIGHUP diff itself.
//!
//! Everything else (names, addresses, the lease, timing, the watcher, turning `node.tls` on or
//! off) needs a restart: changing it under a running lease is not safe, and the log says so for
//! each such change. New certificates in `node.tls` (same keys, new file contents) apply at once:
//! rotating them must not need a restart, which would hand the active node's term over.

use std::sync::Mutex;
use std::time::Duration;

use crate::config::{Config, HaproxyConfig, Secret};
use crate::io::tls::NodeTls;
use crate::lock;

/// The settings SIGHUP applies at once.
#[derive(Debug, Clone, PartialEq)]
pub struct Reloadable {
    pub cluster_token: Secret,
    pub haproxy: HaproxyConfig,
    pub restart_command: Option<String>,
    pub reload_timeout: Duration,
    /// `node.tls`: the certificates and the CA re-read from their files, and
    /// `require_client_cert`. Turning TLS on or off needs a restart.
    pub tls: Option<NodeTls>,
}

impl Reloadable {
    pub fn of(config: &Config) -> Self {
        Reloadable {
            cluster_token: config.cluster_token.clone(),
            haproxy: config.haproxy.clone(),
            restart_command: config.jenkins.restart_command.clone(),
            reload_timeout: config.jenkins.reload_timeout,
            tls: config.node.tls.clone(),
        }
    }
}

/// The live settings, shared by every task that reads them each time it needs them.
#[derive(Debug)]
pub struct Live {
    current: Mutex<Reloadable>,
    /// Bumped when SIGHUP brings new `node.tls` contents: the API closes the TLS connections
    /// opened before, so that every connection uses the new certificates.
    tls_generation: tokio::sync::watch::Sender<u64>,
}

impl Live {
    pub fn new(config: &Config) -> Self {
        Live {
            current: Mutex::new(Reloadable::of(config)),
            tls_generation: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Changes when SIGHUP applies new `node.tls` contents.
    pub fn tls_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.tls_generation.subscribe()
    }

    /// The current settings.
    pub fn get(&self) -> Reloadable {
        lock(&self.current).clone()
    }

    /// The current `node.tls` alone (the API reads it for every connection).
    pub fn tls(&self) -> Option<NodeTls> {
        lock(&self.current).tls.clone()
    }

    /// SIGHUP: applies what can change safely from a freshly loaded config, and says which
    /// changes need a restart. Returns the lines to log.
    pub fn apply(&self, old: &Config, new: &Config) -> Vec<String> {
        let mut lines = Vec::new();
        let mut fresh = Reloadable::of(new);
        let tls_switched = fresh.tls.is_some() != lock(&self.current).tls.is_some();
        {
            let mut live = lock(&self.current);
            if tls_switched {
                // The listener speaks HTTPS or HTTP from the start: keep what it speaks.
                fresh.tls = live.tls.clone();
            }
            let mut applied = |field: &str, changed: bool| {
                if changed {
                    lines.push(format!("applied: {field}"));
                }
            };
            applied(
                "auth.token_file (new cluster token)",
                live.cluster_token != fresh.cluster_token,
            );
            applied(
                "haproxy.sockets",
                live.haproxy.sockets != fresh.haproxy.sockets,
            );
            applied(
                "haproxy.backends",
                live.haproxy.backends != fresh.haproxy.backends,
            );
            applied(
                "haproxy.timeout",
                live.haproxy.timeout != fresh.haproxy.timeout,
            );
            applied(
                "jenkins.restart_command",
                live.restart_command != fresh.restart_command,
            );
            applied(
                "jenkins.reload_timeout",
                live.reload_timeout != fresh.reload_timeout,
            );
            let tls_changed = live.tls != fresh.tls;
            applied(
                "node.tls (certificate, key and CA re-read; connections opened before are closed)",
                tls_changed,
            );
            *live = fresh;
            if tls_changed {
                self.tls_generation.send_modify(|g| *g += 1);
            }
        }
        let mut restart = |field: &str, changed: bool| {
            if changed {
                lines.push(format!("not applied, needs a restart: {field}"));
            }
        };
        restart(
            "node",
            old.node.name != new.node.name || old.node.listen != new.node.listen,
        );
        restart("node.tls (turning TLS on or off)", tls_switched);
        restart("peer", old.peers != new.peers);
        restart(
            "jenkins (url, user, api token, home, timeout)",
            old.jenkins.url != new.jenkins.url
                || old.jenkins.user != new.jenkins.user
                || old.jenkins.api_token != new.jenkins.api_token
                || old.jenkins.home != new.jenkins.home
                || old.jenkins.timeout != new.jenkins.timeout,
        );
        restart("lease.dir", old.lease_dir != new.lease_dir);
        restart(
            "lease.backend / lease.etcd",
            old.lease_etcd != new.lease_etcd,
        );
        restart("timing", old.timing != new.timing);
        restart(
            "watch",
            old.watch.mode != new.watch.mode
                || old.watch.poll_interval != new.watch.poll_interval
                || old.watch.debounce != new.watch.debounce,
        );
        if lines.is_empty() {
            lines.push("nothing changed".into());
        }
        lines
    }
}
