//! The Debian package: `scripts/package-deb` builds it exactly as an operator would (release
//! profile, cargo-deb installed on first use), and these tests check it the way a reviewer and an
//! SRE would:
//! - `dpkg-deb` shows what it contains: every file an operator needs, at the right place with sane
//!   modes, the config as a conffile, a gzipped man page, the MIT text in the copyright file, a
//!   Debian changelog of the package's version, md5sums, and a binary that runs;
//! - lintian reports no error, and every tag it still reports is explained in packaging/;
//! - the packaged unit passes `systemd-analyze verify`, and its `ExecReload=` command, run against
//!   a real `jenkins-ha run`, makes the daemon apply a rotated cluster token;
//! - installed with the real dpkg into a throwaway root, the maintainer scripts register the unit
//!   with deb-systemd-helper but never enable or start it, stop it on removal only through
//!   deb-systemd-invoke, and give /etc/jenkins-ha the owner and mode the README states.
//!
//! The package is built once per run of this file and shared by its tests. That is slow on a cold
//! machine (installing cargo-deb, about 2 minutes on 2 cores; a cold release build, about 1.5
//! minutes) and takes seconds once both are done. The package is built from the release profile,
//! the one that ships: a faster profile would test a binary nobody installs, and would not save
//! the cold build of the dependencies anyway.
//!
//! The throwaway-root, `systemd-analyze` and `ExecReload=` tests need root (mount namespaces, an
//! overlay over /usr, a restricted /proc, chroot), as the rest of the suite does for its network
//! namespaces.
//!
//! The fast tests at the bottom check the generators the script relies on, through the debug
//! binary.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn ok(what: &str, out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `dpkg-deb OPTION DEB [ARG]`.
fn dpkg_deb(option: &str, deb: &Path, arg: Option<&Path>) -> String {
    ok(
        &format!(
            "dpkg-deb {option} {}",
            arg.map(|a| a.display().to_string()).unwrap_or_default()
        ),
        Command::new("dpkg-deb")
            .arg(option)
            .arg(deb)
            .args(arg)
            .output()
            .expect("dpkg-deb runs"),
    )
}

/// Every file in the package, with its mode string and owner as `dpkg-deb -c` shows them.
fn contents(deb: &Path) -> BTreeMap<String, (String, String)> {
    dpkg_deb("-c", deb, None)
        .lines()
        .filter(|l| !l.starts_with('d'))
        .map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            assert!(fields.len() >= 6, "unexpected dpkg-deb -c line: {l}");
            let path = fields[5..].join(" ");
            let path = path.trim_start_matches('.').to_string();
            (path, (fields[0].to_string(), fields[1].to_string()))
        })
        .collect()
}

/// The files an operator needs, and the modes they may have.
const EXPECTED: &[(&str, &[&str])] = &[
    ("/usr/bin/jenkins-ha", &["-rwxr-xr-x"]),
    ("/lib/systemd/system/jenkins-ha.service", &["-rw-r--r--"]),
    ("/etc/jenkins-ha/config.yaml", &["-rw-r--r--", "-rw-r-----"]),
    ("/usr/share/doc/jenkins-ha/README.md", &["-rw-r--r--"]),
    ("/usr/share/doc/jenkins-ha/copyright", &["-rw-r--r--"]),
    (
        "/usr/share/doc/jenkins-ha/changelog.Debian.gz",
        &["-rw-r--r--"],
    ),
    ("/usr/share/lintian/overrides/jenkins-ha", &["-rw-r--r--"]),
    (
        "/usr/share/doc/jenkins-ha/examples/haproxy.cfg",
        &["-rw-r--r--"],
    ),
    (
        "/usr/share/doc/jenkins-ha/examples/keepalived.conf.example",
        &["-rw-r--r--"],
    ),
    (
        "/usr/share/doc/jenkins-ha/examples/init.groovy.d/jenkins-ha-quiet-at-start.groovy",
        &["-rw-r--r--"],
    ),
    (
        "/usr/share/doc/jenkins-ha/examples/monitoring/jenkins-ha.rules.yml",
        &["-rw-r--r--"],
    ),
    (
        "/usr/share/doc/jenkins-ha/examples/monitoring/grafana-dashboard.json",
        &["-rw-r--r--"],
    ),
    (
        "/usr/share/doc/jenkins-ha/examples/monitoring/prometheus.example.yml",
        &["-rw-r--r--"],
    ),
    ("/usr/share/man/man1/jenkins-ha.1.gz", &["-rw-r--r--"]),
    (
        "/usr/share/bash-completion/completions/jenkins-ha",
        &["-rw-r--r--"],
    ),
    (
        "/usr/share/zsh/vendor-completions/_jenkins-ha",
        &["-rw-r--r--"],
    ),
    (
        "/usr/share/fish/vendor_completions.d/jenkins-ha.fish",
        &["-rw-r--r--"],
    ),
];

fn build_package() -> PathBuf {
    let started = Instant::now();
    let out = Command::new("bash")
        .arg(repo().join("scripts/package-deb"))
        .current_dir(repo())
        .output()
        .expect("bash runs scripts/package-deb");
    let stdout = ok("scripts/package-deb", out);
    eprintln!("scripts/package-deb took {:?}", started.elapsed());
    let deb = PathBuf::from(stdout.trim());
    assert!(
        stdout.trim().lines().count() == 1 && deb.extension().is_some_and(|e| e == "deb"),
        "scripts/package-deb prints only the path of the .deb, not:\n{stdout}"
    );
    assert!(deb.is_file(), "{} does not exist", deb.display());
    deb
}

/// The package, built once for all the tests of this file.
fn package() -> &'static Path {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(build_package)
}

/// The package's files, extracted once (`dpkg-deb -x`) under the tests' scratch directory.
fn extracted() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("package_deb-extracted");
        if root.exists() {
            std::fs::remove_dir_all(&root).unwrap();
        }
        std::fs::create_dir_all(&root).unwrap();
        dpkg_deb("-x", package(), Some(&root));
        root
    })
}

fn gunzip(path: &Path) -> String {
    ok(
        &format!("gzip -dc {}", path.display()),
        Command::new("gzip").arg("-dc").arg(path).output().unwrap(),
    )
}

/// The tests that mount and chroot need root; say so plainly instead of failing obscurely.
fn require_root(what: &str) {
    let uid = ok("id -u", Command::new("id").arg("-u").output().unwrap());
    assert_eq!(
        uid.trim(),
        "0",
        "{what} needs root (mount namespaces, overlayfs, chroot): run the tests as root"
    );
}

#[test]
fn the_deb_holds_what_an_operator_needs_and_its_binary_runs() {
    let deb = package();

    // The files, their modes, owned by root, and nothing unexpected.
    let files = contents(deb);
    for (path, modes) in EXPECTED {
        let (mode, owner) = files
            .get(*path)
            .unwrap_or_else(|| panic!("the package lacks {path}: {files:#?}"));
        assert!(modes.contains(&mode.as_str()), "{path} has mode {mode}");
        assert!(
            owner == "0/0" || owner == "root/root",
            "{path} is owned by root, not {owner}"
        );
    }
    for path in files.keys() {
        assert!(
            EXPECTED.iter().any(|(p, _)| p == path),
            "the package holds an unexpected file {path}"
        );
    }

    // The control fields.
    let control = dpkg_deb("-f", deb, None);
    let field = |name: &str| {
        control
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_string))
    };
    assert_eq!(field("Package").as_deref(), Some("jenkins-ha"));
    assert_eq!(field("Section").as_deref(), Some("admin"));
    assert_eq!(field("Priority").as_deref(), Some("optional"));
    let depends = field("Depends").unwrap_or_default();
    assert!(
        depends.starts_with("libc6") && !depends.contains(','),
        "Depends is libc only: {depends}"
    );
    let synopsis = field("Description").unwrap_or_default();
    assert_eq!(
        synopsis,
        env!("CARGO_PKG_DESCRIPTION"),
        "the synopsis is not wrapped"
    );
    assert!(
        !synopsis.is_empty() && synopsis.len() < 80,
        "the synopsis is one line under 80 characters: {synopsis:?}"
    );
    assert!(
        control.contains("\n .\n") && control.contains("jenkins-ha status"),
        "an extended description with paragraphs:\n{control}"
    );

    // A Debian maintainer address (lintian: malformed-contact without one).
    let maintainer = field("Maintainer").unwrap_or_default();
    assert!(
        maintainer.contains(" <") && maintainer.ends_with('>') && maintainer.contains('@'),
        "Maintainer is \"Name <address>\": {maintainer}"
    );

    // The config is a conffile; md5sums cover every other file, and match them.
    let conffiles = dpkg_deb("-I", deb, Some(Path::new("conffiles")));
    assert_eq!(conffiles.trim(), "/etc/jenkins-ha/config.yaml");
    let root = extracted();
    let md5sums = dpkg_deb("-I", deb, Some(Path::new("md5sums")));
    let summed: BTreeSet<String> = md5sums
        .lines()
        .map(|l| {
            let (_, path) = l
                .split_once("  ")
                .unwrap_or_else(|| panic!("md5sums line: {l}"));
            format!("/{path}")
        })
        .collect();
    let not_conffiles: BTreeSet<String> = files
        .keys()
        .filter(|p| p.as_str() != "/etc/jenkins-ha/config.yaml")
        .cloned()
        .collect();
    assert_eq!(
        summed, not_conffiles,
        "md5sums lists every file but the conffile"
    );
    let check = Command::new("md5sum")
        .args(["--check", "--quiet", "-"])
        .current_dir(root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .as_ref()
        .unwrap()
        .write_all(md5sums.as_bytes())
        .unwrap();
    ok(
        "md5sum --check (the package's md5sums)",
        check.wait_with_output().unwrap(),
    );

    // The copyright file: machine-readable, with the full MIT text of LICENSE.
    let copyright =
        std::fs::read_to_string(root.join("usr/share/doc/jenkins-ha/copyright")).unwrap();
    assert!(
        copyright.starts_with(
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
        ),
        "{copyright}"
    );
    assert!(copyright.contains("\nLicense: MIT\n"), "{copyright}");
    let license = std::fs::read_to_string(repo().join("LICENSE")).unwrap();
    let words = |text: &str| -> String {
        text.split_whitespace()
            .filter(|w| *w != ".")
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mit_text = &license[license.find("Permission is hereby granted").unwrap()..];
    assert!(
        words(&copyright).contains(&words(mit_text)),
        "the copyright file holds the whole MIT text of LICENSE:\n{copyright}"
    );
    assert!(
        license.contains("MIT License") && env!("CARGO_PKG_LICENSE") == "MIT",
        "LICENSE is the MIT licence the crate declares"
    );

    // The Debian changelog: gzipped, and its latest entry is this very version.
    let changelog = gunzip(&root.join("usr/share/doc/jenkins-ha/changelog.Debian.gz"));
    let version = field("Version").unwrap_or_default();
    assert!(
        changelog.starts_with(&format!("jenkins-ha ({version}) ")),
        "the changelog's latest entry is {version}:\n{changelog}"
    );
    let parsed = ok(
        "dpkg-parsechangelog",
        Command::new("dpkg-parsechangelog")
            .arg("-l")
            .arg(repo().join("packaging/changelog"))
            .args(["-S", "Version"])
            .output()
            .unwrap(),
    );
    assert_eq!(parsed.trim(), version, "dpkg-parsechangelog agrees");

    // The maintainer scripts parse, and reach systemd only through deb-systemd-helper and
    // deb-systemd-invoke (systemctl for daemon-reload alone); they never enable or start the
    // service. The throwaway-root test below runs them.
    let control_dir = tempfile::tempdir().unwrap();
    dpkg_deb("-e", deb, Some(control_dir.path()));
    for script in ["postinst", "prerm", "postrm"] {
        let path = control_dir.path().join(script);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o755,
            "{script} is executable"
        );
        assert!(text.starts_with("#!/bin/sh\n"), "{script}: {text}");
        ok(
            &format!("sh -n {script}"),
            Command::new("sh").arg("-n").arg(&path).output().unwrap(),
        );
        // Command lines: not comments, and not the text of a message (`echo "..." \` and its
        // continuation lines, which may well tell the operator to run systemctl).
        let commands = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#') && !l.starts_with("echo ") && !l.starts_with('"'));
        for line in commands {
            if line.contains("systemctl") {
                assert!(
                    line.starts_with("systemctl --system daemon-reload"),
                    "{script} runs systemctl for more than daemon-reload: {line}"
                );
            }
            if line.contains("deb-systemd-invoke") {
                assert!(
                    line.starts_with("deb-systemd-invoke stop "),
                    "{script} runs deb-systemd-invoke for more than stop: {line}"
                );
            }
            for forbidden in ["enable --now", "start jenkins-ha", "restart"] {
                assert!(
                    !line.contains(forbidden),
                    "{script} runs {forbidden:?}: {line}"
                );
            }
        }
    }
    let prerm = std::fs::read_to_string(control_dir.path().join("prerm")).unwrap();
    assert!(
        prerm.contains("deb-systemd-invoke stop jenkins-ha.service"),
        "{prerm}"
    );

    // Extracted: the binary runs, and the generated files are what it generates.
    let binary = root.join("usr/bin/jenkins-ha");
    let version = ok(
        "jenkins-ha --version",
        Command::new(&binary).arg("--version").output().unwrap(),
    );
    assert_eq!(
        version.trim(),
        format!("jenkins-ha {}", env!("CARGO_PKG_VERSION"))
    );

    let man_gz = std::fs::read(root.join("usr/share/man/man1/jenkins-ha.1.gz")).unwrap();
    assert_eq!(&man_gz[..2], &[0x1f, 0x8b], "the man page is gzip");
    let man = gunzip(&root.join("usr/share/man/man1/jenkins-ha.1.gz"));
    assert!(man.starts_with(".TH JENKINS-HA 1 "), "{man}");
    let fresh = ok(
        "jenkins-ha man",
        Command::new(&binary).arg("man").output().unwrap(),
    );
    assert_eq!(
        man, fresh,
        "the packaged man page is what the packaged binary prints"
    );

    let bash =
        std::fs::read_to_string(root.join("usr/share/bash-completion/completions/jenkins-ha"))
            .unwrap();
    assert!(
        bash.contains("check-config") && bash.contains("complete -F"),
        "{bash}"
    );
    let zsh =
        std::fs::read_to_string(root.join("usr/share/zsh/vendor-completions/_jenkins-ha")).unwrap();
    assert!(zsh.starts_with("#compdef jenkins-ha"), "{zsh}");
    let fish =
        std::fs::read_to_string(root.join("usr/share/fish/vendor_completions.d/jenkins-ha.fish"))
            .unwrap();
    assert!(fish.contains("complete -c jenkins-ha"), "{fish}");

    // The shipped copies are the repository's files.
    for (packaged, source) in [
        ("etc/jenkins-ha/config.yaml", "packaging/config.yaml"),
        (
            "lib/systemd/system/jenkins-ha.service",
            "systemd/jenkins-ha.service",
        ),
        (
            "usr/share/doc/jenkins-ha/examples/haproxy.cfg",
            "haproxy/haproxy.cfg",
        ),
        (
            "usr/share/doc/jenkins-ha/examples/init.groovy.d/jenkins-ha-quiet-at-start.groovy",
            "packaging/init.groovy.d/jenkins-ha-quiet-at-start.groovy",
        ),
        (
            "usr/share/doc/jenkins-ha/examples/monitoring/jenkins-ha.rules.yml",
            "monitoring/jenkins-ha.rules.yml",
        ),
        ("usr/share/doc/jenkins-ha/README.md", "README.md"),
        ("usr/share/doc/jenkins-ha/copyright", "packaging/copyright"),
        (
            "usr/share/lintian/overrides/jenkins-ha",
            "packaging/lintian-overrides",
        ),
    ] {
        assert_eq!(
            std::fs::read(root.join(packaged)).unwrap(),
            std::fs::read(repo().join(source)).unwrap(),
            "{packaged} is {source}"
        );
    }
}

// ---- lintian ----

/// One tag lintian printed: its letter (E, W, I, P, X, or O when overridden), name and context.
#[derive(Debug)]
struct Tag {
    kind: char,
    name: String,
    context: String,
}

fn lintian(args: &[&str], deb: &Path) -> (Option<i32>, Vec<Tag>, String) {
    let out = Command::new("lintian")
        .args(args)
        .arg(deb)
        .output()
        .expect("lintian runs (scripts/install-deps installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let tags = stdout
        .lines()
        .filter_map(|line| {
            // "E: jenkins-ha: tag-name context", "O: jenkins-ha: ..."; "N:" lines are the notes.
            let (kind, rest) = line.split_once(": ")?;
            let kind = kind.chars().next().filter(|_| kind.len() == 1)?;
            if kind == 'N' {
                return None;
            }
            let rest = rest.strip_prefix("jenkins-ha: ")?;
            let (name, context) = rest.split_once(' ').unwrap_or((rest, ""));
            Some(Tag {
                kind,
                name: name.to_string(),
                context: context.to_string(),
            })
        })
        .collect();
    (out.status.code(), tags, stdout)
}

/// The byte ranges of the ELF64 file's sections that hold machine code (SHF_EXECINSTR).
fn code_sections(elf: &[u8]) -> Vec<std::ops::Range<usize>> {
    let u16_at = |o: usize| u16::from_le_bytes(elf[o..o + 2].try_into().unwrap()) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap()) as usize;
    assert_eq!(&elf[..5], b"\x7fELF\x02", "a 64-bit ELF file");
    assert_eq!(elf[5], 1, "little-endian");
    let (shoff, shentsize, shnum) = (u64_at(0x28), u16_at(0x3a), u16_at(0x3c));
    (0..shnum)
        .map(|i| shoff + i * shentsize)
        .filter(|h| u64_at(h + 8) & 0x4 != 0)
        .map(|h| u64_at(h + 0x18)..u64_at(h + 0x18) + u64_at(h + 0x20))
        .collect()
}

#[test]
fn lintian_reports_no_error_and_every_tag_left_is_explained() {
    let deb = package();

    // What a packager runs: no error, no warning, exit 0 (the overrides shipped in the package
    // apply).
    let (code, tags, out) = lintian(&[], deb);
    assert!(tags.is_empty(), "lintian reports:\n{out}");
    assert_eq!(code, Some(0), "lintian exits 0:\n{out}");

    // Everything, overridden tags included: every tag is listed in packaging/LINTIAN.md, none is
    // an error unless the overrides file explains it.
    let (_, tags, out) = lintian(
        &[
            "--display-info",
            "--pedantic",
            "--display-experimental",
            "--show-overrides",
        ],
        deb,
    );
    let explained = std::fs::read_to_string(repo().join("packaging/LINTIAN.md")).unwrap();
    let overrides = std::fs::read_to_string(repo().join("packaging/lintian-overrides")).unwrap();
    for tag in &tags {
        assert!(
            explained.contains(&format!("`{}`", tag.name)),
            "packaging/LINTIAN.md does not explain {} ({}):\n{out}",
            tag.name,
            tag.context
        );
        assert!(
            tag.kind == 'O' || !matches!(tag.kind, 'E' | 'W'),
            "lintian reports {} {} {}, not overridden",
            tag.kind,
            tag.name,
            tag.context
        );
        if tag.kind == 'O' {
            // Each override is preceded by its reason, a comment line.
            let line = overrides
                .lines()
                .position(|l| l.starts_with(&tag.name))
                .unwrap_or_else(|| panic!("{} is not in packaging/lintian-overrides", tag.name));
            assert!(
                line > 0 && overrides.lines().nth(line - 1).unwrap().starts_with("# "),
                "the override of {} has its reason on the line above",
                tag.name
            );
        }
    }

    // spelling-error-in-binary is overridden for the binary as a whole, because machine code
    // spells random words: check that each reported word occurs only in machine code, never in
    // the data where the messages are.
    let binary = std::fs::read(extracted().join("usr/bin/jenkins-ha")).unwrap();
    let code = code_sections(&binary);
    assert!(!code.is_empty(), "the binary has a code section");
    for tag in tags.iter().filter(|t| t.name == "spelling-error-in-binary") {
        let word = tag.context.split_whitespace().next().unwrap().as_bytes();
        let places: Vec<usize> = binary
            .windows(word.len())
            .enumerate()
            .filter(|(_, w)| *w == word)
            .map(|(i, _)| i)
            .collect();
        assert!(!places.is_empty(), "{tag:?} is not in the binary");
        for at in places {
            assert!(
                code.iter().any(|r| r.contains(&at)),
                "{:?} at offset {at:#x} is outside the code: a real spelling error in a \
                 message? Fix it rather than the override.",
                String::from_utf8_lossy(word)
            );
        }
    }
}

// ---- The unit, as packaged ----

#[test]
fn the_packaged_unit_passes_systemd_analyze_verify() {
    // systemd is not PID 1 here, but `systemd-analyze verify` loads the unit in a manager of its
    // own and checks every directive, that every command is executable and that the man page of
    // Documentation= exists. The package's /usr is laid over the system's with overlayfs in a
    // private mount namespace, so /usr/bin/jenkins-ha and jenkins-ha(1) exist for it without
    // installing anything. verify exits 0 even on an unknown key or a bad value (it only logs
    // them), so the test wants it silent.
    require_root("systemd-analyze verify of the packaged unit");
    let root = extracted();
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(
            r#"set -e
            mount -t overlay overlay -o "lowerdir=$1/usr:/usr" /usr
            exec systemd-analyze verify "$1/lib/systemd/system/jenkins-ha.service""#,
        )
        .arg("sh")
        .arg(root)
        .output()
        .expect("unshare runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "systemd-analyze verify:\n{text}");
    assert_eq!(text, "", "systemd-analyze verify says something");
}

/// Kills the daemon if the test fails before stopping it.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `POST path` to the daemon's API with a bearer token: the HTTP status, or None while nothing
/// answers.
fn post(port: u16, path: &str, token: &str) -> Option<u16> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.split_whitespace().nth(1)?.parse().ok()
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn exec_reload_of_the_packaged_unit_makes_the_daemon_apply_a_rotated_token() {
    require_root("running ExecReload= under the unit's /proc restrictions");
    let root = extracted();
    let unit = std::fs::read_to_string(root.join("lib/systemd/system/jenkins-ha.service")).unwrap();
    let reload: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("ExecReload="))
        .collect();
    assert_eq!(reload.len(), 1, "one ExecReload= line: {reload:?}");
    // systemd splits this line into words itself (no shell); a plain line splits the same way
    // on whitespace.
    let words: Vec<&str> = reload[0].split_whitespace().collect();
    assert!(
        words.iter().all(|w| !w.contains(['"', '\'', '\\', ';'])) && words[0].starts_with('/'),
        "ExecReload= is a plain command with an absolute path: {reload:?}"
    );
    assert!(words.contains(&"$MAINPID"), "it signals the main process");

    // A real `jenkins-ha run` of the packaged binary, with a minimal config: no Jenkins, no
    // HAProxy and no peer answer, which the daemon survives.
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::write(home.join("config.xml"), "<hudson/>").unwrap();
    let token_file = dir.path().join("cluster.token");
    let write_token = |token: &str| {
        std::fs::write(&token_file, format!("{token}\n")).unwrap();
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    };
    write_token("old-token-1b2c3d");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "node:\n  name: jenkins01\n  listen: 127.0.0.1:{port}\n\
             peer:\n  name: jenkins02\n  url: http://127.0.0.1:1\n\
             auth:\n  token_file: {token}\n\
             jenkins:\n  url: http://127.0.0.1:2\n  home: {home}\n\
             timing:\n  interval: 200ms\n  lease_timeout: 2s\n\
             haproxy:\n  sockets: [{dir}/haproxy.sock]\n",
            token = token_file.display(),
            home = home.display(),
            dir = dir.path().display()
        ),
    )
    .unwrap();
    let log = dir.path().join("jenkins-ha.log");
    let mut daemon = Daemon(
        Command::new(root.join("usr/bin/jenkins-ha"))
            .args(["run", "-c"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();

    // Up, and the old token is the one it accepts.
    wait_for(
        "the daemon accepts its token",
        Duration::from_secs(20),
        || post(port, "/pause", "old-token-1b2c3d") == Some(200),
    );
    assert_eq!(post(port, "/pause", "new-token-4e5f6a"), Some(401));

    // Rotate the token and run the unit's ExecReload= command, as systemctl reload does.
    write_token("new-token-4e5f6a");
    let pid = daemon.0.id().to_string();
    let argv: Vec<&str> = words
        .iter()
        .map(|w| if *w == "$MAINPID" { pid.as_str() } else { w })
        .collect();
    // Under the unit's ProtectProc=invisible and ProcSubset=pid, as systemd runs it: a /proc of
    // process directories only (no /proc/sys, /proc/stat), in a private mount namespace.
    ok(
        &format!("ExecReload= ({})", argv.join(" ")),
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(
                r#"set -e
                mount -t proc -o subset=pid,hidepid=invisible proc /proc
                exec "$@""#,
            )
            .arg("sh")
            .args(&argv)
            .output()
            .unwrap(),
    );
    wait_for(
        "the daemon logs the new token as applied",
        Duration::from_secs(10),
        || read_log().contains("SIGHUP: applied: auth.token_file (new cluster token)"),
    );
    assert_eq!(
        post(port, "/resume", "old-token-1b2c3d"),
        Some(401),
        "the old token is refused after the reload"
    );
    assert_eq!(
        post(port, "/resume", "new-token-4e5f6a"),
        Some(200),
        "the new token is accepted after the reload"
    );
    assert!(
        daemon.0.try_wait().unwrap().is_none(),
        "the daemon still runs after the reload:\n{}",
        read_log()
    );

    // `systemctl stop` sends SIGTERM (KillSignal=): a clean stop exits 0, which Restart=on-failure
    // leaves stopped.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = daemon.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "{}", read_log());
}

// ---- The maintainer scripts, run by the real dpkg in a throwaway root ----

/// A root directory for `dpkg --root`: its own /etc, /var and /run, and the system's /usr under an
/// overlay whose writes land in `upper` (the package's own files under /usr and /lib among them).
/// /usr/local/sbin/systemctl there is a stand-in that only records its arguments in
/// /tmp/systemctl.log: systemd does not run here, and the test wants to see what the maintainer
/// scripts, directly or through deb-systemd-invoke, ask of it.
struct ThrowawayRoot {
    _dir: tempfile::TempDir,
    root: PathBuf,
    upper: PathBuf,
    work: PathBuf,
}

const SYSTEMCTL_STANDIN: &str = "#!/bin/sh\necho \"$*\" >> /tmp/systemctl.log\nexit 0\n";

impl ThrowawayRoot {
    fn new() -> ThrowawayRoot {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let upper = dir.path().join("upper");
        let work = dir.path().join("work");
        for d in [
            "usr",
            "etc",
            "var/lib/dpkg/info",
            "var/lib/dpkg/updates",
            "var/lib/dpkg/triggers",
            "var/log",
            "run",
            "tmp",
            "proc",
            "dev",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
        std::fs::write(root.join("var/lib/dpkg/available"), "").unwrap();
        // The merged-/usr links of the system (Debian bookworm).
        for link in ["bin", "sbin", "lib", "lib64"] {
            if let Ok(target) = std::fs::read_link(Path::new("/").join(link)) {
                std::os::unix::fs::symlink(target, root.join(link)).unwrap();
            }
        }
        std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        std::fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
        std::fs::create_dir_all(upper.join("local/sbin")).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        let standin = upper.join("local/sbin/systemctl");
        std::fs::write(&standin, SYSTEMCTL_STANDIN).unwrap();
        std::fs::set_permissions(&standin, std::fs::Permissions::from_mode(0o755)).unwrap();
        ThrowawayRoot {
            _dir: dir,
            root,
            upper,
            work,
        }
    }

    /// Runs `dpkg --root=ROOT ARGS` with the overlay, /proc and /dev mounted in a private mount
    /// namespace. Returns dpkg's output, stdout then stderr.
    fn dpkg(&self, args: &[&str]) -> String {
        let out = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(
                r#"set -e
                root=$1; upper=$2; work=$3; shift 3
                mount -t overlay overlay -o "lowerdir=/usr,upperdir=$upper,workdir=$work" "$root/usr"
                mount -t proc proc "$root/proc"
                mount --bind /dev "$root/dev"
                # A container's policy-rc.d (exit 101: start nothing) would make deb-systemd-invoke
                # skip the stop; the throwaway root is a host without one. (A whiteout in upper.)
                rm -f "$root/usr/sbin/policy-rc.d"
                exec dpkg --root="$root" "$@""#,
            )
            .arg("sh")
            .arg(&self.root)
            .arg(&self.upper)
            .arg(&self.work)
            .args(args)
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env_remove("DPKG_ROOT")
            .output()
            .expect("unshare runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "dpkg {args:?}:\n{text}");
        text
    }

    fn path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    /// A file under /usr or /lib, which the overlay keeps in `upper`.
    fn usr_file(&self, path: &str) -> PathBuf {
        let path = path.trim_start_matches('/');
        let path = path.strip_prefix("usr/").unwrap_or(path);
        self.upper.join(path)
    }

    /// What systemctl was asked since the last call, one call a line.
    fn systemctl_calls(&self) -> Vec<String> {
        let log = self.path("/tmp/systemctl.log");
        let calls = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        calls.lines().map(str::to_string).collect()
    }
}

const WANTS_LINK: &str = "/etc/systemd/system/multi-user.target.wants/jenkins-ha.service";
const DSH_STATE: &str = "/var/lib/systemd/deb-systemd-helper-enabled/jenkins-ha.service.dsh-also";

#[test]
fn maintainer_scripts_register_the_unit_but_never_enable_or_start_it() {
    require_root("installing the package into a throwaway root");
    let deb = package().to_str().unwrap();
    let r = ThrowawayRoot::new();
    let etc = r.path("/etc/jenkins-ha");
    let owner_mode = |p: &Path| {
        let m = std::fs::metadata(p).unwrap();
        (m.uid(), m.gid(), m.mode() & 0o7777)
    };

    // 1. A fresh install on a host without the jenkins user, systemd not running.
    let out = r.dpkg(&["--force-depends", "-i", deb]);
    assert!(
        out.contains("jenkins-ha: warning: there is no jenkins user or no jenkins group"),
        "the postinst warns that the service user is missing:\n{out}"
    );
    assert!(
        out.contains("installed, not enabled"),
        "a fresh install says what to do next:\n{out}"
    );
    assert!(r.usr_file("/usr/bin/jenkins-ha").is_file());
    assert!(r
        .usr_file("/lib/systemd/system/jenkins-ha.service")
        .is_file());
    assert_eq!(
        owner_mode(&etc),
        (0, 0, 0o755),
        "without a jenkins group /etc/jenkins-ha stays root:root 755"
    );
    assert!(
        r.path(DSH_STATE).is_file(),
        "deb-systemd-helper recorded the unit's symlinks, for purge"
    );
    assert!(
        std::fs::symlink_metadata(r.path(WANTS_LINK)).is_err(),
        "the service is not enabled"
    );
    assert_eq!(
        r.systemctl_calls(),
        Vec::<String>::new(),
        "nothing asked of a systemd that does not run"
    );
    let verify = r.dpkg(&["--verify", "jenkins-ha"]);
    assert_eq!(verify, "", "dpkg --verify finds every file as packaged");

    // 2. The jenkins user and group now exist (Jenkins' package was installed), systemd runs;
    //    the package is installed again (an upgrade's path: postinst configure <old version>).
    std::fs::write(
        r.path("/etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\n\
         jenkins:x:990:990:Jenkins:/var/lib/jenkins:/bin/bash\n",
    )
    .unwrap();
    std::fs::write(r.path("/etc/group"), "root:x:0:\njenkins:x:990:\n").unwrap();
    std::fs::create_dir_all(r.path("/run/systemd/system")).unwrap();
    let out = r.dpkg(&["--force-depends", "-i", deb]);
    assert!(!out.contains("warning"), "{out}");
    assert!(
        !out.contains("installed, not enabled"),
        "an upgrade is quiet:\n{out}"
    );
    assert_eq!(
        owner_mode(&etc),
        (0, 990, 0o750),
        "/etc/jenkins-ha is root:jenkins 750, as the README says"
    );
    assert_eq!(
        r.systemctl_calls(),
        ["--system daemon-reload"],
        "only a daemon-reload: nothing enabled, started or restarted"
    );
    assert!(std::fs::symlink_metadata(r.path(WANTS_LINK)).is_err());

    // 3. The operator enabled the service (`systemctl enable jenkins-ha`); an upgrade keeps it
    //    enabled and does not restart it.
    std::fs::create_dir_all(r.path(WANTS_LINK).parent().unwrap()).unwrap();
    std::os::unix::fs::symlink("/lib/systemd/system/jenkins-ha.service", r.path(WANTS_LINK))
        .unwrap();
    r.dpkg(&["--force-depends", "-i", deb]);
    assert_eq!(r.systemctl_calls(), ["--system daemon-reload"]);
    assert!(std::fs::symlink_metadata(r.path(WANTS_LINK)).is_ok());

    // 4. Removal stops the service (prerm, through deb-systemd-invoke: the static check above
    //    shows no script calls systemctl for anything but daemon-reload) and reloads systemd; the
    //    config, the operator's token file and the operator's enable link stay.
    std::fs::write(etc.join("cluster.token"), "s3cret\n").unwrap();
    r.dpkg(&["-r", "jenkins-ha"]);
    assert_eq!(
        r.systemctl_calls(),
        ["stop jenkins-ha.service", "--system daemon-reload"]
    );
    assert!(!r.usr_file("/usr/bin/jenkins-ha").exists());
    assert!(
        etc.join("config.yaml").is_file(),
        "remove keeps the conffile"
    );

    // 5. Purge removes the conffile, the enable link and deb-systemd-helper's state; the token
    //    file the operator made is not the package's and stays.
    r.dpkg(&["-P", "jenkins-ha"]);
    assert!(!etc.join("config.yaml").exists());
    assert!(std::fs::symlink_metadata(r.path(WANTS_LINK)).is_err());
    assert!(!r.path(DSH_STATE).exists());
    assert!(etc.join("cluster.token").is_file());
}

// ---- Fast: the generators, through the debug binary ----

fn jenkins_ha(args: &[&str]) -> String {
    ok(
        &format!("jenkins-ha {args:?}"),
        Command::new(env!("CARGO_BIN_EXE_jenkins-ha"))
            .args(args)
            // No config is needed to print the manual, wherever the variable points.
            .env("JENKINS_HA_CONFIG", "/nonexistent/config.yaml")
            .output()
            .unwrap(),
    )
}

#[test]
fn man_prints_a_roff_page() {
    let page = jenkins_ha(&["man"]);
    assert!(page.starts_with(".TH JENKINS-HA 1 "), "{page}");
    assert!(page.contains("\n.SH SYNOPSIS\n"), "{page}");
    assert!(page.contains("\n.SH \"EXIT STATUS\"\n"), "{page}");
}

#[test]
fn completions_know_the_subcommands() {
    let bash = jenkins_ha(&["completions", "bash"]);
    assert!(bash.contains("check-config"), "{bash}");
    assert!(jenkins_ha(&["completions", "zsh"]).starts_with("#compdef jenkins-ha"));
    assert!(jenkins_ha(&["completions", "fish"]).contains("complete -c jenkins-ha"));
}

#[test]
fn completions_refuse_an_unknown_shell_with_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_jenkins-ha"))
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bash, zsh, fish"), "{stderr}");
}

/// What bash offers for the last word of `words`, with the script `completions bash` prints.
fn bash_completes(words: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("jenkins-ha.bash");
    std::fs::write(&script, jenkins_ha(&["completions", "bash"])).unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(
            r#"source "$1"; shift
            function=$(complete -p jenkins-ha | sed 's/.* -F \([^ ]*\) .*/\1/')
            COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1))
            "$function" jenkins-ha "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
            printf '%s\n' "${COMPREPLY[@]}""#,
        )
        .arg("bash")
        .arg(&script)
        .args(words)
        .output()
        .expect("bash runs");
    ok("bash completion", out)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completes_commands_and_their_options() {
    assert_eq!(bash_completes(&["jenkins-ha", "ch"]), ["check-config"]);
    assert!(!bash_completes(&["jenkins-ha", "m"]).contains(&"man".to_string()));
    assert_eq!(bash_completes(&["jenkins-ha", "status", "--j"]), ["--json"]);
    assert_eq!(
        bash_completes(&["jenkins-ha", "completions", ""]),
        ["-c", "-h", "--config", "--help", "bash", "zsh", "fish"]
    );
}
