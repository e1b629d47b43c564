//! Dev-only: a whole jenkins-ha cluster on loopback — real HAProxy, two (or more: [`Spec::nodes`])
//! Jenkins stand-ins on a shared JENKINS_HOME, a sidecar beside each — for the lab and the
//! integration tests.
//!
//! Every process is real and is killed when the [`Cluster`] drops. Faults are real signals:
//! `kill -9`, `SIGSTOP`/`SIGCONT`. Logs of every process land in the cluster's directory and are
//! printed when a test fails.

#![allow(dead_code)]

#[path = "src/home_gen.rs"]
pub mod home_gen;
#[path = "ledger.rs"]
pub mod ledger;
#[path = "pki.rs"]
pub mod pki;

use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use jenkins_ha::io::haproxy::{Endpoint, HaproxyClient, ServerState};
use jenkins_ha::io::http_client::HttpClient;
use jenkins_ha::status::ClusterStatus;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Every node name the harness gives, in host order: host `i` is `NODE_NAMES[i]`.
pub const NODE_NAMES: [&str; 9] = [
    "jenkins01",
    "jenkins02",
    "jenkins03",
    "jenkins04",
    "jenkins05",
    "jenkins06",
    "jenkins07",
    "jenkins08",
    "jenkins09",
];
/// The two nodes of a two-node cluster (the default).
pub const NAMES: [&str; 2] = [NODE_NAMES[0], NODE_NAMES[1]];
pub const JENKINS_USER: &str = "ha-bot";
pub const JENKINS_TOKEN: &str = "11a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7";
pub const CLUSTER_TOKEN: &str = "lab-cluster-token-5f0e1d2c3b4a";

/// The directory holding this build's binaries (`target/debug`), with both binaries built.
pub fn binaries() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("the running binary's path");
        // target/<profile>/deps/<test> or target/<profile>/examples/<example>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>")
            .to_path_buf();
        let target_dir = profile_dir.parent().expect("target dir").to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args([
                "build",
                "--quiet",
                "-p",
                "jenkins-ha",
                "--bin",
                "jenkins-ha",
            ])
            .args(["-p", "jenkins-ha-lab", "--bin", "jenkins-standin"])
            .arg("--target-dir")
            .arg(&target_dir);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build");
        assert!(
            status.success(),
            "building jenkins-ha and jenkins-standin failed"
        );
        profile_dir
    })
}

/// A free TCP port on loopback for a server to listen on (bound and released). It is picked
/// below the kernel's ephemeral range (`net.ipv4.ip_local_port_range`), where the source ports
/// of outgoing connections come from: a port from that range can be taken by one of the many
/// connections the processes make (heartbeats, HAProxy's checks, etcd clients) before its server
/// binds it.
pub fn free_port() -> u16 {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    const FLOOR: u64 = 10_000;
    let ephemeral_low = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(32_768);
    if ephemeral_low > FLOOR + 1_000 {
        let span = ephemeral_low - FLOOR;
        let seed = u64::from(std::process::id()) * 7_919
            + SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed) * 104_729
            + std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| u64::from(d.subsec_nanos()))
                .unwrap_or(0);
        for k in 0..500 {
            let port = (FLOOR + (seed + k * 7_919) % span) as u16;
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A child process with its log file; killed on drop.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        log: &Path,
        env: &[(&str, &str)],
    ) -> Proc {
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open log");
        let err = out.try_clone().expect("clone log");
        let mut cmd = Command::new(program);
        cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({}): {e}", program.display()));
        Proc {
            name: name.into(),
            child,
            log: log.to_path_buf(),
        }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    pub fn signal(&self, signal: Signal) {
        let _ = kill(self.pid(), signal);
    }

    /// Whether the process has exited (and is waited for: its pid may be another process's by
    /// now, so it gets no more signals).
    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    pub fn kill9(&mut self) {
        if self.exited() {
            return;
        }
        self.signal(Signal::SIGKILL);
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for the exit code (SIGKILL after `grace`).
    pub fn terminate(&mut self, grace: Duration) -> Option<i32> {
        self.signal(Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                self.kill9();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exited() {
            return;
        }
        // Wake a stopped process first so SIGKILL is not left pending on a frozen one.
        self.signal(Signal::SIGCONT);
        self.kill9();
    }
}

/// How many times a stand-in's log says it listens (once per start).
fn listening_lines(log: &Path) -> usize {
    fs::read_to_string(log)
        .map(|text| text.matches(" listening on ").count())
        .unwrap_or(0)
}

/// How to build a cluster.
#[derive(Debug, Clone)]
pub struct Spec {
    /// How many masters: 2 (the default) writes each sidecar's config with `peer:`, more with
    /// `peers:`. At most [`NODE_NAMES`]`.len()`.
    pub nodes: usize,
    /// `node.failover_priority` of each host, in host order; empty leaves the key out (1).
    pub priorities: Vec<u32>,
    pub interval: Duration,
    pub fall: u32,
    pub lease_timeout: Duration,
    /// HAProxy instances in front (each with its own admin socket).
    pub haproxies: usize,
    /// Jobs created in the shared JENKINS_HOME before start.
    pub jobs: usize,
    pub reload_base: Duration,
    pub reload_per_item: Duration,
    /// Configure `peer.jenkins_url` so a new active quiets the old Jenkins (fencing).
    pub fence_peer_jenkins: bool,
    /// Give each node its own bindfs mount of JENKINS_HOME (NFS semantics: no inotify across
    /// mounts); otherwise every node uses the directory itself.
    pub bindfs: bool,
    /// Extra YAML lines appended to every sidecar config (e.g. a `watch:` section).
    pub extra_config: String,
    pub reload_timeout: Duration,
    /// `jenkins.restart_command`, with `{dir}` replaced by the cluster's directory and `{node}`
    /// by the node's name.
    pub restart_command: Option<String>,
    /// Run host 1 (its stand-in and its sidecar) in its own network namespace, joined to the root
    /// one by a veth pair, so that the link between the hosts can really be cut: see [`NetNs`].
    /// The same as `netns_host: Some(1)`.
    pub netns_host1: bool,
    /// Run this host in its own network namespace (like [`Spec::netns_host1`], for any host).
    /// Its lease stays reachable when the link is cut: the term files are a directory, and the
    /// etcd endpoints of [`Spec::etcd_lease`] are forwarded into the namespace on loopback,
    /// like a storage network apart from the hosts' network.
    pub netns_host: Option<usize>,
    /// Jobs created before start inside a folder `folder` (as `folder/nested-N`), besides the
    /// top-level `jobs`: every stand-in loads them at start.
    pub folder_jobs: usize,
    /// The manual design instead of jenkins-ha's: HAProxy alone health-checks both Jenkins
    /// (`option httpchk GET /login`, `inter 1s fall 1 rise 1`), jenkins01 the server and
    /// jenkins02 its `backup`, nothing `disabled`. Meant for [`Cluster::prepare`], without
    /// sidecars (see [`Cluster::write_manual_haproxy_cfg`]).
    pub manual_haproxy: bool,
    /// `lease.backend: etcd` with these endpoints and this prefix instead of the term files.
    pub etcd_lease: Option<(Vec<String>, String)>,
    /// Let the stand-ins save API token usage statistics (Jenkins' default); off by default, as
    /// the README recommends for both controllers.
    pub token_stats: bool,
    /// Start the stand-ins in quiet-down, as the README's init.groovy.d script does (on by
    /// default): no Jenkins builds before its sidecar made its node the active one.
    pub start_quiet: bool,
    /// Generate the shared JENKINS_HOME with the home generator (jobs in nested folders, build
    /// histories, timer triggers) instead of `jobs` and `folder_jobs`.
    pub home: Option<home_gen::HomeSpec>,
    /// Extra arguments for both stand-ins (their load model, executors, build durations).
    pub standin_args: Vec<String>,
    /// [`Cluster::prepare`] waits until both stand-ins have loaded the home (on by default;
    /// [`Cluster::boot`] does not).
    pub wait_for_jenkins: bool,
    /// `node.tls` on both sidecars, with a cluster CA made for the run: the APIs serve HTTPS,
    /// the peer URLs are `https://`, and HAProxy checks `/active` with `check-ssl verify
    /// required` against that CA.
    pub tls: Option<TlsSpec>,
}

/// The TLS of a lab cluster ([`Spec::tls`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct TlsSpec {
    /// `node.tls.require_client_cert` on both sidecars.
    pub require_client_cert: bool,
}

/// The lab cluster's certificates: its CA, each node's `node.tls` files (in `<dir>/tls/`), and
/// an operator's client certificate for the harness's own calls.
pub struct LabPki {
    pub ca: pki::Ca,
    pub dir: PathBuf,
    /// Host `i`'s files.
    pub files: Vec<pki::TlsFiles>,
    /// The harness's client configuration: the cluster CA and the operator's certificate.
    pub client: std::sync::Arc<rustls::ClientConfig>,
}

impl Spec {
    /// The host in its own network namespace, if any ([`Spec::netns_host`], [`Spec::netns_host1`]).
    pub fn namespaced_host(&self) -> Option<usize> {
        self.netns_host.or(self.netns_host1.then_some(1))
    }
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            nodes: 2,
            priorities: Vec::new(),
            interval: Duration::from_millis(200),
            fall: 3,
            lease_timeout: Duration::from_secs(2),
            haproxies: 1,
            jobs: 5,
            reload_base: Duration::from_millis(300),
            reload_per_item: Duration::from_millis(2),
            fence_peer_jenkins: true,
            bindfs: false,
            extra_config: String::new(),
            reload_timeout: Duration::from_secs(10),
            restart_command: None,
            netns_host1: false,
            netns_host: None,
            folder_jobs: 0,
            manual_haproxy: false,
            token_stats: false,
            start_quiet: true,
            etcd_lease: None,
            home: None,
            standin_args: Vec::new(),
            wait_for_jenkins: true,
            tls: None,
        }
    }
}

/// One Jenkins host: its stand-in and its sidecar.
pub struct Host {
    pub name: &'static str,
    pub api_port: u16,
    /// The port this host's sidecar sends heartbeats to (the peer's API, or a relay before it).
    /// Two-node clusters only: with `peers:` each peer is reached on its own `api_port`.
    pub peer_port: u16,
    pub jenkins_port: u16,
    pub agent_port: u16,
    pub home: PathBuf,
    pub config: PathBuf,
    pub jenkins: Option<Proc>,
    pub sidecar: Option<Proc>,
    /// The address this host's API, Jenkins and agent port listen on.
    pub listen_ip: String,
    /// The address the other hosts' sidecars use for this host's API and Jenkins (hosts that
    /// share the root namespace use loopback between them).
    pub reach_ip: String,
    /// The address HAProxy uses for this host's Jenkins, agent port and `/active` check.
    pub haproxy_ip: String,
    /// The network namespace this host's processes run in (`ip netns exec`), if not the root one.
    pub netns: Option<String>,
}

impl Host {
    /// The program and arguments that run `program` on this host (in its namespace, if any).
    fn command(&self, program: &Path, args: Vec<String>) -> (PathBuf, Vec<String>) {
        match &self.netns {
            None => (program.to_path_buf(), args),
            Some(ns) => {
                let mut all = vec![
                    "netns".to_string(),
                    "exec".into(),
                    ns.clone(),
                    program.display().to_string(),
                ];
                all.extend(args);
                (PathBuf::from("ip"), all)
            }
        }
    }
}

/// One HAProxy instance.
pub struct Haproxy {
    pub cfg: PathBuf,
    pub socket: PathBuf,
    pub state_file: PathBuf,
    pub front_port: u16,
    pub agent_front_port: u16,
    pub proc: Option<Proc>,
    pub log: PathBuf,
}

/// The whole cluster. Dropping it kills every process.
pub struct Cluster {
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub home: PathBuf,
    pub spec: Spec,
    /// Host `i` is `NODE_NAMES[i]`; [`Spec::nodes`] of them.
    pub hosts: Vec<Host>,
    pub haproxies: Vec<Haproxy>,
    pub http: HttpClient,
    /// Unmounted after the processes are gone, before the temp dir is removed.
    pub bind: Option<BindMounts>,
    /// The namespaced host's network namespace ([`Spec::netns_host`]); deleted after the
    /// processes are gone.
    pub netns: Option<NetNs>,
    /// The certificates, with [`Spec::tls`].
    pub pki: Option<LabPki>,
}

impl Cluster {
    /// Writes the configs, starts HAProxy and every stand-in, but no sidecar.
    pub fn prepare(spec: Spec) -> Cluster {
        let tmp = tempfile::Builder::new()
            .prefix("jenkins-ha-lab-")
            .tempdir()
            .expect("temp dir");
        let dir = tmp.path().to_path_buf();
        let mut c = Self::prepare_in(&dir, spec);
        c._tmp = Some(tmp);
        c
    }

    /// Like [`Cluster::prepare`] in a directory the caller keeps.
    pub fn prepare_in(dir: &Path, spec: Spec) -> Cluster {
        let n = spec.nodes;
        assert!(
            (2..=NODE_NAMES.len()).contains(&n),
            "Spec::nodes must be 2 to {}, got {n}",
            NODE_NAMES.len()
        );
        assert!(
            spec.priorities.is_empty() || spec.priorities.len() == n,
            "Spec::priorities must give one priority per host ({n}), got {:?}",
            spec.priorities
        );
        assert!(
            !spec.manual_haproxy || n == 2,
            "the manual HAProxy design has two servers"
        );
        let namespaced = spec.namespaced_host();
        assert!(
            namespaced.is_none_or(|k| k < n),
            "no host {namespaced:?} to put in a namespace"
        );
        binaries();
        fs::create_dir_all(dir).expect("cluster dir");
        let home = dir.join("jenkins_home");
        if let Some(home_spec) = &spec.home {
            home_gen::generate(&home, home_spec).expect("generate JENKINS_HOME");
        }
        fs::create_dir_all(home.join("jobs")).expect("home");
        if spec.home.is_none() {
            fs::write(
                home.join("config.xml"),
                "<hudson><numExecutors>2</numExecutors></hudson>\n",
            )
            .expect("config");
        }
        for j in 0..spec.jobs {
            write_job(&home, &format!("job-{j}"), &format!("job {j} v1"));
        }
        if spec.folder_jobs > 0 {
            write_folder(&home, "folder");
            for j in 0..spec.folder_jobs {
                write_job(
                    &home,
                    &format!("folder/nested-{j}"),
                    &format!("nested {j} v1"),
                );
            }
        }
        let token = dir.join("cluster.token");
        write_secret(&token, CLUSTER_TOKEN);
        let jenkins_token = dir.join("jenkins.token");
        write_secret(&jenkins_token, JENKINS_TOKEN);
        let bind = spec.bindfs.then(|| BindMounts::with_count(&home, dir, n));
        let mut netns = namespaced.map(|_| NetNs::create());
        let mounts = match &bind {
            Some(b) => b.mounts.clone(),
            None => vec![home.clone(); n],
        };

        let api_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let mut hosts: Vec<Host> = (0..n)
            .map(|i| Host {
                name: NODE_NAMES[i],
                api_port: api_ports[i],
                peer_port: api_ports[(i + 1) % n],
                jenkins_port: free_port(),
                agent_port: free_port(),
                home: mounts[i].clone(),
                config: dir.join(format!("{}.yaml", NODE_NAMES[i])),
                jenkins: None,
                sidecar: None,
                listen_ip: "127.0.0.1".into(),
                reach_ip: "127.0.0.1".into(),
                haproxy_ip: "127.0.0.1".into(),
                netns: None,
            })
            .collect();
        if let (Some(ns), Some(k)) = (netns.as_mut(), namespaced) {
            // The other hosts stay in the root namespace, where HAProxy reaches them on loopback
            // and host k over the veth. Host k listens on every address of its namespace: the
            // veth one for HAProxy and the other hosts, loopback for its own sidecar (so a cut
            // link never looks like its own Jenkins died). The test reaches host k's API and
            // Jenkins from inside its namespace (forwarders on the same loopback ports), like an
            // out-of-band console. The root hosts listen everywhere too, and host k reaches them
            // at the root end of the veth.
            for (i, host) in hosts.iter_mut().enumerate() {
                host.listen_ip = "0.0.0.0".into();
                if i == k {
                    host.reach_ip = ns.ns_ip.clone();
                    host.haproxy_ip = ns.ns_ip.clone();
                    host.netns = Some(ns.name.clone());
                } else {
                    host.reach_ip = ns.root_ip.clone();
                }
            }
            ns.forward(&[hosts[k].api_port, hosts[k].jenkins_port]);
            if let Some((endpoints, _)) = &spec.etcd_lease {
                let ports: Vec<u16> = endpoints.iter().filter_map(|e| loopback_port(e)).collect();
                ns.forward_out(&ports);
            }
        }
        let haproxies: Vec<Haproxy> = (0..spec.haproxies)
            .map(|k| Haproxy {
                cfg: dir.join(format!("haproxy-{k}.cfg")),
                socket: dir.join(format!("haproxy-{k}.sock")),
                state_file: dir.join(format!("haproxy-{k}.state")),
                front_port: free_port(),
                agent_front_port: free_port(),
                proc: None,
                log: dir.join(format!("haproxy-{k}.log")),
            })
            .collect();
        let pki = spec.tls.map(|_| LabPki::create(dir, &hosts));
        let mut cluster = Cluster {
            dir: dir.to_path_buf(),
            _tmp: None,
            home,
            spec,
            hosts,
            haproxies,
            http: HttpClient::with_tls(pki.as_ref().map(|p| p.client.clone())),
            bind,
            netns,
            pki,
        };
        for k in 0..cluster.haproxies.len() {
            cluster.write_haproxy_cfg(k);
            cluster.start_haproxy(k);
        }
        let mut before = vec![0; n];
        for (i, b) in before.iter_mut().enumerate() {
            cluster.write_sidecar_config(i);
            *b = cluster.spawn_jenkins(i);
        }
        if cluster.spec.wait_for_jenkins {
            for (i, b) in before.into_iter().enumerate() {
                cluster.wait_jenkins_loaded(i, b);
            }
        }
        cluster
    }

    /// Prepares and starts every sidecar.
    pub fn start(spec: Spec) -> Cluster {
        let mut c = Self::prepare(spec);
        for i in 0..c.hosts.len() {
            c.start_sidecar(i);
        }
        c
    }

    /// The name of host `i` (`jenkins01`, ...).
    pub fn name(&self, i: usize) -> &'static str {
        self.hosts[i].name
    }

    /// The index of the host named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.hosts.iter().position(|h| h.name == name)
    }

    /// Every host but `i`.
    pub fn others(&self, i: usize) -> Vec<usize> {
        (0..self.hosts.len()).filter(|&j| j != i).collect()
    }

    /// The address host `from`'s sidecar uses for host `to`'s API and Jenkins: loopback between
    /// two hosts of the root namespace, else the veth address of `to`'s side.
    fn address_for(&self, from: usize, to: usize) -> String {
        let (a, b) = (&self.hosts[from], &self.hosts[to]);
        if a.netns.is_none() && b.netns.is_none() {
            "127.0.0.1".into()
        } else {
            b.reach_ip.clone()
        }
    }

    /// Starts everything at once, as the hosts booting do: the sidecars start while their
    /// Jenkins still load the home (and see them come up). Returns before the loads end.
    pub fn boot(spec: Spec) -> Cluster {
        let tmp = tempfile::Builder::new()
            .prefix("jenkins-ha-lab-")
            .tempdir()
            .expect("temp dir");
        let dir = tmp.path().to_path_buf();
        let mut c = Self::boot_in(&dir, spec);
        c._tmp = Some(tmp);
        c
    }

    /// Like [`Cluster::boot`] in a directory the caller keeps.
    pub fn boot_in(dir: &Path, spec: Spec) -> Cluster {
        let mut spec = spec;
        let wait = std::mem::replace(&mut spec.wait_for_jenkins, false);
        let mut c = Self::prepare_in(dir, spec);
        c.spec.wait_for_jenkins = wait;
        for i in 0..c.hosts.len() {
            c.start_sidecar(i);
        }
        c
    }

    fn write_haproxy_cfg(&self, k: usize) {
        if self.spec.manual_haproxy {
            return self.write_manual_haproxy_cfg(k);
        }
        let h = &self.haproxies[k];
        let inter = self.spec.interval.as_millis().max(100);
        let mut cfg = format!(
            "global\n    stats socket {sock} mode 600 level admin\n    stats timeout 10s\n    server-state-file {state}\n\n\
             defaults\n    mode http\n    timeout connect 1s\n    timeout client 30s\n    timeout server 30s\n    \
             load-server-state-from-file global\n\n\
             frontend jenkins\n    bind 127.0.0.1:{front}\n    default_backend jenkins_http\n\n\
             backend jenkins_http\n    option httpchk GET /active\n    http-check expect status 200\n    \
             option redispatch 1\n    retries 2\n    \
             default-server inter {inter}ms fastinter {fast}ms downinter {inter}ms rise 1 fall 2\n",
            sock = h.socket.display(),
            state = h.state_file.display(),
            front = h.front_port,
            fast = (inter / 2).max(50),
        );
        for host in &self.hosts {
            // With TLS, the check of the shipped haproxy.cfg's TLS variant: HTTPS to the
            // sidecar, its certificate verified against the cluster CA, for the node's name.
            let tls = match &self.pki {
                Some(p) => format!(
                    " check-ssl verify required ca-file {} check-sni {}",
                    p.ca_file().display(),
                    host.name
                ),
                None => String::new(),
            };
            cfg.push_str(&format!(
                "    server {} {}:{} check port {}{tls} disabled\n",
                host.name, host.haproxy_ip, host.jenkins_port, host.api_port
            ));
        }
        cfg.push_str(&format!(
            "\nfrontend jenkins_agent\n    mode tcp\n    bind 127.0.0.1:{}\n    default_backend jenkins_agent\n\n\
             backend jenkins_agent\n    mode tcp\n",
            h.agent_front_port
        ));
        for host in &self.hosts {
            cfg.push_str(&format!(
                "    server {} {}:{} track jenkins_http/{} on-marked-down shutdown-sessions disabled\n",
                host.name, host.haproxy_ip, host.agent_port, host.name
            ));
        }
        fs::write(&h.cfg, cfg).expect("haproxy.cfg");
    }

    pub fn start_haproxy(&mut self, k: usize) {
        let h = &mut self.haproxies[k];
        let _ = fs::remove_file(&h.socket);
        let args = vec![
            "-f".to_string(),
            h.cfg.display().to_string(),
            "-db".to_string(),
        ];
        h.proc = Some(Proc::spawn(
            &format!("haproxy-{k}"),
            Path::new(haproxy_binary()),
            &args,
            &h.log,
            &[],
        ));
        let socket = h.socket.clone();
        assert!(
            wait_for(Duration::from_secs(10), || socket.exists()),
            "HAProxy {k} did not create its socket; see {}",
            h.log.display()
        );
    }

    pub fn kill_haproxy(&mut self, k: usize) {
        if let Some(mut p) = self.haproxies[k].proc.take() {
            p.kill9();
        }
    }

    fn write_sidecar_config(&self, i: usize) {
        let me = &self.hosts[i];
        let sockets: Vec<String> = self
            .haproxies
            .iter()
            .map(|h| h.socket.display().to_string())
            .collect();
        let (scheme, tls) = match &self.pki {
            Some(p) => (
                "https",
                format!(
                    "  tls:\n    cert_file: {}\n    key_file: {}\n    ca_file: {}\n    require_client_cert: {}\n",
                    p.files[i].cert.display(),
                    p.files[i].key.display(),
                    p.files[i].ca.display(),
                    self.spec.tls.is_some_and(|t| t.require_client_cert)
                ),
            ),
            None => ("http", String::new()),
        };
        let jenkins_url = |j: usize| {
            format!(
                "http://{}:{}",
                self.address_for(i, j),
                self.hosts[j].jenkins_port
            )
        };
        // Two nodes: the `peer:` form, heartbeats to `peer_port` (a relay may sit there). More:
        // the `peers:` list.
        let peers = if self.hosts.len() == 2 {
            let j = 1 - i;
            let fence = if self.spec.fence_peer_jenkins {
                format!("  jenkins_url: {}\n", jenkins_url(j))
            } else {
                String::new()
            };
            format!(
                "peer:\n  name: {}\n  url: {scheme}://{}:{}\n{fence}",
                self.hosts[j].name,
                self.address_for(i, j),
                me.peer_port
            )
        } else {
            let mut list = "peers:\n".to_string();
            for j in self.others(i) {
                let fence = if self.spec.fence_peer_jenkins {
                    format!(", jenkins_url: {}", jenkins_url(j))
                } else {
                    String::new()
                };
                list.push_str(&format!(
                    "  - {{name: {}, url: {scheme}://{}:{}{fence}}}\n",
                    self.hosts[j].name,
                    self.address_for(i, j),
                    self.hosts[j].api_port
                ));
            }
            list
        };
        let priority = match self.spec.priorities.get(i) {
            Some(p) => format!("  failover_priority: {p}\n"),
            None => String::new(),
        };
        let yaml = format!(
            "node:\n  name: {name}\n  listen: {listen}:{api}\n{priority}{tls}{peers}\
             auth:\n  token_file: {dir}/cluster.token\n\
             jenkins:\n  url: http://127.0.0.1:{jport}\n  user: {user}\n  api_token_file: {dir}/jenkins.token\n  \
             home: {home}\n  reload_timeout: {reload_timeout}ms\n{restart}\
             {lease_section}\
             timing:\n  interval: {interval}ms\n  fall: {fall}\n  lease_timeout: {lease}ms\n\
             haproxy:\n  sockets: [{sockets}]\n  backends: [jenkins_http, jenkins_agent]\n{extra}",
            name = me.name,
            listen = me.listen_ip,
            api = me.api_port,
            dir = self.dir.display(),
            jport = me.jenkins_port,
            user = JENKINS_USER,
            home = me.home.display(),
            lease_section = match &self.spec.etcd_lease {
                Some((endpoints, prefix)) => format!(
                    "lease:\n  backend: etcd\n  etcd:\n    endpoints: [{}]\n    prefix: {prefix}\n",
                    endpoints.join(", ")
                ),
                None => format!("lease:\n  dir: {}/.jenkins-ha\n", me.home.display()),
            },
            interval = self.spec.interval.as_millis(),
            fall = self.spec.fall,
            lease = self.spec.lease_timeout.as_millis(),
            sockets = sockets.join(", "),
            extra = self.spec.extra_config,
            reload_timeout = self.spec.reload_timeout.as_millis(),
            restart = match &self.spec.restart_command {
                Some(cmd) => format!(
                    "  restart_command: {:?}\n",
                    cmd.replace("{dir}", &self.dir.display().to_string()).replace("{node}", me.name)
                ),
                None => String::new(),
            },
        );
        fs::write(&me.config, yaml).expect("sidecar config");
    }

    /// Points every sidecar's config at another lease (see [`Spec::etcd_lease`]; `None`: the
    /// term files), from each sidecar's next start on: the configs are rewritten, nothing
    /// restarts.
    pub fn set_lease(&mut self, etcd_lease: Option<(Vec<String>, String)>) {
        self.spec.etcd_lease = etcd_lease;
        for i in 0..self.hosts.len() {
            self.write_sidecar_config(i);
        }
    }

    /// Stops host `i`'s sidecar with SIGTERM, as `systemctl restart` does, and starts it again
    /// from its config. Returns the stop's exit code (`None`: it needed SIGKILL).
    pub fn restart_sidecar(&mut self, i: usize) -> Option<i32> {
        let code = self.hosts[i]
            .sidecar
            .as_mut()
            .and_then(|p| p.terminate(Duration::from_secs(15)));
        self.start_sidecar(i);
        code
    }

    /// Sends host `i`'s heartbeats to `port` (a relay) from its next start on (two-node
    /// clusters: the `peer:` form).
    pub fn set_peer_port(&mut self, i: usize, port: u16) {
        assert_eq!(self.hosts.len(), 2, "set_peer_port is for the `peer:` form");
        self.hosts[i].peer_port = port;
        self.write_sidecar_config(i);
    }

    /// Spawns host `i`'s stand-in; returns its log's "listening" lines before (for
    /// [`Cluster::wait_jenkins_loaded`]).
    pub fn spawn_jenkins(&mut self, i: usize) -> usize {
        let host = &self.hosts[i];
        let args: Vec<String> = [
            "--listen".into(),
            format!("{}:{}", host.listen_ip, host.jenkins_port),
            "--home".into(),
            host.home.display().to_string(),
            "--name".into(),
            host.name.into(),
            "--agent-listen".into(),
            format!("{}:{}", host.listen_ip, host.agent_port),
            "--user".into(),
            JENKINS_USER.into(),
            "--token-file".into(),
            self.dir.join("jenkins.token").display().to_string(),
            "--reload-base".into(),
            format!("{}ms", self.spec.reload_base.as_millis()),
            "--reload-per-item".into(),
            format!("{}ms", self.spec.reload_per_item.as_millis()),
        ]
        .into();
        let mut args = args;
        if self.spec.start_quiet {
            // The init.groovy.d script the README ships: Jenkins starts in quiet-down, and only
            // its sidecar takes it out, once that node is the active one.
            args.push("--start-quiet".into());
        }
        args.extend(self.spec.standin_args.iter().cloned());
        if !self.spec.token_stats {
            // The setting the README recommends for both controllers (usageStatisticsEnabled
            // false): no users/*/apiTokenStats.xml written on each authenticated call, so a
            // quiet-down still works while the shared storage hangs.
            args.push("--no-token-stats".into());
        }
        let log = self.dir.join(format!("{}-jenkins.log", host.name));
        let (program, args) = host.command(&binaries().join("jenkins-standin"), args);
        let started_before = listening_lines(&log);
        let proc = Proc::spawn(
            &format!("{}-jenkins", host.name),
            &program,
            &args,
            &log,
            &[],
        );
        self.hosts[i].jenkins = Some(proc);
        started_before
    }

    /// Starts host `i`'s stand-in and waits until it has loaded the home: it answers 503 while
    /// it loads (as Jenkins does), and says it listens once the load is over, so a home written
    /// after that is not read by its start-up.
    pub fn start_jenkins(&mut self, i: usize) {
        let before = self.spawn_jenkins(i);
        self.wait_jenkins_loaded(i, before);
    }

    /// Waits until host `i`'s stand-in printed more "listening" lines than `before`. One that
    /// exits meanwhile (it could not listen on its port) fails at once.
    pub fn wait_jenkins_loaded(&mut self, i: usize, before: usize) {
        let log = self.dir.join(format!("{}-jenkins.log", self.hosts[i].name));
        let mut exited = false;
        let started = wait_for(Duration::from_secs(600), || {
            if listening_lines(&log) > before {
                return true;
            }
            exited = self.hosts[i].jenkins.as_mut().is_some_and(|p| !p.running());
            exited
        });
        assert!(
            started && !exited,
            "stand-in {i} {}\n{}",
            if exited {
                "exited during its start"
            } else {
                "did not finish starting"
            },
            fs::read_to_string(&log).unwrap_or_default()
        );
    }

    pub fn kill_jenkins(&mut self, i: usize) {
        if let Some(mut p) = self.hosts[i].jenkins.take() {
            p.kill9();
        }
    }

    pub fn start_sidecar(&mut self, i: usize) {
        self.start_sidecar_env(i, &[]);
    }

    /// Starts host `i`'s sidecar with extra environment variables (e.g. `NOTIFY_SOCKET`).
    pub fn start_sidecar_env(&mut self, i: usize, env: &[(&str, &str)]) {
        // LAB_LOG overrides the sidecars' log filter (e.g. LAB_LOG=debug).
        let log_filter = std::env::var("LAB_LOG").unwrap_or_else(|_| "info".into());
        let host = &self.hosts[i];
        let args = vec![
            "run".to_string(),
            "-c".into(),
            host.config.display().to_string(),
        ];
        let log = self.dir.join(format!("{}-sidecar.log", host.name));
        let (program, args) = host.command(&binaries().join("jenkins-ha"), args);
        let proc = Proc::spawn(
            &format!("{}-sidecar", host.name),
            &program,
            &args,
            &log,
            &[&[("JENKINS_HA_LOG", log_filter.as_str())], env].concat(),
        );
        self.hosts[i].sidecar = Some(proc);
    }

    pub fn kill_sidecar(&mut self, i: usize) {
        if let Some(mut p) = self.hosts[i].sidecar.take() {
            p.kill9();
        }
    }

    /// Runs a `jenkins-ha` subcommand with host `i`'s config; returns (exit code, stdout, stderr).
    pub fn cli(&self, i: usize, args: &[&str]) -> (Option<i32>, String, String) {
        let out = Command::new(binaries().join("jenkins-ha"))
            .args(args)
            .arg("-c")
            .arg(&self.hosts[i].config)
            .stdin(Stdio::null())
            .output()
            .expect("run jenkins-ha");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn sidecar(&mut self, i: usize) -> &mut Proc {
        self.hosts[i].sidecar.as_mut().expect("sidecar running")
    }

    pub fn haproxy_endpoint(&self, k: usize) -> HaproxyClient {
        HaproxyClient::new(
            Endpoint::Unix(self.haproxies[k].socket.clone()),
            Duration::from_secs(1),
        )
    }

    /// `show servers state` of one HAProxy, for the two listed backends.
    pub async fn haproxy_states(&self, k: usize) -> Option<Vec<ServerState>> {
        self.haproxy_endpoint(k).show_servers_state(None).await.ok()
    }

    /// The admin label (`ready`/`maint`/`drain`) of one server in one backend of one HAProxy.
    pub async fn server_label(
        &self,
        k: usize,
        backend: &str,
        server: &str,
    ) -> Option<&'static str> {
        self.haproxy_states(k)
            .await?
            .into_iter()
            .find(|s| s.backend == backend && s.server == server)
            .map(|s| s.admin_label())
    }

    /// An HTTP request on loopback with no body; `None` when nothing answered in `timeout`.
    pub async fn request(
        &self,
        method: hyper::Method,
        port: u16,
        path: &str,
        timeout: Duration,
    ) -> Option<jenkins_ha::io::http_client::Response> {
        let url = format!("{}://127.0.0.1:{port}{path}", self.scheme_of(port));
        self.http
            .send(method, &url, &[], bytes::Bytes::new(), timeout)
            .await
            .ok()
    }

    /// `https` for a sidecar's API port when the cluster runs with TLS, else `http`.
    pub fn scheme_of(&self, port: u16) -> &'static str {
        if self.pki.is_some() && self.hosts.iter().any(|h| h.api_port == port) {
            "https"
        } else {
            "http"
        }
    }

    /// The URL of host `i`'s API as the test reaches it (`https://` with TLS).
    pub fn api_url(&self, i: usize) -> String {
        let port = self.hosts[i].api_port;
        format!("{}://127.0.0.1:{port}", self.scheme_of(port))
    }

    pub async fn get(
        &self,
        port: u16,
        path: &str,
    ) -> Option<jenkins_ha::io::http_client::Response> {
        self.request(hyper::Method::GET, port, path, Duration::from_secs(2))
            .await
    }

    pub async fn post(
        &self,
        port: u16,
        path: &str,
    ) -> Option<jenkins_ha::io::http_client::Response> {
        self.request(hyper::Method::POST, port, path, Duration::from_secs(2))
            .await
    }

    /// The sidecar's `/active` status code (`None` when it does not answer within 300 ms, as a
    /// stopped process does not).
    pub async fn active_code(&self, i: usize) -> Option<u16> {
        let port = self.hosts[i].api_port;
        self.request(
            hyper::Method::GET,
            port,
            "/active",
            Duration::from_millis(300),
        )
        .await
        .map(|r| r.status.as_u16())
    }

    pub async fn status(&self, i: usize) -> Option<ClusterStatus> {
        let r = self.get(self.hosts[i].api_port, "/status").await?;
        serde_json::from_slice(&r.body).ok()
    }

    /// The stand-in's `/standin/state` document.
    pub async fn jenkins_state(&self, i: usize) -> Option<serde_json::Value> {
        let r = self
            .get(self.hosts[i].jenkins_port, "/standin/state")
            .await?;
        serde_json::from_slice(&r.body).ok()
    }

    pub async fn quieting_down(&self, i: usize) -> Option<bool> {
        self.jenkins_state(i).await?.get("quietingDown")?.as_bool()
    }

    /// A `/standin/...` JSON document of a live stand-in (`None` when it does not answer).
    pub async fn standin_json(&self, i: usize, path: &str) -> Option<serde_json::Value> {
        self.hosts[i].jenkins.as_ref()?;
        let r = self
            .request(
                hyper::Method::GET,
                self.hosts[i].jenkins_port,
                &format!("/standin/{path}"),
                Duration::from_secs(10),
            )
            .await?;
        serde_json::from_slice(&r.body).ok()
    }

    /// Every timer fire a live stand-in saw: (job, slot).
    pub async fn fires(&self, i: usize) -> Vec<(String, u64)> {
        let Some(serde_json::Value::Array(fires)) = self.standin_json(i, "fires").await else {
            return Vec::new();
        };
        fires
            .iter()
            .filter_map(|f| Some((f["job"].as_str()?.to_string(), f["slot"].as_u64()?)))
            .collect()
    }

    /// The fires still waiting in a live stand-in's queue: (job, slot).
    pub async fn queued_fires(&self, i: usize) -> Vec<(String, u64)> {
        let Some(serde_json::Value::Array(items)) = self.standin_json(i, "queue").await else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for it in &items {
            let Some(job) = it["job"].as_str() else {
                continue;
            };
            for slot in it["fireSlots"].as_array().into_iter().flatten() {
                if let Some(slot) = slot.as_u64() {
                    out.push((job.to_string(), slot));
                }
            }
        }
        out
    }

    /// A live stand-in's in-memory next build numbers, per job.
    pub async fn next_numbers(&self, i: usize) -> std::collections::BTreeMap<String, u64> {
        let Some(serde_json::Value::Object(all)) = self.standin_json(i, "next-numbers").await
        else {
            return Default::default();
        };
        all.into_iter()
            .filter_map(|(job, n)| Some((job, n.as_u64()?)))
            .collect()
    }

    /// The ledger of builds (see [`ledger`]): collisions in every stand-in log, duplicate and
    /// lost fires, and whether `active`'s next numbers are above every `builds/N` on disk.
    /// Fires before `from` and fires less than `settle` old are not judged (they may still be
    /// queued or starting).
    pub async fn build_ledger(
        &self,
        active: usize,
        from: std::time::SystemTime,
        settle: Duration,
    ) -> ledger::Verdict {
        let ms = |t: std::time::SystemTime| {
            u64::try_from(
                t.duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis(),
            )
            .unwrap_or(u64::MAX)
        };
        let judge_from_ms = ms(from);
        let judge_before_ms = ms(std::time::SystemTime::now() - settle);
        let mut fires = Vec::new();
        let mut queued = std::collections::BTreeSet::new();
        for i in 0..self.hosts.len() {
            fires.extend(self.fires(i).await);
            queued.extend(self.queued_fires(i).await);
        }
        let home = self.home.clone();
        let builds = tokio::task::spawn_blocking(move || ledger::disk_builds(&home))
            .await
            .unwrap_or_default();
        let highest = ledger::highest_numbers(&builds);
        let next = self.next_numbers(active).await;
        ledger::judge(&ledger::Evidence {
            builds: &builds,
            fires: &fires,
            queued: &queued,
            judge_ms: judge_from_ms..judge_before_ms,
            collisions: ledger::logged_collisions(&self.dir),
            highest: &highest,
            next_numbers: &next,
        })
    }

    /// A request through HAProxy's HTTP frontend: (status, which stand-in answered).
    pub async fn through_haproxy(&self, k: usize, path: &str) -> Option<(u16, Option<String>)> {
        // A short timeout: a request caught in HAProxy's retries to a dead server must not hide
        // the moment the next one is served.
        let port = self.haproxies[k].front_port;
        let r = self
            .request(hyper::Method::GET, port, path, Duration::from_millis(500))
            .await?;
        Some((
            r.status.as_u16(),
            r.header("X-Standin-Node").map(str::to_string),
        ))
    }

    /// Polls `f` every 50 ms until it returns `Some`, or `None` after `timeout`.
    pub async fn wait<T, F, Fut>(&self, timeout: Duration, mut f: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f().await {
                return Some(v);
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The hosts whose sidecar answers `/active` 200 now.
    pub async fn active_nodes(&self) -> Vec<usize> {
        let mut active = Vec::new();
        for i in 0..self.hosts.len() {
            if self.active_code(i).await == Some(200) {
                active.push(i);
            }
        }
        active
    }

    /// Waits until exactly one node answers `/active` 200 and returns its index.
    pub async fn wait_one_active(&self, timeout: Duration) -> Option<usize> {
        self.wait(timeout, || async {
            match self.active_nodes().await[..] {
                [one] => Some(one),
                _ => None,
            }
        })
        .await
    }

    /// Whether HAProxy `k` routes to host `i` in every backend (ready) and to no other (maint).
    pub async fn routed_only_to(&self, k: usize, i: usize) -> bool {
        let Some(states) = self.haproxy_states(k).await else {
            return false;
        };
        ["jenkins_http", "jenkins_agent"].iter().all(|b| {
            self.hosts.iter().enumerate().all(|(j, host)| {
                states
                    .iter()
                    .find(|s| s.backend == *b && s.server == host.name)
                    .is_some_and(|s| if j == i { s.is_ready() } else { s.is_maint() })
            })
        })
    }

    /// Waits until HAProxy `k` routes to host `i` in every backend (ready) and not to the others (maint).
    pub async fn wait_routed(&self, k: usize, i: usize, timeout: Duration) -> bool {
        self.wait(timeout, || async {
            self.routed_only_to(k, i).await.then_some(())
        })
        .await
        .is_some()
    }

    /// Waits until a request through HAProxy gets a 200 from host `i`'s Jenkins.
    pub async fn wait_served_by(&self, k: usize, i: usize, timeout: Duration) -> Option<Duration> {
        let start = Instant::now();
        self.wait(timeout, || async {
            match self.through_haproxy(k, "/login").await {
                Some((200, Some(node))) if node == self.hosts[i].name => Some(start.elapsed()),
                _ => None,
            }
        })
        .await
    }

    /// Starts every sidecar and waits until the cluster has settled: see [`Cluster::settle`].
    pub async fn start_settled(spec: Spec) -> (Cluster, usize) {
        let c = Cluster::start(spec);
        let active = c.settle().await;
        (c, active)
    }

    /// Waits until exactly one node is active, every HAProxy routes to it and serves a 200 from
    /// its Jenkins (its promotion is over), its Jenkins is out of quiet-down, and every other
    /// node is a healthy, quiet standby that every sidecar sees. Returns the active's index;
    /// panics with every log otherwise.
    pub async fn settle(&self) -> usize {
        self.settle_with(&[]).await
    }

    /// Like [`Cluster::settle`], leaving out the hosts in `down` (stopped on purpose: their
    /// sidecar or Jenkins is not running).
    pub async fn settle_with(&self, down: &[usize]) -> usize {
        let active = self
            .wait_one_active(Duration::from_secs(15))
            .await
            .unwrap_or_else(|| panic!("no single active node\n{}", self.logs()));
        let name = self.hosts[active].name;
        for k in 0..self.haproxies.len() {
            assert!(
                self.wait_routed(k, active, Duration::from_secs(5)).await,
                "HAProxy {k} not routed to {name}\n{}",
                self.logs()
            );
            assert!(
                self.wait_served_by(k, active, Duration::from_secs(10))
                    .await
                    .is_some(),
                "HAProxy {k} does not serve from {name}\n{}",
                self.logs()
            );
        }
        let up: Vec<usize> = (0..self.hosts.len())
            .filter(|i| !down.contains(i))
            .collect();
        let settled = self
            .wait(Duration::from_secs(10), || async {
                for &i in &up {
                    let s = self.status(i).await?;
                    if s.active.as_deref() != Some(name) {
                        return None;
                    }
                    for &j in &up {
                        let row = s.nodes.iter().find(|n| n.name == self.hosts[j].name)?;
                        let role = if j == active { "active" } else { "standby" };
                        if row.role.as_str() != role || !row.jenkins_healthy {
                            return None;
                        }
                    }
                    let quiet = self.quieting_down(i).await?;
                    if quiet != (i != active) {
                        return None;
                    }
                }
                Some(())
            })
            .await;
        assert!(
            settled.is_some(),
            "the cluster did not settle\n{}",
            self.logs()
        );
        active
    }

    /// The term files in the lease directory, sorted by name.
    pub fn term_files(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.home.join(".jenkins-ha"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("term-"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Every process's log, for a failing test.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        let mut files: Vec<_> = fs::read_dir(&self.dir)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        for f in files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "log"))
        {
            out.push_str(&format!("===== {}\n", f.display()));
            out.push_str(&fs::read_to_string(f).unwrap_or_default());
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        for h in self.hosts.iter_mut() {
            h.sidecar.take();
            h.jenkins.take();
        }
        for h in self.haproxies.iter_mut() {
            h.proc.take();
        }
        // Unmount before the temp dir goes: its removal stops at the first mount point it meets.
        self.bind.take();
    }
}

impl Cluster {
    /// The manual design's `haproxy.cfg` ([`Spec::manual_haproxy`]): no sidecar and no runtime
    /// writes; HAProxy's own health check of `GET /login` on each Jenkins decides, every second,
    /// one failed check to mark a server down and one passed check to bring it back. jenkins01
    /// takes the traffic; jenkins02 is its `backup`, used only while jenkins01 is down.
    pub fn write_manual_haproxy_cfg(&self, k: usize) {
        let h = &self.haproxies[k];
        let [a, b] = &self.hosts[..] else {
            panic!("the manual HAProxy design has two servers");
        };
        let cfg = format!(
            "global\n    stats socket {sock} mode 600 level admin\n    stats timeout 10s\n\n\
             defaults\n    mode http\n    timeout connect 1s\n    timeout client 30s\n    timeout server 30s\n\n\
             frontend jenkins\n    bind 127.0.0.1:{front}\n    default_backend jenkins_http\n\n\
             backend jenkins_http\n    option httpchk GET /login\n    http-check expect status 200\n    \
             default-server inter 1s fall 1 rise 1\n    \
             server {an} {aip}:{ajp} check\n    server {bn} {bip}:{bjp} check backup\n\n\
             frontend jenkins_agent\n    mode tcp\n    bind 127.0.0.1:{agent_front}\n    default_backend jenkins_agent\n\n\
             backend jenkins_agent\n    mode tcp\n    \
             server {an} {aip}:{aap} track jenkins_http/{an}\n    \
             server {bn} {bip}:{bap} track jenkins_http/{bn} backup\n",
            sock = h.socket.display(),
            front = h.front_port,
            agent_front = h.agent_front_port,
            an = a.name,
            aip = a.haproxy_ip,
            ajp = a.jenkins_port,
            aap = a.agent_port,
            bn = b.name,
            bip = b.haproxy_ip,
            bjp = b.jenkins_port,
            bap = b.agent_port,
        );
        fs::write(&h.cfg, cfg).expect("haproxy.cfg");
    }

    /// The lease directory on the shared storage itself (not through a node's mount).
    pub fn lease_dir(&self) -> PathBuf {
        self.home.join(".jenkins-ha")
    }
}

/// Counts split-brain samples: every 100 ms it reads HAProxy, every `/active` and every Jenkins'
/// quiet-down state. Any two nodes at once count, out of however many there are.
#[derive(Debug, Default, Clone)]
pub struct SplitBrain {
    pub samples: usize,
    /// Two or more servers out of maint in some backend of some HAProxy.
    pub haproxy_both_ready: usize,
    /// Two or more sidecars answering `/active` 200.
    pub both_active: usize,
    /// Two or more Jenkins out of quiet-down.
    pub both_unquiet: usize,
    pub first: Option<String>,
}

impl SplitBrain {
    pub fn total(&self) -> usize {
        self.haproxy_both_ready + self.both_active + self.both_unquiet
    }

    /// Adds another observation's samples to these (the first split seen stays the earliest).
    pub fn add(&mut self, other: &SplitBrain) {
        self.samples += other.samples;
        self.haproxy_both_ready += other.haproxy_both_ready;
        self.both_active += other.both_active;
        self.both_unquiet += other.both_unquiet;
        if self.first.is_none() {
            self.first.clone_from(&other.first);
        }
    }
}

impl Cluster {
    /// Samples every 100 ms for `duration`.
    pub async fn sample_split_brain(&self, duration: Duration, count_jenkins: bool) -> SplitBrain {
        let mut sb = SplitBrain::default();
        let end = Instant::now() + duration;
        while Instant::now() < end {
            let tick = Instant::now();
            self.sample_once(&mut sb, count_jenkins).await;
            let spent = tick.elapsed();
            if spent < Duration::from_millis(100) {
                tokio::time::sleep(Duration::from_millis(100) - spent).await;
            }
        }
        sb
    }

    pub async fn sample_once(&self, sb: &mut SplitBrain, count_jenkins: bool) {
        sb.samples += 1;
        for k in 0..self.haproxies.len() {
            if let Some(states) = self.haproxy_states(k).await {
                for b in ["jenkins_http", "jenkins_agent"] {
                    let ready = states
                        .iter()
                        .filter(|s| s.backend == b && !s.is_maint())
                        .count();
                    if ready > 1 {
                        sb.haproxy_both_ready += 1;
                        sb.first
                            .get_or_insert_with(|| format!("haproxy {k} {b}: {states:?}"));
                    }
                }
            }
        }
        let active = self.active_nodes().await;
        if active.len() > 1 {
            sb.both_active += 1;
            let names: Vec<&str> = active.iter().map(|&i| self.hosts[i].name).collect();
            sb.first
                .get_or_insert_with(|| format!("/active 200 on {}", names.join(" and ")));
        }
        if count_jenkins {
            let mut unquiet = Vec::new();
            for i in 0..self.hosts.len() {
                if self.quieting_down(i).await == Some(false) {
                    unquiet.push(self.hosts[i].name);
                }
            }
            if unquiet.len() > 1 {
                sb.both_unquiet += 1;
                sb.first.get_or_insert_with(|| {
                    format!("Jenkins out of quiet-down on {}", unquiet.join(" and "))
                });
            }
        }
    }
}

/// A TCP relay in front of a port that can be cut: a real partition of that link as the
/// processes see it (connections hang, new ones are accepted and then blackholed).
pub struct Relay {
    pub port: u16,
    cut: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    pub async fn start(target_port: u16) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("relay bind");
        let port = listener.local_addr().expect("relay addr").port();
        let (cut, cut_rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(forward_port(listener, target_port, cut_rx));
        Relay { port, cut, task }
    }

    pub fn cut(&self, cut: bool) {
        let _ = self.cut.send(cut);
    }
}

async fn wait_cut(rx: &mut tokio::sync::watch::Receiver<bool>, value: bool) {
    let _ = rx.wait_for(|c| *c == value).await.map(|_| ());
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// FUSE (bindfs) mounts of one directory, one per host: the NFS stand-in. A write through one
/// mount raises no inotify event on another, as on NFS. Unmounted on drop.
pub struct BindMounts {
    pub shared: PathBuf,
    pub mounts: Vec<PathBuf>,
}

impl BindMounts {
    /// Mounts `shared` at `<dir>/mount-0` and `<dir>/mount-1`. Panics (never skips) when
    /// bindfs is missing: `scripts/install-deps` installs it.
    pub fn new(shared: &Path, dir: &Path) -> BindMounts {
        Self::with_count(shared, dir, 2)
    }

    /// Mounts `shared` at `<dir>/mount-0` to `<dir>/mount-<n-1>`.
    pub fn with_count(shared: &Path, dir: &Path, n: usize) -> BindMounts {
        let shared = shared.to_path_buf();
        let mounts: Vec<PathBuf> = (0..n).map(|i| dir.join(format!("mount-{i}"))).collect();
        for m in &mounts {
            fs::create_dir_all(m).expect("mount point");
            // Multithreaded, as an NFS client sends RPCs in parallel: a scan of 10,000 jobs
            // must not hold up a lease read queued behind it. (bindfs's caveat about the mode
            // concerns its permission mapping, which these mounts do not use.)
            let out = Command::new("bindfs")
                .arg("--no-allow-other")
                .arg("--multithreaded")
                .arg(&shared)
                .arg(m)
                .output()
                .unwrap_or_else(|e| {
                    panic!("bindfs is not installed ({e}): run scripts/install-deps")
                });
            assert!(
                out.status.success(),
                "bindfs {} {} failed: {}",
                shared.display(),
                m.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        BindMounts { shared, mounts }
    }

    /// The bindfs process serving mount `i` (to freeze it, like a hung NFS server): the one live
    /// process whose program is `bindfs` and whose last argument is exactly that mount point.
    /// `None` when there is none, or more than one. (Read from `/proc` rather than with a `pgrep`
    /// regex, which would take the path's characters as a pattern and could match a zombie or
    /// another mount whose path merely ends the same way.)
    pub fn fuse_pid(&self, i: usize) -> Option<Pid> {
        let mount = self.mounts[i].as_os_str().as_encoded_bytes();
        let mut found = fs::read_dir("/proc").ok()?.filter_map(|e| {
            let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args: Vec<&[u8]> = cmdline
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .collect();
            let program = Path::new(std::ffi::OsStr::from_bytes(args.first()?));
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let state = stat.rsplit_once(") ")?.1.chars().next()?;
            (program.file_name()? == "bindfs" && *args.last()? == mount && state != 'Z')
                .then(|| Pid::from_raw(pid))
        });
        let pid = found.next()?;
        found.next().is_none().then_some(pid)
    }

    /// Freezes mount `i`'s FUSE process (SIGSTOP), the way a hard-mounted NFS hangs when its
    /// server stops answering: every call on that mount blocks until [`FuseFreeze::thaw`]. The
    /// guard thaws on drop, even in a panic, or the unmount at the end would hang too.
    pub fn freeze(&self, i: usize) -> FuseFreeze {
        let pid = self.fuse_pid(i).unwrap_or_else(|| {
            panic!(
                "no single bindfs process serves {}",
                self.mounts[i].display()
            )
        });
        kill(pid, Signal::SIGSTOP).expect("SIGSTOP bindfs");
        FuseFreeze { pid, frozen: true }
    }

    /// Lazily unmounts mount `i` (`fusermount -u -z`): the storage is gone and the mount point
    /// is a bare local directory again. True when it was unmounted.
    pub fn unmount(&self, i: usize) -> bool {
        let m = &self.mounts[i];
        ["fusermount", "fusermount3"].iter().any(|prog| {
            Command::new(prog)
                .arg("-u")
                .arg("-z")
                .arg(m)
                .status()
                .is_ok_and(|s| s.success())
        })
    }

    /// Mounts `shared` at mount point `i` again, after [`BindMounts::unmount`].
    pub fn remount(&self, i: usize) {
        let m = &self.mounts[i];
        let out = Command::new("bindfs")
            .arg("--no-allow-other")
            .arg("--multithreaded")
            .arg(&self.shared)
            .arg(m)
            .output()
            .expect("run bindfs");
        assert!(
            out.status.success(),
            "bindfs {} {} failed: {}",
            self.shared.display(),
            m.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Whether mount point `i` has a filesystem mounted on it (per `/proc/self/mountinfo`).
    pub fn is_mounted(&self, i: usize) -> bool {
        let mount = self.mounts[i].display().to_string();
        fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(mount.as_str()))
    }
}

/// A frozen FUSE process (see [`BindMounts::freeze`]); SIGCONT on [`FuseFreeze::thaw`] or drop.
pub struct FuseFreeze {
    pub pid: Pid,
    frozen: bool,
}

impl FuseFreeze {
    pub fn thaw(&mut self) {
        if std::mem::take(&mut self.frozen) {
            let _ = kill(self.pid, Signal::SIGCONT);
        }
    }
}

impl Drop for FuseFreeze {
    fn drop(&mut self) {
        self.thaw();
    }
}

impl Drop for BindMounts {
    fn drop(&mut self) {
        for m in &self.mounts {
            let unmounted = Command::new("fusermount")
                .arg("-u")
                .arg("-z")
                .arg(m)
                .status()
                .is_ok_and(|s| s.success())
                || Command::new("fusermount3")
                    .arg("-u")
                    .arg("-z")
                    .arg(m)
                    .status()
                    .is_ok_and(|s| s.success());
            if !unmounted {
                let _ = Command::new("umount").arg("-l").arg(m).status();
            }
        }
    }
}

/// A network namespace joined to the root one by a veth pair on its own /24 in 10.231.0.0/16:
/// the root side is `root_ip`, the namespace side `ns_ip`. Names carry the test process's pid
/// and a counter, so parallel runs do not collide. Deleted on drop, even in a panic.
///
/// [`NetNs::set_link`] takes the namespace's end of the veth down or up: a real partition, as
/// the processes see it (no route, no answer), unlike a [`Relay`] which cuts one port.
pub struct NetNs {
    pub name: String,
    pub veth_root: String,
    pub veth_ns: String,
    pub root_ip: String,
    pub ns_ip: String,
    forwards: Option<Forwarder>,
    forwards_out: Option<Forwarder>,
    /// Set to `true` to cut [`NetNs::forward_out`] like a dropped link ([`NetNs::cut_out`]).
    out_cut: tokio::sync::watch::Sender<bool>,
    /// The switch of [`NetNs::forward`], which stays off (its sender must live: a closed switch
    /// would read as a change).
    in_cut: tokio::sync::watch::Sender<bool>,
}

/// A forwarding thread and what stops it.
type Forwarder = (
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
);

/// The port of a `http(s)://127.0.0.1:PORT` URL.
fn loopback_port(url: &str) -> Option<u16> {
    let rest = url.split_once("://")?.1;
    rest.strip_prefix("127.0.0.1:")?
        .trim_end_matches('/')
        .parse()
        .ok()
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl NetNs {
    /// Creates the namespace and the veth pair, addresses both ends and brings them up (and the
    /// namespace's loopback). Panics, after cleaning up, when `ip` cannot (not root?).
    pub fn create() -> NetNs {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pid = std::process::id();
        let tag = format!("{pid}x{n}");
        // A /24 that no interface uses yet, starting from a spread of pid and time.
        let used = Command::new("ip")
            .args(["-o", "-4", "addr", "show"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let seed = pid as usize * 7
            + n as usize * 31
            + std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos() as usize)
                .unwrap_or(0);
        let subnet = (0..250)
            .map(|k| (seed + k) % 250 + 2)
            .find(|x| !used.contains(&format!("10.231.{x}.")))
            .expect("a free /24 in 10.231.0.0/16");
        let ns = NetNs {
            name: format!("jha{tag}"),
            veth_root: format!("jhr{tag}"),
            veth_ns: format!("jhn{tag}"),
            root_ip: format!("10.231.{subnet}.1"),
            ns_ip: format!("10.231.{subnet}.2"),
            forwards: None,
            forwards_out: None,
            out_cut: tokio::sync::watch::channel(false).0,
            in_cut: tokio::sync::watch::channel(false).0,
        };
        let setup = || -> Result<(), String> {
            ip(&["netns", "add", &ns.name])?;
            ip(&[
                "link",
                "add",
                &ns.veth_root,
                "type",
                "veth",
                "peer",
                "name",
                &ns.veth_ns,
                "netns",
                &ns.name,
            ])?;
            ip(&[
                "addr",
                "add",
                &format!("{}/24", ns.root_ip),
                "dev",
                &ns.veth_root,
            ])?;
            ip(&["link", "set", &ns.veth_root, "up"])?;
            ip(&[
                "-n",
                &ns.name,
                "addr",
                "add",
                &format!("{}/24", ns.ns_ip),
                "dev",
                &ns.veth_ns,
            ])?;
            ip(&["-n", &ns.name, "link", "set", &ns.veth_ns, "up"])?;
            ip(&["-n", &ns.name, "link", "set", "lo", "up"])
        };
        if let Err(e) = setup() {
            drop(ns);
            panic!("cannot set up a network namespace (needs root and iproute2): {e}");
        }
        ns
    }

    /// Takes the namespace's end of the veth down (`false`: the link is cut) or up again.
    pub fn set_link(&self, up: bool) {
        ip(&[
            "-n",
            &self.name,
            "link",
            "set",
            &self.veth_ns,
            if up { "up" } else { "down" },
        ])
        .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Forwards `127.0.0.1:PORT` of the root namespace to `127.0.0.1:PORT` inside this one, for
    /// each port: the test's view of a host in the namespace, unaffected by [`NetNs::set_link`].
    /// One thread that entered the namespace makes every outbound connection.
    pub fn forward(&mut self, ports: &[u16]) {
        use std::os::fd::AsRawFd;
        assert!(self.forwards.is_none(), "forward() once per namespace");
        // Bound here, in the root namespace (a socket stays in the namespace it was made in).
        let listeners: Vec<(std::net::TcpListener, u16)> = ports
            .iter()
            .map(|p| {
                let l = std::net::TcpListener::bind(("127.0.0.1", *p))
                    .unwrap_or_else(|e| panic!("forwarder on 127.0.0.1:{p}: {e}"));
                l.set_nonblocking(true).expect("nonblocking");
                (l, *p)
            })
            .collect();
        let ns_file = fs::File::open(format!("/run/netns/{}", self.name)).expect("open the netns");
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (entered_tx, entered_rx) = std::sync::mpsc::channel();
        // The test's console into the namespace is never cut: a switch that stays off.
        let never_cut = self.in_cut.subscribe();
        let thread = std::thread::Builder::new()
            .name(format!("{}-forward", self.name))
            .spawn(move || {
                // SAFETY: setns(2) on a valid namespace fd; CLONE_NEWNET moves only this thread,
                // which from here on only makes sockets for the forwarding below.
                let rc = unsafe { nix::libc::setns(ns_file.as_raw_fd(), nix::libc::CLONE_NEWNET) };
                let entered = if rc == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error().to_string())
                };
                let ok = entered.is_ok();
                let _ = entered_tx.send(entered);
                if !ok {
                    return;
                }
                serve_forwards(listeners, never_cut, stop_rx);
            })
            .expect("spawn the forwarder");
        entered_rx
            .recv()
            .expect("the forwarder thread")
            .unwrap_or_else(|e| panic!("setns into {}: {e}", self.name));
        self.forwards = Some((stop, thread));
    }
}

impl NetNs {
    /// Forwards `127.0.0.1:PORT` inside this namespace to `127.0.0.1:PORT` of the root one, for
    /// each port: a way out of the namespace that [`NetNs::set_link`] does not cut, like a
    /// storage network apart from the hosts' network (the etcd members of a lease).
    pub fn forward_out(&mut self, ports: &[u16]) {
        use std::os::fd::AsRawFd;
        assert!(
            self.forwards_out.is_none(),
            "forward_out() once per namespace"
        );
        let ns_file = fs::File::open(format!("/run/netns/{}", self.name)).expect("open the netns");
        let wanted = ports.to_vec();
        // Bound by a thread that entered the namespace (a socket stays in the namespace it was
        // made in); that thread ends there.
        let listeners = std::thread::spawn(
            move || -> Result<Vec<(std::net::TcpListener, u16)>, String> {
                // SAFETY: setns(2) on a valid namespace fd; CLONE_NEWNET moves only this thread,
                // which only binds the listeners below and ends.
                let rc = unsafe { nix::libc::setns(ns_file.as_raw_fd(), nix::libc::CLONE_NEWNET) };
                if rc != 0 {
                    return Err(std::io::Error::last_os_error().to_string());
                }
                wanted
                    .iter()
                    .map(|p| {
                        let l = std::net::TcpListener::bind(("127.0.0.1", *p))
                            .map_err(|e| format!("127.0.0.1:{p} in the namespace: {e}"))?;
                        l.set_nonblocking(true).map_err(|e| e.to_string())?;
                        Ok((l, *p))
                    })
                    .collect()
            },
        )
        .join()
        .expect("the namespace binder thread")
        .unwrap_or_else(|e| panic!("forward out of {}: {e}", self.name));
        // Accepted and connected onwards by a thread of the root namespace, where the targets are.
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let cut = self.out_cut.subscribe();
        let thread = std::thread::Builder::new()
            .name(format!("{}-forward-out", self.name))
            .spawn(move || {
                serve_forwards(listeners, cut, stop_rx);
            })
            .expect("spawn the forwarder");
        self.forwards_out = Some((stop, thread));
    }

    /// Cuts the way out of [`NetNs::forward_out`] (`true`) or restores it: while cut, open
    /// connections carry nothing and new ones are accepted and never answered, as over a dropped
    /// link (no reset, no refusal: the client waits for its own deadline). The hosts' link
    /// ([`NetNs::set_link`]) is left alone.
    pub fn cut_out(&self, cut: bool) {
        self.out_cut.send_replace(cut);
    }
}

/// Runs [`forward_port`] for every listener on this thread until `stop` fires (the thread's
/// own runtime: a forwarder thread may have entered another network namespace).
fn serve_forwards(
    listeners: Vec<(std::net::TcpListener, u16)>,
    cut: tokio::sync::watch::Receiver<bool>,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("forwarder runtime");
    rt.block_on(async move {
        for (listener, port) in listeners {
            let listener = tokio::net::TcpListener::from_std(listener).expect("forward listener");
            tokio::spawn(forward_port(listener, port, cut.clone()));
        }
        let _ = stop.await;
    });
}

/// Accepts on `listener` and forwards each connection to `127.0.0.1:port` (a socket made on
/// the calling thread, so in its network namespace). While `cut` is set, open connections
/// carry nothing and new ones are held open unanswered, like a dropped link.
async fn forward_port(
    listener: tokio::net::TcpListener,
    port: u16,
    cut: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        let mut cut_rx = cut.clone();
        tokio::spawn(async move {
            if *cut_rx.borrow() {
                // Blackhole: hold the connection open and say nothing.
                wait_cut(&mut cut_rx, false).await;
                return;
            }
            // A socket made on this thread, so in the namespace it entered.
            let Ok(socket) = tokio::net::TcpSocket::new_v4() else {
                return;
            };
            let to = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            if let Ok(mut outbound) = socket.connect(to).await {
                let mut cut_now = cut_rx.clone();
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    _ = wait_cut(&mut cut_now, true) => {
                        // Cut: stop forwarding but keep both sockets open, like a dropped link.
                        wait_cut(&mut cut_rx, false).await;
                    }
                }
            }
        });
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        for (stop, thread) in [self.forwards.take(), self.forwards_out.take()]
            .into_iter()
            .flatten()
        {
            let _ = stop.send(());
            let _ = thread.join();
        }
        let _ = ip(&["link", "del", &self.veth_root]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// Writes a job's config.xml with `description`, atomically (temp file + rename, as Jenkins does).
pub fn write_job(home: &Path, full_name: &str, description: &str) {
    let dir = item_dir(home, full_name);
    fs::create_dir_all(&dir).expect("job dir");
    let tmp = dir.join("atomic123.tmp");
    let mut f = fs::File::create(&tmp).expect("tmp");
    writeln!(
        f,
        "<?xml version='1.1' encoding='UTF-8'?>\n<project>\n  <description>{description}</description>\n</project>"
    )
    .expect("write");
    drop(f);
    fs::rename(&tmp, dir.join("config.xml")).expect("rename");
}

/// The directory of an item: `F/B` lives in `jobs/F/jobs/B`.
pub fn item_dir(home: &Path, full_name: &str) -> PathBuf {
    let mut dir = home.join("jobs");
    for (n, part) in full_name.split('/').enumerate() {
        if n > 0 {
            dir.push("jobs");
        }
        dir.push(part);
    }
    dir
}

/// Writes a folder's config.xml (the cloudbees-folder root element).
pub fn write_folder(home: &Path, full_name: &str) {
    let dir = item_dir(home, full_name);
    fs::create_dir_all(dir.join("jobs")).expect("folder dir");
    fs::write(
        dir.join("config.xml"),
        "<?xml version='1.1' encoding='UTF-8'?>\n<com.cloudbees.hudson.plugins.folder.Folder>\n  <description></description>\n</com.cloudbees.hudson.plugins.folder.Folder>\n",
    )
    .expect("folder config");
}

fn write_secret(path: &Path, value: &str) {
    fs::write(path, format!("{value}\n")).expect("secret");
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).expect("chmod");
}

fn haproxy_binary() -> &'static str {
    for p in [
        "/usr/sbin/haproxy",
        "/usr/local/sbin/haproxy",
        "/usr/bin/haproxy",
    ] {
        if Path::new(p).exists() {
            return p;
        }
    }
    panic!("haproxy is not installed: run scripts/test (it installs Debian's haproxy), or apt-get install haproxy")
}

fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// Running HAProxy from a config the caller writes (for example the shipped
/// `haproxy/haproxy.cfg`, rewritten for loopback), started the way Debian's unit starts it.
impl Cluster {
    /// Like [`Cluster::prepare`] (no sidecar yet), but HAProxy `k` runs the text `cfg(&cluster, k)`
    /// instead of the harness's own config, in master-worker mode
    /// ([`Cluster::start_haproxy_master_worker`]). The text must put a `level admin` unix socket
    /// at `haproxies[k].socket`: the harness reads HAProxy's state there, and the sidecars write
    /// there unless [`Cluster::set_sidecar_haproxy_sockets`] points them elsewhere.
    pub fn prepare_with_haproxy_cfg(
        spec: Spec,
        cfg: impl Fn(&Cluster, usize) -> String,
    ) -> Cluster {
        let mut c = Self::prepare(spec);
        for k in 0..c.haproxies.len() {
            c.kill_haproxy(k);
            let text = cfg(&c, k);
            fs::write(&c.haproxies[k].cfg, text).expect("haproxy.cfg");
            c.start_haproxy_master_worker(k);
        }
        c
    }

    /// Sets `haproxy.sockets` in every sidecar' configs (for example `tcp://127.0.0.1:PORT`),
    /// from their next start on. A later rewrite of a sidecar config by the harness
    /// ([`Cluster::set_peer_port`]) puts the harness's unix sockets back.
    pub fn set_sidecar_haproxy_sockets(&self, sockets: &[String]) {
        for host in &self.hosts {
            let yaml = fs::read_to_string(&host.config).expect("sidecar config");
            let mut replaced = 0;
            let lines: Vec<String> = yaml
                .lines()
                .map(|l| {
                    if l.trim_start().starts_with("sockets:") {
                        replaced += 1;
                        format!("  sockets: [{}]", sockets.join(", "))
                    } else {
                        l.to_string()
                    }
                })
                .collect();
            assert_eq!(
                replaced,
                1,
                "{}: expected one haproxy.sockets line",
                host.config.display()
            );
            fs::write(&host.config, lines.join("\n") + "\n").expect("sidecar config");
        }
    }

    /// The pid file and the master CLI socket of HAProxy `k` in master-worker mode.
    pub fn haproxy_master_paths(&self, k: usize) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("haproxy-{k}.pid")),
            self.dir.join(format!("haproxy-{k}-master.sock")),
        )
    }

    /// Starts HAProxy `k` from `haproxies[k].cfg` as Debian's unit does
    /// (`haproxy -Ws -f CONFIG -p PIDFILE -S MASTER_SOCKET`): a master process in the foreground
    /// that forks one worker; SIGUSR2 to the master reloads ([`Cluster::reload_haproxy`]), like
    /// `systemctl reload haproxy`. `haproxies[k].proc` is the master. Waits for the admin socket.
    pub fn start_haproxy_master_worker(&mut self, k: usize) {
        let (pid_file, master_socket) = self.haproxy_master_paths(k);
        let h = &mut self.haproxies[k];
        let _ = fs::remove_file(&h.socket);
        let args = vec![
            "-Ws".to_string(),
            "-f".into(),
            h.cfg.display().to_string(),
            "-p".into(),
            pid_file.display().to_string(),
            "-S".into(),
            master_socket.display().to_string(),
        ];
        h.proc = Some(Proc::spawn(
            &format!("haproxy-{k}"),
            Path::new(haproxy_binary()),
            &args,
            &h.log,
            &[],
        ));
        let socket = h.socket.clone();
        assert!(
            wait_for(Duration::from_secs(10), || socket.exists()),
            "HAProxy {k} did not create its socket; see {}",
            h.log.display()
        );
    }

    /// The pid of the HAProxy process answering on `haproxies[k].socket` (`show info`): in
    /// master-worker mode, the current worker.
    pub async fn haproxy_worker_pid(&self, k: usize) -> Option<u32> {
        let info = self.haproxy_endpoint(k).command("show info").await.ok()?;
        info.lines()
            .find_map(|l| l.strip_prefix("Pid:"))
            .and_then(|p| p.trim().parse().ok())
    }

    /// Reloads HAProxy `k` (started by [`Cluster::start_haproxy_master_worker`]) the way
    /// `systemctl reload haproxy` does, SIGUSR2 to the master, and waits until a new worker
    /// answers on the admin socket. Returns the new worker's pid.
    pub async fn reload_haproxy(&self, k: usize) -> u32 {
        let before = self.haproxy_worker_pid(k).await;
        let master = self.haproxies[k]
            .proc
            .as_ref()
            .unwrap_or_else(|| panic!("HAProxy {k} is not running"));
        master.signal(Signal::SIGUSR2);
        self.wait(Duration::from_secs(10), || async {
            let now = self.haproxy_worker_pid(k).await?;
            (Some(now) != before).then_some(now)
        })
        .await
        .unwrap_or_else(|| {
            panic!(
                "HAProxy {k}: no new worker after SIGUSR2; see {}",
                self.haproxies[k].log.display()
            )
        })
    }

    /// Kills HAProxy `k`'s master and every worker it forked with SIGKILL (a crash of the whole
    /// service), and waits until none of them is left, so that nothing old still listens on its
    /// ports when it starts again.
    pub fn kill_haproxy_master_worker(&mut self, k: usize) {
        let Some(mut master) = self.haproxies[k].proc.take() else {
            return;
        };
        let workers = children_of(master.pid());
        master.kill9();
        for w in &workers {
            let _ = kill(*w, Signal::SIGKILL);
        }
        assert!(
            wait_for(Duration::from_secs(5), || workers
                .iter()
                .all(|w| !alive(*w))),
            "HAProxy {k}: workers {workers:?} outlived SIGKILL"
        );
    }
}

/// The live processes whose parent is `parent` (read from `/proc`).
pub fn children_of(parent: Pid) -> Vec<Pid> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // "pid (comm) state ppid ...": the comm may hold spaces, so split after the last ')'.
        let mut rest = stat.rsplit_once(") ")?.1.split(' ');
        let state = rest.next()?;
        let ppid: i32 = rest.next()?.parse().ok()?;
        (ppid == parent.as_raw() && state != "Z").then(|| Pid::from_raw(pid))
    })
    .collect()
}

/// Whether `pid` is a live process (not gone, not a zombie).
pub fn alive(pid: Pid) -> bool {
    fs::read_to_string(format!("/proc/{}/stat", pid.as_raw()))
        .ok()
        .and_then(|s| {
            s.rsplit_once(") ")
                .and_then(|(_, r)| r.chars().next())
                .map(|c| c != 'Z' && c != 'X')
        })
        .unwrap_or(false)
}

/// The names a lab node's certificate carries: its name (HAProxy's `check-sni`), the shipped
/// haproxy.cfg's `<name>.example.com`, `localhost`, 127.0.0.1 (the CLI) and the addresses the
/// other host and HAProxy use.
pub fn node_sans(h: &Host) -> Vec<String> {
    let mut sans = vec![
        h.name.to_string(),
        format!("{}.example.com", h.name),
        "localhost".to_string(),
        "127.0.0.1".to_string(),
    ];
    for ip in [&h.reach_ip, &h.haproxy_ip, &h.listen_ip] {
        if ip != "0.0.0.0" && !sans.contains(ip) {
            sans.push(ip.clone());
        }
    }
    sans
}

impl LabPki {
    /// A CA for the cluster, each node's certificate (for its name, `localhost`, 127.0.0.1 and
    /// the addresses the other host and HAProxy use), and an operator's client certificate.
    fn create(dir: &Path, hosts: &[Host]) -> LabPki {
        let ca = pki::Ca::new("jenkins-ha lab CA");
        let tls_dir = dir.join("tls");
        let files = hosts
            .iter()
            .map(|h| {
                let sans = node_sans(h);
                let sans: Vec<&str> = sans.iter().map(String::as_str).collect();
                let issued = ca.issue(h.name, &sans, pki::Validity::Current);
                pki::write_files(&tls_dir, h.name, &issued, &ca.pem)
            })
            .collect();
        let operator = ca.issue("lab-operator", &["lab-operator"], pki::Validity::Current);
        let operator_files = pki::write_files(&tls_dir, "lab-operator", &operator, &ca.pem);
        let client = pki::node_tls(&operator_files, false).client;
        fs::write(tls_dir.join("ca.crt"), &ca.pem).expect("ca.crt");
        LabPki {
            ca,
            dir: tls_dir,
            files,
            client,
        }
    }

    /// The cluster CA's file (the same content as every node's `ca_file`).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
}
