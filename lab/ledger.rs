//! Dev-only: the ledger of builds for the scale tests and the benchmarks. It answers the three
//! questions a Jenkins admin asks after a failover with builds running:
//!
//! - **Collisions**: did a controller start a build with a stale number and overwrite
//!   `builds/N` of a build the other one ran? Counted from the stand-ins' logs (every process
//!   that ever ran, killed ones included), where each is logged in capitals.
//! - **Duplicates**: was a build run for fires that were all built already? Every build record
//!   on disk names the fire slots it covers (`<standinFireSlots>`). A build whose every slot an
//!   earlier build covered is a duplicate. (A build that folds some fires built already with
//!   one that was not is Jenkins' own coalescing: one build for the fire nobody built.)
//! - **Lost fires**: did a fire that a running controller saw go unbuilt? Each live stand-in
//!   lists every fire it saw (`/standin/fires`); a fire that no record covers, that no queue
//!   still holds and that is old enough to have been built is lost.
//!
//! Plus the check of the numbers themselves: the active's in-memory next number of every job
//! is above every `builds/N` on disk.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// One build record on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskBuild {
    pub job: String,
    pub number: u64,
    pub controller: String,
    pub slots: Vec<u64>,
    /// `<timestamp>`: when it started (ms).
    pub started: u64,
}

/// What the ledger found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Build records on disk.
    pub builds: usize,
    /// Build records of timer fires (the generated history has none).
    pub run_builds: usize,
    /// Fires seen by the live stand-ins, old enough to be judged.
    pub fires_judged: usize,
    pub collisions: usize,
    /// Builds whose every fire an earlier build covered.
    pub duplicates: Vec<String>,
    /// Fires covered by more than one build (informative: coalescing makes some).
    pub fires_built_twice: usize,
    /// (job, slot) seen, never built, not queued.
    pub lost: Vec<String>,
    /// Jobs whose next number on the active is not above every `builds/N`.
    pub stale_numbers: Vec<String>,
}

impl Verdict {
    pub fn clean(&self) -> bool {
        self.collisions == 0
            && self.duplicates.is_empty()
            && self.lost.is_empty()
            && self.stale_numbers.is_empty()
    }

    /// One line for a test failure or a benchmark note.
    pub fn summary(&self) -> String {
        let some = |v: &[String]| v.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
        format!(
            "{} records ({} built in the run), {} fires judged: {} collisions, {} duplicate builds [{}] ({} fires in two builds), {} lost [{}], {} stale next numbers [{}]",
            self.builds,
            self.run_builds,
            self.fires_judged,
            self.collisions,
            self.duplicates.len(),
            some(&self.duplicates),
            self.fires_built_twice,
            self.lost.len(),
            some(&self.lost),
            self.stale_numbers.len(),
            some(&self.stale_numbers),
        )
    }
}

fn tag<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&close)?;
    Some(&xml[start..end])
}

/// Every build record under `home/jobs`, through folders.
pub fn disk_builds(home: &Path) -> Vec<DiskBuild> {
    fn walk(jobs: &Path, prefix: &str, out: &mut Vec<DiskBuild>) {
        let Ok(entries) = fs::read_dir(jobs) else {
            return;
        };
        for entry in entries.flatten() {
            let dir = entry.path();
            let name = entry.file_name().to_string_lossy().to_string();
            let full = format!("{prefix}{name}");
            if dir.join("jobs").is_dir() {
                walk(&dir.join("jobs"), &format!("{full}/"), out);
            }
            let Ok(builds) = fs::read_dir(dir.join("builds")) else {
                continue;
            };
            for b in builds.flatten() {
                let Ok(xml) = fs::read_to_string(b.path().join("build.xml")) else {
                    continue;
                };
                let number = tag(&xml, "number")
                    .and_then(|n| n.trim().parse().ok())
                    .unwrap_or(0);
                let controller = tag(&xml, "standinController").unwrap_or("").to_string();
                let started = tag(&xml, "timestamp")
                    .and_then(|n| n.trim().parse().ok())
                    .unwrap_or(0);
                let slots = tag(&xml, "standinFireSlots")
                    .map(|s| {
                        s.split("<slot>")
                            .filter_map(|p| p.split("</slot>").next()?.trim().parse().ok())
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(DiskBuild {
                    job: full.clone(),
                    number,
                    controller,
                    slots,
                    started,
                });
            }
        }
    }
    let mut out = Vec::new();
    walk(&home.join("jobs"), "", &mut out);
    out
}

/// The highest `builds/N` on disk per job.
pub fn highest_numbers(builds: &[DiskBuild]) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    for b in builds {
        let e = out.entry(b.job.clone()).or_default();
        *e = (*e).max(b.number);
    }
    out
}

/// Build-number collisions logged by every stand-in process whose log is in `dir`.
pub fn logged_collisions(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with("-jenkins.log"))
        .filter_map(|e| fs::read_to_string(e.path()).ok())
        .map(|log| log.matches("BUILD NUMBER COLLISION").count())
        .sum()
}

/// What a run left, for [`judge`].
pub struct Evidence<'a> {
    /// The records on disk (read after the fires and the queues).
    pub builds: &'a [DiskBuild],
    /// The fires the live stand-ins saw, (job, slot).
    pub fires: &'a [(String, u64)],
    /// (job, slot) still waiting in a live stand-in's queue.
    pub queued: &'a BTreeSet<(String, u64)>,
    /// The fires judged: older ones belong to another part of the run, newer ones may still
    /// be queued or starting.
    pub judge_ms: std::ops::Range<u64>,
    /// From [`logged_collisions`].
    pub collisions: usize,
    /// The highest `builds/N` per job, read before `next_numbers`, the active's in-memory next
    /// numbers (which only grow, so a build starting in between is no failure).
    pub highest: &'a BTreeMap<String, u64>,
    pub next_numbers: &'a BTreeMap<String, u64>,
}

/// Judges a run.
pub fn judge(e: &Evidence) -> Verdict {
    let Evidence {
        builds,
        fires,
        queued,
        judge_ms,
        collisions,
        highest,
        next_numbers,
    } = e;
    let (builds, collisions) = (*builds, *collisions);
    let mut built: BTreeMap<(String, u64), Vec<&DiskBuild>> = BTreeMap::new();
    for b in builds {
        for s in &b.slots {
            built.entry((b.job.clone(), *s)).or_default().push(b);
        }
    }
    let fires_built_twice = built.values().filter(|by| by.len() > 1).count();
    let duplicates = builds
        .iter()
        .filter(|b| !b.slots.is_empty())
        .filter(|b| {
            b.slots.iter().all(|s| {
                built[&(b.job.clone(), *s)].iter().any(|other| {
                    (other.started, other.number, &other.controller)
                        < (b.started, b.number, &b.controller)
                })
            })
        })
        .map(|b| {
            format!(
                "{}#{} by {} (fires {:?} all built before)",
                b.job, b.number, b.controller, b.slots
            )
        })
        .collect();
    let judged: BTreeSet<&(String, u64)> = fires
        .iter()
        .filter(|(_, slot)| judge_ms.contains(slot))
        .collect();
    let lost = judged
        .iter()
        .filter(|f| !built.contains_key(f) && !queued.contains(f))
        .map(|(job, slot)| format!("{job}@{slot}"))
        .collect();
    let stale_numbers = highest
        .iter()
        .filter(|(job, n)| next_numbers.get(*job).is_none_or(|next| next <= n))
        .map(|(job, n)| {
            format!(
                "{job}: next {} but builds/{n} exists",
                next_numbers
                    .get(job)
                    .map_or("unknown".to_string(), u64::to_string)
            )
        })
        .collect();
    Verdict {
        builds: builds.len(),
        run_builds: builds.iter().filter(|b| !b.slots.is_empty()).count(),
        fires_judged: judged.len(),
        collisions,
        duplicates,
        fires_built_twice,
        lost,
        stale_numbers,
    }
}
