//! `jenkins-standin`: a dev-only stand-in for one Jenkins master, for testing the jenkins-ha sidecar.
//!
//! It serves the part of Jenkins' HTTP surface the sidecar touches, with real Jenkins semantics (see
//! `shared/design/jenkins.md`): `X-Jenkins` / `X-Jenkins-Session` headers (the session changes on every
//! start; neither header comes on the loading page, on redirects or on static resources),
//! 403-for-anonymous vs 401-for-a-wrong-token, the API-token exemption from CSRF crumbs, `POST /reload`
//! answering 302 at once and then 503 on every URL while it reloads (503 forever after a failed reload),
//! the folder caveat of full reloads, per-item reloads that cannot discover new items, in-memory
//! quiet-down, timer triggers, a build queue, executors and builds that write real build records into
//! the shared home, and the other writes an idle Jenkins makes there.
//!
//! # Command line
//!
//! ```text
//! jenkins-standin --listen 127.0.0.1:PORT --home DIR --name NAME
//!    [--agent-listen 127.0.0.1:PORT]   # TCP "agent port": on accept writes "jenkins-standin NAME\n", closes
//!    [--user USER --token-file FILE]   # security on (token = file content, trimmed); else anonymous may do all
//!    [--reload-base DURATION]          # default 300ms: fixed part of a start-up or full-reload window
//!    [--load-per-item DURATION]        # default 4ms (alias --reload-per-item): modelled cost of one item
//!    [--load-per-build-entry DURATION] # default 20us: modelled cost of one entry listed in a job's builds/
//!    [--load-threads N]                # default 1: threads loading top-level items (see the model below)
//!    [--start-delay DURATION]          # default 0: 503 for this long after the start-up load
//!    [--start-quiet]                   # start in quiet-down (an init.groovy.d script calling doQuietDown)
//!    [--executors N]                   # default 2
//!    [--build-duration DURATION]       # default 1s; a job overrides it with <standinBuildDuration>
//!    [--last-build-load DURATION]      # default 1ms: cost of loading one job's last build for an API answer
//!    [--queue-save-delay DURATION|-1]  # default 60s; -1 = -Dhudson.model.Queue.Saver.DELAY_SECONDS=-1
//!    [--no-token-stats]                # = usageStatisticsEnabled=false: no users/*/apiTokenStats.xml
//!    [--no-write WHAT[,WHAT...]]       # dev-only: turn off writes Jenkins has no switch for (below)
//! ```
//!
//! The port opens at once and answers 503 ("getting ready") while the home loads. When the start-up
//! load is done the stand-in prints one line, `jenkins-standin NAME listening on ADDR`, to stdout (ADDR is
//! the bound address, so `--listen 127.0.0.1:0` works), keeps answering 503 for `--start-delay` more,
//! then serves until killed. SIGTERM / SIGINT is a clean shutdown (it writes `queue.xml`). Logs go to
//! stderr; build-number collisions and resumed foreign builds are logged in capitals.
//!
//! # Load-time model
//!
//! A load does its real work item by item, in name order: it parses the item's `config.xml`, lists the
//! job's `builds/` once and reads its `nextBuildNumber`. After each item it sleeps until that item's
//! modelled deadline, `start + reload-base + Σ (load-per-item + load-per-build-entry × entries listed)`
//! over the items done so far. So the window grows with the number of items and of build entries, and
//! an edit reaches the load if it lands before the loader gets to that item.
//! - Start-up and a full reload cost the whole tree (with `reload-base`). With the defaults a
//!   10,000-job home with 5 builds each takes about 0.3 + 10,000 × (4 ms + 5 × 20 µs) ≈ 41 s.
//! - A per-item reload (`POST /job/A/job/B/reload`) costs that one item (no base; for a folder, also
//!   each child it refreshes) and blocks the request for that time, as Jenkins does.
//! - Jenkins loads top-level items on 2 × CPUs threads and folder children one by one (JENKINS-72994).
//!   `--load-threads N` models that: top-level items are shared among N threads, each with its own
//!   schedule, and the window is the longest thread's. The default, 1, models the total as one
//!   sequence: the per-item cost is then an effective cost (measured window / items), which is what a
//!   home whose jobs sit in folders shows anyway.
//! - `state.model` reports the configured model, `state.lastLoad` what the last load cost.
//!
//! # Builds, build numbers and the queue
//!
//! - Timer triggers: a job's `<triggers><hudson.triggers.TimerTrigger><spec>` may hold
//!   `@every <humantime duration>` (a stand-in extension; cron specs are not understood and are
//!   ignored with a log line). It fires at the wall-clock instants that are multiples of the period
//!   since the Unix epoch, so two controllers fire on one schedule. Each fire has an identity, its slot
//!   (job full name, instant in ms). Triggers run on every controller with the job loaded, quiet or not,
//!   but not during a start-up or full reload (missed slots are not caught up: the triggers restart at
//!   the end of the load). A per-item reload restarts that item's trigger.
//! - The queue: a fire, or `POST /job/.../build` (201, `Location: <root>queue/item/<id>/`; no quiet
//!   period), queues an item for the job. Requests coalesce per job: while the job has a queued item, a
//!   new request is folded into it (it keeps its id and `inQueueSince`, the first fire's slot for a
//!   timer, and remembers every fire slot and cause). Quiet-down blocks only the start of builds
//!   (`why` = "Jenkins is about to shut down"); `cancelQuietDown` starts every queued item at once, as
//!   far as there are free executors, and the rest as executors free up. A job runs one build at a time
//!   (an item waits, blocked, while its job builds). Nothing starts while loading.
//! - A build takes the job's in-memory next number N, sets it to N+1, writes `nextBuildNumber` (N+1) at
//!   once, creates `builds/N/` with a `build.xml` (`<number>`, `<timestamp>`, the causes, `<queueId>`,
//!   `<standinController>`, `<standinFireSlots>`; `<result>` and `<duration>` once it ends) and a `log`.
//!   If `builds/N` already exists, the number was stale: a COLLISION, logged and counted, and the record
//!   is overwritten as Jenkins would. A build lasts `--build-duration` or the job's
//!   `<standinBuildDuration>`; it always ends SUCCESS.
//! - Loading a job (start-up, full reload, per-item reload, or `onLoad` of a folder child kept by a full
//!   reload) sets its next number to max(`nextBuildNumber`, highest `builds/N` + 1) and keeps in-memory
//!   runs that are still building. A missing `nextBuildNumber` keeps the in-memory number (Jenkins would
//!   also write the file; the stand-in does not).
//! - `GET /api/json` (and the dashboard, the job and queue APIs) without a `?tree=` that leaves the
//!   color out loads each listed job's last build (`jobs[].color`): `--last-build-load` per job, a real
//!   read of its `build.xml`, counted in `lastBuildLoads`. So does any `lastBuild` field of the job API.
//!
//! # What a reload leaves alone, and what an idle controller writes
//!
//! A full reload re-reads the root `config.xml`, `nodes/` and `users/`, loads top-level items fresh and
//! keeps folder children (folder caveat). It does not re-read `credentials.xml` nor any other root
//! `*.xml`: those are read once, at start-up (`state.globalsLoaded` / `state.globalsStale`).
//! Quiet-down survives a reload and is lost on restart.
//!
//! Writes into the home, each real, each on by default like Jenkins, with its switch:
//!
//! | when | write | switch |
//! |---|---|---|
//! | start-up | rewrites root `config.xml` (same content, new file) | `--no-write startup-config` (dev-only) |
//! | start-up | loads `queue.xml` (adopting its items) and moves it to `queue.xml.bak` | `--no-write startup-queue` (dev-only) |
//! | start-up | resumes builds without `<result>` found among each job's newest 3 builds: appends to their `log`; another controller's count in `resumedForeignBuilds` | `--no-write resume` (dev-only; Jenkins has none) |
//! | full reload | saves `queue.xml`, loads it back after the items and moves it to `queue.xml.bak` | `--no-write reload-queue` (dev-only) |
//! | clean shutdown | saves `queue.xml` | `--no-write shutdown-queue` (dev-only) |
//! | a delay after a queue change | saves `queue.xml` | `--queue-save-delay -1` (`Queue.Saver.DELAY_SECONDS=-1`) |
//! | each API-token request | `users/<dir>/apiTokenStats.xml` (dir from `users/users.xml`, else the user id) | `--no-token-stats` (`usageStatisticsEnabled=false`) |
//! | each build | `nextBuildNumber`, `builds/N/{build.xml,log}` | quiet-down |
//!
//! Files are written the way `AtomicFileWriter` does (a temporary `atomic*tmp` file, then a rename).
//!
//! # Endpoints
//!
//! `/`, `/api/json` (`?tree=` supported everywhere JSON is served), `/computer/api/json`,
//! `/queue/api/json`, `/queue/item/ID/api/json`, `POST /queue/cancelItem?id=N` (204; 404 for an unknown
//! id), `/login`, `/whoAmI[/api/json]`, `POST /reload`, `POST /quietDown[?block=true&timeout=MS]`,
//! `POST /cancelQuietDown`, `/job/A[/job/B...]` with `/api/json`, `POST .../reload`, `POST .../build`.
//! `/robots.txt`, `/favicon.ico` and `/static/<hash>/...` answer 200 even while loading.
//!
//! # Control / inspection API (dev-only)
//!
//! Everything under `/standin/` is unauthenticated, is always served (also while every other URL answers
//! 503), is not delayed and is not counted in `requests`.
//!
//! - `GET /standin/state[?brief=1]` → JSON:
//!   `{"name", "session", "quietingDown", "reloading"` (a full reload runs), `"starting"` (the start-up
//!   load or start delay runs), `"loading"` (either), `"reloadFailed", "fullReloads"` (started),
//!   `"fullReloadsCompleted"` (ended successfully), `"itemReloads"` (successful per-item reloads),
//!   `"quietDownCalls", "cancelQuietDownCalls"` (accepted POSTs), `"requests"` (all non-`/standin/`
//!   requests received, whatever their answer), `"busyExecutors"` (running builds + `/standin/busy`),
//!   `"failReloads", "delayMs", "flap", "itemCount", "buildsStarted", "buildsRunning", "collisions",
//!   "queueLength", "timerFires", "queueSaves", "lastBuildLoads", "tokenRequests",
//!   "resumedForeignBuilds", "resumedOwnBuilds", "nodes", "users",
//!   "globalsLoaded": {"config.xml": "fnv1a64:…", "credentials.xml": "fnv1a64:…", …},
//!   "globalsStale": ["credentials.xml", …]` (root xml files whose disk content differs from what was
//!   loaded, new ones, gone ones; until the start-up load ends nothing is loaded, so all are listed), `"model": {"reloadBaseMs", "loadPerItemUs", "loadPerBuildEntryUs",
//!   "loadThreads", "startDelayMs", "executors", "buildDurationMs", "lastBuildLoadUs",
//!   "queueSaveDelayMs"` (null when off)`, "tokenStats", "noWrite": […]}`,
//!   `"lastLoad": {"kind": "startup"|"full-reload", "items", "buildEntries", "modelledMs", "elapsedMs"}`
//!   (null before the first load ends), and unless `brief=1`,
//!   `"items": {"A": "desc", "F": "", "F/B": "desc"}}` (the in-memory tree: full name → description;
//!   empty until the start-up load ends, since the tree is applied at the end of a load).
//! - `GET /standin/builds` → every build this process started, in start order:
//!   `[{"job": "F/B", "number", "queueId", "startedMs", "endedMs"` (null while running)`,
//!   "result"` (null while running)`, "fireSlots": [ms, …], "causes": ["Started by timer", …],
//!   "collided": bool}]`.
//! - `GET /standin/next-numbers[?job=F/B]` → in-memory next build numbers: `{"F/B": 7, …}` (every job, or
//!   the one asked for; 404 for an unknown job).
//! - `GET /standin/fires` → every timer fire of this process (the newest 500,000), in order:
//!   `[{"job", "slot"}]` (`slot`: the fire's instant, ms since the epoch; also its
//!   `inQueueSince` and an entry of a build's `fireSlots`).
//! - `GET /standin/queue` → `[{"id", "job", "inQueueSince", "fireSlots": […], "causes":
//!   [{"shortDescription", "count"}], "why", "blocked"}]`.
//! - `POST /standin/fail-reloads?on=true|false` → full reloads started from now on end in failure.
//! - `POST /standin/delay?ms=N` → every non-`/standin/` response is delayed by N ms (a slow Jenkins).
//! - `POST /standin/busy?n=N` → N executors busy with other work (reported, and not free for builds).
//! - `POST /standin/flap?on=true|false` → while on, every other `GET /login` answers 503, like a
//!   Jenkins going up and down every health check.
//!
//! Each POST answers 200 with the new value as JSON; a missing or bad parameter gives 400.

// The state document is one large `json!` literal.
#![recursion_limit = "256"]

#[path = "standin/builds.rs"]
mod builds;
#[path = "standin/engine.rs"]
mod engine;
#[path = "standin/items.rs"]
mod items;
#[path = "standin/load.rs"]
mod load;
#[path = "standin/queue.rs"]
mod queue;
#[path = "standin/timers.rs"]
mod timers;
#[path = "standin/tree.rs"]
mod tree;
#[path = "standin/xml.rs"]
mod xml;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use clap::Parser;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpListener;

use items::Group;
use queue::Cause;
use tree::Tree;

/// The Jenkins version the stand-in claims to be.
const JENKINS_VERSION: &str = "2.462.3";

/// How many timer fires `/standin/fires` keeps.
pub const FIRES_KEPT: usize = 500_000;
const JSON: &str = "application/json;charset=utf-8";
const HTML: &str = "text/html;charset=utf-8";

/// The writes `--no-write` can turn off.
const WRITES: [&str; 5] = [
    "startup-config",
    "startup-queue",
    "resume",
    "reload-queue",
    "shutdown-queue",
];

#[derive(Parser, Debug)]
#[command(
    name = "jenkins-standin",
    about = "Dev-only stand-in for a Jenkins master (HTTP API subset with real Jenkins semantics)"
)]
struct Cli {
    /// Address for the HTTP server, e.g. 127.0.0.1:8080 (port 0 picks a free port).
    #[arg(long)]
    listen: SocketAddr,
    /// The JENKINS_HOME; items are read from HOME/jobs.
    #[arg(long)]
    home: PathBuf,
    /// Name of this node, shown in pages, in the X-Standin-Node header and in build records.
    #[arg(long)]
    name: String,
    /// Address of the TCP "agent port": writes "jenkins-standin NAME\n" to each connection and closes it.
    #[arg(long)]
    agent_listen: Option<SocketAddr>,
    /// User allowed in with the API token; turns security on.
    #[arg(long, requires = "token_file")]
    user: Option<String>,
    /// File holding the user's API token (trimmed).
    #[arg(long, requires = "user")]
    token_file: Option<PathBuf>,
    /// Fixed part of a start-up or full reload window.
    #[arg(long, default_value = "300ms", value_parser = parse_duration)]
    reload_base: Duration,
    /// Modelled load cost of one item.
    #[arg(long = "load-per-item", alias = "reload-per-item", default_value = "4ms", value_parser = parse_duration)]
    load_per_item: Duration,
    /// Modelled load cost of one entry listed in a job's builds/ directory.
    #[arg(long, default_value = "20us", value_parser = parse_duration)]
    load_per_build_entry: Duration,
    /// Threads that load top-level items in parallel (Jenkins: 2 x CPUs).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    load_threads: u16,
    /// Answer 503 "getting ready" for this long after the start-up load.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    start_delay: Duration,
    /// Start in quiet-down, as an init.groovy.d script calling doQuietDown would.
    #[arg(long)]
    start_quiet: bool,
    /// Number of executors.
    #[arg(long, default_value_t = 2)]
    executors: u32,
    /// How long a build runs, unless its job sets <standinBuildDuration>.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    build_duration: Duration,
    /// Cost of loading one job's last build for an API answer (jobs[].color, lastBuild).
    #[arg(long, default_value = "1ms", value_parser = parse_duration)]
    last_build_load: Duration,
    /// Delay of the queue saver after a queue change; -1 turns it off.
    #[arg(long, default_value = "60s", allow_hyphen_values = true, value_parser = parse_save_delay)]
    queue_save_delay: SaveDelay,
    /// Do not write users/*/apiTokenStats.xml (usageStatisticsEnabled=false).
    #[arg(long)]
    no_token_stats: bool,
    /// Turn off writes that Jenkins has no switch for (dev-only).
    #[arg(long, value_delimiter = ',', value_parser = WRITES)]
    no_write: Vec<String>,
}

/// `--queue-save-delay`: `None` is off.
#[derive(Debug, Clone, Copy)]
struct SaveDelay(Option<Duration>);

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| e.to_string())
}

fn parse_save_delay(s: &str) -> Result<SaveDelay, String> {
    if s.trim() == "-1" {
        Ok(SaveDelay(None))
    } else {
        parse_duration(s).map(|d| SaveDelay(Some(d)))
    }
}

/// Which writes into the home are on.
#[derive(Debug, Clone, Copy)]
struct Writes {
    startup_config: bool,
    startup_queue: bool,
    resume: bool,
    reload_queue: bool,
    shutdown_queue: bool,
}

/// Fixed facts of this process.
struct Shared {
    name: String,
    home: PathBuf,
    listen: SocketAddr,
    /// `Some((user, token))` when security is on.
    credentials: Option<(String, String)>,
    model: load::Model,
    start_delay: Duration,
    executors: u32,
    build_duration: Duration,
    last_build_load: Duration,
    queue_save_delay: Option<Duration>,
    token_stats: bool,
    writes: Writes,
    no_write: Vec<String>,
    session: String,
    /// Header values added to every response but the loading page, redirects and static resources.
    jenkins_headers: Vec<(HeaderName, HeaderValue)>,
    node_header: HeaderValue,
    state: Mutex<State>,
}

/// A build this process started.
#[derive(Debug, Clone)]
struct Run {
    job: String,
    number: u64,
    queue_id: u64,
    started_ms: u64,
    ended_ms: Option<u64>,
    fire_slots: Vec<u64>,
    causes: Vec<(Cause, u32)>,
    collided: bool,
    result: Option<String>,
    duration: Duration,
}

/// A queue item that left the queue: started as build `number`, or cancelled (`None`).
#[derive(Debug, Clone)]
struct Left {
    job: String,
    number: Option<u64>,
}

/// One job's timer trigger.
#[derive(Debug, Clone)]
struct Timer {
    period_ms: u64,
    /// The last slot fired (or the slot current when the trigger started).
    last_slot: u64,
}

/// What a load cost.
#[derive(Debug, Clone)]
struct LoadReport {
    kind: String,
    items: usize,
    build_entries: usize,
    modelled_ms: u64,
    elapsed_ms: u64,
}

/// Mutable state: the item tree, the queue, the builds and the counters of the control API.
#[derive(Default)]
struct State {
    items: Group,
    quieting_down: bool,
    starting: bool,
    reloading: bool,
    reload_failed: bool,
    fail_reloads: bool,
    full_reloads: u64,
    full_reloads_completed: u64,
    item_reloads: u64,
    quiet_down_calls: u64,
    cancel_quiet_down_calls: u64,
    requests: u64,
    /// Executors busy with other work (`/standin/busy`).
    busy_executors: u64,
    delay_ms: u64,
    /// Flapping: every other `GET /login` answers 503, like a Jenkins going up and down.
    flap: bool,
    flap_count: u64,
    queue: Vec<queue::Item>,
    queue_counter: u64,
    left: BTreeMap<u64, Left>,
    runs: Vec<Run>,
    running: usize,
    /// Job full name → number of its running build.
    running_jobs: BTreeMap<String, u64>,
    timers: BTreeMap<String, Timer>,
    timer_fires: u64,
    /// Every timer fire of this process, in order: (job full name, slot in ms); the newest
    /// `FIRES_KEPT` of them.
    fires: std::collections::VecDeque<(Arc<str>, u64)>,
    builds_started: u64,
    collisions: u64,
    last_build_loads: u64,
    token_requests: u64,
    resumed_foreign_builds: u64,
    resumed_own_builds: u64,
    globals_loaded: BTreeMap<String, String>,
    nodes: usize,
    users: usize,
    /// `users/users.xml`: user id → directory name.
    user_dirs: BTreeMap<String, String>,
    queue_save_pending: bool,
    queue_saves: u64,
    last_load: Option<LoadReport>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn security(&self) -> bool {
        self.credentials.is_some()
    }
}

type Resp = Response<Full<Bytes>>;

/// Marks a response that must not carry the `X-Jenkins` headers.
#[derive(Clone, Copy)]
struct NoJenkinsHeaders;

fn main() {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("jenkins-standin: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(cli)) {
        eprintln!("jenkins-standin: {e}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let credentials = match (&cli.user, &cli.token_file) {
        (Some(user), Some(file)) => {
            let token = std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read the token file {}: {e}", file.display()))?
                .trim()
                .to_string();
            if token.is_empty() {
                return Err(format!("the token file {} is empty", file.display()));
            }
            Some((user.clone(), token))
        }
        _ => None,
    };
    let node_header = HeaderValue::from_str(&cli.name)
        .map_err(|_| format!("--name {:?} cannot be sent in an HTTP header", cli.name))?;
    let session = format!("{:08x}", rand::random::<u32>());
    let session_header =
        HeaderValue::from_str(&session).map_err(|_| "bad session value".to_string())?;

    let listener = TcpListener::bind(cli.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cli.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let agent = match cli.agent_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on agent address {addr}: {e}"))?,
        ),
        None => None,
    };
    let off = |w: &str| cli.no_write.iter().any(|x| x == w);
    let shared = Arc::new(Shared {
        name: cli.name.clone(),
        home: cli.home.clone(),
        listen: local,
        credentials,
        model: load::Model {
            base: cli.reload_base,
            per_item: cli.load_per_item,
            per_build_entry: cli.load_per_build_entry,
            threads: usize::from(cli.load_threads),
        },
        start_delay: cli.start_delay,
        executors: cli.executors,
        build_duration: cli.build_duration,
        last_build_load: cli.last_build_load,
        queue_save_delay: cli.queue_save_delay.0,
        token_stats: !cli.no_token_stats,
        writes: Writes {
            startup_config: !off("startup-config"),
            startup_queue: !off("startup-queue"),
            resume: !off("resume"),
            reload_queue: !off("reload-queue"),
            shutdown_queue: !off("shutdown-queue"),
        },
        no_write: cli.no_write.clone(),
        session: session.clone(),
        jenkins_headers: vec![
            (
                HeaderName::from_static("x-jenkins"),
                HeaderValue::from_static(JENKINS_VERSION),
            ),
            (HeaderName::from_static("x-jenkins-session"), session_header),
        ],
        node_header,
        state: Mutex::new(State {
            starting: true,
            quieting_down: cli.start_quiet,
            ..State::default()
        }),
    });

    tokio::spawn(serve(listener, shared.clone()));
    if let Some(agent) = agent {
        tokio::spawn(agent_loop(agent, cli.name.clone()));
    }
    tokio::spawn(engine::shutdown_on_signal(shared.clone()));
    eprintln!(
        "jenkins-standin {}: session {session}, port {local} open, loading {}, security {}",
        cli.name,
        cli.home.display(),
        if shared.security() { "on" } else { "off" }
    );

    engine::startup(&shared).await;
    // Without a start delay the stand-in is up before it says so: a client may use it at once.
    if shared.start_delay.is_zero() {
        come_up(&shared);
    }
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "jenkins-standin {} listening on {local}", cli.name);
        let _ = out.flush();
    }
    if !shared.start_delay.is_zero() {
        tokio::time::sleep(shared.start_delay).await;
        come_up(&shared);
    }
    engine::kick(&shared);
    engine::tick_loop(shared).await;
    Ok(())
}

/// The end of start-up: requests are served, timers start.
fn come_up(sh: &Shared) {
    let mut st = sh.lock();
    st.starting = false;
    engine::restart_timers(&mut st, None, engine::now_ms());
    eprintln!(
        "jenkins-standin {}: up, {} items in memory, {} queued{}",
        sh.name,
        items::count(&st.items),
        st.queue.len(),
        if st.quieting_down {
            ", quieting down"
        } else {
            ""
        }
    );
}

/// Accepts HTTP connections until the process ends.
async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("jenkins-standin: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let sh = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(sh.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The TCP agent port: greets and hangs up.
async fn agent_loop(listener: TcpListener, name: String) {
    let greeting = format!("jenkins-standin {name}\n");
    loop {
        match listener.accept().await {
            Ok((mut stream, _)) => {
                let greeting = greeting.clone();
                tokio::spawn(async move {
                    let _ = stream.write_all(greeting.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
            Err(e) => {
                eprintln!("jenkins-standin: agent accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn handle(sh: Arc<Shared>, req: Request<Incoming>) -> Result<Resp, Infallible> {
    // Like a servlet container, Jenkins finishes a request it has read even when the client
    // hangs up (a timed-out quietDown still takes effect): run it detached from the connection.
    let worker = sh.clone();
    let mut resp = match tokio::spawn(async move { route(&worker, &req).await }).await {
        Ok(resp) => resp,
        Err(_) => respond(StatusCode::INTERNAL_SERVER_ERROR, HTML, "internal error\n"),
    };
    let bare =
        resp.extensions().get::<NoJenkinsHeaders>().is_some() || resp.status().is_redirection();
    let headers = resp.headers_mut();
    if !bare {
        for (name, value) in &sh.jenkins_headers {
            headers.insert(name.clone(), value.clone());
        }
    }
    headers.insert(
        HeaderName::from_static("x-standin-node"),
        sh.node_header.clone(),
    );
    Ok(resp)
}

// ---------------------------------------------------------------------------------------------------
// Responses

fn respond(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json_resp(status: StatusCode, v: &Value) -> Resp {
    respond(status, JSON, v.to_string())
}

/// A JSON API answer, pruned to `?tree=` when there is one.
fn api_resp(v: &Value, tree: Option<&Tree>) -> Resp {
    match tree {
        Some(t) => json_resp(StatusCode::OK, &t.prune(v)),
        None => json_resp(StatusCode::OK, v),
    }
}

fn html_page(status: StatusCode, title: &str, body: &str) -> Resp {
    respond(
        status,
        HTML,
        format!(
            "<!DOCTYPE html>\n<html><head><title>{}</title></head>\n<body>\n{body}\n</body></html>\n",
            html_escape(title)
        ),
    )
}

fn redirect_root() -> Resp {
    let mut r = respond(StatusCode::FOUND, HTML, "");
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/"));
    r
}

fn not_found() -> Resp {
    html_page(StatusCode::NOT_FOUND, "Not Found", "<h1>Not Found</h1>")
}

fn bad_request(msg: &str) -> Resp {
    html_page(
        StatusCode::BAD_REQUEST,
        "Error 400 Bad Request",
        &format!("<h2>HTTP ERROR 400 {}</h2>", html_escape(msg)),
    )
}

fn method_not_allowed(allow: &'static str) -> Resp {
    let mut r = html_page(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method Not Allowed",
        &format!("<p>This URL requires {allow}.</p>"),
    );
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// The page `HudsonIsLoading` shows while Jenkins starts or reloads: no `X-Jenkins` headers.
fn getting_ready() -> Resp {
    let mut r = html_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Starting Jenkins",
        "<h1>Please wait while Jenkins is getting ready to work...</h1>\n\
         <p>Your browser will reload automatically when Jenkins is ready.</p>",
    );
    r.extensions_mut().insert(NoJenkinsHeaders);
    r
}

/// The page `JenkinsReloadFailed` shows until Jenkins is restarted.
fn reload_failed() -> Resp {
    html_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Error [Jenkins]",
        "<h1>Error</h1>\n<p>Jenkins failed to reload the configuration. \
         Please check the logs and restart Jenkins.</p>",
    )
}

/// Resources served from the war, also while Jenkins loads: `/robots.txt`, `/favicon.ico`,
/// `/static/<hash>/...`.
fn static_resource(seg: &[&str]) -> Option<Resp> {
    let (content_type, body): (&'static str, &'static [u8]) = match seg {
        ["robots.txt"] => (
            "text/plain;charset=utf-8",
            b"# we don't want robots to click \"build\" links\nUser-agent: *\nDisallow: /\n",
        ),
        ["favicon.ico"] => ("image/vnd.microsoft.icon", &[0, 0, 1, 0, 0, 0]),
        ["static", _, .., last] => match last.rsplit_once('.').map(|(_, ext)| ext) {
            Some("css") => ("text/css", b"/* jenkins-standin */\n"),
            Some("js") => ("application/javascript", b"/* jenkins-standin */\n"),
            Some("png") => ("image/png", b""),
            Some("svg") => (
                "image/svg+xml",
                b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>\n",
            ),
            _ => ("application/octet-stream", b""),
        },
        _ => return None,
    };
    let mut r = respond(StatusCode::OK, content_type, Bytes::from_static(body));
    r.extensions_mut().insert(NoJenkinsHeaders);
    Some(r)
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------------
// URLs

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &byte in s.as_bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn query_param<'a>(query: Option<&'a str>, key: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// The `?tree=` of a request: `Ok(None)` without one, `Err` for a bad one.
fn tree_param(query: Option<&str>) -> Result<Option<Tree>, String> {
    match query_param(query, "tree") {
        None => Ok(None),
        Some(raw) => Tree::parse(&percent_decode(&raw.replace('+', " "))).map(Some),
    }
}

/// `http://HOST/` as the client addressed us, for the `url` fields.
fn root_url(sh: &Shared, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| sh.listen.to_string());
    format!("http://{host}/")
}

fn item_url(root: &str, segments: &[String]) -> String {
    let mut url = root.to_string();
    for s in segments {
        url.push_str("job/");
        url.push_str(&percent_encode(s));
        url.push('/');
    }
    url
}

// ---------------------------------------------------------------------------------------------------
// Routing

async fn route(sh: &Arc<Shared>, req: &Request<Incoming>) -> Resp {
    let path = req.uri().path();
    let query = req.uri().query();
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    if segments.first().map(String::as_str) == Some("standin") {
        return control(sh, req.method(), &segments[1..], query);
    }

    let (delay_ms, flapped) = {
        let mut st = sh.lock();
        st.requests += 1;
        let flapped = st.flap && path == "/login" && {
            st.flap_count += 1;
            st.flap_count.is_multiple_of(2)
        };
        (st.delay_ms, flapped)
    };
    if delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    }
    if flapped {
        return getting_ready();
    }
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    if let Some(r) = static_resource(&seg) {
        return r;
    }

    {
        let st = sh.lock();
        if st.reload_failed {
            return reload_failed();
        }
        if st.reloading || st.starting {
            return getting_ready();
        }
    }

    let user = match authenticate(sh, req.headers()) {
        Ok(user) => user,
        Err(resp) => return *resp,
    };
    if let Some(u) = &user {
        token_used(sh, u).await;
    }
    let anonymous_denied = sh.security() && user.is_none();
    let method = req.method();
    if anonymous_denied && method == Method::POST {
        // CrumbFilter: only API-token (basic auth) requests are exempt.
        return html_page(
            StatusCode::FORBIDDEN,
            "Error 403 No valid crumb was included in the request",
            "<h2>HTTP ERROR 403 No valid crumb was included in the request</h2>",
        );
    }
    let public = matches!(
        seg.as_slice(),
        ["login"] | ["whoAmI"] | ["whoAmI", "api", "json"]
    );
    if anonymous_denied && !public {
        let mut r = html_page(
            StatusCode::FORBIDDEN,
            "Authentication required",
            "<p>Authentication required</p>\n<p>You are authenticated as: anonymous</p>",
        );
        r.headers_mut().insert(
            HeaderName::from_static("x-you-are-authenticated-as"),
            HeaderValue::from_static("anonymous"),
        );
        r.headers_mut().insert(
            HeaderName::from_static("x-required-permission"),
            HeaderValue::from_static("hudson.model.Hudson.Read"),
        );
        return r;
    }

    let tree = match tree_param(query) {
        Ok(t) => t,
        Err(e) => return bad_request(&e),
    };
    let post = method == Method::POST;
    match seg.as_slice() {
        [] => dashboard(sh).await,
        ["api", "json"] => root_api(sh, req.headers(), tree.as_ref()).await,
        ["computer", "api", "json"] => computer_api(sh, tree.as_ref()),
        ["queue", "api", "json"] => queue_api(sh, req.headers(), tree.as_ref()).await,
        ["queue", "item", id, "api", "json"] => {
            queue_item_api(sh, req.headers(), id, tree.as_ref())
        }
        ["queue", "cancelItem"] if !post => method_not_allowed("POST"),
        ["queue", "cancelItem"] => cancel_item(sh, query),
        ["login"] => html_page(
            StatusCode::OK,
            "Sign in [Jenkins]",
            "<form method=\"post\" action=\"j_spring_security_check\">\n\
             <input name=\"j_username\"/> <input name=\"j_password\" type=\"password\"/>\n\
             <button type=\"submit\">Sign in</button></form>",
        ),
        ["whoAmI", "api", "json"] => who_am_i(user.as_deref()),
        ["whoAmI"] => html_page(
            StatusCode::OK,
            "Who Am I [Jenkins]",
            &format!(
                "<p>Name: {}</p>",
                html_escape(user.as_deref().unwrap_or("anonymous"))
            ),
        ),
        ["reload"] if !post => method_not_allowed("POST"),
        ["reload"] => start_full_reload(sh),
        ["quietDown"] | ["cancelQuietDown"] if !post => method_not_allowed("POST"),
        ["quietDown"] => quiet_down(sh, query).await,
        ["cancelQuietDown"] => {
            {
                let mut st = sh.lock();
                st.quieting_down = false;
                st.cancel_quiet_down_calls += 1;
            }
            // scheduleMaintenance(): every queued item starts at once, as far as executors allow.
            engine::kick(sh);
            redirect_root()
        }
        ["job", ..] => job_route(sh, req.headers(), post, &segments, tree.as_ref(), user).await,
        _ => not_found(),
    }
}

/// Checks a Basic `Authorization` header. `Ok(Some(user))` for the right user and API token,
/// `Ok(None)` for anonymous (no header, another scheme, or security off), `Err(401)` for wrong credentials.
fn authenticate(sh: &Shared, headers: &HeaderMap) -> Result<Option<String>, Box<Resp>> {
    let Some((user, token)) = &sh.credentials else {
        return Ok(None);
    };
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().unwrap_or("");
    let Some((scheme, rest)) = value.trim().split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok());
    let (given_user, given_token) = match decoded.as_deref().and_then(|d| d.split_once(':')) {
        Some((u, t)) => (u.to_string(), t.to_string()),
        None => (String::new(), String::new()),
    };
    if &given_user == user && &given_token == token {
        return Ok(Some(given_user));
    }
    let mut r = html_page(
        StatusCode::UNAUTHORIZED,
        "Error 401 Unauthorized",
        &format!(
            "<h2>HTTP ERROR 401 Invalid password/token for user: {}</h2>",
            html_escape(&given_user)
        ),
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"Jenkins\""),
    );
    Err(Box::new(r))
}

/// A request authenticated by the API token: counted, and `apiTokenStats.xml` saved (unless off).
async fn token_used(sh: &Arc<Shared>, user: &str) {
    let (count, dir) = {
        let mut st = sh.lock();
        st.token_requests += 1;
        let dir = st
            .user_dirs
            .get(user)
            .cloned()
            .unwrap_or_else(|| user.to_string());
        (st.token_requests, dir)
    };
    if !sh.token_stats {
        return;
    }
    let home = sh.home.clone();
    if let Ok(Err(e)) =
        tokio::task::spawn_blocking(move || engine::write_token_stats(&home, &dir, count)).await
    {
        eprintln!(
            "jenkins-standin {}: cannot save apiTokenStats.xml: {e}",
            sh.name
        );
    }
}

/// `POST /quietDown[?block=true&timeout=MS]`: quiet at once; with `block`, waits until no build runs
/// or the timeout (0: none) passes.
async fn quiet_down(sh: &Arc<Shared>, query: Option<&str>) -> Resp {
    {
        let mut st = sh.lock();
        st.quieting_down = true;
        st.quiet_down_calls += 1;
    }
    if query_param(query, "block") == Some("true") {
        let timeout = query_param(query, "timeout")
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(0);
        let deadline = Instant::now() + Duration::from_millis(timeout);
        while sh.lock().running > 0 && (timeout == 0 || Instant::now() < deadline) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    redirect_root()
}

/// A job listed in an API answer, with what its color needs.
struct Listed {
    full: String,
    dir: PathBuf,
    folder: bool,
    last: u64,
    running: bool,
}

fn listed(sh: &Shared, st: &State, full: String, item: &items::Item) -> Listed {
    Listed {
        dir: items::item_dir(&sh.home, &items::segments(&full)),
        folder: item.folder,
        last: item.last_build(),
        running: st.running_jobs.contains_key(&full),
        full,
    }
}

/// The `color` of each listed job. Each non-folder job's last build is loaded (`build.xml` read, plus
/// the modelled `--last-build-load`), counted in `lastBuildLoads`.
async fn colors(sh: &Arc<Shared>, jobs: Vec<Listed>) -> BTreeMap<String, String> {
    let loads = jobs.iter().filter(|j| !j.folder).count();
    if loads == 0 {
        return BTreeMap::new();
    }
    sh.lock().last_build_loads += loads as u64;
    let cost = sh
        .last_build_load
        .saturating_mul(u32::try_from(loads).unwrap_or(u32::MAX));
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut out = BTreeMap::new();
        for j in jobs.into_iter().filter(|j| !j.folder) {
            let color = if j.running {
                "blue_anime".to_string()
            } else if j.last == 0 {
                "notbuilt".to_string()
            } else {
                let facts = builds::read_facts(&j.dir, j.last);
                builds::color_of(facts.as_ref().and_then(|f| f.result.as_deref())).to_string()
            };
            out.insert(j.full, color);
        }
        if let Some(rest) = cost.checked_sub(started.elapsed()) {
            std::thread::sleep(rest);
        }
        out
    })
    .await
    .unwrap_or_default()
}

/// The `jobs` entries of an item group, in Jenkins' case-insensitive order.
/// How deep a `?tree=` asks for `jobs` inside `jobs` (folders' children): 0 without a tree, as
/// Jenkins' default depth lists only the direct children.
fn nested_jobs_depth(tree: Option<&Tree>) -> usize {
    let Some(t) = tree else { return 0 };
    let mut path = vec!["jobs", "jobs"];
    let mut depth = 0;
    while depth < 64 && t.wants(&path) {
        depth += 1;
        path.push("jobs");
    }
    depth
}

/// The `jobs` array of a group: each child's class, name and url, its color when known, and,
/// for a `?tree=` (which prunes what it did not ask for), a job's `nextBuildNumber` and, down
/// to `depth` more levels, a folder's own `jobs`.
fn jobs_json(
    group: &Group,
    root: &str,
    prefix: &[String],
    colors: Option<&BTreeMap<String, String>>,
    tree_fields: Option<usize>,
) -> Vec<Value> {
    let mut entries: Vec<(&String, &items::Item)> = group.iter().collect();
    entries.sort_by_key(|(name, _)| name.to_lowercase());
    entries
        .into_iter()
        .map(|(name, item)| {
            let mut segs = prefix.to_vec();
            segs.push(name.clone());
            let mut v = json!({"_class": item.class, "name": name, "url": item_url(root, &segs)});
            if let (false, Some(c)) = (item.folder, colors.and_then(|c| c.get(&segs.join("/")))) {
                v["color"] = json!(c);
            }
            match tree_fields {
                Some(_) if !item.folder => v["nextBuildNumber"] = json!(item.next_build),
                Some(depth) if depth > 0 => {
                    v["jobs"] = Value::Array(jobs_json(
                        &item.children,
                        root,
                        &segs,
                        None,
                        Some(depth - 1),
                    ))
                }
                _ => {}
            }
            v
        })
        .collect()
}

/// The jobs of a group, for [`colors`].
fn group_listing(sh: &Shared, st: &State, group: &Group, prefix: &[String]) -> Vec<Listed> {
    group
        .iter()
        .map(|(name, item)| {
            let mut segs = prefix.to_vec();
            segs.push(name.clone());
            listed(sh, st, segs.join("/"), item)
        })
        .collect()
}

async fn dashboard(sh: &Arc<Shared>) -> Resp {
    // The "All" view shows each job's status ball: it loads every top-level job's last build.
    let listing = {
        let st = sh.lock();
        group_listing(sh, &st, &st.items, &[])
    };
    colors(sh, listing).await;
    let st = sh.lock();
    let mut list = String::new();
    for (name, item) in &st.items {
        list.push_str(&format!(
            "<li><a href=\"job/{}/\">{}</a>{}</li>\n",
            percent_encode(name),
            html_escape(name),
            if item.folder { " (folder)" } else { "" }
        ));
    }
    let quiet = if st.quieting_down {
        "<p id=\"quiet-down\">Jenkins is going to shut down</p>\n"
    } else {
        ""
    };
    html_page(
        StatusCode::OK,
        "Dashboard [Jenkins]",
        &format!(
            "<h1>Dashboard</h1>\n<p>Jenkins stand-in <b>{}</b></p>\n{quiet}<ul>\n{list}</ul>",
            html_escape(&sh.name)
        ),
    )
}

async fn root_api(sh: &Arc<Shared>, headers: &HeaderMap, tree: Option<&Tree>) -> Resp {
    let root = root_url(sh, headers);
    let want_color = tree.is_none_or(|t| t.wants(&["jobs", "color"]));
    let colors = if want_color {
        let listing = {
            let st = sh.lock();
            group_listing(sh, &st, &st.items, &[])
        };
        Some(colors(sh, listing).await)
    } else {
        None
    };
    let st = sh.lock();
    let v = json!({
        "_class": "hudson.model.Hudson",
        "assignedLabels": [{"name": "built-in"}],
        "mode": "NORMAL",
        "nodeDescription": "the master Jenkins node",
        "nodeName": "",
        "numExecutors": sh.executors,
        "description": null,
        "quietingDown": st.quieting_down,
        "slaveAgentPort": 0,
        "url": root,
        "useCrumbs": true,
        "useSecurity": sh.security(),
        "views": [{"_class": "hudson.model.AllView", "name": "all", "url": root}],
        "jobs": jobs_json(&st.items, &root, &[], colors.as_ref(), tree.map(|_| nested_jobs_depth(tree))),
    });
    api_resp(&v, tree)
}

fn computer_api(sh: &Shared, tree: Option<&Tree>) -> Resp {
    let busy = {
        let st = sh.lock();
        st.running as u64 + st.busy_executors
    };
    let v = json!({
        "_class": "hudson.model.ComputerSet",
        "busyExecutors": busy,
        "computer": [{
            "_class": "hudson.model.Hudson$MasterComputer",
            "displayName": "Built-In Node",
            "idle": busy == 0,
            "numExecutors": sh.executors,
            "offline": false,
        }],
        "displayName": "Nodes",
        "totalExecutors": sh.executors,
    });
    api_resp(&v, tree)
}

fn causes_json(causes: &[(Cause, u32)]) -> Value {
    Value::Array(
        // `CauseAction.getCauses()` lists each cause once per request folded into the item.
        causes
            .iter()
            .flat_map(|(c, n)| {
                let mut v = json!({"_class": c.class(), "shortDescription": c.short_description()});
                if let Cause::User(u) = c {
                    v["userId"] = json!(u);
                    v["userName"] = json!(u.as_deref().unwrap_or("anonymous"));
                }
                std::iter::repeat_n(v, *n as usize)
            })
            .collect(),
    )
}

/// The `task` of a queue item: the job, with its color when known.
fn task_json(
    st: &State,
    root: &str,
    job: &str,
    colors: Option<&BTreeMap<String, String>>,
) -> Value {
    let segs = items::segments(job);
    let class = items::get(&st.items, &segs)
        .map(|i| i.class.clone())
        .unwrap_or_else(|| items::FREESTYLE_CLASS.to_string());
    let mut v = json!({
        "_class": class,
        "name": segs.last(),
        "url": item_url(root, &segs),
    });
    if let Some(c) = colors.and_then(|c| c.get(job)) {
        v["color"] = json!(c);
    }
    v
}

fn queue_item_json(
    st: &State,
    root: &str,
    it: &queue::Item,
    colors: Option<&BTreeMap<String, String>>,
) -> Value {
    let (why, blocked) = engine::why(st, it);
    json!({
        "_class": if blocked { "hudson.model.Queue$BlockedItem" } else { "hudson.model.Queue$BuildableItem" },
        "actions": [{"_class": "hudson.model.CauseAction", "causes": causes_json(&it.causes)}],
        "blocked": blocked,
        "buildable": !blocked,
        "id": it.id,
        "inQueueSince": it.in_queue_since,
        "params": "",
        "stuck": false,
        "task": task_json(st, root, &it.job, colors),
        "url": format!("queue/item/{}/", it.id),
        "why": why,
        "buildableStartMilliseconds": it.in_queue_since,
        "pending": false,
    })
}

async fn queue_api(sh: &Arc<Shared>, headers: &HeaderMap, tree: Option<&Tree>) -> Resp {
    let root = root_url(sh, headers);
    let want_color = tree.is_none_or(|t| t.wants(&["items", "task", "color"]));
    let colors = if want_color {
        let listing = {
            let st = sh.lock();
            st.queue
                .iter()
                .filter_map(|it| {
                    items::get(&st.items, &items::segments(&it.job))
                        .map(|item| listed(sh, &st, it.job.clone(), item))
                })
                .collect()
        };
        Some(colors(sh, listing).await)
    } else {
        None
    };
    let st = sh.lock();
    let items: Vec<Value> = st
        .queue
        .iter()
        .map(|it| queue_item_json(&st, &root, it, colors.as_ref()))
        .collect();
    api_resp(
        &json!({"_class": "hudson.model.Queue", "discoverableItems": [], "items": items}),
        tree,
    )
}

fn queue_item_api(sh: &Shared, headers: &HeaderMap, id: &str, tree: Option<&Tree>) -> Resp {
    let Ok(id) = id.parse::<u64>() else {
        return not_found();
    };
    let root = root_url(sh, headers);
    let st = sh.lock();
    if let Some(it) = st.queue.iter().find(|it| it.id == id) {
        return api_resp(&queue_item_json(&st, &root, it, None), tree);
    }
    let Some(left) = st.left.get(&id) else {
        return not_found();
    };
    let segs = items::segments(&left.job);
    let executable = left.number.map(|n| {
        let class = items::get(&st.items, &segs)
            .map(|i| build_class(&i.class))
            .unwrap_or("hudson.model.Run");
        json!({"_class": class, "number": n, "url": format!("{}{n}/", item_url(&root, &segs))})
    });
    let v = json!({
        "_class": "hudson.model.Queue$LeftItem",
        "actions": [],
        "blocked": false,
        "buildable": false,
        "id": id,
        "params": "",
        "stuck": false,
        "task": task_json(&st, &root, &left.job, None),
        "url": format!("queue/item/{id}/"),
        "why": null,
        "cancelled": left.number.is_none(),
        "executable": executable,
    });
    api_resp(&v, tree)
}

/// `POST /queue/cancelItem?id=N`: 204, or 404 for an id not in the queue.
fn cancel_item(sh: &Arc<Shared>, query: Option<&str>) -> Resp {
    let Some(id) = query_param(query, "id").and_then(|v| v.parse::<u64>().ok()) else {
        return not_found();
    };
    let mut st = sh.lock();
    let Some(k) = st.queue.iter().position(|it| it.id == id) else {
        return html_page(
            StatusCode::NOT_FOUND,
            "Error 404 Not Found",
            "<h2>HTTP ERROR 404 Provided queue item does not exist</h2>",
        );
    };
    let it = st.queue.remove(k);
    eprintln!(
        "jenkins-standin {}: queue item {id} ({}) cancelled",
        sh.name, it.job
    );
    engine::record_left(
        &mut st,
        id,
        Left {
            job: it.job,
            number: None,
        },
    );
    engine::queue_changed(sh, &mut st);
    let mut r = respond(StatusCode::NO_CONTENT, HTML, "");
    r.headers_mut().remove(header::CONTENT_TYPE);
    r
}

fn who_am_i(user: Option<&str>) -> Resp {
    // As in Jenkins' WhoAmI: the anonymous token is "authenticated" too; `anonymous` tells them apart.
    let (name, anonymous, authority) = match user {
        Some(u) => (u, false, "authenticated"),
        None => ("anonymous", true, "anonymous"),
    };
    json_resp(
        StatusCode::OK,
        &json!({
            "_class": "hudson.security.WhoAmI",
            "anonymous": anonymous,
            "authenticated": true,
            "authorities": [authority],
            "name": name,
        }),
    )
}

/// The `_class` of a build of a job of this class.
fn build_class(job_class: &str) -> &'static str {
    match job_class {
        items::FREESTYLE_CLASS => "hudson.model.FreeStyleBuild",
        "org.jenkinsci.plugins.workflow.job.WorkflowJob" => {
            "org.jenkinsci.plugins.workflow.job.WorkflowRun"
        }
        "hudson.matrix.MatrixProject" => "hudson.matrix.MatrixBuild",
        "hudson.maven.MavenModuleSet" => "hudson.maven.MavenModuleSetBuild",
        _ => "hudson.model.Run",
    }
}

/// `/job/A/job/B[/api/json|/reload|/build]`.
async fn job_route(
    sh: &Arc<Shared>,
    headers: &HeaderMap,
    post: bool,
    segments: &[String],
    tree: Option<&Tree>,
    user: Option<String>,
) -> Resp {
    let mut names = Vec::new();
    let mut k = 0;
    while k + 1 < segments.len() && segments[k] == "job" {
        names.push(segments[k + 1].clone());
        k += 2;
    }
    let rest: Vec<&str> = segments[k..].iter().map(String::as_str).collect();
    let Some(item) = items::get(&sh.lock().items, &names).cloned() else {
        return not_found();
    };
    let root = root_url(sh, headers);
    match rest.as_slice() {
        [] => html_page(
            StatusCode::OK,
            &format!("{} [Jenkins]", names.join(" » ")),
            &format!(
                "<h1>{}</h1>\n<div id=\"description\">{}</div>",
                html_escape(&names.join("/")),
                html_escape(&item.description)
            ),
        ),
        ["api", "json"] => job_api(sh, &root, &names, &item, tree).await,
        ["reload"] if !post => method_not_allowed("POST"),
        ["reload"] => reload_item(sh, &names, item).await,
        ["build"] if item.folder => not_found(),
        ["build"] if !post => method_not_allowed("POST"),
        ["build"] => {
            let full = names.join("/");
            let id = {
                let mut st = sh.lock();
                let id = engine::enqueue(&mut st, &full, Cause::User(user), None, engine::now_ms());
                engine::queue_changed(sh, &mut st);
                id
            };
            engine::kick(sh);
            let mut r = respond(StatusCode::CREATED, HTML, "");
            if let Ok(v) = HeaderValue::from_str(&format!("{root}queue/item/{id}/")) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        _ => not_found(),
    }
}

/// `GET /job/.../api/json`.
async fn job_api(
    sh: &Arc<Shared>,
    root: &str,
    names: &[String],
    item: &items::Item,
    tree: Option<&Tree>,
) -> Resp {
    let full = names.join("/");
    let mut v = json!({
        "_class": item.class,
        "actions": [],
        "description": item.description,
        "displayName": names.last(),
        "fullDisplayName": names.join(" » "),
        "fullName": full,
        "name": names.last(),
        "url": item_url(root, names),
    });
    if item.folder {
        let want_color = tree.is_none_or(|t| t.wants(&["jobs", "color"]));
        let colors = if want_color {
            let listing = {
                let st = sh.lock();
                group_listing(sh, &st, &item.children, names)
            };
            Some(colors(sh, listing).await)
        } else {
            None
        };
        v["jobs"] = Value::Array(jobs_json(
            &item.children,
            root,
            names,
            colors.as_ref(),
            tree.map(|_| nested_jobs_depth(tree)),
        ));
        return api_resp(&v, tree);
    }

    let want_last = tree.is_none_or(|t| t.wants(&["lastBuild"]));
    let want_color = tree.is_none_or(|t| t.wants(&["color"]));
    let dir = items::item_dir(&sh.home, names);
    let last = item.last_build();
    let build_url = |n: u64| format!("{}{n}/", item_url(root, names));
    let class = build_class(&item.class);
    // Loading the last build: from memory when this process ran it, else its build.xml from disk.
    let (mine, running_number, queued) = {
        let st = sh.lock();
        let mine = st
            .runs
            .iter()
            .rev()
            .find(|r| r.job == full && r.number == last)
            .cloned();
        let queued = st.queue.iter().find(|it| it.job == full).cloned();
        (mine, st.running_jobs.get(&full).copied(), queued)
    };
    let mut last_json = Value::Null;
    let mut color = "notbuilt".to_string();
    if last > 0 && (want_last || want_color) {
        let (timestamp, result, duration) = match &mine {
            Some(r) => (
                Some(r.started_ms),
                r.result.clone(),
                r.ended_ms.map(|e| e - r.started_ms),
            ),
            None => {
                let cost = sh.last_build_load;
                let d = dir.clone();
                sh.lock().last_build_loads += 1;
                let facts = tokio::task::spawn_blocking(move || {
                    let started = Instant::now();
                    let f = builds::read_facts(&d, last);
                    if let Some(rest) = cost.checked_sub(started.elapsed()) {
                        std::thread::sleep(rest);
                    }
                    f
                })
                .await
                .ok()
                .flatten();
                match facts {
                    Some(f) => (f.timestamp, f.result, f.duration),
                    None => (None, None, None),
                }
            }
        };
        let building = running_number == Some(last);
        color = if building {
            "blue_anime".to_string()
        } else {
            builds::color_of(result.as_deref()).to_string()
        };
        last_json = json!({
            "_class": class,
            "number": last,
            "url": build_url(last),
            "building": building,
            "result": result,
            "timestamp": timestamp,
            "duration": duration.unwrap_or(0),
        });
    }
    let builds: Vec<Value> = item
        .builds
        .iter()
        .rev()
        .take(100)
        .map(|n| json!({"_class": class, "number": n, "url": build_url(*n)}))
        .collect();
    let first = item
        .builds
        .first()
        .map(|n| json!({"_class": class, "number": n, "url": build_url(*n)}));
    v["buildable"] = json!(true);
    v["builds"] = json!(builds);
    v["color"] = json!(color);
    v["firstBuild"] = json!(first);
    v["healthReport"] = json!([]);
    v["inQueue"] = json!(queued.is_some());
    v["keepDependencies"] = json!(false);
    v["lastBuild"] = last_json;
    v["nextBuildNumber"] = json!(item.next_build);
    v["property"] = json!([]);
    v["queueItem"] = match &queued {
        Some(it) => {
            json!({"_class": "hudson.model.Queue$BuildableItem", "id": it.id, "inQueueSince": it.in_queue_since})
        }
        None => Value::Null,
    };
    v["concurrentBuild"] = json!(false);
    match tree {
        Some(t) => api_resp(&v, Some(t)),
        None => {
            // Depth 0: lastBuild and firstBuild are references (class, number, url).
            if let Some(obj) = v["lastBuild"].as_object_mut() {
                obj.retain(|k, _| matches!(k.as_str(), "_class" | "number" | "url"));
            }
            api_resp(&v, None)
        }
    }
}

/// `POST /job/.../reload`: re-reads the item's config.xml onto the live object.
async fn reload_item(sh: &Arc<Shared>, names: &[String], item: items::Item) -> Resp {
    match engine::reload_item(sh, names, item).await {
        Ok(true) => {
            eprintln!(
                "jenkins-standin {}: reloaded item {}",
                sh.name,
                names.join("/")
            );
            respond(StatusCode::OK, HTML, "")
        }
        Ok(false) => not_found(),
        Err(e) => {
            eprintln!(
                "jenkins-standin {}: reload of item {} failed: {e}",
                sh.name,
                names.join("/")
            );
            html_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Jenkins [Jenkins]",
                &format!(
                    "<h1>Oops!</h1>\n<p>A problem occurred while processing the request.</p>\n<pre>java.io.IOException: {}</pre>",
                    html_escape(&e.to_string())
                ),
            )
        }
    }
}

/// `POST /reload`: answers 302 at once; the reload runs in the background.
fn start_full_reload(sh: &Arc<Shared>) -> Resp {
    let fail = {
        let mut st = sh.lock();
        if st.reloading {
            return getting_ready();
        }
        st.reloading = true;
        st.full_reloads += 1;
        st.fail_reloads
    };
    let started = Instant::now();
    eprintln!(
        "jenkins-standin {}: full reload started{}",
        sh.name,
        if fail { " (set to fail)" } else { "" }
    );
    tokio::spawn(engine::full_reload(sh.clone(), started, fail));
    redirect_root()
}

// ---------------------------------------------------------------------------------------------------
// Control API

fn control(sh: &Arc<Shared>, method: &Method, segments: &[String], query: Option<&str>) -> Resp {
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    let bad = |msg: &str| json_resp(StatusCode::BAD_REQUEST, &json!({"error": msg}));
    match seg.as_slice() {
        ["state" | "builds" | "next-numbers" | "queue" | "fires"]
            if method != Method::GET && method != Method::HEAD =>
        {
            method_not_allowed("GET")
        }
        ["state"] => json_resp(
            StatusCode::OK,
            &state_json(sh, query_param(query, "brief") == Some("1")),
        ),
        ["builds"] => json_resp(StatusCode::OK, &builds_json(sh)),
        ["queue"] => json_resp(StatusCode::OK, &standin_queue_json(sh)),
        ["fires"] => {
            let st = sh.lock();
            let fires: Vec<Value> = st
                .fires
                .iter()
                .map(|(job, slot)| json!({"job": &**job, "slot": slot}))
                .collect();
            json_resp(StatusCode::OK, &Value::Array(fires))
        }
        ["next-numbers"] => {
            let st = sh.lock();
            match query_param(query, "job").map(percent_decode) {
                Some(job) => match items::get(&st.items, &items::segments(&job)) {
                    Some(item) if !item.folder => {
                        json_resp(StatusCode::OK, &json!({ job: item.next_build }))
                    }
                    _ => json_resp(
                        StatusCode::NOT_FOUND,
                        &json!({"error": format!("no job {job} in memory")}),
                    ),
                },
                None => {
                    let mut all = serde_json::Map::new();
                    items::walk(&st.items, &mut |full, item| {
                        if !item.folder {
                            all.insert(full.to_string(), json!(item.next_build));
                        }
                    });
                    json_resp(StatusCode::OK, &Value::Object(all))
                }
            }
        }
        ["fail-reloads" | "delay" | "busy" | "flap"] if method != Method::POST => {
            method_not_allowed("POST")
        }
        ["flap"] => match query_param(query, "on") {
            Some(v @ ("true" | "false")) => {
                let on = v == "true";
                sh.lock().flap = on;
                eprintln!("jenkins-standin {}: flapping = {on}", sh.name);
                json_resp(StatusCode::OK, &json!({"flap": on}))
            }
            _ => bad("expected ?on=true or ?on=false"),
        },
        ["fail-reloads"] => match query_param(query, "on") {
            Some(v @ ("true" | "false")) => {
                let on = v == "true";
                sh.lock().fail_reloads = on;
                eprintln!("jenkins-standin {}: fail-reloads = {on}", sh.name);
                json_resp(StatusCode::OK, &json!({"failReloads": on}))
            }
            _ => bad("expected ?on=true or ?on=false"),
        },
        ["delay"] => match query_param(query, "ms").and_then(|v| v.parse::<u64>().ok()) {
            Some(ms) => {
                sh.lock().delay_ms = ms;
                eprintln!("jenkins-standin {}: response delay = {ms} ms", sh.name);
                json_resp(StatusCode::OK, &json!({"delayMs": ms}))
            }
            None => bad("expected ?ms=N"),
        },
        ["busy"] => match query_param(query, "n").and_then(|v| v.parse::<u64>().ok()) {
            Some(n) => {
                sh.lock().busy_executors = n;
                engine::kick(sh);
                json_resp(StatusCode::OK, &json!({"busyExecutors": n}))
            }
            None => bad("expected ?n=N"),
        },
        _ => not_found(),
    }
}

fn ms_u64(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn us_u64(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The root xml files' fingerprints on disk, read on a thread of their own and waited for at
/// most `within`: the home may hang (a frozen NFS or FUSE mount), and the control API must keep
/// answering (and never block the runtime) meanwhile. `None` when the read did not come back,
/// or one is still stuck.
fn root_fingerprints_within(
    home: &std::path::Path,
    within: Duration,
) -> Option<BTreeMap<String, String>> {
    static READING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if READING.swap(true, std::sync::atomic::Ordering::AcqRel) {
        return None;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let home = home.to_path_buf();
    std::thread::spawn(move || {
        let prints = load::root_xml_fingerprints(&home);
        READING.store(false, std::sync::atomic::Ordering::Release);
        let _ = tx.send(prints);
    });
    rx.recv_timeout(within).ok()
}

fn state_json(sh: &Shared, brief: bool) -> Value {
    let on_disk = root_fingerprints_within(&sh.home, Duration::from_millis(200));
    let st = sh.lock();
    // `null` while the home does not answer.
    let stale = on_disk.map(|on_disk| load::stale_globals(&st.globals_loaded, &on_disk));
    let mut v = json!({
        "name": sh.name,
        "session": sh.session,
        "quietingDown": st.quieting_down,
        "reloading": st.reloading,
        "starting": st.starting,
        "loading": st.reloading || st.starting,
        "reloadFailed": st.reload_failed,
        "fullReloads": st.full_reloads,
        "fullReloadsCompleted": st.full_reloads_completed,
        "itemReloads": st.item_reloads,
        "quietDownCalls": st.quiet_down_calls,
        "cancelQuietDownCalls": st.cancel_quiet_down_calls,
        "requests": st.requests,
        "busyExecutors": st.running as u64 + st.busy_executors,
        "failReloads": st.fail_reloads,
        "delayMs": st.delay_ms,
        "flap": st.flap,
        "itemCount": items::count(&st.items),
        "buildsStarted": st.builds_started,
        "buildsRunning": st.running,
        "collisions": st.collisions,
        "queueLength": st.queue.len(),
        "timerFires": st.timer_fires,
        "queueSaves": st.queue_saves,
        "lastBuildLoads": st.last_build_loads,
        "tokenRequests": st.token_requests,
        "resumedForeignBuilds": st.resumed_foreign_builds,
        "resumedOwnBuilds": st.resumed_own_builds,
        "nodes": st.nodes,
        "users": st.users,
        "globalsLoaded": st.globals_loaded,
        "globalsStale": stale,
        "model": {
            "reloadBaseMs": ms_u64(sh.model.base),
            "loadPerItemUs": us_u64(sh.model.per_item),
            "loadPerBuildEntryUs": us_u64(sh.model.per_build_entry),
            "loadThreads": sh.model.threads,
            "startDelayMs": ms_u64(sh.start_delay),
            "executors": sh.executors,
            "buildDurationMs": ms_u64(sh.build_duration),
            "lastBuildLoadUs": us_u64(sh.last_build_load),
            "queueSaveDelayMs": sh.queue_save_delay.map(ms_u64),
            "tokenStats": sh.token_stats,
            "noWrite": sh.no_write,
        },
        "lastLoad": st.last_load.as_ref().map(|r| json!({
            "kind": r.kind,
            "items": r.items,
            "buildEntries": r.build_entries,
            "modelledMs": r.modelled_ms,
            "elapsedMs": r.elapsed_ms,
        })),
    });
    if !brief {
        v["items"] = json!(items::flatten(&st.items));
    }
    v
}

fn builds_json(sh: &Shared) -> Value {
    let st = sh.lock();
    Value::Array(
        st.runs
            .iter()
            .map(|r| {
                json!({
                    "job": r.job,
                    "number": r.number,
                    "queueId": r.queue_id,
                    "startedMs": r.started_ms,
                    "endedMs": r.ended_ms,
                    "result": r.result,
                    "fireSlots": r.fire_slots,
                    "causes": r.causes.iter().map(|(c, _)| c.short_description()).collect::<Vec<_>>(),
                    "collided": r.collided,
                })
            })
            .collect(),
    )
}

fn standin_queue_json(sh: &Shared) -> Value {
    let st = sh.lock();
    Value::Array(
        st.queue
            .iter()
            .map(|it| {
                let (why, blocked) = engine::why(&st, it);
                json!({
                    "id": it.id,
                    "job": it.job,
                    "inQueueSince": it.in_queue_since,
                    "fireSlots": it.fire_slots,
                    "causes": it.causes.iter().map(|(c, n)| json!({"shortDescription": c.short_description(), "count": n})).collect::<Vec<_>>(),
                    "why": why,
                    "blocked": blocked,
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_round_trip() {
        assert_eq!(percent_decode("a%20b%2Fc"), "a b/c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_encode("a b/é"), "a%20b%2F%C3%A9");
    }

    #[test]
    fn query_params() {
        assert_eq!(query_param(Some("on=true&x"), "on"), Some("true"));
        assert_eq!(query_param(Some("x&on=false"), "on"), Some("false"));
        assert_eq!(query_param(None, "on"), None);
    }

    #[test]
    fn save_delay_and_durations() {
        assert!(parse_save_delay("-1").unwrap().0.is_none());
        assert_eq!(
            parse_save_delay("250ms").unwrap().0,
            Some(Duration::from_millis(250))
        );
        assert_eq!(parse_duration("20us"), Ok(Duration::from_micros(20)));
        let cli = Cli::try_parse_from([
            "jenkins-standin",
            "--listen",
            "127.0.0.1:0",
            "--home",
            "/tmp",
            "--name",
            "n",
            "--reload-per-item",
            "7ms",
            "--queue-save-delay",
            "-1",
            "--no-write",
            "resume,startup-config",
        ])
        .unwrap();
        assert_eq!(cli.load_per_item, Duration::from_millis(7));
        assert!(cli.queue_save_delay.0.is_none());
        assert_eq!(cli.no_write, ["resume", "startup-config"]);
        assert!(Cli::try_parse_from([
            "jenkins-standin",
            "--listen",
            "127.0.0.1:0",
            "--home",
            "/tmp",
            "--name",
            "n",
            "--no-write",
            "everything",
        ])
        .is_err());
    }
}
