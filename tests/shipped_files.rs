//! The files we ship beside the binary: the systemd unit must carry the ordering, reload, restart
//! policy and hardening an operator expects, and the example config.yaml must parse and state the
//! real defaults. (The example HAProxy config is checked in tests/haproxy_shipped.rs.)

#[path = "../lab/pki.rs"]
mod pki;

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The unit's settings as (section, key) -> every value, in order (systemd lets most keys repeat).
fn unit_settings(text: &str) -> std::collections::BTreeMap<(String, String), Vec<String>> {
    let mut settings = std::collections::BTreeMap::<_, Vec<String>>::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not a unit setting: {line}"));
        settings
            .entry((section.clone(), key.to_string()))
            .or_default()
            .push(value.to_string());
    }
    settings
}

#[test]
fn systemd_unit_orders_after_the_mount_and_is_hardened() {
    let unit = repo_file("systemd/jenkins-ha.service");
    for needed in [
        "After=network-online.target",
        "Wants=network-online.target",
        "RequiresMountsFor=/var/lib/jenkins",
        "ExecStart=/usr/bin/jenkins-ha run",
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

    let settings = unit_settings(&unit);
    let get = |section: &str, key: &str| -> Vec<String> {
        settings
            .get(&(section.to_string(), key.to_string()))
            .cloned()
            .unwrap_or_default()
    };
    let one = |section: &str, key: &str| -> String {
        let values = get(section, key);
        assert_eq!(values.len(), 1, "one {key}= in [{section}]: {values:?}");
        values[0].clone()
    };

    // `systemctl reload jenkins-ha` (the README's way to rotate the token) sends SIGHUP to the
    // daemon, which re-reads its config. tests/package_deb.rs runs this very line against a
    // daemon.
    assert_eq!(one("Service", "ExecReload"), "/bin/kill -HUP $MAINPID");

    // The daemon exits 0 only after SIGTERM/SIGINT (someone stopped it), 1 when it cannot start,
    // 2 on a config error. Failures are restarted, a config error is not: only an edited config
    // helps. systemd tests RestartPreventExitStatus= against the main process only, so the
    // check-config run before it must not fail the start (its "-" prefix), leaving the exit 2 to
    // `run` itself.
    assert_eq!(one("Service", "Type"), "notify");
    assert_eq!(one("Service", "Restart"), "on-failure");
    assert_eq!(one("Service", "RestartPreventExitStatus"), "2");
    assert_eq!(one("Service", "ExecStart"), "/usr/bin/jenkins-ha run");
    assert_eq!(
        get("Service", "ExecStartPre"),
        ["-/usr/bin/jenkins-ha check-config"]
    );
    assert_eq!(one("Service", "KillSignal"), "SIGTERM");
    assert_eq!(one("Unit", "StartLimitIntervalSec"), "0");

    // Ordered after Jenkins, and only ordered: the sidecar keeps running when Jenkins dies or is
    // stopped (that is when it must fail over), and starting it starts no Jenkins.
    let after: Vec<String> = get("Unit", "After")
        .iter()
        .flat_map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .collect();
    for unit_name in [
        "jenkins.service",
        "network-online.target",
        "remote-fs.target",
    ] {
        assert!(
            after.iter().any(|a| a == unit_name),
            "After= lacks {unit_name}: {after:?}"
        );
    }
    for key in [
        "Requires",
        "Requisite",
        "BindsTo",
        "PartOf",
        "Upholds",
        "Wants",
        "PropagatesStopTo",
        "StopPropagatedFrom",
    ] {
        for value in get("Unit", key) {
            assert!(
                !value.contains("jenkins.service"),
                "{key}={value} ties jenkins-ha to Jenkins' lifecycle"
            );
        }
    }

    // The hardening stays.
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictNamespaces", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("LockPersonality", "yes"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
        ("User", "jenkins"),
        ("Group", "jenkins"),
    ] {
        assert_eq!(one("Service", key), value, "{key}=");
    }
    assert_eq!(
        get("Service", "SystemCallFilter"),
        ["@system-service", "~@privileged @resources"]
    );
    assert_eq!(
        get("Install", "WantedBy"),
        ["multi-user.target"],
        "enabling it starts it at boot"
    );
}

/// The example config the package installs as /etc/jenkins-ha/config.yaml, with its paths moved
/// under `root` (where [`example_config_root`] created the token files and JENKINS_HOME it names).
fn example_config(root: &std::path::Path, text: &str) -> String {
    text.replace(
        "/etc/jenkins-ha/",
        &format!("{}/etc/jenkins-ha/", root.display()),
    )
    .replace(
        "/var/lib/jenkins",
        &format!("{}/var/lib/jenkins", root.display()),
    )
}

fn example_config_root() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc/jenkins-ha");
    std::fs::create_dir_all(&etc).unwrap();
    // The node.tls files the commented-out example names: a CA and this node's certificate.
    let ca = pki::Ca::new("example CA");
    let node = ca.issue("jenkins01", &["127.0.0.1"], pki::Validity::Current);
    let files = pki::write_files(&etc.join("tls"), "node", &node, &ca.pem);
    std::fs::rename(&files.ca, etc.join("tls/ca.crt")).unwrap();
    std::fs::create_dir_all(dir.path().join("var/lib/jenkins")).unwrap();
    for token in ["cluster.token", "jenkins.token"] {
        let path = etc.join(token);
        std::fs::write(&path, "s3cret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    dir
}

/// `#key: value` lines (a "#" right before the key) are settings left commented out; `# text`
/// lines are explanations.
fn uncomment_settings(text: &str) -> String {
    text.lines()
        .map(|line| {
            let trimmed = line.trim_start();
            match trimmed.strip_prefix('#') {
                Some(rest) if rest.starts_with(|c: char| c.is_ascii_lowercase()) => {
                    format!("{}{rest}\n", &line[..line.len() - trimmed.len()])
                }
                _ => format!("{line}\n"),
            }
        })
        .collect()
}

/// Only the keys without a default, which the config cannot do without.
fn required_keys_only(text: &str) -> String {
    const REQUIRED: &[&str] = &[
        "node.name",
        "peer.name",
        "peer.url",
        "auth.token_file",
        "jenkins.url",
        "jenkins.home",
        "haproxy.sockets",
    ];
    let mut out = String::new();
    let mut section = String::new();
    let mut header_written = false;
    for line in text.lines() {
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let key = line.trim_start().split(':').next().unwrap();
        if !line.starts_with(' ') {
            section = key.to_string();
            header_written = false;
        } else if REQUIRED.contains(&format!("{section}.{key}").as_str()) {
            if !header_written {
                out.push_str(&format!("{section}:\n"));
                header_written = true;
            }
            out.push_str(&format!("{line}\n"));
        }
    }
    out
}

#[test]
fn packaged_example_config_parses_and_states_the_real_defaults() {
    use jenkins_ha::config::Config;
    let root = example_config_root();
    let path = root.path().join("etc/jenkins-ha/config.yaml");
    let shipped = repo_file("packaging/config.yaml");
    let text = example_config(root.path(), &shipped);

    let example = Config::parse(&path, &text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(example.node.name, "jenkins01");
    assert_eq!(example.peers[0].name, "jenkins02");
    assert_eq!(example.cluster_token.expose(), "s3cret");
    assert!(example.jenkins.api_token.is_some());
    assert!(example.warnings.is_empty(), "{:?}", example.warnings);

    // Every value the example sets for a key with a default is that default.
    let minimal_text = required_keys_only(&text);
    let minimal =
        Config::parse(&path, &minimal_text).unwrap_or_else(|e| panic!("{e}\n{minimal_text}"));
    assert_eq!(example.node.listen, minimal.node.listen, "node.listen");
    assert_eq!(example.timing, minimal.timing, "timing");
    assert_eq!(example.watch.mode, minimal.watch.mode, "watch.mode");
    assert_eq!(
        example.watch.poll_interval, minimal.watch.poll_interval,
        "watch.poll_interval"
    );
    assert_eq!(
        example.watch.debounce, minimal.watch.debounce,
        "watch.debounce"
    );
    assert_eq!(
        example.haproxy.backends, minimal.haproxy.backends,
        "haproxy.backends"
    );
    assert_eq!(
        example.haproxy.timeout, minimal.haproxy.timeout,
        "haproxy.timeout"
    );
    assert_eq!(
        example.jenkins.reload_timeout, minimal.jenkins.reload_timeout,
        "jenkins.reload_timeout"
    );

    // The settings left commented out parse too, and where the comment gives a derived default
    // (jenkins.timeout, lease.dir), the example value is what the default works out to here.
    let all = uncomment_settings(&text);
    assert_ne!(
        all, text,
        "the example has settings commented out as #key: value"
    );
    let uncommented = Config::parse(&path, &all).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        uncommented.jenkins.timeout, minimal.jenkins.timeout,
        "jenkins.timeout"
    );
    assert_eq!(uncommented.lease_dir, minimal.lease_dir, "lease.dir");
    assert_eq!(
        uncommented.lease_dir,
        root.path().join("var/lib/jenkins/.jenkins-ha"),
        "lease.dir matches the unit's ReadWritePaths"
    );
    assert!(uncommented.jenkins.restart_command.is_some());
}

/// Every key the schema accepts is in the example. The schema itself says which keys it accepts:
/// an unknown key is refused with "expected one of ...".
#[test]
fn packaged_example_config_names_every_key_of_the_schema() {
    use jenkins_ha::config::{locate, Config};
    let root = example_config_root();
    let path = root.path().join("etc/jenkins-ha/config.yaml");
    let text = uncomment_settings(&example_config(
        root.path(),
        &repo_file("packaging/config.yaml"),
    ));
    let sections: Vec<String> = text
        .lines()
        .filter(|l| !l.starts_with([' ', '#']) && l.ends_with(':'))
        .map(|l| l.trim_end_matches(':').to_string())
        .collect();
    let expected_keys = |text: &str| -> Vec<String> {
        let e = Config::parse(&path, text).expect_err("an unknown key is refused");
        let list = e
            .message
            .split_once("(expected ")
            .unwrap_or_else(|| panic!("{e}"))
            .1
            .trim_end_matches(')')
            .trim_start_matches("one of ");
        // serde: "`a`", "`a` or `b`", "one of `a`, `b`, `c`" (the backticks already gone).
        list.split(", ")
            .flat_map(|k| k.split(" or "))
            .map(str::to_string)
            .collect()
    };
    // `peer` and `peers` are two forms of one setting (exactly one may be given): the example
    // sets `peer` and shows `peers` as a commented alternative.
    let top: Vec<String> = expected_keys(&format!("not_a_key: 1\n{text}"))
        .into_iter()
        .filter(|k| k != "peers")
        .collect();
    assert_eq!(
        top, sections,
        "the example has every section, in the schema's order"
    );
    assert!(
        repo_file("packaging/config.yaml").contains("\n# peers:\n#   - {name: "),
        "the example shows the peers form"
    );
    for section in &sections {
        let probe = text.replacen(
            &format!("\n{section}:\n"),
            &format!("\n{section}:\n  not_a_key: 1\n"),
            1,
        );
        for key in expected_keys(&probe) {
            let dotted = format!("{section}.{key}");
            assert!(
                locate(&text, &dotted).is_some(),
                "packaging/config.yaml lacks {dotted}"
            );
        }
    }
}
