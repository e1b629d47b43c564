//! jenkins-ha: keeps one of two Jenkins masters on a shared JENKINS_HOME active behind HAProxy.
//!
//! The decision core ([`decide`]) is pure; everything else is a thin adapter around it
//! (lease, peer, jenkins, haproxy, routing, jenkins_control, api) wired together by [`node`].

pub mod api;
pub mod cli;
pub mod config;
pub mod decide;
pub mod haproxy;
pub mod http_client;
pub mod jenkins;
pub mod jenkins_control;
pub mod lease;
pub mod lease_etcd;
pub mod manual;
pub mod metrics;
pub mod node;
pub mod ops;
pub mod peer;
pub mod routing;
pub mod status;
pub mod watch;

/// Escapes control characters and the Unicode line and paragraph separators (`\n` becomes `\\n`),
/// so that text quoted from outside (a config key, an HAProxy reply, a peer's JSON) keeps an error
/// message or a log line on one line.
pub(crate) fn escape_controls(text: &str) -> String {
    let mut line = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
            line.extend(c.escape_default());
        } else {
            line.push(c);
        }
    }
    line
}
