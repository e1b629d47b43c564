//! The IO adapters: everything that talks to the world outside the process, each behind a small
//! type. They know nothing of the decision; the daemon wires them to the core.
//!
//! - [`lease`]: the `Lease` trait and term files on the shared storage, off-loop with deadlines;
//!   [`lease_etcd`]: the lease in an etcd cluster.
//! - [`jenkins`]: the Jenkins HTTP client.
//! - [`haproxy`]: the HAProxy runtime-API client.
//! - [`http_client`]: the small HTTP(S) client the others use, and the bearer header.
//! - [`tls`]: `node.tls`: the rustls configurations of the API and of the calls to other
//!   sidecars, the checks of the node's own certificate, TLS failures in one line.
//! - [`watch`]: the JENKINS_HOME watcher.
//! - [`clock`]: the daemon's clock (CLOCK_BOOTTIME), the one source of [`crate::core::Mono`].

pub mod build_numbers;
pub mod clock;
pub mod haproxy;
pub mod http_client;
pub mod jenkins;
pub mod lease;
pub mod lease_etcd;
pub mod tls;
pub mod watch;
