//! `jenkins-standin`: a dev-only stand-in for one Jenkins master, for testing the jenkins-ha sidecar.
//!
//! It serves the small part of Jenkins' HTTP surface the sidecar touches, with real Jenkins semantics
//! (see `shared/design/jenkins.md`): `X-Jenkins` / `X-Jenkins-Session` headers (the session changes on every
//! start), 403-for-anonymous vs 401-for-a-wrong-token, the API-token exemption from CSRF crumbs, `POST /reload`
//! answering 302 at once and then 503 on every URL while it reloads (503 forever after a failed reload),
//! the folder caveat of full reloads, per-item reloads that cannot discover new items, and in-memory
//! quiet-down. Items come from `HOME/jobs/**/config.xml`; nothing else in the home is read.
//!
//! # Command line
//!
//! ```text
//! jenkins-standin --listen 127.0.0.1:PORT --home DIR --name NAME
//!    [--agent-listen 127.0.0.1:PORT]   # TCP "agent port": on accept writes "jenkins-standin NAME\n", closes
//!    [--user USER --token-file FILE]   # security on (token = file content, trimmed); else anonymous may do all
//!    [--reload-base DURATION]          # default 300ms
//!    [--reload-per-item DURATION]      # default 2ms; full reload window = base + per-item × items on disk
//!    [--start-delay DURATION]          # default 0: 503 "getting ready" for this long after start
//!    [--executors N]                   # default 2
//! ```
//!
//! On start it prints one line, `jenkins-standin NAME listening on ADDR`, to stdout (ADDR is the bound
//! address, so `--listen 127.0.0.1:0` works), then serves until killed. Logs go to stderr.
//!
//! # Control / inspection API (dev-only)
//!
//! Everything under `/standin/` is unauthenticated, is always served (also while every other URL answers
//! 503), is not delayed and is not counted in `requests`.
//!
//! - `GET /standin/state` → JSON:
//!   `{"name", "session", "quietingDown", "reloading", "reloadFailed", "fullReloads"` (started),
//!   `"fullReloadsCompleted"` (ended successfully), `"itemReloads"` (successful per-item reloads),
//!   `"quietDownCalls", "cancelQuietDownCalls"` (accepted POSTs), `"requests"` (all non-`/standin/`
//!   requests received, whatever their answer), `"busyExecutors", "failReloads", "delayMs",
//!   "items": {"A": "desc", "F": "", "F/B": "desc"}}` (the in-memory tree: full name → description).
//! - `POST /standin/fail-reloads?on=true|false` → full reloads started from now on end in failure.
//! - `POST /standin/delay?ms=N` → every non-`/standin/` response is delayed by N ms (a slow Jenkins).
//! - `POST /standin/busy?n=N` → sets the number of busy executors.
//! - `POST /standin/flap?on=true|false` → while on, every other `GET /login` answers 503, like a
//!   Jenkins going up and down every health check.
//!
//! Each POST answers 200 with the new value as JSON; a missing or bad parameter gives 400.

#[path = "standin/items.rs"]
mod items;
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

/// The Jenkins version the stand-in claims to be.
const JENKINS_VERSION: &str = "2.462.3";
const JSON: &str = "application/json;charset=utf-8";
const HTML: &str = "text/html;charset=utf-8";

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
    /// Name of this node, shown in pages and in the X-Standin-Node header.
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
    /// Fixed part of a full reload's 503 window.
    #[arg(long, default_value = "300ms", value_parser = parse_duration)]
    reload_base: Duration,
    /// Added to the reload window for every item on disk.
    #[arg(long, default_value = "2ms", value_parser = parse_duration)]
    reload_per_item: Duration,
    /// Answer 503 "getting ready" for this long after start, like a booting Jenkins.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    start_delay: Duration,
    /// Number of executors reported.
    #[arg(long, default_value_t = 2)]
    executors: u32,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| e.to_string())
}

/// Fixed facts of this process.
struct Shared {
    name: String,
    home: PathBuf,
    listen: SocketAddr,
    /// `Some((user, token))` when security is on.
    credentials: Option<(String, String)>,
    reload_base: Duration,
    reload_per_item: Duration,
    executors: u32,
    session: String,
    ready_at: Instant,
    /// Header values added to every response.
    common_headers: Vec<(HeaderName, HeaderValue)>,
    state: Mutex<State>,
}

/// Mutable state: the item tree and the counters of the control API.
#[derive(Default)]
struct State {
    items: Group,
    quieting_down: bool,
    reloading: bool,
    reload_failed: bool,
    fail_reloads: bool,
    full_reloads: u64,
    full_reloads_completed: u64,
    item_reloads: u64,
    quiet_down_calls: u64,
    cancel_quiet_down_calls: u64,
    requests: u64,
    busy_executors: u64,
    delay_ms: u64,
    /// Flapping: every other `GET /login` answers 503, like a Jenkins going up and down.
    flap: bool,
    flap_count: u64,
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
    let name_header = HeaderValue::from_str(&cli.name)
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

    let items = items::load_group_fresh(&cli.home.join("jobs"));
    eprintln!(
        "jenkins-standin {}: session {session}, {} items loaded from {}, security {}",
        cli.name,
        items::count(&items),
        cli.home.join("jobs").display(),
        if credentials.is_some() { "on" } else { "off" }
    );

    let shared = Arc::new(Shared {
        name: cli.name.clone(),
        home: cli.home.clone(),
        listen: local,
        credentials,
        reload_base: cli.reload_base,
        reload_per_item: cli.reload_per_item,
        executors: cli.executors,
        session,
        ready_at: Instant::now() + cli.start_delay,
        common_headers: vec![
            (
                HeaderName::from_static("x-jenkins"),
                HeaderValue::from_static(JENKINS_VERSION),
            ),
            (HeaderName::from_static("x-jenkins-session"), session_header),
            (HeaderName::from_static("x-standin-node"), name_header),
        ],
        state: Mutex::new(State {
            items,
            ..State::default()
        }),
    });

    if let Some(agent) = agent {
        tokio::spawn(agent_loop(agent, cli.name.clone()));
    }

    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "jenkins-standin {} listening on {local}", cli.name);
        let _ = out.flush();
    }

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
    let headers = resp.headers_mut();
    for (name, value) in &sh.common_headers {
        headers.insert(name.clone(), value.clone());
    }
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

/// The page `HudsonIsLoading` shows while Jenkins starts or reloads.
fn getting_ready() -> Resp {
    html_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Starting Jenkins",
        "<h1>Please wait while Jenkins is getting ready to work...</h1>\n\
         <p>Your browser will reload automatically when Jenkins is ready.</p>",
    )
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
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    if segments.first().map(String::as_str) == Some("standin") {
        return control(sh, req.method(), &segments[1..], req.uri().query());
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

    {
        let st = sh.lock();
        if st.reload_failed {
            return reload_failed();
        }
        if st.reloading || Instant::now() < sh.ready_at {
            return getting_ready();
        }
    }

    let user = match authenticate(sh, req.headers()) {
        Ok(user) => user,
        Err(resp) => return *resp,
    };
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
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
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

    let post = method == Method::POST;
    match seg.as_slice() {
        [] => dashboard(sh),
        ["api", "json"] => root_api(sh, req.headers()),
        ["computer", "api", "json"] => computer_api(sh),
        ["queue", "api", "json"] => json_resp(
            StatusCode::OK,
            &json!({"_class": "hudson.model.Queue", "discoverableItems": [], "items": []}),
        ),
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
        ["quietDown"] => {
            let mut st = sh.lock();
            st.quieting_down = true;
            st.quiet_down_calls += 1;
            redirect_root()
        }
        ["cancelQuietDown"] => {
            let mut st = sh.lock();
            st.quieting_down = false;
            st.cancel_quiet_down_calls += 1;
            redirect_root()
        }
        ["job", ..] => job_route(sh, req.headers(), post, &segments),
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

fn dashboard(sh: &Shared) -> Resp {
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

/// The `jobs` entries of an item group, in Jenkins' case-insensitive order.
fn jobs_json(group: &Group, root: &str, prefix: &[String]) -> Vec<Value> {
    let mut entries: Vec<(&String, &items::Item)> = group.iter().collect();
    entries.sort_by_key(|(name, _)| name.to_lowercase());
    entries
        .into_iter()
        .map(|(name, item)| {
            let mut segs = prefix.to_vec();
            segs.push(name.clone());
            let mut v = json!({"_class": item.class, "name": name, "url": item_url(root, &segs)});
            if !item.folder {
                v["color"] = json!("blue");
            }
            v
        })
        .collect()
}

fn root_api(sh: &Shared, headers: &HeaderMap) -> Resp {
    let root = root_url(sh, headers);
    let st = sh.lock();
    json_resp(
        StatusCode::OK,
        &json!({
            "_class": "hudson.model.Hudson",
            "mode": "NORMAL",
            "nodeDescription": "the master Jenkins node",
            "nodeName": "",
            "numExecutors": sh.executors,
            "quietingDown": st.quieting_down,
            "url": root,
            "useCrumbs": true,
            "useSecurity": sh.security(),
            "jobs": jobs_json(&st.items, &root, &[]),
        }),
    )
}

fn computer_api(sh: &Shared) -> Resp {
    let busy = sh.lock().busy_executors;
    json_resp(
        StatusCode::OK,
        &json!({
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
        }),
    )
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

/// `/job/A/job/B[/api/json|/reload]`.
fn job_route(sh: &Arc<Shared>, headers: &HeaderMap, post: bool, segments: &[String]) -> Resp {
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
        ["api", "json"] => {
            let mut v = json!({
                "_class": item.class,
                "description": item.description,
                "displayName": names.last(),
                "fullName": names.join("/"),
                "name": names.last(),
                "url": item_url(&root, &names),
            });
            if item.folder {
                v["jobs"] = Value::Array(jobs_json(&item.children, &root, &names));
            } else {
                v["color"] = json!("blue");
            }
            json_resp(StatusCode::OK, &v)
        }
        ["reload"] if !post => method_not_allowed("POST"),
        ["reload"] => reload_item(sh, &names, &item),
        _ => not_found(),
    }
}

/// `POST /job/.../reload`: re-reads the item's config.xml onto the live object.
fn reload_item(sh: &Shared, names: &[String], item: &items::Item) -> Resp {
    let dir = items::item_dir(&sh.home, names);
    match items::reload_one(item, &dir) {
        Ok(new) => {
            let mut st = sh.lock();
            if let Some(live) = items::get_mut(&mut st.items, names) {
                *live = new;
                st.item_reloads += 1;
                eprintln!(
                    "jenkins-standin {}: reloaded item {}",
                    sh.name,
                    names.join("/")
                );
                respond(StatusCode::OK, HTML, "")
            } else {
                not_found()
            }
        }
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
    tokio::spawn(full_reload(sh.clone(), started, fail));
    redirect_root()
}

async fn full_reload(sh: Arc<Shared>, started: Instant, fail: bool) {
    let jobs_dir = sh.home.join("jobs");
    let dir = jobs_dir.clone();
    let on_disk = tokio::task::spawn_blocking(move || items::count(&items::load_group_fresh(&dir)))
        .await
        .unwrap_or(0);
    let per_item_total = sh
        .reload_per_item
        .saturating_mul(u32::try_from(on_disk).unwrap_or(u32::MAX));
    let window = sh.reload_base.saturating_add(per_item_total);
    tokio::time::sleep_until((started + window).into()).await;

    if fail {
        let mut st = sh.lock();
        st.reloading = false;
        st.reload_failed = true;
        eprintln!(
            "jenkins-standin {}: full reload FAILED after {window:?}; every URL answers 503 until restart",
            sh.name
        );
        return;
    }

    let old = sh.lock().items.clone();
    let new = tokio::task::spawn_blocking(move || items::reload_top(&old, &jobs_dir)).await;
    let mut st = sh.lock();
    st.reloading = false;
    match new {
        Ok(tree) => {
            st.items = tree;
            st.full_reloads_completed += 1;
            eprintln!(
                "jenkins-standin {}: full reload done after {window:?} ({on_disk} items on disk, {} in memory)",
                sh.name,
                items::count(&st.items)
            );
        }
        Err(e) => {
            st.reload_failed = true;
            eprintln!("jenkins-standin {}: full reload crashed: {e}", sh.name);
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Control API

fn control(sh: &Shared, method: &Method, segments: &[String], query: Option<&str>) -> Resp {
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    let bad = |msg: &str| json_resp(StatusCode::BAD_REQUEST, &json!({"error": msg}));
    match seg.as_slice() {
        ["state"] if method != Method::GET && method != Method::HEAD => method_not_allowed("GET"),
        ["state"] => json_resp(StatusCode::OK, &state_json(sh)),
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
                json_resp(StatusCode::OK, &json!({"busyExecutors": n}))
            }
            None => bad("expected ?n=N"),
        },
        _ => not_found(),
    }
}

fn state_json(sh: &Shared) -> Value {
    let st = sh.lock();
    let items: BTreeMap<String, String> = items::flatten(&st.items);
    json!({
        "name": sh.name,
        "session": sh.session,
        "quietingDown": st.quieting_down,
        "reloading": st.reloading,
        "reloadFailed": st.reload_failed,
        "fullReloads": st.full_reloads,
        "fullReloadsCompleted": st.full_reloads_completed,
        "itemReloads": st.item_reloads,
        "quietDownCalls": st.quiet_down_calls,
        "cancelQuietDownCalls": st.cancel_quiet_down_calls,
        "requests": st.requests,
        "busyExecutors": st.busy_executors,
        "failReloads": st.fail_reloads,
        "delayMs": st.delay_ms,
        "flap": st.flap,
        "items": items,
    })
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
}
