//! The daemon: the loop that wires the IO adapters to the pure core, and the tasks around it.
//!
//! - [`start`]: `jenkins-ha run`: binds the API, starts every task, waits for a signal, stops.
//! - [`node`]: the loop, one tick = [`observe`] → `Core::decide` → [`act`], then publish.
//! - [`shared`]: what the loop publishes for the API and the heartbeats.
//! - [`health`]: the Jenkins health checks, never held up by anything else.
//! - [`jenkins_control`]: carries out what the core asks of the local Jenkins.
//! - [`routing`]: keeps HAProxy routing to the active node.
//! - [`peer`]: heartbeats to the other nodes.
//! - [`api`]: the HTTP API; [`listener`]: its connections, plain or TLS (`node.tls`).
//! - [`live`]: the settings SIGHUP changes while running.
//! - [`metrics`]: the Prometheus metrics.
//! - [`shutdown`]: stopping, as one explicit piece.

pub mod act;
pub mod api;
pub mod health;
pub mod jenkins_control;
pub mod listener;
pub mod live;
pub mod metrics;
pub mod node;
pub mod observe;
pub mod peer;
pub mod routing;
pub mod shared;
pub mod shutdown;
pub mod start;
