//! The client of a sidecar's API (the local one, or the one `status --url` names), for the
//! commands that only need the API (`status`, `failover`, `pause`, `resume`). It never touches
//! the shared storage, so it answers within its timeout even while the NFS mount hangs.
//!
//! With `node.tls` it speaks HTTPS: the local sidecar is reached at `node.listen` (`0.0.0.0`
//! and `::` as loopback, so `https://127.0.0.1:7070` by default), and its certificate must name
//! that address (`IP:127.0.0.1` in its subjectAltName); the node's certificate is presented as
//! the client certificate.

use std::time::Duration;

use bytes::Bytes;
use hyper::Method;

use crate::config::Config;
use crate::io::http_client::{bearer_json_headers, HttpClient, HttpError, Response};
use crate::status::ClusterStatus;

/// A sidecar's API: the local one, or the one an operator named.
#[derive(Debug, Clone)]
pub struct Sidecar {
    base: String,
    http: HttpClient,
}

/// Why the sidecar could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    #[error("the sidecar at {url} does not answer: {reason} (is jenkins-ha running?)")]
    NoAnswer { url: String, reason: String },
    #[error("the sidecar at {url}: TLS: {reason}")]
    Tls { url: String, reason: String },
    #[error("the sidecar at {url} answered {status}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    #[error("the sidecar at {url} sent a status this version cannot read: {reason}")]
    Unreadable { url: String, reason: String },
    #[error("auth.token_file: the token cannot be sent in an HTTP header")]
    BadToken,
}

impl Sidecar {
    /// The local sidecar, at `node.listen` (over TLS with `node.tls`).
    pub fn local(config: &Config) -> Self {
        Sidecar::at(&config.node.local_url(), Some(config))
    }

    /// The sidecar at `base` (`http://host:7070`, or `https://` with `node.tls` in `config`).
    pub fn at(base: &str, config: Option<&Config>) -> Self {
        let tls = config
            .and_then(|c| c.node.tls.as_ref())
            .map(|t| t.client.clone());
        Sidecar {
            base: base.trim_end_matches('/').to_string(),
            http: HttpClient::with_tls(tls),
        }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET /status`, as sent (the JSON body) and as read.
    pub async fn status(&self) -> Result<(Bytes, ClusterStatus), SidecarError> {
        let url = format!("{}/status", self.base);
        let r = self
            .http
            .send(Method::GET, &url, &[], Bytes::new(), Duration::from_secs(3))
            .await
            .map_err(|e| no_answer(&url, e))?;
        if !r.status.is_success() {
            return Err(SidecarError::Status {
                url,
                status: r.status.as_u16(),
                message: message(&r),
            });
        }
        let status = serde_json::from_slice(&r.body).map_err(|e| SidecarError::Unreadable {
            url,
            reason: e.to_string(),
        })?;
        Ok((r.body, status))
    }

    /// An authenticated POST with a JSON body.
    pub async fn post(
        &self,
        token: &str,
        path: &str,
        body: String,
    ) -> Result<Response, SidecarError> {
        let url = format!("{}{path}", self.base);
        let headers = bearer_json_headers(token).ok_or(SidecarError::BadToken)?;
        self.http
            .send(
                Method::POST,
                &url,
                &headers,
                Bytes::from(body),
                Duration::from_secs(10),
            )
            .await
            .map_err(|e| no_answer(&url, e))
    }
}

/// A call that got no HTTP answer. A TLS failure is its own line ("... TLS: certificate verify
/// failed: ..."): the sidecar runs, but the two sides do not trust each other.
fn no_answer(url: &str, e: HttpError) -> SidecarError {
    match e {
        HttpError::Tls { reason, .. } => SidecarError::Tls {
            url: url.to_string(),
            reason,
        },
        other => SidecarError::NoAnswer {
            url: url.to_string(),
            reason: other.to_string(),
        },
    }
}

/// The message of an API answer (`{"message": ...}`), or its body.
pub fn message(r: &Response) -> String {
    serde_json::from_slice::<serde_json::Value>(&r.body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(&r.body).trim().to_string())
}
