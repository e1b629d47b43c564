//! Dev-only helpers of the lab crate shared by its binaries and tests: the JENKINS_HOME generator.
//!
//! The stand-in itself is the `jenkins-standin` binary (`src/standin.rs`).

pub mod home_gen;
