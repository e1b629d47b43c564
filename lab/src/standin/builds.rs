//! Build records on disk: what a job's `builds/` and `nextBuildNumber` say, and how a build the
//! stand-in runs is written there, as Jenkins does.
//!
//! A build takes the job's in-memory next number N, writes `nextBuildNumber` (N+1) at once, creates
//! `builds/N/` with a `build.xml` (no `<result>` while it runs) and a `log`, and rewrites `build.xml`
//! with its `<result>` when it ends. If `builds/N` already exists when the build starts, another build
//! (another controller's, or an older record) used that number: a collision. The directory is reused
//! and its `build.xml` and `log` are overwritten, as Jenkins would.
//!
//! `build.xml` carries, besides Jenkins' fields, two stand-in elements: `<standinController>` (who ran
//! it) and `<standinFireSlots>` (the timer fire slots it covers, epoch ms).

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use super::queue::Cause;
use super::xml;

/// What one build is, for its `build.xml`.
#[derive(Debug, Clone)]
pub struct Record {
    pub number: u64,
    pub queue_id: u64,
    /// Start, epoch ms.
    pub timestamp: u64,
    pub causes: Vec<(Cause, u32)>,
    pub fire_slots: Vec<u64>,
    pub controller: String,
    /// `Some((result, duration ms))` once the build has ended.
    pub result: Option<(String, u64)>,
}

/// What the stand-in reads back from a `build.xml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub timestamp: Option<u64>,
    pub result: Option<String>,
    pub duration: Option<u64>,
    pub controller: Option<String>,
}

/// The numbered build directories of a job and the number of entries in `builds/` (all kinds: legacy
/// symlinks, `permalinks`, ...), from one listing.
pub fn list_builds(job_dir: &Path) -> (Vec<u64>, usize) {
    let Ok(rd) = fs::read_dir(job_dir.join("builds")) else {
        return (Vec::new(), 0);
    };
    let mut numbers = Vec::new();
    let mut entries = 0;
    for e in rd.flatten() {
        entries += 1;
        if let Some(n) = e
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|n| *n > 0)
        {
            numbers.push(n);
        }
    }
    numbers.sort_unstable();
    (numbers, entries)
}

/// The number in `nextBuildNumber`, if the file exists and holds one.
pub fn read_next_number(job_dir: &Path) -> Option<u64> {
    fs::read_to_string(job_dir.join("nextBuildNumber"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// Writes a file the way Jenkins' `AtomicFileWriter` does: a temporary file in the same directory,
/// then a rename over the target.
pub fn write_atomic(path: &Path, content: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!("atomic{}tmp", rand::random::<u64>()));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(content)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The `build.xml` of a record.
pub fn build_xml(r: &Record) -> String {
    let mut causes = String::new();
    for (cause, count) in &r.causes {
        causes.push_str(&format!(
            "          <entry>\n            {}\n            <int>{count}</int>\n          </entry>\n",
            cause.xml()
        ));
    }
    let slots: String = r
        .fire_slots
        .iter()
        .map(|s| format!("    <slot>{s}</slot>\n"))
        .collect();
    let result = match &r.result {
        Some((result, duration)) => format!(
            "  <result>{}</result>\n  <duration>{duration}</duration>\n",
            xml::escape(result)
        ),
        None => String::new(),
    };
    format!(
        "<?xml version='1.1' encoding='UTF-8'?>\n<build>\n  <actions>\n    <hudson.model.CauseAction>\n      \
         <causeBag class=\"linked-hash-map\">\n{causes}      </causeBag>\n    </hudson.model.CauseAction>\n  \
         </actions>\n  <queueId>{}</queueId>\n  <number>{}</number>\n  <timestamp>{}</timestamp>\n  \
         <startTime>{}</startTime>\n{result}  <builtOn></builtOn>\n  <keepLog>false</keepLog>\n  \
         <standinController>{}</standinController>\n  <standinFireSlots>\n{slots}  </standinFireSlots>\n</build>\n",
        r.queue_id,
        r.number,
        r.timestamp,
        r.timestamp,
        xml::escape(&r.controller),
    )
}

/// The directory of build `n` of a job.
pub fn build_dir(job_dir: &Path, n: u64) -> PathBuf {
    job_dir.join("builds").join(n.to_string())
}

/// Starts a build on disk. Returns whether `builds/N` already existed (a collision).
pub fn write_start(job_dir: &Path, r: &Record) -> io::Result<bool> {
    write_atomic(
        &job_dir.join("nextBuildNumber"),
        format!("{}\n", r.number + 1).as_bytes(),
    )?;
    fs::create_dir_all(job_dir.join("builds"))?;
    let dir = build_dir(job_dir, r.number);
    let collided = match fs::create_dir(&dir) {
        Ok(()) => false,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => true,
        Err(e) => return Err(e),
    };
    write_atomic(&dir.join("build.xml"), build_xml(r).as_bytes())?;
    let causes: String = r
        .causes
        .iter()
        .map(|(c, _)| format!("{}\n", c.short_description()))
        .collect();
    fs::write(
        dir.join("log"),
        format!(
            "{causes}Running as SYSTEM\nBuilding on the built-in node of controller {}\n",
            r.controller
        ),
    )?;
    Ok(collided)
}

/// Ends a build on disk: `build.xml` with its result, the last line of the log.
pub fn write_end(job_dir: &Path, r: &Record) -> io::Result<()> {
    // A build whose directory was deleted meanwhile fails to save, as in Jenkins (no re-creation).
    let dir = build_dir(job_dir, r.number);
    write_atomic(&dir.join("build.xml"), build_xml(r).as_bytes())?;
    let result = r.result.as_ref().map(|(s, _)| s.as_str()).unwrap_or("");
    append(&dir.join("log"), &format!("Finished: {result}\n"))
}

/// Appends text to a file, creating it if needed.
pub fn append(path: &Path, text: &str) -> io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(text.as_bytes())
}

/// Reads a build's `build.xml`.
pub fn read_facts(job_dir: &Path, n: u64) -> Option<Facts> {
    let text = fs::read_to_string(build_dir(job_dir, n).join("build.xml")).ok()?;
    let root = xml::parse(&text).ok()?;
    Some(Facts {
        timestamp: root.child_text("timestamp").and_then(|s| s.parse().ok()),
        result: root.child_text("result").filter(|s| !s.is_empty()),
        duration: root.child_text("duration").and_then(|s| s.parse().ok()),
        controller: root.child_text("standinController"),
    })
}

/// The color Jenkins shows for a last build with this result.
pub fn color_of(result: Option<&str>) -> &'static str {
    match result {
        Some("SUCCESS") => "blue",
        Some("UNSTABLE") => "yellow",
        Some("FAILURE") => "red",
        Some("ABORTED") => "aborted",
        Some("NOT_BUILT") => "notbuilt",
        Some(_) => "grey",
        None => "blue_anime",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u64, result: Option<(&str, u64)>) -> Record {
        Record {
            number: n,
            queue_id: 7,
            timestamp: 1_700_000_000_000,
            causes: vec![(Cause::Timer, 2)],
            fire_slots: vec![1_699_999_999_000, 1_700_000_000_000],
            controller: "n1".into(),
            result: result.map(|(s, d)| (s.to_string(), d)),
        }
    }

    #[test]
    fn start_collide_and_end() {
        let tmp = tempfile::tempdir().unwrap();
        let job = tmp.path();
        assert!(!write_start(job, &record(1, None)).unwrap());
        assert_eq!(read_next_number(job), Some(2));
        let facts = read_facts(job, 1).unwrap();
        assert_eq!(facts.result, None);
        assert_eq!(facts.controller.as_deref(), Some("n1"));
        assert_eq!(facts.timestamp, Some(1_700_000_000_000));
        assert!(
            write_start(job, &record(1, None)).unwrap(),
            "builds/1 exists"
        );
        write_end(job, &record(1, Some(("SUCCESS", 1000)))).unwrap();
        let facts = read_facts(job, 1).unwrap();
        assert_eq!(facts.result.as_deref(), Some("SUCCESS"));
        assert_eq!(facts.duration, Some(1000));
        let log = fs::read_to_string(job.join("builds/1/log")).unwrap();
        assert!(log.starts_with("Started by timer\n"), "{log}");
        assert!(log.ends_with("Finished: SUCCESS\n"), "{log}");
        fs::create_dir_all(job.join("builds/lastSuccessfulBuild")).unwrap();
        assert_eq!(list_builds(job), (vec![1], 2));
        let leftovers = fs::read_dir(job)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("atomic"))
            .count();
        assert_eq!(leftovers, 0);
    }
}
