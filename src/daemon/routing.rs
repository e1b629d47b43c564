//! Keeps HAProxy routing to the active node: the task around [`crate::io::haproxy::reconcile_with`].
//!
//! Every interval (and at once when the goal changes) the active node reconciles every listed
//! backend on every listed socket — its own server `ready`, every other node's `maint` —
//! correcting any drift (an HAProxy reload forgets runtime state). Every other node only reads
//! the state, for `status`. No write leaves after the lease's deadline: the haproxy module
//! checks the daemon's clock right before each write.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::live::Live;
use super::metrics::Metrics;
use crate::core::Mono;
use crate::io::clock;
use crate::io::haproxy::{self, HaproxyClient, SocketReport, WriteOrder};
use crate::lock;
use crate::status::{ServerStatus, SocketStatus};

/// What the decision wants from HAProxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteGoal {
    /// Read only.
    Observe,
    /// Route to us until `until` (the daemon's clock), then write nothing, in this order (or
    /// only fence the others).
    Route { until: Mono, order: WriteOrder },
}

/// What the routing task saw last, for `status` and metrics.
#[derive(Debug, Clone, Default)]
pub struct RoutingState {
    pub sockets: Vec<SocketStatus>,
    /// Our server's state across every socket and backend (`ready`, `maint`, `mixed`, ...).
    pub me: String,
    /// Every other node's server, by name.
    pub others: Vec<(String, String)>,
    pub writes: u64,
    pub write_errors: u64,
}

pub struct Routing {
    /// Sockets, backends and timeout come from here each round: SIGHUP may change them.
    pub live: Arc<Live>,
    pub me: String,
    /// Every other node's server name.
    pub others: Vec<String>,
    pub interval: Duration,
    pub state: Arc<Mutex<RoutingState>>,
    pub metrics: Arc<Metrics>,
}

impl Routing {
    pub async fn run(self, mut goal: watch::Receiver<RouteGoal>) {
        let mut settings = self.live.get().haproxy;
        let mut clients = Self::clients(&settings);
        let mut last_errors: Vec<Option<String>> = vec![None; clients.len()];
        loop {
            let now = self.live.get().haproxy;
            if now != settings {
                settings = now;
                clients = Self::clients(&settings);
                last_errors = vec![None; clients.len()];
            }
            let backends = &settings.backends;
            let current = *goal.borrow_and_update();
            let reports = match current {
                RouteGoal::Route { until, order } if !clock::passed(until) => {
                    haproxy::reconcile_with(
                        &clients,
                        backends,
                        &self.me,
                        &self.others,
                        until,
                        order,
                    )
                    .await
                }
                _ => haproxy::observe(&clients, backends).await,
            };
            self.record(
                backends,
                &reports,
                &mut last_errors,
                matches!(current, RouteGoal::Route { .. }),
            );
            tokio::select! {
                changed = goal.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
    }

    fn clients(settings: &crate::config::HaproxyConfig) -> Vec<HaproxyClient> {
        settings
            .sockets
            .iter()
            .map(|e| HaproxyClient::new(e.clone(), settings.timeout))
            .collect()
    }

    fn record(
        &self,
        backends: &[String],
        reports: &[SocketReport],
        last_errors: &mut [Option<String>],
        routing: bool,
    ) {
        let mut writes = 0;
        let mut errors = 0;
        let sockets = reports
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let error = r.outcome.as_ref().err().map(|e| e.to_string());
                if error != last_errors[i] {
                    match &error {
                        Some(e) => tracing::warn!("HAProxy {}: {e}", r.endpoint),
                        None => tracing::info!("HAProxy {}: reachable again", r.endpoint),
                    }
                    last_errors[i] = error.clone();
                }
                let label = super::metrics::SocketLabel {
                    socket: r.endpoint.clone(),
                };
                if error.is_some() && routing {
                    errors += 1;
                    self.metrics.haproxy_errors.get_or_create(&label).inc();
                }
                if let Ok(o) = &r.outcome {
                    self.metrics.haproxy_writes.get_or_create(&label).inc_by(o.writes as u64);
                }
                let servers = match &r.outcome {
                    Ok(o) => {
                        if o.writes > 0 {
                            tracing::info!(
                                "HAProxy {}: {} write(s) to route to {} (ready) and away from {} (maint)",
                                r.endpoint,
                                o.writes,
                                self.me,
                                self.others.join(", ")
                            );
                        }
                        writes += o.writes as u64;
                        o.states
                            .iter()
                            .map(|s| ServerStatus {
                                backend: s.backend.clone(),
                                server: s.server.clone(),
                                state: s.admin_label().to_string(),
                            })
                            .collect()
                    }
                    Err(_) => Vec::new(),
                };
                SocketStatus {
                    socket: r.endpoint.clone(),
                    ok: error.is_none(),
                    error,
                    servers,
                }
            })
            .collect();
        let me = haproxy::summarize(reports, backends, &self.me).to_string();
        let others = self
            .others
            .iter()
            .map(|o| {
                (
                    o.clone(),
                    haproxy::summarize(reports, backends, o).to_string(),
                )
            })
            .collect();
        let mut state = lock(&self.state);
        state.sockets = sockets;
        state.me = me;
        state.others = others;
        state.writes += writes;
        state.write_errors += errors;
    }
}
