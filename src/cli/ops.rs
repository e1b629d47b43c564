//! The operator commands behind the CLI: `failover`, `pause`, `resume` (through the local
//! sidecar's authenticated API) and `history` (read straight from the term files on the shared
//! storage, so either node shows the same history).

use std::fmt::Write as _;
use std::time::{Duration, Instant, UNIX_EPOCH};

use super::client::{message, Sidecar};
use crate::config::Config;
use crate::daemon::api::FailoverRequest;
use crate::io::lease::{FileLease, Lease, TermFile};
use crate::io::lease_etcd::{EtcdLease, CLI_BUDGET};
use crate::status::ClusterStatus;

/// Whether every HAProxy socket, as the local node sees it, routes to `target` only.
fn routed_to(s: &ClusterStatus, target: &str) -> bool {
    !s.haproxy.is_empty()
        && s.haproxy.iter().all(|sock| {
            sock.ok
                && !sock.servers.is_empty()
                && sock.servers.iter().all(|srv| {
                    if srv.server == target {
                        srv.state == "ready"
                    } else {
                        srv.state == "maint"
                    }
                })
        })
}

/// A planned switchover. Prints progress lines; returns once `target` is active and every
/// HAProxy routes to it, or an error line.
pub async fn failover(
    config: &Config,
    to: Option<String>,
    force: bool,
    wait_builds: Duration,
    out: &mut dyn FnMut(&str),
) -> Result<String, String> {
    let sidecar = Sidecar::local(config);
    let token = config.cluster_token.expose();
    let request = FailoverRequest {
        to: to.clone(),
        force,
        wait_builds_s: wait_builds.as_secs_f64(),
    };
    let body = serde_json::to_string(&request).map_err(|e| e.to_string())?;
    let r = sidecar
        .post(token, "/failover", body)
        .await
        .map_err(|e| e.to_string())?;
    let said = message(&r);
    match r.status.as_u16() {
        200 => return Ok(said),
        202 => out(&said),
        401 => {
            return Err(
                "the sidecar refused our token (401): is auth.token_file the same on both nodes?"
                    .into(),
            )
        }
        _ => return Err(said),
    }
    // The target: the one named, or the one the sidecar chose.
    let chosen = serde_json::from_slice::<serde_json::Value>(&r.body)
        .ok()
        .and_then(|v| v.get("target")?.as_str().map(str::to_string));
    let Some(target) = to.or(chosen) else {
        return Err(format!(
            "the sidecar accepted the switchover but named no target: {said}"
        ));
    };
    let timeout = wait_builds
        + config.jenkins.reload_timeout
        + config.timing.lease_timeout * 3
        + Duration::from_secs(30);
    let started = Instant::now();
    let mut last = String::new();
    loop {
        if let Ok((_, s)) = sidecar.status().await {
            let line = s
                .nodes
                .iter()
                .map(|n| format!("{}: {}", n.name, n.reason))
                .collect::<Vec<_>>()
                .join(" | ");
            if line != last {
                out(&format!(
                    "[{:5.1} s] {line}",
                    started.elapsed().as_secs_f64()
                ));
                last = line;
            }
            if s.active.as_deref() == Some(target.as_str()) && routed_to(&s, &target) {
                return Ok(format!(
                    "{target} is active and every HAProxy routes to it ({:.1} s)",
                    started.elapsed().as_secs_f64()
                ));
            }
        }
        if started.elapsed() > timeout {
            return Err(format!(
                "{target} did not become active within {:.0} s; see `jenkins-ha status`",
                timeout.as_secs_f64()
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `pause` / `resume`.
pub async fn set_paused(config: &Config, paused: bool) -> Result<String, String> {
    let r = Sidecar::local(config)
        .post(
            config.cluster_token.expose(),
            if paused { "/pause" } else { "/resume" },
            String::new(),
        )
        .await
        .map_err(|e| e.to_string())?;
    match r.status.as_u16() {
        200 if paused => Ok(
            "paused: no automatic failover or step-down until `jenkins-ha resume` \
                             (a planned `jenkins-ha failover` still works)"
                .into(),
        ),
        200 => Ok("resumed: automatic failover is on again".into()),
        401 => Err(
            "the sidecar refused our token (401): is auth.token_file the same on both nodes?"
                .into(),
        ),
        _ => Err(message(&r)),
    }
}

/// One past term, as `history` shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HistoryRow {
    pub term: u64,
    pub node: Option<String>,
    pub started: Option<String>,
    pub ended: Option<String>,
    /// Why the term began.
    pub began: String,
    /// Why it ended (null while it runs).
    pub end: Option<String>,
}

fn time_of(ms: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// How long `history` waits for the shared storage before it gives up.
pub const HISTORY_TIMEOUT: Duration = Duration::from_secs(5);

/// The past terms, newest first, from the lease's history (the term files, or etcd). It only
/// reads, and gives up after [`HISTORY_TIMEOUT`] with one line naming the storage: a read stuck
/// in a hung NFS mount is left behind on its own thread, and the command still answers.
pub fn history(config: &Config, limit: usize) -> Result<Vec<HistoryRow>, String> {
    let files = match &config.lease_etcd {
        Some(etcd) => EtcdLease::new(etcd, config.timing.lease_timeout, CLI_BUDGET)?
            .history(limit + 1)
            .map_err(|e| format!("lease.etcd: {e}"))?,
        None => {
            let dir = config.lease_dir.clone();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::Builder::new()
                .name("history".into())
                .spawn(move || {
                    let read = FileLease::existing(&dir).and_then(|l| l.history(limit + 1));
                    let _ = tx.send(read);
                })
                .map_err(|e| format!("cannot start a thread to read the lease: {e}"))?;
            match rx.recv_timeout(HISTORY_TIMEOUT) {
                Ok(read) => read.map_err(|e| format!("lease.dir: {e}"))?,
                Err(_) => {
                    return Err(format!(
                        "lease.dir {}: no answer within {} s; is the shared JENKINS_HOME mount ({}) hung?",
                        config.lease_dir.display(),
                        HISTORY_TIMEOUT.as_secs(),
                        config.jenkins.home.display()
                    ))
                }
            }
        }
    };
    let mut rows = Vec::new();
    for (i, file) in files.iter().enumerate().take(limit) {
        // Files are newest first: the one before this in the list is the term that followed.
        let next = i.checked_sub(1).and_then(|j| files.get(j));
        let row = match file {
            TermFile::Valid(r) => {
                let strip = |s: &str| {
                    s.split_once(": ")
                        .map(|(_, rest)| rest.to_string())
                        .unwrap_or(s.to_string())
                };
                let ended_by_next = next.and_then(|n| match n {
                    TermFile::Valid(n) => Some(n.started_unix_ms),
                    TermFile::Garbage { .. } => None,
                });
                let ended = if r.released || r.end_reason.is_some() {
                    Some(r.renewed_unix_ms)
                } else {
                    ended_by_next.or((next.is_some()).then_some(r.renewed_unix_ms))
                };
                let end = match (&r.end_reason, next) {
                    (Some(e), _) => Some(strip(e)),
                    (None, Some(TermFile::Valid(n))) => {
                        Some(format!("taken over by {}: {}", n.node, strip(&n.reason)))
                    }
                    (None, Some(TermFile::Garbage { .. })) => Some("a newer term began".into()),
                    (None, None) if r.released => Some("released".into()),
                    (None, None) => None,
                };
                HistoryRow {
                    term: r.term,
                    node: Some(r.node.clone()),
                    started: Some(time_of(r.started_unix_ms)),
                    ended: ended.map(time_of),
                    began: strip(&r.reason),
                    end,
                }
            }
            TermFile::Garbage { term, why } => HistoryRow {
                term: *term,
                node: None,
                started: None,
                ended: None,
                began: format!("unreadable term file: {why}"),
                end: None,
            },
        };
        rows.push(row);
    }
    Ok(rows)
}

/// The history as a table.
pub fn render_history(rows: &[HistoryRow]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<6}{:<14}{:<22}{:<22}Reason",
        "Term", "Node", "Started", "Ended"
    );
    for r in rows {
        let reason = match &r.end {
            Some(end) => format!("began: {}; ended: {end}", r.began),
            None => format!("began: {} (current)", r.began),
        };
        let _ = writeln!(
            out,
            "{:<6}{:<14}{:<22}{:<22}{reason}",
            r.term,
            r.node.as_deref().unwrap_or("?"),
            r.started.as_deref().unwrap_or("-"),
            r.ended.as_deref().unwrap_or("-"),
        );
    }
    if rows.is_empty() {
        out.push_str("(no terms yet)\n");
    }
    out
}
