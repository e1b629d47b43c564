//! Heartbeats to the other nodes' sidecars: every interval, and at once after a release, a
//! claim or a hand-over.
//!
//! A heartbeat is `POST /v1/heartbeat` with our [`NodeStatus`] and the cluster token as a bearer;
//! the other node answers with its own status, so one round trip tells both sides about each
//! other and gives the RTT. Heartbeats make takeovers faster and feed `status`; they never cause
//! one.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use tokio::sync::watch;

use super::shared::Shared;
use crate::io::http_client::{bearer_json_headers, HttpClient};
use crate::status::NodeStatus;

/// The largest heartbeat body accepted (a status is well under 4 KiB).
pub const MAX_HEARTBEAT: usize = 64 * 1024;

/// Why a heartbeat body was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeartbeatError {
    #[error("heartbeat body is larger than {MAX_HEARTBEAT} bytes")]
    TooLarge,
    #[error("heartbeat body is not a node status: {0}")]
    Malformed(String),
    #[error("heartbeat from {got:?}, which is not a node of this cluster ({expected})")]
    WrongNode { got: String, expected: String },
}

/// Decodes and checks a heartbeat body from one of the `known` nodes. Never panics, whatever
/// the bytes.
pub fn decode_heartbeat(body: &[u8], known: &[&str]) -> Result<NodeStatus, HeartbeatError> {
    if body.len() > MAX_HEARTBEAT {
        return Err(HeartbeatError::TooLarge);
    }
    // serde_json quotes the offending value (an unknown role, say) as it was decoded: escape it,
    // or a `\n` in the JSON becomes a line break in our log.
    let status: NodeStatus = serde_json::from_slice(body)
        .map_err(|e| HeartbeatError::Malformed(crate::escape_controls(&e.to_string())))?;
    if !known.contains(&status.name.as_str()) {
        return Err(HeartbeatError::WrongNode {
            got: crate::escape_controls(&status.name),
            expected: known.join(", "),
        });
    }
    Ok(status)
}

/// Sends our heartbeats to one other node and records its answers.
pub struct PeerLink {
    pub url: String,
    pub peer_name: String,
    pub interval: Duration,
    pub shared: Arc<Shared>,
    /// Changes when a heartbeat must go at once.
    pub now: watch::Receiver<u64>,
}

impl PeerLink {
    pub async fn run(mut self) {
        // Rebuilt when SIGHUP brings new certificates, so that new connections present them.
        let mut tls = self.shared.live.tls();
        let mut http = HttpClient::with_tls(tls.as_ref().map(|t| t.client.clone()));
        let url = format!("{}/v1/heartbeat", self.url);
        let mut last_error: Option<String> = None;
        loop {
            let current = self.shared.live.tls();
            if current != tls {
                tls = current;
                http = HttpClient::with_tls(tls.as_ref().map(|t| t.client.clone()));
            }
            // Read each time: SIGHUP may have brought a new token.
            let token = self.shared.live.get().cluster_token;
            let Some(headers) = bearer_json_headers(token.expose()) else {
                tracing::error!(
                    "the cluster token cannot be sent in an HTTP header; heartbeats are off"
                );
                return;
            };
            let mine = self.shared.own_status();
            let body = Bytes::from(serde_json::to_vec(&mine).unwrap_or_default());
            let started = std::time::Instant::now();
            let result = http
                .send(
                    Method::POST,
                    &url,
                    &headers,
                    body,
                    self.interval.max(Duration::from_millis(200)),
                )
                .await;
            let rtt = started.elapsed();
            let error = match result {
                Ok(r) if r.status == StatusCode::OK => {
                    match decode_heartbeat(&r.body, &[self.peer_name.as_str()]) {
                        Ok(status) => {
                            self.shared.heard_peer(status, Some(rtt));
                            None
                        }
                        Err(e) => Some(format!("bad answer: {e}")),
                    }
                }
                Ok(r) if r.status == StatusCode::UNAUTHORIZED => Some(
                    "it refused our token (401): auth.token_file differs between the nodes".into(),
                ),
                Ok(r) => Some(format!("it answered {}: {}", r.status, first_line(&r.body))),
                Err(e) => Some(e.to_string()),
            };
            self.shared.heartbeat_result(&self.peer_name, error.clone());
            if error != last_error {
                match &error {
                    Some(e) => tracing::warn!("heartbeat to {}: {e}", self.peer_name),
                    None => tracing::info!("heartbeats to {} go through", self.peer_name),
                }
                last_error = error;
            }
            tokio::select! {
                changed = self.now.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
    }
}

/// Sends our status to every other node once, at the same time, and waits for the answers
/// (each bounded by an interval): the stop path uses it so that a release is heard at once.
pub async fn tell_everyone(shared: &Arc<Shared>) {
    let token = shared.live.get().cluster_token;
    let Some(headers) = bearer_json_headers(token.expose()) else {
        return;
    };
    let body = Bytes::from(serde_json::to_vec(&shared.own_status()).unwrap_or_default());
    let timeout = shared
        .config
        .timing
        .interval
        .max(Duration::from_millis(200));
    let http = shared.sidecar_client();
    let sends = shared.config.peers.iter().map(|peer| {
        let url = format!("{}/v1/heartbeat", peer.url);
        let (http, headers, body) = (http.clone(), headers.clone(), body.clone());
        async move {
            if let Err(e) = http.send(Method::POST, &url, &headers, body, timeout).await {
                tracing::debug!("last heartbeat to {}: {e}", peer.name);
            }
        }
    });
    futures_util::future::join_all(sends).await;
}

/// The first line of an answer's body, escaped and cut to 200 characters, for the log.
fn first_line(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line = text.lines().next().unwrap_or("").trim();
    let cut: String = line.chars().take(200).collect();
    crate::escape_controls(&cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_decode_or_fail_with_a_reason() {
        let good = serde_json::to_vec(&NodeStatus::unreachable("b")).unwrap();
        assert_eq!(decode_heartbeat(&good, &["b"]).unwrap().name, "b");
        assert!(matches!(
            decode_heartbeat(&good, &["c"]),
            Err(HeartbeatError::WrongNode { .. })
        ));
        for bad in [
            &b""[..],
            b"{",
            b"null",
            b"[1,2]",
            b"{\"name\":1}",
            b"\xff\xfe",
        ] {
            assert!(
                matches!(
                    decode_heartbeat(bad, &["b"]),
                    Err(HeartbeatError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
        assert_eq!(
            decode_heartbeat(&vec![b' '; MAX_HEARTBEAT + 1], &["b"]),
            Err(HeartbeatError::TooLarge)
        );
    }

    #[test]
    fn a_refused_heartbeat_is_one_line() {
        // Found by the heartbeat fuzz target: serde_json quotes an unknown role as decoded, so
        // the `\n` escape in the JSON became a line break in the error (and in our log).
        let body = br#"{"name":"b","role":"sta\nndby\r\u2028","term":1,"jenkins":"up"}"#;
        let e = decode_heartbeat(body, &["b"]).unwrap_err().to_string();
        assert!(!e.contains(['\n', '\r', '\u{2028}']), "{e:?}");
        assert!(e.contains(r"unknown variant `sta\nndby\r\u{2028}`"), "{e}");
    }
}
