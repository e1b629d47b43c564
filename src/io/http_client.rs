//! A small HTTP/1.1 client on hyper for the sidecar's outgoing calls (Jenkins, the peer) and the
//! CLI's calls to a sidecar.
//!
//! Every call has a deadline, reads the whole (bounded) body and never follows redirects:
//! Jenkins answers 302 to `/reload` and `/quietDown`, and that 302 *is* the success signal.
//!
//! `https://` works only in a client made [`HttpClient::with_tls`] from `node.tls`: the cluster
//! CA is then the only root, and the node's certificate is presented when the other side asks
//! for a client certificate. A TLS failure comes back as [`HttpError::Tls`], one line naming the
//! URL and the cause ("certificate verify failed: unknown issuer ...").

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

/// Bodies larger than this are refused: nothing we talk to has a reason to send more.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// Why an HTTP call failed before a status code came back.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("bad URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("{method} {url}: no answer within {timeout:?}")]
    Timeout {
        method: Method,
        url: String,
        timeout: Duration,
    },
    #[error("{method} {url}: TLS: {reason}")]
    Tls {
        method: Method,
        url: String,
        reason: String,
    },
    #[error("{method} {url}: {reason}")]
    Transport {
        method: Method,
        url: String,
        reason: String,
    },
}

/// A complete answer: status, headers and the body read to its end.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    /// A header's value as text, if present and printable.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A cheap-to-clone client with keep-alive pooling.
#[derive(Clone)]
pub struct HttpClient {
    inner: Inner,
}

/// `http://` only, or `http://` and `https://` with the node's TLS configuration.
#[derive(Clone)]
enum Inner {
    Plain(Client<HttpConnector, Full<Bytes>>),
    Tls(Client<HttpsConnector<HttpConnector>, Full<Bytes>>),
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.inner {
            Inner::Plain(_) => "HttpClient(http)",
            Inner::Tls(_) => "HttpClient(http, https)",
        })
    }
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClient {
    /// A client for `http://` URLs only.
    pub fn new() -> Self {
        Self::with_tls(None)
    }

    /// A client that also speaks `https://` with `tls` (from `node.tls`: the cluster CA as the
    /// only root, the node's certificate as the client certificate). Without it, an `https://`
    /// URL is refused before anything is sent.
    pub fn with_tls(tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(4);
        let inner = match tls {
            None => Inner::Plain(builder.build(connector)),
            Some(config) => {
                connector.enforce_http(false);
                let https = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config((*config).clone())
                    .https_or_http()
                    .enable_http1()
                    .wrap_connector(connector);
                Inner::Tls(builder.build(https))
            }
        };
        Self { inner }
    }

    /// Sends one request and reads the whole answer, all within `timeout`.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(HeaderName, HeaderValue)],
        body: Bytes,
        timeout: Duration,
    ) -> Result<Response, HttpError> {
        let uri: Uri =
            url.parse()
                .map_err(|e: hyper::http::uri::InvalidUri| HttpError::BadUrl {
                    url: url.to_string(),
                    reason: e.to_string(),
                })?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") if matches!(self.inner, Inner::Tls(_)) => {}
            Some("https") => {
                return Err(HttpError::BadUrl {
                    url: url.to_string(),
                    reason:
                        "https:// needs node.tls in the config (its ca_file verifies the server)"
                            .into(),
                })
            }
            _ => {
                return Err(HttpError::BadUrl {
                    url: url.to_string(),
                    reason: "only http:// and https:// URLs are supported".into(),
                })
            }
        }
        let mut builder = hyper::Request::builder().method(method.clone()).uri(uri);
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|e| HttpError::BadUrl {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
        let call = async {
            let response = match &self.inner {
                Inner::Plain(client) => client.request(request).await,
                Inner::Tls(client) => client.request(request).await,
            }
            .map_err(|e| transport(&method, url, &e))?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map_err(|e| HttpError::Transport {
                    method: method.clone(),
                    url: url.to_string(),
                    reason: format!("reading the body: {e}"),
                })?
                .to_bytes();
            Ok(Response {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(HttpError::Timeout {
                method,
                url: url.to_string(),
                timeout,
            }),
        }
    }
}

/// Flattens hyper's nested error chain into one readable line ("connection refused", ...); a
/// TLS failure anywhere in it becomes [`HttpError::Tls`] with the cause alone.
fn transport(method: &Method, url: &str, error: &(dyn std::error::Error + 'static)) -> HttpError {
    if let Some(reason) = crate::io::tls::find_in_chain(error) {
        return HttpError::Tls {
            method: method.clone(),
            url: url.to_string(),
            reason,
        };
    }
    let mut reason = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        reason = format!("{reason}: {inner}");
        source = inner.source();
    }
    HttpError::Transport {
        method: method.clone(),
        url: url.to_string(),
        reason,
    }
}

/// The `Authorization: Bearer <token>` header of the cluster token, marked sensitive so that
/// hyper never shows it. `None` when the token cannot be sent in a header at all.
pub fn bearer(token: &str) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// The headers of an authenticated JSON call to a sidecar: the bearer and the content type.
pub fn bearer_json_headers(token: &str) -> Option<Vec<(HeaderName, HeaderValue)>> {
    Some(vec![
        (hyper::header::AUTHORIZATION, bearer(token)?),
        (
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ),
    ])
}
