//! `iovactl replay`: run a DMA trace against a simulated VFIO container built from a
//! host, and print what the kernel would answer to each operation.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use iova::container::{Container, ContainerConfig, Flavour, KernelVersion};
use iova::dma::{DmaSpace, MapError};
use iova::host::{Host, ReservedKind};
use iova::range::IovaRange;
use iova::spapr::trace::{
    SpaprLine, apply as spapr_apply, format_outcome as spapr_format, parse_spapr_trace,
};
use iova::spapr::{SpaprConfig, SpaprContainer, SpaprSpace, SpaprVersion};
use iova::trace::{
    OpError, Reply, TraceLine, TraceOp, apply_detailed, apply_sim, format_outcome,
    parse_plain_trace_line, parse_trace_line,
};
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
    /// UNSAFE: attach groups with a direct (RMRR) reserved region, which the VT-d
    /// driver refuses.
    #[arg(long)]
    allow_unsafe_direct: bool,
    /// The mapping process's locked-memory limit (RLIMIT_MEMLOCK, `ulimit -l` in
    /// bytes: 64M, 8G, or `unlimited`): pinning a map past it answers ENOMEM, as the
    /// kernel does (type1 charges the process, iommufd the user, the compatibility
    /// container the process; docs/semantics.md §3.5). Default: not modelled.
    #[arg(long, value_name = "BYTES|unlimited")]
    memlock: Option<String>,
    /// With --memlock: bytes already charged to the same counter (the process's other
    /// containers or mlock()ed memory; for iommufd every process of the user).
    #[arg(long = "memlock-used", value_name = "BYTES", requires = "memlock")]
    memlock_used: Option<String>,
    /// With --memlock: the mapping process has CAP_IPC_LOCK (the limit is not checked;
    /// type1 still counts, iommufd does not).
    #[arg(long = "cap-ipc-lock", requires = "memlock")]
    cap_ipc_lock: bool,
    /// Maximum live mappings (vfio_iommu_type1 dma_entry_limit). Defaults to the host's
    /// setting when known, else the kernel default 65535.
    #[arg(long, value_name = "N")]
    dma_entry_limit: Option<u32>,
    /// Answer as this kernel release does: `6.12.118`, a full `uname -r`
    /// (`6.12.118+deb12-powerpc64le`), or `6.12` (the release itself, patch level 0;
    /// stable updates change answers, e.g. sPAPR unmaps from 6.12.112). Defaults to the
    /// host's kernel when known (the live host, or a profile that records it), else the
    /// newest release modelled; a release newer than that is answered as it (both
    /// noted on stderr).
    #[arg(long, value_name = "VERSION")]
    kernel: Option<String>,
    /// The CPU page size (4K, 16K, 64K). Defaults to the host's when known, else 4K.
    #[arg(long, value_name = "BYTES")]
    cpu_page_size: Option<String>,
    /// Run the trace on the REAL kernel through /dev/vfio (type1 v2, or v1 with
    /// `--flavour type1v1`; the sPAPR container with `--flavour spapr-v2|spapr-v1`)
    /// instead of the simulation. The devices must be bound to
    /// vfio-pci. Host addresses are moved into a 64 MiB block of this process's memory
    /// (keeping their page offset). Prints the same line format as the simulation.
    /// Only on the running host: not with --sysfs-root or --host.
    #[arg(long, conflicts_with_all = ["sysfs_root", "host"])]
    vfio: bool,
    /// Exit 1 when any operation is refused (to gate a pipeline); the answers are still
    /// all printed.
    #[arg(long)]
    fail_on_refusal: bool,
    /// Print each operation before its answer (`map 0x1000 0x1000 -> ok`), and after a
    /// refusal, why (`EINVAL: inside the msi window ... of group 1`).
    #[arg(long, short)]
    verbose: bool,
    /// The trace: one operation per line (`map IOVA SIZE [HOST_ADDR] [r|w|rw|-] [bar]`,
    /// `unmap IOVA SIZE`, `unmap-all`, `attach GROUP`, `detach GROUP`, `allow-iovas
    /// [FIRST-LAST,...]`, `map-auto SIZE [HOST_ADDR] [ACCESS]`, `copy SRC_IOVA LENGTH
    /// DST_IOVA|auto [ACCESS]`, `iova-ranges [CAPACITY]`; `#` comments). `bar` marks a
    /// host address that is an mmap of a device BAR; `iova-ranges CAPACITY` answers
    /// `EMSGSIZE need N got ... align A` when the IOAS has more ranges than that. It is
    /// read, applied and answered line by line: any length runs in bounded memory. A
    /// malformed file runs nothing. `-` reads standard input, and each answer is written
    /// as soon as its operation is read (a program may send one operation and wait for
    /// its answer; sPAPR traces too, except with `--vfio`, which reads the whole trace
    /// first to back its memory); there a malformed line stops the replay, after the
    /// answers before it.
    #[arg(value_name = "TRACE")]
    trace: PathBuf,
}

/// The longest trace line accepted (a real one is under 80 bytes).
const MAX_LINE_BYTES: u64 = 4096;

/// Runs `iovactl replay`.
pub fn run(args: &ReplayArgs) -> Result<ExitCode, CliError> {
    if let Some(version) = args.flavour.spapr() {
        if args.trace.as_os_str() == "-" && !args.vfio {
            // Standard input streams: each operation is answered as it is read.
            return run_spapr(args, version, None);
        }
        let text = read_spapr_trace(&args.trace)?;
        return run_spapr(args, version, Some(&text));
    }
    let reader = open_trace(&args.trace)?;
    let loaded = args.host.load()?;
    let host = &loaded.host;
    if args.vfio {
        return run_vfio(args, host, reader);
    }

    let mut config = ContainerConfig::with_flavour(args.flavour.into());
    config.kernel = kernel_version(args, host)?;
    if let Some(p) = &args.cpu_page_size {
        config.domain.cpu_page_size = iova::units::parse_number(p)
            .map_err(|e| CliError::input(format!("--cpu-page-size {p}: {e}")))?;
    } else if let Some(p) = host.settings.cpu_page_size {
        config.domain.cpu_page_size = p;
    }
    config
        .domain
        .validate()
        .map_err(|e| CliError::input(format!("--cpu-page-size: {e}")))?;
    config.domain.allow_unsafe_interrupts =
        args.allow_unsafe_interrupts || host.settings.allows_unsafe_interrupts(config.flavour());
    config.domain.allow_unsafe_direct = args.allow_unsafe_direct;
    if let Some(text) = &args.memlock {
        if args.vfio {
            return Err(CliError::input(
                "--memlock goes with the simulation; with --vfio the real process's own limit \
                 applies (ulimit -l)",
            ));
        }
        let l =
            crate::memlock::from_options(text, args.memlock_used.as_deref(), args.cap_ipc_lock)?;
        config.memlock = Some(iova::container::Memlock {
            limit: l.bytes,
            cap_ipc_lock: l.cap_ipc_lock,
            already_locked: l.already,
        });
    }
    if let Some(limit) = args.dma_entry_limit.or(host.settings.dma_entry_limit) {
        config.dma_entry_limit = limit;
    }
    let mut container = Container::new(config);

    let groups = group_ids(host, &args.devices)?;
    for &id in &groups {
        if let Err(e) = container.attach(host, id) {
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "iovactl: attaching group {id} fails with {}: {e}",
                e.errno().name()
            );
            return Ok(ExitCode::from(1));
        }
    }
    let why = |op: &TraceOp, e: &OpError| refusal_reason(host, &groups, op, e);
    // The container operations (attach, detach, allow-iovas, map-auto, iova-ranges)
    // need the simulated container and the host; map and unmap keep their detailed
    // errors for -v.
    let step = |op: &TraceOp| match op {
        TraceOp::Map { .. } | TraceOp::Unmap { .. } | TraceOp::UnmapAll => {
            apply_detailed(&mut container, op)
        }
        other => apply_sim(&mut container, host, other).map_err(OpError::Other),
    };
    let refused = run_ops(args, reader, step, |op| op, why)?;
    Ok(exit_code(args, refused))
}

fn exit_code(args: &ReplayArgs, refused: u64) -> ExitCode {
    if args.fail_on_refusal && refused > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `replay --flavour spapr-v1|spapr-v2`: the sPAPR container of the device's group,
/// with the windows the host profile (or captured tree) saved for it.
///
/// `text` is the whole trace; `None` streams standard input instead (the simulation
/// only: `--vfio` must see the whole trace first to back its user memory): each line
/// is parsed, applied and answered before the next is read, and a malformed line stops
/// the replay there, after the answers before it.
fn run_spapr(
    args: &ReplayArgs,
    version: SpaprVersion,
    text: Option<&str>,
) -> Result<ExitCode, CliError> {
    let ops = match text {
        Some(text) => {
            let ops = parse_spapr_trace(text)
                .map_err(|e| CliError::input(format!("trace {}: {e}", args.trace.display())))?;
            if ops.is_empty() {
                return Err(CliError::input(format!(
                    "trace {} has no operations",
                    args.trace.display()
                )));
            }
            Some(ops)
        }
        None => None,
    };
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
    let config = spapr_config(args, &loaded.host, version, &info)?;
    let mut container = SpaprContainer::new(config);
    // Warnings (requests refused as kernel defects) are printed whether or not the
    // replay ran to its end.
    let replayed = match ops {
        Some(ops) if args.vfio => return run_spapr_vfio(args, config, group.id, &ops),
        Some(ops) => crate::out::print(&run_spapr_ops(&mut container, &ops, args.verbose)),
        None => stream_spapr_stdin(&mut container, args.verbose),
    };
    for w in container.take_warnings() {
        crate::out::eprintln(&format!("iovactl: warning: {w}"));
    }
    replayed?;
    Ok(ExitCode::SUCCESS)
}

/// Reads a sPAPR trace from standard input a line at a time and answers each operation
/// at once (standard output is line-buffered), so a program may feed one operation and
/// wait for its answer.
fn stream_spapr_stdin(space: &mut dyn SpaprSpace, verbose: bool) -> Result<(), CliError> {
    use std::io::Write as _;
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut buf = Vec::new();
    let (mut line_no, mut ops) = (0usize, 0u64);
    loop {
        line_no += 1;
        let Some(text) = read_bounded_line(&mut input, &mut buf, "-", line_no)? else {
            break;
        };
        let parsed = parse_spapr_trace(text).map_err(|mut e| {
            e.line_no = line_no;
            CliError::input(format!("trace -: {e}"))
        })?;
        for line in parsed {
            ops += 1;
            let outcome = spapr_apply(space, &line.op);
            let written = if verbose {
                writeln!(out, "{} -> {}", line.op, spapr_format(&outcome))
            } else {
                writeln!(out, "{}", spapr_format(&outcome))
            };
            written
                .and_then(|()| out.flush())
                .map_err(|e| crate::out::stdout_error(&e))?;
        }
    }
    if ops == 0 {
        return Err(CliError::input("trace - has no operations"));
    }
    Ok(())
}

/// The kernel release whose answers a replay gives: `--kernel`, else the host's
/// (its profile's or the live `uname -r`). An unreadable or unknown release, and one
/// newer than every release modelled, are answered as the newest modelled, with a note
/// on standard error naming the assumption.
fn kernel_version(args: &ReplayArgs, host: &iova::host::Host) -> Result<KernelVersion, CliError> {
    let newest = KernelVersion::NEWEST;
    let v = match (&args.kernel, &host.settings.kernel) {
        (Some(v), _) => {
            KernelVersion::parse(v).map_err(|e| CliError::input(format!("--kernel {v}: {e}")))?
        }
        (None, Some(v)) => match KernelVersion::parse(v) {
            Ok(k) => k,
            Err(_) => {
                crate::out::eprintln(&format!(
                    "iovactl: note: the host's kernel '{v}' is not a version this tool reads; \
                     answering as the newest modelled, {newest}"
                ));
                return Ok(newest);
            }
        },
        (None, None) => {
            crate::out::eprintln(&format!(
                "iovactl: note: the host's kernel version is unknown; answering as the \
                 newest modelled, {newest} (see --kernel)"
            ));
            return Ok(newest);
        }
    };
    if v.is_newer_than_modelled() {
        crate::out::eprintln(&format!(
            "iovactl: note: kernel {v} is newer than the newest release modelled; answering \
             as {newest}, assuming nothing changed since"
        ));
        return Ok(newest);
    }
    Ok(v)
}

/// The simulated sPAPR platform: the group's windows, the kernel release
/// (`--kernel`, else the host's), and the host's page size
/// (`--cpu-page-size`, else the host's), which sets the registration granularity and
/// the largest TCE anonymous memory backs (4 KiB without either).
fn spapr_config(
    args: &ReplayArgs,
    host: &iova::host::Host,
    version: SpaprVersion,
    info: &iova::spapr::SpaprInfo,
) -> Result<SpaprConfig, CliError> {
    let mut config = SpaprConfig::from_info(version, info).kernel(kernel_version(args, host)?);
    let page = match &args.cpu_page_size {
        Some(p) => Some(
            iova::units::parse_number(p)
                .map_err(|e| CliError::input(format!("--cpu-page-size {p}: {e}")))?,
        ),
        None => host.settings.cpu_page_size,
    };
    if let Some(p) = page {
        if !p.is_power_of_two() || p < 0x1000 {
            return Err(CliError::input(format!(
                "page size {p:#x}: not a power of two of at least 4 KiB"
            )));
        }
        config.host_page_shift = p.trailing_zeros();
    }
    Ok(config)
}

/// The most user memory `replay --vfio` backs for an sPAPR trace (the span of its
/// `register`, `unregister` and `map` addresses).
const MAX_SPAPR_ARENA: u64 = 256 << 20;

/// The alignment kept when user addresses move into the arena: 64 KiB, the largest
/// kernel page on Power, so that every address keeps its offset in a page.
const SPAPR_PLACE_ALIGN: u64 = 0x1_0000;

/// `replay --vfio --flavour spapr-v1|spapr-v2`: the same trace on the real sPAPR
/// container of the group (`iova_linux::spapr`), with the same output as the
/// simulation. The trace's user addresses move, as one block keeping their offsets
/// in a 64 KiB page, into memory this process holds; maps the kernel would crash on
/// are never sent (the backend refuses them as the simulation does).
fn run_spapr_vfio(
    args: &ReplayArgs,
    config: SpaprConfig,
    group: u32,
    ops: &[SpaprLine],
) -> Result<ExitCode, CliError> {
    let version = config.version;
    use iova_linux::memory::HoldMemory as _;
    use iova_linux::spapr::SpaprContainer as RealSpapr;
    // The block of user addresses the trace names (ranges that wrap are left alone:
    // the kernel refuses them before touching memory).
    let ranges: Vec<(u64, u64)> = ops
        .iter()
        .filter_map(|l| l.op.user_range())
        .filter(|(a, n)| a.checked_add(*n).is_some())
        .collect();
    let base = ranges
        .iter()
        .map(|(a, _)| *a)
        .min()
        .map_or(0, |a| a - a % SPAPR_PLACE_ALIGN);
    let end = ranges
        .iter()
        .map(|(a, n)| u128::from(*a) + u128::from(*n))
        .max()
        .unwrap_or(u128::from(base));
    let span = end.saturating_sub(u128::from(base));
    if span > u128::from(MAX_SPAPR_ARENA) {
        return Err(CliError::input(format!(
            "trace {}: its user addresses span {}; --vfio backs at most {}",
            args.trace.display(),
            iova::units::human_bytes(span),
            iova::units::human_bytes(u128::from(MAX_SPAPR_ARENA))
        )));
    }
    let span = u64::try_from(span).unwrap_or(MAX_SPAPR_ARENA);
    let len = span
        .div_ceil(SPAPR_PLACE_ALIGN)
        .saturating_add(1)
        .saturating_mul(SPAPR_PLACE_ALIGN);
    let arena = TraceArena::new(len)
        .map_err(|e| CliError::Os(format!("cannot map the user-memory arena: {e}")))?;
    let arena_base = arena
        .addr()
        .div_ceil(SPAPR_PLACE_ALIGN)
        .saturating_mul(SPAPR_PLACE_ALIGN);
    let place = |op: iova::spapr::trace::SpaprOp| match op.user_range() {
        Some((a, _)) if a >= base && u128::from(a) < u128::from(base) + u128::from(span) => {
            op.with_user_addr(arena_base.saturating_add(a - base))
        }
        _ => op,
    };
    let mut container =
        RealSpapr::open().map_err(|e| CliError::Os(format!("VFIO: {e} (is vfio-pci loaded?)")))?;
    container
        .attach_group(group, version)
        .map_err(|e| CliError::Os(format!("VFIO: attaching group {group}: {e}")))?;
    container.add_memory(arena.memory());
    // A shadow simulation only to warn before a create that leaves the device unable
    // to get any window until the host reboots (the kernel's failed-DDW list).
    let mut shadow = SpaprContainer::new(config);
    let mut out = String::new();
    for line in ops {
        if let iova::spapr::trace::SpaprOp::CreateWindow {
            page_shift,
            size,
            levels,
        } = line.op
            && shadow.create_would_poison(page_shift, size, levels)
        {
            crate::out::eprintln(&format!(
                "iovactl: warning: '{}' is expected to fail in the hypervisor and put the \
                 device on the kernel's failed-DDW list: no window can be created for it \
                 until this host reboots",
                line.op
            ));
        }
        let _ = spapr_apply(&mut shadow, &line.op);
        let outcome = spapr_apply(&mut container, &place(line.op));
        if args.verbose {
            out.push_str(&format!("{} -> ", line.op));
        }
        out.push_str(&spapr_format(&outcome));
        out.push('\n');
    }
    crate::out::print(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// The most an sPAPR trace may hold: it is read whole (window operations refer back to
/// earlier answers), unlike the type1/iommufd traces, which stream.
const MAX_SPAPR_TRACE_BYTES: u64 = 64 << 20;

/// Reads a whole sPAPR trace (`-` is standard input), at most
/// [`MAX_SPAPR_TRACE_BYTES`].
fn read_spapr_trace(path: &Path) -> Result<String, CliError> {
    use std::io::Read as _;
    let name = path.display();
    let input: Box<dyn std::io::Read> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(crate::input::open_file(path, "trace")?)
    };
    let mut bytes = Vec::new();
    input
        .take(MAX_SPAPR_TRACE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| CliError::Os(format!("cannot read trace {name}: {e}")))?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > MAX_SPAPR_TRACE_BYTES {
        return Err(CliError::input(format!(
            "trace {name}: an sPAPR trace may hold at most {} (it is read whole)",
            iova::units::human_bytes(u128::from(MAX_SPAPR_TRACE_BYTES))
        )));
    }
    String::from_utf8(bytes)
        .map_err(|e| CliError::input(format!("trace {name} is not UTF-8 text: {e}")))
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

/// Why a map was refused, in the host's terms when the container's error says the
/// range is not valid: which reserved region of which group it hits, or which unit's
/// aperture it leaves. Other errors say why themselves (`overlaps the existing mapping
/// [...]`).
fn refusal_reason(host: &Host, groups: &[u32], op: &TraceOp, e: &OpError) -> String {
    let generic = e.to_string();
    let (OpError::Map(MapError::NotInValidRange), TraceOp::Map { iova, size, .. }) = (e, op) else {
        return generic;
    };
    let Some(last) = iova.checked_add(size.saturating_sub(1)) else {
        return generic;
    };
    let Ok(range) = IovaRange::new(*iova, last) else {
        return generic;
    };
    let mut reasons = Vec::new();
    for &id in groups {
        let Ok(g) = host.group(id) else { continue };
        if let Some(unit) = host.iommu_of_group(g) {
            if let Some(ap) = unit.aperture {
                if !ap.contains_range(&range) {
                    reasons.push(format!(
                        "beyond the aperture {ap} of IOMMU {} (group {id})",
                        iova_guest::text::clean(&unit.name)
                    ));
                }
            }
        }
        for r in &g.reserved_regions {
            if r.kind.excludes_iova() && r.range.overlaps(&range) {
                let what = match r.kind {
                    ReservedKind::Msi => "the MSI window",
                    ReservedKind::Direct => "the direct (RMRR) region",
                    _ => "the reserved region",
                };
                reasons.push(format!("inside {what} {} of group {id}", r.range));
            }
        }
    }
    if reasons.is_empty() {
        generic
    } else {
        reasons.join("; ")
    }
}

/// A trace being read: its name for messages and its lines.
struct TraceReader {
    name: String,
    input: BufReader<Box<dyn std::io::Read>>,
    /// Standard input: a program may feed one operation and wait for its answer, so
    /// the answers are flushed before any read that could wait (see
    /// [`TraceReader::may_block`]).
    interactive: bool,
    /// The line being read (1-based) and its bytes.
    line_no: usize,
    buf: Vec<u8>,
}

impl TraceReader {
    fn new(name: String, input: Box<dyn std::io::Read>, interactive: bool) -> TraceReader {
        TraceReader {
            name,
            // 64 KiB: on a pipe fed in bulk, a flush before each refill is one write
            // for about two thousand answers.
            input: BufReader::with_capacity(1 << 16, input),
            interactive,
            line_no: 0,
            buf: Vec::new(),
        }
    }

    /// The next operation: `None` at the end. Blank and comment lines are skipped; a
    /// malformed line, a line that is not UTF-8 or longer than [`MAX_LINE_BYTES`] is an
    /// input error naming the trace and the line.
    fn next_op(&mut self) -> Result<Option<TraceLine>, CliError> {
        loop {
            self.buf.clear();
            self.line_no += 1;
            let line_no = self.line_no;
            // The fast path: a whole plain line already in the reader's buffer is
            // parsed there, without a copy (`parse_plain_trace_line` answers only
            // where `parse_trace_line` would give the same operation). A read error
            // here is left to the full path below, which reports it.
            let fast = match self.input.fill_buf() {
                Ok(avail) => match avail.iter().position(|&b| b == b'\n') {
                    Some(end) if u64::try_from(end).unwrap_or(u64::MAX) < MAX_LINE_BYTES => avail
                        .get(..end)
                        .and_then(|line| parse_plain_trace_line(line_no, line))
                        .map(|line| (line, end + 1)),
                    _ => None,
                },
                Err(_) => None,
            };
            if let Some((line, used)) = fast {
                self.input.consume(used);
                return Ok(Some(line));
            }
            let Some(text) =
                read_bounded_line(&mut self.input, &mut self.buf, &self.name, line_no)?
            else {
                return Ok(None);
            };
            if let Some(line) = parse_trace_line(line_no, text)
                .map_err(|e| CliError::input(format!("trace {}: {e}", self.name)))?
            {
                return Ok(Some(line));
            }
        }
    }

    /// Whether reading the next operation may have to wait for more input: the input
    /// is standard input (a file never waits), the reader holds no whole line, and
    /// nothing is waiting in the pipe. A writer that sent much at once keeps the
    /// answers buffered (bulk speed); one that waits for an answer gets it.
    fn may_block(&self) -> bool {
        use std::os::fd::AsFd as _;
        self.interactive
            && !self.input.buffer().contains(&b'\n')
            && !iova_linux::hostfacts::readable_now(std::io::stdin().as_fd())
    }

    fn no_operations(&self) -> CliError {
        CliError::input(format!(
            "trace {} has no operations (expected lines such as 'map IOVA SIZE')",
            self.name
        ))
    }
}

/// Reads line `line_no` of trace `name` into `buf` and returns it without its newline:
/// `None` at the end of the input; a line longer than [`MAX_LINE_BYTES`] or not UTF-8
/// is an input error naming the trace and the line.
fn read_bounded_line<'b>(
    input: &mut impl BufRead,
    buf: &'b mut Vec<u8>,
    name: &str,
    line_no: usize,
) -> Result<Option<&'b str>, CliError> {
    use std::io::Read as _;
    buf.clear();
    let n = input
        .take(MAX_LINE_BYTES + 1)
        .read_until(b'\n', buf)
        .map_err(|e| CliError::Os(format!("cannot read trace {name}: {e}")))?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    } else if u64::try_from(n).unwrap_or(u64::MAX) > MAX_LINE_BYTES {
        return Err(CliError::input(format!(
            "trace {name}: line {line_no} is longer than {MAX_LINE_BYTES} bytes"
        )));
    }
    std::str::from_utf8(buf).map(Some).map_err(|e| {
        CliError::input(format!(
            "trace {name}: line {line_no} is not UTF-8 text: {e}"
        ))
    })
}

/// Opens the trace (`-` is standard input). A file is read through once first, in
/// bounded memory, so that a malformed trace runs nothing (which matters most with
/// `--vfio`, on the real kernel); then it is opened again to be applied. Standard input
/// cannot be read twice: there a malformed line stops the replay at that line, after
/// the answers to the operations before it.
fn open_trace(path: &Path) -> Result<TraceReader, CliError> {
    let name = path.display().to_string();
    if path.as_os_str() == "-" {
        return Ok(TraceReader::new(name, Box::new(std::io::stdin()), true));
    }
    let open = || -> Result<TraceReader, CliError> {
        Ok(TraceReader::new(
            name.clone(),
            Box::new(crate::input::open_file(path, "trace")?),
            false,
        ))
    };
    let mut check = open()?;
    let mut ops = 0u64;
    while check.next_op()?.is_some() {
        ops += 1;
    }
    if ops == 0 {
        return Err(check.no_operations());
    }
    open()
}

/// Reads, applies (after `place`) and answers the trace line by line; returns how many
/// operations were refused. Memory stays bounded whatever the trace's length: one line
/// at a time, answers written as they come.
fn run_ops(
    args: &ReplayArgs,
    mut reader: TraceReader,
    mut step: impl FnMut(&TraceOp) -> Result<Reply, OpError>,
    place: impl Fn(TraceOp) -> TraceOp,
    why: impl Fn(&TraceOp, &OpError) -> String,
) -> Result<u64, CliError> {
    use std::io::Write as _;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut ops = 0u64;
    let mut refused = 0u64;
    loop {
        if reader.may_block() {
            // Everything answered so far goes out before a read that may wait: a
            // program that feeds one operation at a time gets each answer at once.
            out.flush().map_err(|e| crate::out::stdout_error(&e))?;
        }
        let line = match reader.next_op() {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(e) => {
                // The answers so far are true: let them out before the error.
                let _ = out.flush();
                return Err(e);
            }
        };
        ops += 1;
        if !args.verbose {
            // No copy of the operation and no text built per line: the answer goes
            // straight into the buffered output.
            let outcome = step(&place(line.op));
            write_answer(&mut out, &outcome).map_err(|e| crate::out::stdout_error(&e))?;
            if outcome.as_ref().map_or(true, |r| r.errno().is_some()) {
                refused += 1;
            }
            continue;
        }
        let op = place(line.op.clone());
        let outcome = step(&op);
        let written = match &outcome {
            Ok(o) => writeln!(out, "{} -> {}", line.op, format_outcome(&Ok(o.clone()))),
            Err(e) => writeln!(
                out,
                "{} -> {}: {}",
                line.op,
                e.errno().name(),
                why(&line.op, e)
            ),
        };
        written.map_err(|e| crate::out::stdout_error(&e))?;
        // An EMSGSIZE answer carries data but is a failed ioctl all the same.
        if outcome.as_ref().map_or(true, |r| r.errno().is_some()) {
            refused += 1;
        }
    }
    out.flush().map_err(|e| crate::out::stdout_error(&e))?;
    if ops == 0 {
        return Err(reader.no_operations());
    }
    Ok(refused)
}

/// Writes one answer line as [`format_outcome`] spells it (`ok`, `ok 0x<n>`, the
/// errno name, ...), the two common answers (`ok`, `ok 0x<n>`) without building a
/// `String`.
fn write_answer(
    out: &mut impl std::io::Write,
    outcome: &Result<Reply, OpError>,
) -> std::io::Result<()> {
    match outcome {
        Ok(Reply::Done) => out.write_all(b"ok\n"),
        Ok(Reply::Bytes(n)) => write_ok_hex(out, *n),
        Ok(Reply::Iova(n)) => write_ok_hex(out, u128::from(*n)),
        Ok(other) => writeln!(out, "{}", format_outcome(&Ok(other.clone()))),
        Err(e) => writeln!(out, "{}", e.errno().name()),
    }
}

/// `ok 0x<n>` and a line ending: `n` in lower-case hex without leading zeros, as
/// `{n:#x}` writes it.
fn write_ok_hex(out: &mut impl std::io::Write, n: u128) -> std::io::Result<()> {
    // "ok 0x", at most 32 hex digits, "\n".
    let mut buf = [0u8; 38];
    let mut at = buf.len() - 1;
    buf[at] = b'\n';
    let mut v = n;
    loop {
        at -= 1;
        buf[at] = b"0123456789abcdef"[(v & 0xf) as usize];
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    at -= 5;
    buf[at..at + 5].copy_from_slice(b"ok 0x");
    out.write_all(&buf[at..])
}

/// `replay --vfio`: the same trace on the real kernel.
fn run_vfio(args: &ReplayArgs, host: &Host, reader: TraceReader) -> Result<ExitCode, CliError> {
    use iova_linux::type1::{Container as Type1, IommuType};
    let iommu = match args.flavour {
        FlavourArg::Type1v2 => IommuType::Type1v2,
        FlavourArg::Type1v1 => IommuType::Type1,
        // On a kernel with CONFIG_IOMMUFD_VFIO_CONTAINER /dev/vfio/vfio is the compat
        // container: the same ioctls.
        FlavourArg::CompatType1v2 => IommuType::Type1v2,
        FlavourArg::CompatType1v1 => IommuType::Type1,
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
    let refused = run_ops(
        args,
        reader,
        |op| apply_detailed(&mut container, op),
        |op| arena.place(op),
        |_, e| e.to_string(),
    );
    // Leave nothing mapped behind us, whatever happened.
    let _ = container.unmap_all();
    Ok(exit_code(args, refused?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use iova::dma::{Errno, UnmapError};

    #[test]
    fn answers_are_written_as_format_outcome_spells_them() {
        let mut outcomes: Vec<Result<Reply, OpError>> = vec![
            Ok(Reply::Done),
            Err(OpError::Other(Errno::EINVAL)),
            Err(OpError::Unmap(UnmapError::ZeroSize)),
        ];
        for n in [
            0u128,
            1,
            0xf,
            0x10,
            0x1000,
            u128::from(u64::MAX),
            1 << 64,
            u128::MAX,
        ] {
            outcomes.push(Ok(Reply::Bytes(n)));
            outcomes.push(Ok(Reply::Iova(u64::try_from(n).unwrap_or(u64::MAX))));
        }
        for o in outcomes {
            let mut got = Vec::new();
            write_answer(&mut got, &o).expect("in memory");
            let want = format_outcome(&o.clone().map_err(|e| e.errno())) + "\n";
            assert_eq!(String::from_utf8(got).expect("utf-8"), want);
        }
    }
}
