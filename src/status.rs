//! The status documents: what a node says about itself (also the peer heartbeat's body) and the
//! cluster view that `GET /status` and `jenkins-ha status` show.

use serde::{Deserialize, Serialize};

use crate::core::cluster::Candidate;
use crate::core::Role;

/// A finished reload, for `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReloadRecord {
    pub kind: String,
    pub at_unix_ms: u64,
    pub duration_ms: u64,
    pub result: String,
}

/// The last promotion of a node's Jenkins: which kind of catch-up ran, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromotionRecord {
    pub term: u64,
    /// `incremental` (per-item reloads only) or `full` (a full reload).
    pub kind: String,
    /// What it did and why ("incremental: 3 item reloads", "full reload: global configuration
    /// changed").
    pub detail: String,
    /// The first pass: from the start of the catch-up until users may be routed to it.
    pub took_ms: u64,
    /// From the start of the catch-up to the end of its final pass (after the fencing), when
    /// quiet-down is cancelled and builds may start. `None` until then.
    #[serde(default)]
    pub builds_after_ms: Option<u64>,
    /// When the catch-up started (wall clock, ms).
    #[serde(default)]
    pub started_unix_ms: u64,
    /// Queued builds cancelled because the old active had built those fires already.
    pub cancelled_queued: usize,
    /// Jobs reloaded by the last check because their `nextBuildNumber` on disk was ahead of
    /// the number their Jenkins had loaded.
    #[serde(default)]
    pub renumbered: usize,
}

/// A file that changed on disk and that only a restart of this node's Jenkins applies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestartNeeded {
    pub file: String,
    pub since_unix_ms: u64,
}

/// The JENKINS_HOME watcher as `status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WatchState {
    /// `poll` or `inotify`.
    pub mode: String,
    /// Why that mode.
    pub reason: String,
    pub items: usize,
    /// Changes waiting in the batch.
    pub pending: bool,
    /// The last reload plan, as a sentence, and what became of it.
    pub last_plan: Option<String>,
    pub last_scan_ms: Option<f64>,
    pub files_statted: Option<usize>,
    pub error: Option<String>,
}

/// What one node says about itself. Sent as the heartbeat body and shown in `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub name: String,
    pub role: Role,
    /// The newest term this node knows of (the one it holds, if active).
    pub term: Option<u64>,
    /// `up`, `down`, `reloading` or `unknown`.
    pub jenkins: String,
    /// Whether this node's Jenkins passes its health checks and could be promoted.
    #[serde(default)]
    pub jenkins_healthy: bool,
    /// Whether this node answers `GET /active` with 200: it holds the term with a valid lease and
    /// its Jenkins can serve.
    #[serde(default)]
    pub serving: bool,
    /// A full reload never finished: this Jenkins needs a restart and is never promoted.
    #[serde(default)]
    pub reload_failed: bool,
    /// Whether this node's Jenkins is in quiet-down, when known.
    #[serde(default)]
    pub quieting_down: Option<bool>,
    /// This node's server as HAProxy shows it: `ready`, `maint`, `drain`, `mixed`, `unknown`.
    #[serde(default)]
    pub haproxy: String,
    /// The last decision's sentence.
    #[serde(default)]
    pub reason: String,
    /// Set when this node just released its term (the peer should look at the lease now).
    #[serde(default)]
    pub released: bool,
    /// Set while this node hands its term over to the named node.
    #[serde(default)]
    pub handover_to: Option<String>,
    /// Seconds since this was heard (only for the peer, as seen from the answering node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heard_s: Option<f64>,
    /// Round-trip time of the last heartbeat, milliseconds (only for the peer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    /// Its `node.failover_priority` (0: never takes over).
    #[serde(default = "default_priority")]
    pub priority: u32,
    /// Its Jenkins has applied every change seen on disk.
    #[serde(default)]
    pub current: bool,
    /// Set by the answering node when this node's heartbeat contradicts the lease (for
    /// example, it says it is active while the lease names another holder): the role shown is
    /// the lease's, not the heartbeat's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contradiction: Option<String>,
    /// What this node knows of what its Jenkins has loaded (`known`, `checking item by item,
    /// N left`, `unknown (...)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loaded: Option<String>,
    /// The last promotion of its Jenkins: the kind of catch-up and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<PromotionRecord>,
    /// Files changed on disk that only a restart of its Jenkins applies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restart_needed: Vec<RestartNeeded>,
    /// The JENKINS_HOME watcher.
    #[serde(default)]
    pub watch: Option<WatchState>,
    /// Reloads of this node's Jenkins.
    #[serde(default)]
    pub reloads: Reloads,
    /// The version of this node's jenkins-ha (empty from a node older than this field).
    #[serde(default)]
    pub version: String,
    /// Why the answering node's last heartbeat to this node failed (only for the other nodes,
    /// and only while it fails): "TLS: certificate verify failed: ...", "connection refused".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_error: Option<String>,
}

/// Reload counts and the last reload of one node's Jenkins.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reloads {
    pub full: u64,
    pub item: u64,
    pub last: Option<ReloadRecord>,
}

impl NodeStatus {
    /// The peer as shown when nothing was heard from it.
    pub fn unreachable(name: &str) -> Self {
        NodeStatus {
            name: name.into(),
            role: Role::Unreachable,
            term: None,
            jenkins: "unknown".into(),
            jenkins_healthy: false,
            serving: false,
            reload_failed: false,
            quieting_down: None,
            haproxy: "unknown".into(),
            reason: "no heartbeat received".into(),
            released: false,
            handover_to: None,
            last_heard_s: None,
            rtt_ms: None,
            priority: default_priority(),
            current: false,
            contradiction: None,
            loaded: None,
            promotion: None,
            restart_needed: Vec::new(),
            watch: None,
            reloads: Reloads::default(),
            version: String::new(),
            heartbeat_error: None,
        }
    }
}

fn default_priority() -> u32 {
    1
}

/// The lease as the answering node last read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseStatus {
    pub term: Option<u64>,
    pub holder: Option<String>,
    pub counter: Option<u64>,
    /// How long the counter has been still, seconds, on the answering node's clock.
    pub still_s: f64,
    pub released: bool,
    pub handover_to: Option<String>,
    /// Set when the lease could not be read.
    #[serde(default)]
    pub error: Option<String>,
}

/// One HAProxy socket as the answering node last saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SocketStatus {
    pub socket: String,
    pub ok: bool,
    #[serde(default)]
    pub error: Option<String>,
    /// `backend/server` → `ready`, `maint`, `drain`.
    pub servers: Vec<ServerStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerStatus {
    pub backend: String,
    pub server: String,
    pub state: String,
}

/// `GET /status`: both nodes and the lease, from the answering node's point of view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The node that holds the current term and is active; null while none does.
    pub active: Option<String>,
    /// Which node answered.
    pub reporter: String,
    pub paused: bool,
    pub nodes: Vec<NodeStatus>,
    pub lease: LeaseStatus,
    pub haproxy: Vec<SocketStatus>,
}

impl ClusterStatus {
    /// Every node as a switchover sees it ([`crate::core::cluster::switchover`]).
    pub fn candidates(&self) -> Vec<Candidate> {
        self.nodes
            .iter()
            .map(|n| Candidate {
                name: n.name.clone(),
                role: n.role,
                jenkins_healthy: n.jenkins_healthy,
                jenkins_broken: n.reload_failed,
                jenkins: if n.reload_failed {
                    "stuck after a failed reload".into()
                } else {
                    n.jenkins.clone()
                },
                priority: n.priority,
                current: n.current,
            })
            .collect()
    }
}

/// A node's version as the table shows it: `-` for a node never heard from, `?` for one older
/// than the version field.
fn version_cell(n: &NodeStatus) -> String {
    if !n.version.is_empty() {
        n.version.clone()
    } else if n.role == Role::Unreachable && n.last_heard_s.is_none() {
        "-".into()
    } else {
        "?".into()
    }
}

/// The line flagging nodes that run different versions (a rolling upgrade half done), if any.
fn version_mismatch(nodes: &[NodeStatus]) -> Option<String> {
    let known: Vec<(&str, String)> = nodes
        .iter()
        .map(|n| (n.name.as_str(), version_cell(n)))
        .filter(|(_, v)| v != "-")
        .collect();
    let first = &known.first()?.1;
    if known.iter().all(|(_, v)| v == first) {
        return None;
    }
    let list = known
        .iter()
        .map(|(name, v)| {
            if v == "?" {
                format!("{name} an older version")
            } else {
                format!("{name} {v}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    Some(format!(
        "Versions differ: {list}; finish the upgrade (the standby first, then the active)\n"
    ))
}

/// Renders the status as a table, like `patronictl list`.
pub fn render_table(status: &ClusterStatus) -> String {
    let mut out = String::new();
    let term = status
        .lease
        .term
        .map(|t| t.to_string())
        .unwrap_or_else(|| "-".into());
    out.push_str(&format!(
        "Cluster: term {term}, active: {}{}\n",
        status.active.as_deref().unwrap_or("NONE"),
        if status.paused {
            "   *** PAUSED: no automatic failover ***"
        } else {
            ""
        }
    ));
    let headers = [
        "Node",
        "Role",
        "Term",
        "Jenkins",
        "HAProxy",
        "Version",
        "Last reason",
    ];
    let rows: Vec<[String; 7]> = status
        .nodes
        .iter()
        .map(|n| {
            let mut jenkins = n.jenkins.clone();
            if n.reload_failed {
                jenkins.push_str(" (reload failed)");
            } else if n.quieting_down == Some(true) && n.role != Role::Active {
                jenkins.push_str(" (quiet)");
            }
            [
                n.name.clone(),
                n.role.to_string(),
                n.term.map(|t| t.to_string()).unwrap_or_else(|| "-".into()),
                jenkins,
                n.haproxy.clone(),
                version_cell(n),
                n.reason.clone(),
            ]
        })
        .collect();
    let mut widths = headers.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    out.push_str(&line(&headers.map(String::from)));
    for row in &rows {
        out.push_str(&line(row));
    }
    if let Some(line) = version_mismatch(&status.nodes) {
        out.push_str(&line);
    }
    for n in &status.nodes {
        if let Some(e) = &n.heartbeat_error {
            out.push_str(&format!(
                "{}: heartbeats from {} fail: {e}\n",
                n.name, status.reporter
            ));
        }
        if let Some(c) = &n.contradiction {
            out.push_str(&format!(
                "{}: its heartbeat {c} (the lease is believed)\n",
                n.name
            ));
        }
        if let Some(w) = &n.watch {
            let mut line = format!("{}: watching JENKINS_HOME by {}", n.name, w.mode);
            if w.pending {
                line.push_str(", changes pending");
            }
            line.push_str(&format!(", {} items", w.items));
            if let Some(loaded) = n.loaded.as_deref().filter(|l| *l != "known") {
                line.push_str(&format!(", loaded state {loaded}"));
            }
            if let Some(ms) = w.last_scan_ms {
                line.push_str(&format!(", last scan {ms:.1} ms"));
            }
            out.push_str(&line);
            out.push('\n');
        }
        if let Some(p) = &n.promotion {
            out.push_str(&format!(
                "{}: promoted for term {} in {:.1} s{}: {}{}\n",
                n.name,
                p.term,
                p.took_ms as f64 / 1000.0,
                p.builds_after_ms
                    .map(|ms| format!(", builds after {:.1} s", ms as f64 / 1000.0))
                    .unwrap_or_default(),
                p.detail,
                [
                    (p.renumbered > 0).then(|| {
                        format!(
                            "; {} job(s) reloaded whose next build number the disk had ahead",
                            p.renumbered
                        )
                    }),
                    (p.cancelled_queued > 0).then(|| {
                        format!(
                            "; {} queued build(s) the old active had run were cancelled",
                            p.cancelled_queued
                        )
                    }),
                ]
                .into_iter()
                .flatten()
                .collect::<String>()
            ));
        }
        for r in &n.restart_needed {
            out.push_str(&format!(
                "{}: RESTART NEEDED: {} changed on disk at {}; no reload applies it\n",
                n.name,
                r.file,
                humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + std::time::Duration::from_millis(r.since_unix_ms)
                )
            ));
        }
        if let Some(last) = &n.reloads.last {
            out.push_str(&format!(
                "{}: reloads {} full, {} item; last: {} took {:.1} s, {}\n",
                n.name,
                n.reloads.full,
                n.reloads.item,
                last.kind,
                last.duration_ms as f64 / 1000.0,
                last.result
            ));
        }
    }
    for socket in &status.haproxy {
        if let Some(e) = &socket.error {
            out.push_str(&format!("HAProxy {}: {e}\n", socket.socket));
        }
    }
    if let Some(e) = &status.lease.error {
        out.push_str(&format!("Lease: {e}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, role: Role, version: &str) -> NodeStatus {
        let mut n = NodeStatus::unreachable(name);
        n.role = role;
        n.version = version.into();
        n.last_heard_s = Some(0.1);
        n
    }

    fn cluster(nodes: Vec<NodeStatus>) -> ClusterStatus {
        ClusterStatus {
            active: Some("jenkins01".into()),
            reporter: "jenkins01".into(),
            paused: false,
            nodes,
            lease: LeaseStatus {
                term: Some(3),
                holder: Some("jenkins01".into()),
                counter: Some(1),
                still_s: 0.0,
                released: false,
                handover_to: None,
                error: None,
            },
            haproxy: vec![],
        }
    }

    #[test]
    fn the_table_shows_each_version_and_flags_a_mismatch() {
        let same = render_table(&cluster(vec![
            node("jenkins01", Role::Active, "0.2.0"),
            node("jenkins02", Role::Standby, "0.2.0"),
        ]));
        assert!(same.contains("Version"), "{same}");
        assert!(!same.contains("Versions differ"), "{same}");
        let mixed = render_table(&cluster(vec![
            node("jenkins01", Role::Active, "0.2.0"),
            node("jenkins02", Role::Standby, "0.1.0"),
        ]));
        assert!(
            mixed.contains("Versions differ: jenkins01 0.2.0, jenkins02 0.1.0; finish the upgrade"),
            "{mixed}"
        );
        // A node older than the version field reads as one; one never heard from is left out.
        let older = render_table(&cluster(vec![
            node("jenkins01", Role::Active, "0.2.0"),
            node("jenkins02", Role::Standby, ""),
            NodeStatus::unreachable("jenkins03"),
        ]));
        assert!(
            older.contains("Versions differ: jenkins01 0.2.0, jenkins02 an older version;"),
            "{older}"
        );
        assert!(
            older
                .lines()
                .any(|l| l.starts_with("jenkins03") && l.contains(" - ")),
            "{older}"
        );
    }

    #[test]
    fn a_status_from_an_older_node_still_parses() {
        // No version, no heartbeat_error: what a node before these fields sends.
        let old = r#"{"name":"b","role":"standby","term":1,"jenkins":"up"}"#;
        let n: NodeStatus = serde_json::from_str(old).unwrap();
        assert_eq!(n.version, "");
        assert_eq!(n.heartbeat_error, None);
    }

    #[test]
    fn a_failing_heartbeat_is_a_line_under_the_table() {
        let mut peer = node("jenkins02", Role::Unreachable, "0.2.0");
        peer.heartbeat_error = Some(
            "POST https://h:7070/v1/heartbeat: TLS: certificate verify failed: unknown issuer"
                .into(),
        );
        let table = render_table(&cluster(vec![
            node("jenkins01", Role::Active, "0.2.0"),
            peer,
        ]));
        assert!(
            table.contains("jenkins02: heartbeats from jenkins01 fail: POST https://h:7070/v1/heartbeat: TLS: certificate verify failed: unknown issuer\n"),
            "{table}"
        );
    }
}
