//! `iovactl replay`: run a DMA trace against a simulated VFIO container built from a
//! host, and print what the kernel would answer to each operation.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use iova::container::{Container, ContainerConfig, Flavour, KernelVersion};
use iova::dma::DmaSpace;
use iova::host::Host;
use iova::trace::{TraceLine, TraceOp, apply, apply_sim, format_outcome, parse_trace};
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
    /// iommufd's VFIO compatibility container (`CONFIG_IOMMUFD_VFIO_CONTAINER`) set to
    /// `VFIO_TYPE1_IOMMU`: unmaps cut mappings.
    CompatType1v1,
    /// iommufd's VFIO compatibility container set to `VFIO_TYPE1v2_IOMMU`: an unmap
    /// that would split a mapping answers ENOENT.
    CompatType1v2,
}

impl From<FlavourArg> for Flavour {
    fn from(f: FlavourArg) -> Flavour {
        match f {
            FlavourArg::Type1v1 => Flavour::Type1V1,
            FlavourArg::Type1v2 => Flavour::Type1V2,
            FlavourArg::Iommufd => Flavour::Iommufd,
            FlavourArg::CompatType1v1 => Flavour::CompatType1V1,
            FlavourArg::CompatType1v2 => Flavour::CompatType1V2,
        }
    }
}

/// Options of `iovactl replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    host: HostArgs,
    /// Attach the IOMMU groups of these devices (PCI address); repeat for several.
    /// With none, the trace starts on an empty container (an iommufd IOAS with no
    /// domain; type1 answers EINVAL until the trace attaches a group).
    #[arg(long = "device", value_name = "BDF")]
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
    /// Answer as this kernel version does (`6.1`, `6.12`, `6.18`, `7.2`, or a full
    /// `uname -r`). Defaults to the host's kernel when known (the live host, or a
    /// profile that records it), else the newest version modelled (noted on stderr).
    #[arg(long, value_name = "VERSION")]
    kernel: Option<String>,
    /// The CPU page size (4K, 16K, 64K). Defaults to the host's when known, else 4K.
    #[arg(long, value_name = "BYTES")]
    cpu_page_size: Option<String>,
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
    config.kernel = match (&args.kernel, &host.settings.kernel) {
        (Some(v), _) => {
            KernelVersion::parse(v).map_err(|e| CliError::input(format!("--kernel {v}: {e}")))?
        }
        (None, Some(v)) => KernelVersion::parse(v).unwrap_or_else(|_| {
            eprintln!(
                "iovactl: note: the host's kernel '{v}' is not a version this tool reads; \
                 answering as the newest modelled, {}",
                KernelVersion::NEWEST
            );
            KernelVersion::NEWEST
        }),
        (None, None) => {
            eprintln!(
                "iovactl: note: the host's kernel version is unknown; answering as the \
                 newest modelled, {} (see --kernel)",
                KernelVersion::NEWEST
            );
            KernelVersion::NEWEST
        }
    };
    if let Some(p) = &args.cpu_page_size {
        config.domain.cpu_page_size = iova::units::parse_size(p)
            .map_err(|e| CliError::input(format!("--cpu-page-size {p}: {e}")))?;
    } else if let Some(p) = host.settings.cpu_page_size {
        config.domain.cpu_page_size = p;
    }
    config
        .domain
        .validate()
        .map_err(|e| CliError::input(format!("--cpu-page-size: {e}")))?;
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

    let mut out = String::new();
    for line in &ops {
        let outcome = apply_sim(&mut container, host, &line.op);
        if args.verbose {
            out.push_str(&format!("{} -> ", line.op));
        }
        out.push_str(&format_outcome(&outcome));
        out.push('\n');
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
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
        let op = place(line.op.clone());
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
        // On a kernel with CONFIG_IOMMUFD_VFIO_CONTAINER /dev/vfio/vfio is the compat
        // container: the same ioctls.
        FlavourArg::CompatType1v2 => IommuType::Type1v2,
        FlavourArg::CompatType1v1 => IommuType::Type1,
        FlavourArg::Iommufd => {
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
