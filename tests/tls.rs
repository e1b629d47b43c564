//! TLS on the sidecar API and the peer link (`node.tls`), on real processes: two sidecars, two
//! Jenkins stand-ins and a real HAProxy that checks `/active` over HTTPS (`check-ssl verify
//! required`), with certificates made at test time (a cluster CA, another CA, an expired
//! certificate). What an operator would check: the cluster settles and fails over over TLS, the
//! CLI works, a peer whose certificate does not verify is refused with the reason in `status` and
//! the log, and that never causes a failover.

#[path = "../lab/cluster.rs"]
mod cluster;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use cluster::pki::{self, Ca, Validity};
use cluster::{Cluster, Spec, TlsSpec, NAMES};
use jenkins_ha::io::http_client::{bearer_json_headers, HttpClient, HttpError, Response};

fn tls_spec(require_client_cert: bool) -> Spec {
    Spec {
        tls: Some(TlsSpec {
            require_client_cert,
        }),
        ..Spec::default()
    }
}

/// Runs `command` (a shell line) on a pseudo-terminal (`script`), typing `input`, until it exits
/// (at most `timeout`); returns its exit code and what the terminal showed.
fn on_a_terminal(command: &str, input: &str, timeout: Duration) -> (Option<i32>, String) {
    use std::io::Write;
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script (util-linux) runs");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    let deadline = std::time::Instant::now() + timeout;
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn sidecar_log(c: &Cluster, i: usize) -> String {
    std::fs::read_to_string(c.dir.join(format!("{}-sidecar.log", NAMES[i]))).unwrap_or_default()
}

/// A GET with `http` (a client of the test's choosing) to host `i`'s API.
async fn get_with(
    c: &Cluster,
    http: &HttpClient,
    i: usize,
    path: &str,
) -> Result<Response, HttpError> {
    http.send(
        hyper::Method::GET,
        &format!("{}{path}", c.api_url(i)),
        &[],
        bytes::Bytes::new(),
        Duration::from_secs(3),
    )
    .await
}

/// The CA's PEM of a TLS cluster.
fn ca_pem(c: &Cluster) -> String {
    c.pki.as_ref().expect("a TLS cluster").ca.pem.clone()
}

/// Writes new `node.tls` files for host `i` (same paths, new contents) and sends its sidecar
/// SIGHUP; returns once it says it applied them.
async fn rotate(c: &mut Cluster, i: usize, issued: &pki::Issued, ca_pem: &str) {
    let dir = c.pki.as_ref().unwrap().dir.clone();
    let before = sidecar_log(c, i)
        .matches("SIGHUP: applied: node.tls")
        .count();
    pki::write_files(&dir, NAMES[i], issued, ca_pem);
    c.sidecar(i).signal(nix::sys::signal::Signal::SIGHUP);
    let applied = c
        .wait(Duration::from_secs(5), || async {
            (sidecar_log(c, i)
                .matches("SIGHUP: applied: node.tls")
                .count()
                > before)
                .then_some(())
        })
        .await;
    assert!(
        applied.is_some(),
        "{} did not apply its new certificates\n{}",
        NAMES[i],
        sidecar_log(c, i)
    );
}

/// The node certificate host `i` would have, issued by `ca`.
fn issue_for(c: &Cluster, i: usize, ca: &Ca, validity: Validity) -> pki::Issued {
    let sans = cluster::node_sans(&c.hosts[i]);
    let sans: Vec<&str> = sans.iter().map(String::as_str).collect();
    ca.issue(NAMES[i], &sans, validity)
}

/// Waits until `from`'s status shows host `peer` unreachable with a heartbeat error containing
/// `cause`; returns that error.
async fn wait_peer_refused(c: &Cluster, from: usize, cause: &str) -> String {
    c.wait(Duration::from_secs(10), || async {
        let s = c.status(from).await?;
        let n = &s.nodes[1];
        let e = n.heartbeat_error.clone()?;
        (n.role.as_str() == "unreachable" && e.contains(cause)).then_some(e)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "{} never showed {} unreachable because of {cause:?}: {:?}\n{}",
            NAMES[from],
            NAMES[1 - from],
            futures_block(c.status(from)),
            c.logs()
        )
    })
}

fn futures_block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

/// Watches for `duration`: no sample with two actives, and the term never changes.
async fn assert_no_failover(c: &Cluster, active: usize, duration: Duration) {
    let terms = c.term_files();
    let split = c.sample_split_brain(duration, true).await;
    assert_eq!(split.total(), 0, "{split:?}\n{}", c.logs());
    assert_eq!(
        c.term_files(),
        terms,
        "a new term was claimed\n{}",
        c.logs()
    );
    assert_eq!(
        c.active_code(active).await,
        Some(200),
        "the active lost its role\n{}",
        c.logs()
    );
    assert!(c.wait_routed(0, active, Duration::from_secs(1)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_settles_answers_haproxy_without_a_certificate_and_fails_over() {
    // settle() checks that HAProxy routes to and serves from the active: its `/active` check
    // goes over HTTPS (`check-ssl verify required`), without a client certificate.
    let (mut c, active) = Cluster::start_settled(tls_spec(true)).await;
    let standby = 1 - active;
    let ca = ca_pem(&c);

    // HAProxy's view, and a liveness probe's: no client certificate.
    let anonymous = HttpClient::with_tls(Some(pki::client_without_certificate(&ca)));
    let code = |r: Result<Response, HttpError>| r.map(|r| r.status.as_u16()).unwrap();
    assert_eq!(code(get_with(&c, &anonymous, active, "/active").await), 200);
    assert_eq!(
        code(get_with(&c, &anonymous, standby, "/active").await),
        503
    );
    assert_eq!(
        code(get_with(&c, &anonymous, standby, "/health").await),
        200
    );
    for path in ["/status", "/metrics"] {
        let r = get_with(&c, &anonymous, active, path).await.unwrap();
        let body = String::from_utf8_lossy(&r.body);
        assert_eq!(r.status.as_u16(), 403, "{path}: {body}");
        assert!(body.contains("needs a client certificate"), "{body}");
    }
    // Even with the token, an operator command needs the certificate too, and changes nothing.
    let headers = bearer_json_headers(cluster::CLUSTER_TOKEN).unwrap();
    let r = anonymous
        .send(
            hyper::Method::POST,
            &format!("{}/pause", c.api_url(active)),
            &headers,
            bytes::Bytes::new(),
            Duration::from_secs(3),
        )
        .await
        .unwrap();
    assert_eq!(r.status.as_u16(), 403);
    assert!(!c.status(active).await.unwrap().paused);
    let log = sidecar_log(&c, active);
    assert!(
        log.contains("refused GET /status from 127.0.0.1:")
            && log.contains("no client certificate"),
        "{log}"
    );
    // A client speaking plain HTTP to the HTTPS port is told so.
    let plain = HttpClient::new()
        .send(
            hyper::Method::GET,
            &format!("http://127.0.0.1:{}/active", c.hosts[active].api_port),
            &[],
            bytes::Bytes::new(),
            Duration::from_secs(3),
        )
        .await
        .unwrap();
    assert_eq!(plain.status.as_u16(), 400);
    assert!(String::from_utf8_lossy(&plain.body).contains("serves HTTPS only"));

    // The CLI talks TLS to its own sidecar, and to another one with --url.
    let (code, out, err) = c.cli(standby, &["status"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("Version"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with(NAMES[active]) && l.contains(" active ")),
        "{out}"
    );
    assert!(!out.contains("Versions differ"), "{out}");
    let url = c.api_url(active);
    let (code, out, err) = c.cli(standby, &["status", "--json", "--url", &url]);
    assert_eq!(code, Some(0), "{out}{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["reporter"], NAMES[active]);
    assert_eq!(doc["nodes"][0]["version"], env!("CARGO_PKG_VERSION"));

    // A planned switchover over TLS, from a terminal (the standby's sidecar forwards it to the
    // active). It shows what it will do and does nothing without a "y".
    let terms = c.term_files();
    let failover = format!(
        "{} failover -c {}",
        cluster::binaries().join("jenkins-ha").display(),
        c.hosts[standby].config.display()
    );
    let question = format!(
        "switch over from {} to {}? [y/N]",
        NAMES[active], NAMES[standby]
    );
    let (code, screen) = on_a_terminal(&failover, "n\n", Duration::from_secs(10));
    assert_eq!(code, Some(1), "{screen}");
    assert!(screen.contains(&question), "{screen}");
    assert!(
        screen.contains("not confirmed; nothing changed"),
        "{screen}"
    );
    assert_eq!(c.term_files(), terms);
    let (code, screen) = on_a_terminal(&failover, "y\n", Duration::from_secs(60));
    assert_eq!(code, Some(0), "{screen}\n{}", c.logs());
    assert!(screen.contains(&question), "{screen}");
    assert!(c.wait_routed(0, standby, Duration::from_secs(10)).await);
    assert!(c
        .wait_served_by(0, standby, Duration::from_secs(10))
        .await
        .is_some());

    // A crash: the new active's Jenkins dies; its release reaches the peer over TLS and the
    // old active takes over again, HAProxy's TLS check following.
    c.kill_jenkins(standby);
    assert!(
        c.wait_served_by(0, active, Duration::from_secs(20))
            .await
            .is_some(),
        "no failover after the crash\n{}",
        c.logs()
    );
    assert!(c.wait_routed(0, active, Duration::from_secs(5)).await);
    let s = c.status(active).await.unwrap();
    assert_eq!(s.active.as_deref(), Some(NAMES[active]));
    assert_eq!(s.nodes[0].term, Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_tls_settles_and_a_host_death_fails_over() {
    let spec = tls_spec(false);
    let lease_timeout = spec.lease_timeout;
    let (mut c, active) = Cluster::start_settled(spec).await;
    let standby = 1 - active;
    // Without require_client_cert, a client without a certificate reads everything.
    let anonymous = HttpClient::with_tls(Some(pki::client_without_certificate(&ca_pem(&c))));
    let r = get_with(&c, &anonymous, active, "/status").await.unwrap();
    assert_eq!(r.status.as_u16(), 200);
    // Both sidecars see each other over TLS.
    let s = c.status(active).await.unwrap();
    assert_eq!(s.nodes[1].role.as_str(), "standby");
    assert!(s.nodes[1].heartbeat_error.is_none(), "{s:?}");

    c.kill_sidecar(active);
    c.kill_jenkins(active);
    assert!(
        c.wait_served_by(0, standby, lease_timeout + Duration::from_secs(15))
            .await
            .is_some(),
        "no takeover after the host died\n{}",
        c.logs()
    );
    assert!(c.wait_routed(0, standby, Duration::from_secs(5)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_on_another_ca_is_refused_and_causes_no_failover() {
    let spec = tls_spec(true);
    let lease_timeout = spec.lease_timeout;
    let (mut c, active) = Cluster::start_settled(spec).await;
    let standby = 1 - active;
    let cluster_ca = ca_pem(&c);
    let good = std::fs::read_to_string(&c.pki.as_ref().unwrap().files[standby].cert).unwrap();
    let good_key = std::fs::read_to_string(&c.pki.as_ref().unwrap().files[standby].key).unwrap();

    // The standby is given another CA's certificate, key and CA (provisioned from the wrong
    // PKI), by SIGHUP, without a restart.
    let other = Ca::new("another cluster's CA");
    let wrong = issue_for(&c, standby, &other, Validity::Current);
    rotate(&mut c, standby, &wrong, &other.pem).await;

    // The active refuses the standby's certificate: unreachable, with the reason.
    let e = wait_peer_refused(&c, active, "unknown issuer").await;
    assert!(e.contains("TLS: certificate verify failed"), "{e}");
    // The active's `status` says why in one line below the table.
    let (_, table, _) = c.cli(active, &["status"]);
    eprintln!("$ jenkins-ha status    # on {}\n{table}", NAMES[active]);
    assert!(
        table.lines().any(|l| l.starts_with(&format!(
            "{}: heartbeats from {} fail:",
            NAMES[standby], NAMES[active]
        )) && l.contains("unknown issuer")),
        "{table}"
    );
    // The standby, trusting only the other CA, refuses the active likewise; it sees no active
    // node (exit 3) and yet takes nothing over.
    let table = c
        .wait(Duration::from_secs(5), || async {
            let (code, table, _) = tokio::task::block_in_place(|| c.cli(standby, &["status"]));
            (code == Some(3)).then_some(table)
        })
        .await
        .unwrap_or_else(|| panic!("{:?}\n{}", c.cli(standby, &["status"]), c.logs()));
    assert!(table.contains("unknown issuer"), "{table}");
    eprintln!("$ jenkins-ha status    # on {}\n{table}", NAMES[standby]);
    assert_no_failover(&c, active, lease_timeout * 3).await;
    // Both logs name the cause, with the address for the refused connections.
    let standby_log = sidecar_log(&c, standby);
    for line in standby_log.lines().chain(sidecar_log(&c, active).lines()) {
        if line.contains("refused") || line.contains("heartbeat") || line.contains("SIGHUP") {
            eprintln!("{line}");
        }
    }
    assert!(
        standby_log.contains(&format!("heartbeat to {}", NAMES[active]))
            && standby_log.contains("certificate verify failed: unknown issuer"),
        "{standby_log}"
    );
    let active_log = sidecar_log(&c, active);
    assert!(
        active_log.contains("refused a TLS connection from 127.0.0.1:")
            && active_log.contains("refused our certificate: unknown CA"),
        "{active_log}"
    );

    // A client that trusts the cluster CA but presents the other CA's certificate is refused
    // at the handshake, and the active logs why.
    let intruder = HttpClient::with_tls(Some(pki::client_with_certificate(&cluster_ca, &wrong)));
    let e = get_with(&c, &intruder, active, "/status")
        .await
        .unwrap_err();
    assert!(matches!(e, HttpError::Tls { .. }), "{e}");
    assert!(e.to_string().contains("unknown CA"), "{e}");
    let refused = c
        .wait(Duration::from_secs(3), || async {
            sidecar_log(&c, active)
                .contains("its client certificate failed verification: unknown issuer")
                .then_some(())
        })
        .await;
    assert!(refused.is_some(), "{}", sidecar_log(&c, active));

    // The right certificate back (SIGHUP again): heartbeats go through again.
    let back = pki::Issued {
        cert_pem: good,
        key_pem: good_key,
    };
    rotate(&mut c, standby, &back, &cluster_ca).await;
    let seen = c
        .wait(Duration::from_secs(10), || async {
            let s = c.status(active).await?;
            (s.nodes[1].role.as_str() == "standby" && s.nodes[1].heartbeat_error.is_none())
                .then_some(())
        })
        .await;
    assert!(seen.is_some(), "heartbeats did not resume\n{}", c.logs());
    assert_eq!(c.active_code(active).await, Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_is_refused_and_causes_no_failover() {
    let spec = tls_spec(true);
    let lease_timeout = spec.lease_timeout;
    let (mut c, active) = Cluster::start_settled(spec).await;
    let standby = 1 - active;
    let ca = c.pki.as_ref().unwrap();
    let expired = issue_for(&c, standby, &ca.ca, Validity::Expired);
    let ca_pem = ca.ca.pem.clone();
    rotate(&mut c, standby, &expired, &ca_pem).await;
    // The new file's problem is in the standby's log at once...
    let log = sidecar_log(&c, standby);
    assert!(
        log.contains("SIGHUP: node.tls.cert_file:")
            && log.contains("certificate expired at 2020-12-31"),
        "{log}"
    );
    // ... and check-config says it too, without refusing the file.
    let (code, out, err) = c.cli(standby, &["check-config"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("warning: node.tls.cert_file:") && out.contains("certificate expired"),
        "{out}"
    );

    // The active refuses it both ways: as the standby's server certificate, and as its client
    // certificate.
    let e = wait_peer_refused(&c, active, "certificate expired").await;
    assert!(
        e.contains("certificate expired at 2020-12-31T00:00:00Z"),
        "{e}"
    );
    let refused = c
        .wait(Duration::from_secs(5), || async {
            let log = sidecar_log(&c, active);
            log.contains("its client certificate failed verification: certificate expired")
                .then_some(())
        })
        .await;
    assert!(refused.is_some(), "{}", sidecar_log(&c, active));
    // The standby's own CLI cannot verify its sidecar either, and says why in one line.
    let (code, out, err) = c.cli(standby, &["status"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("TLS: certificate verify failed: certificate expired"),
        "{err}"
    );
    assert_no_failover(&c, active, lease_timeout * 2).await;
}

// ---------------------------------------------------------------------------------------------
// One sidecar, no cluster: config errors and the CLI's view of a certificate it cannot use
// ---------------------------------------------------------------------------------------------

struct Alone {
    dir: tempfile::TempDir,
    port: u16,
}

impl Alone {
    fn new() -> Alone {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("home")).unwrap();
        std::fs::write(dir.path().join("home/config.xml"), "<hudson/>").unwrap();
        let token = dir.path().join("cluster.token");
        std::fs::write(&token, "t0ken\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        Alone {
            dir,
            port: cluster::free_port(),
        }
    }

    /// A config with `node.tls` naming `files`; the peer's URL is https://.
    fn config(&self, files: &pki::TlsFiles, require: bool) -> std::path::PathBuf {
        let text = format!(
            "node:\n  name: jenkins01\n  listen: 127.0.0.1:{port}\n  tls:\n    cert_file: {cert}\n    \
             key_file: {key}\n    ca_file: {ca}\n    require_client_cert: {require}\n\
             peer:\n  name: jenkins02\n  url: https://127.0.0.1:1\n\
             auth:\n  token_file: cluster.token\n\
             jenkins:\n  url: http://127.0.0.1:2\n  home: home\n\
             timing:\n  interval: 200ms\n  lease_timeout: 2s\n\
             haproxy:\n  sockets: [{dir}/haproxy.sock]\n",
            port = self.port,
            cert = files.cert.display(),
            key = files.key.display(),
            ca = files.ca.display(),
            dir = self.dir.path().display()
        );
        let path = self.dir.path().join("config.yaml");
        std::fs::write(&path, text).unwrap();
        path
    }
}

fn jenkins_ha(args: &[&str], config: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(cluster::binaries().join("jenkins-ha"))
        .args(args)
        .arg("-c")
        .arg(config)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn broken_tls_files_are_refused_with_one_line_naming_the_key() {
    let a = Alone::new();
    let tls = a.dir.path().join("tls");
    let ca = Ca::new("cluster CA");
    let node = ca.issue("jenkins01", &["jenkins01", "127.0.0.1"], Validity::Current);
    let files = pki::write_files(&tls, "node", &node, &ca.pem);
    let config = a.config(&files, true);
    let (code, out, err) = jenkins_ha(&["check-config"], &config);
    assert_eq!(code, Some(0), "{out}{err}");

    let refused = |expect: &[&str]| {
        let (code, out, err) = jenkins_ha(&["check-config"], &config);
        assert_eq!(code, Some(2), "{out}{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        for e in expect {
            assert!(err.contains(e), "{e:?} missing in {err}");
        }
    };
    // A private key others can read.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    refused(&["node.tls.key_file:", "chmod 600"]);
    // The key of another certificate.
    let other = ca.issue("jenkins02", &["jenkins02"], Validity::Current);
    std::fs::write(&files.key, &other.key_pem).unwrap();
    std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o600)).unwrap();
    refused(&["node.tls.key_file:", "does not match the certificate"]);
    // A certificate another CA signed.
    let stranger = Ca::new("another CA").issue("jenkins01", &["127.0.0.1"], Validity::Current);
    pki::write_files(&tls, "node", &stranger, &ca.pem);
    refused(&[
        "node.tls.cert_file:",
        "not signed by a CA in node.tls.ca_file",
    ]);
    // An https:// peer without node.tls.
    pki::write_files(&tls, "node", &node, &ca.pem);
    let text = std::fs::read_to_string(&config).unwrap();
    let cut: String = text
        .lines()
        .filter(|l| !l.starts_with("    ") && *l != "  tls:")
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&config, cut).unwrap();
    refused(&["config.yaml:", "peer.url:", "https://", "node.tls"]);
}

#[test]
fn the_cli_says_when_the_node_certificate_does_not_name_the_address_it_uses() {
    let a = Alone::new();
    let ca = Ca::new("cluster CA");
    // A certificate for the host's name only: not for 127.0.0.1, where the CLI connects.
    let node = ca.issue(
        "jenkins01",
        &["jenkins01.example.com"],
        Validity::ExpiresInDays(10),
    );
    let files = pki::write_files(&a.dir.path().join("tls"), "node", &node, &ca.pem);
    let config = a.config(&files, false);
    let (code, out, err) = jenkins_ha(&["check-config"], &config);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("is not valid for 127.0.0.1") && out.contains("add IP:127.0.0.1"),
        "{out}"
    );
    assert!(
        out.contains("expires at") && out.contains("renew it"),
        "{out}"
    );
    let mut daemon = cluster::Proc::spawn(
        "sidecar",
        &cluster::binaries().join("jenkins-ha"),
        &["run".into(), "-c".into(), config.display().to_string()],
        &a.dir.path().join("sidecar.log"),
        &[],
    );
    let listening = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        std::net::TcpStream::connect(("127.0.0.1", a.port)).is_ok()
    });
    assert!(listening, "the sidecar did not listen");
    let (code, out, err) = jenkins_ha(&["status"], &config);
    assert_eq!(code, Some(1), "{out}{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("https://127.0.0.1:")
            && err.contains(
                "TLS: certificate verify failed: certificate not valid for 127.0.0.1 (it names DNS:jenkins01.example.com)"
            ),
        "{err}"
    );
    // --url with plain http:// to the HTTPS port: the sidecar answers why.
    let url = format!("http://127.0.0.1:{}", a.port);
    let (code, out, err) = jenkins_ha(&["status", "--url", &url], &config);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        err.contains("400") && err.contains("serves HTTPS only"),
        "{err}"
    );
    daemon.terminate(Duration::from_secs(5));
}

// ---------------------------------------------------------------------------------------------
// The config: node.tls as check-config and SIGHUP see it (no process)
// ---------------------------------------------------------------------------------------------

/// A config text for host jenkins01 with `tls` (the YAML lines under `node:`) and the peer URL.
fn config_text(tls: &str, peer_url: &str) -> String {
    format!(
        "node:\n  name: jenkins01\n  listen: 0.0.0.0:7070\n{tls}\
         peer:\n  name: jenkins02\n  url: {peer_url}\n\
         auth:\n  token_file: cluster.token\n\
         jenkins:\n  url: http://127.0.0.1:8080\n  home: home\n\
         haproxy:\n  sockets: [/run/haproxy/admin.sock]\n"
    )
}

fn tls_lines(files: &pki::TlsFiles, require: bool) -> String {
    format!(
        "  tls:\n    cert_file: {}\n    key_file: {}\n    ca_file: {}\n    require_client_cert: {require}\n",
        files.cert.display(),
        files.key.display(),
        files.ca.display()
    )
}

#[test]
fn node_tls_in_the_config_errors_and_warnings() {
    use jenkins_ha::config::Config;
    let a = Alone::new();
    let path = a.dir.path().join("config.yaml");
    let parse = |text: &str| Config::parse(&path, text);
    let ca = Ca::new("cluster CA");
    let tls_dir = a.dir.path().join("tls");
    let files = pki::write_files(
        &tls_dir,
        "node",
        &ca.issue("jenkins01", &["jenkins01", "127.0.0.1"], Validity::Current),
        &ca.pem,
    );

    // Valid, and quiet: no warning with an https:// peer and a certificate fit for the CLI.
    let c = parse(&config_text(
        &tls_lines(&files, true),
        "https://10.0.0.3:7070",
    ))
    .unwrap();
    let tls = c.node.tls.as_ref().expect("node.tls");
    assert!(tls.require_client_cert);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.node.local_url(), "https://127.0.0.1:7070");
    let key = std::fs::read_to_string(&files.key).unwrap();
    let shown = format!("{c:?}");
    assert!(
        !shown.contains(key.lines().nth(1).unwrap()),
        "the key in Debug"
    );

    // An http:// peer with node.tls: allowed (a migration), with a warning.
    let c = parse(&config_text(
        &tls_lines(&files, false),
        "http://10.0.0.3:7070",
    ))
    .unwrap();
    assert!(
        c.warnings.len() == 1
            && c.warnings[0].contains("peer.url: http://10.0.0.3:7070 is http://"),
        "{:?}",
        c.warnings
    );

    // Errors name the file's line and the key.
    let e = parse(&config_text("", "https://10.0.0.3:7070")).unwrap_err();
    assert_eq!((e.field.as_str(), e.line), ("peer.url", Some(6)), "{e}");
    let without_ca: String = tls_lines(&files, false)
        .lines()
        .filter(|l| !l.contains("ca_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    let e = parse(&config_text(&without_ca, "https://10.0.0.3:7070")).unwrap_err();
    assert_eq!(e.field, "node.tls.ca_file", "{e}");
    assert!(e.message.contains("required key is missing"), "{e}");
    let e = parse(&config_text(
        &format!("{}    verify: none\n", tls_lines(&files, false)),
        "https://10.0.0.3:7070",
    ))
    .unwrap_err();
    assert_eq!(
        (e.field.as_str(), e.line),
        ("node.tls.verify", Some(9)),
        "{e}"
    );
    assert!(e.message.contains("require_client_cert"), "{e}");
    std::fs::write(&files.ca, "not a certificate\n").unwrap();
    let e = parse(&config_text(&tls_lines(&files, false), "https://h:1")).unwrap_err();
    assert_eq!(e.field, "node.tls.ca_file", "{e}");
    assert!(e.message.contains("holds no PEM block"), "{e}");
    std::fs::write(&files.ca, key.replace("PRIVATE KEY", "CERTIFICATE REQUEST")).unwrap();
    let e = parse(&config_text(&tls_lines(&files, false), "https://h:1")).unwrap_err();
    assert_eq!(e.field, "node.tls.ca_file", "{e}");
    assert!(e.message.contains("holds no certificate"), "{e}");
    std::fs::write(&files.ca, &ca.pem).unwrap();

    // Warnings: what check-config and the start-up log say about the node's own certificate.
    let warned = |issued: pki::Issued, listen: &str| -> Vec<String> {
        let f = pki::write_files(&tls_dir, "other", &issued, &ca.pem);
        let text =
            config_text(&tls_lines(&f, false), "https://h:1").replace("0.0.0.0:7070", listen);
        parse(&text).unwrap().warnings
    };
    let w = warned(
        ca.issue("jenkins01", &["127.0.0.1"], Validity::Expired),
        "0.0.0.0:7070",
    );
    assert!(
        w.len() == 1 && w[0].contains("certificate expired at 2020-12-31T00:00:00Z"),
        "{w:?}"
    );
    let w = warned(
        ca.issue("jenkins01", &["127.0.0.1"], Validity::ExpiresInDays(10)),
        "0.0.0.0:7070",
    );
    assert!(
        w.len() == 1 && w[0].contains("expires at") && w[0].contains("systemctl reload"),
        "{w:?}"
    );
    let w = warned(
        ca.issue("jenkins01", &["127.0.0.1"], Validity::Current),
        "10.0.0.2:7070",
    );
    assert!(
        w.len() == 1 && w[0].contains("not valid for 10.0.0.2") && w[0].contains("IP:10.0.0.2"),
        "{w:?}"
    );
}

#[test]
fn sighup_applies_new_certificates_but_not_turning_tls_on_or_off() {
    use jenkins_ha::config::Config;
    use jenkins_ha::daemon::live::Live;
    let a = Alone::new();
    let path = a.dir.path().join("config.yaml");
    let ca = Ca::new("cluster CA");
    let tls_dir = a.dir.path().join("tls");
    let issue = || ca.issue("jenkins01", &["127.0.0.1"], Validity::Current);
    let files = pki::write_files(&tls_dir, "node", &issue(), &ca.pem);
    let with_tls = || {
        Config::parse(
            &path,
            &config_text(&tls_lines(&files, false), "https://h:1"),
        )
        .unwrap()
    };
    let first = with_tls();
    let live = Live::new(&first);
    let mut rotated = live.tls_changes();
    rotated.borrow_and_update();
    assert_eq!(live.apply(&first, &with_tls()), ["nothing changed"]);
    assert!(!rotated.has_changed().unwrap());

    // New contents at the same paths: applied, and the API is told to drop old connections.
    pki::write_files(&tls_dir, "node", &issue(), &ca.pem);
    let second = with_tls();
    let lines = live.apply(&first, &second);
    assert!(
        lines.len() == 1 && lines[0].starts_with("applied: node.tls"),
        "{lines:?}"
    );
    assert!(rotated.has_changed().unwrap());
    assert!(live.tls() == second.node.tls);

    // Turning TLS off: needs a restart; the running listener keeps its certificates.
    let plain = Config::parse(&path, &config_text("", "http://h:1")).unwrap();
    let lines = live.apply(&second, &plain);
    assert!(
        lines.contains(
            &"not applied, needs a restart: node.tls (turning TLS on or off)".to_string()
        ),
        "{lines:?}"
    );
    assert!(live.tls() == second.node.tls);
}
