//! The sidecar's HTTP API on `node.listen` (hyper 1).
//!
//! - `GET /active`: 200 on the node that holds the current term, with a valid lease and a Jenkins
//!   that can serve; 503 elsewhere. HAProxy's `option httpchk` points here.
//! - `GET /health`: 200 while the decision loop is alive.
//! - `GET /status`: the cluster as JSON ([`crate::status::ClusterStatus`]).
//! - `POST /v1/heartbeat`: the peer's heartbeat; needs `Authorization: Bearer <cluster token>`,
//!   compared in constant time. Without it: 401, and nothing changes.

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
        "/v1/heartbeat" => {
            if method != Method::POST {
                method_not_allowed("POST")
            } else if !authorized(request.headers(), shared.config.cluster_token.expose()) {
                unauthorized()
            } else {
                heartbeat(&shared, request).await
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
