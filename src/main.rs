//! The `jenkins-ha` binary: everything lives in the library; see [`jenkins_ha::cli`].

fn main() -> std::process::ExitCode {
    jenkins_ha::cli::main()
}
