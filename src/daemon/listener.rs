//! The API's connections on `node.listen`: plain HTTP, or TLS with `node.tls`.
//!
//! With TLS, each connection is checked before hyper sees it: a plain-HTTP request on the HTTPS
//! port gets a plain `400` saying to use `https://` (so an HAProxy check without `check-ssl`
//! shows a reason, not a reset), and a failed handshake (a client certificate from another CA,
//! an expired one, a client that does not trust our certificate) is logged with the client's
//! address and the cause. The API then learns whether the client presented a certificate that
//! verified, for `require_client_cert` ([`Caller`]).
//!
//! Refusals are logged at WARN once a minute per client address and cause ([`RefusalLog`]):
//! HAProxy checks every second, and a misconfigured check must not flood the journal.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::core::Mono;
use crate::io::clock;
use crate::io::tls::{describe, describe_certificate, NodeTls};
use crate::lock;

/// How long a client has to send its first bytes and finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A refusal already logged for a client and cause is logged again after this long at the
/// earliest.
const REPEAT_AFTER: Duration = Duration::from_secs(60);

/// Who is calling the API, as far as the connection tells.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub addr: SocketAddr,
    /// The connection is TLS and the client presented a certificate that the cluster CA
    /// verified (a certificate that does not verify fails the handshake).
    pub client_cert: bool,
    /// `node.tls.require_client_cert` was on when the connection was accepted.
    pub require_client_cert: bool,
}

impl Caller {
    /// A caller on a plain HTTP connection.
    pub fn plain(addr: SocketAddr) -> Caller {
        Caller {
            addr,
            client_cert: false,
            require_client_cert: false,
        }
    }

    /// Whether this call must be refused for want of a client certificate: with
    /// `require_client_cert`, everything but `GET`/`HEAD` of `/active` and `/health` needs one.
    pub fn lacks_required_cert(&self, method: &hyper::Method, path: &str) -> bool {
        let exempt = matches!(path, "/active" | "/health")
            && (method == hyper::Method::GET || method == hyper::Method::HEAD);
        self.require_client_cert && !self.client_cert && !exempt
    }
}

/// Logs each refusal at WARN, but the same (client address, cause) at most once a minute.
#[derive(Debug, Default)]
pub struct RefusalLog {
    last: Mutex<HashMap<(IpAddr, String), Mono>>,
}

impl RefusalLog {
    pub fn new() -> RefusalLog {
        RefusalLog::default()
    }

    /// Logs `line` unless the same `cause` from `client`'s address was logged within the last
    /// minute. Returns whether it logged.
    pub fn warn(&self, client: SocketAddr, cause: &str, line: &str) -> bool {
        let now = clock::now();
        let mut last = lock(&self.last);
        let key = (client.ip(), cause.to_string());
        if last
            .get(&key)
            .is_some_and(|at| now.saturating_sub(*at) < REPEAT_AFTER)
        {
            return false;
        }
        if last.len() >= 1024 {
            last.retain(|_, at| now.saturating_sub(*at) < REPEAT_AFTER);
            if last.len() >= 1024 {
                last.clear();
            }
        }
        last.insert(key, now);
        tracing::warn!(
            "{line} (repeats from {} are logged once a minute)",
            client.ip()
        );
        true
    }
}

/// The plain answer to an HTTP request sent to the HTTPS port.
const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Connection: close\r\n\
Content-Length: 93\r\n\
\r\n\
400 this jenkins-ha API serves HTTPS only (node.tls is set): use https:// instead of http://\n";

/// Accepts one TLS connection: `None` when the client sent plain HTTP (answered with a 400),
/// sent nothing, or failed the handshake (logged through `refusals`).
pub async fn accept_tls(
    stream: TcpStream,
    client: SocketAddr,
    tls: &NodeTls,
    refusals: &RefusalLog,
) -> Option<(TlsStream<TcpStream>, Caller)> {
    // A TLS connection opens with a handshake record (0x16); an HTTP request with a method name.
    let mut first = [0u8; 1];
    let peeked = tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await;
    match peeked {
        Ok(Ok(1)) if first[0] == 0x16 => {}
        Ok(Ok(1)) if first[0].is_ascii_uppercase() => {
            refusals.warn(
                client,
                "plain http",
                &format!(
                    "refused a plain-HTTP request from {client}: this API serves HTTPS only (node.tls is set); \
                     the client (an HAProxy check without check-ssl? a peer's http:// URL?) must use https://"
                ),
            );
            let mut stream = stream;
            let _ = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
                let _ = stream.write_all(PLAIN_HTTP_ANSWER).await;
                let _ = stream.shutdown().await;
            })
            .await;
            return None;
        }
        // Closed at once (a TCP-only check), silent, or not TLS at all: nothing to say.
        _ => return None,
    }
    let acceptor = TlsAcceptor::from(tls.server.clone());
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => {
            let client_cert = stream
                .get_ref()
                .1
                .peer_certificates()
                .is_some_and(|certs| !certs.is_empty());
            Some((
                stream,
                Caller {
                    addr: client,
                    client_cert,
                    require_client_cert: tls.require_client_cert,
                },
            ))
        }
        Ok(Err(e)) => {
            let cause = handshake_failure(&e);
            refusals.warn(
                client,
                &cause,
                &format!("refused a TLS connection from {client}: {cause}"),
            );
            None
        }
        Err(_) => {
            tracing::debug!(
                "TLS handshake with {client} did not finish within {HANDSHAKE_TIMEOUT:?}"
            );
            None
        }
    }
}

/// Why a handshake failed, from the server's side: a client certificate that did not verify is
/// named as such.
fn handshake_failure(e: &std::io::Error) -> String {
    let tls = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match tls {
        Some(rustls::Error::InvalidCertificate(c)) => format!(
            "its client certificate failed verification: {}",
            describe_certificate(c)
        ),
        Some(other) => describe(other),
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_active_and_health_answer_without_a_required_certificate() {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let caller = Caller {
            addr,
            client_cert: false,
            require_client_cert: true,
        };
        use hyper::Method;
        assert!(!caller.lacks_required_cert(&Method::GET, "/active"));
        assert!(!caller.lacks_required_cert(&Method::HEAD, "/health"));
        assert!(caller.lacks_required_cert(&Method::POST, "/active"));
        assert!(caller.lacks_required_cert(&Method::GET, "/status"));
        assert!(caller.lacks_required_cert(&Method::GET, "/metrics"));
        assert!(caller.lacks_required_cert(&Method::POST, "/v1/heartbeat"));
        assert!(caller.lacks_required_cert(&Method::GET, "/active/"));
        let with_cert = Caller {
            client_cert: true,
            ..caller
        };
        assert!(!with_cert.lacks_required_cert(&Method::GET, "/status"));
        assert!(!Caller::plain(addr).lacks_required_cert(&Method::GET, "/status"));
    }

    #[test]
    fn the_plain_http_answer_has_the_right_length() {
        let text = std::str::from_utf8(PLAIN_HTTP_ANSWER).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(body.len(), length);
    }

    #[test]
    fn a_refusal_is_logged_once_a_minute_per_client_and_cause() {
        let log = RefusalLog::new();
        let a: SocketAddr = "10.0.0.5:40000".parse().unwrap();
        let a2: SocketAddr = "10.0.0.5:40001".parse().unwrap();
        let b: SocketAddr = "10.0.0.6:40000".parse().unwrap();
        assert!(log.warn(a, "plain http", "x"));
        assert!(!log.warn(a2, "plain http", "x"), "same address, other port");
        assert!(log.warn(a, "unknown ca", "y"));
        assert!(log.warn(b, "plain http", "x"));
    }
}
