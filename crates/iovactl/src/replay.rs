//! `iovactl replay`: run a DMA trace against a simulated VFIO container built from a
//! host, and print what the kernel would answer to each operation.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use iova::container::{Container, ContainerConfig, Flavour};
use iova::dma::DmaSpace;
use iova::host::Host;
use iova::spapr::trace::{
    SpaprLine, apply as spapr_apply, format_outcome as spapr_format, parse_spapr_trace,
};
use iova::spapr::{SpaprConfig, SpaprContainer, SpaprSpace, SpaprVersion};
use iova::trace::{TraceLine, TraceOp, apply, format_outcome, parse_trace};
use iova_linux::arena::TraceArena;

use crate::error::CliError;
use crate::hostsrc::{HostArgs, groups_of_devices};

/// Container semantics to simulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FlavourArg {
    /// VFIO type1 v1 (`VFIO_TYPE1_IOMMU`): unmaps remove whole mappings by first IOVA.
    Type1v1,
    /// VFIO type1 v2 (`VFIO_TYPE1v2_IOMMU`), what QEMU and the Rust VMMs use.
    Type1v2,
    /// iommufd IOAS (`/dev/iommu`).
    Iommufd,
    /// sPAPR TCE v1 (`VFIO_SPAPR_TCE_IOMMU`, IBM Power): ENABLE, the default window.
    SpaprV1,
    /// sPAPR TCE v2 (`VFIO_SPAPR_TCE_v2_IOMMU`, IBM Power): pre-registered memory and
    /// dynamic DMA windows. Traces may also use register, unregister, enable,
    /// disable, create-window and remove-window.
    SpaprV2,
}

impl FlavourArg {
    fn spapr(self) -> Option<SpaprVersion> {
        match self {
            FlavourArg::SpaprV1 => Some(SpaprVersion::V1),
            FlavourArg::SpaprV2 => Some(SpaprVersion::V2),
            _ => None,
        }
    }
}

impl From<FlavourArg> for Flavour {
    fn from(f: FlavourArg) -> Flavour {
        match f {
            FlavourArg::Type1v1 => Flavour::Type1V1,
            FlavourArg::Type1v2 | FlavourArg::SpaprV1 | FlavourArg::SpaprV2 => Flavour::Type1V2,
            FlavourArg::Iommufd => Flavour::Iommufd,
        }
    }
}

/// Options of `iovactl replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    host: HostArgs,
    /// Attach the IOMMU groups of these devices (PCI address); repeat for several.
    #[arg(long = "device", value_name = "BDF", required = true)]
    devices: Vec<String>,
    /// Which kernel interface to simulate.
    #[arg(long, value_enum, default_value = "type1v2")]
    flavour: FlavourArg,
    /// UNSAFE: attach groups whose IOMMU does not remap interrupts (as the
    /// vfio_iommu_type1 allow_unsafe_interrupts=1 module parameter). Defaults to the
    /// host's setting when known.
    #[arg(long)]
    allow_unsafe_interrupts: bool,
    /// UNSAFE: attach groups whose DMA bypasses the IOMMU (identity domain).
    #[arg(long)]
    allow_unsafe_bypass: bool,
    /// UNSAFE: attach groups with a direct (RMRR) reserved region, which the VT-d
    /// driver refuses.
    #[arg(long)]
    allow_unsafe_direct: bool,
    /// Maximum live mappings (vfio_iommu_type1 dma_entry_limit). Defaults to the host's
    /// setting when known, else the kernel default 65535.
    #[arg(long, value_name = "N")]
    dma_entry_limit: Option<u32>,
    /// Run the trace on the REAL kernel through /dev/vfio (type1 v2, or v1 with
    /// `--flavour type1v1`) instead of the simulation. The devices must be bound to
    /// vfio-pci. Host addresses are moved into a 64 MiB block of this process's memory
    /// (keeping their page offset). Prints the same line format as the simulation.
    #[arg(long)]
    vfio: bool,
    /// Print each operation before its answer (`map 0x1000 0x1000 -> ok`).
    #[arg(long, short)]
    verbose: bool,
    /// The trace: one operation per line (`map IOVA SIZE [HOST_ADDR] [r|w|rw]`,
    /// `unmap IOVA SIZE`, `unmap-all`; `#` comments). `-` reads standard input.
    #[arg(value_name = "TRACE")]
    trace: PathBuf,
}

/// Runs `iovactl replay`.
pub fn run(args: &ReplayArgs) -> Result<ExitCode, CliError> {
    let text = read_trace(&args.trace)?;
    if let Some(version) = args.flavour.spapr() {
        return run_spapr(args, version, &text);
    }
    let ops = parse_trace(&text)
        .map_err(|e| CliError::input(format!("trace {}: {e}", args.trace.display())))?;
    if ops.is_empty() {
        return Err(CliError::input(format!(
            "trace {} has no operations (expected lines such as 'map IOVA SIZE')",
            args.trace.display()
        )));
    }
    let loaded = args.host.load()?;
    let host = &loaded.host;
    if args.vfio {
        return run_vfio(args, host, &ops);
    }

    let mut config = ContainerConfig::with_flavour(args.flavour.into());
    config.domain.allow_unsafe_interrupts =
        args.allow_unsafe_interrupts || host.settings.allow_unsafe_interrupts.unwrap_or(false);
    config.domain.allow_unsafe_bypass = args.allow_unsafe_bypass;
    config.domain.allow_unsafe_direct = args.allow_unsafe_direct;
    if let Some(limit) = args.dma_entry_limit.or(host.settings.dma_entry_limit) {
        config.dma_entry_limit = limit;
    }
    let mut container = Container::new(config);

    for id in group_ids(host, &args.devices)? {
        if let Err(e) = container.attach(host, id) {
            eprintln!(
                "iovactl: attaching group {id} fails with {}: {e}",
                e.errno().name()
            );
            return Ok(ExitCode::from(1));
        }
    }

    print!("{}", run_ops(&mut container, &ops, |op| op, args.verbose));
    Ok(ExitCode::SUCCESS)
}

/// `replay --flavour spapr-v1|spapr-v2`: the sPAPR container of the device's group,
/// with the windows the host profile (or captured tree) saved for it.
fn run_spapr(args: &ReplayArgs, version: SpaprVersion, text: &str) -> Result<ExitCode, CliError> {
    let ops = parse_spapr_trace(text)
        .map_err(|e| CliError::input(format!("trace {}: {e}", args.trace.display())))?;
    if ops.is_empty() {
        return Err(CliError::input(format!(
            "trace {} has no operations",
            args.trace.display()
        )));
    }
    let loaded = args.host.load()?;
    let groups = groups_of_devices(&loaded.host, &args.devices)?;
    let [group] = groups.as_slice() else {
        return Err(CliError::input(
            "a sPAPR replay takes the devices of one IOMMU group (one partitionable endpoint)",
        ));
    };
    // A live sPAPR host tells its windows only through VFIO.
    let live = if group.spapr.is_none() && args.host.is_live() {
        crate::hostsrc::ask_spapr(group.id)
    } else {
        None
    };
    let Some(info) = group.spapr.or(live) else {
        return Err(CliError::input(format!(
            "group {} of {} has no sPAPR TCE windows (not a pseries host, or a profile saved \
             without VFIO_IOMMU_SPAPR_TCE_GET_INFO)",
            group.id, loaded.source
        )));
    };
    if args.vfio {
        return Err(CliError::input(
            "--vfio with a sPAPR flavour is not supported by replay; the in-guest vmtest \
             drives the real sPAPR backend (iova_linux::spapr)",
        ));
    }
    let mut container = SpaprContainer::new(SpaprConfig::from_info(version, &info));
    print!("{}", run_spapr_ops(&mut container, &ops, args.verbose));
    for w in container.take_warnings() {
        eprintln!("iovactl: warning: {w}");
    }
    Ok(ExitCode::SUCCESS)
}

fn run_spapr_ops(space: &mut dyn SpaprSpace, ops: &[SpaprLine], verbose: bool) -> String {
    let mut out = String::new();
    for line in ops {
        let outcome = spapr_apply(space, &line.op);
        if verbose {
            out.push_str(&format!("{} -> ", line.op));
        }
        out.push_str(&spapr_format(&outcome));
        out.push('\n');
    }
    out
}

/// The group ids of the named devices, in order, without repeats.
fn group_ids(host: &Host, devices: &[String]) -> Result<Vec<u32>, CliError> {
    Ok(groups_of_devices(host, devices)?
        .iter()
        .map(|g| g.id)
        .collect())
}

/// Applies every operation (after `place`) and returns the answer lines.
fn run_ops(
    space: &mut dyn DmaSpace,
    ops: &[TraceLine],
    place: impl Fn(TraceOp) -> TraceOp,
    verbose: bool,
) -> String {
    let mut out = String::new();
    for line in ops {
        let op = place(line.op);
        let outcome = apply(space, &op);
        if verbose {
            out.push_str(&format!("{} -> ", line.op));
        }
        out.push_str(&format_outcome(&outcome));
        out.push('\n');
    }
    out
}

/// `replay --vfio`: the same trace on the real kernel.
fn run_vfio(args: &ReplayArgs, host: &Host, ops: &[TraceLine]) -> Result<ExitCode, CliError> {
    use iova_linux::type1::{Container as Type1, IommuType};
    let iommu = match args.flavour {
        FlavourArg::Type1v2 => IommuType::Type1v2,
        FlavourArg::Type1v1 => IommuType::Type1,
        FlavourArg::Iommufd | FlavourArg::SpaprV1 | FlavourArg::SpaprV2 => {
            return Err(CliError::input(
                "--vfio with --flavour iommufd is not supported yet: the real replay uses \
                 the VFIO type1 container (/dev/vfio/vfio)",
            ));
        }
    };
    let groups = group_ids(host, &args.devices)?;
    let mut container =
        Type1::open().map_err(|e| CliError::Os(format!("VFIO: {e} (is vfio-pci loaded?)")))?;
    for id in groups {
        container
            .attach_group(id, iommu)
            .map_err(|e| CliError::Os(format!("VFIO: attaching group {id}: {e}")))?;
    }
    let arena = TraceArena::new(TraceArena::DEFAULT_LEN)
        .map_err(|e| CliError::Os(format!("cannot map the host-address arena: {e}")))?;
    // The container holds the arena's memory: its safe map accepts the placed host
    // ranges and keeps the memory mapped until its own mappings are gone.
    iova_linux::memory::HoldMemory::add_memory(&mut container, arena.memory());
    let out = run_ops(&mut container, ops, |op| arena.place(op), args.verbose);
    // Leave nothing mapped behind us.
    let _ = container.unmap_all();
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

fn read_trace(path: &std::path::Path) -> Result<String, CliError> {
    let bytes = if path.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|e| CliError::input(format!("cannot read trace from standard input: {e}")))?;
        bytes
    } else {
        crate::input::read_file(path, "trace")?
    };
    String::from_utf8(bytes)
        .map_err(|e| CliError::input(format!("trace {} is not UTF-8 text: {e}", path.display())))
}
