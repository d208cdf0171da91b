//! `iovactl`: the tool to run before launching a VM with an assigned device.
//!
//! Exit codes: 0 success; 1 the answer is "no" (a check found a fatal conflict or a
//! blocker); 2 bad input or usage (the message on stderr names what was wrong); 3 the
//! operating system refused something (a VFIO ioctl, a file that exists but cannot be
//! read for a reason other than bad content).

mod error;
mod hostsrc;
mod inspect;
mod replay;
mod report;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::CliError;

/// Make IOMMU address spaces safe and predictable: inspect a host's valid IOVA ranges,
/// check and plan guest layouts, replay DMA traces.
#[derive(Debug, Parser)]
#[command(name = "iovactl", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show IOMMU units, groups, devices, reserved regions and the valid IOVA ranges.
    Inspect(inspect::InspectArgs),
    /// Replay a DMA trace (map / unmap / unmap-all) on a simulated VFIO container and
    /// print the kernel's answer to each operation: ok, ok 0xBYTES, or an errno name.
    Replay(replay::ReplayArgs),
}

fn run(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Inspect(args) => inspect::run(&args),
        Command::Replay(args) => replay::run(&args),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("iovactl: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
