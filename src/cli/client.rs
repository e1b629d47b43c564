//! The client of the local sidecar's API, for the commands that only need the API (`status`,
//! `failover`, `pause`, `resume`). It never touches the shared storage, so it answers within its
//! timeout even while the NFS mount hangs.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use hyper::Method;

use crate::config::Config;
use crate::io::http_client::{bearer_json_headers, HttpClient, Response};
use crate::status::ClusterStatus;

/// The address to reach our own API at: `0.0.0.0` and `::` become loopback.
pub fn local_api(listen: SocketAddr) -> SocketAddr {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    addr
}

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
    #[error("the sidecar at {url} answered {status}")]
    Status { url: String, status: u16 },
    #[error("the sidecar at {url} sent a status this version cannot read: {reason}")]
    Unreadable { url: String, reason: String },
    #[error("auth.token_file: the token cannot be sent in an HTTP header")]
    BadToken,
}

impl Sidecar {
    /// The local sidecar, at `node.listen`.
    pub fn local(config: &Config) -> Self {
        Sidecar::at(&format!("http://{}", local_api(config.node.listen)))
    }

    /// The sidecar at `base` (`http://host:7070`).
    pub fn at(base: &str) -> Self {
        Sidecar {
            base: base.trim_end_matches('/').to_string(),
            http: HttpClient::new(),
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
            .map_err(|e| SidecarError::NoAnswer {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        if !r.status.is_success() {
            return Err(SidecarError::Status {
                url,
                status: r.status.as_u16(),
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
            .map_err(|e| SidecarError::NoAnswer {
                url,
                reason: e.to_string(),
            })
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
