//! `iovactl replay`: run a DMA trace against a simulated VFIO container built from a
//! host, and print what the kernel would answer to each operation.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use iova::container::{Container, ContainerConfig, Flavour};
use iova::trace::{apply, format_outcome, parse_trace};

use crate::error::CliError;
use crate::hostsrc::HostArgs;

/// Container semantics to simulate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FlavourArg {
    /// VFIO type1 v1 (`VFIO_TYPE1_IOMMU`): unmaps remove whole mappings by first IOVA.
    Type1v1,
    /// VFIO type1 v2 (`VFIO_TYPE1v2_IOMMU`), what QEMU and the Rust VMMs use.
    Type1v2,
    /// iommufd IOAS (`/dev/iommu`).
    Iommufd,
}

impl From<FlavourArg> for Flavour {
    fn from(f: FlavourArg) -> Flavour {
        match f {
            FlavourArg::Type1v1 => Flavour::Type1V1,
            FlavourArg::Type1v2 => Flavour::Type1V2,
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
    let loaded = args.host.load()?;
    let host = &loaded.host;

    let mut config = ContainerConfig::with_flavour(args.flavour.into());
    config.allow_unsafe_interrupts =
        args.allow_unsafe_interrupts || host.settings.allow_unsafe_interrupts.unwrap_or(false);
    config.allow_unsafe_bypass = args.allow_unsafe_bypass;
    config.allow_unsafe_direct = args.allow_unsafe_direct;
    if let Some(limit) = args.dma_entry_limit.or(host.settings.dma_entry_limit) {
        config.dma_entry_limit = limit;
    }
    let mut container = Container::new(config);

    let mut groups: Vec<u32> = Vec::new();
    for d in &args.devices {
        let g = host
            .group_of_device(d)
            .map_err(|e| CliError::input(format!("--device {d}: {e}")))?;
        if !groups.contains(&g.id) {
            groups.push(g.id);
        }
    }
    for id in groups {
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
        let outcome = apply(&mut container, &line.op);
        if args.verbose {
            out.push_str(&format!("{} -> ", line.op));
        }
        out.push_str(&format_outcome(&outcome));
        out.push('\n');
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

fn read_trace(path: &PathBuf) -> Result<String, CliError> {
    let mut bytes = Vec::new();
    let res = if path.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut bytes).map(|_| ())
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut bytes).map(|_| ()))
    };
    res.map_err(|e| CliError::input(format!("cannot read trace {}: {e}", path.display())))?;
    String::from_utf8(bytes)
        .map_err(|e| CliError::input(format!("trace {} is not UTF-8 text: {e}", path.display())))
}
