//! `iovactl check | plan | export virtio-iommu | render`: a guest layout against the
//! container the assigned devices' groups form.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use iova::units::parse_number;
use iova_guest::virtio_iommu::{self, ResvSubtype};
use iova_guest::{
    CheckReport, Container, CpuVendor, GuestConfig, Layout, Plan, PlanInput, Preset, check,
    layout_file, plan, svg,
};
use serde_json::{Value, json};

use crate::error::CliError;
use crate::hostsrc::{HostArgs, LoadedHost};
use crate::report::{hex, human_bytes, page_sizes, range_json, set_json};
use crate::vmm::{Vmm, VmmProblem, vmm_problems};

/// The guest and the devices: shared by check, plan and render.
#[derive(Debug, Args)]
pub struct GuestArgs {
    #[command(flatten)]
    pub(crate) host: HostArgs,
    /// A device to assign (PCI address such as 0000:03:00.0 or 03:00.0). Repeat for
    /// several: their groups share one container. A VMM command line's
    /// `-device vfio-pci,host=` devices are added.
    #[arg(long = "device", value_name = "BDF")]
    pub(crate) devices: Vec<String>,
    /// The VMM whose layout to use: qemu-q35, qemu-pc, qemu-virt, cloud-hypervisor,
    /// firecracker, crosvm; qemu-pseries (IBM Power: its DMA windows are checked
    /// against the host's sPAPR windows).
    #[arg(long, value_name = "PRESET", conflicts_with = "layout")]
    pub(crate) guest: Option<String>,
    /// Guest RAM with --guest: 512M, 8G, 1T (binary units; no fractions).
    #[arg(long, value_name = "SIZE")]
    pub(crate) memory: Option<String>,
    /// A custom layout (TOML; see docs/guest-layouts.md) instead of --guest.
    #[arg(long, value_name = "FILE")]
    pub(crate) layout: Option<PathBuf>,
    /// The guest CPU vendor (intel or amd); default: the host's.
    #[arg(long = "cpu-vendor", value_name = "V")]
    pub(crate) cpu_vendor: Option<String>,
    /// The VMM command line in a file: one argument per line, NUL-separated (as
    /// /proc/PID/cmdline), or shell words with `\` continuations.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["guest", "layout"])]
    pub(crate) cmdline: Option<PathBuf>,
    /// The command line of a running VM (read from /proc/PID/cmdline).
    #[arg(long, value_name = "PID", conflicts_with_all = ["guest", "layout"])]
    pub(crate) pid: Option<u32>,
    /// A libvirt domain XML (`-` for standard input), e.g. from `virsh dumpxml`.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["guest", "layout", "cmdline", "pid"])]
    pub(crate) libvirt: Option<PathBuf>,
    /// The QEMU release to model (7.2, 10.0.2). Default: for a command line after --,
    /// what argv[0] --version says; for --pid, what the running binary
    /// (/proc/PID/exe) says; for --libvirt and --cmdline, whose programs are never run,
    /// and when the above fail: the release of a versioned machine type (pc-q35-7.2,
    /// virt-8.2), else the newest modelled release. The report names the source.
    #[arg(long = "qemu-version", value_name = "VERSION")]
    pub(crate) qemu_version: Option<String>,
    /// The locked-memory limit of the process that will run QEMU (RLIMIT_MEMLOCK in
    /// bytes: 64M, 16G, or `unlimited`). Default: for --pid the process's own
    /// (/proc/PID/limits), for --libvirt libvirt's rule, for a command line this
    /// shell's (`ulimit -l`, noted); presets and layout files are checked only with it.
    #[arg(long, value_name = "BYTES|unlimited")]
    pub(crate) memlock: Option<String>,
    /// With --memlock: the process has CAP_IPC_LOCK (the kernel does not check).
    #[arg(long = "cap-ipc-lock", requires = "memlock")]
    pub(crate) cap_ipc_lock: bool,
    /// With --memlock: bytes already charged to the same counter (the process's other
    /// VFIO containers; with iommufd, every process of the same user).
    #[arg(long = "memlock-used", value_name = "BYTES", requires = "memlock")]
    pub(crate) memlock_used: Option<String>,
    /// The host's page size (4K or 64K) for a pseries guest, when the host facts do not
    /// say it: QEMU sizes the TCE tables it asks for by it.
    #[arg(long = "host-page-size", value_name = "SIZE")]
    pub(crate) host_page_size: Option<String>,
    /// The VMM's own command line, after `--`: argv[0] names the VMM
    /// (qemu-system-x86_64, qemu-system-aarch64, qemu-system-ppc64 -M pseries).
    #[arg(last = true, value_name = "VMM-ARGV")]
    pub(crate) vmm: Vec<String>,
}

/// Options of `iovactl check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    guest: GuestArgs,
    /// Print JSON instead of a report.
    #[arg(long)]
    json: bool,
}

/// Options of `iovactl plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    guest: GuestArgs,
    /// Print JSON instead of a report.
    #[arg(long)]
    json: bool,
}

/// Options of `iovactl render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    guest: GuestArgs,
    /// Where to write the SVG picture (`-` for standard output). Written to a temporary
    /// file beside it, then renamed into place; never one of the command's inputs.
    #[arg(long, value_name = "FILE")]
    svg: PathBuf,
}

/// `iovactl export FORMAT`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(subcommand)]
    format: ExportFormat,
}

#[derive(Debug, Subcommand)]
enum ExportFormat {
    /// The virtio-iommu config (input range, page-size mask) and the reserved regions of
    /// its PROBE replies that keep a guest inside the host's valid IOVAs, as JSON.
    VirtioIommu(ExportVirtioArgs),
    /// The host's IOMMU facts as Prometheus metrics (text exposition format) for
    /// node_exporter's textfile collector; unknown facts are left out.
    Prometheus(crate::fleet_export::PrometheusArgs),
    /// The host's IOMMU facts as JSON for Ansible local facts
    /// (/etc/ansible/facts.d/iova.fact, read as ansible_local.iova).
    Ansible(crate::fleet_export::AnsibleArgs),
    /// The host's IOMMU facts as node labels in a Kubernetes Node Feature Discovery
    /// feature file (features.d).
    Nfd(crate::fleet_export::NfdArgs),
}

#[derive(Debug, Args)]
struct ExportVirtioArgs {
    #[command(flatten)]
    host: HostArgs,
    /// A device behind the virtio-iommu (repeat for several sharing one container).
    #[arg(long = "device", value_name = "BDF", required = true)]
    devices: Vec<String>,
    /// Accepted for symmetry with check; the export does not depend on the guest.
    #[arg(long, value_name = "PRESET", hide = true)]
    guest: Option<String>,
    /// Accepted for symmetry with check.
    #[arg(long, value_name = "SIZE", hide = true)]
    memory: Option<String>,
}

/// Everything a guest command needs.
pub(crate) struct Loaded {
    pub(crate) vmm: Option<Vmm>,
    /// Where the QEMU release came from (`qemu_version_from` in JSON): `--qemu-version`,
    /// `binary` (argv\[0\] --version), `running-binary`, `machine-type` or `assumed`.
    pub(crate) version_from: &'static str,
    pub(crate) devices: Vec<String>,
    pub(crate) loaded: LoadedHost,
    pub(crate) layout: Layout,
    pub(crate) input: PlanInput,
    pub(crate) guest_desc: String,
    /// The locked-memory verdict, when a limit is known.
    pub(crate) memlock: Option<crate::memlock::Verdict>,
    /// The bindings and device nodes the VMM needs.
    pub(crate) access: crate::access::Verdict,
}

fn container(host: &iova::Host, devices: &[String]) -> Result<Container, CliError> {
    Container::of_devices(host, devices).map_err(|e| CliError::input(format!("--device {e}")))
}

fn load(args: &GuestArgs) -> Result<Loaded, CliError> {
    let def = vm_def(args)?;
    // A check needs only the groups of its devices: read those when every device is
    // named by its PCI address (a VENDOR:DEVICE selector needs every device's IDs).
    let mut named: Vec<String> = args.devices.clone();
    if let VmDef::Argv { vm, .. } = &def {
        named.extend(vm.vfio.iter().cloned());
    }
    let bdf = |d: &String| d.contains('.') && d.matches(':').count() >= 1;
    let loaded = if !named.is_empty() && named.iter().all(bdf) {
        args.host.load_for(&named)?
    } else {
        args.host.load()?
    };
    load_on(args, &def, loaded)
}

/// A VM definition as read, before any host is looked at: read once, evaluated on one
/// host (`check`) or many (`fleet`).
pub(crate) enum VmDef {
    /// A QEMU command line (after `--`, `--cmdline`, `--pid`, `--libvirt`), parsed, and
    /// the release to model.
    Argv {
        vm: Box<iova_guest::qemu_cmdline::QemuVm>,
        source: String,
        version: (iova_guest::qemu_cmdline::QemuVersion, String),
        version_from: &'static str,
        /// The locked-memory limit learnt with the definition: `--memlock`, the
        /// process's (`--pid`), this shell's (a command line), libvirt's rule.
        memlock: Option<MemlockInput>,
        /// Who starts it.
        launcher: crate::access::Launcher,
    },
    /// `--guest PRESET --memory SIZE`.
    Preset {
        preset: Preset,
        name: String,
        mem_text: String,
        memory: u64,
        /// `--memlock`, when given.
        memlock: Option<crate::memlock::Limit>,
        /// Who starts it: a VMM from this shell.
        launcher: crate::access::Launcher,
    },
    /// `--layout FILE`, parsed.
    LayoutFile {
        layout: Layout,
        desc: String,
        /// `--memlock`, when given.
        memlock: Option<crate::memlock::Limit>,
        /// Who starts it: a VMM from this shell.
        launcher: crate::access::Launcher,
    },
}

/// Where the locked-memory limit comes from.
#[derive(Debug, Clone)]
pub(crate) enum MemlockInput {
    /// Known: `--memlock`, a process's.
    Limit(crate::memlock::Limit),
    /// libvirt's rule for the domain, which depends on the devices and the memory.
    Libvirt(iova_guest::libvirt::LibvirtMemlock),
}

/// `--memlock` (with `--cap-ipc-lock`), when given.
fn memlock_arg(args: &GuestArgs) -> Result<Option<crate::memlock::Limit>, CliError> {
    args.memlock
        .as_deref()
        .map(|t| crate::memlock::from_options(t, args.memlock_used.as_deref(), args.cap_ipc_lock))
        .transpose()
}

/// Reads the VM definition the options give; looks at no host. For a command line
/// after `--` without `--qemu-version`, argv\[0\] is asked its release here, once.
pub(crate) fn vm_def(args: &GuestArgs) -> Result<VmDef, CliError> {
    if args.host_page_size.is_some() {
        return Err(CliError::input(
            "--host-page-size goes with a pseries guest (qemu-system-ppc64 -M pseries, or \
             --guest qemu-pseries)",
        ));
    }
    let given = memlock_arg(args)?;
    let mut libvirt_policy = None;
    let from_libvirt = match &args.libvirt {
        Some(p) => {
            if !args.vmm.is_empty() {
                return Err(CliError::input(
                    "--libvirt gives the VM: drop the command line after --",
                ));
            }
            let (argv, name, policy) = crate::vmm::libvirt_argv(p)?;
            libvirt_policy = Some(policy);
            Some((argv, name))
        }
        None => None,
    };
    let found = match from_libvirt {
        Some(x) => Some(x),
        None => crate::vmm::argv_from(&args.vmm, args.cmdline.as_deref(), args.pid)?,
    };
    if let Some((argv, source)) = found {
        if args.guest.is_some() || args.layout.is_some() || args.memory.is_some() {
            return Err(CliError::input(
                "a VMM command line gives the guest itself: drop --guest, --memory and --layout",
            ));
        }
        let origin = if args.libvirt.is_some() {
            Origin::Libvirt
        } else if let Some(pid) = args.pid {
            Origin::Pid(pid)
        } else if args.cmdline.is_some() {
            Origin::Cmdline
        } else {
            Origin::Argv
        };
        // Only a command line the user typed after -- may run its argv[0]; a document
        // (a domain XML, a --cmdline file, another process's cmdline) never names a
        // program iovactl runs.
        let release = match (&args.qemu_version, origin) {
            (Some(_), _) | (None, Origin::Argv) => None,
            (None, o) => Some(release_without_argv0(&argv, o)?),
        };
        if origin != Origin::Libvirt
            && argv.windows(2).any(|w| {
                w[0] == "-cpu" && w[1].starts_with(iova_guest::qemu_cmdline::LIBVIRT_HOST_MODEL)
            })
        {
            return Err(CliError::input(format!(
                "-cpu {}: not a QEMU CPU model (it stands for libvirt's host-model in a \
                 command line built from a domain)",
                iova_guest::qemu_cmdline::LIBVIRT_HOST_MODEL
            )));
        }
        let vm = crate::vmm::parse_vmm_argv(&argv)?;
        let argv0 = argv.first().map_or("", String::as_str);
        let (version, version_from) = match release {
            Some(r) => ((r.version, r.source), r.from),
            None => {
                let v = crate::vmm::resolve_version(argv0, args.qemu_version.as_deref())?;
                let from = if args.qemu_version.is_some() {
                    "--qemu-version"
                } else if v.1.starts_with("assumed") {
                    "assumed"
                } else {
                    "binary"
                };
                (v, from)
            }
        };
        let launcher = match (&libvirt_policy, origin) {
            (Some(p), _) => crate::access::Launcher::Libvirt {
                managed: p.managed.clone(),
            },
            (None, Origin::Pid(_)) => crate::access::Launcher::Running,
            (None, _) => crate::access::this_shell(),
        };
        let memlock = match (given, origin, libvirt_policy.map(|p| p.memlock)) {
            (Some(l), _, _) => Some(MemlockInput::Limit(l)),
            (None, Origin::Libvirt, Some(p)) => Some(MemlockInput::Libvirt(p)),
            (None, Origin::Pid(pid), _) => {
                Some(MemlockInput::Limit(crate::memlock::of_process(Some(pid))?))
            }
            (None, Origin::Argv | Origin::Cmdline, _) => {
                Some(MemlockInput::Limit(crate::memlock::of_process(None)?))
            }
            (None, Origin::Libvirt, None) => None,
        };
        return Ok(VmDef::Argv {
            vm: Box::new(vm),
            source,
            version,
            version_from,
            memlock,
            launcher,
        });
    }
    if args.devices.is_empty() {
        return Err(CliError::input(
            "--device BDF is required (or a VMM command line with -device vfio-pci,host=BDF)",
        ));
    }
    if args.qemu_version.is_some() {
        return Err(CliError::input(
            "--qemu-version goes with a QEMU command line (after --, --cmdline or --pid)",
        ));
    }
    match (&args.guest, &args.layout) {
        (Some(name), None) => {
            let preset = Preset::from_name(name).ok_or_else(|| {
                CliError::input(format!(
                    "--guest {name}: unknown preset; known presets: {}, qemu-pseries",
                    Preset::known_names()
                ))
            })?;
            let mem_text = args.memory.as_deref().ok_or_else(|| {
                CliError::input(format!("--guest {name} needs --memory SIZE (e.g. 8G)"))
            })?;
            let memory =
                parse_number(mem_text).map_err(|e| CliError::input(format!("--memory: {e}")))?;
            let bare = !mem_text.is_empty() && mem_text.bytes().all(|b| b.is_ascii_digit());
            if bare && memory < (1 << 20) {
                // QEMU's `-m 2048` counts MiB; here a number without a unit is bytes.
                return Err(CliError::input(format!(
                    "--memory {mem_text}: a size without a unit is bytes, far too little \
                     RAM; did you mean {mem_text}M?"
                )));
            }
            if let Some(v) = &args.cpu_vendor
                && !preset.is_arm()
                && !matches!(CpuVendor::parse(v), Some(CpuVendor::Intel | CpuVendor::Amd))
            {
                return Err(CliError::input(format!(
                    "--cpu-vendor {v}: use intel or amd"
                )));
            }
            Ok(VmDef::Preset {
                preset,
                name: name.clone(),
                mem_text: mem_text.to_owned(),
                memory,
                memlock: given,
                launcher: crate::access::this_shell(),
            })
        }
        (None, Some(path)) => {
            if args.memory.is_some() {
                return Err(CliError::input(
                    "--memory goes with --guest; a --layout file gives its own sizes",
                ));
            }
            // read_file refuses a FIFO (which would block), a directory or a dangling
            // link before reading anything.
            let bytes = crate::input::read_file(path, "layout file")?;
            let text = String::from_utf8(bytes).map_err(|e| {
                CliError::input(format!(
                    "layout file {} is not UTF-8 text: {e}",
                    path.display()
                ))
            })?;
            let layout = layout_file::parse(&path.display().to_string(), &text)
                .map_err(|e| CliError::input(e.to_string()))?;
            let desc = format!(
                "custom layout '{}' from {} ({} of RAM)",
                layout.name,
                path.display(),
                human_bytes(layout.ram_bytes())
            );
            Ok(VmDef::LayoutFile {
                layout,
                desc,
                memlock: given,
                launcher: crate::access::this_shell(),
            })
        }
        _ => Err(CliError::input(
            "give the guest as --guest PRESET --memory SIZE or as --layout FILE",
        )),
    }
}

/// A VM definition on one host: its model with the host's CPU as the default, the
/// devices resolved against the host's.
pub(crate) fn load_on(
    args: &GuestArgs,
    def: &VmDef,
    loaded: LoadedHost,
) -> Result<Loaded, CliError> {
    let (layout, input, guest_desc, vmm, version_from) = match def {
        VmDef::Argv {
            vm,
            source,
            version,
            version_from,
            ..
        } => {
            let vmm = crate::vmm::model_vmm(
                (**vm).clone(),
                version.clone(),
                source.clone(),
                &loaded.host,
                args.cpu_vendor.as_deref(),
            )?;
            let m = &vmm.model;
            let guest_desc = format!(
                "{} {} (QEMU {}, {}), {} of RAM, {} vCPU{}; from {}",
                vmm.vm.binary,
                vmm.vm.machine_name,
                m.version,
                vmm.version_source,
                human_bytes(u128::from(vmm.vm.ram)),
                m.cpu_vendor,
                m.phys_bits.map_or(String::new(), |b| format!(
                    " with {b} physical address bits"
                )),
                vmm.argv_source
            );
            let layout = m.layout.clone();
            let input = match plan_config(&vmm) {
                Some((p, cfg)) => PlanInput::Preset(p, cfg),
                None => PlanInput::Custom(layout.clone()),
            };
            (layout, input, guest_desc, Some(vmm), *version_from)
        }
        VmDef::Preset {
            preset,
            name,
            mem_text,
            memory,
            ..
        } => {
            let preset = *preset;
            let (vendor, from) = if preset.is_arm() {
                (CpuVendor::Arm, "aarch64 guest")
            } else {
                match args.cpu_vendor.as_deref().and_then(CpuVendor::parse) {
                    Some(x @ (CpuVendor::Intel | CpuVendor::Amd)) => (x, "--cpu-vendor"),
                    _ => match CpuVendor::of_host(&loaded.host) {
                        Some(x @ (CpuVendor::Intel | CpuVendor::Amd)) => (x, "the host's"),
                        _ => (CpuVendor::Intel, "assumed: host CPU vendor unknown"),
                    },
                }
            };
            let cfg = GuestConfig::new(*memory, vendor);
            let layout = preset
                .layout(&cfg)
                .map_err(|e| CliError::input(format!("--guest {name} --memory {mem_text}: {e}")))?;
            let desc = format!(
                "{} with {} of RAM, {} vCPU ({from}); layout from {}",
                preset.name(),
                human_bytes(u128::from(*memory)),
                vendor,
                preset.source()
            );
            (layout, PlanInput::Preset(preset, cfg), desc, None, "")
        }
        VmDef::LayoutFile { layout, desc, .. } => (
            layout.clone(),
            PlanInput::Custom(layout.clone()),
            desc.clone(),
            None,
            "",
        ),
    };
    let mut devices = crate::hostsrc::resolve_devices(&loaded.host, &args.devices)?;
    if let Some(v) = &vmm {
        for d in &v.vm.vfio {
            if !devices.contains(d) {
                devices.push(d.clone());
            }
        }
        if devices.is_empty() {
            return Err(CliError::input(
                "no device to assign: the command line has no -device vfio-pci,host=BDF; add --device BDF",
            ));
        }
    }
    let memlock = memlock_verdict(def, vmm.as_ref(), &layout, &loaded, devices.len());
    let launcher = match def {
        VmDef::Argv { launcher, .. }
        | VmDef::Preset { launcher, .. }
        | VmDef::LayoutFile { launcher, .. } => launcher,
    };
    let access = crate::access::verdict(
        &loaded.host,
        &devices,
        vmm.as_ref().is_some_and(|v| v.vm.vfio_iommufd),
        launcher,
    );
    Ok(Loaded {
        vmm,
        version_from,
        devices,
        loaded,
        layout,
        input,
        guest_desc,
        memlock,
        access,
    })
}

/// The locked-memory verdict of a VM definition on a host, when a limit is known: the
/// RAM and ROM QEMU pins at start (in the host's pages), once per container (one per
/// assigned device behind a vIOMMU), charged to the process (type1) or the user
/// (iommufd).
fn memlock_verdict(
    def: &VmDef,
    vmm: Option<&Vmm>,
    layout: &Layout,
    loaded: &LoadedHost,
    devices: usize,
) -> Option<crate::memlock::Verdict> {
    let input = match def {
        VmDef::Argv { memlock, .. } => memlock.clone()?,
        VmDef::Preset { memlock, .. } | VmDef::LayoutFile { memlock, .. } => {
            MemlockInput::Limit(memlock.clone()?)
        }
    };
    let page = loaded.host.settings.cpu_page_size.unwrap_or(4096);
    let viommu = vmm.is_some_and(|v| !v.model.viommus.is_empty());
    let containers = vmm.map_or(1, crate::vmm::containers);
    let per_user = vmm.is_some_and(|v| v.vm.vfio_iommufd);
    let limit = match input {
        MemlockInput::Limit(l) => l,
        MemlockInput::Libvirt(policy) => {
            let memory = vmm.map_or(0, |v| {
                v.vm.mem_devices
                    .iter()
                    .fold(v.vm.ram, |a, d| a.saturating_add(d.size))
            });
            crate::memlock::of_libvirt(
                policy,
                memory,
                u64::try_from(devices).unwrap_or(u64::MAX),
                viommu,
            )
        }
    };
    Some(crate::memlock::verdict(
        crate::memlock::pinned_at_start(layout, page, !per_user),
        containers,
        per_user,
        limit,
    ))
}

/// Where a VM definition came from, which decides how its QEMU release may be learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// The command line after `--`: the user named the binary, which may be run.
    Argv,
    /// `--cmdline FILE`: a document; its argv\[0\] is never run.
    Cmdline,
    /// `--pid PID`: the process runs; its own binary (`/proc/PID/exe`) may be asked,
    /// never the argv\[0\] it claims.
    Pid(u32),
    /// `--libvirt FILE`: a document; its `<emulator>` is never run.
    Libvirt,
}

/// The QEMU release of a VM definition learnt without running anything it names.
struct Release {
    version: iova_guest::qemu_cmdline::QemuVersion,
    /// In words, for the report (`qemu_version_source`).
    source: String,
    /// In one word, for JSON (`qemu_version_from`).
    from: &'static str,
}

/// The release of a definition whose argv\[0\] must not be run: with `--pid` what the
/// running binary says, else the release a versioned machine type names (libvirt
/// stores `pc-q35-7.2`, `virt-8.2`: the release that defined the domain; a newer QEMU
/// may run it, which the report says), else the newest modelled release, assumed and
/// said so.
fn release_without_argv0(argv: &[String], origin: Origin) -> Result<Release, CliError> {
    use iova_guest::qemu_cmdline::{QemuVersion, parse_qemu_argv};
    let mut why = match origin {
        Origin::Libvirt => "the domain's <emulator> is never run".to_owned(),
        Origin::Cmdline => "a --cmdline file's argv[0] is never run".to_owned(),
        Origin::Pid(_) | Origin::Argv => String::new(),
    };
    if let Origin::Pid(pid) = origin {
        match running_binary_release(pid) {
            Ok(v) => {
                return Ok(Release {
                    version: v,
                    source: format!("the running binary: /proc/{pid}/exe --version"),
                    from: "running-binary",
                });
            }
            Err(e) => why = e,
        }
    }
    // A command line the parser refuses gets its error from load_vmm, which parses it
    // again: here it only has no machine type.
    let machine = parse_qemu_argv(argv, |_, _| None)
        .ok()
        .map(|vm| (vm.machine_name, vm.machine.version));
    match machine {
        Some((name, Some(v))) if v.is_modelled() => {
            return Ok(Release {
                version: v,
                source: format!(
                    "the machine type {name} names it; a newer QEMU may run that type: give \
                     --qemu-version"
                ),
                from: "machine-type",
            });
        }
        Some((name, Some(v))) if v > QemuVersion::NEWEST => {
            return Err(CliError::CannotAnswer(format!(
                "machine type {name}: QEMU {v} or newer runs it; QEMU releases {} to {}.x are \
                 modelled",
                QemuVersion::OLDEST,
                QemuVersion::NEWEST.major
            )));
        }
        Some((name, Some(v))) => why.push_str(&format!(
            "; machine type {name} names QEMU {v}, older than the oldest modelled release {}",
            QemuVersion::OLDEST
        )),
        Some((name, None)) => {
            why.push_str(&format!("; machine type {name} names no release"));
        }
        None => {}
    }
    Ok(Release {
        version: QemuVersion::NEWEST,
        source: format!(
            "assumed: the newest modelled release ({}; give --qemu-version)",
            why.trim_start_matches("; ")
        ),
        from: "assumed",
    })
}

/// What `/proc/PID/exe --version` says, when that binary may be run: a regular file
/// owned by root or by this user and writable by no one else (a binary another user
/// controls is never run); the answer must be QEMU's ("QEMU emulator version X.Y").
fn running_binary_release(pid: u32) -> Result<iova_guest::qemu_cmdline::QemuVersion, String> {
    use std::os::unix::fs::MetadataExt as _;
    let exe = PathBuf::from(format!("/proc/{pid}/exe"));
    let meta = std::fs::metadata(&exe)
        .map_err(|e| format!("the running binary {} cannot be read: {e}", exe.display()))?;
    let me = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
    if !meta.is_file() || !(meta.uid() == 0 || Some(meta.uid()) == me) || meta.mode() & 0o022 != 0 {
        return Err(format!(
            "the running binary {} is not run: not a regular file owned by root or by this \
             user and writable by no one else",
            exe.display()
        ));
    }
    let not_qemu = || {
        format!(
            "the running binary {} did not answer as QEMU",
            exe.display()
        )
    };
    let line = crate::vmm::version_line(exe.as_os_str()).map_err(|e| match e {
        Some(e) => format!("the running binary {} cannot be run: {e}", exe.display()),
        None => not_qemu(),
    })?;
    Some(line)
        .filter(|l| l.starts_with("QEMU emulator version "))
        .and_then(|l| iova_guest::qemu_cmdline::QemuVersion::parse(&l))
        .ok_or_else(not_qemu)
}

/// The preset configuration equal to a QEMU command line, when the preset can express
/// it (x86, no memory devices, SeaBIOS, a VGA device, QEMU >= 7.1 rules): plans then
/// use the preset's options.
fn plan_config(vmm: &Vmm) -> Option<(Preset, GuestConfig)> {
    use iova_guest::qemu_cmdline::MachineFamily;
    let vm = &vmm.vm;
    let preset = match vm.machine.family {
        MachineFamily::Q35 => Preset::QemuQ35,
        MachineFamily::Pc => Preset::QemuPc,
        MachineFamily::Virt => return None,
    };
    let plain = vm.maxmem == vm.ram
        && vm.mem_devices.is_empty()
        && vm.pflash.is_empty()
        && vm.bios.is_none()
        && vm.vga
        && vmm.model.machine_version >= iova_guest::qemu_cmdline::QemuVersion::new(7, 1);
    plain.then(|| {
        (
            preset,
            GuestConfig::new(vm.ram, vmm.model.cpu_vendor)
                .max_ram_below_4g(vm.max_ram_below_4g)
                .pci_hole64_size(vm.pci_hole64_size),
        )
    })
}

pub(crate) fn run_check(l: &Loaded) -> Result<CheckReport, CliError> {
    check(&l.layout, &l.loaded.host, &l.devices)
        .map_err(|e| CliError::input(format!("--device {e}")))
}

/// The command-line-only problems (none for presets and layout files).
pub(crate) fn problems(l: &Loaded, r: &CheckReport) -> Vec<VmmProblem> {
    let mut out = l.vmm.as_ref().map_or_else(Vec::new, |v| {
        vmm_problems(
            v,
            &r.container,
            &l.loaded.host,
            l.loaded.host.settings.dma_entry_limit,
        )
    });
    out.extend(l.memlock.as_ref().and_then(|m| m.problem.clone()));
    out.extend(l.access.problems.iter().cloned());
    out
}

fn vmm_json(l: &Loaded, problems: &[VmmProblem]) -> Value {
    let Some(v) = &l.vmm else {
        return Value::Null;
    };
    let m = &v.model;
    json!({
        "binary": v.vm.binary,
        "qemu_version": m.version.to_string(),
        "qemu_version_source": v.version_source,
        "qemu_version_from": l.version_from,
        "machine": v.vm.machine_name,
        "machine_version": m.machine_version.to_string(),
        "ram": v.vm.ram.to_string(),
        "cpu_model": v.vm.cpu.model,
        "cpu_vendor": m.cpu_vendor.as_str(),
        "phys_bits": m.phys_bits,
        "max_used_gpa": hex(m.max_used_gpa),
        "device_memory": m.device_memory.map(|(b, s)| json!({"base": hex(b), "size": s.to_string()})),
        "assigned": v.vm.vfio,
        "viommus": m.viommus,
        "dma_mappings": m.mappings,
        "problems": problems.iter().map(|p| json!({
            "kind": p.kind,
            "when": p.when,
            "first": p.range.map(|r| hex(r.first())),
            "last": p.range.map(|r| hex(r.last())),
            "message": p.message,
            "fix": p.fix,
        })).collect::<Vec<_>>(),
    })
}

fn problems_text(problems: &[VmmProblem]) -> String {
    let mut s = String::new();
    if !problems.is_empty() {
        let _ = writeln!(s, "\nVM definition problems:");
        for p in problems {
            let _ = writeln!(s, "  FATAL ({}) {}", p.when, p.message);
            let _ = writeln!(s, "        fix: {}", p.fix);
        }
    }
    s
}

fn layout_json(layout: &Layout) -> Value {
    Value::Array(
        layout
            .sections()
            .iter()
            .map(|s| {
                json!({
                    "name": s.name,
                    "kind": s.kind.as_str(),
                    "first": hex(s.range.first()),
                    "last": hex(s.range.last()),
                    "size": s.range.len().to_string(),
                    "p2p": s.p2p,
                    "dma_mapped": s.is_dma_mapped(),
                })
            })
            .collect(),
    )
}

fn report_json(r: &CheckReport, guest: &str) -> Value {
    json!({
        "ok": r.ok,
        "guest": guest,
        "devices": r.container.devices,
        "groups": r.container.groups,
        "valid_iova_ranges": set_json(&r.container.valid),
        "page_size_mask": hex(r.container.page_size_mask),
        "layout": layout_json(&r.layout),
        "conflicts": r.conflicts.iter().map(|c| {
            let reason_kind = serde_json::to_value(&c.reason)
                .ok()
                .and_then(|v| v.get("kind").cloned())
                .unwrap_or(Value::Null);
            json!({
                "section": c.section,
                "first": hex(c.range.first()),
                "last": hex(c.range.last()),
                "reason": c.reason.to_string(),
                "reason_kind": reason_kind,
                "fatal": c.fatal,
            })
        }).collect::<Vec<_>>(),
        "blockers": r.blockers.iter().map(|b| json!({
            "group": b.group,
            "devices": b.devices,
            "issue": b.issue,
            "message": b.message,
        })).collect::<Vec<_>>(),
        "notes": r.layout.notes.iter().chain(r.notes.iter()).collect::<Vec<_>>(),
    })
}

fn layout_table(layout: &Layout, r: Option<&CheckReport>) -> String {
    let mut rows = vec![[
        "SECTION".to_owned(),
        "KIND".to_owned(),
        "FIRST".to_owned(),
        "LAST".to_owned(),
        "SIZE".to_owned(),
        "STATUS".to_owned(),
    ]];
    for s in layout.sections() {
        let kind = if s.p2p {
            format!("{} (p2p)", s.kind)
        } else {
            s.kind.to_string()
        };
        let status = match r {
            Some(r) if r.conflicts.iter().any(|c| c.section == s.name && c.fatal) => "CONFLICT",
            Some(r) if r.conflicts.iter().any(|c| c.section == s.name) => "warning",
            _ if !s.is_dma_mapped() => "not mapped",
            _ => "ok",
        };
        rows.push([
            iova_guest::text::clean(&s.name),
            kind,
            hex(s.range.first()),
            hex(s.range.last()),
            human_bytes(s.range.len()),
            status.to_owned(),
        ]);
    }
    let mut widths = [0usize; 6];
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let _ = writeln!(
            out,
            "  {:<w0$}  {:<w1$}  {:>w2$}  {:>w3$}  {:>w4$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            row[5],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
            w4 = widths[4],
        );
    }
    out
}

fn report_text(r: &CheckReport, l: &Loaded, probs: &[VmmProblem]) -> String {
    let mut s = String::new();
    let c = &r.container;
    let _ = writeln!(s, "Host: {}", iova_guest::text::clean(&l.loaded.source));
    let _ = writeln!(
        s,
        "Devices: {} (group{} {}), one container",
        iova_guest::text::clean(&c.devices.join(", ")),
        if c.groups.len() == 1 { "" } else { "s" },
        c.groups
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(s, "Valid IOVAs: {}", c.valid);
    let _ = writeln!(s, "Page sizes: {}", page_sizes(c.page_size_mask));
    let _ = writeln!(s, "Guest: {}", iova_guest::text::clean(&l.guest_desc));
    for n in &r.layout.notes {
        let _ = writeln!(s, "  note: {}", iova_guest::text::clean(n));
    }
    let _ = writeln!(s, "\nLayout (guest-physical = IOVA without a vIOMMU):");
    s.push_str(&layout_table(&r.layout, Some(r)));
    if !r.conflicts.is_empty() {
        let _ = writeln!(s, "\nConflicts:");
        for x in &r.conflicts {
            let _ = writeln!(
                s,
                "  {} {} {}-{} ({}): {}",
                if x.fatal { "FATAL  " } else { "warning" },
                iova_guest::text::clean(&x.section),
                hex(x.range.first()),
                hex(x.range.last()),
                human_bytes(x.range.len()),
                iova_guest::text::clean(&x.reason.to_string())
            );
        }
    }
    if !r.blockers.is_empty() {
        let _ = writeln!(s, "\nBlockers (no layout can fix these):");
        for b in &r.blockers {
            let _ = writeln!(
                s,
                "  group {} ({}): {}",
                b.group,
                iova_guest::text::clean(&b.devices.join(", ")),
                iova_guest::text::clean(&b.message)
            );
        }
    }
    for n in &r.notes {
        let _ = writeln!(s, "  note: {}", iova_guest::text::clean(n));
    }
    if let Some(m) = &l.memlock {
        let _ = writeln!(s, "\n{}", iova_guest::text::clean(&m.text()));
    }
    for line in l.access.text().lines() {
        let _ = writeln!(s, "{}", iova_guest::text::clean(line));
    }
    s.push_str(&problems_text(probs));
    let _ = writeln!(
        s,
        "\nResult: {}",
        if r.ok && !probs.is_empty() {
            "NOT OK - the VM definition fails (see the problems above)".to_owned()
        } else if r.ok {
            "OK - every DMA-mapped section fits the container".to_owned()
        } else if r.has_fatal() {
            "NOT OK - the VMM's DMA mappings will fail (EINVAL); run `iovactl plan` with the same options for a layout that fits".to_owned()
        } else {
            "NOT OK - blocked".to_owned()
        }
    );
    s
}

/// Runs `iovactl check`.
pub fn run_check_cmd(args: &CheckArgs) -> Result<ExitCode, CliError> {
    if let Some(p) = load_pseries(&args.guest)? {
        return run_pseries_check(&p, args.json);
    }
    let l = load(&args.guest)?;
    let r = run_check(&l)?;
    let probs = problems(&l, &r);
    let ok = r.ok && probs.is_empty();
    if args.json {
        let mut v = report_json(&r, &l.guest_desc);
        if let Some(o) = v.as_object_mut() {
            o.insert("ok".to_owned(), Value::Bool(ok));
            o.insert("vmm".to_owned(), vmm_json(&l, &probs));
            o.insert(
                "memlock".to_owned(),
                l.memlock
                    .as_ref()
                    .map_or(Value::Null, crate::memlock::Verdict::json),
            );
            o.insert("access".to_owned(), l.access.json());
        }
        crate::out::println(&serde_json::to_string_pretty(&v).unwrap_or_default())?;
    } else {
        crate::out::print(&iova_guest::text::clean_lines(&report_text(&r, &l, &probs)))?;
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The vCPU address width a planned layout needs (QEMU refuses to start when the
/// highest used address is past `2^phys-bits - 1`): the plan's `-cpu` option says the
/// smallest width that covers it, and a plan needing more than the host has under KVM
/// is not feasible.
fn vmm_plan(v: &Vmm, host: &iova::Host, p: &mut Plan) {
    use iova_guest::qemu_cmdline::{Accel, QemuArch};
    let Some(layout) = &p.layout else { return };
    let Some(top) = layout.sections().iter().map(|s| s.range.last()).max() else {
        return;
    };
    let needed = 64u32.saturating_sub(top.leading_zeros()).max(32);
    if v.vm.arch != QemuArch::X86_64 {
        if let Some(pb) = v.model.phys_bits {
            if u32::from(pb) < needed {
                p.notes.push(format!(
                    "the vCPU has {pb} physical address bits; the layout needs {needed}: use -cpu max or a smaller -m"
                ));
            }
        }
        return;
    }
    p.options.retain(|o| !o.starts_with("-cpu "));
    let mut cpu = v.vm.cpu.model.clone();
    if let Some(vendor) = &v.vm.cpu.vendor_override {
        cpu.push_str(&format!(",vendor={vendor}"));
    }
    let bits = needed;
    if bits > 52 {
        p.feasible = false;
        p.notes.push(format!(
            "the layout's highest address {top:#x} needs {bits} physical address bits; QEMU \
             accepts at most 52"
        ));
        return;
    }
    p.options.push(format!("-cpu {cpu},phys-bits={bits}"));
    if v.vm.accel == Accel::Kvm {
        if let Some(h) = host.settings.cpu_phys_bits {
            if u32::from(h) < bits {
                p.feasible = false;
                p.notes.push(format!(
                    "the layout's highest address {top:#x} needs {bits} physical address bits \
                     but the host CPU has {h}: the guest cannot reach it; plan a smaller -m"
                ));
            }
        }
    }
}

fn plan_json(p: &Plan, before: &CheckReport, guest: &str) -> Value {
    json!({
        "feasible": p.feasible,
        "ok": p.feasible && before.blockers.is_empty(),
        "guest": guest,
        "memory_requested": p.memory_requested.to_string(),
        "memory_planned": p.memory_planned.to_string(),
        "config": p.config.map(|c| json!({
            "memory": hex(c.memory),
            "cpu_vendor": c.cpu_vendor.as_str(),
            "max_ram_below_4g": c.max_ram_below_4g.map(hex),
            "pci_hole64_size": c.pci_hole64_size.map(hex),
        })),
        "without_warnings": p.without_warnings.as_ref().map(|(c, opts)| json!({
            "memory": hex(c.memory),
            "options": opts,
        })),
        "changes": p.changes,
        "options": p.options,
        "notes": p.notes,
        "layout": p.layout.as_ref().map(layout_json),
        "layout_toml": p.layout.as_ref().filter(|_| p.config.is_none()).map(layout_file::to_toml),
        "conflicts_before": before.conflicts.iter().filter(|c| c.fatal).map(|c| json!({
            "section": c.section,
            "first": hex(c.range.first()),
            "last": hex(c.range.last()),
            "reason": c.reason.to_string(),
        })).collect::<Vec<_>>(),
        "blockers": before.blockers.iter().map(|b| b.message.clone()).collect::<Vec<_>>(),
    })
}

/// Runs `iovactl plan`.
pub fn run_plan_cmd(args: &PlanArgs) -> Result<ExitCode, CliError> {
    if let Some(p) = load_pseries(&args.guest)? {
        return run_pseries_plan(&p, args.json);
    }
    let l = load(&args.guest)?;
    let before = run_check(&l)?;
    let mut p = plan(&l.input, &before.container);
    if let Some(v) = &l.vmm {
        vmm_plan(v, &l.loaded.host, &mut p);
    }
    let ok = p.feasible && before.blockers.is_empty();
    if args.json {
        crate::out::println(
            &serde_json::to_string_pretty(&plan_json(&p, &before, &l.guest_desc))
                .unwrap_or_default(),
        )?;
        return Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    let mut s = String::new();
    let _ = writeln!(s, "Host: {}", iova_guest::text::clean(&l.loaded.source));
    let _ = writeln!(s, "Guest: {}", iova_guest::text::clean(&l.guest_desc));
    let _ = writeln!(s, "Valid IOVAs: {}", before.container.valid);
    let fatal: Vec<_> = before.fatal().collect();
    if fatal.is_empty() {
        let _ = writeln!(s, "The requested layout has no fatal conflict.");
    } else {
        let _ = writeln!(
            s,
            "The requested layout has {} fatal conflict(s), first: {}",
            fatal.len(),
            iova_guest::text::clean(&fatal[0].to_string())
        );
    }
    match &p.layout {
        Some(layout) => {
            let _ = writeln!(
                s,
                "\nProposed layout ({} of RAM of {} requested):",
                human_bytes(p.memory_planned),
                human_bytes(p.memory_requested)
            );
            s.push_str(&layout_table(layout, p.report.as_ref()));
        }
        None => {
            let _ = writeln!(s, "\nNo layout fits.");
        }
    }
    if !p.changes.is_empty() {
        let _ = writeln!(s, "\nChanges:");
        for c in &p.changes {
            let _ = writeln!(s, "  - {}", iova_guest::text::clean(c));
        }
    }
    if !p.options.is_empty() {
        let _ = writeln!(s, "\nVMM options:");
        for o in &p.options {
            let _ = writeln!(s, "  {}", iova_guest::text::clean(o));
        }
    }
    if let (Some(layout), None) = (&p.layout, p.config) {
        if !p.changes.is_empty() {
            let _ = writeln!(s, "\nAs a layout file:\n{}", layout_file::to_toml(layout));
        }
    }
    if !p.notes.is_empty() {
        let _ = writeln!(s, "\nNotes:");
        for n in &p.notes {
            let _ = writeln!(s, "  - {}", iova_guest::text::clean(n));
        }
    }
    if !before.blockers.is_empty() {
        let _ = writeln!(s, "\nBlockers no layout can fix:");
        for b in &before.blockers {
            let _ = writeln!(
                s,
                "  group {} ({}): {}",
                b.group,
                iova_guest::text::clean(&b.devices.join(", ")),
                iova_guest::text::clean(&b.message)
            );
        }
    }
    crate::out::print(&iova_guest::text::clean_lines(&s))?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Runs `iovactl render`.
pub fn run_render_cmd(args: &RenderArgs) -> Result<ExitCode, CliError> {
    if load_pseries(&args.guest)?.is_some() {
        return Err(CliError::CannotAnswer(
            "render draws guest-physical layouts; a pseries guest's DMA goes through its \
             windows: use check or plan"
                .to_owned(),
        ));
    }
    let l = load(&args.guest)?;
    let r = run_check(&l)?;
    let doc = svg::render(&r);
    let inputs: Vec<&std::path::Path> = [args.guest.layout.as_deref(), args.guest.host.profile()?]
        .into_iter()
        .flatten()
        .collect();
    crate::out::write_output(&args.svg, "--svg", doc.as_bytes(), &inputs)?;
    let summary = format!(
        "wrote {} ({}; {} conflict(s), {} fatal)",
        iova_guest::text::clean(&args.svg.display().to_string()),
        if r.ok { "ok" } else { "NOT ok" },
        r.conflicts.len(),
        r.fatal().count()
    );
    if args.svg.as_os_str() == "-" {
        // The picture went to standard output: the summary goes beside the errors.
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "{summary}");
    } else {
        crate::out::println(&summary)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// VMM-ready options that keep a guest's vIOMMU inside the host's IOVA width: the
/// widest address width whose whole space the container can map (IOVAs below it
/// that are reserved are reported to the guest as reserved regions by virtio-iommu).
fn vmm_options(cfg: &virtio_iommu::VirtioIommuConfig, c: &Container) -> Vec<String> {
    let top = c
        .apertures
        .iter()
        .filter_map(|a| a.aperture.map(|r| r.last()))
        .min()
        .unwrap_or(cfg.input_range.last());
    let width = 64u32.saturating_sub(top.checked_add(1).map_or(0, u64::leading_zeros) + 1);
    let width = if top == u64::MAX { 64 } else { width };
    let granule = match cfg.page_size_mask.trailing_zeros() {
        13 => "8k",
        14 => "16k",
        16 => "64k",
        _ => "4k",
    };
    let mut out = vec![format!(
        "-device virtio-iommu-pci,aw-bits={},granule={granule}   (QEMU >= 9.0)",
        width.clamp(32, 64)
    )];
    if width >= 48 {
        out.push("-device intel-iommu,aw-bits=48".to_owned());
    } else if width >= 39 {
        out.push("-device intel-iommu,aw-bits=39".to_owned());
    } else {
        out.push(format!(
            "(no intel-iommu: its narrowest width, 39 bits, exceeds the host's {width})"
        ));
    }
    out.push(format!(
        "cloud-hypervisor --platform iommu_address_width={width}"
    ));
    out
}

/// Runs `iovactl export`.
pub fn run_export_cmd(args: &ExportArgs) -> Result<ExitCode, CliError> {
    let a = match &args.format {
        ExportFormat::VirtioIommu(a) => a,
        ExportFormat::Prometheus(a) => return crate::fleet_export::run_prometheus(a),
        ExportFormat::Ansible(a) => return crate::fleet_export::run_ansible(a),
        ExportFormat::Nfd(a) => return crate::fleet_export::run_nfd(a),
    };
    let _ = (&a.guest, &a.memory);
    let loaded = a.host.load()?;
    let devices = crate::hostsrc::resolve_devices(&loaded.host, &a.devices)?;
    let c = container(&loaded.host, &devices)?;
    let cfg = virtio_iommu::export(&c).ok_or_else(|| {
        CliError::input(format!(
            "--device {}: the container has no valid IOVA at all",
            a.devices.join(", ")
        ))
    })?;
    // As `check` does: a blocked group (identity domain, direct RMRR, no interrupt
    // remapping) cannot be assigned whatever the limits say.
    let mut blockers = Vec::new();
    for &g in &c.groups {
        let issues = loaded
            .host
            .group_issues(g)
            .map_err(|e| CliError::input(format!("--device: {e}")))?;
        let members: Vec<&String> = loaded
            .host
            .group(g)
            .map(|x| x.devices.iter().filter(|d| c.devices.contains(d)).collect())
            .unwrap_or_default();
        for issue in issues.into_iter().filter(|i| i.is_blocker()) {
            blockers.push(json!({
                "group": g,
                "devices": members,
                "message": issue.to_string(),
                "issue": issue,
            }));
        }
    }
    let v = json!({
        "format": "virtio-iommu",
        "ok": blockers.is_empty(),
        "blockers": blockers,
        "devices": c.devices,
        "groups": c.groups,
        "config": {
            "page_size_mask": hex(cfg.page_size_mask),
            "input_range": {"start": hex(cfg.input_range.first()), "end": hex(cfg.input_range.last())},
            "domain_range": {"start": cfg.domain_range.0, "end": cfg.domain_range.1},
        },
        "probe": {
            "resv_mem": cfg.reserved.iter().map(|r| json!({
                "subtype": match r.subtype { ResvSubtype::Reserved => "reserved", ResvSubtype::Msi => "msi" },
                "subtype_value": r.subtype.value(),
                "start": hex(r.start),
                "end": hex(r.end),
            })).collect::<Vec<_>>(),
        },
        "valid_iova_ranges": set_json(&c.valid),
        "input_range_json": range_json(&cfg.input_range),
        "vmm_options": vmm_options(&cfg, &c),
    });
    crate::out::println(&serde_json::to_string_pretty(&v).unwrap_or_default())?;
    if blockers.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    use std::io::Write as _;
    for b in &blockers {
        let _ = writeln!(
            std::io::stderr(),
            "iovactl: export: blocked: group {}: {}",
            b["group"],
            iova_guest::text::clean(b["message"].as_str().unwrap_or_default())
        );
    }
    Ok(ExitCode::from(1))
}

/// Options of `iovactl libvirt-hook`, installed as libvirt's `/etc/libvirt/hooks/qemu`.
#[derive(Debug, Args)]
pub struct HookArgs {
    #[command(flatten)]
    host: HostArgs,
    /// The QEMU release to model. Default: the release of the domain's versioned
    /// machine type (pc-q35-7.2: 7.2), else the newest modelled release; the domain's
    /// <emulator> is never run.
    #[arg(long = "qemu-version", value_name = "VERSION")]
    qemu_version: Option<String>,
    /// What libvirt passes: the domain name, the operation, the sub-operation and an
    /// extra argument (`NAME prepare begin -`).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "HOOK-ARGS"
    )]
    hook: Vec<String>,
}

/// Runs `iovactl libvirt-hook`: on `prepare begin` reads the domain XML from standard
/// input and refuses the start (exit 1, the reasons on stderr, which libvirt shows the
/// user) when the VM would fail with its assigned devices; every other call, a domain
/// without PCI host devices, and a domain the model cannot answer for pass (exit 0; the
/// last with a warning on stderr, so that the hook never blocks what it does not
/// understand).
pub fn run_hook_cmd(args: &HookArgs) -> Result<ExitCode, CliError> {
    let (name, op, sub) = (
        args.hook.first().map_or("", String::as_str),
        args.hook.get(1).map_or("", String::as_str),
        args.hook.get(2).map_or("", String::as_str),
    );
    if op != "prepare" || sub != "begin" {
        return Ok(ExitCode::SUCCESS);
    }
    let ga = GuestArgs {
        host: args.host.clone(),
        devices: Vec::new(),
        guest: None,
        memory: None,
        layout: None,
        cpu_vendor: None,
        cmdline: None,
        pid: None,
        libvirt: Some(PathBuf::from("-")),
        qemu_version: args.qemu_version.clone(),
        memlock: None,
        cap_ipc_lock: false,
        memlock_used: None,
        host_page_size: None,
        vmm: Vec::new(),
    };
    let l = match load(&ga) {
        Ok(l) => l,
        Err(CliError::Input(m)) if m.starts_with("no device to assign") => {
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => {
            crate::out::eprintln(&format!(
                "iovactl libvirt-hook: domain {name}: not checked: {e}"
            ));
            return Ok(ExitCode::SUCCESS);
        }
    };
    let r = match run_check(&l) {
        Ok(r) => r,
        Err(e) => {
            crate::out::eprintln(&format!(
                "iovactl libvirt-hook: domain {name}: not checked: {e}"
            ));
            return Ok(ExitCode::SUCCESS);
        }
    };
    let probs = problems(&l, &r);
    if r.ok && probs.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let release = l.vmm.as_ref().map_or(String::new(), |v| {
        format!(" (QEMU {}: {})", v.model.version, v.version_source)
    });
    let mut msg = format!(
        "iovactl: domain {name}{release} cannot work with {}:",
        l.devices.join(", ")
    );
    for c in r.fatal() {
        let _ = write!(
            msg,
            " {} {}-{} cannot be DMA-mapped ({});",
            c.section,
            hex(c.range.first()),
            hex(c.range.last()),
            c.reason
        );
    }
    for b in &r.blockers {
        let _ = write!(msg, " group {}: {};", b.group, b.message);
    }
    for p in &probs {
        let _ = write!(msg, " {} (fix: {});", p.message, p.fix);
    }
    msg.push_str(" run `iovactl plan --libvirt FILE` for a layout that fits");
    crate::out::eprintln(&msg);
    Ok(ExitCode::from(1))
}

// ---------------------------------------------------------------------------------
// pseries guests: their DMA windows against the host's sPAPR TCE container.

use iova_guest::pseries::{
    HostSpapr, PseriesPlan, PseriesReport, PseriesVm, WindowCheck, check_pseries, is_ppc64_binary,
    plan_pseries,
};

/// A pseries VM, its host, and the (PHB, group, host windows) to check.
pub(crate) struct PseriesLoaded {
    pub(crate) loaded: LoadedHost,
    pub(crate) vm: PseriesVm,
    pub(crate) groups: Vec<(u32, u32, HostSpapr)>,
    pub(crate) devices: Vec<(String, u32, u32)>,
    pub(crate) desc: String,
    pub(crate) page_source: String,
}

fn qemu_cli_err(e: iova_guest::qemu_cmdline::QemuError) -> CliError {
    if e.is_unmodelled() {
        CliError::CannotAnswer(e.to_string())
    } else {
        CliError::input(e.to_string())
    }
}

/// `0000:` added to a PCI address written without its domain.
fn with_domain(bdf: &str) -> String {
    if bdf.matches(':').count() == 1 {
        format!("0000:{bdf}")
    } else {
        bdf.to_owned()
    }
}

/// A pseries VM definition as read, before any host is looked at.
pub(crate) struct PseriesDef {
    /// The command line's VM; `None` for the preset, whose devices come from the host.
    vm: Option<PseriesVm>,
    /// The preset's RAM.
    memory: u64,
    desc: String,
}

/// The pseries form of a guest command: `--guest qemu-pseries`, or a VMM command line
/// whose argv[0] is qemu-system-ppc64. `None` for every other guest.
fn load_pseries(args: &GuestArgs) -> Result<Option<PseriesLoaded>, CliError> {
    let Some(def) = pseries_def(args)? else {
        return Ok(None);
    };
    let loaded = args.host.load()?;
    pseries_on(args, &def, loaded).map(Some)
}

impl PseriesDef {
    /// The devices the command line assigns (none for the preset).
    pub(crate) fn devices(&self) -> impl Iterator<Item = String> + '_ {
        self.vm
            .iter()
            .flat_map(|vm| vm.assigned.iter().map(|a| a.device.clone()))
    }

    /// The VM in words.
    pub(crate) fn desc(&self) -> &str {
        &self.desc
    }
}

/// Reads a pseries VM definition; `None` when the guest is not pseries.
pub(crate) fn pseries_def(args: &GuestArgs) -> Result<Option<PseriesDef>, CliError> {
    let preset = args.guest.as_deref().is_some_and(|g| {
        matches!(
            g.trim().to_ascii_lowercase().as_str(),
            "qemu-pseries" | "pseries"
        )
    });
    let from_argv = if preset || args.libvirt.is_some() {
        None
    } else {
        match crate::vmm::argv_from(&args.vmm, args.cmdline.as_deref(), args.pid)? {
            Some((argv, src)) if argv.first().is_some_and(|a| is_ppc64_binary(a)) => {
                Some((argv, src))
            }
            _ => return Ok(None),
        }
    };
    if !preset && from_argv.is_none() {
        return Ok(None);
    }
    if args.cpu_vendor.is_some() {
        return Err(CliError::input(
            "--cpu-vendor goes with x86 guests; a pseries guest has no vendor choice",
        ));
    }
    if args.memlock.is_some() {
        return Err(CliError::CannotAnswer(
            "--memlock: the sPAPR TCE backend's locked-memory accounting (pre-registration, \
             mm_iommu_do_alloc) is not modelled for pseries guests"
                .to_owned(),
        ));
    }
    if args.layout.is_some() {
        return Err(CliError::input(
            "--layout goes with type1 guests; a pseries guest's DMA goes through its windows",
        ));
    }
    let (vm, memory, desc) = if let Some((argv, source)) = from_argv {
        if args.memory.is_some() || args.guest.is_some() {
            return Err(CliError::input(
                "a VMM command line gives the guest itself: drop --guest and --memory",
            ));
        }
        let qemu = match args.qemu_version.as_deref() {
            Some(t) => {
                let v = iova_guest::qemu_cmdline::QemuVersion::parse(t).ok_or_else(|| {
                    CliError::input(format!("--qemu-version {t}: expected MAJOR.MINOR[.MICRO]"))
                })?;
                if !v.is_modelled() {
                    return Err(CliError::CannotAnswer(format!(
                        "--qemu-version {t}: QEMU releases {} to {}.x are modelled",
                        iova_guest::qemu_cmdline::QemuVersion::OLDEST,
                        iova_guest::qemu_cmdline::QemuVersion::NEWEST.major
                    )));
                }
                Some(v)
            }
            None => None,
        };
        let mut vm = PseriesVm::parse(&argv, qemu).map_err(qemu_cli_err)?;
        for a in &mut vm.assigned {
            a.device = with_domain(&a.device);
        }
        let desc = format!(
            "{} {}, {} of RAM at 0 ({}); from {}; PHB DMA defaults as in QEMU 7.0 to 10.x \
             (hw/ppc/spapr_pci.c)",
            vm.binary,
            vm.machine_name,
            human_bytes(u128::from(vm.ram)),
            match vm.accel {
                iova_guest::qemu_cmdline::Accel::Kvm => "KVM",
                iova_guest::qemu_cmdline::Accel::Tcg => "TCG",
            },
            source
        );
        (Some(vm), 0, desc)
    } else {
        if !args.vmm.is_empty() || args.cmdline.is_some() || args.pid.is_some() {
            return Err(CliError::input(
                "a VMM command line gives the guest itself: drop --guest and --memory",
            ));
        }
        if args.qemu_version.is_some() {
            return Err(CliError::input(
                "--qemu-version goes with a QEMU command line (after --, --cmdline or --pid)",
            ));
        }
        let mem_text = args
            .memory
            .as_deref()
            .ok_or_else(|| CliError::input("--guest qemu-pseries needs --memory SIZE (e.g. 8G)"))?;
        let memory =
            parse_number(mem_text).map_err(|e| CliError::input(format!("--memory: {e}")))?;
        if memory < (1 << 20) {
            return Err(CliError::input(format!(
                "--memory {mem_text}: less than 1 MiB of RAM (a size without a unit is bytes)"
            )));
        }
        let desc = format!(
            "qemu-pseries with {} of RAM at 0, the default PHB; PHB DMA defaults from QEMU \
             hw/ppc/spapr_pci.c",
            human_bytes(u128::from(memory))
        );
        (None, memory, desc)
    };
    Ok(Some(PseriesDef { vm, memory, desc }))
}

/// A pseries VM definition on one host: the devices resolved against the host's, the
/// host's windows of their groups.
pub(crate) fn pseries_on(
    args: &GuestArgs,
    def: &PseriesDef,
    loaded: LoadedHost,
) -> Result<PseriesLoaded, CliError> {
    let host = &loaded.host;
    let mut extra = crate::hostsrc::resolve_devices(host, &args.devices)?;
    let desc = def.desc.clone();
    let vm = match &def.vm {
        Some(vm) => {
            let mut vm = vm.clone();
            extra.retain(|d| !vm.assigned.iter().any(|a| &a.device == d));
            for d in extra {
                vm.assigned
                    .push(iova_guest::pseries::Assigned { device: d, phb: 0 });
            }
            vm
        }
        None => PseriesVm::preset(def.memory, &extra),
    };
    let mut vm = vm;
    for a in &mut vm.assigned {
        a.device = with_domain(&a.device);
    }
    if vm.assigned.is_empty() {
        return Err(CliError::input(
            "no device to assign: the command line has no -device vfio-pci,host=BDF; add --device BDF",
        ));
    }
    let mut infos: Vec<(u32, u32, iova::spapr::SpaprInfo)> = Vec::new();
    let mut devices = Vec::new();
    for a in &vm.assigned {
        let g = host
            .group_of_device(&a.device)
            .map_err(|e| CliError::input(format!("device {}: {e}", a.device)))?;
        let live = if g.spapr.is_none() && args.host.is_live() {
            crate::hostsrc::ask_spapr(g.id)
        } else {
            None
        };
        let Some(info) = g.spapr.or(live) else {
            return Err(CliError::CannotAnswer(format!(
                "group {} of {} ({}) has no sPAPR TCE windows: not a Power host, or facts \
                 saved without VFIO_IOMMU_SPAPR_TCE_GET_INFO; a pseries guest's windows \
                 (qemu-system-ppc64 -M pseries) can only be checked against them",
                g.id, loaded.source, a.device
            )));
        };
        if let Some(d) = info.ddw
            && d.levels > 1
        {
            return Err(CliError::CannotAnswer(format!(
                "group {} allows {}-level TCE tables: a PowerNV host, whose window rules \
                 (pnv_pci_ioda2_create_table) are not modelled; the model covers a pseries \
                 host (1 level)",
                g.id, d.levels
            )));
        }
        devices.push((a.device.clone(), a.phb, g.id));
        if !infos.iter().any(|(p, id, _)| *p == a.phb && *id == g.id) {
            infos.push((a.phb, g.id, info));
        }
    }
    let (page_size, page_source) = match (&args.host_page_size, host.settings.cpu_page_size) {
        (Some(t), _) => {
            let p =
                parse_number(t).map_err(|e| CliError::input(format!("--host-page-size: {e}")))?;
            if p != 0x1000 && p != 0x1_0000 {
                return Err(CliError::input(format!(
                    "--host-page-size {t}: a Power host's page is 4K or 64K"
                )));
            }
            (p, "--host-page-size")
        }
        (None, Some(p)) if p == 0x1000 || p == 0x1_0000 => (p, "the host's"),
        (None, Some(p)) => {
            return Err(CliError::CannotAnswer(format!(
                "the host's page size {p:#x} is not a Power page size (4K or 64K)"
            )));
        }
        (None, None) => {
            return Err(CliError::CannotAnswer(format!(
                "the page size of {} is unknown, and it decides the TCE table levels QEMU asks \
                 the host for (hw/vfio/spapr.c): give --host-page-size 4K or 64K",
                loaded.source
            )));
        }
    };
    let groups: Vec<(u32, u32, HostSpapr)> = infos
        .into_iter()
        .map(|(p, g, info)| (p, g, HostSpapr { info, page_size }))
        .collect();
    Ok(PseriesLoaded {
        loaded,
        vm,
        groups,
        devices,
        desc,
        page_source: format!("{} ({page_source})", human_bytes(u128::from(page_size))),
    })
}

fn window_json(w: &WindowCheck) -> Value {
    json!({
        "phb": w.phb,
        "group": w.group,
        "window": w.window.as_str(),
        "first": hex(w.start),
        "size": hex(w.size),
        "guest_page_size": hex(1u64 << w.guest_page_shift),
        "host_page_size": w.host_page_shift.map(|s| hex(1u64 << s)),
        "tce_create": w.attempts.iter().map(|a| json!({"levels": a.levels, "answer": a.answer})).collect::<Vec<_>>(),
        "ok": w.ok,
        "when": w.window.when(),
        "reason": w.reason,
    })
}

fn pseries_json(p: &PseriesLoaded, r: &PseriesReport) -> Value {
    json!({
        "ok": r.ok,
        "guest": p.desc,
        "host": p.loaded.source,
        "host_page_size": p.page_source,
        "machine": p.vm.machine_name,
        "ram": hex(p.vm.ram),
        "phbs": p.vm.phbs.iter().map(|b| json!({
            "index": b.index,
            "dma_win_addr": hex(b.dma.dma_win_addr),
            "dma_win_size": hex(b.dma.dma_win_size),
            "dma64_win_addr": hex(b.dma.dma64_win_addr),
            "ddw": b.dma.ddw,
            "pgsz": hex(b.dma.pgsz),
        })).collect::<Vec<_>>(),
        "devices": p.devices.iter().map(|(d, phb, g)| json!({"device": d, "phb": phb, "group": g})).collect::<Vec<_>>(),
        "windows": r.windows.iter().map(window_json).collect::<Vec<_>>(),
        "notes": p.vm.notes.iter().chain(r.notes.iter()).collect::<Vec<_>>(),
    })
}

fn pseries_text(p: &PseriesLoaded, r: &PseriesReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Host: {}, host pages {}",
        iova_guest::text::clean(&p.loaded.source),
        p.page_source
    );
    for (phb, g, h) in &p.groups {
        let i = &h.info;
        let ddw = i.ddw.map_or("no dynamic windows".to_owned(), |d| {
            format!(
                "TCE pages {}, {} windows, {} level{}",
                page_sizes(d.pgsizes),
                d.max_dynamic_windows_supported,
                d.levels,
                if d.levels == 1 { "" } else { "s" }
            )
        });
        let devs: Vec<&str> = p
            .devices
            .iter()
            .filter(|(_, dp, dg)| dp == phb && dg == g)
            .map(|(d, _, _)| d.as_str())
            .collect();
        let _ = writeln!(
            s,
            "Group {g} ({}) on PHB {phb}: host 32-bit window {}+{}, {ddw}",
            iova_guest::text::clean(&devs.join(", ")),
            hex(u64::from(i.dma32_window_start)),
            human_bytes(u128::from(i.dma32_window_size)),
        );
    }
    let _ = writeln!(s, "Guest: {}", iova_guest::text::clean(&p.desc));
    for b in &p.vm.phbs {
        let _ = writeln!(
            s,
            "  PHB {}: dma_win_addr={} dma_win_size={} dma64_win_addr={} ddw={} pgsz={} ({})",
            b.index,
            hex(b.dma.dma_win_addr),
            hex(b.dma.dma_win_size),
            hex(b.dma.dma64_win_addr),
            if b.dma.ddw { "on" } else { "off" },
            hex(b.dma.pgsz),
            page_sizes(b.dma.pgsz)
        );
    }
    for n in &p.vm.notes {
        let _ = writeln!(s, "  note: {}", iova_guest::text::clean(n));
    }
    let _ = writeln!(
        s,
        "\nDMA windows (each guest window becomes a host window at the same address):"
    );
    let mut rows = vec![[
        "PHB".to_owned(),
        "GROUP".to_owned(),
        "WINDOW".to_owned(),
        "FIRST".to_owned(),
        "SIZE".to_owned(),
        "GUEST TCE".to_owned(),
        "HOST TCE".to_owned(),
        "TCE_CREATE".to_owned(),
        "STATUS".to_owned(),
    ]];
    for w in &r.windows {
        rows.push([
            w.phb.to_string(),
            w.group.to_string(),
            w.window.as_str().to_owned(),
            hex(w.start),
            human_bytes(u128::from(w.size)),
            human_bytes(1u128 << w.guest_page_shift),
            w.host_page_shift
                .map_or("-".to_owned(), |s| human_bytes(1u128 << s)),
            if w.attempts.is_empty() {
                "-".to_owned()
            } else {
                w.attempts
                    .iter()
                    .map(|a| format!("L{} {}", a.levels, a.answer))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            if w.ok { "ok" } else { "FAILS" }.to_owned(),
        ]);
    }
    let mut widths = [0usize; 9];
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    for row in rows {
        let mut line = String::from(" ");
        for (c, w) in row.iter().zip(widths) {
            let _ = write!(line, " {c:<w$}");
        }
        let _ = writeln!(s, "{}", line.trim_end());
    }
    let fails: Vec<&WindowCheck> = r.windows.iter().filter(|w| !w.ok).collect();
    if !fails.is_empty() {
        let _ = writeln!(s, "\nProblems:");
        for w in fails {
            let _ = writeln!(
                s,
                "  FATAL ({}) PHB {} group {} {} window {}+{}: {}",
                w.window.when(),
                w.phb,
                w.group,
                if w.window == iova_guest::pseries::WindowKind::Dma32 {
                    "32-bit"
                } else {
                    "64-bit"
                },
                hex(w.start),
                human_bytes(u128::from(w.size)),
                iova_guest::text::clean(w.reason.as_deref().unwrap_or("refused"))
            );
        }
    }
    for n in &r.notes {
        let _ = writeln!(s, "  note: {}", iova_guest::text::clean(n));
    }
    let _ = writeln!(
        s,
        "\nResult: {}",
        if r.ok {
            "OK - the host container can create every DMA window of the guest where the guest has it"
        } else {
            "NOT OK - QEMU cannot create a guest DMA window in the host container (see Problems; `iovactl plan` proposes PHB properties)"
        }
    );
    s
}

fn run_pseries_check(p: &PseriesLoaded, as_json: bool) -> Result<ExitCode, CliError> {
    let r = check_pseries(&p.vm, &p.groups);
    if as_json {
        crate::out::println(
            &serde_json::to_string_pretty(&pseries_json(p, &r)).unwrap_or_default(),
        )?;
    } else {
        crate::out::print(&iova_guest::text::clean_lines(&pseries_text(p, &r)))?;
    }
    Ok(if r.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn run_pseries_plan(p: &PseriesLoaded, as_json: bool) -> Result<ExitCode, CliError> {
    let before = check_pseries(&p.vm, &p.groups);
    let plan: PseriesPlan = plan_pseries(&p.vm, &p.groups);
    if as_json {
        let v = json!({
            "feasible": plan.fits,
            "ok": plan.fits,
            "guest": p.desc,
            "ok_before": before.ok,
            "changes": plan.changes,
            "options": plan.options,
            "notes": plan.notes,
            "windows": plan.after.windows.iter().map(window_json).collect::<Vec<_>>(),
        });
        crate::out::println(&serde_json::to_string_pretty(&v).unwrap_or_default())?;
    } else {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Host: {}, host pages {}",
            iova_guest::text::clean(&p.loaded.source),
            p.page_source
        );
        let _ = writeln!(s, "Guest: {}", iova_guest::text::clean(&p.desc));
        if before.ok {
            let _ = writeln!(s, "\nThe VM fits as it is: no change needed.");
        }
        if !plan.changes.is_empty() {
            let _ = writeln!(s, "\nChanges:");
            for c in &plan.changes {
                let _ = writeln!(s, "  - {}", iova_guest::text::clean(c));
            }
        }
        if !plan.options.is_empty() {
            let _ = writeln!(s, "\nQEMU options:");
            for o in &plan.options {
                let _ = writeln!(s, "  {}", iova_guest::text::clean(o));
            }
        }
        if !plan.notes.is_empty() {
            let _ = writeln!(s, "\nNotes:");
            for n in &plan.notes {
                let _ = writeln!(s, "  - {}", iova_guest::text::clean(n));
            }
        }
        for w in plan.after.windows.iter().filter(|w| !w.ok) {
            let _ = writeln!(
                s,
                "  still FAILS: PHB {} group {} {}: {}",
                w.phb,
                w.group,
                w.window.as_str(),
                iova_guest::text::clean(w.reason.as_deref().unwrap_or(""))
            );
        }
        let _ = writeln!(
            s,
            "\nResult: {}",
            if plan.fits {
                "a plan fits: every window is created where the guest has it"
            } else {
                "NO PLAN - no PHB property change makes every window creatable"
            }
        );
        crate::out::print(&iova_guest::text::clean_lines(&s))?;
    }
    Ok(if plan.fits {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
