//! Stopping, as one explicit piece (after mini-redis and linkerd2-proxy): a [`Shutdown`] that
//! says "stop" once, a [`Stop`] listener each task can wait on, and [`drain`], which waits for
//! the daemon's tasks with a grace timeout and aborts what is left. No task is detached: every
//! one lives in the daemon's `JoinSet`, and nothing in the stop path sleeps for a fixed time.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

/// Says "stop" to every [`Stop`] made from it.
#[derive(Debug)]
pub struct Shutdown {
    tx: watch::Sender<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        Shutdown {
            tx: watch::channel(false).0,
        }
    }

    /// A listener for this shutdown.
    pub fn listener(&self) -> Stop {
        Stop {
            rx: self.tx.subscribe(),
        }
    }

    /// Stops: every listener's [`Stop::wait`] returns. Idempotent.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }
}

/// One task's view of the shutdown.
#[derive(Debug, Clone)]
pub struct Stop {
    rx: watch::Receiver<bool>,
}

impl Stop {
    /// Returns once the shutdown was triggered (at once if it already was).
    pub async fn wait(&mut self) {
        let _ = self.rx.wait_for(|stopped| *stopped).await;
    }

    pub fn is_stopped(&self) -> bool {
        *self.rx.borrow()
    }

    /// Runs `task` until it ends or the shutdown comes, whichever is first.
    pub fn until<F>(&self, task: F) -> impl Future<Output = ()> + Send + 'static
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut stop = self.clone();
        async move {
            tokio::select! {
                _ = stop.wait() => {}
                _ = task => {}
            }
        }
    }
}

/// Waits up to `grace` for every task to end, then aborts the rest. Returns how many had to be
/// aborted.
pub async fn drain(mut tasks: JoinSet<()>, grace: Duration) -> usize {
    let all_done = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, all_done).await.is_ok() {
        return 0;
    }
    let left = tasks.len();
    tracing::warn!("{left} task(s) did not stop within {grace:?}; aborting them");
    tasks.shutdown().await;
    left
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_listener_hears_the_stop_and_drain_waits_for_them() {
        let shutdown = Shutdown::new();
        let mut tasks = JoinSet::new();
        for _ in 0..3 {
            let stop = shutdown.listener();
            tasks.spawn(stop.until(std::future::pending()));
        }
        assert!(!shutdown.listener().is_stopped());
        shutdown.trigger();
        assert!(shutdown.listener().is_stopped());
        assert_eq!(drain(tasks, Duration::from_secs(1)).await, 0);
    }

    #[tokio::test]
    async fn a_task_that_ignores_the_stop_is_aborted_after_the_grace() {
        let shutdown = Shutdown::new();
        let mut tasks = JoinSet::new();
        tasks.spawn(std::future::pending::<()>());
        tasks.spawn(shutdown.listener().until(std::future::pending()));
        shutdown.trigger();
        let started = std::time::Instant::now();
        assert_eq!(drain(tasks, Duration::from_millis(100)).await, 1);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
