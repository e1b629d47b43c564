//! Writes a realistic JENKINS_HOME for the stand-in, the lab and the benchmarks: root `config.xml`,
//! `credentials.xml` and plugin configurations, `nodes/`, `users/`, and N jobs in nested folders, each
//! with `config.xml`, `nextBuildNumber` and a build history (`builds/1..K/{build.xml,log}`), some with
//! a timer trigger (`@every`, the stand-in's extension).
//!
//! Layout, for the defaults (10,000 jobs, 100 folders, nested every 4th folder, 1 % top-level jobs):
//! - `jobs/job-NNNNN`: the top-level jobs (100);
//! - `jobs/F000` … `jobs/F099`: folders holding the other jobs in turn (99 each);
//! - `jobs/F000/jobs/sub`, `jobs/F004/jobs/sub`, …: a nested folder in every 4th folder, holding half of
//!   that folder's jobs. Items = jobs + folders + nested folders (10,125 by default).
//!
//! Jobs are named `job-NNNNN` (a global index, unique across the home), 70 % Pipelines
//! (`flow-definition`), 30 % freestyle (`project`), configs of about 1.3 KB. Build results are mostly
//! SUCCESS with some FAILURE and UNSTABLE; timestamps are fixed. Everything is derived from the seed:
//! the same spec writes the same bytes.
//!
//! Cost, measured on the 2-core dev machine (ext4): the defaults (10,000 jobs × 5 builds) write about
//! 120,000 files, 52 MB of content but about 750 MB of disk (4 KB blocks and 70,000 directories), in
//! about 7 s with 4 threads. Build records dominate: `--builds 1` needs about a third of that.
//!
//! This file uses only `std`, so other crates may include it with `#[path]`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// What to generate.
#[derive(Debug, Clone)]
pub struct HomeSpec {
    /// Jobs in all (top-level and in folders).
    pub jobs: usize,
    /// Top-level folders.
    pub folders: usize,
    /// Jobs directly under `jobs/` (the rest go into folders).
    pub top_level_jobs: usize,
    /// Every Nth folder (0, N, 2N, …) holds a nested folder `sub` with half its jobs; 0 = none.
    pub nested_every: usize,
    /// Builds per job on disk (`builds/1..K`); `nextBuildNumber` is K+1.
    pub builds: usize,
    /// Jobs with a timer trigger `@every <timer_every>`.
    pub timers: usize,
    /// The period of the timer triggers.
    pub timer_every: Duration,
    /// Seed of every choice (job kinds, results, which jobs get timers, user directory).
    pub seed: u64,
    /// The user that gets a directory and a `users/users.xml` entry.
    pub user: String,
    /// Agents under `nodes/`.
    pub nodes: usize,
    /// Threads writing the home.
    pub threads: usize,
}

impl Default for HomeSpec {
    fn default() -> Self {
        HomeSpec {
            jobs: 10_000,
            folders: 100,
            top_level_jobs: 100,
            nested_every: 4,
            builds: 5,
            timers: 0,
            timer_every: Duration::from_secs(3),
            seed: 1,
            user: "admin".to_string(),
            nodes: 3,
            threads: 4,
        }
    }
}

/// What was generated.
#[derive(Debug, Clone)]
pub struct HomeReport {
    /// Full names of every job (e.g. `F007/sub/job-00123`), sorted.
    pub jobs: Vec<String>,
    /// Full names of the folders, nested ones included, sorted.
    pub folders: Vec<String>,
    /// Every item: jobs + folders.
    pub items: usize,
    /// Full names of the jobs with a timer trigger, sorted.
    pub timer_jobs: Vec<String>,
    /// The directory name of the user under `users/`.
    pub user_dir: String,
    /// Files written.
    pub files: u64,
    /// Bytes written (file contents).
    pub bytes: u64,
    /// How long it took.
    pub elapsed: Duration,
}

/// SplitMix64: a small, good, seedable generator.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One job to write.
struct JobPlan {
    /// Full name.
    full: String,
    index: usize,
    timer: bool,
}

/// One unit of work: a folder (with its jobs) or the top-level jobs.
struct Unit {
    /// Folder full name and whether it is nested (`None` for the top-level jobs).
    folders: Vec<String>,
    jobs: Vec<JobPlan>,
}

/// `@every` form of a duration: `3s`, `500ms`.
fn every_text(d: Duration) -> String {
    // (Not `is_multiple_of`: the main crate, which includes this file, supports Rust 1.85.)
    let ms = d.as_millis();
    match (ms / 1000, ms % 1000) {
        (s, 0) => format!("{s}s"),
        _ => format!("{ms}ms"),
    }
}

fn err(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Counts what a writer wrote.
struct Counter {
    files: AtomicU64,
    bytes: AtomicU64,
}

impl Counter {
    fn write(&self, path: &Path, content: &str) -> io::Result<()> {
        fs::write(path, content).map_err(|e| err(path, e))?;
        self.files.fetch_add(1, Ordering::Relaxed);
        self.bytes
            .fetch_add(content.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn dir(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path).map_err(|e| err(path, e))
    }
}

/// The directory of an item with this full name.
fn item_dir(home: &Path, full: &str) -> PathBuf {
    let mut dir = home.to_path_buf();
    for s in full.split('/') {
        dir.push("jobs");
        dir.push(s);
    }
    dir
}

fn folder_xml(name: &str) -> String {
    format!(
        "<?xml version='1.1' encoding='UTF-8'?>\n<com.cloudbees.hudson.plugins.folder.Folder plugin=\"cloudbees-folder@6.9\">\n  \
         <actions/>\n  <description>Folder {name}</description>\n  <properties/>\n  \
         <folderViews class=\"com.cloudbees.hudson.plugins.folder.views.DefaultFolderViewHolder\">\n    <views>\n      \
         <hudson.model.AllView>\n        <owner class=\"com.cloudbees.hudson.plugins.folder.Folder\" reference=\"../../../..\"/>\n        \
         <name>All</name>\n        <filterExecutors>false</filterExecutors>\n        <filterQueue>false</filterQueue>\n      \
         </hudson.model.AllView>\n    </views>\n    <tabBar class=\"hudson.views.DefaultViewsTabBar\"/>\n  </folderViews>\n  \
         <healthMetrics/>\n  <icon class=\"com.cloudbees.hudson.plugins.folder.icons.StockFolderIcon\"/>\n\
         </com.cloudbees.hudson.plugins.folder.Folder>\n"
    )
}

fn job_xml(name: &str, pipeline: bool, timer: Option<&str>) -> String {
    let triggers = match timer {
        Some(every) => format!(
            "<triggers>\n    <hudson.triggers.TimerTrigger>\n      <spec>@every {every}</spec>\n    \
             </hudson.triggers.TimerTrigger>\n  </triggers>"
        ),
        None => "<triggers/>".to_string(),
    };
    let discarder = "<jenkins.model.BuildDiscarderProperty>\n      <strategy class=\"hudson.tasks.LogRotator\">\n        \
         <daysToKeep>-1</daysToKeep>\n        <numToKeep>100</numToKeep>\n        <artifactDaysToKeep>-1</artifactDaysToKeep>\n        \
         <artifactNumToKeep>-1</artifactNumToKeep>\n      </strategy>\n    </jenkins.model.BuildDiscarderProperty>";
    if pipeline {
        format!(
            "<?xml version='1.1' encoding='UTF-8'?>\n<flow-definition plugin=\"workflow-job@1400.v7fd111b_ec82f\">\n  \
             <actions/>\n  <description>Pipeline {name}</description>\n  <keepDependencies>false</keepDependencies>\n  \
             <properties>\n    {discarder}\n    <org.jenkinsci.plugins.workflow.job.properties.PipelineTriggersJobProperty>\n      \
             {triggers}\n    </org.jenkinsci.plugins.workflow.job.properties.PipelineTriggersJobProperty>\n  </properties>\n  \
             <definition class=\"org.jenkinsci.plugins.workflow.cps.CpsScmFlowDefinition\" plugin=\"workflow-cps@3903\">\n    \
             <scm class=\"hudson.plugins.git.GitSCM\" plugin=\"git@5.2.2\">\n      <configVersion>2</configVersion>\n      \
             <userRemoteConfigs>\n        <hudson.plugins.git.UserRemoteConfig>\n          \
             <url>https://git.example.com/ci/{name}.git</url>\n          <credentialsId>git-ci</credentialsId>\n        \
             </hudson.plugins.git.UserRemoteConfig>\n      </userRemoteConfigs>\n      <branches>\n        \
             <hudson.plugins.git.BranchSpec>\n          <name>*/main</name>\n        </hudson.plugins.git.BranchSpec>\n      \
             </branches>\n    </scm>\n    <scriptPath>Jenkinsfile</scriptPath>\n    <lightweight>true</lightweight>\n  \
             </definition>\n  {triggers}\n  <disabled>false</disabled>\n</flow-definition>\n"
        )
    } else {
        format!(
            "<?xml version='1.1' encoding='UTF-8'?>\n<project>\n  <actions/>\n  <description>Freestyle {name}</description>\n  \
             <keepDependencies>false</keepDependencies>\n  <properties>\n    {discarder}\n  </properties>\n  \
             <scm class=\"hudson.scm.NullSCM\"/>\n  <canRoam>true</canRoam>\n  <disabled>false</disabled>\n  \
             <blockBuildWhenDownstreamBuilding>false</blockBuildWhenDownstreamBuilding>\n  \
             <blockBuildWhenUpstreamBuilding>false</blockBuildWhenUpstreamBuilding>\n  {triggers}\n  \
             <concurrentBuild>false</concurrentBuild>\n  <builders>\n    <hudson.tasks.Shell>\n      \
             <command>make -C {name} test</command>\n      <configuredLocalRules/>\n    </hudson.tasks.Shell>\n  \
             </builders>\n  <publishers/>\n  <buildWrappers/>\n</project>\n"
        )
    }
}

/// The epoch ms of the first generated build; later ones are an hour apart.
const FIRST_BUILD_MS: u64 = 1_700_000_000_000;

fn build_xml(n: usize, timestamp: u64, result: &str, duration: u64, pipeline: bool) -> String {
    let root = if pipeline { "flow-build" } else { "build" };
    format!(
        "<?xml version='1.1' encoding='UTF-8'?>\n<{root}>\n  <actions>\n    <hudson.model.CauseAction>\n      \
         <causeBag class=\"linked-hash-map\">\n        <entry>\n          <hudson.triggers.TimerTrigger_-TimerTriggerCause/>\n          \
         <int>1</int>\n        </entry>\n      </causeBag>\n    </hudson.model.CauseAction>\n  </actions>\n  \
         <queueId>{n}</queueId>\n  <number>{n}</number>\n  <timestamp>{timestamp}</timestamp>\n  <startTime>{timestamp}</startTime>\n  \
         <result>{result}</result>\n  <duration>{duration}</duration>\n  <charset>UTF-8</charset>\n  <keepLog>false</keepLog>\n  \
         <builtOn></builtOn>\n  <standinController>gen-home</standinController>\n</{root}>\n"
    )
}

fn write_job(home: &Path, spec: &HomeSpec, job: &JobPlan, w: &Counter) -> io::Result<()> {
    let dir = item_dir(home, &job.full);
    let name = job.full.rsplit('/').next().unwrap_or(&job.full);
    let mut rng = Rng::new(
        spec.seed
            .wrapping_mul(1_000_003)
            .wrapping_add(job.index as u64),
    );
    let pipeline = rng.below(10) < 7;
    w.dir(&dir)?;
    let every = every_text(spec.timer_every);
    w.write(
        &dir.join("config.xml"),
        &job_xml(name, pipeline, job.timer.then_some(every.as_str())),
    )?;
    w.write(
        &dir.join("nextBuildNumber"),
        &format!("{}\n", spec.builds + 1),
    )?;
    for n in 1..=spec.builds {
        let bdir = dir.join("builds").join(n.to_string());
        w.dir(&bdir)?;
        let result = match rng.below(20) {
            0 | 1 => "FAILURE",
            2 => "UNSTABLE",
            _ => "SUCCESS",
        };
        let duration = 20_000 + rng.below(600_000);
        let timestamp = FIRST_BUILD_MS + (n as u64) * 3_600_000 + rng.below(60_000);
        w.write(
            &bdir.join("build.xml"),
            &build_xml(n, timestamp, result, duration, pipeline),
        )?;
        w.write(
            &bdir.join("log"),
            &format!(
                "Started by timer\nRunning as SYSTEM\nBuilding in workspace /var/lib/jenkins/workspace/{name}\n\
                 + make -C {name} test\nok\nFinished: {result}\n"
            ),
        )?;
    }
    Ok(())
}

fn write_root(home: &Path, spec: &HomeSpec, user_dir: &str, w: &Counter) -> io::Result<()> {
    w.write(
        &home.join("config.xml"),
        "<?xml version='1.1' encoding='UTF-8'?>\n<hudson>\n  <disabledAdministrativeMonitors/>\n  \
         <version>2.462.3</version>\n  <numExecutors>2</numExecutors>\n  <mode>NORMAL</mode>\n  \
         <useSecurity>true</useSecurity>\n  <authorizationStrategy class=\"hudson.security.FullControlOnceLoggedInAuthorizationStrategy\">\n    \
         <denyAnonymousReadAccess>true</denyAnonymousReadAccess>\n  </authorizationStrategy>\n  \
         <securityRealm class=\"hudson.security.HudsonPrivateSecurityRealm\">\n    <disableSignup>true</disableSignup>\n  \
         </securityRealm>\n  <disableRememberMe>false</disableRememberMe>\n  <workspaceDir>${JENKINS_HOME}/workspace/${ITEM_FULL_NAME}</workspaceDir>\n  \
         <buildsDir>${ITEM_ROOTDIR}/builds</buildsDir>\n  <jdks/>\n  <viewsTabBar class=\"hudson.views.DefaultViewsTabBar\"/>\n  \
         <myViewsTabBar class=\"hudson.views.DefaultMyViewsTabBar\"/>\n  <clouds/>\n  <quietPeriod>5</quietPeriod>\n  \
         <scmCheckoutRetryCount>0</scmCheckoutRetryCount>\n  <views>\n    <hudson.model.AllView>\n      \
         <owner class=\"hudson\" reference=\"../../..\"/>\n      <name>all</name>\n      <filterExecutors>false</filterExecutors>\n      \
         <filterQueue>false</filterQueue>\n    </hudson.model.AllView>\n  </views>\n  <primaryView>all</primaryView>\n  \
         <slaveAgentPort>50000</slaveAgentPort>\n  <label></label>\n  <nodeProperties/>\n  <globalNodeProperties/>\n</hudson>\n",
    )?;
    w.write(
        &home.join("credentials.xml"),
        "<?xml version='1.1' encoding='UTF-8'?>\n<com.cloudbees.plugins.credentials.SystemCredentialsProvider plugin=\"credentials@1337\">\n  \
         <domainCredentialsMap class=\"hudson.util.CopyOnWriteMap$Hash\">\n    <entry>\n      \
         <com.cloudbees.plugins.credentials.domains.Domain>\n        <specifications/>\n      \
         </com.cloudbees.plugins.credentials.domains.Domain>\n      <java.util.concurrent.CopyOnWriteArrayList>\n        \
         <com.cloudbees.plugins.credentials.impl.UsernamePasswordCredentialsImpl>\n          <scope>GLOBAL</scope>\n          \
         <id>git-ci</id>\n          <description>CI git account</description>\n          <username>ci</username>\n          \
         <password>{AQAAABAAAAAQexamplenotasecretAAAA=}</password>\n        \
         </com.cloudbees.plugins.credentials.impl.UsernamePasswordCredentialsImpl>\n      \
         </java.util.concurrent.CopyOnWriteArrayList>\n    </entry>\n  </domainCredentialsMap>\n\
         </com.cloudbees.plugins.credentials.SystemCredentialsProvider>\n",
    )?;
    w.write(
        &home.join("jenkins.model.JenkinsLocationConfiguration.xml"),
        "<?xml version='1.1' encoding='UTF-8'?>\n<jenkins.model.JenkinsLocationConfiguration>\n  \
         <adminAddress>ci@example.com</adminAddress>\n  <jenkinsUrl>https://ci.example.com/</jenkinsUrl>\n\
         </jenkins.model.JenkinsLocationConfiguration>\n",
    )?;
    w.write(
        &home.join("hudson.tasks.Mailer.xml"),
        "<?xml version='1.1' encoding='UTF-8'?>\n<hudson.tasks.Mailer_-DescriptorImpl plugin=\"mailer@472\">\n  \
         <smtpHost>smtp.example.com</smtpHost>\n  <useSsl>false</useSsl>\n  <charset>UTF-8</charset>\n\
         </hudson.tasks.Mailer_-DescriptorImpl>\n",
    )?;
    for i in 0..spec.nodes {
        let dir = home.join("nodes").join(format!("agent-{i}"));
        w.dir(&dir)?;
        w.write(
            &dir.join("config.xml"),
            &format!(
                "<?xml version='1.1' encoding='UTF-8'?>\n<slave>\n  <name>agent-{i}</name>\n  <description></description>\n  \
                 <remoteFS>/home/ci</remoteFS>\n  <numExecutors>2</numExecutors>\n  <mode>NORMAL</mode>\n  \
                 <retentionStrategy class=\"hudson.slaves.RetentionStrategy$Always\"/>\n  \
                 <launcher class=\"hudson.slaves.JNLPLauncher\"/>\n  <label>linux</label>\n  <nodeProperties/>\n</slave>\n"
            ),
        )?;
    }
    let users = home.join("users");
    w.dir(&users.join(user_dir))?;
    w.write(
        &users.join("users.xml"),
        &format!(
            "<?xml version='1.1' encoding='UTF-8'?>\n<hudson.model.UserIdMapper>\n  <version>1</version>\n  \
             <idToDirectoryNameMap class=\"concurrent-hash-map\">\n    <entry>\n      <string>{}</string>\n      \
             <string>{user_dir}</string>\n    </entry>\n  </idToDirectoryNameMap>\n</hudson.model.UserIdMapper>\n",
            spec.user
        ),
    )?;
    w.write(
        &users.join(user_dir).join("config.xml"),
        &format!(
            "<?xml version='1.1' encoding='UTF-8'?>\n<user>\n  <version>10</version>\n  <id>{0}</id>\n  \
             <fullName>{0}</fullName>\n  <properties/>\n</user>\n",
            spec.user
        ),
    )?;
    Ok(())
}

/// Plans the folders and jobs of a spec.
fn plan(spec: &HomeSpec) -> Vec<Unit> {
    let top = if spec.folders == 0 {
        spec.jobs
    } else {
        spec.top_level_jobs.min(spec.jobs)
    };
    // Which job indexes get a timer: a seeded partial shuffle.
    let mut order: Vec<usize> = (0..spec.jobs).collect();
    let mut rng = Rng::new(spec.seed);
    let timers = spec.timers.min(spec.jobs);
    for k in 0..timers {
        let j = k + rng.below((spec.jobs - k) as u64) as usize;
        order.swap(k, j);
    }
    let mut timer = vec![false; spec.jobs];
    for &i in &order[..timers] {
        timer[i] = true;
    }
    let job = |index: usize, prefix: &str| JobPlan {
        full: format!("{prefix}job-{index:05}"),
        index,
        timer: timer[index],
    };

    let mut units = Vec::new();
    let in_folders = spec.jobs - top;
    let mut next = 0;
    for f in 0..spec.folders {
        let count = in_folders / spec.folders + usize::from(f < in_folders % spec.folders);
        let name = format!("F{f:03}");
        let nested = spec.nested_every > 0 && f % spec.nested_every == 0;
        let mut folders = vec![name.clone()];
        if nested {
            folders.push(format!("{name}/sub"));
        }
        let mut jobs = Vec::with_capacity(count);
        for k in 0..count {
            let prefix = if nested && k < count / 2 {
                format!("{name}/sub/")
            } else {
                format!("{name}/")
            };
            jobs.push(job(next, &prefix));
            next += 1;
        }
        units.push(Unit { folders, jobs });
    }
    let jobs = (next..spec.jobs).map(|i| job(i, "")).collect();
    units.push(Unit {
        folders: Vec::new(),
        jobs,
    });
    units
}

/// Writes a home as `spec` says into `home`, which must be missing or empty.
pub fn generate(home: &Path, spec: &HomeSpec) -> io::Result<HomeReport> {
    let started = Instant::now();
    if let Ok(mut rd) = fs::read_dir(home) {
        if rd.next().is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} is not empty; give a new or empty directory",
                    home.display()
                ),
            ));
        }
    }
    let w = Counter {
        files: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
    };
    w.dir(&home.join("jobs"))?;
    let user_dir = format!(
        "{}_{}",
        spec.user
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>(),
        Rng::new(spec.seed).next() % 10_000_000_000
    );
    write_root(home, spec, &user_dir, &w)?;

    let units = plan(spec);
    let next = AtomicUsize::new(0);
    let first_error: std::sync::Mutex<Option<io::Error>> = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..spec.threads.max(1) {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(unit) = units.get(k) else { break };
                let result = (|| {
                    for f in &unit.folders {
                        let dir = item_dir(home, f);
                        w.dir(&dir.join("jobs"))?;
                        w.write(&dir.join("config.xml"), &folder_xml(f))?;
                    }
                    for j in &unit.jobs {
                        write_job(home, spec, j, &w)?;
                    }
                    Ok::<(), io::Error>(())
                })();
                if let Err(e) = result {
                    let mut slot = first_error.lock().unwrap_or_else(|e| e.into_inner());
                    slot.get_or_insert(e);
                    break;
                }
            });
        }
    });
    if let Some(e) = first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }

    let mut jobs: Vec<String> = units
        .iter()
        .flat_map(|u| u.jobs.iter().map(|j| j.full.clone()))
        .collect();
    jobs.sort();
    let mut folders: Vec<String> = units.iter().flat_map(|u| u.folders.clone()).collect();
    folders.sort();
    let mut timer_jobs: Vec<String> = units
        .iter()
        .flat_map(|u| u.jobs.iter().filter(|j| j.timer).map(|j| j.full.clone()))
        .collect();
    timer_jobs.sort();
    Ok(HomeReport {
        items: jobs.len() + folders.len(),
        jobs,
        folders,
        timer_jobs,
        user_dir,
        files: w.files.load(Ordering::Relaxed),
        bytes: w.bytes.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_counts_and_determinism() {
        let spec = HomeSpec {
            jobs: 103,
            folders: 5,
            top_level_jobs: 3,
            nested_every: 2,
            builds: 2,
            timers: 4,
            timer_every: Duration::from_millis(1500),
            ..HomeSpec::default()
        };
        let a = tempfile::tempdir().unwrap();
        let r = generate(a.path(), &spec).unwrap();
        assert_eq!(r.jobs.len(), 103);
        // 5 folders, nested in F000, F002, F004.
        assert_eq!(r.folders.len(), 8);
        assert_eq!(r.items, 111);
        assert_eq!(r.timer_jobs.len(), 4);
        assert!(r.jobs.contains(&"F000/sub/job-00000".to_string()));
        assert!(r.jobs.contains(&"job-00102".to_string()));
        let t = &r.timer_jobs[0];
        let cfg = fs::read_to_string(item_dir(a.path(), t).join("config.xml")).unwrap();
        assert!(cfg.contains("<spec>@every 1500ms</spec>"), "{cfg}");
        let j = item_dir(a.path(), "F001/job-00025");
        assert_eq!(
            fs::read_to_string(j.join("nextBuildNumber")).unwrap(),
            "3\n"
        );
        assert!(j.join("builds/2/build.xml").is_file());
        assert!(j.join("builds/2/log").is_file());
        assert!(a
            .path()
            .join("users")
            .join(&r.user_dir)
            .join("config.xml")
            .is_file());
        // 1 job config + nextBuildNumber + 2 × (build.xml + log) per job; 8 folders; 4 root xml,
        // 3 nodes, users.xml and a user config.
        assert_eq!(r.files, 103 * 6 + 8 + 4 + 3 + 2);

        let b = tempfile::tempdir().unwrap();
        let r2 = generate(b.path(), &spec).unwrap();
        assert_eq!(r2.timer_jobs, r.timer_jobs);
        let p = "jobs/F003/jobs/job-00070/builds/1/build.xml";
        assert_eq!(
            fs::read(a.path().join(p)).unwrap(),
            fs::read(b.path().join(p)).unwrap()
        );
        assert!(
            generate(a.path(), &spec).is_err(),
            "refuses a non-empty home"
        );
    }
}
