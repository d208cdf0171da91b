//! `iovactl`: the tool to run before launching a VM with an assigned device.
//!
//! Exit codes: 0 success; 1 the answer is "no" (a check found a fatal conflict or a
//! blocker); 2 bad input or usage (the message on stderr names what was wrong); 3 the
//! operating system refused something (a VFIO ioctl, a file that exists but cannot be
//! read for a reason other than bad content, a failed write to standard output); 4 the
//! question cannot be answered (a VM definition uses an option that can change the
//! answer and is not modelled); 141 standard output was closed by its reader (`| head`):
//! the program ends quietly, with the status a shell shows for a program stopped by
//! SIGPIPE.

mod access;
mod docs_cmds;
mod error;
mod fleet;
mod fleet_export;
mod guest_cmds;
mod hostsrc;
mod input;
mod inspect;
mod memlock;
mod out;
mod replay;
mod report;
use iova_guest::text;
mod vmm;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::CliError;

/// Make IOMMU address spaces safe and predictable: inspect a host's valid IOVA ranges,
/// check and plan guest layouts, replay DMA traces.
#[derive(Debug, Parser)]
#[command(name = "iovactl", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show IOMMU units, groups, devices, reserved regions and the valid IOVA ranges.
    Inspect(inspect::InspectArgs),
    /// Check a guest layout against the devices' container: exit 0 when it fits, 1 when not.
    Check(guest_cmds::CheckArgs),
    /// Propose a guest layout that fits, with the VMM options that produce it.
    Plan(guest_cmds::PlanArgs),
    /// Export the host's facts: the container's limits for a VMM (virtio-iommu), or
    /// metrics and labels for fleet tools (Prometheus, Ansible, Node Feature Discovery).
    Export(guest_cmds::ExportArgs),
    /// Check one VM against many saved host profiles: which hosts can take it, and why
    /// not the others (exit 0 when at least one can).
    Fleet(fleet::FleetArgs),
    /// Draw the address space, the container and the guest layout as an SVG picture.
    Render(guest_cmds::RenderArgs),
    /// libvirt's qemu hook (/etc/libvirt/hooks/qemu): refuses to start a domain whose
    /// assigned devices cannot work with its memory map; see docs/guest-layouts.md.
    LibvirtHook(guest_cmds::HookArgs),
    /// Replay a DMA trace (map / unmap / unmap-all) on a simulated VFIO container and
    /// print the kernel's answer to each operation: ok, ok 0xBYTES, or an errno name.
    Replay(replay::ReplayArgs),
    /// Print a shell completion script (bash, zsh, fish, ...), generated from this
    /// tool's own command-line definitions.
    Completions(docs_cmds::CompletionsArgs),
    /// Print a manual page in roff (iovactl(1), or iovactl-COMMAND(1)), or write them
    /// all with --dir; generated from this tool's own command-line definitions.
    Man(docs_cmds::ManArgs),
}

fn run(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Inspect(args) => inspect::run(&args),
        Command::Check(args) => guest_cmds::run_check_cmd(&args),
        Command::Plan(args) => guest_cmds::run_plan_cmd(&args),
        Command::Export(args) => guest_cmds::run_export_cmd(&args),
        Command::Fleet(args) => fleet::run(&args),
        Command::Render(args) => guest_cmds::run_render_cmd(&args),
        Command::Replay(args) => replay::run(&args),
        Command::LibvirtHook(args) => guest_cmds::run_hook_cmd(&args),
        Command::Completions(args) => docs_cmds::run_completions(&args),
        Command::Man(args) => docs_cmds::run_man(&args),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(CliError::BrokenPipe) => ExitCode::from(error::EXIT_BROKEN_PIPE),
        Err(e) => {
            // Not eprintln!: it panics when standard error cannot be written.
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "iovactl: {}",
                text::clean(&e.to_string())
            );
            ExitCode::from(e.exit_code())
        }
    }
}
