//! What the stand-in does on its own, beside answering requests: start-up and full reloads (with
//! their writes into the home), per-item reloads, timer triggers, the queue and its saver, and builds.
//!
//! Locking: the state sits behind one `std::sync::Mutex`; it is never held across an `.await` nor
//! during file I/O (that runs on blocking threads, between two short critical sections).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::builds;
use super::items::{self, Group, Item, ReloadOneError};
use super::load::{self, Loader};
use super::queue::{self, Cause};
use super::timers;
use super::{Left, LoadReport, Run, Shared, State, Timer};

/// Wall-clock now, in ms since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

// ---------------------------------------------------------------------------------------------------
// Queue

/// Queues a request for a job, folded into its queued item if it has one. Returns the item id.
pub fn enqueue(st: &mut State, job: &str, cause: Cause, slot: Option<u64>, now: u64) -> u64 {
    if let Some(it) = st.queue.iter_mut().find(|it| it.job == job) {
        it.fold(cause, slot);
        return it.id;
    }
    st.queue_counter += 1;
    let id = st.queue_counter;
    st.queue.push(queue::Item {
        id,
        job: job.to_string(),
        in_queue_since: slot.unwrap_or(now),
        causes: vec![(cause, 1)],
        fire_slots: slot.into_iter().collect(),
    });
    id
}

/// How many left items `/queue/item/N/` remembers (Jenkins keeps them for 5 minutes).
const LEFT_KEPT: usize = 10_000;

/// Remembers a queue item that left the queue (started or cancelled).
pub fn record_left(st: &mut State, id: u64, left: Left) {
    st.left.insert(id, left);
    while st.left.len() > LEFT_KEPT {
        st.left.pop_first();
    }
}

/// Puts loaded queue items in the queue: items of jobs not in memory are dropped, two items of one job
/// are folded together, ids never go down.
pub fn adopt_queue(st: &mut State, counter: u64, loaded: Vec<queue::Item>) -> usize {
    st.queue_counter = st.queue_counter.max(counter);
    let mut adopted = 0;
    for it in loaded {
        let is_job = items::get(&st.items, &items::segments(&it.job)).is_some_and(|i| !i.folder);
        if !is_job {
            eprintln!(
                "jenkins-standin: queue item {} for {} dropped: no such job",
                it.id, it.job
            );
            continue;
        }
        st.queue_counter = st.queue_counter.max(it.id);
        if let Some(existing) = st.queue.iter_mut().find(|x| x.job == it.job) {
            for (cause, n) in it.causes {
                for _ in 0..n {
                    existing.fold(cause.clone(), None);
                }
            }
            for s in it.fire_slots {
                existing.fold_slot(s);
            }
        } else {
            st.queue.push(it);
        }
        adopted += 1;
    }
    adopted
}

/// Why a queued item waits, Jenkins' way: `(why, blocked)`.
pub fn why(st: &State, it: &queue::Item) -> (String, bool) {
    if let Some(n) = st.running_jobs.get(&it.job) {
        return (
            format!("Build #{n} is already in progress (ETA: N/A)"),
            true,
        );
    }
    if st.quieting_down {
        return ("Jenkins is about to shut down".to_string(), false);
    }
    ("Waiting for next available executor".to_string(), false)
}

/// Starts what can start: not while quieting down or loading; one build per job at a time; as many
/// as there are free executors. Returns the indexes in `st.runs` of the builds started (to launch).
pub fn maintain(sh: &Shared, st: &mut State) -> Vec<usize> {
    if st.quieting_down || st.starting || st.reloading || st.reload_failed {
        return Vec::new();
    }
    let busy = st.running + usize::try_from(st.busy_executors).unwrap_or(usize::MAX);
    let mut free = (sh.executors as usize).saturating_sub(busy);
    let mut started = Vec::new();
    let mut k = 0;
    while k < st.queue.len() && free > 0 {
        let job = st.queue[k].job.clone();
        if st.running_jobs.contains_key(&job) {
            k += 1;
            continue;
        }
        let Some(item) =
            items::get_mut(&mut st.items, &items::segments(&job)).filter(|i| !i.folder)
        else {
            let it = st.queue.remove(k);
            eprintln!(
                "jenkins-standin {}: queue item {} dropped: {job} is no longer in memory",
                sh.name, it.id
            );
            record_left(st, it.id, Left { job, number: None });
            continue;
        };
        let number = item.next_build.max(1);
        item.next_build = number + 1;
        item.add_build(number);
        let duration = item.build_duration.unwrap_or(sh.build_duration);
        let it = st.queue.remove(k);
        record_left(
            st,
            it.id,
            Left {
                job: job.clone(),
                number: Some(number),
            },
        );
        st.running_jobs.insert(job.clone(), number);
        st.running += 1;
        st.builds_started += 1;
        st.runs.push(Run {
            job,
            number,
            queue_id: it.id,
            started_ms: now_ms(),
            ended_ms: None,
            fire_slots: it.fire_slots,
            causes: it.causes,
            collided: false,
            result: None,
            duration,
        });
        started.push(st.runs.len() - 1);
        free -= 1;
    }
    started
}

/// Runs [`maintain`] and launches what it started.
pub fn kick(sh: &Arc<Shared>) {
    let started = {
        let mut st = sh.lock();
        let started = maintain(sh, &mut st);
        if !started.is_empty() {
            queue_changed(sh, &mut st);
        }
        started
    };
    launch(sh, started);
}

/// Schedules the queue saver (`Queue.Saver`): `queue.xml` is written one delay after the first change.
pub fn queue_changed(sh: &Arc<Shared>, st: &mut State) {
    let Some(delay) = sh.queue_save_delay else {
        return;
    };
    if st.queue_save_pending {
        return;
    }
    st.queue_save_pending = true;
    let sh = sh.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        let sh2 = sh.clone();
        let _ = tokio::task::spawn_blocking(move || save_queue(&sh2, "the queue saver")).await;
    });
}

/// Writes `queue.xml` from the in-memory queue (`Queue.save()`).
pub fn save_queue(sh: &Shared, why: &str) {
    let text = {
        let mut st = sh.lock();
        st.queue_save_pending = false;
        st.queue_saves += 1;
        let items = &st.items;
        queue::to_xml(st.queue_counter, &st.queue, |job| {
            items::get(items, &items::segments(job))
                .map(|i| i.class.clone())
                .unwrap_or_else(|| items::FREESTYLE_CLASS.to_string())
        })
    };
    let path = sh.home.join("queue.xml");
    match builds::write_atomic(&path, text.as_bytes()) {
        Ok(()) => eprintln!(
            "jenkins-standin {}: {why} wrote {}",
            sh.name,
            path.display()
        ),
        Err(e) => eprintln!(
            "jenkins-standin {}: {why} could not write {}: {e}",
            sh.name,
            path.display()
        ),
    }
}

/// `Queue.load()`: reads `queue.xml` and moves it to `queue.xml.bak`. `None` when there is no file
/// or it cannot be read (then it stays where it is).
pub fn load_queue_file(sh: &Shared) -> Option<(u64, Vec<queue::Item>)> {
    let path = sh.home.join("queue.xml");
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            eprintln!(
                "jenkins-standin {}: cannot read {}: {e}",
                sh.name,
                path.display()
            );
            return None;
        }
    };
    let parsed = match queue::from_xml(&text) {
        Ok(p) => p,
        Err(e) => {
            eprintln!(
                "jenkins-standin {}: failed to load the queue file {}: {e}",
                sh.name,
                path.display()
            );
            return None;
        }
    };
    let bak = sh.home.join("queue.xml.bak");
    let _ = fs::remove_file(&bak);
    if let Err(e) = fs::rename(&path, &bak) {
        eprintln!(
            "jenkins-standin {}: cannot move {} to {}: {e}",
            sh.name,
            path.display(),
            bak.display()
        );
    }
    eprintln!(
        "jenkins-standin {}: loaded {} queue item(s) from queue.xml and moved it to queue.xml.bak",
        sh.name,
        parsed.1.len()
    );
    Some(parsed)
}

// ---------------------------------------------------------------------------------------------------
// Builds

/// Launches the builds [`maintain`] started.
pub fn launch(sh: &Arc<Shared>, runs: Vec<usize>) {
    for idx in runs {
        tokio::spawn(run_build(sh.clone(), idx));
    }
}

fn record(sh: &Shared, r: &Run) -> builds::Record {
    builds::Record {
        number: r.number,
        queue_id: r.queue_id,
        timestamp: r.started_ms,
        causes: r.causes.clone(),
        fire_slots: r.fire_slots.clone(),
        controller: sh.name.clone(),
        result: r.result.clone().map(|res| (res, ms(r.duration))),
    }
}

async fn run_build(sh: Arc<Shared>, idx: usize) {
    let (dir, rec, duration, job) = {
        let st = sh.lock();
        let r = &st.runs[idx];
        (
            items::item_dir(&sh.home, &items::segments(&r.job)),
            record(&sh, r),
            r.duration,
            r.job.clone(),
        )
    };
    eprintln!(
        "jenkins-standin {}: build {job} #{} started (fire slots {:?})",
        sh.name, rec.number, rec.fire_slots
    );
    let (d, r) = (dir.clone(), rec.clone());
    match tokio::task::spawn_blocking(move || builds::write_start(&d, &r)).await {
        Ok(Ok(true)) => {
            let mut st = sh.lock();
            st.runs[idx].collided = true;
            st.collisions += 1;
            eprintln!(
                "jenkins-standin {}: BUILD NUMBER COLLISION: {job} #{n} started with a stale next number; \
                 {}/builds/{n} already existed and was overwritten",
                sh.name,
                dir.display(),
                n = rec.number
            );
        }
        Ok(Ok(false)) => {}
        Ok(Err(e)) => eprintln!(
            "jenkins-standin {}: cannot write the start of {job} #{}: {e}",
            sh.name, rec.number
        ),
        Err(_) => {}
    }
    tokio::time::sleep(duration).await;
    let rec = {
        let mut st = sh.lock();
        st.runs[idx].result = Some("SUCCESS".to_string());
        record(&sh, &st.runs[idx])
    };
    let d = dir.clone();
    let r = rec.clone();
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || builds::write_end(&d, &r)).await {
        eprintln!(
            "jenkins-standin {}: cannot write the end of {job} #{}: {e}",
            sh.name, rec.number
        );
    }
    {
        let mut st = sh.lock();
        st.runs[idx].ended_ms = Some(now_ms());
        st.running = st.running.saturating_sub(1);
        if st.running_jobs.get(&job) == Some(&rec.number) {
            st.running_jobs.remove(&job);
        }
    }
    eprintln!(
        "jenkins-standin {}: build {job} #{} finished: SUCCESS",
        sh.name, rec.number
    );
    kick(&sh);
}

/// After a load, no job's next number may fall back below a build this controller holds in memory:
/// one still running (`LazyBuildMixIn.onLoad` keeps them) or one started since the load began.
fn keep_in_memory_runs(st: &mut State, since_ms: u64) {
    let runs: Vec<(String, u64)> = st
        .runs
        .iter()
        .filter(|r| r.ended_ms.is_none() || r.started_ms >= since_ms)
        .map(|r| (r.job.clone(), r.number))
        .collect();
    for (job, n) in runs {
        if let Some(item) = items::get_mut(&mut st.items, &items::segments(&job)) {
            item.next_build = item.next_build.max(n + 1);
            item.add_build(n);
        }
    }
}

/// Start-up only: builds on disk that have no `<result>` (read from the newest three `build.xml` of each
/// job, standing for Pipeline's `FlowExecutionList`) are resumed: a line is appended to their log.
/// Returns (resumed builds of another controller, resumed builds of this one).
fn resume_builds(sh: &Shared, tree: &Group) -> (u64, u64) {
    let mut jobs: Vec<(String, Vec<u64>)> = Vec::new();
    items::walk(tree, &mut |full, item| {
        if !item.folder && !item.builds.is_empty() {
            let newest = item.builds.iter().rev().take(3).copied().collect();
            jobs.push((full.to_string(), newest));
        }
    });
    let (mut foreign, mut own) = (0, 0);
    let stamp = humantime::format_rfc3339_seconds(SystemTime::now());
    for (job, numbers) in jobs {
        let dir = items::item_dir(&sh.home, &items::segments(&job));
        for n in numbers {
            let Some(facts) = builds::read_facts(&dir, n) else {
                continue;
            };
            if facts.result.is_some() {
                continue;
            }
            let by = facts.controller.unwrap_or_default();
            let mine = by == sh.name;
            let line = format!(
                "Resuming build at {stamp} after Jenkins restart (controller {} resumed a build of {})\n",
                sh.name,
                if by.is_empty() { "an unknown controller" } else { &by }
            );
            if let Err(e) = builds::append(&builds::build_dir(&dir, n).join("log"), &line) {
                eprintln!("jenkins-standin {}: cannot resume {job} #{n}: {e}", sh.name);
                continue;
            }
            if mine {
                own += 1;
            } else {
                foreign += 1;
                eprintln!(
                    "jenkins-standin {}: RESUMED A BUILD OF ANOTHER CONTROLLER: {job} #{n} (run by {by:?}); appended to its log",
                    sh.name
                );
            }
        }
    }
    (foreign, own)
}

// ---------------------------------------------------------------------------------------------------
// Timers

/// Re-registers the timers of every job in memory. Jobs at or under `under` (all when `None`) restart:
/// their next fire is the next slot after now; the others keep their last fired slot.
pub fn restart_timers(st: &mut State, under: Option<&str>, now: u64) {
    let mut fresh = BTreeMap::new();
    let old = &st.timers;
    items::walk(&st.items, &mut |full, item| {
        let (false, Some(spec)) = (item.folder, item.timer.as_deref()) else {
            return;
        };
        let restart = match under {
            None => true,
            Some(u) => full == u || full.strip_prefix(u).is_some_and(|r| r.starts_with('/')),
        };
        match timers::parse_spec(spec) {
            Ok(period) => {
                let period_ms = ms(period).max(1);
                let last_slot = match old.get(full) {
                    Some(t) if !restart && t.period_ms == period_ms => t.last_slot,
                    _ => timers::slot_at(now, period_ms),
                };
                fresh.insert(
                    full.to_string(),
                    Timer {
                        period_ms,
                        last_slot,
                    },
                );
            }
            Err(e) if restart => {
                eprintln!("jenkins-standin: job {full}: timer trigger ignored: {e}")
            }
            Err(_) => {}
        }
    });
    st.timers = fresh;
}

/// Fires every timer whose slot has come (at most 10 missed slots per timer, the older ones are
/// skipped). Returns how many fires were queued.
fn fire_due(st: &mut State, now: u64) -> usize {
    let mut fires = Vec::new();
    for (job, t) in st.timers.iter_mut() {
        let slot = timers::slot_at(now, t.period_ms);
        if slot <= t.last_slot {
            continue;
        }
        let first = (t.last_slot + t.period_ms).max(slot.saturating_sub(9 * t.period_ms));
        let mut s = first;
        while s <= slot {
            fires.push((job.clone(), s));
            s += t.period_ms;
        }
        t.last_slot = slot;
    }
    for (job, slot) in &fires {
        enqueue(st, job, Cause::Timer, Some(*slot), now);
        st.timer_fires += 1;
        st.fires.push_back((Arc::from(job.as_str()), *slot));
        if st.fires.len() > super::FIRES_KEPT {
            st.fires.pop_front();
        }
    }
    fires.len()
}

/// The cron thread: every 50 ms, fires what is due (not while starting, reloading or broken) and
/// starts what can start.
pub async fn tick_loop(sh: Arc<Shared>) {
    let mut every = tokio::time::interval(Duration::from_millis(50));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        every.tick().await;
        let fired = {
            let mut st = sh.lock();
            if st.starting || st.reloading || st.reload_failed || st.timers.is_empty() {
                0
            } else {
                let n = fire_due(&mut st, now_ms());
                if n > 0 {
                    queue_changed(&sh, &mut st);
                }
                n
            }
        };
        if fired > 0 {
            kick(&sh);
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Loads

fn report(kind: &str, loader: &Loader, base: Duration, started: Instant) -> LoadReport {
    LoadReport {
        kind: kind.to_string(),
        items: loader.items,
        build_entries: loader.build_entries,
        modelled_ms: ms(base + loader.spent()),
        elapsed_ms: ms(started.elapsed()),
    }
}

/// Start-up: loads the home (root files, nodes, users, items) with the modelled cost, then does what a
/// starting Jenkins writes: rewrites `config.xml`, loads `queue.xml` (moving it to `.bak`), resumes
/// running builds found on disk. Leaves `starting` set: the caller clears it after `--start-delay`.
pub async fn startup(sh: &Arc<Shared>) {
    let started = Instant::now();
    let sh2 = sh.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        let home = &sh2.home;
        let globals = load::root_xml_fingerprints(home);
        let nodes = load::load_nodes(home);
        let (user_dirs, users) = load::load_users(home);
        let mut loader = Loader::new(&sh2.model, started, sh2.model.base);
        let tree = items::load_group_fresh(&home.join("jobs"), sh2.model.threads, &mut loader);
        loader.wait();
        let queue = if sh2.writes.startup_queue {
            load_queue_file(&sh2)
        } else {
            None
        };
        let resumed = if sh2.writes.resume {
            resume_builds(&sh2, &tree)
        } else {
            (0, 0)
        };
        let mut globals = globals;
        if sh2.writes.startup_config {
            if let Some(fp) = rewrite_root_config(&sh2) {
                globals.insert("config.xml".to_string(), fp);
            }
        }
        (
            globals, nodes, user_dirs, users, tree, loader, queue, resumed,
        )
    })
    .await;
    let Ok((globals, nodes, user_dirs, users, tree, loader, queue, resumed)) = loaded else {
        eprintln!("jenkins-standin {}: the start-up load crashed", sh.name);
        std::process::exit(1);
    };
    let mut st = sh.lock();
    st.items = tree;
    st.globals_loaded = globals;
    st.nodes = nodes;
    st.users = users;
    st.user_dirs = user_dirs;
    st.resumed_foreign_builds = resumed.0;
    st.resumed_own_builds = resumed.1;
    if let Some((counter, loaded)) = queue {
        adopt_queue(&mut st, counter, loaded);
    }
    let r = report("startup", &loader, sh.model.base, started);
    eprintln!(
        "jenkins-standin {}: start-up load done after {} ms ({} items, {} build entries, {} ms modelled)",
        sh.name, r.elapsed_ms, r.items, r.build_entries, r.modelled_ms
    );
    st.last_load = Some(r);
}

/// Rewrites the root `config.xml` with its own content (a new file and mtime, as `Jenkins.save()` at
/// start-up), or writes a minimal one when there is none. Returns the fingerprint written.
fn rewrite_root_config(sh: &Shared) -> Option<String> {
    let path = sh.home.join("config.xml");
    let content = fs::read(&path).unwrap_or_else(|_| {
        format!(
            "<?xml version='1.1' encoding='UTF-8'?>\n<hudson>\n  <version>{}</version>\n  \
             <numExecutors>{}</numExecutors>\n  <mode>NORMAL</mode>\n  <useSecurity>true</useSecurity>\n</hudson>\n",
            super::JENKINS_VERSION,
            sh.executors
        )
        .into_bytes()
    });
    match builds::write_atomic(&path, &content) {
        Ok(()) => Some(load::fingerprint(&content)),
        Err(e) => {
            eprintln!(
                "jenkins-standin {}: cannot rewrite {}: {e}",
                sh.name,
                path.display()
            );
            None
        }
    }
}

/// A full `/reload`, started by the handler (which set `reloading`).
pub async fn full_reload(sh: Arc<Shared>, started: Instant, fail: bool) {
    let since = now_ms();
    if sh.writes.reload_queue {
        let sh2 = sh.clone();
        let _ = tokio::task::spawn_blocking(move || save_queue(&sh2, "the full reload")).await;
    }
    let old = sh.lock().items.clone();
    let sh2 = sh.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        let home = &sh2.home;
        let config = load::file_fingerprint(&home.join("config.xml"));
        let nodes = load::load_nodes(home);
        let mut loader = Loader::new(&sh2.model, started, sh2.model.base);
        let tree = items::reload_top(&old, &home.join("jobs"), sh2.model.threads, &mut loader);
        let (user_dirs, users) = load::load_users(home);
        loader.wait();
        (config, nodes, tree, user_dirs, users, loader)
    })
    .await;

    if fail {
        let mut st = sh.lock();
        st.reloading = false;
        st.reload_failed = true;
        eprintln!(
            "jenkins-standin {}: full reload FAILED after {:?}; every URL answers 503 until restart",
            sh.name,
            started.elapsed()
        );
        return;
    }
    let (config, nodes, tree, user_dirs, users, loader) = match loaded {
        Ok(x) => x,
        Err(e) => {
            let mut st = sh.lock();
            st.reloading = false;
            st.reload_failed = true;
            eprintln!("jenkins-standin {}: full reload crashed: {e}", sh.name);
            return;
        }
    };
    {
        let mut st = sh.lock();
        st.items = tree;
        keep_in_memory_runs(&mut st, since);
        match config {
            Some(fp) => st.globals_loaded.insert("config.xml".to_string(), fp),
            None => st.globals_loaded.remove("config.xml"),
        };
        st.nodes = nodes;
        st.users = users;
        st.user_dirs = user_dirs;
    }
    // Queue.load(): the saved queue (or whatever another controller wrote there since) comes back.
    let from_file = if sh.writes.reload_queue {
        let sh2 = sh.clone();
        tokio::task::spawn_blocking(move || load_queue_file(&sh2))
            .await
            .ok()
            .flatten()
    } else {
        None
    };
    {
        let mut st = sh.lock();
        let (counter, queued) = match from_file {
            Some(x) => x,
            None => (st.queue_counter, std::mem::take(&mut st.queue)),
        };
        st.queue.clear();
        adopt_queue(&mut st, counter, queued);
        restart_timers(&mut st, None, now_ms());
        st.reloading = false;
        st.full_reloads_completed += 1;
        let r = report("full-reload", &loader, sh.model.base, started);
        eprintln!(
            "jenkins-standin {}: full reload done after {} ms ({} items loaded, {} build entries, {} ms modelled; {} in memory)",
            sh.name,
            r.elapsed_ms,
            r.items,
            r.build_entries,
            r.modelled_ms,
            items::count(&st.items)
        );
        st.last_load = Some(r);
    }
    kick(&sh);
}

/// `POST /job/.../reload`: re-reads the item (and refreshes its builds) with the modelled cost of that
/// one item, blocking the caller for that time; restarts its timer.
pub async fn reload_item(
    sh: &Arc<Shared>,
    names: &[String],
    item: Item,
) -> Result<bool, ReloadOneError> {
    let started = Instant::now();
    let since = now_ms();
    let dir = items::item_dir(&sh.home, names);
    let model = sh.model;
    let result = tokio::task::spawn_blocking(move || {
        let mut loader = Loader::new(&model, started, Duration::ZERO);
        let r = items::reload_one(&item, &dir, &mut loader);
        loader.wait();
        r
    })
    .await
    .map_err(|e| ReloadOneError::Bad(sh.home.clone(), e.to_string()))?;
    let new = result?;
    let full = names.join("/");
    let mut st = sh.lock();
    let Some(live) = items::get_mut(&mut st.items, names) else {
        return Ok(false);
    };
    *live = new;
    keep_in_memory_runs(&mut st, since);
    restart_timers(&mut st, Some(&full), now_ms());
    st.item_reloads += 1;
    Ok(true)
}

// ---------------------------------------------------------------------------------------------------
// Other writes

/// `ApiTokenStats`: every request authenticated by an API token saves `users/<dir>/apiTokenStats.xml`.
pub fn write_token_stats(home: &Path, dir_name: &str, count: u64) -> std::io::Result<()> {
    let dir = home.join("users").join(dir_name);
    fs::create_dir_all(&dir)?;
    let when = humantime::format_rfc3339_millis(SystemTime::now());
    builds::write_atomic(
        &dir.join("apiTokenStats.xml"),
        format!(
            "<?xml version='1.1' encoding='UTF-8'?>\n<jenkins.security.apitoken.ApiTokenStats>\n  <tokenStats>\n    \
             <jenkins.security.apitoken.ApiTokenStats_-SingleTokenStats>\n      <tokenUuid>standin-token</tokenUuid>\n      \
             <useCounter>{count}</useCounter>\n      <lastUseDate>{when}</lastUseDate>\n    \
             </jenkins.security.apitoken.ApiTokenStats_-SingleTokenStats>\n  </tokenStats>\n\
             </jenkins.security.apitoken.ApiTokenStats>\n"
        )
        .as_bytes(),
    )
}

/// On SIGTERM or SIGINT: a clean shutdown writes `queue.xml`, then the process exits.
pub async fn shutdown_on_signal(sh: Arc<Shared>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("jenkins-standin: cannot install the signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    if sh.writes.shutdown_queue {
        let sh2 = sh.clone();
        let _ = tokio::task::spawn_blocking(move || save_queue(&sh2, "the clean shutdown")).await;
    }
    eprintln!("jenkins-standin {}: shut down cleanly", sh.name);
    std::process::exit(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_each_slot_once_and_fold_into_one_item() {
        let mut st = State::default();
        st.items.insert(
            "T".into(),
            Item {
                class: items::FREESTYLE_CLASS.into(),
                folder: false,
                description: String::new(),
                children: Group::new(),
                timer: Some("@every 1s".into()),
                build_duration: None,
                next_build: 1,
                builds: Vec::new(),
            },
        );
        restart_timers(&mut st, None, 10_500);
        assert_eq!(st.timers["T"].last_slot, 10_000);
        assert_eq!(fire_due(&mut st, 10_900), 0);
        assert_eq!(fire_due(&mut st, 11_020), 1);
        assert_eq!(fire_due(&mut st, 11_070), 0);
        assert_eq!(fire_due(&mut st, 13_000), 2);
        assert_eq!(st.queue.len(), 1);
        let it = &st.queue[0];
        assert_eq!(it.in_queue_since, 11_000);
        assert_eq!(it.fire_slots, vec![11_000, 12_000, 13_000]);
        assert_eq!(it.causes, vec![(Cause::Timer, 3)]);
        // A restart of the job's trigger skips the current slot.
        restart_timers(&mut st, Some("T"), 13_500);
        assert_eq!(fire_due(&mut st, 13_900), 0);
    }
}
