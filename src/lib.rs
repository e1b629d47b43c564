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
pub mod manual;
pub mod metrics;
pub mod node;
pub mod ops;
pub mod peer;
pub mod routing;
pub mod status;
pub mod watch;
