//! `iovactl completions SHELL` and `iovactl man [COMMAND]`: shell completion scripts and
//! manual pages generated from the command-line definitions themselves, so that they
//! cannot drift from the tool.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, CommandFactory as _};

use crate::error::CliError;

/// `iovactl completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell. Bash: `source <(iovactl
    /// completions bash)`, or install the output as
    /// /usr/share/bash-completion/completions/iovactl.
    #[arg(value_name = "SHELL")]
    shell: clap_complete::Shell,
}

/// `iovactl man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// The command whose page to print (`check`, `export`, ...; `export-virtio-iommu`
    /// for a command under another); none prints iovactl(1), the overview.
    #[arg(value_name = "COMMAND", conflicts_with = "dir")]
    command: Option<String>,
    /// Write every page instead, as DIR/iovactl.1 and DIR/iovactl-COMMAND.1 (the
    /// packaging uses this); the folder is created if missing.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// The whole command tree, built (so that every command knows its full name, such as
/// `iovactl-check`).
fn tree() -> clap::Command {
    let mut cmd = crate::Cli::command();
    cmd.build();
    cmd
}

/// Runs `iovactl completions`.
pub fn run_completions(args: &CompletionsArgs) -> Result<ExitCode, CliError> {
    let mut cmd = crate::Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "iovactl", &mut out);
    write_stdout(&out)
}

/// Every page: (file stem, command), the overview first, then each command and the
/// commands under it (`iovactl-export-virtio-iommu`), hidden ones left out.
fn pages(root: &clap::Command) -> Vec<(String, clap::Command)> {
    fn walk(prefix: &str, cmd: &clap::Command, out: &mut Vec<(String, clap::Command)>) {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            if sub.get_name() == "help" {
                continue;
            }
            let stem = format!("{prefix}-{}", sub.get_name());
            out.push((stem.clone(), sub.clone()));
            walk(&stem, sub, out);
        }
    }
    let mut out = vec![("iovactl".to_owned(), root.clone())];
    walk("iovactl", root, &mut out);
    out
}

fn render(stem: &str, cmd: &clap::Command) -> Result<Vec<u8>, CliError> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .title(stem)
        .section("1")
        .source(format!("iovactl {}", env!("CARGO_PKG_VERSION")))
        .manual("iovactl manual")
        .render(&mut out)
        .map_err(|e| CliError::Os(format!("cannot render a manual page: {e}")))?;
    Ok(out)
}

/// Runs `iovactl man`.
pub fn run_man(args: &ManArgs) -> Result<ExitCode, CliError> {
    let root = tree();
    let all = pages(&root);
    if let Some(dir) = &args.dir {
        return write_all(dir, &all);
    }
    let stem = match args.command.as_deref() {
        None => "iovactl".to_owned(),
        Some(name) => format!("iovactl-{}", name.trim_start_matches("iovactl-")),
    };
    let Some((_, cmd)) = all.iter().find(|(s, _)| *s == stem) else {
        let names: Vec<&str> = all
            .iter()
            .skip(1)
            .map(|(s, _)| s.trim_start_matches("iovactl-"))
            .collect();
        return Err(CliError::input(format!(
            "no manual page for '{}': the commands are {}",
            args.command.as_deref().unwrap_or_default(),
            names.join(", ")
        )));
    };
    write_stdout(&render(&stem, cmd)?)
}

fn write_all(dir: &Path, all: &[(String, clap::Command)]) -> Result<ExitCode, CliError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::Os(format!("cannot create {}: {e}", dir.display())))?;
    for (stem, cmd) in all {
        let path = dir.join(format!("{stem}.1"));
        std::fs::write(&path, render(stem, cmd)?)
            .map_err(|e| CliError::Os(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn write_stdout(bytes: &[u8]) -> Result<ExitCode, CliError> {
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    lock.write_all(bytes)
        .and_then(|()| lock.flush())
        .map_err(|e| crate::out::stdout_error(&e))?;
    Ok(ExitCode::SUCCESS)
}
