//! The pure decision core: observations in; the next role, actions and a reason (a kind and one
//! human sentence) out.
//!
//! Nothing here does IO: no tokio, no file system, no network, no clock reads, no logging, and no
//! dependency on any other module of the crate. Time comes in as [`Mono`] values, so tests drive
//! the core through any timeline. The daemon gathers an [`Observation`] every
//! tick, calls [`Core::decide`], carries out the [`Action`]s through the IO adapters, and reports
//! what the lease writes came to through [`Core::record`].
//!
//! - [`timing`]: the protocol's knobs and the rules derived from them (the self-fencing margin,
//!   peer freshness).
//! - [`model`]: what the core sees and says.
//! - [`reason`]: the structured reason: a [`ReasonKind`] for code, a sentence for people.
//! - [`decide`]: the rules, applied once per tick by [`Core`].
//! - [`cluster`]: the cluster as `status` shows it, `/active`, and switchover eligibility.
//! - [`catch_up`]: how a promotion catches its Jenkins up, and what becomes of queued builds.

pub mod catch_up;
pub mod cluster;
pub mod decide;
pub mod model;
pub mod reason;
pub mod timing;

pub use decide::Core;
pub use model::*;
pub use reason::{ClaimWhy, Reason, ReasonKind, ReleaseWhy, StepDownWhy};
pub use timing::{secs, Mono, Timing};
