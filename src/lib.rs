//! jenkins-ha: keeps one of two Jenkins masters on a shared JENKINS_HOME active behind HAProxy.
//!
//! The decision core ([`decide`]) is pure; everything else is a thin adapter around it
//! (lease, peer, jenkins, haproxy, api) wired together by [`node`].

pub mod config;
pub mod decide;
pub mod haproxy;
pub mod http_client;
pub mod jenkins;
