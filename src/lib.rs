//! jenkins-ha: keeps one of a set of Jenkins masters on a shared JENKINS_HOME active behind
//! HAProxy.
//!
//! The layers, arrows pointing down: [`cli`] → [`daemon`] → [`io`] → [`core`].
//! - [`core`]: the pure decision core (observations in; role, actions and a reason out).
//! - [`io`]: the adapters to the world: lease, Jenkins, HAProxy, HTTP, the JENKINS_HOME watcher.
//! - [`daemon`]: the loop that wires them together, the API and the tasks around it.
//! - [`cli`]: the command line on top.
//!
//! [`config`] is the YAML schema and [`status`] the status documents, shared by all of them.

pub mod cli;
pub mod config;
pub mod core;
pub mod daemon;
pub mod io;
pub mod secret;
pub mod status;

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

/// Locks a mutex, taking the data even if another thread panicked while holding it: the state
/// shared between the daemon's tasks stays usable (and its readers never panic in turn).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
