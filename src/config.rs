//! The YAML config file: its schema, defaults and validation.
//!
//! Every problem comes back as one [`ConfigError`] line naming the file, the line and the field
//! (`config.yaml:14: timing.lease_timeout: ...`), so an operator can fix it without reading code.
//! The file is parsed once into a tree that keeps where each key and value is written
//! (`tree`); the schema is read out of that tree (`de`) and validated against it, so the line
//! is right in block and flow style alike, for a syntax error, a duplicate key, a wrong value
//! or a rule broken between keys.
//! Secrets named by the file (the cluster token, the Jenkins API token) are read here, checked
//! for permissions, and kept in [`Secret`], whose `Debug` never shows them.

use std::fmt;
use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod de;
mod tree;

use crate::core::Timing;
use crate::io::haproxy::Endpoint;
pub use crate::io::watch::{WatchConfig, WatchMode};

/// Where `run` and the other subcommands look when `-c` and `JENKINS_HA_CONFIG` are not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/jenkins-ha/config.yaml";

/// The longest duration any key accepts: far beyond any sensible setting, and small enough that
/// the multiples and sums the daemon derives from them (3 × interval, interval × fall, ...) cannot
/// overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// One problem in the config file, rendered as a single line.
///
/// The field and the message may quote the file (an unknown key, a path), which can hold line
/// breaks; `Display` escapes control characters so the rendering stays one line whatever the file.
///
/// The column is given where the line alone does not say where to look: inside a flow
/// collection (`timing: {interval: 1s, lease_timeout: 1s}`) and for YAML syntax errors
/// (`config.yaml:14:27: timing.lease_timeout: ...`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub field: String,
    pub message: String,
}

impl ConfigError {
    /// An error at `pos` in `file`: its line, and its column when inside a flow collection.
    fn at(
        file: &Path,
        pos: Option<tree::Pos>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            line: pos.map(|p| p.line),
            column: pos.filter(|p| p.in_flow).map(|p| p.column),
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = self.line.map(|l| format!(":{l}")).unwrap_or_default();
        if let (Some(_), Some(c)) = (self.line, self.column) {
            line.push_str(&format!(":{c}"));
        }
        let text = format!(
            "{}{line}: {}: {}",
            self.file.display(),
            self.field,
            self.message
        );
        f.write_str(&crate::escape_controls(&text))
    }
}

pub use crate::secret::Secret;

// ---- The file as written (serde), before validation ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    node: RawNode,
    #[serde(default)]
    peer: Option<RawPeer>,
    #[serde(default)]
    peers: Option<Vec<RawPeer>>,
    auth: RawAuth,
    jenkins: RawJenkins,
    #[serde(default)]
    lease: RawLease,
    #[serde(default)]
    timing: RawTiming,
    #[serde(default)]
    watch: RawWatch,
    haproxy: RawHaproxy,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: String,
    #[serde(default = "default_listen")]
    listen: SocketAddr,
    #[serde(default = "default_priority")]
    failover_priority: u32,
    #[serde(default)]
    tls: Option<RawTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: PathBuf,
    key_file: PathBuf,
    ca_file: PathBuf,
    #[serde(default)]
    require_client_cert: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeer {
    name: String,
    url: String,
    #[serde(default)]
    jenkins_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    token_file: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJenkins {
    url: String,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    api_token_file: Option<PathBuf>,
    home: PathBuf,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    #[serde(default = "default_reload_timeout", with = "humantime_serde")]
    reload_timeout: Duration,
    #[serde(default)]
    restart_command: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLease {
    #[serde(default)]
    dir: Option<PathBuf>,
    #[serde(default)]
    backend: LeaseBackend,
    #[serde(default)]
    etcd: Option<RawEtcd>,
}

/// Where the lease lives: term files in `lease.dir`, or an etcd cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseBackend {
    #[default]
    File,
    Etcd,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEtcd {
    endpoints: Vec<String>,
    prefix: String,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    cert_file: Option<PathBuf>,
    #[serde(default)]
    key_file: Option<PathBuf>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    password_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTiming {
    #[serde(default = "default_interval", with = "humantime_serde")]
    interval: Duration,
    #[serde(default = "default_fall")]
    fall: u32,
    #[serde(default = "default_rise")]
    rise: u32,
    #[serde(default = "default_lease_timeout", with = "humantime_serde")]
    lease_timeout: Duration,
}

impl Default for RawTiming {
    fn default() -> Self {
        Self {
            interval: default_interval(),
            fall: default_fall(),
            rise: default_rise(),
            lease_timeout: default_lease_timeout(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWatch {
    #[serde(default = "default_watch_mode")]
    mode: WatchMode,
    #[serde(default = "default_poll_interval", with = "humantime_serde")]
    poll_interval: Duration,
    #[serde(default = "default_debounce", with = "humantime_serde")]
    debounce: Duration,
}

impl Default for RawWatch {
    fn default() -> Self {
        Self {
            mode: default_watch_mode(),
            poll_interval: default_poll_interval(),
            debounce: default_debounce(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHaproxy {
    sockets: Vec<String>,
    #[serde(default = "default_backends")]
    backends: Vec<String>,
    #[serde(default = "default_haproxy_timeout", with = "humantime_serde")]
    timeout: Duration,
}

fn default_priority() -> u32 {
    1
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 7070))
}
fn default_reload_timeout() -> Duration {
    Duration::from_secs(300)
}
fn default_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_fall() -> u32 {
    3
}
fn default_rise() -> u32 {
    2
}
fn default_lease_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_watch_mode() -> WatchMode {
    WatchMode::Auto
}
fn default_poll_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_debounce() -> Duration {
    Duration::from_millis(500)
}
fn default_backends() -> Vec<String> {
    vec!["jenkins_http".into(), "jenkins_agent".into()]
}
fn default_haproxy_timeout() -> Duration {
    Duration::from_secs(2)
}

// ---- The validated config the daemon runs with ----

/// The validated configuration. Every field is checked; secrets are loaded.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub node: NodeConfig,
    /// Every other node of the cluster (`peer`, or the `peers` list).
    pub peers: Vec<PeerConfig>,
    pub cluster_token: Secret,
    pub jenkins: JenkinsConfig,
    pub lease_dir: PathBuf,
    /// The line of `jenkins.home` in the file, for [`Config::check_home`]'s error.
    pub home_line: Option<usize>,
    /// `lease.backend: etcd`: the cluster holding the lease (`lease_dir` is then unused by the
    /// lease; the watcher still skips it).
    pub lease_etcd: Option<crate::io::lease_etcd::EtcdSettings>,
    pub timing: Timing,
    pub watch: WatchConfig,
    pub haproxy: HaproxyConfig,
    /// Non-fatal findings (for `check-config` and the log at start-up).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub name: String,
    pub listen: SocketAddr,
    /// Among standbys, the highest healthy priority claims first; 0 never takes over.
    pub failover_priority: u32,
    /// `node.tls`: the API serves HTTPS only, and calls to `https://` sidecars use it.
    pub tls: Option<crate::io::tls::NodeTls>,
}

impl NodeConfig {
    /// The address to reach this node's own API at (`jenkins-ha status`): `node.listen`, with
    /// `0.0.0.0` and `::` as loopback.
    pub fn local_api(&self) -> SocketAddr {
        local_api(self.listen)
    }

    /// The URL of this node's own API: `https://` when `node.tls` is set.
    pub fn local_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.local_api())
    }
}

/// The address to reach an API listening on `listen` from the same host: `0.0.0.0` and `::`
/// become loopback.
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    pub name: String,
    pub url: String,
    /// The peer's Jenkins, used to quiet it down when we take over (fencing); optional.
    pub jenkins_url: Option<String>,
}

#[derive(Debug, Clone)]
pub struct JenkinsConfig {
    pub url: String,
    pub user: Option<String>,
    pub api_token: Option<Secret>,
    pub home: PathBuf,
    /// Timeout of one HTTP call to Jenkins.
    pub timeout: Duration,
    /// How long a full reload may answer 503 before it counts as failed.
    pub reload_timeout: Duration,
    /// Run (through `/bin/sh -c`) when the standby's reload failed, e.g. `systemctl restart jenkins`.
    pub restart_command: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaproxyConfig {
    pub sockets: Vec<Endpoint>,
    pub backends: Vec<String>,
    pub timeout: Duration,
}

impl Config {
    /// Reads, parses and validates the file at `path`, and loads the secrets it names.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: None,
            column: None,
            field: "(file)".into(),
            message: format!("cannot read the config file: {}", io_reason(&e)),
        })?;
        Self::parse(path, &text)
    }

    /// Checks that `jenkins.home` is a directory (the shared JENKINS_HOME is mounted). This is
    /// the one check that touches the shared storage, so only `run` and `check-config` make it;
    /// on a hung mount it may block.
    pub fn check_home(&self) -> Result<(), ConfigError> {
        if self.jenkins.home.is_dir() {
            return Ok(());
        }
        Err(ConfigError {
            file: self.path.clone(),
            line: self.home_line,
            column: None,
            field: "jenkins.home".into(),
            message: format!(
                "{} is not a directory (is the shared JENKINS_HOME mounted?)",
                self.jenkins.home.display()
            ),
        })
    }

    /// "peer jenkins02", or "peers jenkins02, jenkins03", for messages.
    pub fn peers_phrase(&self) -> String {
        let names = self.peer_names().join(", ");
        if self.peers.len() == 1 {
            format!("peer {names}")
        } else {
            format!("peers {names}")
        }
    }

    /// The other nodes' names.
    pub fn peer_names(&self) -> Vec<String> {
        self.peers.iter().map(|p| p.name.clone()).collect()
    }

    /// Parses and validates `text` as if read from `path` (relative files resolve from its folder).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let tree = tree::parse(text).map_err(|e| syntax_error(path, e))?;
        let raw: RawConfig = de::from_tree(&tree).map_err(|e| schema_error(path, e))?;
        Validator { path, tree: &tree }.validate(raw)
    }
}

/// A syntax error or a duplicate key, where the parser found it.
fn syntax_error(path: &Path, e: tree::SyntaxError) -> ConfigError {
    ConfigError {
        file: path.to_path_buf(),
        line: Some(e.line),
        column: e.column,
        field: if e.field.is_empty() {
            "(top level)".into()
        } else {
            e.field
        },
        message: e.message,
    }
}

/// A value that does not fit the schema, at the key or value it is about.
fn schema_error(path: &Path, e: de::Error) -> ConfigError {
    ConfigError::at(
        path,
        e.pos,
        e.field.unwrap_or_else(|| "(top level)".into()),
        e.message,
    )
}

/// The line (1-based) of a dotted key such as `timing.lease_timeout` or `peers[1].url`, in block
/// or flow style; `None` when the text is not valid YAML or does not give the key.
pub fn locate(text: &str, dotted: &str) -> Option<usize> {
    tree::parse(text).ok()?.find(dotted).map(|p| p.line)
}

fn io_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(pos) => text[..pos].to_string(),
        None => text,
    }
}

struct Validator<'a> {
    path: &'a Path,
    /// The file as parsed, to find the line of each key.
    tree: &'a tree::Node,
}

impl Validator<'_> {
    /// An error about `field`, at the line (and in a flow collection, the column) of its key.
    fn err(&self, field: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::at(self.path, self.tree.find(field), field, message)
    }

    /// Relative paths in the file resolve from the file's own folder.
    fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.path.parent().unwrap_or(Path::new(".")).join(p)
        }
    }

    fn validate(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let mut warnings = Vec::new();
        check_server_name(&raw.node.name).map_err(|m| self.err("node.name", m))?;
        let (raw_peers, peers_key) = match (raw.peer, raw.peers) {
            (Some(peer), None) => (vec![peer], "peer"),
            (None, Some(peers)) => (peers, "peers"),
            (Some(_), Some(_)) => {
                return Err(self.err(
                    "peers",
                    "give either peer (two masters) or peers (a list), not both",
                ))
            }
            (None, None) => return Err(self.err("peer", "required key is missing")),
        };
        if raw_peers.is_empty() {
            return Err(self.err("peers", "must list at least one other node"));
        }
        let mut peers = Vec::with_capacity(raw_peers.len());
        for (i, peer) in raw_peers.into_iter().enumerate() {
            let field = |key: &str| {
                if peers_key == "peer" {
                    format!("peer.{key}")
                } else {
                    format!("peers[{i}].{key}")
                }
            };
            // Block or flow style, `peers[1].url` is found in the tree: its own line and column.
            let err = |key: &str, m: String| self.err(&field(key), m);
            check_server_name(&peer.name).map_err(|m| err("name", m))?;
            if peer.name == raw.node.name {
                return Err(err(
                    "name",
                    format!("must differ from node.name ({:?})", raw.node.name),
                ));
            }
            if peers.iter().any(|p: &PeerConfig| p.name == peer.name) {
                return Err(err("name", format!("{:?} is listed twice", peer.name)));
            }
            match check_sidecar_url(&peer.url).map_err(|m| err("url", m))? {
                Scheme::Https if raw.node.tls.is_none() => {
                    return Err(err(
                        "url",
                        format!(
                            "{:?} is https:// but node.tls is not set: give node.tls (its ca_file, \
                             the cluster CA, verifies the peer's certificate)",
                            peer.url
                        ),
                    ))
                }
                Scheme::Http if raw.node.tls.is_some() => warnings.push(format!(
                    "{}: {} is http:// while node.tls is set: heartbeats to {} are not encrypted \
                     (a sidecar with node.tls serves https:// only; fine only while migrating)",
                    field("url"),
                    peer.url,
                    peer.name
                )),
                _ => {}
            }
            if let Some(url) = &peer.jenkins_url {
                check_http_url(url).map_err(|m| err("jenkins_url", m))?;
            }
            peers.push(PeerConfig {
                name: peer.name,
                url: peer.url.trim_end_matches('/').to_string(),
                jenkins_url: peer
                    .jenkins_url
                    .map(|u| u.trim_end_matches('/').to_string()),
            });
        }
        check_http_url(&raw.jenkins.url).map_err(|m| self.err("jenkins.url", m))?;

        let cluster_token = self.read_secret("auth.token_file", &raw.auth.token_file)?;
        let tls = match &raw.node.tls {
            Some(t) => Some(self.validate_tls(t, raw.node.listen, &mut warnings)?),
            None => None,
        };
        let api_token = match (&raw.jenkins.user, &raw.jenkins.api_token_file) {
            (Some(_), Some(file)) => Some(self.read_secret("jenkins.api_token_file", file)?),
            (Some(_), None) => {
                return Err(self.err(
                    "jenkins.user",
                    "is set but jenkins.api_token_file is not; give both or neither",
                ))
            }
            (None, Some(_)) => {
                return Err(self.err(
                    "jenkins.api_token_file",
                    "is set but jenkins.user is not; give both or neither",
                ))
            }
            (None, None) => None,
        };

        // Not stat'ed here: every subcommand loads the config, and `status` must answer while
        // the shared storage hangs. `run` and `check-config` call [`Config::check_home`].
        let home = self.resolve(&raw.jenkins.home);
        let lease_dir = match &raw.lease.dir {
            Some(d) => self.resolve(d),
            None => home.join(".jenkins-ha"),
        };
        let lease_etcd = self.validate_lease_backend(&raw.lease, &mut warnings)?;

        let t = &raw.timing;
        let durations = [
            ("timing.interval", Some(t.interval)),
            ("timing.lease_timeout", Some(t.lease_timeout)),
            ("jenkins.timeout", raw.jenkins.timeout),
            ("jenkins.reload_timeout", Some(raw.jenkins.reload_timeout)),
            ("watch.poll_interval", Some(raw.watch.poll_interval)),
            ("watch.debounce", Some(raw.watch.debounce)),
            ("haproxy.timeout", Some(raw.haproxy.timeout)),
        ];
        for (field, d) in durations {
            if let Some(d) = d.filter(|d| *d > MAX_DURATION) {
                return Err(self.err(
                    field,
                    format!("must be at most {}, got {}", show(MAX_DURATION), show(d)),
                ));
            }
        }
        if t.interval < Duration::from_millis(10) {
            return Err(self.err(
                "timing.interval",
                format!("must be at least 10ms, got {}", show(t.interval)),
            ));
        }
        if t.fall == 0 {
            return Err(self.err("timing.fall", "must be at least 1"));
        }
        if t.rise == 0 {
            return Err(self.err("timing.rise", "must be at least 1"));
        }
        if t.lease_timeout < t.interval * 3 {
            return Err(self.err(
                "timing.lease_timeout",
                format!(
                    "must be at least 3 × timing.interval ({}), got {}: the holder renews every interval and \
                     stops trusting its lease a margin of max(2 × interval, 20 %) before it runs out",
                    show(t.interval * 3),
                    show(t.lease_timeout)
                ),
            ));
        }
        let timing = Timing {
            interval: t.interval,
            fall: t.fall,
            rise: t.rise,
            lease_timeout: t.lease_timeout,
        };
        let trusted = t.lease_timeout.saturating_sub(timing.margin());
        if lease_etcd.is_some() && trusted < Duration::from_secs(3) {
            warnings.push(format!(
                "timing.lease_timeout {} leaves the holder {} between renewals: an etcd leader \
                 election (1-2 s with etcd's default timings) can make it step down; 5s or more is safer",
                show(t.lease_timeout),
                show(trusted)
            ));
        }

        if raw.watch.poll_interval < Duration::from_millis(10) {
            return Err(self.err("watch.poll_interval", "must be at least 10ms"));
        }

        if raw.haproxy.sockets.is_empty() {
            return Err(self.err("haproxy.sockets", "must list at least one socket"));
        }
        let mut sockets = Vec::new();
        for s in &raw.haproxy.sockets {
            let endpoint: Endpoint = s
                .parse()
                .map_err(|e| self.err("haproxy.sockets", format!("{s:?}: {e}")))?;
            sockets.push(endpoint);
        }
        if raw.haproxy.backends.is_empty() {
            return Err(self.err("haproxy.backends", "must list at least one backend"));
        }
        for b in &raw.haproxy.backends {
            if b.is_empty() || b.contains(|c: char| c.is_whitespace() || c == '/' || c == ';') {
                return Err(self.err(
                    "haproxy.backends",
                    format!("{b:?} is not a valid backend name"),
                ));
            }
        }
        if raw.haproxy.timeout.is_zero() {
            return Err(self.err("haproxy.timeout", "must be more than 0"));
        }

        let jenkins_timeout = raw.jenkins.timeout.unwrap_or_else(|| {
            std::cmp::min(
                std::cmp::max(t.interval * 2, Duration::from_millis(500)),
                Duration::from_secs(5),
            )
        });
        if jenkins_timeout.is_zero() {
            return Err(self.err("jenkins.timeout", "must be more than 0"));
        }
        if raw.jenkins.reload_timeout < Duration::from_secs(1) {
            return Err(self.err("jenkins.reload_timeout", "must be at least 1s"));
        }
        if let Some(cmd) = &raw.jenkins.restart_command {
            if cmd.trim().is_empty() {
                return Err(self.err(
                    "jenkins.restart_command",
                    "is empty; remove the key or give a command",
                ));
            }
        }
        if raw.node.listen.ip().is_unspecified() {
            // Fine and usual; nothing to say.
        } else if raw.node.listen.ip().is_loopback() {
            for peer in peers.iter().filter(|p| !url_is_loopback(&p.url)) {
                warnings.push(format!(
                    "node.listen {} is loopback-only but {} ({}) is remote: its heartbeats cannot reach us",
                    raw.node.listen, peer.name, peer.url
                ));
            }
        }

        Ok(Config {
            path: self.path.to_path_buf(),
            node: NodeConfig {
                name: raw.node.name,
                listen: raw.node.listen,
                failover_priority: raw.node.failover_priority,
                tls,
            },
            peers,
            cluster_token,
            jenkins: JenkinsConfig {
                url: raw.jenkins.url.trim_end_matches('/').to_string(),
                user: raw.jenkins.user,
                api_token,
                home,
                timeout: jenkins_timeout,
                reload_timeout: raw.jenkins.reload_timeout,
                restart_command: raw.jenkins.restart_command,
            },
            lease_dir,
            home_line: self.tree.find("jenkins.home").map(|p| p.line),
            lease_etcd,
            timing,
            watch: WatchConfig {
                mode: raw.watch.mode,
                poll_interval: raw.watch.poll_interval,
                debounce: raw.watch.debounce,
            },
            haproxy: HaproxyConfig {
                sockets,
                backends: raw.haproxy.backends,
                timeout: raw.haproxy.timeout,
            },
            warnings,
        })
    }

    /// `lease.backend` and `lease.etcd`: the etcd settings for `backend: etcd`, `None` for files.
    /// Each backend ignores the other's settings with a warning (`lease.etcd` under `backend:
    /// file`, `lease.dir` under `backend: etcd`), so that switching backends is one key, and
    /// check-config and the start-up log say what is not used.
    fn validate_lease_backend(
        &self,
        raw: &RawLease,
        warnings: &mut Vec<String>,
    ) -> Result<Option<crate::io::lease_etcd::EtcdSettings>, ConfigError> {
        let etcd = match (raw.backend, &raw.etcd) {
            (LeaseBackend::File, None) => return Ok(None),
            (LeaseBackend::File, Some(_)) => {
                warnings.push(
                    "lease.etcd is ignored: lease.backend is file (the lease is in lease.dir)"
                        .into(),
                );
                return Ok(None);
            }
            (LeaseBackend::Etcd, None) => {
                return Err(self.err(
                    "lease.backend",
                    "is etcd but lease.etcd is missing (endpoints and prefix)",
                ))
            }
            (LeaseBackend::Etcd, Some(etcd)) => etcd,
        };
        if raw.dir.is_some() {
            warnings
                .push("lease.dir is ignored: lease.backend is etcd (the lease is in etcd)".into());
        }
        if etcd.endpoints.is_empty() {
            return Err(self.err("lease.etcd.endpoints", "must list at least one endpoint"));
        }
        let mut endpoints = Vec::new();
        let mut schemes = Vec::new();
        for e in &etcd.endpoints {
            let parsed: hyper::Uri = e.parse().map_err(|err| {
                self.err("lease.etcd.endpoints", format!("{e:?} is not a URL: {err}"))
            })?;
            let scheme = match parsed.scheme_str() {
                Some(s @ ("http" | "https")) => s.to_string(),
                _ => {
                    return Err(self.err(
                        "lease.etcd.endpoints",
                        format!("{e:?} must start with http:// or https://"),
                    ))
                }
            };
            if parsed.host().is_none_or(|h| h.is_empty()) || parsed.port().is_none() {
                return Err(self.err(
                    "lease.etcd.endpoints",
                    format!("{e:?} must name a host and a port (http://10.0.0.10:2379)"),
                ));
            }
            if parsed.path() != "/" || parsed.query().is_some() {
                return Err(self.err(
                    "lease.etcd.endpoints",
                    format!("{e:?} must be scheme://host:port, without a path"),
                ));
            }
            let normal = format!(
                "{scheme}://{}",
                parsed.authority().map(|a| a.as_str()).unwrap_or("")
            );
            if endpoints.contains(&normal) {
                return Err(self.err("lease.etcd.endpoints", format!("{e:?} is listed twice")));
            }
            endpoints.push(normal);
            schemes.push(scheme);
        }
        let https = schemes.iter().all(|s| s == "https");
        if !https && schemes.iter().any(|s| s == "https") {
            return Err(self.err(
                "lease.etcd.endpoints",
                "mixes http:// and https://; the members of one cluster use one scheme",
            ));
        }
        let prefix = etcd.prefix.trim_end_matches('/');
        if !etcd.prefix.starts_with('/') || prefix.is_empty() {
            return Err(self.err(
                "lease.etcd.prefix",
                format!(
                    "{:?} must start with / and name this cluster (/jenkins-ha/ci-main)",
                    etcd.prefix
                ),
            ));
        }
        if prefix.contains(|c: char| c.is_control() || c.is_whitespace()) {
            return Err(self.err(
                "lease.etcd.prefix",
                format!(
                    "{:?} must not contain spaces or control characters",
                    etcd.prefix
                ),
            ));
        }
        let tls_files =
            etcd.ca_file.is_some() || etcd.cert_file.is_some() || etcd.key_file.is_some();
        if tls_files && !https {
            return Err(self.err(
                "lease.etcd.endpoints",
                "must be https:// when lease.etcd.ca_file, cert_file or key_file is set",
            ));
        }
        let ca_pem = match &etcd.ca_file {
            Some(f) => Some(self.read_pem("lease.etcd.ca_file", f, false)?.expose().to_string()),
            None if https => {
                return Err(self.err(
                    "lease.etcd.ca_file",
                    "is required with https:// endpoints: the CA that signed the etcd members' certificates",
                ))
            }
            None => None,
        };
        let identity = match (&etcd.cert_file, &etcd.key_file) {
            (Some(cert), Some(key)) => Some((
                self.read_pem("lease.etcd.cert_file", cert, false)?
                    .expose()
                    .to_string(),
                self.read_pem("lease.etcd.key_file", key, true)?,
            )),
            (Some(_), None) => {
                return Err(self.err(
                    "lease.etcd.cert_file",
                    "is set but lease.etcd.key_file is not; give both or neither",
                ))
            }
            (None, Some(_)) => {
                return Err(self.err(
                    "lease.etcd.key_file",
                    "is set but lease.etcd.cert_file is not; give both or neither",
                ))
            }
            (None, None) => None,
        };
        let user = match (&etcd.user, &etcd.password_file) {
            (Some(user), Some(file)) => {
                if user.is_empty() || user.contains(|c: char| c.is_control()) {
                    return Err(self.err("lease.etcd.user", format!("{user:?} is not a user name")));
                }
                Some((
                    user.clone(),
                    self.read_secret("lease.etcd.password_file", file)?,
                ))
            }
            (Some(_), None) => {
                return Err(self.err(
                    "lease.etcd.user",
                    "is set but lease.etcd.password_file is not; give both or neither",
                ))
            }
            (None, Some(_)) => {
                return Err(self.err(
                    "lease.etcd.password_file",
                    "is set but lease.etcd.user is not; give both or neither",
                ))
            }
            (None, None) => None,
        };
        Ok(Some(crate::io::lease_etcd::EtcdSettings {
            endpoints,
            prefix: prefix.to_string(),
            ca_pem,
            identity,
            user,
        }))
    }

    /// `node.tls`: reads the three files (the key must not be readable by others), builds the
    /// TLS configurations, and adds a warning for each problem of the node's own certificate
    /// that does not make the config invalid (expired, expiring soon, not valid for the address
    /// the CLI uses).
    fn validate_tls(
        &self,
        raw: &RawTls,
        listen: SocketAddr,
        warnings: &mut Vec<String>,
    ) -> Result<crate::io::tls::NodeTls, ConfigError> {
        use crate::io::tls::{NodeTls, TlsFiles};
        let cert = self.read_pem("node.tls.cert_file", &raw.cert_file, false)?;
        let key = self.read_pem("node.tls.key_file", &raw.key_file, true)?;
        let ca = self.read_pem("node.tls.ca_file", &raw.ca_file, false)?;
        let tls = NodeTls::build(TlsFiles {
            cert_file: self.resolve(&raw.cert_file),
            cert_pem: cert.expose(),
            key_file: self.resolve(&raw.key_file),
            key_pem: &key,
            ca_file: self.resolve(&raw.ca_file),
            ca_pem: ca.expose(),
            require_client_cert: raw.require_client_cert,
        })
        .map_err(|e| {
            let path = match e.file {
                crate::io::tls::TlsFile::Cert => self.resolve(&raw.cert_file),
                crate::io::tls::TlsFile::Key => self.resolve(&raw.key_file),
                crate::io::tls::TlsFile::Ca => self.resolve(&raw.ca_file),
            };
            self.err(e.file.field(), format!("{} {}", path.display(), e.message))
        })?;
        warnings.extend(
            tls.check_own_certificate(local_api(listen).ip(), rustls::pki_types::UnixTime::now()),
        );
        Ok(tls)
    }

    /// Reads a PEM file (certificate or key). A private key must not be readable by others.
    fn read_pem(&self, field: &str, file: &Path, private: bool) -> Result<Secret, ConfigError> {
        let path = self.resolve(file);
        let meta = fs::metadata(&path).map_err(|e| {
            self.err(
                field,
                format!("cannot read {}: {}", path.display(), io_reason(&e)),
            )
        })?;
        if !meta.is_file() {
            return Err(self.err(field, format!("{} is not a regular file", path.display())));
        }
        let mode = meta.permissions().mode();
        if private && mode & 0o007 != 0 {
            return Err(self.err(
                field,
                format!(
                    "{} is accessible by other users (mode {:o}); run: chmod 600 {}",
                    path.display(),
                    mode & 0o777,
                    path.display()
                ),
            ));
        }
        let content = fs::read_to_string(&path).map_err(|e| {
            self.err(
                field,
                format!("cannot read {}: {}", path.display(), io_reason(&e)),
            )
        })?;
        if !content.contains("-----BEGIN ") {
            return Err(self.err(field, format!("{} holds no PEM block", path.display())));
        }
        Ok(Secret::new(content))
    }

    /// Reads a token file: it must exist, be a regular file, not be readable by others, and not be empty.
    fn read_secret(&self, field: &str, file: &Path) -> Result<Secret, ConfigError> {
        let path = self.resolve(file);
        let meta = fs::metadata(&path).map_err(|e| {
            self.err(
                field,
                format!("cannot read {}: {}", path.display(), io_reason(&e)),
            )
        })?;
        if !meta.is_file() {
            return Err(self.err(field, format!("{} is not a regular file", path.display())));
        }
        let mode = meta.permissions().mode();
        if mode & 0o007 != 0 {
            return Err(self.err(
                field,
                format!(
                    "{} is accessible by other users (mode {:o}); run: chmod 600 {}",
                    path.display(),
                    mode & 0o777,
                    path.display()
                ),
            ));
        }
        let content = fs::read_to_string(&path).map_err(|e| {
            self.err(
                field,
                format!("cannot read {}: {}", path.display(), io_reason(&e)),
            )
        })?;
        let token = content.trim();
        if token.is_empty() {
            return Err(self.err(field, format!("{} is empty", path.display())));
        }
        if token.contains(|c: char| c.is_control() || c == ' ') {
            return Err(self.err(
                field,
                format!("{} must hold one token on one line", path.display()),
            ));
        }
        Ok(Secret::new(token))
    }
}

fn check_server_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
    {
        return Err(format!(
            "{name:?} is not a valid HAProxy server name (letters, digits, '-', '_', '.', ':' only)"
        ));
    }
    Ok(())
}

/// The scheme of a sidecar's URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

/// A sidecar's API URL (`peer.url`, `peers[].url`): `http://` or `https://`, with a host.
fn check_sidecar_url(url: &str) -> Result<Scheme, String> {
    let parsed: hyper::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let scheme = match parsed.scheme_str() {
        Some("http") => Scheme::Http,
        Some("https") => Scheme::Https,
        _ => return Err(format!("{url:?} must start with http:// or https://")),
    };
    if parsed.host().is_none_or(|h| h.is_empty()) {
        return Err(format!("{url:?} has no host"));
    }
    Ok(scheme)
}

fn check_http_url(url: &str) -> Result<(), String> {
    let parsed: hyper::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if parsed.scheme_str() != Some("http") {
        return Err(format!(
            "{url:?} must start with http:// (TLS is left to a proxy in front)"
        ));
    }
    if parsed.host().is_none_or(|h| h.is_empty()) {
        return Err(format!("{url:?} has no host"));
    }
    Ok(())
}

fn url_is_loopback(url: &str) -> bool {
    url.parse::<hyper::Uri>()
        .ok()
        .and_then(|u| {
            u.host()
                .map(|h| h == "localhost" || h.starts_with("127.") || h == "[::1]")
        })
        .unwrap_or(false)
}

impl Config {
    /// Where the lease lives, for people: the directory, or the etcd endpoints and prefix.
    pub fn lease_location(&self) -> String {
        match &self.lease_etcd {
            Some(e) => format!("etcd {} under {}", e.endpoints.join(","), e.prefix),
            None => self.lease_dir.display().to_string(),
        }
    }
}

/// A duration as an operator writes it (`1s`, `500ms`).
pub fn show(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::Write;

    struct Setup {
        dir: tempfile::TempDir,
    }

    impl Setup {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            fs::create_dir(dir.path().join("home")).unwrap();
            let token = dir.path().join("cluster.token");
            File::create(&token)
                .unwrap()
                .write_all(b"s3cret\n")
                .unwrap();
            fs::set_permissions(&token, fs::Permissions::from_mode(0o600)).unwrap();
            Setup { dir }
        }
        fn yaml(&self, extra: &str) -> String {
            format!(
                "node:\n  name: jenkins01\n  listen: 127.0.0.1:7070\npeer:\n  name: jenkins02\n  url: http://127.0.0.1:7071\n\
                 auth:\n  token_file: cluster.token\njenkins:\n  url: http://127.0.0.1:8080\n  home: home\n\
                 haproxy:\n  sockets: [/run/haproxy/admin.sock, \"tcp://127.0.0.1:9999\"]\n{extra}"
            )
        }
        fn parse(&self, text: &str) -> Result<Config, ConfigError> {
            Config::parse(&self.dir.path().join("config.yaml"), text)
        }
    }

    #[test]
    fn minimal_config_gets_the_documented_defaults() {
        let s = Setup::new();
        let c = s.parse(&s.yaml("")).unwrap();
        assert_eq!(c.timing.interval, Duration::from_secs(1));
        assert_eq!(c.timing.fall, 3);
        assert_eq!(c.timing.lease_timeout, Duration::from_secs(5));
        assert_eq!(c.watch.mode, WatchMode::Auto);
        assert_eq!(c.watch.debounce, Duration::from_millis(500));
        assert_eq!(c.haproxy.backends, vec!["jenkins_http", "jenkins_agent"]);
        assert_eq!(c.lease_dir, s.dir.path().join("home").join(".jenkins-ha"));
        assert_eq!(c.cluster_token.expose(), "s3cret");
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "the token must never show in Debug output"
        );
        assert_eq!(c.timing.margin(), Duration::from_secs(2));
    }

    #[test]
    fn unknown_key_names_file_line_and_full_field() {
        let s = Setup::new();
        let e = s
            .parse(&s.yaml("timing:\n  interval: 1s\n  lease_timout: 5s\n"))
            .unwrap_err();
        assert_eq!(e.field, "timing.lease_timout");
        assert_eq!(e.line, Some(16));
        let line = e.to_string();
        assert!(
            line.contains("config.yaml:16: timing.lease_timout: unknown key"),
            "{line}"
        );
        assert!(!line.contains('\n'));
    }

    #[test]
    fn bad_duration_names_the_field() {
        let s = Setup::new();
        let e = s
            .parse(&s.yaml("timing:\n  lease_timeout: 5 parsecs\n"))
            .unwrap_err();
        assert_eq!(e.field, "timing.lease_timeout");
        assert_eq!(e.line, Some(15));
        assert!(e.message.contains("expected a duration"), "{e}");
    }

    #[test]
    fn errors_quoting_line_breaks_stay_one_line() {
        // Found by the config_parser fuzz target: an unknown key, a value or a path holding a
        // line break came out as a multi-line error.
        let s = Setup::new();
        let cases = [
            s.yaml("\"time\\ning\": {}\n"),
            s.yaml("watch:\n  mode: \"po\\r\\nll\"\n"),
            s.yaml("").replace("home: home", "home: \"ho\\nme\""),
            s.yaml("")
                .replace("token_file: cluster.token", "token_file: \"a\\u2028b\""),
        ];
        for text in cases {
            // The home is not stat'ed by the parse: its error comes from `check_home`.
            let e = s.parse(&text).and_then(|c| c.check_home()).unwrap_err();
            let line = e.to_string();
            assert!(
                !line.contains(['\n', '\r', '\u{2028}']),
                "{line:?} from {e:?}"
            );
            assert!(
                line.contains("\\n") || line.contains("\\u{2028}"),
                "{line:?}"
            );
        }
        let e = s.parse(&s.yaml("\"time\\ning\": {}\n")).unwrap_err();
        assert_eq!(
            e.field, "time\ning",
            "the field itself keeps the key as written"
        );
    }

    #[test]
    fn huge_durations_are_refused_not_a_panic() {
        // Found by the config_parser fuzz target: interval > Duration::MAX / 3 panicked in
        // `3 × interval` ("overflow when multiplying duration by scalar").
        let s = Setup::new();
        let max = "18446744073709551615s"; // u64::MAX seconds: the longest humantime accepts
        for (key, field) in [
            ("timing:\n  interval", "timing.interval"),
            ("timing:\n  lease_timeout", "timing.lease_timeout"),
            ("jenkins:\n  timeout", "jenkins.timeout"),
            ("jenkins:\n  reload_timeout", "jenkins.reload_timeout"),
            ("watch:\n  poll_interval", "watch.poll_interval"),
            ("watch:\n  debounce", "watch.debounce"),
            ("haproxy:\n  timeout", "haproxy.timeout"),
        ] {
            let (section, key) = key.split_once(":\n  ").unwrap();
            // Put the key into the section the base config already has, or add the section.
            let base = s.yaml("");
            let text = if base.contains(&format!("\n{section}:\n")) {
                base.replace(
                    &format!("\n{section}:\n"),
                    &format!("\n{section}:\n  {key}: {max}\n"),
                )
            } else {
                format!("{base}{section}:\n  {key}: {max}\n")
            };
            let e = s.parse(&text).unwrap_err();
            assert_eq!(e.field, field, "{e}");
            assert!(e.message.starts_with("must be at most 1day"), "{e}");
        }
        let c = s
            .parse(&s.yaml("timing:\n  interval: 1day\n  lease_timeout: 1day\n"))
            .unwrap_err();
        assert_eq!(
            c.field, "timing.lease_timeout",
            "1 day is allowed, 3 × 1 day is checked"
        );
        let ok = s
            .parse(&s.yaml("timing:\n  interval: 8h\n  lease_timeout: 1day\n"))
            .unwrap();
        assert_eq!(ok.timing.margin(), Duration::from_secs(16 * 3600));
    }

    #[test]
    fn yaml_syntax_error_has_a_line() {
        let s = Setup::new();
        let e = s.parse("node: [\n  name: x\n").unwrap_err();
        assert!(e.line.is_some(), "{e}");
        assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn missing_required_key() {
        let s = Setup::new();
        let text = s.yaml("").replace("  url: http://127.0.0.1:8080\n", "");
        let e = s.parse(&text).unwrap_err();
        assert_eq!(e.field, "jenkins.url");
        assert!(e.to_string().contains("required key is missing"), "{e}");
    }

    #[test]
    fn lease_timeout_must_cover_three_intervals() {
        let s = Setup::new();
        let e = s
            .parse(&s.yaml("timing:\n  interval: 1s\n  lease_timeout: 2s\n"))
            .unwrap_err();
        assert_eq!(e.field, "timing.lease_timeout");
        assert_eq!(e.line, Some(16));
    }

    #[test]
    fn token_file_problems_are_refused() {
        let s = Setup::new();
        let missing = s.yaml("").replace("cluster.token", "nope.token");
        let e = s.parse(&missing).unwrap_err();
        assert_eq!(e.field, "auth.token_file");
        assert!(
            e.message.contains("nope.token") && e.message.contains("No such file"),
            "{e}"
        );
        assert_eq!(e.line, Some(8));

        let token = s.dir.path().join("cluster.token");
        fs::set_permissions(&token, fs::Permissions::from_mode(0o644)).unwrap();
        let e = s.parse(&s.yaml("")).unwrap_err();
        assert!(e.message.contains("chmod 600"), "{e}");

        fs::set_permissions(&token, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&token, "\n").unwrap();
        let e = s.parse(&s.yaml("")).unwrap_err();
        assert!(e.message.contains("is empty"), "{e}");
    }

    #[test]
    fn user_needs_its_token_file() {
        let s = Setup::new();
        let text = s
            .yaml("")
            .replace("  home: home\n", "  home: home\n  user: ha-bot\n");
        let e = s.parse(&text).unwrap_err();
        assert_eq!(e.field, "jenkins.user");
    }

    #[test]
    fn names_and_urls_are_checked() {
        let s = Setup::new();
        let e = s
            .parse(&s.yaml("").replace("name: jenkins02", "name: jenkins01"))
            .unwrap_err();
        assert_eq!(e.field, "peer.name");
        let e = s
            .parse(&s.yaml("").replace("http://127.0.0.1:7071", "https://x:1"))
            .unwrap_err();
        assert_eq!(e.field, "peer.url");
        let e = s
            .parse(&s.yaml("").replace("tcp://127.0.0.1:9999", "relative.sock"))
            .unwrap_err();
        assert_eq!(e.field, "haproxy.sockets");
        // The home is checked apart (only `run` and `check-config` touch the shared storage).
        let e = s
            .parse(&s.yaml("").replace("  home: home", "  home: nowhere"))
            .unwrap()
            .check_home()
            .unwrap_err();
        assert_eq!(e.field, "jenkins.home");
    }

    #[test]
    fn wrong_type_and_bad_enum() {
        let s = Setup::new();
        let e = s.parse(&s.yaml("watch:\n  mode: sometimes\n")).unwrap_err();
        assert_eq!(e.field, "watch.mode");
        let e = s.parse(&s.yaml("timing:\n  fall: -1\n")).unwrap_err();
        assert_eq!(e.field, "timing.fall");
    }

    #[test]
    fn the_etcd_backend_is_validated() {
        let s = Setup::new();
        let etcd = |body: &str| s.yaml(&format!("lease:\n  backend: etcd\n  etcd:\n{body}"));
        let ok = s
            .parse(&etcd(
                "    endpoints: [\"http://10.0.0.10:2379\", \"http://10.0.0.11:2379/\"]\n    prefix: /jenkins-ha/ci/\n",
            ))
            .unwrap();
        let e = ok.lease_etcd.as_ref().unwrap();
        assert_eq!(
            e.endpoints,
            ["http://10.0.0.10:2379", "http://10.0.0.11:2379"]
        );
        assert_eq!(e.prefix, "/jenkins-ha/ci");
        assert!(ok.lease_location().contains("etcd http://10.0.0.10:2379"));
        assert!(s.parse(&s.yaml("")).unwrap().lease_etcd.is_none());

        let cases = [
            (
                etcd("    endpoints: []\n    prefix: /x\n"),
                "lease.etcd.endpoints",
                Some(17),
            ),
            (
                etcd("    endpoints: [\"10.0.0.10:2379\"]\n    prefix: /x\n"),
                "lease.etcd.endpoints",
                Some(17),
            ),
            (
                etcd("    endpoints: [\"http://h\"]\n    prefix: /x\n"),
                "lease.etcd.endpoints",
                Some(17),
            ),
            (
                etcd("    endpoints: [\"http://h:1\", \"https://i:1\"]\n    prefix: /x\n"),
                "lease.etcd.endpoints",
                Some(17),
            ),
            (
                etcd("    endpoints: [\"http://h:1\"]\n    prefix: x\n"),
                "lease.etcd.prefix",
                Some(18),
            ),
            (
                etcd("    endpoints: [\"http://h:1\"]\n    prefix: /\n"),
                "lease.etcd.prefix",
                Some(18),
            ),
            (
                etcd("    endpoints: [\"https://h:1\"]\n    prefix: /x\n"),
                "lease.etcd.ca_file",
                None,
            ),
            (
                etcd("    endpoints: [\"http://h:1\"]\n    prefix: /x\n    user: root\n"),
                "lease.etcd.user",
                Some(19),
            ),
            (
                etcd("    endpoints: [\"http://h:1\"]\n    prefix: /x\n    passwd: x\n"),
                "lease.etcd.passwd",
                Some(19),
            ),
            (
                etcd("    endpoints: [\"http://h:1\"]\n"),
                "lease.etcd.prefix",
                Some(16),
            ),
            (
                s.yaml("lease:\n  backend: etcd\n"),
                "lease.backend",
                Some(15),
            ),
            (
                s.yaml("lease:\n  backend: consul\n"),
                "lease.backend",
                Some(15),
            ),
        ];
        for (text, field, line) in cases {
            let e = s.parse(&text).unwrap_err();
            assert_eq!(e.field, field, "{e}");
            assert_eq!(e.line, line, "{e}");
            assert!(!e.to_string().contains('\n'), "{e}");
        }

        // Each backend ignores the other's settings, and says so: switching is one key.
        let both = "lease:\n  dir: /srv/lease\n  backend: BACKEND\n  etcd:\n    endpoints: [\"http://h:1\"]\n    prefix: /x\n";
        let on_etcd = s.parse(&s.yaml(&both.replace("BACKEND", "etcd"))).unwrap();
        assert!(on_etcd.lease_etcd.is_some());
        assert_eq!(
            on_etcd.warnings,
            ["lease.dir is ignored: lease.backend is etcd (the lease is in etcd)"]
        );
        let short = format!(
            "{}timing:\n  interval: 1s\n  lease_timeout: 4s\n",
            both.replace("BACKEND", "etcd")
                .replace("  dir: /srv/lease\n", "")
        );
        let short = s.parse(&s.yaml(&short)).unwrap();
        assert!(
            short.warnings.len() == 1 && short.warnings[0].contains("etcd leader election"),
            "{:?}",
            short.warnings
        );
        let on_files = s.parse(&s.yaml(&both.replace("BACKEND", "file"))).unwrap();
        assert!(on_files.lease_etcd.is_none());
        assert_eq!(on_files.lease_dir, Path::new("/srv/lease"));
        assert_eq!(
            on_files.warnings,
            ["lease.etcd is ignored: lease.backend is file (the lease is in lease.dir)"]
        );
    }

    #[test]
    fn the_etcd_password_file_is_checked_like_a_token_and_never_shown() {
        let s = Setup::new();
        let file = s.dir.path().join("etcd.password");
        fs::write(&file, "pa55word\n").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        let text = s.yaml(
            "lease:\n  backend: etcd\n  etcd:\n    endpoints: [\"http://h:1\"]\n    prefix: /x\n    user: ha\n    password_file: etcd.password\n",
        );
        let e = s.parse(&text).unwrap_err();
        assert_eq!(e.field, "lease.etcd.password_file");
        assert!(e.message.contains("chmod 600"), "{e}");
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        let c = s.parse(&text).unwrap();
        let (user, password) = c.lease_etcd.as_ref().unwrap().user.clone().unwrap();
        assert_eq!((user.as_str(), password.expose()), ("ha", "pa55word"));
        assert!(!format!("{c:?}").contains("pa55word"));
    }

    #[test]
    fn etcd_tls_files_need_https_and_a_private_key() {
        let s = Setup::new();
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        for name in ["ca.crt", "node.crt", "node.key"] {
            fs::write(s.dir.path().join(name), pem).unwrap();
        }
        fs::set_permissions(
            s.dir.path().join("node.key"),
            fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let tls = "    ca_file: ca.crt\n    cert_file: node.crt\n    key_file: node.key\n";
        let text = |scheme: &str| {
            s.yaml(&format!(
                "lease:\n  backend: etcd\n  etcd:\n    endpoints: [\"{scheme}://h:2379\"]\n    prefix: /x\n{tls}"
            ))
        };
        let e = s.parse(&text("http")).unwrap_err();
        assert_eq!(e.field, "lease.etcd.endpoints", "{e}");
        let e = s.parse(&text("https")).unwrap_err();
        assert_eq!(e.field, "lease.etcd.key_file", "{e}");
        assert!(e.message.contains("chmod 600"), "{e}");
        fs::set_permissions(
            s.dir.path().join("node.key"),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let c = s.parse(&text("https")).unwrap();
        let e = c.lease_etcd.unwrap();
        assert!(e.ca_pem.is_some() && e.identity.is_some());
    }

    #[test]
    fn locate_follows_nesting() {
        let text = "a:\n  b: 1\nc:\n  b: 2\n  d:\n    e: 3 # comment\n";
        assert_eq!(locate(text, "a.b"), Some(2));
        assert_eq!(locate(text, "c.b"), Some(4));
        assert_eq!(locate(text, "c.d.e"), Some(6));
        assert_eq!(locate(text, "x"), None);
        let flow = "a: {b: 1,\n    c: [x, {d: 2}]}\n";
        assert_eq!(locate(flow, "a.c[1].d"), Some(2));
        assert_eq!(locate("a: [unclosed\n", "a"), None, "not YAML: no line");
    }

    /// The base config without its `peer:` block (10 lines), then `extra` from line 11.
    fn without_peer(s: &Setup, extra: &str) -> String {
        s.yaml(extra).replace(
            "peer:\n  name: jenkins02\n  url: http://127.0.0.1:7071\n",
            "",
        )
    }

    /// The error's line, column and one-line rendering after the file name.
    fn spot(e: &ConfigError) -> (Option<usize>, Option<usize>, String) {
        let shown = e.to_string();
        assert!(!shown.contains(['\n', '\r']), "{shown:?}");
        let after = shown
            .split_once("config.yaml")
            .map_or(shown.clone(), |(_, rest)| rest.to_string());
        (e.line, e.column, after)
    }

    #[test]
    fn validation_errors_point_at_the_key_in_flow_style() {
        let s = Setup::new();
        let e = s
            .parse(&s.yaml("timing: {interval: 1s, lease_timeout: 1s}\n"))
            .unwrap_err();
        let (line, column, shown) = spot(&e);
        assert_eq!((line, column), (Some(14), Some(24)), "{shown}");
        assert!(
            shown.starts_with(":14:24: timing.lease_timeout: must be at least 3 × timing.interval"),
            "{shown}"
        );
        // A flow mapping over several lines: the key's own line.
        let e = s
            .parse(&s.yaml("timing: {\n  interval: 2s,\n  lease_timeout: 5s\n}\n"))
            .unwrap_err();
        assert_eq!((e.line, e.column), (Some(16), Some(3)), "{e}");
        // The same in block style: the line only, as before.
        let e = s
            .parse(&s.yaml("timing:\n  interval: 2s\n  lease_timeout: 5s\n"))
            .unwrap_err();
        assert_eq!((e.line, e.column), (Some(16), None), "{e}");
        assert!(e
            .to_string()
            .contains("config.yaml:16: timing.lease_timeout:"));
    }

    #[test]
    fn list_items_are_found_in_block_and_flow_style() {
        let s = Setup::new();
        let flow = without_peer(
            &s,
            "peers: [{name: a, url: http://h:1}, {name: b, url: bad}]\n",
        );
        let e = s.parse(&flow).unwrap_err();
        assert_eq!(e.field, "peers[1].url");
        assert_eq!((e.line, e.column), (Some(11), Some(47)), "{e}");
        let block = without_peer(
            &s,
            "peers:\n  - name: a\n    url: http://h:1\n  - name: b\n    url: bad\n",
        );
        let e = s.parse(&block).unwrap_err();
        assert_eq!(e.field, "peers[1].url");
        assert_eq!((e.line, e.column), (Some(15), None), "{e}");
        let e = s
            .parse(&without_peer(
                &s,
                "peers:\n  - {name: a, url: http://h:1}\n  - {name: jenkins01, url: http://h:2}\n",
            ))
            .unwrap_err();
        assert_eq!(e.field, "peers[1].name");
        assert_eq!((e.line, e.column), (Some(13), Some(6)), "{e}");
    }

    #[test]
    fn schema_errors_point_at_the_value_or_key_in_flow_style() {
        let s = Setup::new();
        let e = s
            .parse(&s.yaml("timing: {interval: 1s, lease_timeout: 5 parsecs}\n"))
            .unwrap_err();
        assert_eq!(e.field, "timing.lease_timeout");
        assert_eq!((e.line, e.column), (Some(14), Some(39)), "the value: {e}");
        assert!(
            e.message
                .contains("expected a duration such as 500ms, 5s or 2m"),
            "{e}"
        );
        let e = s
            .parse(&s.yaml("timing: {interval: 1s, lease_timout: 5s}\n"))
            .unwrap_err();
        assert_eq!(e.field, "timing.lease_timout");
        assert_eq!((e.line, e.column), (Some(14), Some(24)), "the key: {e}");
        assert!(e
            .message
            .starts_with("unknown key (expected one of interval,"));
        let e = s.parse(&s.yaml("watch: {mode: sometimes}\n")).unwrap_err();
        assert_eq!(e.field, "watch.mode");
        assert_eq!((e.line, e.column), (Some(14), Some(15)), "{e}");
        assert_eq!(
            e.message,
            "unknown value \"sometimes\" (expected one of auto, inotify, poll)"
        );
        // A key missing from a flow list item: where the item starts.
        let e = s
            .parse(&without_peer(
                &s,
                "peers: [{name: a, url: http://h:1},\n        {name: b}]\n",
            ))
            .unwrap_err();
        assert_eq!(e.field, "peers[1].url");
        assert_eq!(e.message, "required key is missing");
        assert_eq!((e.line, e.column), (Some(12), Some(9)), "{e}");
        // A key missing from a mapping: the line of the mapping's key, flow or block.
        let text = s.yaml("").replace(
            "jenkins:\n  url: http://127.0.0.1:8080\n  home: home\n",
            "jenkins: {home: home}\n",
        );
        let e = s.parse(&text).unwrap_err();
        assert_eq!(e.field, "jenkins.url");
        assert_eq!((e.line, e.column), (Some(9), None), "{e}");
    }

    #[test]
    fn duplicate_keys_are_refused_at_the_second_one() {
        let s = Setup::new();
        let e = s
            .parse(&s.yaml("timing:\n  interval: 1s\n  lease_timeout: 5s\n  interval: 2s\n"))
            .unwrap_err();
        let (_, _, shown) = spot(&e);
        assert_eq!(
            shown,
            ":17: timing.interval: duplicate key (first at line 15)"
        );
        let e = s
            .parse(&s.yaml("timing: {interval: 1s, interval: 2s}\n"))
            .unwrap_err();
        let (_, _, shown) = spot(&e);
        assert_eq!(
            shown,
            ":14:24: timing.interval: duplicate key (first at line 14 column 10)"
        );
        let e = s.parse(&s.yaml("node:\n  name: x\n")).unwrap_err();
        let (_, _, shown) = spot(&e);
        assert_eq!(shown, ":14: node: duplicate key (first at line 1)");
        // A quoted key is the same key.
        let e = s
            .parse(&s.yaml("timing:\n  fall: 3\n  'fall': 4\n"))
            .unwrap_err();
        assert_eq!((e.field.as_str(), e.line), ("timing.fall", Some(16)));
        let e = s
            .parse(&without_peer(
                &s,
                "peers: [{name: a, url: http://h:1, name: b}]\n",
            ))
            .unwrap_err();
        assert_eq!(e.field, "peers[0].name");
        assert_eq!((e.line, e.column), (Some(11), Some(36)), "{e}");
    }

    #[test]
    fn an_unclosed_quote_is_reported_where_it_opens() {
        let s = Setup::new();
        let text = s.yaml("").replace("name: jenkins01", "name: \"jenkins01");
        let e = s.parse(&text).unwrap_err();
        assert_eq!(e.field, "node.name");
        assert_eq!((e.line, e.column), (Some(2), Some(9)), "{e}");
        assert!(
            e.message.contains("is the quote opened here closed?"),
            "{e}"
        );
        // On the last line, where the parser runs into the end of the file.
        let e = s.parse(&s.yaml("watch:\n  mode: 'poll\n")).unwrap_err();
        assert_eq!(e.field, "watch.mode");
        assert_eq!((e.line, e.column), (Some(15), Some(9)), "{e}");
        // In a flow list.
        let text = s.yaml("").replace(
            "[/run/haproxy/admin.sock, \"tcp",
            "[/run/haproxy/admin.sock, tcp",
        );
        let e = s.parse(&text).unwrap_err();
        assert_eq!(e.line, Some(13), "{e}");
    }

    #[test]
    fn tabs_and_bad_indentation_are_reported_on_their_line() {
        let s = Setup::new();
        for (from, to, line) in [
            ("  home: home", "\thome: home", 11),
            (
                "  url: http://127.0.0.1:8080",
                "\turl: http://127.0.0.1:8080",
                10,
            ),
            ("  home: home", "  \thome: home", 11),
        ] {
            let e = s.parse(&s.yaml("").replace(from, to)).unwrap_err();
            assert_eq!(e.line, Some(line), "{to:?}: {e}");
            assert_eq!(e.field, "jenkins", "{to:?}: {e}");
            assert!(
                e.message
                    .starts_with("a tab indents this line; YAML indents with spaces only"),
                "{e}"
            );
        }
        for to in ["    home: home", " home: home"] {
            let e = s
                .parse(&s.yaml("").replace("  home: home", to))
                .unwrap_err();
            assert_eq!(e.line, Some(11), "{to:?}: {e}");
        }
        // A tab after the indentation, between key and value, is fine after a space. The parser
        // refuses a tab alone there (it cannot tell it from a tab-indented block node): the
        // message says what to write.
        assert!(s
            .parse(&s.yaml("").replace("home: home", "home: \thome"))
            .is_ok());
        let e = s
            .parse(&s.yaml("").replace("home: home", "home:\thome"))
            .unwrap_err();
        assert_eq!((e.field.as_str(), e.line), ("jenkins", Some(11)), "{e}");
        assert!(
            e.message.contains("write a space, not a tab, after ':'"),
            "{e}"
        );
    }

    #[test]
    fn an_unclosed_bracket_says_where_it_opened() {
        let s = Setup::new();
        let text = s
            .yaml("")
            .replace("  name: jenkins02\n", "  name: [jenkins02\n");
        let e = s.parse(&text).unwrap_err();
        assert!(e.field.starts_with("peer.name"), "{e}");
        assert!(
            e.message.contains("in the [ opened at line 5 column 9"),
            "{e}"
        );
    }

    #[test]
    fn the_file_holds_one_document_of_keys() {
        let s = Setup::new();
        let e = s.parse(&s.yaml("---\ntiming: {}\n")).unwrap_err();
        assert_eq!((e.line, e.column), (Some(14), None), "{e}");
        let e = s.parse("- a\n- b\n").unwrap_err();
        assert_eq!(e.field, "(top level)");
        assert_eq!(e.line, Some(1));
        let e = s.parse("").unwrap_err();
        assert_eq!((e.field.as_str(), e.line), ("node", None));
        let e = s.parse(&s.yaml("timing: !secret {}\n")).unwrap_err();
        assert!(e.message.contains("tag !secret is not supported"), "{e}");
        // Anchors and aliases work; an alias is read like what it names.
        let c = s
            .parse(&s.yaml("timing: &t {interval: 1s}\nwatch: {poll_interval: 2s}\n"))
            .unwrap();
        assert_eq!(c.timing.interval, Duration::from_secs(1));
    }

    /// Whatever one-character edit breaks the file, the error is one line that names a field and
    /// a line of the file (and a column of that line).
    #[test]
    fn every_error_points_inside_the_file() {
        let s = Setup::new();
        let base = s.yaml("timing: {interval: 1s, lease_timeout: 4s}\nwatch:\n  mode: poll\n");
        let chars: Vec<char> = base.chars().collect();
        let mut errors = 0;
        for at in 0..=chars.len() {
            for c in [
                None,
                Some('{'),
                Some('['),
                Some('"'),
                Some('\t'),
                Some(':'),
                Some('-'),
                Some('\n'),
            ] {
                let mut edited: Vec<char> = chars.clone();
                match c {
                    Some(c) => edited.insert(at, c),
                    None if at < chars.len() => {
                        edited.remove(at);
                    }
                    None => continue,
                }
                let text: String = edited.into_iter().collect();
                let Err(e) = s.parse(&text) else { continue };
                errors += 1;
                let shown = e.to_string();
                assert!(!shown.contains('\n') && !e.field.is_empty(), "{shown:?}");
                let last = text.lines().count().max(1);
                if let Some(line) = e.line {
                    assert!((1..=last).contains(&line), "{shown} in {text:?}");
                    let width = text.split('\n').nth(line - 1).unwrap().chars().count();
                    if let Some(column) = e.column {
                        assert!((1..=width + 1).contains(&column), "{shown} in {text:?}");
                    }
                }
            }
        }
        assert!(errors > 500, "only {errors} edits broke the file");
    }
}
