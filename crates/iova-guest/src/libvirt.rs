//! libvirt domain XML, translated to the QEMU command line libvirt would build for
//! the parts that decide the memory map, then read by [`crate::qemu_cmdline`].
//!
//! Read: `<domain type>` (kvm → KVM, qemu → TCG), `<os><type arch machine>`, the
//! `<loader type='pflash'|'rom'>` and `<nvram>`, `<os firmware='efi'>`, `<memory>`,
//! `<maxMemory slots>`, `<cpu mode>` with `<model>`, `<vendor>` and `<maxphysaddr>`,
//! `<devices>`: `<emulator>` (argv\[0\]: its name says the target;
//! the program is never run), `<hostdev type='pci'>` and `<interface type='hostdev'>`
//! sources (a `<hostdev type='mdev'>` is "cannot answer"), `<memory
//! model='dimm'|'nvdimm'|'virtio-mem'>`, `<iommu model>` with `<driver aw_bits>`,
//! `<video><model type>`, `<controller><pcihole64>`, and `<qemu:commandline>`
//! arguments. libvirt always passes `-nodefaults`, so a domain without `<video>` has no
//! VGA device. Devices that cannot change the memory map (disks, interfaces, consoles,
//! controllers, ...) are ignored; a `<memory>` device model or `<iommu>` model not
//! listed here is "cannot answer".
//!
//! The XML parser refuses DTDs (and with them every entity definition: no billion
//! laughs) and documents of more than [`MAX_NODES`] nodes.

use roxmltree::{Document, Node, ParsingOptions};
use serde::Serialize;

use super::qemu_cmdline::QemuError;

/// The most XML nodes a domain may have.
pub const MAX_NODES: u32 = 100_000;

const QEMU_NS: &str = "http://libvirt.org/schemas/domain/qemu/1.0";

fn bad(input: impl Into<String>, message: impl Into<String>) -> QemuError {
    QemuError::bad(input, message)
}

fn unmodelled(input: impl Into<String>, message: impl Into<String>) -> QemuError {
    QemuError::unmodelled(input, message)
}

/// Bytes of a libvirt scaled integer (`unit` attribute; KiB by default).
fn scaled(node: Node<'_, '_>, what: &str) -> Result<u64, QemuError> {
    let text = node.text().unwrap_or("").trim();
    scaled_value(text, node.attribute("unit"), what)
}

/// Bytes of a scaled integer given as text and unit (`<cell memory='7' unit='GiB'>`).
fn scaled_value(text: &str, unit: Option<&str>, what: &str) -> Result<u64, QemuError> {
    let n: u64 = text
        .parse()
        .map_err(|_| bad(format!("<{what}>{text}"), "not a whole number"))?;
    let unit = unit.unwrap_or("KiB");
    let mul: u64 = match unit {
        "b" | "bytes" => 1,
        "KB" => 1_000,
        "k" | "K" | "KiB" => 1 << 10,
        "MB" => 1_000_000,
        "M" | "MiB" => 1 << 20,
        "GB" => 1_000_000_000,
        "G" | "GiB" => 1 << 30,
        "TB" => 1_000_000_000_000,
        "T" | "TiB" => 1 << 40,
        _ => return Err(bad(format!("<{what} unit='{unit}'>"), "unknown unit")),
    };
    n.checked_mul(mul)
        .ok_or_else(|| bad(format!("<{what}>{text}"), "past 2^64 bytes"))
}

fn child<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    n.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
}

fn children<'a, 'i: 'a>(n: Node<'a, 'i>, name: &'a str) -> impl Iterator<Item = Node<'a, 'i>> + 'a {
    n.children()
        .filter(move |c| c.is_element() && c.tag_name().name() == name)
}

/// The devices libvirt assigns with vfio-pci: PCI host devices, and network interfaces
/// that are host devices (an SR-IOV VF), each with its element's name for messages.
/// USB and SCSI host devices are not VFIO. A hostdev whose guest address is
/// `type='unassigned'` stays with libvirt (kept ready for a later use) and is not
/// passed to QEMU.
fn vfio_hostdevs<'a, 'i: 'a>(
    devs: Node<'a, 'i>,
) -> impl Iterator<Item = (Node<'a, 'i>, &'static str)> + 'a {
    children(devs, "hostdev")
        .filter(|h| h.attribute("type") == Some("pci") && !unassigned(*h))
        .map(|h| (h, "<hostdev type='pci'>"))
        .chain(
            children(devs, "interface")
                .filter(|i| i.attribute("type") == Some("hostdev"))
                .map(|i| (i, "<interface type='hostdev'>")),
        )
}

/// The host PCI address (`0000:41:00.0`) of such a device's `<source><address>`.
fn hostdev_bdf(h: Node<'_, '_>, what: &str) -> Result<String, QemuError> {
    let a = child(h, "source")
        .and_then(|s| child(s, "address"))
        .ok_or_else(|| bad(what, "no <source><address>"))?;
    let n = |k| num_attr(a, k, "address");
    Ok(format!(
        "{:04x}:{:02x}:{:02x}.{:x}",
        n("domain")?,
        n("bus")?,
        n("slot")?,
        n("function")?
    ))
}

/// Whether a device's guest address is `<address type='unassigned'/>`.
fn unassigned(n: Node<'_, '_>) -> bool {
    child(n, "address").and_then(|a| a.attribute("type")) == Some("unassigned")
}

/// Hex or decimal attribute value (`0x41`, `65`).
fn num_attr(n: Node<'_, '_>, name: &str, what: &str) -> Result<u64, QemuError> {
    let t = n.attribute(name).unwrap_or("0");
    let v = match t.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => t.parse().ok(),
    };
    v.ok_or_else(|| bad(format!("<{what} {name}='{t}'>"), "not a number"))
}

/// The QEMU command line libvirt would build from `xml`, as far as the memory map is
/// concerned. `source` names the input in messages.
pub fn domain_to_argv(source: &str, xml: &str) -> Result<Vec<String>, QemuError> {
    read_domain(source, xml).map(|(argv, _)| argv)
}

/// What libvirt does for a domain besides building its command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainPolicy {
    /// How libvirt sets the QEMU process's locked-memory limit.
    pub memlock: LibvirtMemlock,
    /// The assigned devices libvirt binds to vfio-pci itself at start (`managed='yes'`;
    /// libvirt's default is `no`: the device must already be bound).
    pub managed: Vec<String>,
}

/// The QEMU command line of [`domain_to_argv`] and the domain's policy
/// ([`DomainPolicy`]), from one parse of `xml`.
pub fn read_domain(source: &str, xml: &str) -> Result<(Vec<String>, DomainPolicy), QemuError> {
    let opts = ParsingOptions {
        allow_dtd: false,
        nodes_limit: MAX_NODES,
        ..ParsingOptions::default()
    };
    let doc = Document::parse_with_options(xml, opts)
        .map_err(|e| bad(source, format!("not a libvirt domain: {e}")))?;
    let dom = doc.root_element();
    if dom.tag_name().name() != "domain" {
        return Err(bad(
            source,
            format!(
                "the root element is <{}>, not <domain>",
                dom.tag_name().name()
            ),
        ));
    }
    let argv = argv_of(source, dom)?;
    // The same devices the command line assigns, those libvirt binds itself.
    let managed = match child(dom, "devices") {
        Some(devs) => vfio_hostdevs(devs)
            .filter(|(h, _)| h.attribute("managed") == Some("yes"))
            .map(|(h, what)| hostdev_bdf(h, what))
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    Ok((
        argv,
        DomainPolicy {
            memlock: memlock_of(dom)?,
            managed,
        },
    ))
}

/// The command line of a parsed `<domain>`.
fn argv_of(source: &str, dom: Node<'_, '_>) -> Result<Vec<String>, QemuError> {
    let os = child(dom, "os").ok_or_else(|| bad(source, "no <os> element"))?;
    let ty = child(os, "type").ok_or_else(|| bad(source, "no <os><type> element"))?;
    let arch = ty.attribute("arch").unwrap_or("x86_64");
    if let Some(ls) = child(dom, "launchSecurity") {
        return Err(unmodelled(
            format!(
                "<launchSecurity type='{}'>",
                ls.attribute("type").unwrap_or("")
            ),
            "confidential guests (SEV, SEV-SNP, TDX) are not modelled",
        ));
    }
    // An i686 guest run by qemu-system-x86_64 (its <emulator>) is a PC like an x86_64
    // one (libvirt's test suite has them).
    let x86 = matches!(arch, "x86_64" | "i686");
    let devices = child(dom, "devices");
    let emulator = devices
        .and_then(|d| child(d, "emulator"))
        .and_then(|e| e.text())
        .map(|t| t.trim().to_owned());
    if !matches!(arch, "x86_64" | "i686" | "aarch64") {
        // armv7l on qemu-system-aarch64 (a 32-bit vCPU), ppc64, s390x, riscv64, ...
        return Err(unmodelled(
            format!("<type arch='{arch}'>"),
            "only x86_64 (and i686 on qemu-system-x86_64) and aarch64 guests are modelled",
        ));
    }
    let bin = match (emulator, arch) {
        (Some(e), _) => e,
        (None, "x86_64") => "qemu-system-x86_64".to_owned(),
        (None, "aarch64") => "qemu-system-aarch64".to_owned(),
        (None, a) => {
            return Err(unmodelled(
                format!("<type arch='{a}'>"),
                "only x86_64 and aarch64 are modelled",
            ));
        }
    };
    let mut argv = vec![bin, "-nodefaults".to_owned()];
    match dom.attribute("type") {
        Some("kvm") => argv.extend(["-accel".to_owned(), "kvm".to_owned()]),
        Some("qemu") | None => argv.extend(["-accel".to_owned(), "tcg".to_owned()]),
        Some(t) => {
            return Err(unmodelled(
                format!("<domain type='{t}'>"),
                "only kvm and qemu domains are modelled",
            ));
        }
    }
    let mut machine = ty
        .attribute("machine")
        .unwrap_or(if arch == "aarch64" { "virt" } else { "pc" })
        .to_owned();

    // Firmware. A pflash loader, or `<os firmware='efi'>` (libvirt picks the image), is
    // a flash device for the code and, unless the loader is stateless, one for the
    // variables: the domain's <nvram>, or the file libvirt makes for a read-only loader.
    // The images' sizes are read where they exist here (they decide only where the
    // flash sits below 4 GiB, which is not DMA-mapped).
    let loader = child(os, "loader");
    let path = loader
        .and_then(|l| l.text())
        .map(|t| t.trim().to_owned())
        .unwrap_or_default();
    let ltype = loader.and_then(|l| l.attribute("type"));
    let auto_efi = os.attribute("firmware") == Some("efi") && x86 && ltype != Some("rom");
    if ltype == Some("pflash") || auto_efi {
        let code = if path.is_empty() {
            "efi-firmware-chosen-by-libvirt".to_owned()
        } else {
            path.clone()
        };
        argv.extend([
            "-drive".to_owned(),
            format!(
                "if=pflash,format=raw,unit=0,readonly=on,file={}",
                code.replace(',', ",,")
            ),
        ]);
        let stateless = loader.and_then(|l| l.attribute("stateless")) == Some("yes");
        let readonly = loader.and_then(|l| l.attribute("readonly")) == Some("yes");
        let nvram = child(os, "nvram").map(|n| n.text().unwrap_or("").trim().to_owned());
        let vars = match nvram {
            Some(n) if !n.is_empty() => Some(n),
            Some(_) => Some("nvram-made-by-libvirt".to_owned()),
            None if !stateless && (auto_efi || readonly) => {
                Some("nvram-made-by-libvirt".to_owned())
            }
            None => None,
        };
        if let Some(v) = vars {
            argv.extend([
                "-drive".to_owned(),
                format!("if=pflash,format=raw,unit=1,file={}", v.replace(',', ",,")),
            ]);
        }
    } else if !path.is_empty() && ltype != Some("pflash") {
        argv.extend(["-bios".to_owned(), path]);
    } else if os.attribute("firmware") == Some("bios") && x86 {
        // libvirt picks the BIOS image from its firmware descriptors and passes it with
        // -bios: its size decides the ROM below 4 GiB, and the XML does not say it.
        argv.extend(["-bios".to_owned(), "bios-chosen-by-libvirt".to_owned()]);
    }

    // Memory devices first: libvirt's -m is <memory> minus them.
    let mut dev_args: Vec<String> = Vec::new();
    let mut dimm_total: u64 = 0;
    let mut iommu_machine: Option<String> = None;
    let mut vga = false;
    if let Some(devs) = devices {
        // libvirt's aliases: a DIMM or NVDIMM is named by its slot (one without gets
        // the lowest free slot, in document order), a virtio-mem device by its count.
        let slot_of = |m: Node<'_, '_>| {
            child(m, "address")
                .filter(|a| a.attribute("type") == Some("dimm"))
                .and_then(|a| a.attribute("slot"))
                .and_then(|v| v.parse::<usize>().ok())
        };
        let mut used: Vec<usize> = children(devs, "memory").filter_map(slot_of).collect();
        let mut virtio_mems = 0usize;
        for m in children(devs, "memory") {
            let model = m.attribute("model").unwrap_or("");
            let target = child(m, "target")
                .ok_or_else(|| bad(format!("<memory model='{model}'>"), "no <target>"))?;
            let size = scaled(
                child(target, "size")
                    .ok_or_else(|| bad(format!("<memory model='{model}'>"), "no <target><size>"))?,
                "size",
            )?;
            dimm_total = dimm_total
                .checked_add(size)
                .ok_or_else(|| bad("<memory>", "sizes past 2^64"))?;
            // libvirt rounds memory modules up to 2 MiB (qemuDomainAlignMemorySizes;
            // "dimm memory modules require 2MiB alignment"), after taking their
            // unrounded sizes off <memory> for the initial memory.
            let size = size
                .checked_next_multiple_of(2 << 20)
                .ok_or_else(|| bad("<memory>", "sizes past 2^64"))?;
            let id = if model == "virtio-mem" {
                virtio_mems += 1;
                format!("virtiomem{}", virtio_mems - 1)
            } else {
                let slot = slot_of(m).unwrap_or_else(|| {
                    let free = (0..).find(|s| !used.contains(s)).unwrap_or(0);
                    used.push(free);
                    free
                });
                let prefix = if model == "nvdimm" { "nvdimm" } else { "dimm" };
                format!("{prefix}{slot}")
            };
            dev_args.extend([
                "-object".to_owned(),
                format!("memory-backend-ram,id=mem{id},size={size}"),
            ]);
            let addr = child(m, "address")
                .filter(|a| a.attribute("type") == Some("dimm") && a.attribute("base").is_some())
                .map(|a| num_attr(a, "base", "address"))
                .transpose()?;
            let addr = addr.map_or(String::new(), |a| format!(",addr={a:#x}"));
            let dev = match model {
                "dimm" => format!("pc-dimm,memdev=mem{id},id={id}{addr}"),
                "nvdimm" => {
                    machine.push_str(",nvdimm=on");
                    format!("nvdimm,memdev=mem{id},id={id}{addr}")
                }
                "virtio-mem" => {
                    let block = child(target, "block")
                        .map(|b| scaled(b, "block"))
                        .transpose()?
                        .unwrap_or(2 << 20);
                    let req = child(target, "requested")
                        .map(|b| scaled(b, "requested"))
                        .transpose()?
                        .unwrap_or(0);
                    // <target><address base=> places it (QEMU's memaddr=).
                    let base = child(target, "address")
                        .filter(|a| a.attribute("base").is_some())
                        .map(|a| num_attr(a, "base", "address"))
                        .transpose()?
                        .map_or(String::new(), |b| format!(",memaddr={b:#x}"));
                    format!(
                        "virtio-mem-pci,memdev=mem{id},id={id},block-size={block},requested-size={req}{base}"
                    )
                }
                other => {
                    return Err(unmodelled(
                        format!("<memory model='{other}'>"),
                        "this memory device model is not modelled",
                    ));
                }
            };
            dev_args.extend(["-device".to_owned(), dev]);
        }
        // A mediated device (mdev) is VFIO too, with its own IOMMU backing: not
        // modelled.
        if let Some(m) = children(devs, "hostdev").find(|h| h.attribute("type") == Some("mdev")) {
            let uuid = child(m, "source")
                .and_then(|s| child(s, "address"))
                .and_then(|a| a.attribute("uuid"))
                .unwrap_or("?");
            return Err(unmodelled(
                format!("<hostdev type='mdev'> {uuid}"),
                "a mediated device (vfio-mdev) is not modelled",
            ));
        }
        for (h, what) in vfio_hostdevs(devs) {
            dev_args.extend([
                "-device".to_owned(),
                format!("vfio-pci,host={}", hostdev_bdf(h, what)?),
            ]);
        }
        for io in children(devs, "iommu") {
            let model = io.attribute("model").unwrap_or("");
            let aw = child(io, "driver").and_then(|d| d.attribute("aw_bits"));
            let aw = aw.map_or(String::new(), |a| format!(",aw-bits={a}"));
            match model {
                "intel" => dev_args.extend(["-device".to_owned(), format!("intel-iommu{aw}")]),
                "virtio" => {
                    dev_args.extend(["-device".to_owned(), format!("virtio-iommu-pci{aw}")])
                }
                "amd" => dev_args.extend(["-device".to_owned(), "amd-iommu".to_owned()]),
                "smmuv3" => iommu_machine = Some("smmuv3".to_owned()),
                other => {
                    return Err(unmodelled(
                        format!("<iommu model='{other}'>"),
                        "this vIOMMU model is not modelled",
                    ));
                }
            }
        }
        // libvirt adds a video device of the default type to a domain with graphics
        // and none (virDomainDefAddImplicitVideo); the default type of QEMU's x86
        // machines is cirrus (a VGA device), of aarch64 virt virtio (virtio-gpu-pci).
        let default_video = if x86 { "cirrus" } else { "virtio" };
        let videos: Vec<Node<'_, '_>> = children(devs, "video").collect();
        let implicit = videos.is_empty() && children(devs, "graphics").next().is_some();
        let types: Vec<&str> = if implicit {
            vec![default_video]
        } else {
            videos
                .iter()
                .map(|v| {
                    child(*v, "model")
                        .and_then(|m| m.attribute("type"))
                        .unwrap_or(default_video)
                })
                .collect()
        };
        for (i, t) in types.into_iter().enumerate() {
            let primary = i == 0;
            let dev = match (t, primary && x86) {
                ("none", _) => None,
                ("vga", true) => Some("VGA"),
                ("cirrus", true) => Some("cirrus-vga"),
                ("qxl", true) => Some("qxl-vga"),
                ("virtio", true) => Some("virtio-vga"),
                ("bochs", _) => Some("bochs-display"),
                ("ramfb", _) => Some("ramfb"),
                ("vga" | "cirrus" | "qxl" | "virtio", _) => Some("secondary-vga"),
                (other, _) => {
                    return Err(unmodelled(
                        format!("<video><model type='{other}'>"),
                        "this video model is not modelled",
                    ));
                }
            };
            if let Some(d) = dev {
                vga |= matches!(d, "VGA" | "cirrus-vga" | "qxl-vga" | "virtio-vga");
                dev_args.extend(["-device".to_owned(), d.to_owned()]);
            }
        }
        for c in children(devs, "controller") {
            if c.attribute("model") == Some("ibmvscsi") {
                // libvirt writes spapr-vscsi, a pseries device.
                return Err(unmodelled(
                    "<controller type='scsi' model='ibmvscsi'>",
                    "the sPAPR VSCSI controller (spapr-vscsi) is not modelled here",
                ));
            }
            if let Some(h) = child(c, "pcihole64") {
                let size = scaled(h, "pcihole64")?;
                let dev = match c.attribute("model") {
                    Some("pcie-root") => "q35-pcihost",
                    _ => "i440FX-pcihost",
                };
                dev_args.extend([
                    "-global".to_owned(),
                    format!("{dev}.pci-hole64-size={size}"),
                ]);
            }
        }
    }
    let _ = vga;
    if let Some(i) = iommu_machine {
        machine.push_str(&format!(",iommu={i}"));
    }
    argv.extend(["-machine".to_owned(), machine]);

    // Memory. libvirt rounds the initial memory up to whole MiB
    // (qemuDomainAlignMemorySizes; 256 MiB on ppc64, not modelled here), each NUMA
    // cell on its own; with cells, QEMU's -m is their sum and each cell gets a RAM
    // backend and `-numa node,memdev=`.
    let round = |v: u64, what: &str| {
        v.checked_next_multiple_of(1 << 20)
            .ok_or_else(|| bad(what.to_owned(), "past 2^64 bytes"))
    };
    let cells: Vec<Node<'_, '_>> = child(dom, "cpu")
        .and_then(|c| child(c, "numa"))
        .map(|n| children(n, "cell").collect())
        .unwrap_or_default();
    let initial = if cells.is_empty() {
        let mem = child(dom, "memory").ok_or_else(|| bad(source, "no <memory> element"))?;
        let total = scaled(mem, "memory")?;
        let initial = total
            .checked_sub(dimm_total)
            .filter(|v| *v > 0)
            .ok_or_else(|| bad("<memory>", "smaller than its memory devices"))?;
        round(initial, "<memory>")?
    } else {
        let mut sum: u64 = 0;
        for (i, c) in cells.iter().enumerate() {
            let id = c.attribute("id").unwrap_or("0");
            let what = format!("<numa><cell id='{id}'>");
            let text = c
                .attribute("memory")
                .ok_or_else(|| bad(what.clone(), "no memory attribute"))?;
            let size = round(
                scaled_value(text, c.attribute("unit"), "cell memory")?,
                &what,
            )?;
            sum = sum
                .checked_add(size)
                .ok_or_else(|| bad(what.clone(), "the cells' memory passes 2^64 bytes"))?;
            argv.extend([
                "-object".to_owned(),
                format!("memory-backend-ram,id=ram-node{i},size={size}"),
                "-numa".to_owned(),
                format!("node,nodeid={id},memdev=ram-node{i}"),
            ]);
        }
        sum
    };
    let mut m = format!("size={initial}b");
    if let Some(mx) = child(dom, "maxMemory") {
        // Rounded up to whole MiB like the memory (QEMU needs whole pages).
        let max = round(scaled(mx, "maxMemory")?, "<maxMemory>")?;
        let slots = mx.attribute("slots").unwrap_or("0");
        m.push_str(&format!(",slots={slots},maxmem={max}b"));
    }
    argv.extend(["-m".to_owned(), m]);

    // CPU. Without a model (no <cpu>, or one with only a topology) QEMU's default is
    // used, except that libvirt names cortex-a15 for an aarch64 TCG domain.
    let tcg = dom.attribute("type") == Some("qemu");
    let default_cpu = || (arch == "aarch64" && tcg).then(|| "cortex-a15".to_owned());
    let cpu_arg = match child(dom, "cpu") {
        Some(cpu) => {
            let mode = cpu.attribute("mode").unwrap_or("custom");
            let model = child(cpu, "model");
            let named = model.and_then(|m| m.text()).map(|t| t.trim().to_owned());
            let base = match mode {
                "host-passthrough" => Some("host".to_owned()),
                // libvirt expands host-model (and a custom CPU with match='minimum',
                // which it raises to the host's) to a named model of the host's CPU (from
                // its KVM or TCG capabilities of the host): the host's vendor, with the
                // default width of named models. (host-passthrough without KVM: libvirt
                // refuses, as QEMU refuses `-cpu host`.)
                "host-model" if x86 => Some(crate::qemu_cmdline::LIBVIRT_HOST_MODEL.to_owned()),
                _ if x86 && cpu.attribute("match") == Some("minimum") => {
                    Some(crate::qemu_cmdline::LIBVIRT_HOST_MODEL.to_owned())
                }
                "host-model" => Some("host,host-phys-bits=off".to_owned()),
                "maximum" => Some("max".to_owned()),
                _ => named.or_else(default_cpu),
            };
            let mut props = String::new();
            let vendor = child(cpu, "vendor")
                .and_then(|v| v.text())
                .or_else(|| model.and_then(|m| m.attribute("vendor_id")));
            if let Some(v) = vendor {
                let v = match v.trim() {
                    "AMD" => "AuthenticAMD",
                    "Intel" => "GenuineIntel",
                    other => other,
                };
                props.push_str(&format!(",vendor={v}"));
            }
            // Features, as libvirt passes them: `name=on` / `name=off` (lm=off and
            // aarch64=off make a 32-bit vCPU, which the model refuses to guess).
            for f in children(cpu, "feature") {
                let Some(name) = f.attribute("name") else {
                    continue;
                };
                match f.attribute("policy").unwrap_or("require") {
                    "disable" | "forbid" => props.push_str(&format!(",{name}=off")),
                    "require" | "force" => props.push_str(&format!(",{name}=on")),
                    _ => {}
                }
            }
            if let Some(p) = child(cpu, "maxphysaddr") {
                match p.attribute("mode") {
                    Some("passthrough") => {
                        props.push_str(",host-phys-bits=on");
                        if let Some(l) = p.attribute("limit") {
                            props.push_str(&format!(",host-phys-bits-limit={l}"));
                        }
                    }
                    // Without bits= libvirt passes nothing: QEMU's default width.
                    Some("emulate") => {
                        if let Some(bits) = p.attribute("bits") {
                            props.push_str(&format!(",phys-bits={bits}"));
                        }
                    }
                    other => {
                        return Err(bad(
                            format!("<maxphysaddr mode='{}'>", other.unwrap_or("")),
                            "mode must be passthrough or emulate",
                        ));
                    }
                }
            }
            match base {
                Some(b) => Some(format!("{b}{props}")),
                // Properties without a model: QEMU's default model with them.
                None if !props.is_empty() => Some(format!(
                    "{}{props}",
                    if x86 { "qemu64" } else { "cortex-a15" }
                )),
                None => None,
            }
        }
        None => default_cpu(),
    };
    if let Some(c) = cpu_arg {
        argv.extend(["-cpu".to_owned(), c]);
    }
    argv.extend(dev_args);

    // <qemu:commandline> passthrough arguments.
    for cl in dom.children().filter(|c| {
        c.is_element()
            && c.tag_name().name() == "commandline"
            && c.tag_name().namespace() == Some(QEMU_NS)
    }) {
        for a in children(cl, "arg") {
            if let Some(v) = a.attribute("value") {
                argv.push(v.to_owned());
            }
        }
    }
    Ok(argv)
}

/// How libvirt sets a domain's locked-memory limit (`RLIMIT_MEMLOCK` of the QEMU
/// process, `qemuDomainGetMemLockLimitBytes`), as far as the domain XML decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum LibvirtMemlock {
    /// `<memtune><hard_limit>`: the limit, whatever else the domain has.
    HardLimit {
        /// Bytes.
        bytes: u64,
    },
    /// `<memoryBacking><locked/>`: unlimited.
    Locked,
    /// Neither: libvirt's own formula for domains with VFIO host devices (guest memory
    /// times the number of assigned devices with a vIOMMU, once without, plus 1 GiB).
    Formula,
}

/// The locked-memory policy of a parsed `<domain>`.
fn memlock_of(dom: Node<'_, '_>) -> Result<LibvirtMemlock, QemuError> {
    if let Some(h) = child(dom, "memtune").and_then(|m| child(m, "hard_limit")) {
        return Ok(LibvirtMemlock::HardLimit {
            bytes: scaled(h, "hard_limit")?,
        });
    }
    if child(dom, "memoryBacking").is_some_and(|m| child(m, "locked").is_some()) {
        return Ok(LibvirtMemlock::Locked);
    }
    Ok(LibvirtMemlock::Formula)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOMAIN: &str = r#"<domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>gpu</name>
  <memory unit='GiB'>20</memory>
  <maxMemory slots='4' unit='GiB'>64</maxMemory>
  <os><type arch='x86_64' machine='pc-q35-7.0'>hvm</type>
    <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>
    <nvram>/var/lib/libvirt/qemu/nvram/gpu_VARS.fd</nvram></os>
  <cpu mode='custom'><model>EPYC</model><maxphysaddr mode='emulate' bits='42'/></cpu>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <hostdev mode='subsystem' type='pci' managed='yes'>
      <source><address domain='0x0000' bus='0x41' slot='0x00' function='0x0'/></source>
    </hostdev>
    <memory model='dimm'><target><size unit='GiB'>4</size><node>0</node></target></memory>
    <iommu model='intel'><driver aw_bits='48'/></iommu>
    <disk type='file' device='disk'><source file='/x.qcow2'/></disk>
  </devices>
  <qemu:commandline><qemu:arg value='-global'/><qemu:arg value='q35-pcihost.pci-hole64-size=64G'/></qemu:commandline>
</domain>"#;

    #[test]
    fn a_domain_becomes_its_command_line() {
        let argv = domain_to_argv("d.xml", DOMAIN).unwrap();
        let line = argv.join(" ");
        for want in [
            "/usr/bin/qemu-system-x86_64 -nodefaults -accel kvm",
            "-machine pc-q35-7.0",
            "-m size=17179869184b,slots=4,maxmem=68719476736b",
            "-cpu EPYC,phys-bits=42",
            "-device vfio-pci,host=0000:41:00.0",
            "-device pc-dimm,memdev=memdimm0,id=dimm0",
            "-device intel-iommu,aw-bits=48",
            "-global q35-pcihost.pci-hole64-size=64G",
            "if=pflash",
        ] {
            assert!(line.contains(want), "{want} not in {line}");
        }
        let vm = crate::qemu_cmdline::parse_qemu_argv(&argv, |_, _| None).unwrap();
        assert_eq!(vm.ram, 16 << 30);
        assert!(!vm.vga);
    }

    #[test]
    fn vf_interfaces_are_assigned_and_mediated_devices_cannot_be_answered() {
        // An SR-IOV VF given as a network interface is assigned with vfio-pci.
        let vf = DOMAIN.replace(
            "<disk type='file'",
            "<interface type='hostdev' managed='yes'><source><address type='pci' \
             domain='0x0000' bus='0x42' slot='0x00' function='0x3'/></source></interface>\
             <hostdev mode='subsystem' type='usb'><source><vendor id='0x1234'/></source>\
             </hostdev><disk type='file'",
        );
        let line = domain_to_argv("vf.xml", &vf).unwrap().join(" ");
        assert!(
            line.contains("-device vfio-pci,host=0000:42:00.3"),
            "{line}"
        );
        assert_eq!(
            line.matches("vfio-pci").count(),
            2,
            "the USB hostdev is not VFIO: {line}"
        );
        // A mediated device is VFIO with its own IOMMU backing: never ignored.
        let mdev = DOMAIN.replace(
            "<disk type='file'",
            "<hostdev mode='subsystem' type='mdev' model='vfio-pci'><source><address \
             uuid='c2177883-f1bb-47f0-914d-32a22e3a8804'/></source></hostdev><disk type='file'",
        );
        let e = domain_to_argv("m.xml", &mdev).unwrap_err();
        assert!(e.is_unmodelled(), "{e}");
        assert!(e.to_string().contains("mdev"), "{e}");
    }

    #[test]
    fn memory_is_rounded_up_to_mib_and_numa_cells_add_up() {
        // libvirt gives QEMU whole MiB: 219100 KiB becomes 214 MiB.
        let xml = DOMAIN
            .replace("<memory unit='GiB'>20</memory>", "<memory unit='KiB'>4413404</memory>")
            .replace(
                "<memory model='dimm'><target><size unit='GiB'>4</size><node>0</node></target></memory>",
                "",
            );
        let line = domain_to_argv("r.xml", &xml).unwrap().join(" ");
        assert!(
            line.contains(&format!("-m size={}b", 4310u64 << 20)),
            "{line}"
        );
        // With NUMA cells, -m is the sum of the (rounded) cells, whatever <memory> says,
        // and each cell has its backend.
        let xml = DOMAIN.replace(
            "<maxphysaddr mode='emulate' bits='42'/>",
            "<maxphysaddr mode='emulate' bits='42'/><numa><cell id='0' cpus='0' memory='20' \
             unit='GiB'/><cell id='1' cpus='1' memory='22' unit='GiB'/></numa>",
        );
        let argv = domain_to_argv("n.xml", &xml).unwrap();
        let line = argv.join(" ");
        assert!(
            line.contains(&format!("-m size={}b", 42u64 << 30)),
            "{line}"
        );
        assert!(
            line.contains("-numa node,nodeid=1,memdev=ram-node1"),
            "{line}"
        );
        let vm = crate::qemu_cmdline::parse_qemu_argv(&argv, |_, _| None).unwrap();
        assert_eq!(vm.ram, 42 << 30);
    }

    #[test]
    fn cpu_spellings_of_libvirt() {
        // <maxphysaddr mode='emulate'/> without bits: QEMU's default.
        let no_bits = DOMAIN.replace(
            "<maxphysaddr mode='emulate' bits='42'/>",
            "<maxphysaddr mode='emulate'/>",
        );
        let line = domain_to_argv("e.xml", &no_bits).unwrap().join(" ");
        assert!(
            line.contains("-cpu EPYC ") || line.ends_with("-cpu EPYC"),
            "{line}"
        );
        // host-model, with KVM or without: a named model of the host's vendor, 40 bits.
        for t in ["kvm", "qemu"] {
            let xml = DOMAIN
                .replace("<domain type='kvm'", &format!("<domain type='{t}'"))
                .replace(
                    "<cpu mode='custom'><model>EPYC</model>",
                    "<cpu mode='host-model'>",
                )
                .replace("<maxphysaddr mode='emulate' bits='42'/>", "");
            let argv = domain_to_argv("h.xml", &xml).unwrap();
            assert!(argv.join(" ").contains("-cpu libvirt:host-model"), "{t}");
            let vm = crate::qemu_cmdline::parse_qemu_argv(&argv, |_, _| None).unwrap();
            let host = crate::qemu_model::HostCpu {
                vendor: Some(crate::CpuVendor::Intel),
                phys_bits: Some(46),
            };
            let m =
                crate::qemu_model::model(&vm, crate::qemu_cmdline::QemuVersion::new(10, 0), &host)
                    .unwrap();
            assert_eq!(
                (m.cpu_vendor, m.phys_bits),
                (crate::CpuVendor::Intel, Some(40)),
                "{t}"
            );
        }
    }

    #[test]
    fn libvirt_binds_only_the_managed_hostdevs() {
        // managed='yes' on the hostdev and on the VF interface; a hostdev without the
        // attribute is unmanaged (libvirt's default) and must be bound beforehand.
        let xml = DOMAIN.replace(
            "<disk type='file'",
            "<interface type='hostdev' managed='yes'><source><address type='pci' \
             domain='0x0000' bus='0x42' slot='0x00' function='0x3'/></source></interface>\
             <hostdev mode='subsystem' type='pci'><source><address domain='0x0000' \
             bus='0x43' slot='0x00' function='0x0'/></source></hostdev><disk type='file'",
        );
        let (argv, policy) = read_domain("m.xml", &xml).unwrap();
        assert!(argv.join(" ").contains("vfio-pci,host=0000:43:00.0"));
        assert_eq!(policy.managed, ["0000:41:00.0", "0000:42:00.3"]);
        // An unassigned hostdev is not given to QEMU.
        let xml = DOMAIN.replace(
            "<disk type='file'",
            "<hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x0000' \
             bus='0x44' slot='0x00' function='0x0'/></source><address type='unassigned'/>\
             </hostdev><disk type='file'",
        );
        let (argv, policy) = read_domain("u.xml", &xml).unwrap();
        assert!(!argv.join(" ").contains("0000:44:00.0"));
        assert_eq!(policy.managed, ["0000:41:00.0"]);
    }

    #[test]
    fn dtds_entities_and_garbage_are_refused() {
        let bomb = r#"<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><domain>&b;</domain>"#;
        let e = domain_to_argv("bomb.xml", bomb).unwrap_err();
        assert!(e.to_string().contains("bomb.xml"), "{e}");
        assert!(domain_to_argv("x", "<domain").is_err());
        assert!(
            domain_to_argv("x", "<vm/>")
                .unwrap_err()
                .to_string()
                .contains("<vm>")
        );
        let e = domain_to_argv("x", &DOMAIN.replace("model='intel'", "model='fancy'")).unwrap_err();
        assert!(e.is_unmodelled());
        let e =
            domain_to_argv("x", &DOMAIN.replace("unit='GiB'>20", "unit='parsec'>20")).unwrap_err();
        assert!(e.to_string().contains("parsec"));
    }
}
