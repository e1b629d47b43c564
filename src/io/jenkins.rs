//! The Jenkins HTTP client: health probe, `/api/json` facts, quiet-down, full and per-item
//! reloads, and waiting for a reload to finish.
//!
//! Credentials (user + API token) go out as preemptive HTTP basic auth on every request:
//! Jenkins answers an anonymous request to a protected URL with 403 and no challenge, and an
//! API token over basic auth needs no CSRF crumb (Jenkins >= 2.96). The token never appears in
//! logs, errors or `Debug` output. Redirects are never followed: a 302 from `/reload` or
//! `/quietDown` is the success signal.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use hyper::header::{HeaderName, HeaderValue, AUTHORIZATION};
use hyper::{Method, StatusCode};
use tokio::time::Instant;

use super::http_client::{HttpClient, HttpError, Response};

/// The header whose value changes on every start of the Jenkins JVM.
const SESSION_HEADER: &str = "x-jenkins-session";

/// Why a call to Jenkins failed.
#[derive(Debug, thiserror::Error)]
pub enum JenkinsError {
    #[error("bad Jenkins URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error(
        "{method} {path}: forbidden (403): no or insufficient credentials; \
         set jenkins.user and jenkins.api_token_file (the user needs Overall/Manage)"
    )]
    Forbidden { method: Method, path: String },
    #[error(
        "{method} {path}: Jenkins asks for a CSRF crumb (403): \
         jenkins.api_token_file must hold an API token, not a password"
    )]
    CrumbRequired { method: Method, path: String },
    #[error(
        "{method} {path}: the API token was rejected (401); \
         check jenkins.user and jenkins.api_token_file"
    )]
    Unauthorized { method: Method, path: String },
    #[error("{method} {path}: Jenkins is getting ready to work (503)")]
    GettingReady { method: Method, path: String },
    #[error("{method} {path}: not found (404)")]
    NotFound { method: Method, path: String },
    #[error("{method} {path}: unexpected answer {status}")]
    UnexpectedStatus {
        method: Method,
        path: String,
        status: StatusCode,
    },
    #[error("{method} {path}: unreadable answer: {reason}")]
    Malformed {
        method: Method,
        path: String,
        reason: String,
    },
    #[error(
        "item {full_name:?} is not loaded in Jenkins (404 on its reload); \
         a full reload is needed to pick up new items"
    )]
    ItemNotLoaded { full_name: String },
    #[error("{full_name:?} is not an item full name (like \"folder/job\"): {reason}")]
    BadItemName { full_name: String, reason: String },
    #[error(
        "Jenkins still answers 503 {waited:?} after the reload: the reload failed, \
         and Jenkins stays unavailable until it is restarted"
    )]
    ReloadFailed { waited: Duration },
    #[error(transparent)]
    Http(#[from] HttpError),
}

/// What a probe says about Jenkins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Jenkins answers normally.
    Up,
    /// 503 "Please wait while Jenkins is getting ready to work": starting, reloading, or stuck
    /// after a failed reload (that one never ends).
    GettingReady,
    /// No usable answer; the reason in one line.
    Down(String),
}

/// One health probe: the health and the `X-Jenkins-Session` seen, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub health: Health,
    /// Changes on every JVM start: a restart detector.
    pub session: Option<String>,
}

/// Facts from `GET /api/json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub quieting_down: bool,
    pub session: Option<String>,
    /// `NORMAL` or `EXCLUSIVE`, when Jenkins says.
    pub mode: Option<String>,
    pub num_executors: u32,
    /// The names of the top-level items.
    pub jobs: Vec<String>,
}

#[derive(serde::Deserialize)]
struct RawInfo {
    #[serde(rename = "quietingDown")]
    quieting_down: bool,
    #[serde(default)]
    mode: Option<String>,
    #[serde(rename = "numExecutors", default)]
    num_executors: u32,
    #[serde(default)]
    jobs: Vec<RawJob>,
}

#[derive(serde::Deserialize)]
struct RawJob {
    name: String,
}

/// A build waiting in Jenkins' queue (`GET /queue/api/json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueItem {
    pub id: u64,
    /// When it was queued (wall-clock ms).
    pub in_queue_since: u64,
    /// The job's full name, from its URL (`folder/job`), when it is a job of this Jenkins.
    pub job: Option<String>,
    /// How many requests (trigger fires, user clicks) Jenkins folded into this item: its causes,
    /// each listed once per request (`CauseAction.getCauses`); at least 1.
    pub requests: u32,
}

#[derive(serde::Deserialize)]
struct RawQueue {
    #[serde(default)]
    items: Vec<RawQueueItem>,
}

#[derive(serde::Deserialize)]
struct RawQueueItem {
    id: u64,
    #[serde(rename = "inQueueSince", default)]
    in_queue_since: u64,
    #[serde(default)]
    task: Option<RawTask>,
    #[serde(default)]
    actions: Vec<RawAction>,
}

/// One of a queue item's actions; only a `CauseAction` has `causes` (others come as `{}`).
#[derive(serde::Deserialize)]
struct RawAction {
    #[serde(default)]
    causes: Option<Vec<serde::de::IgnoredAny>>,
}

#[derive(serde::Deserialize)]
struct RawTask {
    #[serde(default)]
    url: Option<String>,
}

/// The root, a folder or a job in a `jobs[name,nextBuildNumber,jobs[…]]` tree.
#[derive(serde::Deserialize)]
struct RawJobTree {
    #[serde(default)]
    name: Option<String>,
    #[serde(rename = "nextBuildNumber", default)]
    next_build_number: Option<u64>,
    #[serde(default)]
    jobs: Vec<RawJobTree>,
}

#[derive(serde::Deserialize)]
struct RawComputers {
    #[serde(rename = "busyExecutors")]
    busy_executors: u32,
}

/// A client for one Jenkins. Cheap to clone; `Debug` never shows the token.
#[derive(Clone)]
pub struct JenkinsClient {
    base_url: String,
    user: Option<String>,
    authorization: Option<HeaderValue>,
    timeout: Duration,
    http: HttpClient,
}

impl fmt::Debug for JenkinsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JenkinsClient")
            .field("base_url", &self.base_url)
            .field("user", &self.user)
            .field(
                "api_token",
                &self.authorization.as_ref().map(|_| "<redacted>"),
            )
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl JenkinsClient {
    /// `base_url` is like `http://127.0.0.1:8080` or `http://host:8080/jenkins`. Basic auth is
    /// sent when both `user` and `api_token` are set. `timeout` bounds each request.
    pub fn new(
        base_url: &str,
        user: Option<String>,
        api_token: Option<String>,
        timeout: Duration,
    ) -> Result<Self, JenkinsError> {
        let bad = |reason: &str| JenkinsError::BadUrl {
            url: base_url.to_string(),
            reason: reason.to_string(),
        };
        let uri: hyper::Uri = base_url.parse().map_err(|_| bad("not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad("only http:// URLs are supported"));
        }
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(bad(
                "put credentials in jenkins.user and jenkins.api_token_file, not in the URL",
            ));
        }
        if uri.query().is_some() {
            return Err(bad("the URL must not have a query"));
        }
        let authorization = match (&user, api_token) {
            (Some(user), Some(token)) => {
                let encoded =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"));
                let mut value = HeaderValue::from_str(&format!("Basic {encoded}"))
                    .map_err(|_| bad("cannot build the Authorization header"))?;
                value.set_sensitive(true);
                Some(value)
            }
            _ => None,
        };
        Ok(Self {
            base_url: base_url.trim_end_matches('/').to_string(),
            user,
            authorization,
            timeout,
            http: HttpClient::new(),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Is Jenkins up? `GET /login` with our credentials: 200 is up, 503 is getting ready. Any
    /// other answer (404, an SSO redirect, ...) falls back to `GET /api/json`. No answer is down.
    /// A wrong API token makes every call 401, `/login` included: that reads as down here. The
    /// daemon's health checks use [`Self::health`] instead, which sends no credentials.
    pub async fn probe(&self) -> Probe {
        self.probe_as(true).await
    }

    /// The daemon's health check: like [`Self::probe`] but anonymous, as `jenkins.md` advises.
    /// Every request authenticated by an API token makes Jenkins write
    /// `users/<id>/apiTokenStats.xml` into the shared home, and a standby must write nothing
    /// there; `/login` is open to anonymous users. Credentials problems show up in the calls
    /// that need them (quiet-down, reloads), not as a dead Jenkins.
    pub async fn health(&self) -> Probe {
        self.probe_as(false).await
    }

    async fn probe_as(&self, authenticated: bool) -> Probe {
        let login = match self
            .request_as(Method::GET, "/login", self.timeout, authenticated)
            .await
        {
            Ok(response) => response,
            Err(e) => {
                return Probe {
                    health: Health::Down(e.to_string()),
                    session: None,
                }
            }
        };
        let session = session_of(&login);
        match login.status {
            StatusCode::OK => {
                return Probe {
                    health: Health::Up,
                    session,
                }
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                return Probe {
                    health: Health::GettingReady,
                    session,
                }
            }
            _ => {}
        }
        let fallback = if authenticated {
            "/api/json?tree=mode"
        } else {
            "/whoAmI/api/json"
        };
        match self
            .request_as(Method::GET, fallback, self.timeout, authenticated)
            .await
        {
            Ok(response) => {
                let session = session_of(&response).or(session);
                let health = match response.status {
                    StatusCode::OK => Health::Up,
                    StatusCode::SERVICE_UNAVAILABLE => Health::GettingReady,
                    _ => Health::Down(
                        self.status_error(&Method::GET, fallback, &response)
                            .to_string(),
                    ),
                };
                Probe { health, session }
            }
            Err(e) => Probe {
                health: Health::Down(e.to_string()),
                session,
            },
        }
    }

    /// `GET /api/json`: quiet-down, mode, executors, top-level items and the session.
    pub async fn info(&self) -> Result<Info, JenkinsError> {
        // Only the fields we need: the default `jobs[].color` makes Jenkins load every
        // top-level job's last build.
        let path = "/api/json?tree=mode,quietingDown,numExecutors,jobs[name]";
        let response = self.call(Method::GET, path, &[StatusCode::OK]).await?;
        let raw: RawInfo = parse_json(&Method::GET, path, &response)?;
        Ok(Info {
            quieting_down: raw.quieting_down,
            session: session_of(&response),
            mode: raw.mode,
            num_executors: raw.num_executors,
            jobs: raw.jobs.into_iter().map(|j| j.name).collect(),
        })
    }

    /// `GET /computer/api/json`: how many executors are running a build right now.
    pub async fn busy_executors(&self) -> Result<u32, JenkinsError> {
        let path = "/computer/api/json?tree=busyExecutors";
        let response = self.call(Method::GET, path, &[StatusCode::OK]).await?;
        let raw: RawComputers = parse_json(&Method::GET, path, &response)?;
        Ok(raw.busy_executors)
    }

    /// `GET /queue/api/json`: the builds waiting in the queue.
    pub async fn queue(&self) -> Result<Vec<QueueItem>, JenkinsError> {
        let path =
            "/queue/api/json?tree=items[id,inQueueSince,task[url],actions[causes[shortDescription]]]";
        let response = self.call(Method::GET, path, &[StatusCode::OK]).await?;
        let raw: RawQueue = parse_json(&Method::GET, path, &response)?;
        Ok(raw
            .items
            .into_iter()
            .map(|i| QueueItem {
                id: i.id,
                in_queue_since: i.in_queue_since,
                requests: i
                    .actions
                    .iter()
                    .filter_map(|a| a.causes.as_ref())
                    .map(|c| u32::try_from(c.len()).unwrap_or(u32::MAX))
                    .fold(0u32, u32::saturating_add)
                    .max(1),
                job: i
                    .task
                    .and_then(|t| t.url)
                    .and_then(|url| self.job_of_url(&url)),
            })
            .collect())
    }

    /// `POST /queue/cancelItem?id=N`: true when it was cancelled, false when Jenkins did not
    /// know it (404: it already started, or another call cancelled it).
    pub async fn cancel_queue_item(&self, id: u64) -> Result<bool, JenkinsError> {
        let path = format!("/queue/cancelItem?id={id}");
        // 204 since Jenkins 2.x; older ones redirect.
        match self
            .call(
                Method::POST,
                &path,
                &[StatusCode::NO_CONTENT, StatusCode::FOUND, StatusCode::OK],
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(JenkinsError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every job's in-memory next build number, keyed by full name, through folders down to
    /// `depth` levels below the top. One request: `nextBuildNumber` is a field of the job, so
    /// Jenkins loads no build to answer it.
    pub async fn next_build_numbers(
        &self,
        depth: usize,
    ) -> Result<std::collections::BTreeMap<String, u64>, JenkinsError> {
        let mut tree = String::new();
        for _ in 0..=depth {
            tree.push_str("jobs[name,nextBuildNumber,");
        }
        tree.pop();
        tree.push_str(&"]".repeat(depth + 1));
        let path = format!("/api/json?tree={tree}");
        let response = self.call(Method::GET, &path, &[StatusCode::OK]).await?;
        let raw: RawJobTree = parse_json(&Method::GET, &path, &response)?;
        let mut out = std::collections::BTreeMap::new();
        fn walk(
            jobs: &[RawJobTree],
            prefix: &str,
            out: &mut std::collections::BTreeMap<String, u64>,
        ) {
            for job in jobs {
                let Some(name) = job.name.as_deref() else {
                    continue;
                };
                let full = format!("{prefix}{name}");
                if let Some(next) = job.next_build_number {
                    out.insert(full.clone(), next);
                }
                walk(&job.jobs, &format!("{full}/"), out);
            }
        }
        walk(&raw.jobs, "", &mut out);
        Ok(out)
    }

    /// The full name of the job at `url` (`http://host/jenkins/job/F/job/B/` → `F/B`), when it
    /// is a job URL of this Jenkins.
    pub fn job_of_url(&self, url: &str) -> Option<String> {
        let path = url.parse::<hyper::Uri>().ok()?.path().to_string();
        let base = self
            .base_url
            .parse::<hyper::Uri>()
            .ok()
            .map(|u| u.path().trim_end_matches('/').to_string())
            .unwrap_or_default();
        let rest = path.strip_prefix(&base)?.trim_matches('/');
        let mut names = Vec::new();
        let mut parts = rest.split('/');
        while let Some(part) = parts.next() {
            if part != "job" {
                return None;
            }
            names.push(percent_decode(parts.next()?)?);
        }
        (!names.is_empty()).then(|| names.join("/"))
    }

    /// `POST /quietDown`: no new builds start (in memory only: lost on restart).
    pub async fn quiet_down(&self) -> Result<(), JenkinsError> {
        self.post_redirect("/quietDown").await
    }

    /// `POST /cancelQuietDown`.
    pub async fn cancel_quiet_down(&self) -> Result<(), JenkinsError> {
        self.post_redirect("/cancelQuietDown").await
    }

    /// `POST /reload`: Jenkins answers 302 at once and reloads in the background, answering 503
    /// meanwhile; follow with [`Self::wait_ready`].
    pub async fn reload(&self) -> Result<(), JenkinsError> {
        self.post_redirect("/reload").await
    }

    /// `POST /job/A/job/B/reload` for the item `A/B`: re-reads its `config.xml`. Jenkins cannot
    /// discover new items this way: 404 means [`JenkinsError::ItemNotLoaded`].
    pub async fn reload_item(&self, full_name: &str) -> Result<(), JenkinsError> {
        let path = format!("{}/reload", item_path(full_name)?);
        match self.call(Method::POST, &path, &[StatusCode::OK]).await {
            Ok(_) => Ok(()),
            Err(JenkinsError::NotFound { .. }) => Err(JenkinsError::ItemNotLoaded {
                full_name: full_name.to_string(),
            }),
            Err(e) => Err(e),
        }
    }

    /// After a reload: polls `GET /login` every `poll` until Jenkins stops answering 503 (no
    /// answer counts as not ready either) and returns how long that took. Still 503 after
    /// `bound`: [`JenkinsError::ReloadFailed`] (a failed reload never ends on its own).
    pub async fn wait_ready(
        &self,
        bound: Duration,
        poll: Duration,
    ) -> Result<Duration, JenkinsError> {
        let started = Instant::now();
        let deadline = started + bound;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(JenkinsError::ReloadFailed {
                    waited: started.elapsed(),
                });
            }
            match self
                .request(Method::GET, "/login", self.timeout.min(remaining))
                .await
            {
                Ok(response) if response.status != StatusCode::SERVICE_UNAVAILABLE => {
                    return Ok(started.elapsed());
                }
                Ok(_) => {}
                Err(e) => tracing::debug!("waiting for Jenkins to be ready: {e}"),
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(poll.min(remaining)).await;
        }
    }

    /// A POST whose success is 302 (Jenkins redirects to `/`) or 200.
    async fn post_redirect(&self, path: &str) -> Result<(), JenkinsError> {
        self.call(Method::POST, path, &[StatusCode::FOUND, StatusCode::OK])
            .await
            .map(|_| ())
    }

    /// A request whose status must be one of `ok`; any other status becomes an error.
    async fn call(
        &self,
        method: Method,
        path: &str,
        ok: &[StatusCode],
    ) -> Result<Response, JenkinsError> {
        let response = self.request(method.clone(), path, self.timeout).await?;
        if ok.contains(&response.status) {
            Ok(response)
        } else {
            Err(self.status_error(&method, path, &response))
        }
    }

    /// The error for an answer whose status is not the expected one.
    fn status_error(&self, method: &Method, path: &str, response: &Response) -> JenkinsError {
        let (method, path) = (method.clone(), path.to_string());
        match response.status {
            StatusCode::UNAUTHORIZED => JenkinsError::Unauthorized { method, path },
            // Anonymous POSTs meet the crumb filter first: that 403 means "no credentials" too.
            StatusCode::FORBIDDEN
                if self.authorization.is_some()
                    && String::from_utf8_lossy(&response.body).contains("No valid crumb") =>
            {
                JenkinsError::CrumbRequired { method, path }
            }
            StatusCode::FORBIDDEN => JenkinsError::Forbidden { method, path },
            StatusCode::SERVICE_UNAVAILABLE => JenkinsError::GettingReady { method, path },
            StatusCode::NOT_FOUND => JenkinsError::NotFound { method, path },
            status => JenkinsError::UnexpectedStatus {
                method,
                path,
                status,
            },
        }
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        timeout: Duration,
    ) -> Result<Response, HttpError> {
        self.request_as(method, path, timeout, true).await
    }

    async fn request_as(
        &self,
        method: Method,
        path: &str,
        timeout: Duration,
        authenticated: bool,
    ) -> Result<Response, HttpError> {
        let url = format!("{}{path}", self.base_url);
        let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::with_capacity(1);
        if let (true, Some(value)) = (authenticated, &self.authorization) {
            headers.push((AUTHORIZATION, value.clone()));
        }
        let result = self
            .http
            .send(method.clone(), &url, &headers, Bytes::new(), timeout)
            .await;
        match result {
            // A pooled keep-alive connection may have died with a restarted Jenkins before the
            // pool noticed. A GET is idempotent: retry it once on a fresh connection. A POST is
            // never retried (a second `/reload` would start a second reload).
            Err(HttpError::Transport { .. }) if method == Method::GET => {
                self.http
                    .send(method, &url, &headers, Bytes::new(), timeout)
                    .await
            }
            result => result,
        }
    }
}

fn session_of(response: &Response) -> Option<String> {
    response
        .header(SESSION_HEADER)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn parse_json<T: serde::de::DeserializeOwned>(
    method: &Method,
    path: &str,
    response: &Response,
) -> Result<T, JenkinsError> {
    serde_json::from_slice(&response.body).map_err(|e| JenkinsError::Malformed {
        method: method.clone(),
        path: path.to_string(),
        reason: e.to_string(),
    })
}

/// `folder/job` → `/job/folder/job/job`, each segment percent-encoded.
pub fn item_path(full_name: &str) -> Result<String, JenkinsError> {
    let bad = |reason: &str| JenkinsError::BadItemName {
        full_name: full_name.to_string(),
        reason: reason.to_string(),
    };
    if full_name.is_empty() {
        return Err(bad("it is empty"));
    }
    let mut path = String::new();
    for segment in full_name.split('/') {
        if segment.is_empty() {
            return Err(bad("it has an empty segment"));
        }
        if segment == "." || segment == ".." {
            return Err(bad("`.` and `..` are not item names"));
        }
        if segment.chars().any(char::is_control) {
            return Err(bad("it contains a control character"));
        }
        path.push_str("/job/");
        path.push_str(&percent_encode(segment));
    }
    Ok(path)
}

/// Decodes `%XX` escapes; `None` for a malformed escape or a result that is not UTF-8.
fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_paths_are_split_and_encoded() {
        assert_eq!(item_path("a").unwrap(), "/job/a");
        assert_eq!(item_path("f/g/job-1").unwrap(), "/job/f/job/g/job/job-1");
        assert_eq!(
            item_path("my folder/é%?#").unwrap(),
            "/job/my%20folder/job/%C3%A9%25%3F%23"
        );
        for bad in ["", "/a", "a/", "a//b", "..", "a/./b", "a\nb"] {
            assert!(item_path(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn job_urls_give_full_names() {
        let c = JenkinsClient::new("http://h:8080/jenkins", None, None, Duration::from_secs(1))
            .unwrap();
        assert_eq!(
            c.job_of_url("http://h:8080/jenkins/job/F/job/my%20job/")
                .as_deref(),
            Some("F/my job")
        );
        assert_eq!(
            c.job_of_url("http://h:8080/jenkins/job/a").as_deref(),
            Some("a")
        );
        for not_a_job in [
            "http://h:8080/other/job/a/",
            "http://h:8080/jenkins/view/all/",
            "http://h:8080/jenkins/",
            "http://h:8080/jenkins/job/",
            "http://h:8080/jenkins/job/%ZZ/",
            "not a url",
        ] {
            assert_eq!(c.job_of_url(not_a_job), None, "{not_a_job}");
        }
    }

    #[test]
    fn debug_never_shows_the_token() {
        let client = JenkinsClient::new(
            "http://127.0.0.1:8080/",
            Some("ha-bot".into()),
            Some("s3cr3t-token".into()),
            Duration::from_secs(1),
        )
        .unwrap();
        let debug = format!("{client:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        let encoded = base64::engine::general_purpose::STANDARD.encode("ha-bot:s3cr3t-token");
        assert!(!debug.contains(&encoded), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
        assert_eq!(client.base_url(), "http://127.0.0.1:8080");
    }

    #[test]
    fn bad_base_urls_are_refused() {
        for bad in [
            "",
            "127.0.0.1:8080",
            "https://h",
            "http://u:p@h:8080",
            "http://h:8080/?x=1",
        ] {
            let e = JenkinsClient::new(bad, None, None, Duration::from_secs(1)).unwrap_err();
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }

    #[test]
    fn info_ignores_unknown_fields() {
        let raw: RawInfo = serde_json::from_str(
            r#"{"_class":"hudson.model.Hudson","mode":"NORMAL","numExecutors":2,
                "quietingDown":true,"useCrumbs":true,"jobs":[{"name":"a","color":"blue"}]}"#,
        )
        .unwrap();
        assert!(raw.quieting_down);
        assert_eq!(raw.jobs.len(), 1);
    }
}
