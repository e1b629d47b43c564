//! The HAProxy runtime-API client: read `show servers state`, set a server `ready`/`drain`/`maint`,
//! and reconcile every listed socket towards "this server ready, that one in maint".
//!
//! One command per connection: connect, send `set severity-output number; <command>\n`, close the
//! write half, read to EOF (HAProxy closes a non-interactive CLI connection after its reply), all
//! within one timeout. The severity prefix (`[3]: `) is how an error is told apart from output.
//!
//! The parsers ([`check_reply`], [`parse_servers_state`], [`plan_reconcile`]) do no IO, so they
//! can be unit-tested and fuzzed on their own.
//!
//! Facts this module relies on (checked against HAProxy 2.6.12):
//! - `srv_admin_state` bits: 0x01 maint forced from the CLI, 0x02 maint inherited through `track`,
//!   0x04 `disabled` in the configuration, 0x08 drain forced from the CLI, 0x10 inherited drain,
//!   0x20 maint after a DNS resolution failure. HAProxy's own maint mask is 0x23: 0x04 is only a
//!   marker. A `disabled` server starts as 0x05 and `set server .. state ready` leaves 0x04 set
//!   while the server is UP and takes traffic, so 0x04 alone counts as ready here.
//! - A tracking server (`track jenkins_http/jenkins01`) accepts `set server .. state` for its own
//!   bits (0x01, 0x08) and independently inherits 0x02/0x10 from the tracked server. `ready`
//!   on it cannot clear the inherited bits: the tracked server must become ready first.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::clock;
use crate::core::Mono;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

/// Replies larger than this are refused (a `show servers state` row is about 100 bytes).
const MAX_REPLY: u64 = 8 * 1024 * 1024;

/// `srv_admin_state` bits, named as in HAProxy's `enum srv_admin`.
pub mod admin_bits {
    /// Maintenance forced from the CLI (or an agent).
    pub const FMAINT: u8 = 0x01;
    /// Maintenance inherited from a tracked server.
    pub const IMAINT: u8 = 0x02;
    /// The server is `disabled` in the configuration (a marker: it does not keep it in maint).
    pub const CMAINT: u8 = 0x04;
    /// Drain forced from the CLI.
    pub const FDRAIN: u8 = 0x08;
    /// Drain inherited from a tracked server.
    pub const IDRAIN: u8 = 0x10;
    /// Maintenance after a DNS resolution failure.
    pub const RMAINT: u8 = 0x20;
    /// Every bit that keeps a server in maintenance (HAProxy's `SRV_ADMF_MAINT`).
    pub const MAINT: u8 = FMAINT | IMAINT | RMAINT;
    /// Every bit that keeps a server draining (HAProxy's `SRV_ADMF_DRAIN`).
    pub const DRAIN: u8 = FDRAIN | IDRAIN;
}

/// Why a talk with HAProxy failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HaproxyError {
    #[error("bad HAProxy socket {input:?}: {reason}")]
    BadEndpoint { input: String, reason: String },
    #[error("cannot connect to the HAProxy socket {endpoint}: {reason}")]
    Connect { endpoint: String, reason: String },
    #[error("HAProxy socket {endpoint}: no complete answer to `{command}` within {timeout:?}")]
    Timeout {
        endpoint: String,
        command: String,
        timeout: Duration,
    },
    #[error("HAProxy socket {endpoint}: {reason} during `{command}`")]
    Io {
        endpoint: String,
        command: String,
        reason: String,
    },
    #[error("HAProxy rejected the command: {message}")]
    Rejected { message: String },
    #[error(
        "HAProxy answered \"Permission denied\": the stats socket's level is not admin \
         (add `level admin` to its `stats socket` line)"
    )]
    PermissionDenied,
    #[error("malformed reply from HAProxy: {0}")]
    Malformed(String),
    #[error("HAProxy has no backend {backend:?} (or it has no servers)")]
    NoSuchBackend { backend: String },
    #[error("HAProxy backend {backend:?} has no server {server:?}")]
    NoSuchServer { backend: String, server: String },
    #[error("{value:?} is not a usable HAProxy name: it must be non-empty, without spaces, `;`, `/` or control characters")]
    InvalidName { value: String },
    #[error("{0:?} is not one HAProxy command: it must be non-empty, without newlines or `;`")]
    InvalidCommand(String),
    #[error("the ready and the maint server are the same ({0:?})")]
    SameServer(String),
    #[error("the fencing deadline has passed: {skipped} write(s) to HAProxy not sent")]
    DeadlinePassed { skipped: usize },
}

/// Where an HAProxy runtime API listens: a unix socket path, or `tcp://HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Unix(PathBuf),
    /// `HOST:PORT`, without the `tcp://` prefix.
    Tcp(String),
}

impl FromStr for Endpoint {
    type Err = HaproxyError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| HaproxyError::BadEndpoint {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        if let Some(addr) = input.strip_prefix("tcp://") {
            let Some((host, port)) = addr.rsplit_once(':') else {
                return Err(bad("expected tcp://HOST:PORT"));
            };
            if host.is_empty() || host == "[]" {
                return Err(bad("the host is empty"));
            }
            if host.chars().any(|c| c.is_whitespace() || c == '/') {
                return Err(bad("the host contains a space or `/`"));
            }
            match port.parse::<u16>() {
                Ok(p) if p > 0 => Ok(Endpoint::Tcp(addr.to_string())),
                _ => Err(bad("the port must be a number from 1 to 65535")),
            }
        } else if input.contains("://") {
            Err(bad(
                "only unix socket paths and tcp://HOST:PORT are supported",
            ))
        } else if input.starts_with('/') {
            Ok(Endpoint::Unix(PathBuf::from(input)))
        } else {
            Err(bad("a unix socket must be an absolute path"))
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(path) => write!(f, "{}", path.display()),
            Endpoint::Tcp(addr) => write!(f, "tcp://{addr}"),
        }
    }
}

/// The administrative states the CLI can set with `set server <b>/<s> state <x>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdminState {
    Ready,
    Drain,
    Maint,
}

impl AdminState {
    pub fn as_str(self) -> &'static str {
        match self {
            AdminState::Ready => "ready",
            AdminState::Drain => "drain",
            AdminState::Maint => "maint",
        }
    }
}

impl fmt::Display for AdminState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of `show servers state`: the columns the sidecar needs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServerState {
    pub backend: String,
    pub server: String,
    /// 0 stopped, 1 starting, 2 running, 3 stopping (health, set by checks).
    pub op_state: u8,
    /// The admin bitmask; see [`admin_bits`].
    pub admin_state: u8,
}

impl ServerState {
    /// In maintenance: forced from the CLI, inherited through `track`, or after a DNS failure.
    /// A server `disabled` in the configuration starts with 0x01 set as well.
    pub fn is_maint(&self) -> bool {
        self.admin_state & admin_bits::MAINT != 0
    }

    /// Draining (forced or inherited) and not in maintenance.
    pub fn is_drain(&self) -> bool {
        !self.is_maint() && self.admin_state & admin_bits::DRAIN != 0
    }

    /// Neither in maintenance nor draining (health checks may still hold it DOWN).
    pub fn is_ready(&self) -> bool {
        self.admin_state & (admin_bits::MAINT | admin_bits::DRAIN) == 0
    }

    /// `"ready"`, `"drain"` or `"maint"`.
    pub fn admin_label(&self) -> &'static str {
        if self.is_maint() {
            "maint"
        } else if self.is_drain() {
            "drain"
        } else {
            "ready"
        }
    }

    /// Whether this server already is in `target` as far as the CLI can tell: the bits that
    /// `set server .. state` itself controls. Inherited bits are fixed through the tracked server.
    pub fn satisfies(&self, target: AdminState) -> bool {
        let own = self.admin_state & (admin_bits::FMAINT | admin_bits::FDRAIN);
        match target {
            AdminState::Ready => own == 0,
            AdminState::Drain => own == admin_bits::FDRAIN,
            AdminState::Maint => own & admin_bits::FMAINT != 0,
        }
    }
}

/// Checks a raw CLI reply for an error and returns the output without framing blank lines.
///
/// Errors are recognised by the `[N]: ` severity prefix (0 to 4: emergency to warning), by
/// `Unknown command` (HAProxy sends it at severity 6), and by the known error texts even without a
/// prefix. The reply to `set severity-output number;` is an empty line; it is skipped.
pub fn check_reply(text: &str) -> Result<String, HaproxyError> {
    let body = text.trim_start_matches(['\n', '\r']).trim_end();
    let (severity, message) = split_severity(body);
    let first_line = message.lines().next().unwrap_or("").trim();
    if first_line.starts_with("Unknown command") {
        return Err(HaproxyError::Rejected {
            message: "Unknown command".to_string(),
        });
    }
    if first_line == "Permission denied" || first_line.starts_with("Permission denied.") {
        return Err(HaproxyError::PermissionDenied);
    }
    let known_error = matches!(
        first_line,
        "No such server."
            | "No such backend."
            | "Can't find backend."
            | "Require 'backend/server'."
    );
    match severity {
        Some(level) if level <= 4 => Err(HaproxyError::Rejected {
            message: one_line(message),
        }),
        _ if known_error => Err(HaproxyError::Rejected {
            message: one_line(message),
        }),
        _ => Ok(message.to_string()),
    }
}

/// Splits a leading `[N]: ` severity prefix off.
fn split_severity(text: &str) -> (Option<u8>, &str) {
    let bytes = text.as_bytes();
    if bytes.len() >= 5 && bytes[0] == b'[' && bytes[1].is_ascii_digit() && &bytes[2..4] == b"]:" {
        let rest = text[4..].strip_prefix(' ').unwrap_or(&text[4..]);
        (Some(bytes[1] - b'0'), rest)
    } else {
        (None, text)
    }
}

/// HAProxy's error messages may span lines; an error of ours must be one line.
///
/// Lines end at `\n` and also at a lone `\r` (`str::lines` keeps those); any other control
/// character left is escaped, so the result prints as one line whatever the reply held.
fn one_line(message: &str) -> String {
    let joined = message
        .split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if joined.is_empty() {
        "(no message)".to_string()
    } else {
        crate::escape_controls(&joined)
    }
}

/// Parses `show servers state` output (raw or already checked) by its header names.
///
/// Line 1 is the format version (`1`), line 2 the `# be_id be_name srv_id srv_name ...` header,
/// then one row per server with as many fields as the header has names.
pub fn parse_servers_state(text: &str) -> Result<Vec<ServerState>, HaproxyError> {
    let output = check_reply(text)?;
    let mut lines = output.lines().filter(|l| !l.trim().is_empty());
    let version = lines
        .next()
        .ok_or_else(|| HaproxyError::Malformed("empty `show servers state` output".into()))?
        .trim();
    if version != "1" {
        return Err(HaproxyError::Malformed(format!(
            "`show servers state` format version {:?}, expected \"1\"",
            truncate(version)
        )));
    }
    let header = lines
        .next()
        .ok_or_else(|| HaproxyError::Malformed("`show servers state` has no header line".into()))?;
    let Some(names) = header.trim().strip_prefix('#') else {
        return Err(HaproxyError::Malformed(format!(
            "`show servers state` line 2 is not a `# ...` header: {:?}",
            truncate(header)
        )));
    };
    let names: Vec<&str> = names.split_whitespace().collect();
    let column = |name: &str| {
        names.iter().position(|n| *n == name).ok_or_else(|| {
            HaproxyError::Malformed(format!("`show servers state` header lacks column {name}"))
        })
    };
    let be_name = column("be_name")?;
    let srv_name = column("srv_name")?;
    let op_state = column("srv_op_state")?;
    let admin_state = column("srv_admin_state")?;

    let mut servers = Vec::new();
    for (index, line) in lines.enumerate() {
        let row_no = index + 3;
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() != names.len() {
            return Err(HaproxyError::Malformed(format!(
                "`show servers state` row {row_no} has {} fields, the header names {}",
                fields.len(),
                names.len()
            )));
        }
        let number = |col: usize, name: &str| {
            fields[col].parse::<u8>().map_err(|_| {
                HaproxyError::Malformed(format!(
                    "`show servers state` row {row_no}: {name} is {:?}, not a number from 0 to 255",
                    truncate(fields[col])
                ))
            })
        };
        servers.push(ServerState {
            backend: fields[be_name].to_string(),
            server: fields[srv_name].to_string(),
            op_state: number(op_state, "srv_op_state")?,
            admin_state: number(admin_state, "srv_admin_state")?,
        });
    }
    Ok(servers)
}

/// Keeps error messages short when the input is garbage.
fn truncate(text: &str) -> String {
    const MAX: usize = 60;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        let mut short: String = text.chars().take(MAX).collect();
        short.push('…');
        short
    }
}

/// A name usable in `set server <backend>/<server>` without changing the command's meaning.
fn check_name(value: &str) -> Result<(), HaproxyError> {
    let bad = value.is_empty()
        || value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == ';' || c == '/');
    if bad {
        Err(HaproxyError::InvalidName {
            value: value.to_string(),
        })
    } else {
        Ok(())
    }
}

/// One `set server` that reconcile has to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedWrite {
    pub backend: String,
    pub server: String,
    pub state: AdminState,
}

/// Works out which writes bring `states` to "`ready` ready, every `maint` server in maint" in
/// every backend.
///
/// With [`WriteOrder::MaintFirst`], all `maint` writes come before all `ready` writes, so that
/// one socket never routes to two servers, even for an instant. A missing backend or server is returned as a problem; the
/// writes that are possible are still planned.
pub fn plan_reconcile(
    states: &[ServerState],
    backends: &[String],
    ready: &str,
    maint: &[String],
    order: WriteOrder,
) -> (Vec<PlannedWrite>, Vec<HaproxyError>) {
    let mut problems = Vec::new();
    let mut to_maint = Vec::new();
    let mut to_ready = Vec::new();
    for backend in backends {
        if !states.iter().any(|s| &s.backend == backend) {
            problems.push(HaproxyError::NoSuchBackend {
                backend: backend.clone(),
            });
            continue;
        }
        let wanted = maint
            .iter()
            .map(|m| (m.as_str(), AdminState::Maint))
            .chain([(ready, AdminState::Ready)]);
        for (server, target) in wanted {
            let list = if target == AdminState::Maint {
                &mut to_maint
            } else {
                &mut to_ready
            };
            match states
                .iter()
                .find(|s| &s.backend == backend && s.server == server)
            {
                None => problems.push(HaproxyError::NoSuchServer {
                    backend: backend.clone(),
                    server: server.to_string(),
                }),
                Some(state) if !state.satisfies(target) => list.push(PlannedWrite {
                    backend: backend.clone(),
                    server: server.to_string(),
                    state: target,
                }),
                Some(_) => {}
            }
        }
    }
    match order {
        WriteOrder::MaintFirst => {
            to_maint.extend(to_ready);
            (to_maint, problems)
        }
        WriteOrder::ReadyFirst => {
            to_ready.extend(to_maint);
            (to_ready, problems)
        }
        WriteOrder::FenceOnly => (to_maint, problems),
    }
}

/// The order of a reconcile's writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOrder {
    /// Break before make: no instant routes to both (failover; the old master may be broken).
    MaintFirst,
    /// Make before break: the new server is ready before the old one leaves (planned switchover,
    /// where the old master still serves and must not leave users with no server at all).
    ReadyFirst,
    /// Only the maint writes: the old master leaves now, the new one joins once its Jenkins
    /// can no longer serve a stale configuration (it has begun its promotion reload).
    FenceOnly,
}

/// A client for one HAProxy runtime-API socket. Cheap to clone.
#[derive(Debug, Clone)]
pub struct HaproxyClient {
    endpoint: Endpoint,
    timeout: Duration,
}

impl HaproxyClient {
    /// `timeout` bounds each whole exchange: connect, send, read to EOF.
    pub fn new(endpoint: Endpoint, timeout: Duration) -> Self {
        Self { endpoint, timeout }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Sends one command and returns its checked output (see [`check_reply`]).
    ///
    /// The command must be a single command: no newline and no `;`.
    pub async fn command(&self, command: &str) -> Result<String, HaproxyError> {
        if command.is_empty() || command.contains(['\n', '\r', ';']) {
            return Err(HaproxyError::InvalidCommand(command.to_string()));
        }
        let raw = self.exchange(command, None).await?;
        check_reply(&raw)
    }

    /// `show servers state [<backend>]`.
    pub async fn show_servers_state(
        &self,
        backend: Option<&str>,
    ) -> Result<Vec<ServerState>, HaproxyError> {
        let command = match backend {
            Some(b) => {
                check_name(b)?;
                format!("show servers state {b}")
            }
            None => "show servers state".to_string(),
        };
        let raw = self.exchange(&command, None).await?;
        parse_servers_state(&raw).map_err(|e| match (e, backend) {
            (HaproxyError::Rejected { message }, Some(b)) if message == "Can't find backend." => {
                HaproxyError::NoSuchBackend {
                    backend: b.to_string(),
                }
            }
            (e, _) => e,
        })
    }

    /// `set server <backend>/<server> state ready|drain|maint`.
    pub async fn set_server_state(
        &self,
        backend: &str,
        server: &str,
        state: AdminState,
    ) -> Result<(), HaproxyError> {
        self.set_server_state_until(backend, server, state, None)
            .await
    }

    /// Like [`Self::set_server_state`], but sends nothing once `deadline` has passed (checked
    /// after connecting, immediately before the write).
    async fn set_server_state_until(
        &self,
        backend: &str,
        server: &str,
        state: AdminState,
        deadline: Option<Mono>,
    ) -> Result<(), HaproxyError> {
        check_name(backend)?;
        check_name(server)?;
        let command = format!("set server {backend}/{server} state {state}");
        let raw = self.exchange(&command, deadline).await?;
        let output = check_reply(&raw).map_err(|e| match e {
            HaproxyError::Rejected { message } if message == "No such server." => {
                HaproxyError::NoSuchServer {
                    backend: backend.to_string(),
                    server: server.to_string(),
                }
            }
            HaproxyError::Rejected { message } if message == "No such backend." => {
                HaproxyError::NoSuchBackend {
                    backend: backend.to_string(),
                }
            }
            e => e,
        })?;
        if output.is_empty() {
            Ok(())
        } else {
            Err(HaproxyError::Malformed(format!(
                "unexpected answer to `{command}`: {:?}",
                truncate(&one_line(&output))
            )))
        }
    }

    /// One connection, one command, the raw reply read to EOF.
    async fn exchange(
        &self,
        command: &str,
        deadline: Option<Mono>,
    ) -> Result<String, HaproxyError> {
        let endpoint = self.endpoint.to_string();
        let line = format!("set severity-output number; {command}\n");
        let talk = async {
            let connect_error = |e: std::io::Error| HaproxyError::Connect {
                endpoint: endpoint.clone(),
                reason: describe_connect_error(&e),
            };
            match &self.endpoint {
                Endpoint::Unix(path) => {
                    let stream = UnixStream::connect(path).await.map_err(connect_error)?;
                    talk(stream, &line, deadline).await
                }
                Endpoint::Tcp(addr) => {
                    let stream = TcpStream::connect(addr.as_str())
                        .await
                        .map_err(connect_error)?;
                    talk(stream, &line, deadline).await
                }
            }
        };
        let raw = match tokio::time::timeout(self.timeout, talk).await {
            Err(_) => {
                return Err(HaproxyError::Timeout {
                    endpoint,
                    command: command.to_string(),
                    timeout: self.timeout,
                })
            }
            Ok(Err(TalkError::Deadline)) => {
                return Err(HaproxyError::DeadlinePassed { skipped: 1 })
            }
            Ok(Err(TalkError::Io(e))) => {
                return Err(HaproxyError::Io {
                    endpoint,
                    command: command.to_string(),
                    reason: e.to_string(),
                })
            }
            Ok(Err(TalkError::TooLong)) => {
                return Err(HaproxyError::Malformed(format!(
                    "the answer to `{command}` is larger than {MAX_REPLY} bytes"
                )))
            }
            Ok(Err(TalkError::Other(e))) => return Err(e),
            Ok(Ok(raw)) => raw,
        };
        if raw.is_empty() {
            return Err(HaproxyError::Malformed(format!(
                "HAProxy closed the connection without answering `{command}`"
            )));
        }
        Ok(String::from_utf8_lossy(&raw).into_owned())
    }
}

enum TalkError {
    Deadline,
    TooLong,
    Io(std::io::Error),
    Other(HaproxyError),
}

impl From<HaproxyError> for TalkError {
    fn from(e: HaproxyError) -> Self {
        TalkError::Other(e)
    }
}

/// Writes the line, half-closes, reads to EOF. HAProxy answers a half-closed connection in full.
async fn talk<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    line: &str,
    deadline: Option<Mono>,
) -> Result<Vec<u8>, TalkError> {
    if let Some(deadline) = deadline {
        if clock::passed(deadline) {
            return Err(TalkError::Deadline);
        }
    }
    stream
        .write_all(line.as_bytes())
        .await
        .map_err(TalkError::Io)?;
    stream.shutdown().await.map_err(TalkError::Io)?;
    let mut reply = Vec::new();
    (&mut stream)
        .take(MAX_REPLY + 1)
        .read_to_end(&mut reply)
        .await
        .map_err(TalkError::Io)?;
    if reply.len() as u64 > MAX_REPLY {
        return Err(TalkError::TooLong);
    }
    Ok(reply)
}

fn describe_connect_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => format!(
            "{e} (give the sidecar's user access with `user`/`group`/`mode` on the `stats socket` line)"
        ),
        std::io::ErrorKind::NotFound => format!("{e} (is HAProxy running with this `stats socket`?)"),
        _ => e.to_string(),
    }
}

/// What reconcile or observe found on one socket.
#[derive(Debug, Clone)]
pub struct SocketReport {
    /// The socket, as configured (`/run/haproxy/admin.sock`, `tcp://10.0.0.5:9999`).
    pub endpoint: String,
    pub outcome: Result<ReconcileOutcome, HaproxyError>,
}

/// A socket's result: the writes sent and the states of the listed backends' servers afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileOutcome {
    pub writes: usize,
    pub states: Vec<ServerState>,
}

/// On every socket at once: reads `show servers state`, then, where they differ, sets `ready`
/// ready and `maint` in maint in every listed backend (the maint writes first).
///
/// Never sends a write once the daemon's clock reaches `write_deadline` (the lease's deadline):
/// checked immediately before each write. A write skipped for that reason is reported as
/// [`HaproxyError::DeadlinePassed`]; nothing to write means no error. A missing backend or
/// server is reported as an error after the writes that were possible.
pub async fn reconcile(
    clients: &[HaproxyClient],
    backends: &[String],
    ready: &str,
    maint: &str,
    write_deadline: Mono,
) -> Vec<SocketReport> {
    reconcile_with(
        clients,
        backends,
        ready,
        &[maint.to_string()],
        write_deadline,
        WriteOrder::MaintFirst,
    )
    .await
}

/// [`reconcile`] with every other server of the cluster in `maint`, and a chosen write order.
pub async fn reconcile_with(
    clients: &[HaproxyClient],
    backends: &[String],
    ready: &str,
    maint: &[String],
    write_deadline: Mono,
    order: WriteOrder,
) -> Vec<SocketReport> {
    let mut tasks = Vec::with_capacity(clients.len());
    for client in clients {
        let client = client.clone();
        let backends = backends.to_vec();
        let (ready, maint) = (ready.to_string(), maint.to_vec());
        tasks.push((
            client.endpoint.to_string(),
            tokio::spawn(async move {
                reconcile_one(&client, &backends, &ready, &maint, write_deadline, order).await
            }),
        ));
    }
    collect(tasks).await
}

/// Read-only: the states of the listed backends' servers on every socket, with zero writes.
/// Standby nodes use it for `status`.
pub async fn observe(clients: &[HaproxyClient], backends: &[String]) -> Vec<SocketReport> {
    let mut tasks = Vec::with_capacity(clients.len());
    for client in clients {
        let client = client.clone();
        let backends = backends.to_vec();
        tasks.push((
            client.endpoint.to_string(),
            tokio::spawn(async move {
                let states = client.show_servers_state(None).await?;
                if let Some(missing) = backends
                    .iter()
                    .find(|b| !states.iter().any(|s| &s.backend == *b))
                {
                    return Err(HaproxyError::NoSuchBackend {
                        backend: missing.clone(),
                    });
                }
                Ok(ReconcileOutcome {
                    writes: 0,
                    states: only_backends(states, &backends),
                })
            }),
        ));
    }
    collect(tasks).await
}

type SocketTask = tokio::task::JoinHandle<Result<ReconcileOutcome, HaproxyError>>;

async fn collect(tasks: Vec<(String, SocketTask)>) -> Vec<SocketReport> {
    let mut reports = Vec::with_capacity(tasks.len());
    for (endpoint, task) in tasks {
        let outcome = match task.await {
            Ok(outcome) => outcome,
            Err(e) => Err(HaproxyError::Io {
                endpoint: endpoint.clone(),
                command: "reconcile".to_string(),
                reason: format!("the task failed: {e}"),
            }),
        };
        reports.push(SocketReport { endpoint, outcome });
    }
    reports
}

fn only_backends(states: Vec<ServerState>, backends: &[String]) -> Vec<ServerState> {
    states
        .into_iter()
        .filter(|s| backends.contains(&s.backend))
        .collect()
}

async fn reconcile_one(
    client: &HaproxyClient,
    backends: &[String],
    ready: &str,
    maint: &[String],
    deadline: Mono,
    order: WriteOrder,
) -> Result<ReconcileOutcome, HaproxyError> {
    if maint.iter().any(|m| m == ready) {
        return Err(HaproxyError::SameServer(ready.to_string()));
    }
    for name in backends
        .iter()
        .chain(maint)
        .map(String::as_str)
        .chain([ready])
    {
        check_name(name)?;
    }
    let states = client.show_servers_state(None).await?;
    let (plan, problems) = plan_reconcile(&states, backends, ready, maint, order);
    let mut writes = 0;
    for (done, write) in plan.iter().enumerate() {
        match client
            .set_server_state_until(&write.backend, &write.server, write.state, Some(deadline))
            .await
        {
            Ok(()) => {
                writes += 1;
                tracing::info!(
                    socket = %client.endpoint,
                    "haproxy: set {}/{} {} (drift corrected)",
                    write.backend,
                    write.server,
                    write.state
                );
            }
            Err(HaproxyError::DeadlinePassed { .. }) => {
                return Err(HaproxyError::DeadlinePassed {
                    skipped: plan.len() - done,
                })
            }
            Err(e) => return Err(e),
        }
    }
    if let Some(problem) = problems.into_iter().next() {
        return Err(problem);
    }
    let states = if writes > 0 {
        client.show_servers_state(None).await?
    } else {
        states
    };
    Ok(ReconcileOutcome {
        writes,
        states: only_backends(states, backends),
    })
}

/// One word for one server's admin state across every socket and listed backend:
/// `"ready"`, `"maint"`, `"drain"`, `"mixed"` when they differ, `"unknown"` without data.
pub fn summarize(reports: &[SocketReport], backends: &[String], server: &str) -> &'static str {
    let mut seen: Option<&'static str> = None;
    let labels = reports
        .iter()
        .filter_map(|r| r.outcome.as_ref().ok())
        .flat_map(|o| o.states.iter())
        .filter(|s| s.server == server && backends.contains(&s.backend))
        .map(ServerState::admin_label);
    for label in labels {
        match seen {
            None => seen = Some(label),
            Some(previous) if previous != label => return "mixed",
            Some(_) => {}
        }
    }
    seen.unwrap_or("unknown")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port";

    /// A reply captured from HAProxy 2.6.12 to `set severity-output number; show servers state`.
    fn real_reply() -> String {
        format!(
            "\n1\n{HEADER}\n\
             2 jenkins_http 1 jenkins01 127.0.0.1 0 0 1 1 7 8 2 0 6 0 0 0 - 1 - 0 0 - - 0\n\
             2 jenkins_http 2 jenkins02 127.0.0.1 2 1 1 1 7 1 0 2 6 0 0 0 - 2 - 0 0 - - 0\n\
             3 jenkins_agent 1 jenkins01 127.0.0.1 0 0 1 1 7 1 0 2 0 0 0 0 - 3 - 0 0 - - 0\n\
             3 jenkins_agent 2 jenkins02 127.0.0.1 2 3 1 1 7 1 0 2 0 0 0 0 - 4 - 0 0 - - 0\n\n"
        )
    }

    fn state(backend: &str, server: &str, admin: u8) -> ServerState {
        ServerState {
            backend: backend.into(),
            server: server.into(),
            op_state: 2,
            admin_state: admin,
        }
    }

    #[test]
    fn parses_a_real_reply() {
        let states = parse_servers_state(&real_reply()).unwrap();
        assert_eq!(states.len(), 4);
        assert_eq!(states[1], {
            let mut s = state("jenkins_http", "jenkins02", 1);
            s.op_state = 2;
            s
        });
        assert_eq!(states[0].op_state, 0);
        assert!(states[3].is_maint());
        assert_eq!(states[3].admin_state, 3);
    }

    #[test]
    fn parses_by_header_names_not_positions() {
        let text = "1\n# srv_admin_state srv_name extra be_name srv_op_state\n8 s1 x b 2\n";
        let states = parse_servers_state(text).unwrap();
        assert_eq!(states, vec![state("b", "s1", 8)]);
        assert!(states[0].is_drain());
    }

    #[test]
    fn header_only_means_no_servers() {
        assert_eq!(
            parse_servers_state(&format!("1\n{HEADER}\n")).unwrap(),
            vec![]
        );
    }

    #[test]
    fn odd_input_is_an_error_never_a_panic() {
        let cases = [
            "",
            "\n\n",
            "1",
            "1\n",
            "2\n# be_name srv_name srv_op_state srv_admin_state\n",
            "1\nbe_name srv_name srv_op_state srv_admin_state\n",
            "1\n# be_name srv_name srv_op_state\nb s 2\n",
            "1\n# be_name srv_name srv_op_state srv_admin_state\nb s 2\n",
            "1\n# be_name srv_name srv_op_state srv_admin_state\nb s 2 1 extra\n",
            "1\n# be_name srv_name srv_op_state srv_admin_state\nb s two 1\n",
            "1\n# be_name srv_name srv_op_state srv_admin_state\nb s 2 -1\n",
            "1\n# be_name srv_name srv_op_state srv_admin_state\nb s 2 256\n",
            "1\n#\n",
            "[3]: Can't find backend.\n\n",
            "\n[3]: Permission denied\n\n",
            "\u{0}\u{ff}[",
            "[",
            "[9",
            "[3]:",
            "1\n# be_name be_name srv_name srv_op_state srv_admin_state\nb b s 2 ü\n",
        ];
        for case in cases {
            assert!(parse_servers_state(case).is_err(), "accepted {case:?}");
        }
        let message = parse_servers_state("1\n# be_name srv_name\n")
            .unwrap_err()
            .to_string();
        assert!(message.contains("srv_op_state"), "{message}");
    }

    #[test]
    fn check_reply_tells_errors_from_output() {
        assert_eq!(check_reply("\n\n").unwrap(), "");
        assert_eq!(check_reply("\n").unwrap(), "");
        assert_eq!(check_reply("").unwrap(), "");
        assert_eq!(check_reply("\n1\n# a\n\n").unwrap(), "1\n# a");
        assert_eq!(
            check_reply("\n[3]: No such server.\n\n").unwrap_err(),
            HaproxyError::Rejected {
                message: "No such server.".into()
            }
        );
        assert_eq!(
            check_reply("\n[3]: Permission denied\n\n").unwrap_err(),
            HaproxyError::PermissionDenied
        );
        assert!(check_reply("Permission denied\n")
            .unwrap_err()
            .to_string()
            .contains("level admin"));
        assert_eq!(
            check_reply("\n[6]: Unknown command, but maybe one of the following ones is a better match:\n  help\n\n")
                .unwrap_err(),
            HaproxyError::Rejected { message: "Unknown command".into() }
        );
        assert!(check_reply("Unknown command: 'x', but maybe ...\n").is_err());
        assert!(check_reply("Can't find backend.\n").is_err());
        // The weight bug: no blank line after the message.
        assert!(check_reply("\n[3]: Empty weight string empty or preceded by garbage\n").is_err());
        // A notice is output, not an error.
        assert_eq!(check_reply("\n[5]: done\n").unwrap(), "done");
        // Multi-line errors become one line.
        let e = check_reply("[3]: first\nsecond\n\n")
            .unwrap_err()
            .to_string();
        assert!(!e.contains('\n'), "{e}");
        // Found by the haproxy_reply fuzz target: a lone CR (which `str::lines` does not split
        // at) and other control characters stayed in the one-line error.
        let e = check_reply("\n[3]: No such\rbackend\0.\r\n\n")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "HAProxy rejected the command: No such backend\\u{0}.");
        assert_eq!(one_line("a\u{2028}b\tc"), "a\\u{2028}b\\tc");
    }

    #[test]
    fn admin_bits() {
        let s = |a| state("b", "s", a);
        assert!(s(0).is_ready() && !s(0).is_maint() && !s(0).is_drain());
        // `disabled` in the config, then `set .. state ready`: UP with 0x04 left.
        assert!(s(4).is_ready());
        assert!(s(5).is_maint());
        assert!(s(1).is_maint() && s(2).is_maint() && s(0x20).is_maint());
        assert!(s(8).is_drain() && s(0x10).is_drain() && !s(8).is_ready());
        assert!(!s(9).is_drain() && s(9).is_maint());
        assert_eq!(s(0x18).admin_label(), "drain");
        assert!(s(2).satisfies(AdminState::Ready));
        assert!(!s(2).satisfies(AdminState::Maint));
        assert!(s(3).satisfies(AdminState::Maint));
        assert!(!s(8).satisfies(AdminState::Ready));
        assert!(s(8).satisfies(AdminState::Drain));
    }

    #[test]
    fn endpoints_parse_and_display() {
        for text in [
            "/run/haproxy/admin.sock",
            "tcp://127.0.0.1:9999",
            "tcp://lb1.example:9999",
            "tcp://[::1]:9999",
        ] {
            let endpoint: Endpoint = text.parse().unwrap();
            assert_eq!(endpoint.to_string(), text);
        }
        assert_eq!(
            "tcp://h:1".parse::<Endpoint>().unwrap(),
            Endpoint::Tcp("h:1".into())
        );
        for bad in [
            "",
            "admin.sock",
            "./admin.sock",
            "tcp://",
            "tcp://host",
            "tcp://:99",
            "tcp://h:0",
            "tcp://h:x",
            "tcp://h:70000",
            "unix:///x",
            "http://h:1",
        ] {
            assert!(bad.parse::<Endpoint>().is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn plan_puts_maint_first_and_reports_missing_pieces() {
        let backends = vec!["http".to_string(), "agent".to_string()];
        let states = vec![
            state("http", "a", 1),
            state("http", "b", 0),
            state("agent", "a", 2),
            state("agent", "b", 2),
        ];
        let (plan, problems) = plan_reconcile(
            &states,
            &backends,
            "a",
            &["b".to_string()],
            WriteOrder::MaintFirst,
        );
        assert!(problems.is_empty());
        let summary: Vec<_> = plan
            .iter()
            .map(|w| format!("{}/{} {}", w.backend, w.server, w.state))
            .collect();
        // agent/a only inherits maint: it becomes ready when http/a does.
        assert_eq!(summary, ["http/b maint", "agent/b maint", "http/a ready"]);
        // A new active whose Jenkins has not begun its promotion reload only fences the peer.
        let (plan, problems) = plan_reconcile(
            &states,
            &backends,
            "a",
            &["b".to_string()],
            WriteOrder::FenceOnly,
        );
        assert!(problems.is_empty());
        let summary: Vec<_> = plan
            .iter()
            .map(|w| format!("{}/{} {}", w.backend, w.server, w.state))
            .collect();
        assert_eq!(summary, ["http/b maint", "agent/b maint"]);

        let (plan, problems) = plan_reconcile(
            &states,
            &["nope".into()],
            "a",
            &["b".to_string()],
            WriteOrder::MaintFirst,
        );
        assert!(plan.is_empty());
        assert_eq!(
            problems,
            [HaproxyError::NoSuchBackend {
                backend: "nope".into()
            }]
        );
        let (plan, problems) = plan_reconcile(
            &states,
            &backends,
            "a",
            &["c".to_string()],
            WriteOrder::MaintFirst,
        );
        assert_eq!(plan.len(), 1);
        assert_eq!(problems.len(), 2);
    }

    #[test]
    fn summarize_across_sockets() {
        let backends = vec!["http".to_string(), "agent".to_string()];
        let report = |states| SocketReport {
            endpoint: "/s".into(),
            outcome: Ok(ReconcileOutcome { writes: 0, states }),
        };
        let ok = report(vec![
            state("http", "a", 0),
            state("agent", "a", 0),
            state("http", "b", 1),
            state("agent", "b", 3),
            state("other", "a", 1),
        ]);
        let failed = SocketReport {
            endpoint: "/t".into(),
            outcome: Err(HaproxyError::PermissionDenied),
        };
        assert_eq!(
            summarize(&[ok.clone(), failed.clone()], &backends, "a"),
            "ready"
        );
        assert_eq!(
            summarize(std::slice::from_ref(&ok), &backends, "b"),
            "maint"
        );
        assert_eq!(
            summarize(std::slice::from_ref(&ok), &backends, "c"),
            "unknown"
        );
        assert_eq!(summarize(&[failed], &backends, "a"), "unknown");
        assert_eq!(summarize(&[], &backends, "a"), "unknown");
        let drifted = report(vec![state("http", "a", 8)]);
        assert_eq!(
            summarize(std::slice::from_ref(&drifted), &backends, "a"),
            "drain"
        );
        assert_eq!(summarize(&[ok, drifted], &backends, "a"), "mixed");
    }
}
