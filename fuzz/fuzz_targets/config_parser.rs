//! `Config::parse` on arbitrary UTF-8, and `locate` on the same text.
//!
//! The config is parsed as if it were `<tmp>/jenkins-ha-fuzz/config.yaml`; that folder holds a
//! `cluster.token` and a `jenkins.token` (mode 600), so a config naming them with relative paths
//! and `jenkins.home: .` gets past the file checks into the timing and HAProxy validation.
//! Every rejection must be a `ConfigError` whose Display is one line naming a field, and the line
//! and column it gives must exist in the file (lines counted at `\n`, as an editor does).
#![no_main]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use jenkins_ha::config::{locate, Config, MAX_DURATION};
use libfuzzer_sys::{fuzz_target, Corpus};

fn config_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join("jenkins-ha-fuzz");
        fs::create_dir_all(&dir).expect("create the fuzz folder");
        for name in ["cluster.token", "jenkins.token"] {
            let token = dir.join(name);
            fs::write(&token, b"fuzz-secret\n").expect("write a token file");
            fs::set_permissions(&token, fs::Permissions::from_mode(0o600))
                .expect("chmod 600 a token file");
        }
        dir.join("config.yaml")
    })
}

/// Keys the daemon itself looks up, plus the brief's `a.b`.
const KEYS: &[&str] = &[
    "a.b",
    "node.name",
    "peer.url",
    "auth.token_file",
    "jenkins.home",
    "timing.interval",
    "timing.lease_timeout",
    "haproxy.sockets",
];

fuzz_target!(|data: &[u8]| -> Corpus {
    let Ok(text) = std::str::from_utf8(data) else {
        return Corpus::Reject;
    };
    let path = config_path();
    match Config::parse(path, text) {
        Ok(config) => {
            // What a valid config promises the daemon: sane timings, and durations short enough
            // that what the daemon derives from them (3 × interval, interval × fall, ...) fits.
            let t = config.timing;
            assert!(t.fall >= 1 && t.rise >= 1);
            for d in [
                t.interval,
                t.lease_timeout,
                config.jenkins.timeout,
                config.jenkins.reload_timeout,
                config.watch.poll_interval,
                config.watch.debounce,
                config.haproxy.timeout,
            ] {
                assert!(d <= MAX_DURATION, "{d:?} passed validation");
            }
            assert!(t.lease_timeout >= t.interval * 3);
            assert!(t.margin() < t.lease_timeout);
            assert!(t.interval.checked_mul(t.fall).is_some());
            assert!(!config.haproxy.sockets.is_empty());
            assert!(!config.haproxy.backends.is_empty());
            assert!(!config.peers.is_empty());
            for (i, peer) in config.peers.iter().enumerate() {
                assert_ne!(config.node.name, peer.name);
                assert!(config.peers[..i].iter().all(|p| p.name != peer.name));
            }
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(
                !shown.contains(['\n', '\r']),
                "a config error must be one line: {shown:?}"
            );
            assert!(
                !e.field.is_empty(),
                "a config error names no field: {shown:?}"
            );
            assert_eq!(e.file, path);
            if let Some(line) = e.line {
                let last = text.lines().count().max(1);
                assert!(
                    (1..=last).contains(&line),
                    "line {line} of a {last}-line file: {shown:?}"
                );
                if let Some(column) = e.column {
                    // One past the last character: where "end of line" problems are reported.
                    let width = text.split('\n').nth(line - 1).map_or(0, |l| l.chars().count());
                    assert!(
                        (1..=width + 1).contains(&column),
                        "column {column} of a {width}-character line: {shown:?}"
                    );
                }
                let prefix = format!("{}:{line}", path.display());
                assert!(shown.starts_with(&prefix), "{shown:?}");
            } else {
                assert!(e.column.is_none(), "a column without a line: {e:?}");
            }
        }
    }
    let lines = text.lines().count();
    for key in KEYS {
        if let Some(line) = locate(text, key) {
            assert!(
                (1..=lines).contains(&line),
                "locate({key:?}) gave line {line} of {lines}"
            );
        }
    }
    Corpus::Keep
});
