//! The stand-in's item tree and how it is (re)loaded from `HOME/jobs`, following Jenkins' rules.
//!
//! Only `config.xml` files are read; `builds/`, `workspace/` and the like are never opened. A folder's
//! children live in its `jobs/` directory, at any depth.
//!
//! Three ways to load, as in Jenkins:
//! - [`load_group_fresh`]: start-up, everything is read from disk;
//! - [`reload_top`]: a full `/reload`. Top-level items are re-read, but inside a folder the children that
//!   are already in memory keep their in-memory config (cloudbees-folder `loadChildren`, JENKINS-28043);
//!   new children are read, children whose directory is gone are dropped;
//! - [`reload_one`]: `/job/.../reload`, which re-reads one item's config onto the live object (a folder's
//!   children again follow the folder rule).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

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
    let cfg = xml::parse_config(&text).map_err(|e| (path, e))?;
    Ok(Some(Header {
        class: class_of(&cfg.root),
        folder: cfg.root.contains("Folder"),
        description: cfg.description,
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

/// Loads an item and, for a folder, all its descendants from disk. `None` if there is no `config.xml`.
fn load_item_fresh(dir: &Path) -> Option<Item> {
    let h = read_header_lenient(dir)?;
    let children = if h.folder {
        load_group_fresh(&dir.join("jobs"))
    } else {
        Group::new()
    };
    Some(Item {
        class: h.class,
        folder: h.folder,
        description: h.description,
        children,
    })
}

/// Loads every item under a `jobs` directory from disk (what Jenkins does at start).
pub fn load_group_fresh(jobs_dir: &Path) -> Group {
    subdirs(jobs_dir)
        .into_iter()
        .filter_map(|(name, dir)| load_item_fresh(&dir).map(|item| (name, item)))
        .collect()
}

/// The children of a folder on a reload: children already in memory keep their config (and their own
/// children follow the same rule), new ones are read from disk, those whose directory is gone are dropped.
fn reload_children(old: &Group, jobs_dir: &Path) -> Group {
    let mut out = Group::new();
    for (name, dir) in subdirs(jobs_dir) {
        if let Some(existing) = old.get(&name) {
            let mut kept = existing.clone();
            if kept.folder {
                kept.children = reload_children(&existing.children, &dir.join("jobs"));
            }
            out.insert(name, kept);
        } else if let Some(item) = load_item_fresh(&dir) {
            out.insert(name, item);
        }
    }
    out
}

/// A full reload: every top-level item's config is re-read; folders keep their existing children's
/// in-memory config (see [`reload_children`]); items whose config is gone are removed.
pub fn reload_top(old: &Group, jobs_dir: &Path) -> Group {
    let mut out = Group::new();
    for (name, dir) in subdirs(jobs_dir) {
        let Some(h) = read_header_lenient(&dir) else {
            continue;
        };
        let children = match (h.folder, old.get(&name)) {
            (false, _) => Group::new(),
            (true, Some(existing)) if existing.folder => {
                reload_children(&existing.children, &dir.join("jobs"))
            }
            (true, _) => load_group_fresh(&dir.join("jobs")),
        };
        out.insert(
            name,
            Item {
                class: h.class,
                folder: h.folder,
                description: h.description,
                children,
            },
        );
    }
    out
}

/// A per-item reload: re-reads `dir/config.xml` onto `existing`.
pub fn reload_one(existing: &Item, dir: &Path) -> Result<Item, ReloadOneError> {
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
    let children = if h.folder {
        reload_children(&existing.children, &dir.join("jobs"))
    } else {
        Group::new()
    };
    Ok(Item {
        class: h.class,
        folder: h.folder,
        description: h.description,
        children,
    })
}

/// Number of items in a tree, at every depth.
pub fn count(group: &Group) -> usize {
    group.values().map(|i| 1 + count(&i.children)).sum()
}

/// The tree flattened to full name (`F/B`) → description.
pub fn flatten(group: &Group) -> BTreeMap<String, String> {
    fn walk(group: &Group, prefix: &str, out: &mut BTreeMap<String, String>) {
        for (name, item) in group {
            let full = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            out.insert(full.clone(), item.description.clone());
            walk(&item.children, &full, out);
        }
    }
    let mut out = BTreeMap::new();
    walk(group, "", &mut out);
    out
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

        let tree = load_group_fresh(&home.join("jobs"));
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

        let tree = reload_top(&tree, &home.join("jobs"));
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
        let b = reload_one(get(&tree, &segs).unwrap(), &item_dir(home, &segs)).unwrap();
        assert_eq!(b.description, "b2");

        let segs = vec!["F".to_string(), "D".to_string()];
        let old_d = Item {
            class: FREESTYLE_CLASS.into(),
            folder: false,
            description: "d1".into(),
            children: Group::new(),
        };
        assert!(matches!(
            reload_one(&old_d, &item_dir(home, &segs)),
            Err(ReloadOneError::Gone(_))
        ));
    }
}
