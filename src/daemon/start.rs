//! `jenkins-ha run`: binds the API, starts the loop and every task in one `JoinSet`, and runs
//! until SIGTERM or SIGINT (SIGHUP re-reads the config). Then the stop, bounded: the loop
//! quiets Jenkins and releases a held term ([`super::node`]), every task is drained with a grace
//! timeout ([`super::shutdown::drain`]), and the process exits even if a storage call hangs.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use tokio::task::JoinSet;

use super::node::Node;
use super::shared::Shared;
use super::shutdown::{drain, Shutdown};
use crate::config::Config;

/// How long the tasks get to end after the loop has stopped.
const GRACE: Duration = Duration::from_secs(2);

/// The daemon, from a loaded config to a clean stop.
pub async fn run(config: Config, config_path: PathBuf) -> ExitCode {
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
        "jenkins-ha {} starting as {} ({} {}), API on {}{}, lease in {}",
        env!("CARGO_PKG_VERSION"),
        config.node.name,
        if config.peers.len() == 1 {
            "peer"
        } else {
            "peers"
        },
        config.peer_names().join(", "),
        config.node.listen,
        match &config.node.tls {
            Some(t) if t.require_client_cert => " (HTTPS, client certificates required)",
            Some(_) => " (HTTPS)",
            None => "",
        },
        config.lease_location()
    );
    let mut signals = match signal_hook_tokio::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("jenkins-ha: cannot install signal handlers: {e}");
            return ExitCode::from(1);
        }
    };
    let shared = Shared::new(config);
    let shutdown = Shutdown::new();
    let stop = shutdown.listener();
    let mut tasks = JoinSet::new();
    let node = match Node::start(shared.clone(), &mut tasks, &stop) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("jenkins-ha: {e}");
            shutdown.trigger();
            drain(tasks, GRACE).await;
            return ExitCode::from(1);
        }
    };
    tasks.spawn(stop.until(super::api::serve(listener, shared.clone())));
    let handle = signals.handle();
    let signal_shared = shared.clone();
    let signal_shutdown = shutdown.listener();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tasks.spawn(signal_shutdown.until(async move {
        use futures_util::StreamExt;
        while let Some(sig) = signals.next().await {
            if sig == signal_hook::consts::SIGHUP {
                match Config::load(&config_path) {
                    Ok(new) => {
                        for line in signal_shared.live.apply(&signal_shared.config, &new) {
                            tracing::info!("SIGHUP: {line}");
                        }
                        // The new file's findings: an expired or expiring certificate, say.
                        for w in &new.warnings {
                            tracing::warn!("SIGHUP: {w}");
                        }
                    }
                    Err(e) => {
                        tracing::error!("SIGHUP: config not reloaded, keeping the running one: {e}")
                    }
                }
                continue;
            }
            tracing::info!("signal {sig} received: stopping cleanly");
            let _ = stop_tx.send(());
            return;
        }
    }));
    // The loop stops first (it quiets Jenkins and releases the term while the other tasks
    // still run), then everything else.
    let loop_shutdown = Shutdown::new();
    let loop_stop = loop_shutdown.listener();
    let signalled = async {
        let _ = stop_rx.await;
        loop_shutdown.trigger();
    };
    tokio::join!(node.run(loop_stop), signalled);
    shutdown.trigger();
    handle.close();
    drain(tasks, GRACE).await;
    ExitCode::SUCCESS
}
