//! The Debian package: `scripts/package-deb` builds it exactly as an operator would (release
//! profile, cargo-deb installed on first use), and `dpkg-deb` shows what it contains: every file
//! an operator needs, at the right place with sane modes, the config as a conffile, a gzipped man
//! page, and a binary that runs.
//!
//! The package test is slow on a cold machine (installing cargo-deb, about 2 minutes on 2 cores;
//! a cold release build, about 1.5 minutes) and takes seconds once both are done. The package
//! is built from the release profile, the one that ships: a faster profile would test a binary
//! nobody installs, and would not save the cold build of the dependencies anyway.
//!
//! The fast tests at the bottom check the generators the script relies on, through the debug
//! binary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
        "/usr/share/doc/jenkins-ha/examples/haproxy.cfg",
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
    let started = std::time::Instant::now();
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

#[test]
fn the_deb_holds_what_an_operator_needs_and_its_binary_runs() {
    let deb = build_package();

    // The files, their modes, owned by root, and nothing unexpected.
    let files = contents(&deb);
    for (path, modes) in EXPECTED {
        let (mode, owner) = files
            .get(*path)
            .unwrap_or_else(|| panic!("the package lacks {path}: {files:#?}"));
        assert!(modes.contains(&mode.as_str()), "{path} has mode {mode}");
        assert_eq!(owner, "0/0", "{path} is owned by root");
    }
    for path in files.keys() {
        assert!(
            EXPECTED.iter().any(|(p, _)| p == path),
            "the package holds an unexpected file {path}"
        );
    }

    // The control fields.
    let control = dpkg_deb("-f", &deb, None);
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

    // The config is a conffile; the maintainer scripts never enable or start the service.
    let conffiles = dpkg_deb("-I", &deb, Some(Path::new("conffiles")));
    assert_eq!(conffiles.trim(), "/etc/jenkins-ha/config.yaml");
    for script in ["postinst", "prerm", "postrm"] {
        let text = dpkg_deb("-I", &deb, Some(Path::new(script)));
        for forbidden in [
            "systemctl enable",
            "systemctl start",
            "systemctl restart",
            "deb-systemd-invoke",
        ] {
            assert!(
                !text.contains(forbidden),
                "{script} runs {forbidden:?}:\n{text}"
            );
        }
    }

    // Extracted: the binary runs, and the generated files are what it generates.
    let root = tempfile::tempdir().unwrap();
    dpkg_deb("-x", &deb, Some(root.path()));
    let binary = root.path().join("usr/bin/jenkins-ha");
    let version = ok(
        "jenkins-ha --version",
        Command::new(&binary).arg("--version").output().unwrap(),
    );
    assert_eq!(
        version.trim(),
        format!("jenkins-ha {}", env!("CARGO_PKG_VERSION"))
    );

    let man_gz = std::fs::read(root.path().join("usr/share/man/man1/jenkins-ha.1.gz")).unwrap();
    assert_eq!(&man_gz[..2], &[0x1f, 0x8b], "the man page is gzip");
    let man = ok(
        "gzip -dc",
        Command::new("gzip")
            .arg("-dc")
            .arg(root.path().join("usr/share/man/man1/jenkins-ha.1.gz"))
            .output()
            .unwrap(),
    );
    assert!(man.starts_with(".TH JENKINS-HA 1 "), "{man}");
    let fresh = ok(
        "jenkins-ha man",
        Command::new(&binary).arg("man").output().unwrap(),
    );
    assert_eq!(
        man, fresh,
        "the packaged man page is what the packaged binary prints"
    );

    let bash = std::fs::read_to_string(
        root.path()
            .join("usr/share/bash-completion/completions/jenkins-ha"),
    )
    .unwrap();
    assert!(
        bash.contains("check-config") && bash.contains("complete -F"),
        "{bash}"
    );
    let zsh = std::fs::read_to_string(
        root.path()
            .join("usr/share/zsh/vendor-completions/_jenkins-ha"),
    )
    .unwrap();
    assert!(zsh.starts_with("#compdef jenkins-ha"), "{zsh}");
    let fish = std::fs::read_to_string(
        root.path()
            .join("usr/share/fish/vendor_completions.d/jenkins-ha.fish"),
    )
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
        ("usr/share/doc/jenkins-ha/README.md", "README.md"),
    ] {
        assert_eq!(
            std::fs::read(root.path().join(packaged)).unwrap(),
            std::fs::read(repo().join(source)).unwrap(),
            "{packaged} is {source}"
        );
    }
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
