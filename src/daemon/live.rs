//! The settings that SIGHUP can change while the daemon runs, and the SIGHUP diff itself.
//!
//! Everything else (names, addresses, the lease, timing, the watcher) needs a restart: changing
//! it under a running lease is not safe, and the log says so for each such change.

use std::sync::Mutex;
use std::time::Duration;

use crate::config::{Config, HaproxyConfig, Secret};
use crate::lock;

/// The settings SIGHUP applies at once.
#[derive(Debug, Clone, PartialEq)]
pub struct Reloadable {
    pub cluster_token: Secret,
    pub haproxy: HaproxyConfig,
    pub restart_command: Option<String>,
    pub reload_timeout: Duration,
}

impl Reloadable {
    pub fn of(config: &Config) -> Self {
        Reloadable {
            cluster_token: config.cluster_token.clone(),
            haproxy: config.haproxy.clone(),
            restart_command: config.jenkins.restart_command.clone(),
            reload_timeout: config.jenkins.reload_timeout,
        }
    }
}

/// The live settings, shared by every task that reads them each time it needs them.
#[derive(Debug)]
pub struct Live(Mutex<Reloadable>);

impl Live {
    pub fn new(config: &Config) -> Self {
        Live(Mutex::new(Reloadable::of(config)))
    }

    /// The current settings.
    pub fn get(&self) -> Reloadable {
        lock(&self.0).clone()
    }

    /// SIGHUP: applies what can change safely from a freshly loaded config, and says which
    /// changes need a restart. Returns the lines to log.
    pub fn apply(&self, old: &Config, new: &Config) -> Vec<String> {
        let mut lines = Vec::new();
        let fresh = Reloadable::of(new);
        {
            let mut live = lock(&self.0);
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
            *live = fresh;
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
