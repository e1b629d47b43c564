//! The stand-in's load-time model and the home-wide files it reads at start-up and on a full reload.
//!
//! A load (start-up, full reload, per-item reload) does its real work item by item (parse `config.xml`,
//! list `builds/`, read `nextBuildNumber`) and, after each item, sleeps until that item's modelled
//! deadline: `origin + Σ (per_item + per_build_entry × entries listed)` over the items done so far, where
//! `origin` is the load's start plus the fixed base. So the window grows with the number of items and
//! of build entries, and files are read progressively during the window, as Jenkins does.
//!
//! Root files: the root `*.xml` files (plugin configurations, `credentials.xml`, `config.xml`) are
//! fingerprinted (FNV-1a 64 of their content) when they are read, so the control API can show which
//! loaded version differs from the disk.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use super::xml;

/// The configured cost of loading.
#[derive(Debug, Clone, Copy)]
pub struct Model {
    /// Fixed part of a full reload or start-up window (root config, nodes, users, plugins).
    pub base: Duration,
    /// Modelled cost of one item (its `config.xml` and object graph).
    pub per_item: Duration,
    /// Modelled cost of one entry listed in a job's `builds/`.
    pub per_build_entry: Duration,
    /// Threads that load top-level items in parallel (folder children always load one by one).
    pub threads: usize,
}

/// The progress of one loading thread.
#[derive(Debug, Clone)]
pub struct Loader {
    per_item: Duration,
    per_build_entry: Duration,
    /// When the first item may start: the load's start plus the base.
    origin: Instant,
    /// Modelled cost charged so far.
    spent: Duration,
    /// Whether to sleep at all (off for unit tests of the tree rules).
    sleep: bool,
    /// Items charged.
    pub items: usize,
    /// Build entries charged.
    pub build_entries: usize,
}

impl Loader {
    /// A loader whose window starts at `start` and whose first item waits for `base`.
    pub fn new(model: &Model, start: Instant, base: Duration) -> Loader {
        Loader {
            per_item: model.per_item,
            per_build_entry: model.per_build_entry,
            origin: start + base,
            spent: Duration::ZERO,
            sleep: true,
            items: 0,
            build_entries: 0,
        }
    }

    /// A loader that counts but never sleeps.
    #[cfg(test)]
    pub fn free() -> Loader {
        Loader {
            per_item: Duration::ZERO,
            per_build_entry: Duration::ZERO,
            origin: Instant::now(),
            spent: Duration::ZERO,
            sleep: false,
            items: 0,
            build_entries: 0,
        }
    }

    /// Charges one loaded item that listed `entries` build entries, and sleeps until its deadline.
    pub fn charge(&mut self, entries: usize) {
        self.items += 1;
        self.build_entries += entries;
        let entries = u32::try_from(entries).unwrap_or(u32::MAX);
        self.spent = self
            .spent
            .saturating_add(self.per_item)
            .saturating_add(self.per_build_entry.saturating_mul(entries));
        self.wait();
    }

    /// Sleeps until everything charged so far (and the base) has elapsed.
    pub fn wait(&self) {
        if !self.sleep {
            return;
        }
        let deadline = self.origin + self.spent;
        let now = Instant::now();
        if deadline > now {
            std::thread::sleep(deadline - now);
        }
    }

    /// The modelled cost charged so far (without the base).
    pub fn spent(&self) -> Duration {
        self.spent
    }

    /// A loader for another thread with the same schedule so far and no counts.
    pub fn fork(&self) -> Loader {
        Loader {
            items: 0,
            build_entries: 0,
            ..self.clone()
        }
    }

    /// Takes back a forked loader: counts add up, and since the threads ran in parallel the modelled
    /// time is the longest thread's.
    pub fn join(&mut self, other: &Loader) {
        self.items += other.items;
        self.build_entries += other.build_entries;
        self.spent = self.spent.max(other.spent);
    }
}

/// FNV-1a 64 of some bytes, as `fnv1a64:<16 hex digits>`.
pub fn fingerprint(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("fnv1a64:{h:016x}")
}

/// Root `*.xml` files that are runtime state, not configuration: not "loaded" as globals.
fn is_runtime_root_file(name: &str) -> bool {
    matches!(
        name,
        "queue.xml" | "org.jenkinsci.plugins.workflow.flow.FlowExecutionList.xml"
    )
}

/// The fingerprints of the root `*.xml` configuration files on disk now.
pub fn root_xml_fingerprints(home: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Ok(rd) = fs::read_dir(home) else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        if !name.ends_with(".xml") || is_runtime_root_file(&name) {
            continue;
        }
        if let Ok(bytes) = fs::read(e.path()) {
            out.insert(name, fingerprint(&bytes));
        }
    }
    out
}

/// The fingerprint of one root file, if it can be read.
pub fn file_fingerprint(path: &Path) -> Option<String> {
    fs::read(path).ok().map(|b| fingerprint(&b))
}

/// Names whose loaded fingerprint differs from the disk: changed, new since the load, or gone.
pub fn stale_globals(
    loaded: &BTreeMap<String, String>,
    on_disk: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut out: Vec<String> = on_disk
        .iter()
        .filter(|(name, fp)| loaded.get(*name) != Some(fp))
        .map(|(name, _)| name.clone())
        .collect();
    out.extend(
        loaded
            .keys()
            .filter(|name| !on_disk.contains_key(*name))
            .cloned(),
    );
    out.sort();
    out
}

/// Reads `nodes/*/config.xml` (each really parsed) and returns how many agents were loaded.
pub fn load_nodes(home: &Path) -> usize {
    let Ok(rd) = fs::read_dir(home.join("nodes")) else {
        return 0;
    };
    let mut n = 0;
    for e in rd.flatten() {
        let path = e.path().join("config.xml");
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        match xml::parse(&text) {
            Ok(_) => n += 1,
            Err(why) => eprintln!(
                "jenkins-standin: bad node config {}: {why}; skipped",
                path.display()
            ),
        }
    }
    n
}

/// Users: the id → directory map of `users/users.xml` and the number of user directories with a
/// `config.xml`.
pub fn load_users(home: &Path) -> (BTreeMap<String, String>, usize) {
    let dir = home.join("users");
    let mut map = BTreeMap::new();
    if let Ok(text) = fs::read_to_string(dir.join("users.xml")) {
        match xml::parse(&text) {
            Ok(root) => {
                if let Some(m) = root.child("idToDirectoryNameMap") {
                    for entry in m.children().filter(|e| e.name == "entry") {
                        let strings: Vec<String> = entry
                            .children()
                            .filter(|e| e.name == "string")
                            .map(|e| e.text().trim().to_string())
                            .collect();
                        if let [id, dir] = strings.as_slice() {
                            map.insert(id.clone(), dir.clone());
                        }
                    }
                }
            }
            Err(why) => eprintln!("jenkins-standin: bad users/users.xml: {why}; ignored"),
        }
    }
    let count = fs::read_dir(&dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().join("config.xml").is_file())
                .count()
        })
        .unwrap_or(0);
    (map, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_globals_lists_changed_new_and_gone() {
        let loaded: BTreeMap<String, String> = [("a.xml", "1"), ("b.xml", "2"), ("c.xml", "3")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let disk: BTreeMap<String, String> = [("a.xml", "1"), ("b.xml", "9"), ("d.xml", "4")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(stale_globals(&loaded, &disk), ["b.xml", "c.xml", "d.xml"]);
        assert_ne!(fingerprint(b"a"), fingerprint(b"b"));
        assert_eq!(fingerprint(b""), "fnv1a64:cbf29ce484222325");
    }

    #[test]
    fn loader_sleeps_until_the_modelled_deadline() {
        let model = Model {
            base: Duration::from_millis(20),
            per_item: Duration::from_millis(10),
            per_build_entry: Duration::from_millis(1),
            threads: 1,
        };
        let t0 = Instant::now();
        let mut l = Loader::new(&model, t0, model.base);
        l.charge(5);
        l.charge(0);
        assert!(t0.elapsed() >= Duration::from_millis(45));
        assert_eq!((l.items, l.build_entries), (2, 5));
        assert_eq!(l.spent(), Duration::from_millis(25));
    }
}
