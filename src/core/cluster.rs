//! The cluster as this node tells it: which role to show for each node, which node is active,
//! and whether a switchover may go ahead. Pure functions of what the lease says and what the
//! other nodes said in their heartbeats; the lease wins whenever the two disagree.

use std::time::Duration;

use super::model::Role;
use super::timing::Timing;

/// The lease as this node last read it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaseFacts {
    pub term: Option<u64>,
    pub holder: Option<String>,
    pub released: bool,
    /// How long its counter has been still, on our clock.
    pub still: Duration,
}

impl LeaseFacts {
    /// The node the lease names as the live holder: it holds the newest term, has not released
    /// it, and renewed it within `lease_timeout`.
    pub fn live_holder(&self, timing: &Timing) -> Option<&str> {
        if self.released || timing.stale(self.still) {
            return None;
        }
        self.holder.as_deref()
    }
}

/// What another node said about itself in its last heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heard {
    pub role: Role,
    pub term: Option<u64>,
    pub serving: bool,
    /// How long ago, on our clock.
    pub age: Duration,
}

/// How `status` shows another node: its role, and a note when its heartbeat contradicts the
/// lease (the heartbeat is then not believed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    pub role: Role,
    pub serving: bool,
    pub contradiction: Option<String>,
}

/// The role to show for node `name`, heard as `heard` (never heard: `None`).
///
/// A node that missed three heartbeats in a row is `unreachable` ([`Timing::peer_fresh`]). A node that says it is active is
/// shown active only if the lease names it the live holder; otherwise it is shown a standby and
/// flagged. A node that says it is not active is believed: it knows it is not serving.
pub fn shown_role(name: &str, heard: Option<&Heard>, lease: &LeaseFacts, timing: &Timing) -> Shown {
    let Some(heard) = heard.filter(|h| timing.peer_fresh(h.age)) else {
        return Shown {
            role: Role::Unreachable,
            serving: false,
            contradiction: None,
        };
    };
    let mut contradiction = None;
    if let (Some(said), Some(newest)) = (heard.term, lease.term) {
        if said > newest {
            contradiction = Some(format!(
                "says term {said}, but the newest term in the lease is {newest}"
            ));
        }
    }
    let holder = lease.live_holder(timing);
    if heard.role == Role::Active && holder != Some(name) {
        let lease_says = match (&lease.holder, lease.term) {
            (Some(h), Some(t)) if lease.released => format!("{h} released term {t}"),
            (Some(h), Some(t)) if h.as_str() == name => {
                format!(
                    "its term {t} has not been renewed for {:.1} s",
                    lease.still.as_secs_f64()
                )
            }
            (Some(h), Some(t)) => format!("{h} holds term {t}"),
            _ => "no node holds a term".to_string(),
        };
        return Shown {
            role: Role::Standby,
            serving: false,
            contradiction: Some(format!(
                "says it is active, but the lease says {lease_says}"
            )),
        };
    }
    Shown {
        role: heard.role,
        serving: heard.serving && heard.role == Role::Active && contradiction.is_none(),
        contradiction,
    }
}

/// One node as a switchover sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub name: String,
    /// As shown (see [`shown_role`]); ours is our own decision's.
    pub role: Role,
    pub jenkins_healthy: bool,
    pub jenkins_broken: bool,
    /// The Jenkins health word for messages (`up`, `down`, `reloading`, ...).
    pub jenkins: String,
    pub priority: u32,
    pub current: bool,
}

/// What a switchover request comes to on the node that received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Switchover {
    /// The target already serves: nothing to do.
    AlreadyActive { target: String },
    /// We are the active node: hand our term over to `to`.
    HandOver { to: String },
    /// Another node is active and reachable: pass the request on to it.
    Forward { to: String, via: String },
    /// We are the target and the active node is unreachable: take over once its lease has run
    /// out (an operator's `--force`; never sooner).
    ForceTakeover,
}

/// Decides what `failover [--to NODE] [--force]` asked of node `me` comes to, by node name.
///
/// `nodes` holds every node of the cluster, us included; `active` is the node serving now, if
/// any. Without `to`, the target is this node when it is not the active one, and otherwise the
/// best reachable standby: the highest priority, then a current Jenkins, then the lower name. Without `force`, a target that is unreachable or whose Jenkins
/// is not healthy is refused, and so is a takeover from an active node we cannot reach.
pub fn switchover(
    me: &str,
    to: Option<&str>,
    force: bool,
    nodes: &[Candidate],
    active: Option<&str>,
) -> Result<Switchover, String> {
    let find = |name: &str| nodes.iter().find(|n| n.name == name);
    let names = || {
        nodes
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let holder = nodes
        .iter()
        .find(|n| n.role == Role::Active)
        .map(|n| n.name.clone());
    let target = match to {
        Some(t) => {
            if find(t).is_none() {
                return Err(format!("unknown node {t:?}: this cluster is {}", names()));
            }
            t.to_string()
        }
        None if holder.as_deref() != Some(me) && active != Some(me) => me.to_string(),
        None => {
            let mut standbys: Vec<&Candidate> = nodes
                .iter()
                .filter(|n| {
                    Some(n.name.as_str()) != active
                        && Some(&n.name) != holder.as_ref()
                        && n.role != Role::Unreachable
                })
                .collect();
            standbys.sort_by(|a, b| {
                (b.priority, b.current, std::cmp::Reverse(&b.name)).cmp(&(
                    a.priority,
                    a.current,
                    std::cmp::Reverse(&a.name),
                ))
            });
            match standbys.first() {
                Some(best) => best.name.clone(),
                None => return Err("no other node to switch over to".into()),
            }
        }
    };
    if active == Some(target.as_str()) {
        return Ok(Switchover::AlreadyActive { target });
    }
    let refusal = |n: &Candidate, whose: &str| -> Option<String> {
        if n.role == Role::Unreachable {
            Some(format!(
                "refused: {} is unreachable (no heartbeat); use --force to hand over anyway",
                n.name
            ))
        } else if n.jenkins_broken {
            Some(format!(
                "refused: {whose} Jenkins failed its last reload and needs a restart"
            ))
        } else if !n.jenkins_healthy {
            Some(format!(
                "refused: {whose} Jenkins is {} (not healthy)",
                n.jenkins
            ))
        } else {
            None
        }
    };
    let target_node = find(&target).cloned();
    if holder.as_deref() == Some(me) {
        if let (false, Some(t)) = (force, &target_node) {
            if let Some(why) = refusal(t, &format!("{}'s", t.name)) {
                return Err(why);
            }
        }
        return Ok(Switchover::HandOver { to: target });
    }
    if target == me && !force {
        if let Some(t) = &target_node {
            if let Some(why) = refusal(t, "my") {
                return Err(why);
            }
        }
    }
    if let Some(via) = holder {
        return Ok(Switchover::Forward { to: target, via });
    }
    if target != me {
        return Err(format!(
            "refused: no active node is reachable from here; run the failover on {target} (with --force) instead"
        ));
    }
    if !force {
        return Err(
            "refused: the active node is unreachable; use --force to take over once its lease runs out"
                .into(),
        );
    }
    Ok(Switchover::ForceTakeover)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing() -> Timing {
        Timing {
            interval: Duration::from_secs(1),
            fall: 3,
            rise: 2,
            lease_timeout: Duration::from_secs(5),
        }
    }

    fn lease(holder: &str, term: u64) -> LeaseFacts {
        LeaseFacts {
            term: Some(term),
            holder: Some(holder.into()),
            released: false,
            still: Duration::from_millis(300),
        }
    }

    fn heard(role: Role, term: u64) -> Heard {
        Heard {
            role,
            term: Some(term),
            serving: role == Role::Active,
            age: Duration::from_millis(200),
        }
    }

    #[test]
    fn a_node_that_missed_three_heartbeats_is_unreachable() {
        let l = lease("a", 7);
        let mut h = heard(Role::Standby, 7);
        assert_eq!(shown_role("b", Some(&h), &l, &timing()).role, Role::Standby);
        h.age = Duration::from_millis(3001);
        assert_eq!(
            shown_role("b", Some(&h), &l, &timing()).role,
            Role::Unreachable
        );
        assert_eq!(shown_role("b", None, &l, &timing()).role, Role::Unreachable);
    }

    #[test]
    fn a_heartbeat_that_contradicts_the_lease_is_flagged_not_believed() {
        // b claims term 99 and says it is active; the lease says a holds term 7.
        let s = shown_role(
            "b",
            Some(&heard(Role::Active, 99)),
            &lease("a", 7),
            &timing(),
        );
        assert_eq!(s.role, Role::Standby);
        assert!(!s.serving);
        assert_eq!(
            s.contradiction.as_deref(),
            Some("says it is active, but the lease says a holds term 7")
        );
        // The live holder saying it is active is believed.
        let s = shown_role(
            "a",
            Some(&heard(Role::Active, 7)),
            &lease("a", 7),
            &timing(),
        );
        assert_eq!(s.role, Role::Active);
        assert!(s.serving);
        assert_eq!(s.contradiction, None);
        // ... but not once its term went stale.
        let mut l = lease("a", 7);
        l.still = Duration::from_secs(6);
        let s = shown_role("a", Some(&heard(Role::Active, 7)), &l, &timing());
        assert_eq!(s.role, Role::Standby);
        // A future term with a standby role is flagged too.
        let s = shown_role(
            "b",
            Some(&heard(Role::Standby, 12)),
            &lease("a", 7),
            &timing(),
        );
        assert_eq!(s.role, Role::Standby);
        assert!(s.contradiction.unwrap().contains("term 12"));
    }

    fn node(name: &str, role: Role, healthy: bool) -> Candidate {
        Candidate {
            name: name.into(),
            role,
            jenkins_healthy: healthy,
            jenkins_broken: false,
            jenkins: if healthy { "up" } else { "down" }.into(),
            priority: 1,
            current: true,
        }
    }

    #[test]
    fn switchover_from_the_active_hands_over_to_the_named_node() {
        let nodes = [
            node("a", Role::Active, true),
            node("b", Role::Standby, true),
            node("c", Role::Standby, true),
        ];
        assert_eq!(
            switchover("a", Some("c"), false, &nodes, Some("a")),
            Ok(Switchover::HandOver { to: "c".into() })
        );
        // Without a name, the best standby: the lower name among equals.
        assert_eq!(
            switchover("a", None, false, &nodes, Some("a")),
            Ok(Switchover::HandOver { to: "b".into() })
        );
        let mut ranked = nodes.clone();
        ranked[2].priority = 5;
        assert_eq!(
            switchover("a", None, false, &ranked, Some("a")),
            Ok(Switchover::HandOver { to: "c".into() })
        );
        assert!(switchover("a", Some("x"), false, &nodes, Some("a"))
            .unwrap_err()
            .contains("unknown node \"x\": this cluster is a, b, c"));
    }

    #[test]
    fn switchover_refuses_an_unhealthy_or_unreachable_target_unless_forced() {
        let nodes = [
            node("a", Role::Active, true),
            node("b", Role::Unreachable, false),
        ];
        let e = switchover("a", Some("b"), false, &nodes, Some("a")).unwrap_err();
        assert!(e.contains("b is unreachable"), "{e}");
        assert_eq!(
            switchover("a", Some("b"), true, &nodes, Some("a")),
            Ok(Switchover::HandOver { to: "b".into() })
        );
        let nodes = [
            node("a", Role::Active, true),
            node("b", Role::Standby, false),
        ];
        let e = switchover("a", Some("b"), false, &nodes, Some("a")).unwrap_err();
        assert_eq!(e, "refused: b's Jenkins is down (not healthy)");
        let mut broken = nodes.clone();
        broken[1].jenkins_broken = true;
        let e = switchover("a", Some("b"), false, &broken, Some("a")).unwrap_err();
        assert!(e.contains("failed its last reload"), "{e}");
    }

    #[test]
    fn switchover_on_the_target_forwards_to_the_active_or_forces() {
        let nodes = [
            node("a", Role::Active, true),
            node("b", Role::Standby, true),
        ];
        assert_eq!(
            switchover("b", None, false, &nodes, Some("a")),
            Ok(Switchover::Forward {
                to: "b".into(),
                via: "a".into()
            })
        );
        assert_eq!(
            switchover("b", Some("a"), false, &nodes, Some("a")),
            Ok(Switchover::AlreadyActive { target: "a".into() })
        );
        let gone = [
            node("a", Role::Unreachable, false),
            node("b", Role::Standby, true),
        ];
        let e = switchover("b", None, false, &gone, None).unwrap_err();
        assert!(e.contains("use --force"), "{e}");
        assert_eq!(
            switchover("b", None, true, &gone, None),
            Ok(Switchover::ForceTakeover)
        );
        // My own Jenkins must be healthy to become the target.
        let sick = [
            node("a", Role::Active, true),
            node("b", Role::Standby, false),
        ];
        let e = switchover("b", None, false, &sick, Some("a")).unwrap_err();
        assert_eq!(e, "refused: my Jenkins is down (not healthy)");
    }
}
