//! The files we ship beside the binary: the example HAProxy config must load in the real HAProxy,
//! and the systemd unit must carry the ordering and hardening an operator expects.

use std::process::Command;

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn example_haproxy_cfg_is_valid_for_haproxy() {
    let cfg = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("haproxy/haproxy.cfg");
    let out = Command::new("haproxy")
        .arg("-c")
        .arg("-f")
        .arg(&cfg)
        .output()
        .or_else(|_| {
            Command::new("/usr/sbin/haproxy")
                .arg("-c")
                .arg("-f")
                .arg(&cfg)
                .output()
        })
        .expect("haproxy is installed (scripts/install-deps)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Configuration file is valid"), "{text}");
    // The only acceptable warning: the state file does not exist before the first dump.
    for line in text.lines().filter(|l| l.contains("[WARNING]")) {
        assert!(
            line.contains("server state file"),
            "unexpected warning: {line}"
        );
    }
    let text = repo_file("haproxy/haproxy.cfg");
    for needed in [
        "option httpchk GET /active",
        "check port 7070",
        "track jenkins_http/jenkins01",
        "on-marked-down shutdown-sessions",
        "level admin",
        "server-state-file",
        "load-server-state-from-file",
    ] {
        assert!(text.contains(needed), "haproxy.cfg lacks {needed:?}");
    }
}

#[test]
fn systemd_unit_orders_after_the_mount_and_is_hardened() {
    let unit = repo_file("systemd/jenkins-ha.service");
    for needed in [
        "After=network-online.target",
        "Wants=network-online.target",
        "RequiresMountsFor=/var/lib/jenkins",
        "ExecStart=/usr/bin/jenkins-ha run",
        "Restart=always",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/jenkins/.jenkins-ha",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=\n",
        "SystemCallFilter=@system-service",
    ] {
        assert!(unit.contains(needed), "the unit lacks {needed:?}");
    }
}
