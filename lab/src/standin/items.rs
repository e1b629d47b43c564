//! The stand-in's item tree and how it is (re)loaded from `HOME/jobs`, following Jenkins' rules.
//!
//! A folder's children live in its `jobs/` directory, at any depth. Loading a job reads its `config.xml`
//! (description, timer trigger, stand-in build duration), lists its `builds/` once and reads its
//! `nextBuildNumber`, and sets the in-memory next build number to max(`nextBuildNumber`, highest
//! `builds/N` + 1) (`Job.onLoad` + `LazyBuildMixIn.onLoad`). Each loaded item is charged to a
//! [`Loader`], which sleeps the modelled load time as it goes.
//!
//! Three ways to load, as in Jenkins:
//! - [`load_group_fresh`]: start-up, everything is read from disk;
//! - [`reload_top`]: a full `/reload`. Top-level items are re-read, but inside a folder the children that
//!   are already in memory keep their in-memory config (cloudbees-folder `loadChildren`, JENKINS-28043)
//!   and only run `onLoad()`, which refreshes their builds and next number; new children are read,
//!   children whose directory is gone are dropped;
//! - [`reload_one`]: `/job/.../reload`, which re-reads one item's config onto the live object (a folder's
//!   children again follow the folder rule).
//!
//! A missing `nextBuildNumber` keeps the in-memory value (1 for a new object). Jenkins would also write
//! the file then; the stand-in does not (only items made outside Jenkins lack it).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::builds;
use super::load::Loader;
use super::xml;

/// The Java class Jenkins reports for a freestyle job, also used when a config cannot be parsed.
pub const FREESTYLE_CLASS: &str = "hudson.model.FreeStyleProject";

/// Items of one item group (Jenkins itself or a folder), by name.
pub type Group = BTreeMap<String, Item>;

/// One item in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The `_class` the JSON API reports.
    pub class: String,
    /// Whether it holds children (its root element names a `Folder`).
    pub folder: bool,
    /// The text of its `<description>`.
    pub description: String,
    /// Children, for a folder; empty otherwise.
    pub children: Group,
    /// The spec of its timer trigger, for a job that has one.
    pub timer: Option<String>,
    /// Its `<standinBuildDuration>`, when set and valid.
    pub build_duration: Option<Duration>,
    /// The in-memory next build number (jobs; 0 for folders).
    pub next_build: u64,
    /// The build numbers in memory: the `builds/` listing of the last load plus builds started since.
    pub builds: Vec<u64>,
}

impl Item {
    /// The newest build number in memory, 0 when there is none.
    pub fn last_build(&self) -> u64 {
        self.builds.last().copied().unwrap_or(0)
    }

    /// Records a build started here.
    pub fn add_build(&mut self, n: u64) {
        if let Err(at) = self.builds.binary_search(&n) {
            self.builds.insert(at, n);
        }
    }
}

/// The on-disk directory of the item with these name segments, e.g. `["F", "B"]` → `HOME/jobs/F/jobs/B`.
pub fn item_dir(home: &Path, segments: &[String]) -> PathBuf {
    let mut dir = home.to_path_buf();
    for s in segments {
        dir.push("jobs");
        dir.push(s);
    }
    dir
}

/// Why a per-item reload failed (Jenkins answers 500 to all of these).
#[derive(Debug)]
pub enum ReloadOneError {
    /// `config.xml` is not on disk any more.
    Gone(PathBuf),
    /// It could not be read or parsed.
    Bad(PathBuf, String),
    /// It now describes another kind of item, which cannot be unmarshalled onto the live object.
    ClassChanged { was: String, now: String },
}

impl std::fmt::Display for ReloadOneError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReloadOneError::Gone(p) => write!(f, "{} does not exist", p.display()),
            ReloadOneError::Bad(p, why) => write!(f, "{}: {why}", p.display()),
            ReloadOneError::ClassChanged { was, now } => {
                write!(
                    f,
                    "config.xml now describes a {now}, but the item is a {was}"
                )
            }
        }
    }
}

/// The header fields of an item as read from its `config.xml`.
struct Header {
    class: String,
    folder: bool,
    description: String,
    timer: Option<String>,
    build_duration: Option<Duration>,
}

/// Maps a root element name to the `_class` Jenkins would report. XStream writes the class name itself
/// unless the class has an alias.
fn class_of(root: &str) -> String {
    match root {
        "project" => FREESTYLE_CLASS.to_string(),
        "flow-definition" => "org.jenkinsci.plugins.workflow.job.WorkflowJob".to_string(),
        "matrix-project" => "hudson.matrix.MatrixProject".to_string(),
        "maven2-moduleset" => "hudson.maven.MavenModuleSet".to_string(),
        other if other.contains('.') => other.to_string(),
        _ => FREESTYLE_CLASS.to_string(),
    }
}

/// Reads and parses `dir/config.xml`. `Ok(None)` when the file does not exist.
fn read_header(dir: &Path) -> Result<Option<Header>, (PathBuf, String)> {
    let path = dir.join("config.xml");
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err((path, e.to_string())),
    };
    let text =
        String::from_utf8(bytes).map_err(|_| (path.clone(), "not valid UTF-8".to_string()))?;
    let cfg = xml::parse_config(&text).map_err(|e| (path.clone(), e))?;
    let build_duration = cfg.build_duration.as_deref().and_then(|d| {
        humantime::parse_duration(d)
            .map_err(|e| {
                eprintln!(
                    "jenkins-standin: bad <standinBuildDuration> {d:?} in {}: {e}; using the default",
                    path.display()
                )
            })
            .ok()
    });
    Ok(Some(Header {
        class: class_of(&cfg.root),
        folder: cfg.root.contains("Folder"),
        description: cfg.description,
        timer: cfg.timer_spec,
        build_duration,
    }))
}

/// Like [`read_header`], but a bad file gives a freestyle job with an empty description (logged).
fn read_header_lenient(dir: &Path) -> Option<Header> {
    match read_header(dir) {
        Ok(h) => h,
        Err((path, why)) => {
            eprintln!(
                "jenkins-standin: bad config {}: {why}; loading it as an item with an empty description",
                path.display()
            );
            Some(Header {
                class: FREESTYLE_CLASS.to_string(),
                folder: false,
                description: String::new(),
                timer: None,
                build_duration: None,
            })
        }
    }
}

/// The sub-directories of a `jobs` directory, sorted by name. A missing directory has none.
fn subdirs(jobs_dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(rd) = fs::read_dir(jobs_dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, PathBuf)> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let path = e.path();
            // Follows symlinks, like Java's File.isDirectory.
            if !path.is_dir() {
                return None;
            }
            let name = e.file_name().into_string().ok()?;
            Some((name, path))
        })
        .collect();
    out.sort();
    out
}

/// `onLoad` of a job: one listing of `builds/`, `nextBuildNumber` re-read, the next number raised to
/// the highest build + 1. `fallback` is the in-memory next number, kept when the file is missing.
/// Charges the item to the loader.
fn refresh_builds(item: &mut Item, dir: &Path, fallback: u64, loader: &mut Loader) {
    if item.folder {
        loader.charge(0);
        return;
    }
    let (numbers, entries) = builds::list_builds(dir);
    let from_file = builds::read_next_number(dir).unwrap_or(fallback).max(1);
    let highest = numbers.last().copied().unwrap_or(0);
    item.next_build = from_file.max(highest + 1);
    item.builds = numbers;
    loader.charge(entries);
}

/// A new in-memory item from a header (children and builds still to load).
fn new_item(h: Header) -> Item {
    Item {
        class: h.class,
        folder: h.folder,
        description: h.description,
        children: Group::new(),
        timer: h.timer,
        build_duration: h.build_duration,
        next_build: 0,
        builds: Vec::new(),
    }
}

/// Loads an item and, for a folder, all its descendants from disk. `None` if there is no `config.xml`.
fn load_item_fresh(dir: &Path, loader: &mut Loader) -> Option<Item> {
    let h = read_header_lenient(dir)?;
    let mut item = new_item(h);
    refresh_builds(&mut item, dir, 1, loader);
    if item.folder {
        item.children = load_children_fresh(&dir.join("jobs"), loader);
    }
    Some(item)
}

fn load_children_fresh(jobs_dir: &Path, loader: &mut Loader) -> Group {
    subdirs(jobs_dir)
        .into_iter()
        .filter_map(|(name, dir)| load_item_fresh(&dir, loader).map(|item| (name, item)))
        .collect()
}

/// Runs `load` over the top-level directories on `threads` threads (each with its own copy of the
/// loader's schedule, as Jenkins' reactor runs top-level items in parallel). Returns the items and a
/// loader holding the summed counts and the longest thread's modelled time.
fn load_top_level(
    jobs_dir: &Path,
    threads: usize,
    loader: &mut Loader,
    load: impl Fn(&str, &Path, &mut Loader) -> Option<Item> + Sync,
) -> Group {
    let dirs = subdirs(jobs_dir);
    if threads <= 1 || dirs.len() <= 1 {
        return dirs
            .into_iter()
            .filter_map(|(name, dir)| load(&name, &dir, loader).map(|item| (name, item)))
            .collect();
    }
    let next = AtomicUsize::new(0);
    let out = Mutex::new(Group::new());
    let finished: Mutex<Vec<Loader>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads.min(dirs.len()) {
            let mut mine = loader.fork();
            let (next, out, finished, dirs, load) = (&next, &out, &finished, &dirs, &load);
            s.spawn(move || {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some((name, dir)) = dirs.get(k) else {
                        break;
                    };
                    if let Some(item) = load(name, dir, &mut mine) {
                        out.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(name.clone(), item);
                    }
                }
                finished
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(mine);
            });
        }
    });
    for l in finished.into_inner().unwrap_or_else(|e| e.into_inner()) {
        loader.join(&l);
    }
    out.into_inner().unwrap_or_else(|e| e.into_inner())
}

/// Loads every item under a `jobs` directory from disk (what Jenkins does at start).
pub fn load_group_fresh(jobs_dir: &Path, threads: usize, loader: &mut Loader) -> Group {
    load_top_level(jobs_dir, threads, loader, |_, dir, l| {
        load_item_fresh(dir, l)
    })
}

/// The children of a folder on a reload: children already in memory keep their config (and their own
/// children follow the same rule) and run `onLoad`, which refreshes their builds; new ones are read from
/// disk, those whose directory is gone are dropped.
fn reload_children(old: &Group, jobs_dir: &Path, loader: &mut Loader) -> Group {
    let mut out = Group::new();
    for (name, dir) in subdirs(jobs_dir) {
        if let Some(existing) = old.get(&name) {
            let mut kept = existing.clone();
            refresh_builds(&mut kept, &dir, existing.next_build, loader);
            if kept.folder {
                kept.children = reload_children(&existing.children, &dir.join("jobs"), loader);
            }
            out.insert(name, kept);
        } else if let Some(item) = load_item_fresh(&dir, loader) {
            out.insert(name, item);
        }
    }
    out
}

/// A full reload: every top-level item's config is re-read into a fresh object; folders keep their
/// existing children's in-memory config (see [`reload_children`]); items whose config is gone are
/// removed.
pub fn reload_top(old: &Group, jobs_dir: &Path, threads: usize, loader: &mut Loader) -> Group {
    load_top_level(jobs_dir, threads, loader, |name, dir, l| {
        let h = read_header_lenient(dir)?;
        let mut item = new_item(h);
        refresh_builds(&mut item, dir, 1, l);
        if item.folder {
            item.children = match old.get(name) {
                Some(existing) if existing.folder => {
                    reload_children(&existing.children, &dir.join("jobs"), l)
                }
                _ => load_children_fresh(&dir.join("jobs"), l),
            };
        }
        Some(item)
    })
}

/// A per-item reload: re-reads `dir/config.xml` onto `existing`, refreshes its builds.
pub fn reload_one(
    existing: &Item,
    dir: &Path,
    loader: &mut Loader,
) -> Result<Item, ReloadOneError> {
    let h = match read_header(dir) {
        Ok(Some(h)) => h,
        Ok(None) => return Err(ReloadOneError::Gone(dir.join("config.xml"))),
        Err((path, why)) => return Err(ReloadOneError::Bad(path, why)),
    };
    if h.class != existing.class {
        return Err(ReloadOneError::ClassChanged {
            was: existing.class.clone(),
            now: h.class,
        });
    }
    let mut item = new_item(h);
    refresh_builds(&mut item, dir, existing.next_build, loader);
    if item.folder {
        item.children = reload_children(&existing.children, &dir.join("jobs"), loader);
    }
    Ok(item)
}

/// Number of items in a tree, at every depth.
pub fn count(group: &Group) -> usize {
    group.values().map(|i| 1 + count(&i.children)).sum()
}

/// Calls `f(full name, item)` for every item, parents before children.
pub fn walk<'a>(group: &'a Group, f: &mut impl FnMut(&str, &'a Item)) {
    fn go<'a>(group: &'a Group, prefix: &str, f: &mut impl FnMut(&str, &'a Item)) {
        for (name, item) in group {
            let full = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            f(&full, item);
            go(&item.children, &full, f);
        }
    }
    go(group, "", f);
}

/// The tree flattened to full name (`F/B`) → description.
pub fn flatten(group: &Group) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk(group, &mut |full, item| {
        out.insert(full.to_string(), item.description.clone());
    });
    out
}

/// The name segments of a full name.
pub fn segments(full_name: &str) -> Vec<String> {
    full_name.split('/').map(str::to_string).collect()
}

/// The item at these name segments, if it is in memory.
pub fn get<'a>(group: &'a Group, segments: &[String]) -> Option<&'a Item> {
    let (first, rest) = segments.split_first()?;
    let item = group.get(first)?;
    if rest.is_empty() {
        Some(item)
    } else {
        get(&item.children, rest)
    }
}

/// Mutable access to the item at these name segments.
pub fn get_mut<'a>(group: &'a mut Group, segments: &[String]) -> Option<&'a mut Item> {
    let (first, rest) = segments.split_first()?;
    let item = group.get_mut(first)?;
    if rest.is_empty() {
        Some(item)
    } else {
        get_mut(&mut item.children, rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(home: &Path, rel: &str, xml: &str) {
        let p = home.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, xml).unwrap();
    }

    fn job(desc: &str) -> String {
        format!("<project><description>{desc}</description></project>")
    }

    fn folder(desc: &str) -> String {
        format!(
            "<com.cloudbees.hudson.plugins.folder.Folder><description>{desc}</description>\
             </com.cloudbees.hudson.plugins.folder.Folder>"
        )
    }

    #[test]
    fn load_reload_and_folder_caveat() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path();
        write(home, "jobs/A/config.xml", &job("a1"));
        write(home, "jobs/F/config.xml", &folder("f1"));
        write(home, "jobs/F/jobs/B/config.xml", &job("b1"));
        write(home, "jobs/F/jobs/D/config.xml", &job("d1"));
        write(home, "jobs/F/jobs/G/config.xml", &folder("g1"));
        write(home, "jobs/F/jobs/G/jobs/H/config.xml", &job("h1"));
        write(
            home,
            "jobs/Bad/config.xml",
            "<project><description>x</project>",
        );
        fs::create_dir_all(home.join("jobs/NoConfig/builds")).unwrap();

        let tree = load_group_fresh(&home.join("jobs"), 1, &mut Loader::free());
        let flat = flatten(&tree);
        assert_eq!(flat.get("F/G/H").map(String::as_str), Some("h1"));
        assert_eq!(flat.get("Bad").map(String::as_str), Some(""));
        assert!(!flat.contains_key("NoConfig"));
        assert_eq!(count(&tree), 7);

        write(home, "jobs/A/config.xml", &job("a2"));
        write(home, "jobs/F/config.xml", &folder("f2"));
        write(home, "jobs/F/jobs/B/config.xml", &job("b2"));
        write(home, "jobs/F/jobs/G/jobs/H/config.xml", &job("h2"));
        write(home, "jobs/F/jobs/C/config.xml", &job("c1"));
        fs::remove_dir_all(home.join("jobs/F/jobs/D")).unwrap();
        write(home, "jobs/N/config.xml", &job("n1"));

        let tree = reload_top(&tree, &home.join("jobs"), 3, &mut Loader::free());
        let flat = flatten(&tree);
        assert_eq!(flat["A"], "a2");
        assert_eq!(flat["F"], "f2");
        assert_eq!(
            flat["F/B"], "b1",
            "existing child keeps its in-memory config"
        );
        assert_eq!(flat["F/G/H"], "h1");
        assert_eq!(flat["F/C"], "c1");
        assert_eq!(flat["N"], "n1");
        assert!(!flat.contains_key("F/D"));

        let segs = vec!["F".to_string(), "B".to_string()];
        let b = reload_one(
            get(&tree, &segs).unwrap(),
            &item_dir(home, &segs),
            &mut Loader::free(),
        )
        .unwrap();
        assert_eq!(b.description, "b2");

        let segs = vec!["F".to_string(), "D".to_string()];
        let old_d = Item {
            class: FREESTYLE_CLASS.into(),
            folder: false,
            description: "d1".into(),
            children: Group::new(),
            timer: None,
            build_duration: None,
            next_build: 1,
            builds: Vec::new(),
        };
        assert!(matches!(
            reload_one(&old_d, &item_dir(home, &segs), &mut Loader::free()),
            Err(ReloadOneError::Gone(_))
        ));
    }

    #[test]
    fn next_number_is_max_of_file_and_highest_build_and_kept_children_refresh() {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path();
        write(home, "jobs/J/config.xml", &job("j"));
        write(home, "jobs/J/nextBuildNumber", "3\n");
        fs::create_dir_all(home.join("jobs/J/builds/1")).unwrap();
        fs::create_dir_all(home.join("jobs/J/builds/7")).unwrap();
        write(home, "jobs/K/config.xml", &job("k"));
        write(home, "jobs/K/nextBuildNumber", "20");
        fs::create_dir_all(home.join("jobs/K/builds/2")).unwrap();
        write(home, "jobs/F/config.xml", &folder("f"));
        write(home, "jobs/F/jobs/C/config.xml", &job("c1"));
        write(
            home,
            "jobs/T/config.xml",
            "<project><triggers><hudson.triggers.TimerTrigger>\
            <spec>@every 2s</spec></hudson.triggers.TimerTrigger></triggers>\
            <standinBuildDuration>150ms</standinBuildDuration></project>",
        );

        let mut loader = Loader::free();
        let tree = load_group_fresh(&home.join("jobs"), 1, &mut loader);
        assert_eq!((loader.items, loader.build_entries), (5, 3));
        let next = |t: &Group, n: &str| get(t, &segments(n)).unwrap().next_build;
        assert_eq!(next(&tree, "J"), 8);
        assert_eq!(next(&tree, "K"), 20);
        assert_eq!(next(&tree, "F/C"), 1);
        assert_eq!(get(&tree, &segments("J")).unwrap().builds, vec![1, 7]);
        let t = get(&tree, &segments("T")).unwrap();
        assert_eq!(t.timer.as_deref(), Some("@every 2s"));
        assert_eq!(t.build_duration, Some(Duration::from_millis(150)));

        // A kept folder child is not re-read on a full reload, but its builds are.
        write(home, "jobs/F/jobs/C/config.xml", &job("c2"));
        fs::create_dir_all(home.join("jobs/F/jobs/C/builds/4")).unwrap();
        let tree = reload_top(&tree, &home.join("jobs"), 2, &mut Loader::free());
        let c = get(&tree, &segments("F/C")).unwrap();
        assert_eq!((c.description.as_str(), c.next_build), ("c1", 5));

        // A per-item reload with no nextBuildNumber keeps the in-memory number.
        fs::remove_file(home.join("jobs/K/nextBuildNumber")).unwrap();
        let k = reload_one(
            get(&tree, &segments("K")).unwrap(),
            &home.join("jobs/K"),
            &mut Loader::free(),
        )
        .unwrap();
        assert_eq!(k.next_build, 20);
    }
}
