//! The sidecar's HTTP API on `node.listen` (hyper 1).
//!
//! - `GET /active`: 200 on the node that holds the current term, with a valid lease and a Jenkins
//!   that can serve; 503 elsewhere. HAProxy's `option httpchk` points here.
//! - `GET /health`: 200 while the decision loop is alive.
//! - `GET /status`: the cluster as JSON ([`crate::status::ClusterStatus`]).
//! - `GET /metrics`: Prometheus text.
//! - `POST /v1/heartbeat`, `POST /failover`, `POST /pause`, `POST /resume`: need
//!   `Authorization: Bearer <cluster token>`, compared in constant time. Without it: 401, and
//!   nothing changes.
//!
//! With `node.tls` the API serves HTTPS only ([`super::listener`]); with `require_client_cert`
//! every call but `GET /active` and `GET /health` also needs a client certificate that the
//! cluster CA verified, or it gets a 403 (the bearer token is still needed on top).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

use super::listener::{accept_tls, Caller, RefusalLog};
use super::peer::{decode_heartbeat, MAX_HEARTBEAT};
use super::shared::Shared;
use crate::core::cluster::{self, Switchover};
use crate::core::Command;
use crate::io::http_client::bearer_json_headers;

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn text(status: StatusCode, body: impl Into<String>) -> Reply {
    let mut s = body.into();
    s.push('\n');
    reply(status, "text/plain; charset=utf-8", s)
}

/// Whether the request carries the cluster token as a bearer, compared in constant time.
pub fn authorized(headers: &hyper::HeaderMap, token: &str) -> bool {
    let Some(given) = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    given.trim().as_bytes().ct_eq(token.as_bytes()).into()
}

fn unauthorized() -> Reply {
    let mut r = text(
        StatusCode::UNAUTHORIZED,
        "401 unauthorized: send Authorization: Bearer <the token in auth.token_file>",
    );
    r.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"jenkins-ha\""),
    );
    r
}

fn method_not_allowed(allow: &'static str) -> Reply {
    let mut r = text(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("405 method not allowed: use {allow}"),
    );
    r.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    r
}

fn client_cert_required() -> Reply {
    text(
        StatusCode::FORBIDDEN,
        "403 forbidden: this call needs a client certificate signed by the cluster CA \
         (node.tls.require_client_cert is on); only GET /active and GET /health answer without one",
    )
}

async fn handle(
    shared: Arc<Shared>,
    caller: Caller,
    refusals: Arc<RefusalLog>,
    request: Request<Incoming>,
) -> Result<Reply, Infallible> {
    let path = request.uri().path().to_string();
    let method = request.method().clone();
    let client = caller.addr;
    if caller.lacks_required_cert(&method, &path) {
        refusals.warn(
            client,
            &format!("no client certificate {path}"),
            &format!(
                "refused {method} {} from {client}: no client certificate, and node.tls.require_client_cert is set",
                crate::escape_controls(&path)
            ),
        );
        return Ok(client_cert_required());
    }
    let get_only = |answer: fn(&Shared) -> Reply| {
        if method == Method::GET || method == Method::HEAD {
            answer(&shared)
        } else {
            method_not_allowed("GET")
        }
    };
    let response = match path.as_str() {
        "/active" => get_only(|s| {
            if s.is_active() {
                text(StatusCode::OK, format!("active: {}", s.config.node.name))
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not active: {}", s.config.node.name),
                )
            }
        }),
        "/health" => get_only(|s| {
            if s.loop_alive() {
                text(StatusCode::OK, "ok")
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the decision loop is stuck",
                )
            }
        }),
        "/status" => get_only(|s| {
            let body = serde_json::to_vec_pretty(&s.cluster_status()).unwrap_or_default();
            reply(StatusCode::OK, "application/json", body)
        }),
        "/metrics" => get_only(|s| {
            reply(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                s.render_metrics(),
            )
        }),
        "/v1/heartbeat" | "/failover" | "/pause" | "/resume" => {
            if method != Method::POST {
                method_not_allowed("POST")
            } else if !authorized(request.headers(), shared.live.get().cluster_token.expose()) {
                tracing::warn!("refused an unauthenticated POST {path} from {client}");
                unauthorized()
            } else {
                match path.as_str() {
                    "/v1/heartbeat" => heartbeat(&shared, client, request).await,
                    "/failover" => failover(&shared, client, request).await,
                    "/pause" => pause(&shared, client, true).await,
                    _ => pause(&shared, client, false).await,
                }
            }
        }
        _ => text(StatusCode::NOT_FOUND, format!("404 not found: {path}")),
    };
    Ok(response)
}

async fn heartbeat(shared: &Shared, client: SocketAddr, request: Request<Incoming>) -> Reply {
    let body = match Limited::new(request.into_body(), MAX_HEARTBEAT)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            tracing::warn!("refused a heartbeat from {client}: larger than {MAX_HEARTBEAT} bytes");
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("413 heartbeat too large: at most {MAX_HEARTBEAT} bytes ({e})"),
            );
        }
    };
    let names = shared.config.peer_names();
    let known: Vec<&str> = names.iter().map(String::as_str).collect();
    match decode_heartbeat(&body, &known) {
        Ok(status) => {
            shared.heard_peer(status, None);
            let mine = serde_json::to_vec(&shared.own_status()).unwrap_or_default();
            reply(StatusCode::OK, "application/json", mine)
        }
        Err(e) => {
            tracing::warn!("refused a heartbeat from {client}: {e}");
            text(StatusCode::BAD_REQUEST, format!("400 bad heartbeat: {e}"))
        }
    }
}

/// What `POST /failover` takes.
#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct FailoverRequest {
    /// The node to make active; default: the node that is not active.
    #[serde(default)]
    pub to: Option<String>,
    /// Go ahead although the target looks unhealthy or the active is unreachable (the lease is
    /// still waited out).
    #[serde(default)]
    pub force: bool,
    /// Wait this long for running builds on the active to end before handing over.
    #[serde(default)]
    pub wait_builds_s: f64,
}

fn json(status: StatusCode, value: serde_json::Value) -> Reply {
    reply(status, "application/json", value.to_string())
}

fn refuse(status: StatusCode, message: String) -> Reply {
    json(
        status,
        serde_json::json!({ "ok": false, "message": message }),
    )
}

async fn failover(shared: &Shared, client: SocketAddr, request: Request<Incoming>) -> Reply {
    let body = match Limited::new(request.into_body(), 64 * 1024).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("bad request body: {e}")),
    };
    let req: FailoverRequest = if body.is_empty() {
        FailoverRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "bad failover request: {}",
                        crate::escape_controls(&e.to_string())
                    ),
                )
            }
        }
    };
    if !req.wait_builds_s.is_finite() || req.wait_builds_s < 0.0 || req.wait_builds_s > 86_400.0 {
        return refuse(
            StatusCode::BAD_REQUEST,
            "wait_builds_s must be 0 to 86400".into(),
        );
    }
    let me = shared.config.node.name.clone();
    let status = shared.cluster_status();
    let nodes = status.candidates();
    let plan = cluster::switchover(
        &me,
        req.to.as_deref(),
        req.force,
        &nodes,
        status.active.as_deref(),
    );
    let wait_builds = std::time::Duration::from_secs_f64(req.wait_builds_s);
    match plan {
        Err(why) => {
            tracing::warn!("failover requested by {client} refused: {why}");
            refuse(StatusCode::CONFLICT, why)
        }
        Ok(Switchover::AlreadyActive { target }) => json(
            StatusCode::OK,
            serde_json::json!({
                "ok": true,
                "target": target,
                "message": format!("{target} is already active"),
            }),
        ),
        Ok(Switchover::HandOver { to }) => {
            tracing::info!("planned switchover to {to} requested by an operator at {client}");
            shared.command(Command::Handover {
                to: to.clone(),
                wait_builds,
            });
            json(
                StatusCode::ACCEPTED,
                serde_json::json!({
                    "ok": true,
                    "target": to,
                    "message": format!("handing over to {to}"),
                }),
            )
        }
        Ok(Switchover::Forward { to, via }) => {
            tracing::info!(
                "planned switchover to {to} requested by an operator at {client}; asking the active node {via}"
            );
            forward_failover(shared, &req, &to, &via).await
        }
        Ok(Switchover::ForceTakeover) => {
            let lease = crate::config::show(shared.config.timing.lease_timeout);
            tracing::warn!(
                "forced takeover requested by an operator at {client}: waiting out the active node's lease"
            );
            shared.command(Command::ForceTakeover);
            json(
                StatusCode::ACCEPTED,
                serde_json::json!({
                    "ok": true,
                    "target": me,
                    "message": format!(
                        "the active node is unreachable: waiting out its lease ({lease}) before {me} takes over; never sooner"
                    )
                }),
            )
        }
    }
}

/// Passes a failover request on to the active node `via`.
async fn forward_failover(shared: &Shared, req: &FailoverRequest, to: &str, via: &str) -> Reply {
    let body =
        serde_json::json!({ "to": to, "force": req.force, "wait_builds_s": req.wait_builds_s });
    let Some(headers) = bearer_json_headers(shared.live.get().cluster_token.expose()) else {
        return refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the cluster token is not a valid header".into(),
        );
    };
    let Some(peer) = shared.config.peers.iter().find(|p| p.name == via) else {
        return refuse(
            StatusCode::BAD_GATEWAY,
            format!("{via} is not a known node"),
        );
    };
    let url = format!("{}/failover", peer.url);
    let result = shared
        .sidecar_client()
        .send(
            Method::POST,
            &url,
            &headers,
            Bytes::from(body.to_string()),
            std::time::Duration::from_secs(5),
        )
        .await;
    match result {
        Ok(r) => {
            let mut out = reply(r.status, "application/json", r.body);
            *out.status_mut() = r.status;
            out
        }
        Err(e) => refuse(
            StatusCode::BAD_GATEWAY,
            format!("the active node {via} did not answer: {e}"),
        ),
    }
}

async fn pause(shared: &Shared, client: SocketAddr, paused: bool) -> Reply {
    let Some(lease) = shared.lease.get().cloned() else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "still starting".into());
    };
    let by = shared.config.node.name.clone();
    match lease.call(move |l| l.set_paused(paused, &by)).await {
        Ok(()) => {
            tracing::warn!(
                "{} (from {client})",
                if paused {
                    "cluster PAUSED by an operator: no automatic failover until resumed"
                } else {
                    "cluster resumed by an operator: automatic failover is back on"
                }
            );
            shared.wake.notify_one();
            json(
                StatusCode::OK,
                serde_json::json!({ "ok": true, "paused": paused }),
            )
        }
        Err(e) => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot write the pause flag: {e}"),
        ),
    }
}

/// Serves the API until the task is dropped; the connections in flight are dropped with it.
/// Speaks HTTPS when `node.tls` was set at start (each connection takes the certificates that
/// are current when it is accepted, so a SIGHUP rotates them for the next connections).
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let tls_on = shared.live.tls().is_some();
    let refusals = Arc::new(RefusalLog::new());
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (stream, client) = match accepted {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("API accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let refusals = refusals.clone();
        connections.spawn(async move {
            let tls = if tls_on { shared.live.tls() } else { None };
            match tls {
                None => serve_connection(stream, Caller::plain(client), shared, refusals).await,
                Some(tls) => {
                    let rotated = shared.live.tls_changes();
                    if let Some((stream, caller)) =
                        accept_tls(stream, client, &tls, &refusals).await
                    {
                        serve_tls_connection(stream, caller, shared, refusals, rotated).await;
                    }
                }
            }
        });
    }
}

/// Serves HTTP/1.1 on one TLS connection until it closes, or until SIGHUP brings new
/// certificates: the connection is then closed after the request in flight, and the client
/// reconnects and verifies (and is verified with) the new ones. Without that, a keep-alive
/// connection (heartbeats every interval) would keep the old certificates for ever.
async fn serve_tls_connection(
    stream: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    caller: Caller,
    shared: Arc<Shared>,
    refusals: Arc<RefusalLog>,
    mut rotated: tokio::sync::watch::Receiver<u64>,
) {
    let service = hyper::service::service_fn(move |req| {
        handle(shared.clone(), caller, refusals.clone(), req)
    });
    let conn = http1_builder().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    rotated.borrow_and_update();
    tokio::select! {
        _ = conn.as_mut() => return,
        changed = rotated.changed() => {
            if changed.is_ok() {
                conn.as_mut().graceful_shutdown();
            }
        }
    }
    let _ = conn.await;
}

fn http1_builder() -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .header_read_timeout(std::time::Duration::from_secs(10))
        .timer(hyper_util::rt::TokioTimer::new());
    builder
}

/// Serves HTTP/1.1 on one plain connection until it closes.
async fn serve_connection<S>(
    stream: S,
    caller: Caller,
    shared: Arc<Shared>,
    refusals: Arc<RefusalLog>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        handle(shared.clone(), caller, refusals.clone(), req)
    });
    let _ = http1_builder()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_must_match_exactly() {
        let mut h = hyper::HeaderMap::new();
        assert!(!authorized(&h, "tok"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer tok"));
        assert!(authorized(&h, "tok"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer tok2"));
        assert!(!authorized(&h, "tok"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic tok"));
        assert!(!authorized(&h, "tok"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert!(!authorized(&h, "tok"));
    }
}
