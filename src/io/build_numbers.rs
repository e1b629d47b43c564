//! Reads each job's `nextBuildNumber` from JENKINS_HOME, by content, for a promotion's last
//! check of the build numbers, and when the newest build started (`builds/N-1/build.xml`), for
//! the queue of a quiet Jenkins.
//!
//! The watcher tells moved jobs by their stamps (`stat`), and an NFS client caches attributes
//! for seconds (`actimeo`; FUSE for `attr_timeout`): a build the old active started just before
//! it died may not show in a stamp yet. Opening a file revalidates it (NFS close-to-open; FUSE
//! without `kernel_cache` reads through), so reading the content is fresh. The reads run on a
//! few threads: on NFS each costs a round trip or two, and they overlap well.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What reading the numbers found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DiskNumbers {
    /// Job full name → the number in its `nextBuildNumber`.
    pub numbers: BTreeMap<String, u64>,
    /// Items with no `nextBuildNumber` (folders, jobs never built).
    pub absent: usize,
    /// Files that could not be read or held no number: (full name, why).
    pub unreadable: Vec<(String, String)>,
}

/// The directory of item `full_name` (`a/b` → `<home>/jobs/a/jobs/b`).
pub fn item_dir(home: &Path, full_name: &str) -> PathBuf {
    let mut dir = home.to_path_buf();
    for segment in full_name.split('/') {
        dir.push("jobs");
        dir.push(segment);
    }
    dir
}

/// One item's number: `None` when it has no file, an error saying why it is unreadable.
type ReadOne = Result<Option<u64>, String>;

fn read_one(home: &Path, full_name: &str) -> ReadOne {
    let path = item_dir(home, full_name).join("nextBuildNumber");
    match std::fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| format!("{} holds no number", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// A job's newest build as the disk has it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NewestBuild {
    /// Its `nextBuildNumber`.
    pub next: u64,
    /// When build `next - 1` started (`<timestamp>` of its `build.xml`, ms); `None` when there
    /// is none, or it is not written yet (Jenkins saves the number first).
    pub started_ms: Option<u64>,
}

/// Reads `nextBuildNumber` and the start of the build before it for each job, on `threads`
/// threads. Jobs with no readable number are left out. Blocking.
pub fn read_newest_builds(
    home: &Path,
    jobs: &[String],
    threads: usize,
) -> BTreeMap<String, NewestBuild> {
    let numbers = read_next_numbers(home, jobs, threads).numbers;
    let wanted: Vec<(String, u64)> = numbers.into_iter().collect();
    let threads = threads.clamp(1, 64);
    let chunk = wanted.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = wanted
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(job, next)| {
                            let started_ms = next
                                .checked_sub(1)
                                .filter(|n| *n > 0)
                                .and_then(|n| build_started(home, job, n));
                            (
                                job.clone(),
                                NewestBuild {
                                    next: *next,
                                    started_ms,
                                },
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// `<timestamp>` of `builds/<number>/build.xml` of a job.
fn build_started(home: &Path, job: &str, number: u64) -> Option<u64> {
    let path = item_dir(home, job)
        .join("builds")
        .join(number.to_string())
        .join("build.xml");
    let xml = std::fs::read_to_string(path).ok()?;
    let start = xml.find("<timestamp>")? + "<timestamp>".len();
    let end = start + xml[start..].find("</timestamp>")?;
    xml[start..end].trim().parse().ok()
}

/// Reads `nextBuildNumber` of every item in `items` (folders have none), on `threads` threads.
/// Blocking: call it off the async runtime.
pub fn read_next_numbers(home: &Path, items: &[String], threads: usize) -> DiskNumbers {
    let threads = threads.clamp(1, 64);
    let chunk = items.len().div_ceil(threads).max(1);
    let parts: Vec<Vec<(String, ReadOne)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|name| (name.clone(), read_one(home, name)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut out = DiskNumbers::default();
    for (name, result) in parts.into_iter().flatten() {
        match result {
            Ok(Some(n)) => {
                out.numbers.insert(name, n);
            }
            Ok(None) => out.absent += 1,
            Err(why) => out.unreadable.push((name, why)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_jobs_through_folders_and_reports_what_it_cannot_read() {
        let home = tempfile::tempdir().unwrap();
        let write = |name: &str, content: Option<&str>| {
            let dir = item_dir(home.path(), name);
            std::fs::create_dir_all(&dir).unwrap();
            if let Some(c) = content {
                std::fs::write(dir.join("nextBuildNumber"), c).unwrap();
            }
        };
        write("top", Some("12\n"));
        write("F", None);
        write("F/sub/deep", Some("7"));
        write("F/bad", Some("not a number"));
        let items: Vec<String> = ["top", "F", "F/sub/deep", "F/bad", "gone"]
            .map(String::from)
            .to_vec();
        let found = read_next_numbers(home.path(), &items, 3);
        assert_eq!(found.numbers.get("top"), Some(&12));
        assert_eq!(found.numbers.get("F/sub/deep"), Some(&7));
        assert_eq!(found.absent, 2, "the folder and the job gone");
        assert_eq!(found.unreadable.len(), 1);
        assert!(found.unreadable[0].1.contains("holds no number"));
    }

    #[test]
    fn the_newest_build_start_comes_from_its_build_xml() {
        let home = tempfile::tempdir().unwrap();
        let dir = item_dir(home.path(), "F/job");
        std::fs::create_dir_all(dir.join("builds/4")).unwrap();
        std::fs::write(dir.join("nextBuildNumber"), "5\n").unwrap();
        std::fs::write(
            dir.join("builds/4/build.xml"),
            "<?xml version='1.1'?>\n<build>\n  <number>4</number>\n  <timestamp>1700000000123</timestamp>\n</build>\n",
        )
        .unwrap();
        let other = item_dir(home.path(), "started-only");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("nextBuildNumber"), "2").unwrap();
        let jobs = ["F/job", "started-only", "never"]
            .map(String::from)
            .to_vec();
        let found = read_newest_builds(home.path(), &jobs, 2);
        assert_eq!(
            found.get("F/job"),
            Some(&NewestBuild {
                next: 5,
                started_ms: Some(1_700_000_000_123)
            })
        );
        assert_eq!(
            found.get("started-only"),
            Some(&NewestBuild {
                next: 2,
                started_ms: None
            }),
            "the number is saved before the build record"
        );
        assert_eq!(found.get("never"), None);
    }
}
