//! The manual: the man page `jenkins-ha(1)` and the shell completions, both generated from the
//! clap definitions in [`super::args`], so `--help`, the man page and the completions never drift.
//!
//! The sections that follow the options (exit status, environment, files) are data in
//! [`super::help`]: `--help` prints them after the options, and [`man`] renders them as man
//! page sections. The Debian package ships what `jenkins-ha man` and `jenkins-ha completions` print
//! (`scripts/package-deb`).

use std::io::Write;
use std::process::ExitCode;

use clap::CommandFactory;
use clap_mangen::roff::{bold, italic, roman, Inline, Roff};

use super::args::Cli;
use super::help::{Shell, SECTIONS};

/// Renders `jenkins-ha(1)`: the title, clap_mangen's name, synopsis, description and options, then
/// one entry per visible subcommand with its own arguments, then [`SECTIONS`].
pub fn render_man() -> std::io::Result<Vec<u8>> {
    let cmd = Cli::command();
    let page = clap_mangen::Man::new(cmd.clone());
    // Written here rather than by clap_mangen, which drops an empty date and so shifts the
    // source and manual fields left.
    let mut out = format!(
        ".TH JENKINS-HA 1 \"\" \"jenkins-ha {}\" \"User Commands\"\n",
        env!("CARGO_PKG_VERSION")
    )
    .into_bytes();
    page.render_name_section(&mut out)?;
    page.render_synopsis_section(&mut out)?;
    page.render_description_section(&mut out)?;
    page.render_options_section(&mut out)?;

    let mut roff = Roff::default();
    roff.control("SH", ["COMMANDS"]);
    let mut cmd = cmd;
    cmd.build();
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let args: Vec<&clap::Arg> = sub
            .get_arguments()
            .filter(|a| !a.is_hide_set() && !a.is_global_set() && a.get_id() != "help")
            .collect();
        let mut header = vec![bold(format!("jenkins-ha {}", sub.get_name()))];
        for arg in &args {
            header.push(roman(" "));
            header.extend(usage(arg, true));
        }
        roff.control("TP", []);
        roff.text(header);
        let about = sub
            .get_long_about()
            .or(sub.get_about())
            .map(|a| a.to_string());
        for (i, paragraph) in about.iter().flat_map(|a| a.split("\n\n")).enumerate() {
            if i > 0 {
                roff.control("IP", []);
            }
            roff.text([roman(paragraph.replace('\n', " "))]);
        }
        if !args.is_empty() {
            roff.control("RS", []);
            for arg in &args {
                roff.control("TP", []);
                roff.text(usage(arg, false));
                let mut help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                let values: Vec<String> = arg
                    .get_possible_values()
                    .iter()
                    .map(|v| v.get_name().to_string())
                    .collect();
                if !values.is_empty() {
                    help = format!("{help} One of: {}.", values.join(", "))
                        .trim()
                        .to_string();
                }
                roff.text([roman(help)]);
            }
            roff.control("RE", []);
        }
    }
    for (heading, items) in SECTIONS {
        roff.control("SH", [*heading]);
        for (term, text) in *items {
            roff.control("TP", []);
            roff.text([bold(*term)]);
            roff.text([roman(*text)]);
        }
    }
    roff.control("SH", ["SEE ALSO"]);
    roff.text([
        bold("haproxy"),
        roman("(1), "),
        bold("systemctl"),
        roman("(1), "),
        bold("journalctl"),
        roman("(1), and /usr/share/doc/jenkins-ha/README.md: how it works, and what happens on each failure."),
    ]);
    roff.to_writer(&mut out)?;
    Ok(single_prelude(&out))
}

/// Each clap_mangen section render starts with the same two-line prelude (it defines the
/// apostrophe string); keep one, right after `.TH`, so the page starts with `.TH` as usual.
fn single_prelude(page: &[u8]) -> Vec<u8> {
    const PRELUDE: &str = ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n";
    let text = String::from_utf8_lossy(page).replace(PRELUDE, "");
    match text.split_once('\n') {
        Some((title, rest)) => format!("{title}\n{PRELUDE}{rest}").into_bytes(),
        None => text.into_bytes(),
    }
}

/// How an argument is written: `--json` (`[--json]` in a synopsis), `<SHELL>`.
fn usage(arg: &clap::Arg, synopsis: bool) -> Vec<Inline> {
    if arg.is_positional() {
        let name = arg
            .get_value_names()
            .and_then(|n| n.first())
            .map(|n| n.to_string())
            .unwrap_or_else(|| arg.get_id().to_string().to_uppercase());
        return vec![italic(format!("<{name}>"))];
    }
    let flag = match (arg.get_long(), arg.get_short()) {
        (Some(long), _) => format!("--{long}"),
        (None, Some(short)) => format!("-{short}"),
        (None, None) => arg.get_id().to_string(),
    };
    if arg.is_required_set() || !synopsis {
        vec![bold(flag)]
    } else {
        vec![roman("["), bold(flag), roman("]")]
    }
}

/// The completion script for `shell`.
pub fn render_completions(shell: Shell) -> Vec<u8> {
    let generator = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut out = Vec::new();
    clap_complete::generate(generator, &mut completable(), "jenkins-ha", &mut out);
    if shell == Shell::Bash {
        // clap_complete 4.6 spells the case labels of a hyphenated binary's subcommands
        // (jenkins__subcmd__ha__subcmd__status) unlike the state it dispatches on
        // (jenkins__ha__subcmd__status), so no subcommand's options would complete
        // (clap-rs/clap#6421). Spell them alike; a no-op once clap_complete is fixed.
        let script = String::from_utf8_lossy(&out).replace("jenkins__subcmd__ha", "jenkins__ha");
        out = script.into_bytes();
    }
    out
}

/// The command line as the completions offer it: without the hidden subcommands (`man`), which
/// clap_complete would otherwise list.
fn completable() -> clap::Command {
    let full = Cli::command();
    let mut cmd = clap::Command::new("jenkins-ha")
        .version(env!("CARGO_PKG_VERSION"))
        .args(full.get_arguments().cloned())
        .subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    if let Some(about) = full.get_about() {
        cmd = cmd.about(about.clone());
    }
    cmd
}

/// `jenkins-ha man`: the man page on stdout.
pub fn man() -> ExitCode {
    match render_man() {
        Ok(page) => write_stdout(&page),
        Err(e) => {
            eprintln!("jenkins-ha: cannot render the man page: {e}");
            ExitCode::from(1)
        }
    }
}

/// `jenkins-ha completions SHELL`: the script on stdout.
pub fn completions(shell: Shell) -> ExitCode {
    write_stdout(&render_completions(shell))
}

fn write_stdout(bytes: &[u8]) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jenkins-ha: cannot write to stdout: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_man_page_is_roff_and_documents_every_visible_command() {
        let page = String::from_utf8(render_man().unwrap()).unwrap();
        assert!(page.starts_with(".TH JENKINS-HA 1"), "{}", &page[..80]);
        assert_eq!(page.matches(".ds Aq").count(), 2, "one prelude (.ie/.el)");
        for needed in [
            ".SH NAME",
            ".SH SYNOPSIS",
            ".SH DESCRIPTION",
            ".SH OPTIONS",
            ".SH COMMANDS",
            ".SH \"EXIT STATUS\"",
            ".SH ENVIRONMENT",
            ".SH FILES",
            ".SH \"SEE ALSO\"",
            "jenkins\\-ha run",
            "jenkins\\-ha check\\-config",
            "jenkins\\-ha status",
            "\\-\\-json",
            "jenkins\\-ha completions",
            "JENKINS_HA_CONFIG",
            "/etc/jenkins\\-ha/config.yaml",
        ] {
            assert!(
                page.contains(needed),
                "the man page lacks {needed:?}:\n{page}"
            );
        }
        assert!(
            !page.contains("jenkins\\-ha man"),
            "the hidden man command is not documented"
        );
    }

    #[test]
    fn help_ends_with_the_same_sections() {
        let help = super::super::help::after_long_help();
        assert!(help.starts_with("Exit status:\n  0  "), "{help}");
        assert!(
            help.contains("\nEnvironment:\n  JENKINS_HA_CONFIG  "),
            "{help}"
        );
        assert!(help.contains("\nFiles:\n"), "{help}");
    }

    #[test]
    fn every_shell_gets_a_script_that_knows_the_commands() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let script = String::from_utf8(render_completions(shell)).unwrap();
            for command in ["check-config", "status", "completions"] {
                assert!(script.contains(command), "{shell:?} lacks {command}");
            }
            assert!(
                !script.contains("jenkins-ha(1)") && !script.contains("subcmd__man"),
                "{shell:?} offers the hidden man command"
            );
        }
    }
}
