//! The text after the options: exit status, environment and files, as data shared by
//! `--help` (see [`after_long_help`]) and the man page (`super::manual`); and the shells the
//! completions are written for.

use clap::ValueEnum;

/// The shells `jenkins-ha completions` writes a script for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// The sections after the options: (heading, [(term, text)]).
pub const SECTIONS: &[(&str, &[(&str, &str)])] = &[
    (
        "EXIT STATUS",
        &[
            ("0", "success; for run, a clean stop on SIGTERM or SIGINT"),
            (
                "1",
                "a runtime failure: run cannot start (node.listen cannot be bound, for example), \
                 the sidecar does not answer (status), a failover is refused, fails or is not \
                 confirmed, the output cannot be written",
            ),
            (
                "2",
                "the config is invalid (one line names the file, the line and the field), or the \
                 command line is wrong",
            ),
            (
                "3",
                "status: the sidecar answered but no node is active",
            ),
        ],
    ),
    (
        "ENVIRONMENT",
        &[
            ("JENKINS_HA_CONFIG", "the config file when -c is not given"),
            (
                "JENKINS_HA_LOG",
                "what run logs, as a tracing filter: error, warn, info (the default), debug or trace",
            ),
        ],
    ),
    (
        "FILES",
        &[
            (
                "/etc/jenkins-ha/config.yaml",
                "the config file; the packaged one names every key with its default",
            ),
            (
                "/etc/jenkins-ha/cluster.token",
                "the secret shared by the two sidecars (auth.token_file); mode 600",
            ),
            (
                "/etc/jenkins-ha/jenkins.token",
                "the API token of the Jenkins user (jenkins.api_token_file); mode 600",
            ),
            (
                "/etc/jenkins-ha/tls/",
                "node.tls: this node's certificate and key (key mode 600) and the cluster CA, \
                 when the API serves HTTPS",
            ),
            (
                "<jenkins.home>/.jenkins-ha/",
                "lease.dir: one file per term on the shared storage; the only truth about who is active",
            ),
            (
                "/lib/systemd/system/jenkins-ha.service",
                "the unit: check-config, then run, as the jenkins user",
            ),
            (
                "/usr/share/doc/jenkins-ha/examples/haproxy.cfg",
                "an HAProxy config for the pair",
            ),
        ],
    ),
];

/// The text after the options in `--help`: the same sections as the man page.
pub fn after_long_help() -> String {
    let mut out = String::new();
    for (heading, items) in SECTIONS {
        let width = items.iter().map(|(term, _)| term.len()).max().unwrap_or(0);
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&capitalize(heading));
        out.push_str(":\n");
        for (term, text) in *items {
            out.push_str(&format!("  {term:width$}  {text}\n"));
        }
    }
    out
}

fn capitalize(heading: &str) -> String {
    let lower = heading.to_lowercase();
    let mut chars = lower.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}
