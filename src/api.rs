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

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

use crate::decide::{Command, Role};
use crate::node::Shared;
use crate::peer::{decode_heartbeat, MAX_HEARTBEAT};

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

async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Result<Reply, Infallible> {
    let path = request.uri().path().to_string();
    let method = request.method().clone();
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
            } else if !authorized(
                request.headers(),
                crate::node::live(&shared.live).cluster_token.expose(),
            ) {
                tracing::warn!("refused an unauthenticated POST {path}");
                unauthorized()
            } else {
                match path.as_str() {
                    "/v1/heartbeat" => heartbeat(&shared, request).await,
                    "/failover" => failover(&shared, request).await,
                    "/pause" => pause(&shared, true).await,
                    _ => pause(&shared, false).await,
                }
            }
        }
        _ => text(StatusCode::NOT_FOUND, format!("404 not found: {path}")),
    };
    Ok(response)
}

async fn heartbeat(shared: &Shared, request: Request<Incoming>) -> Reply {
    let body = match Limited::new(request.into_body(), MAX_HEARTBEAT)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("400 bad heartbeat: {e}"),
            )
        }
    };
    match decode_heartbeat(&body, &shared.config.peer.name) {
        Ok(status) => {
            shared.heard_peer(status, None);
            let mine = serde_json::to_vec(&shared.own_status()).unwrap_or_default();
            reply(StatusCode::OK, "application/json", mine)
        }
        Err(e) => {
            tracing::warn!("refused a heartbeat: {e}");
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

async fn failover(shared: &Shared, request: Request<Incoming>) -> Reply {
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
                    format!("bad failover request: {e}"),
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
    let peer = shared.config.peer.name.clone();
    if let Some(to) = &req.to {
        if *to != me && *to != peer {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("unknown node {to:?}: this cluster is {me} and {peer}"),
            );
        }
    }
    let status = shared.cluster_status();
    let mine = &status.nodes[0];
    let theirs = &status.nodes[1];
    let i_hold = mine.role == Role::Active;
    let target = req
        .to
        .clone()
        .unwrap_or_else(|| if i_hold { peer.clone() } else { me.clone() });
    if status.active.as_deref() == Some(target.as_str()) {
        return json(
            StatusCode::OK,
            serde_json::json!({ "ok": true, "message": format!("{target} is already active") }),
        );
    }
    let wait_builds = std::time::Duration::from_secs_f64(req.wait_builds_s);
    if i_hold {
        // We are the active node: hand over to the peer.
        if !req.force {
            if theirs.role == Role::Unreachable {
                return refuse(
                    StatusCode::CONFLICT,
                    format!("refused: {peer} is unreachable (no heartbeat); use --force to hand over anyway"),
                );
            }
            if theirs.reload_failed {
                return refuse(
                    StatusCode::CONFLICT,
                    format!("refused: {peer}'s Jenkins failed its last reload and needs a restart"),
                );
            }
            if !theirs.jenkins_healthy {
                return refuse(
                    StatusCode::CONFLICT,
                    format!(
                        "refused: {peer}'s Jenkins is {} (not healthy)",
                        theirs.jenkins
                    ),
                );
            }
        }
        tracing::info!("planned switchover to {peer} requested by an operator");
        shared.command(Command::Handover {
            to: peer.clone(),
            wait_builds,
        });
        return json(
            StatusCode::ACCEPTED,
            serde_json::json!({ "ok": true, "message": format!("handing over to {peer}") }),
        );
    }
    // We are the target.
    if !req.force && (mine.reload_failed || !mine.jenkins_healthy) {
        return refuse(
            StatusCode::CONFLICT,
            format!(
                "refused: my Jenkins is {} (not healthy)",
                if mine.reload_failed {
                    "stuck after a failed reload"
                } else {
                    &mine.jenkins
                }
            ),
        );
    }
    if theirs.role == Role::Active {
        // The active is reachable: ask it to hand over.
        return forward_failover(shared, &req, &me).await;
    }
    if !req.force {
        return refuse(
            StatusCode::CONFLICT,
            format!(
                "refused: the active node {peer} is unreachable; use --force to take over once its lease ({}) runs out",
                crate::config::show(shared.config.timing.lease_timeout)
            ),
        );
    }
    tracing::warn!("forced takeover requested by an operator: waiting out {peer}'s lease");
    shared.command(Command::ForceTakeover);
    json(
        StatusCode::ACCEPTED,
        serde_json::json!({
            "ok": true,
            "message": format!(
                "{peer} is unreachable: waiting out its lease ({}) before {me} takes over; never sooner",
                crate::config::show(shared.config.timing.lease_timeout)
            )
        }),
    )
}

/// Passes a failover request on to the active peer.
async fn forward_failover(shared: &Shared, req: &FailoverRequest, me: &str) -> Reply {
    let body =
        serde_json::json!({ "to": me, "force": req.force, "wait_builds_s": req.wait_builds_s });
    let mut bearer = match HeaderValue::from_str(&format!(
        "Bearer {}",
        crate::node::live(&shared.live).cluster_token.expose()
    )) {
        Ok(v) => v,
        Err(_) => {
            return refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the cluster token is not a valid header".into(),
            )
        }
    };
    bearer.set_sensitive(true);
    let url = format!("{}/failover", shared.config.peer.url);
    let result = crate::http_client::HttpClient::new()
        .send(
            Method::POST,
            &url,
            &[
                (AUTHORIZATION, bearer),
                (CONTENT_TYPE, HeaderValue::from_static("application/json")),
            ],
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
            format!("the active node did not answer: {e}"),
        ),
    }
}

async fn pause(shared: &Shared, paused: bool) -> Reply {
    let Some(lease) = shared.lease.get().cloned() else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "still starting".into());
    };
    let by = shared.config.node.name.clone();
    match lease.call(move |l| l.set_paused(paused, &by)).await {
        Ok(()) => {
            tracing::warn!(
                "{}",
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

/// Serves the API until the task is dropped.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("API accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(shared.clone(), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .header_read_timeout(std::time::Duration::from_secs(10))
                .timer(hyper_util::rt::TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service);
            let _ = conn.await;
        });
    }
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
