//! The bad-input catalogue: every command and every parser fed the inputs a real user
//! produces by mistake (empty and truncated files, wrong radix, inverted and overflowing
//! ranges, fractional sizes, unknown devices and flavours, directories, FIFOs and
//! dangling links where a file is expected, binary garbage, non-UTF-8, huge numbers...).
//!
//! Each case is one row of [`CASES`]: the arguments, the files to create in a fresh
//! temporary directory (optionally on top of a small valid sysfs tree), the exit code
//! and the substrings stderr must contain. Every row asserts: no panic (exit code not
//! 101, no "panicked" on stderr), the expected exit code (2 for bad input), and a
//! message that names the input (the path, the device, the token).
//!
//! `{T}` in an argument or an expected substring stands for the case's temporary
//! directory. The tests run as root, so permission bits deny nothing; unreadable
//! inputs are made of a directory, a FIFO or a dangling symbolic link instead.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What to put at a path below the case directory.
#[derive(Clone, Copy)]
enum F {
    /// A regular file with these bytes.
    Bytes(&'static [u8]),
    /// An empty directory.
    Dir,
    /// A named pipe with no writer (reading it would block forever).
    Fifo,
    /// A symbolic link to a path that does not exist.
    Dangling,
    /// A symbolic link with this target text.
    Link(&'static str),
    /// Nothing: whatever the base tree has there is removed.
    Absent,
}

/// What the case directory starts with.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Base {
    /// Nothing.
    Empty,
    /// A small valid sysfs tree under `{T}/sys` (see [`valid_sysfs`]) and a valid trace
    /// at `{T}/ok.trace`.
    Sysfs,
}

/// Where the command's standard output goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stdout {
    /// `/dev/null`.
    Null,
    /// `/dev/full`: every write fails with ENOSPC.
    Full,
    /// A pipe whose reader is already gone: every write fails with EPIPE.
    ClosedPipe,
}

struct Case {
    name: &'static str,
    args: &'static [&'static str],
    base: Base,
    files: &'static [(&'static str, F)],
    code: i32,
    expect: &'static [&'static str],
    stdout: Stdout,
}

const fn case(
    name: &'static str,
    base: Base,
    files: &'static [(&'static str, F)],
    args: &'static [&'static str],
    expect: &'static [&'static str],
) -> Case {
    Case {
        name,
        args,
        base,
        files,
        code: 2,
        expect,
        stdout: Stdout::Null,
    }
}

/// [`case`] with another exit code.
const fn case_code(
    code: i32,
    name: &'static str,
    base: Base,
    files: &'static [(&'static str, F)],
    args: &'static [&'static str],
    expect: &'static [&'static str],
) -> Case {
    Case {
        code,
        ..case(name, base, files, args, expect)
    }
}

use Base::{Empty, Sysfs};
use F::{Absent, Bytes, Dangling, Dir, Fifo, Link};

macro_rules! rr {
    () => {
        "sys/kernel/iommu_groups/1/reserved_regions"
    };
}
const INSPECT: &[&str] = &["inspect", "--sysfs-root", "{T}/sys"];

/// `inspect --sysfs-root {T}/sys` with the tree's file `$path` replaced by `$f`,
/// expecting the path and the given substrings.
macro_rules! sysfs_case {
    ($name:expr, $path:expr, $f:expr, [$($e:expr),*]) => {
        case($name, Sysfs, &[($path, $f)], INSPECT, &[concat!("{T}/", $path), $($e),*])
    };
}

/// `replay` of the trace `$text` on the valid tree, expecting the trace path and the
/// given substrings.
macro_rules! trace_case {
    ($name:expr, $text:expr, [$($e:expr),*]) => {
        case(
            $name,
            Sysfs,
            &[("bad.trace", Bytes($text))],
            &["replay", "--sysfs-root", "{T}/sys", "--device", "03:00.0", "{T}/bad.trace"],
            &["{T}/bad.trace", $($e),*],
        )
    };
}

/// `check --qemu-version 10.0 -- qemu-system-x86_64 ARGS...` expecting exit `$code` and
/// the given substrings.
macro_rules! vmm_case {
    ($name:expr, $code:expr, [$($a:expr),*], [$($e:expr),*]) => {
        case(
            $name,
            Sysfs,
            &[],
            &[
                "check", "--sysfs-root", "{T}/sys", "--device", "03:00.0", "--qemu-version",
                "10.0", "--", "qemu-system-x86_64", $($a),*
            ],
            &[$($e),*],
        )
        .exit($code)
    };
}

impl Case {
    /// The same case expecting another exit code.
    const fn exit(mut self, code: i32) -> Case {
        self.code = code;
        self
    }
}

/// `check` of the layout file `$text`, expecting the given substrings.
macro_rules! layout_case {
    ($name:expr, $text:expr, [$($e:expr),*]) => {
        case(
            $name,
            Sysfs,
            &[("l.toml", Bytes($text))],
            &["check", "--sysfs-root", "{T}/sys", "--device", "03:00.0", "--layout", "{T}/l.toml"],
            &[$($e),*],
        )
    };
}

/// `inspect --host {T}/p.json` of the profile `$text`.
macro_rules! profile_case {
    ($name:expr, $text:expr, [$($e:expr),*]) => {
        case(
            $name,
            Empty,
            &[("p.json", Bytes($text))],
            &["inspect", "--host", "{T}/p.json"],
            &["{T}/p.json", $($e),*],
        )
    };
}

const REPLAY_OK: &[&str] = &[
    "replay",
    "--sysfs-root",
    "{T}/sys",
    "--device",
    "03:00.0",
    // A named kernel: an unknown one adds a note on stderr, which must stay empty here.
    "--kernel",
    "6.12",
    "{T}/ok.trace",
];

static CASES: &[Case] = &[
    // ---- command line ------------------------------------------------------------
    case("no command", Empty, &[], &[], &["Usage"]),
    case("unknown command", Empty, &[], &["frobnicate"], &["frobnicate"]),
    case("unknown option", Empty, &[], &["inspect", "--bogus"], &["--bogus"]),
    case(
        "both --host and --sysfs-root",
        Sysfs,
        &[],
        &["inspect", "--sysfs-root", "{T}/sys", "--host", "{T}/p.json"],
        &["--host", "--sysfs-root"],
    ),
    case(
        "unknown flavour",
        Sysfs,
        &[],
        &[
            "replay",
            "--sysfs-root",
            "{T}/sys",
            "--device",
            "03:00.0",
            "--flavour",
            "type2",
            "{T}/ok.trace",
        ],
        &["type2", "type1v2"],
    ),
    // (replay without --device is legal: the trace starts on an empty container.)
    case(
        "replay with an unreadable kernel version",
        Sysfs,
        &[],
        &["replay", "--sysfs-root", "{T}/sys", "--kernel", "six", "{T}/ok.trace"],
        &["--kernel"],
    ),
    case(
        "replay with a CPU page size that is not a power of two",
        Sysfs,
        &[],
        &["replay", "--sysfs-root", "{T}/sys", "--cpu-page-size", "3000", "{T}/ok.trace"],
        &["--cpu-page-size"],
    ),
    case(
        "replay with an unknown flavour",
        Sysfs,
        &[],
        &["replay", "--sysfs-root", "{T}/sys", "--flavour", "compat", "{T}/ok.trace"],
        &["--flavour"],
    ),
    case(
        "negative dma entry limit",
        Sysfs,
        &[],
        &[
            "replay",
            "--sysfs-root",
            "{T}/sys",
            "--device",
            "03:00.0",
            "--dma-entry-limit",
            "-1",
            "{T}/ok.trace",
        ],
        &["-1"],
    ),
    case(
        "dma entry limit above 2^32-1",
        Sysfs,
        &[],
        &[
            "replay",
            "--sysfs-root",
            "{T}/sys",
            "--device",
            "03:00.0",
            "--dma-entry-limit",
            "99999999999",
            "{T}/ok.trace",
        ],
        &["99999999999"],
    ),
    case(
        "dma entry limit in hex",
        Sysfs,
        &[],
        &[
            "replay",
            "--sysfs-root",
            "{T}/sys",
            "--device",
            "03:00.0",
            "--dma-entry-limit",
            "0xzz",
            "{T}/ok.trace",
        ],
        &["0xzz"],
    ),
    // ---- devices -----------------------------------------------------------------
    case(
        "inspect: unknown device",
        Sysfs,
        &[],
        &["inspect", "--sysfs-root", "{T}/sys", "--device", "99:00.0"],
        &["99:00.0"],
    ),
    case(
        "inspect: device that is not a PCI address",
        Sysfs,
        &[],
        &["inspect", "--sysfs-root", "{T}/sys", "--device", "eth0"],
        &["eth0"],
    ),
    case(
        "inspect: empty device name",
        Sysfs,
        &[],
        &["inspect", "--sysfs-root", "{T}/sys", "--device", ""],
        &["--device"],
    ),
    case(
        "replay: unknown device",
        Sysfs,
        &[],
        &[
            "replay",
            "--sysfs-root",
            "{T}/sys",
            "--device",
            "0000:42:00.7",
            "{T}/ok.trace",
        ],
        &["0000:42:00.7"],
    ),
    case(
        "replay: device outside any group",
        Sysfs,
        &[
            ("sys/bus/pci/devices/0000:00:1f.0/vendor", Bytes(b"0x8086\n")),
            ("sys/bus/pci/devices/0000:00:1f.0/device", Bytes(b"0xa304\n")),
        ],
        &[
            "replay",
            "--sysfs-root",
            "{T}/sys",
            "--device",
            "00:1f.0",
            "{T}/ok.trace",
        ],
        &["00:1f.0"],
    ),
    // ---- sysfs root --------------------------------------------------------------
    case(
        "sysfs root missing",
        Empty,
        &[],
        &["inspect", "--sysfs-root", "{T}/nowhere"],
        &["{T}/nowhere"],
    ),
    case(
        "sysfs root is a file",
        Empty,
        &[("sys", Bytes(b"not a directory\n"))],
        INSPECT,
        &["{T}/sys", "not a directory"],
    ),
    case(
        "sysfs root is a FIFO",
        Empty,
        &[("sys", Fifo)],
        INSPECT,
        &["{T}/sys"],
    ),
    case(
        "sysfs root is a dangling symlink",
        Empty,
        &[("sys", Dangling)],
        INSPECT,
        &["{T}/sys"],
    ),
    case(
        "kernel/iommu_groups is a file",
        Sysfs,
        &[("sys/kernel/iommu_groups", Bytes(b"1\n"))],
        INSPECT,
        &["{T}/sys/kernel/iommu_groups", "not a directory"],
    ),
    // ---- reserved_regions --------------------------------------------------------
    sysfs_case!("reserved_regions: empty line", rr!(), Bytes(b"\n\n"), [":1:", "empty line"]),
    sysfs_case!(
        "reserved_regions: truncated line",
        rr!(),
        Bytes(b"0x00000000fee00000 0x00000000feef"),
        [":1:", "0x00000000fee00000 0x00000000feef"]
    ),
    sysfs_case!(
        "reserved_regions: 0xzz",
        rr!(),
        Bytes(b"0xzz 0x00000000feefffff msi\n"),
        [":1:", "'0xzz'"]
    ),
    sysfs_case!(
        "reserved_regions: hex without 0x",
        rr!(),
        Bytes(b"0x00000000fee00000 0x00000000feefffff msi\n12ab 0x12ff msi\n"),
        [":2:", "'12ab'"]
    ),
    sysfs_case!(
        "reserved_regions: last below first",
        rr!(),
        Bytes(b"0x00000000feefffff 0x00000000fee00000 msi\n"),
        [":1:", "below first"]
    ),
    sysfs_case!(
        "reserved_regions: address past 2^64",
        rr!(),
        Bytes(b"0x0 0x10000000000000000 reserved\n"),
        [":1:", "0x10000000000000000"]
    ),
    sysfs_case!(
        "reserved_regions: unknown type",
        rr!(),
        Bytes(b"0x00000000fee00000 0x00000000feefffff sw-msi\n"),
        [":1:", "'sw-msi'"]
    ),
    sysfs_case!(
        "reserved_regions: non-UTF-8",
        rr!(),
        Bytes(b"0x00000000fee00000 0x00000000feefffff m\xffsi\n"),
        ["UTF-8"]
    ),
    sysfs_case!(
        "reserved_regions: binary garbage",
        rr!(),
        Bytes(b"\x00\x01\x02ELF\x7f\x00\x00"),
        [":1:"]
    ),
    sysfs_case!("reserved_regions: a directory", rr!(), Dir, ["directory"]),
    sysfs_case!("reserved_regions: a FIFO", rr!(), Fifo, ["FIFO"]),
    sysfs_case!(
        "reserved_regions: dangling symlink",
        rr!(),
        Dangling,
        ["dangling"]
    ),
    // ---- other group files -------------------------------------------------------
    sysfs_case!(
        "group type: unknown",
        "sys/kernel/iommu_groups/1/type",
        Bytes(b"passthrough\n"),
        ["'passthrough'"]
    ),
    sysfs_case!(
        "group type: empty",
        "sys/kernel/iommu_groups/1/type",
        Bytes(b""),
        ["unknown domain type"]
    ),
    sysfs_case!(
        "group type: a FIFO",
        "sys/kernel/iommu_groups/1/type",
        Fifo,
        ["FIFO"]
    ),
    sysfs_case!(
        "group directory not a number",
        "sys/kernel/iommu_groups/group7",
        Dir,
        ["'group7'"]
    ),
    // Found by fuzzing: "001" beside "1" made two groups with id 1.
    sysfs_case!(
        "group directory with a leading zero",
        "sys/kernel/iommu_groups/001",
        Dir,
        ["'001'"]
    ),
    sysfs_case!(
        "group number above 2^32-1",
        "sys/kernel/iommu_groups/99999999999",
        Dir,
        ["'99999999999'"]
    ),
    sysfs_case!(
        "group devices is a file",
        "sys/kernel/iommu_groups/1/devices",
        Bytes(b"0000:03:00.0\n"),
        ["not a directory"]
    ),
    // ---- IOMMU capability registers ----------------------------------------------
    sysfs_case!(
        "VT-d cap: 0xzz",
        "sys/class/iommu/dmar0/intel-iommu/cap",
        Bytes(b"0xzz\n"),
        ["'0xzz'"]
    ),
    sysfs_case!(
        "VT-d cap: more than 64 bits",
        "sys/class/iommu/dmar0/intel-iommu/cap",
        Bytes(b"1d2008c2226028600\n"),
        ["'1d2008c2226028600'"]
    ),
    sysfs_case!(
        "VT-d cap: empty",
        "sys/class/iommu/dmar0/intel-iommu/cap",
        Bytes(b""),
        ["hex register"]
    ),
    sysfs_case!(
        "VT-d ecap: decimal with a sign",
        "sys/class/iommu/dmar0/intel-iommu/ecap",
        Bytes(b"-1\n"),
        ["'-1'"]
    ),
    sysfs_case!(
        "VT-d cap: a directory",
        "sys/class/iommu/dmar0/intel-iommu/cap",
        Dir,
        ["directory"]
    ),
    sysfs_case!(
        "AMD features: three numbers",
        "sys/class/iommu/ivhd0/amd-iommu/features",
        Bytes(b"1:2:3\n"),
        ["'1:2:3'"]
    ),
    sysfs_case!(
        "AMD cap: above 32 bits",
        "sys/class/iommu/ivhd0/amd-iommu/cap",
        Bytes(b"1ffffffff\n"),
        ["'1ffffffff'"]
    ),
    // ---- PCI device files --------------------------------------------------------
    sysfs_case!(
        "PCI vendor without 0x",
        "sys/bus/pci/devices/0000:03:00.0/vendor",
        Bytes(b"8086\n"),
        ["'8086'"]
    ),
    sysfs_case!(
        "PCI vendor above 16 bits",
        "sys/bus/pci/devices/0000:03:00.0/vendor",
        Bytes(b"0x18086\n"),
        ["'0x18086'"]
    ),
    sysfs_case!(
        "PCI class non-UTF-8",
        "sys/bus/pci/devices/0000:03:00.0/class",
        Bytes(b"0x02\xc3\x28000\n"),
        ["UTF-8"]
    ),
    sysfs_case!(
        "PCI iommu_group link to a non-number",
        "sys/bus/pci/devices/0000:03:00.0/iommu_group",
        Link("../../../../kernel/iommu_groups/one"),
        ["'../../../../kernel/iommu_groups/one'"]
    ),
    sysfs_case!(
        "PCI iommu_group is a file, not a link",
        "sys/bus/pci/devices/0000:03:00.0/iommu_group",
        Bytes(b"1\n"),
        ["symbolic link"]
    ),
    // ---- module parameters -------------------------------------------------------
    sysfs_case!(
        "dma_entry_limit negative",
        "sys/module/vfio_iommu_type1/parameters/dma_entry_limit",
        Bytes(b"-1\n"),
        ["'-1'"]
    ),
    sysfs_case!(
        "dma_entry_limit fractional",
        "sys/module/vfio_iommu_type1/parameters/dma_entry_limit",
        Bytes(b"1.5\n"),
        ["'1.5'"]
    ),
    sysfs_case!(
        "dma_entry_limit huge",
        "sys/module/vfio_iommu_type1/parameters/dma_entry_limit",
        Bytes(b"184467440737095516160\n"),
        ["'184467440737095516160'"]
    ),
    sysfs_case!(
        "allow_unsafe_interrupts not a boolean",
        "sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts",
        Bytes(b"maybe\n"),
        ["'maybe'"]
    ),
    // ---- traces ------------------------------------------------------------------
    case(
        "trace missing",
        Sysfs,
        &[],
        &[
            "replay",
            "--sysfs-root",
            "{T}/sys",
            "--device",
            "03:00.0",
            "{T}/none.trace",
        ],
        &["{T}/none.trace"],
    ),
    case(
        "trace is a directory",
        Sysfs,
        &[("bad.trace", Dir)],
        &[
            "replay",
            "--sysfs-root",
            "{T}/sys",
            "--device",
            "03:00.0",
            "{T}/bad.trace",
        ],
        &["{T}/bad.trace", "directory"],
    ),
    case(
        "trace is a FIFO",
        Sysfs,
        &[("bad.trace", Fifo)],
        &[
            "replay",
            "--sysfs-root",
            "{T}/sys",
            "--device",
            "03:00.0",
            "{T}/bad.trace",
        ],
        &["{T}/bad.trace", "FIFO"],
    ),
    case(
        "trace is a dangling symlink",
        Sysfs,
        &[("bad.trace", Dangling)],
        &[
            "replay",
            "--sysfs-root",
            "{T}/sys",
            "--device",
            "03:00.0",
            "{T}/bad.trace",
        ],
        &["{T}/bad.trace", "dangling"],
    ),
    trace_case!("trace empty", b"", ["no operations"]),
    trace_case!("trace only comments", b"# nothing\n\n", ["no operations"]),
    trace_case!("trace non-UTF-8", b"map 0x1000 0x1000\nmap \xfe\xff 1\n", ["UTF-8"]),
    trace_case!(
        "trace binary garbage",
        b"\x7fELF\x02\x01\x01\x00\x00\x00",
        ["line 1", "unknown operation"]
    ),
    trace_case!("trace 0xzz", b"map 0xzz 0x1000\n", ["line 1", "'0xzz'"]),
    trace_case!("trace hex without 0x", b"map 12ab 0x1000\n", ["line 1", "'12ab'"]),
    trace_case!(
        "trace number past 2^64",
        b"map 0x1000 0x1000\nunmap 18446744073709551616 0x1000\n",
        ["line 2", "'18446744073709551616'"]
    ),
    trace_case!(
        "trace fractional size",
        b"map 0x100000 1.5T\n",
        ["line 1", "'1.5T'"]
    ),
    trace_case!(
        "trace truncated line",
        b"map 0x100000 0x200000\nmap 0x40000\n",
        ["line 2", "SIZE"]
    ),
    trace_case!(
        "trace unknown operation",
        b"mmap 0x1000 0x1000\n",
        ["line 1", "'mmap'"]
    ),
    trace_case!(
        "trace unknown access",
        b"map 0x1000 0x1000 0x1000 rwx\n",
        ["line 1", "'rwx'"]
    ),
    trace_case!(
        "trace too many fields",
        b"unmap 0x1000 0x1000 0x1000\n",
        ["line 1", "unmap IOVA SIZE"]
    ),
    trace_case!("trace unmap-all with an argument", b"unmap-all 0\n", ["line 1"]),
    trace_case!(
        "trace misplaced underscore",
        b"map 0x_1000 0x1000\n",
        ["line 1", "'0x_1000'"]
    ),
    // ---- VMM command lines: check/plan/render -- <argv>, --cmdline FILE ----------
    vmm_case!("qemu: unknown option", 2, ["-frobnicate"], ["-frobnicate", "unknown QEMU option"]),
    vmm_case!("qemu: malformed -m size", 2, ["-m", "8Q"], ["-m 8Q", "'8Q'"]),
    vmm_case!(
        "qemu: fractional size without unit",
        2,
        ["-global", "q35-pcihost.pci-hole64-size=1.5"],
        ["'1.5'"]
    ),
    vmm_case!("qemu: RAM too small", 2, ["-m", "1.5"], ["-m", "1536 KiB"]),
    vmm_case!("qemu: -m past 2^64", 2, ["-m", "99999999999T"], ["'99999999999T'"]),
    vmm_case!("qemu: option without its argument", 2, ["-m"], ["-m", "needs an argument"]),
    vmm_case!(
        "qemu: unknown machine type",
        2,
        ["-machine", "pc-q35-x.y"],
        ["-machine pc-q35-x.y", "machine type"]
    ),
    vmm_case!(
        "qemu: machine type newer than the release",
        2,
        ["-machine", "pc-q35-11.0"],
        ["pc-q35-11.0", "QEMU 10.0"]
    ),
    vmm_case!(
        "qemu: malformed hole64 size",
        2,
        ["-global", "q35-pcihost.pci-hole64-size=lots"],
        ["pci-hole64-size=lots", "'lots'"]
    ),
    vmm_case!(
        "qemu: memory backend that does not exist",
        2,
        ["-machine", "q35,memory-backend=nope"],
        ["memory-backend=nope"]
    ),
    vmm_case!(
        "qemu: DIMM without maxmem",
        2,
        ["-object", "memory-backend-ram,id=d0,size=1G", "-device", "pc-dimm,memdev=d0,id=dm"],
        ["-device dm", "maxmem"]
    ),
    vmm_case!("qemu: bad phys-bits", 2, ["-cpu", "EPYC,phys-bits=many"], ["-cpu EPYC", "'many'"]),
    vmm_case!(
        "qemu: unmodelled device cannot be answered",
        4,
        ["-device", "pxb-pcie,id=pxb,bypass_iommu=on"],
        ["pxb-pcie", "cannot answer"]
    ),
    vmm_case!(
        "qemu: unmodelled machine property cannot be answered",
        4,
        ["-machine", "q35,cxl=on"],
        ["cxl=on", "cannot answer"]
    ),
    vmm_case!(
        "qemu: unmodelled object cannot be answered",
        4,
        ["-object", "sev-guest,id=sev0"],
        ["sev-guest", "cannot answer"]
    ),
    vmm_case!("qemu: unknown CPU model cannot be answered", 4, ["-cpu", "pentium3"], ["-cpu pentium3", "cannot answer"]),
    vmm_case!("qemu: -numa with a missing backend is bad input", 2, ["-numa", "node,memdev=m0"], ["-numa", "'m0'"]),
    vmm_case!("qemu: -numa nodes not adding up to -m is bad input", 2, ["-m", "2G", "-object", "memory-backend-ram,id=n0,size=1G", "-numa", "node,memdev=n0"], ["-numa", "must equal"]),
    vmm_case!("qemu: legacy -numa mem= after machine type 5.0 is bad input", 2, ["-m", "2G", "-numa", "node,mem=2G"], ["-numa node,mem=2G", "after 5.0"]),
    case(
        "qemu: unmodelled VMM binary",
        Sysfs,
        &[],
        &["check", "--sysfs-root", "{T}/sys", "--device", "03:00.0", "--", "qemu-system-ppc64", "-m", "1G"],
        &["qemu-system-ppc64"],
    )
    .exit(4),
    case(
        "qemu: argv[0] is not a VMM",
        Sysfs,
        &[],
        &["check", "--sysfs-root", "{T}/sys", "--device", "03:00.0", "--", "-m", "1G"],
        &["argv[0]"],
    ),
    case(
        "qemu: no assigned device anywhere",
        Sysfs,
        &[],
        &["check", "--sysfs-root", "{T}/sys", "--", "qemu-system-x86_64", "-m", "1G"],
        &["vfio-pci"],
    ),
    case(
        "qemu: vfio-pci device the host lacks",
        Sysfs,
        &[],
        &["check", "--sysfs-root", "{T}/sys", "--qemu-version", "10.0", "--", "qemu-system-x86_64", "-device", "vfio-pci,host=0000:99:00.0"],
        &["0000:99:00.0"],
    ),
    case(
        "qemu: bad --qemu-version",
        Sysfs,
        &[],
        &["check", "--sysfs-root", "{T}/sys", "--device", "03:00.0", "--qemu-version", "seven", "--", "qemu-system-x86_64"],
        &["--qemu-version seven"],
    ),
    case(
        "qemu: unmodelled --qemu-version",
        Sysfs,
        &[],
        &["check", "--sysfs-root", "{T}/sys", "--device", "03:00.0", "--qemu-version", "5.2", "--", "qemu-system-x86_64"],
        &["QEMU 5.2", "cannot answer"],
    )
    .exit(4),
    case(
        "qemu: --cmdline with an unbalanced quote",
        Sysfs,
        &[("cmd.txt", Bytes(b"qemu-system-x86_64 -m 8G -append 'console=ttyS0\n"))],
        &["check", "--sysfs-root", "{T}/sys", "--device", "03:00.0", "--cmdline", "{T}/cmd.txt"],
        &["{T}/cmd.txt", "unbalanced"],
    ),
    case(
        "qemu: --cmdline line with an unbalanced quote",
        Sysfs,
        &[("cmd.txt", Bytes(b"qemu-system-x86_64\n-append\n\"console=ttyS0\n"))],
        &["check", "--sysfs-root", "{T}/sys", "--device", "03:00.0", "--cmdline", "{T}/cmd.txt"],
        &["{T}/cmd.txt", "line 3"],
    ),
    case(
        "qemu: --cmdline empty",
        Sysfs,
        &[("cmd.txt", Bytes(b"\n\n"))],
        &["check", "--sysfs-root", "{T}/sys", "--device", "03:00.0", "--cmdline", "{T}/cmd.txt"],
        &["{T}/cmd.txt", "no command line"],
    ),
    case(
        "qemu: --cmdline not UTF-8",
        Sysfs,
        &[("cmd.txt", Bytes(b"qemu\xff\n-m\n"))],
        &["check", "--sysfs-root", "{T}/sys", "--device", "03:00.0", "--cmdline", "{T}/cmd.txt"],
        &["{T}/cmd.txt", "UTF-8"],
    ),
    case(
        "qemu: --cmdline is a FIFO",
        Sysfs,
        &[("cmd.txt", Fifo)],
        &["check", "--sysfs-root", "{T}/sys", "--device", "03:00.0", "--cmdline", "{T}/cmd.txt"],
        &["{T}/cmd.txt"],
    ),
    case(
        "qemu: command line and --guest together",
        Sysfs,
        &[],
        &["check", "--sysfs-root", "{T}/sys", "--device", "03:00.0", "--guest", "qemu-q35", "--memory", "8G", "--", "qemu-system-x86_64"],
        &["--guest"],
    ),
    case(
        "qemu: plan of an unknown option",
        Sysfs,
        &[],
        &["plan", "--sysfs-root", "{T}/sys", "--device", "03:00.0", "--", "qemu-system-x86_64", "-bogus"],
        &["-bogus"],
    ),
    case(
        "libvirt: XML bomb (entities in a DTD)",
        Sysfs,
        &[("d.xml", Bytes(b"<?xml version='1.0'?><!DOCTYPE d [<!ENTITY a 'aaaaaaaa'><!ENTITY b '&a;&a;&a;&a;'><!ENTITY c '&b;&b;&b;&b;'>]><domain>&c;</domain>"))],
        &["check", "--sysfs-root", "{T}/sys", "--libvirt", "{T}/d.xml"],
        &["{T}/d.xml", "DTD"],
    ),
    case(
        "libvirt: external entity",
        Sysfs,
        &[("d.xml", Bytes(b"<!DOCTYPE domain SYSTEM 'file:///etc/passwd'><domain/>"))],
        &["check", "--sysfs-root", "{T}/sys", "--libvirt", "{T}/d.xml"],
        &["{T}/d.xml"],
    ),
    case(
        "libvirt: truncated XML",
        Sysfs,
        &[("d.xml", Bytes(b"<domain type='kvm'><memory>8"))],
        &["check", "--sysfs-root", "{T}/sys", "--libvirt", "{T}/d.xml"],
        &["{T}/d.xml"],
    ),
    case(
        "libvirt: not a domain",
        Sysfs,
        &[("d.xml", Bytes(b"<network/>"))],
        &["check", "--sysfs-root", "{T}/sys", "--libvirt", "{T}/d.xml"],
        &["{T}/d.xml", "<network>"],
    ),
    case(
        "libvirt: unknown memory unit",
        Sysfs,
        &[("d.xml", Bytes(b"<domain type='kvm'><memory unit='parsec'>8</memory><os><type arch='x86_64' machine='q35'>hvm</type></os></domain>"))],
        &["check", "--sysfs-root", "{T}/sys", "--device", "03:00.0", "--libvirt", "{T}/d.xml"],
        &["parsec"],
    ),
    case(
        "libvirt: unknown machine type",
        Sysfs,
        &[("d.xml", Bytes(b"<domain type='kvm'><memory unit='GiB'>8</memory><os><type arch='x86_64' machine='pc-q99'>hvm</type></os></domain>"))],
        &["check", "--sysfs-root", "{T}/sys", "--device", "03:00.0", "--libvirt", "{T}/d.xml"],
        &["pc-q99"],
    ),
    case(
        "libvirt: unmodelled vIOMMU cannot be answered",
        Sysfs,
        &[("d.xml", Bytes(b"<domain type='kvm'><memory unit='GiB'>8</memory><os><type arch='x86_64' machine='q35'>hvm</type></os><devices><iommu model='fancy'/></devices></domain>"))],
        &["check", "--sysfs-root", "{T}/sys", "--device", "03:00.0", "--libvirt", "{T}/d.xml"],
        &["fancy", "cannot answer"],
    )
    .exit(4),
    case(
        "libvirt: missing file",
        Sysfs,
        &[],
        &["check", "--sysfs-root", "{T}/sys", "--libvirt", "{T}/none.xml"],
        &["{T}/none.xml"],
    ),
    // ---- guest layouts: check, plan, export, render ------------------------------
    case(
        "check: unknown preset",
        Sysfs,
        &[],
        &[
            "check", "--sysfs-root", "{T}/sys", "--device", "03:00.0", "--guest", "qemu-q36",
            "--memory", "8G",
        ],
        &["qemu-q36", "qemu-q35"],
    ),
    case(
        "check: fractional memory",
        Sysfs,
        &[],
        &[
            "check", "--sysfs-root", "{T}/sys", "--device", "03:00.0", "--guest", "qemu-q35",
            "--memory", "1.5T",
        ],
        &["--memory", "'1.5T'"],
    ),
    case(
        "check: memory past 2^64",
        Sysfs,
        &[],
        &[
            "check", "--sysfs-root", "{T}/sys", "--device", "03:00.0", "--guest", "qemu-q35",
            "--memory", "99999E",
        ],
        &["--memory", "'99999E'"],
    ),
    case(
        "check: memory 0xzz",
        Sysfs,
        &[],
        &[
            "check", "--sysfs-root", "{T}/sys", "--device", "03:00.0", "--guest", "qemu-q35",
            "--memory", "0xzz",
        ],
        &["--memory", "'0xzz'"],
    ),
    case(
        "check: preset without memory",
        Sysfs,
        &[],
        &["check", "--sysfs-root", "{T}/sys", "--device", "03:00.0", "--guest", "qemu-q35"],
        &["--memory"],
    ),
    case(
        "check: unknown CPU vendor",
        Sysfs,
        &[],
        &[
            "check", "--sysfs-root", "{T}/sys", "--device", "03:00.0", "--guest", "qemu-q35",
            "--memory", "8G", "--cpu-vendor", "via",
        ],
        &["via"],
    ),
    case(
        "check: unknown device",
        Sysfs,
        &[],
        &[
            "check", "--sysfs-root", "{T}/sys", "--device", "99:00.0", "--guest", "qemu-q35",
            "--memory", "8G",
        ],
        &["99:00.0"],
    ),
    case(
        "check: layout missing",
        Sysfs,
        &[],
        &["check", "--sysfs-root", "{T}/sys", "--device", "03:00.0", "--layout", "{T}/none.toml"],
        &["{T}/none.toml"],
    ),
    case(
        "check: layout is a FIFO",
        Sysfs,
        &[("l.toml", Fifo)],
        &["check", "--sysfs-root", "{T}/sys", "--device", "03:00.0", "--layout", "{T}/l.toml"],
        &["{T}/l.toml", "FIFO"],
    ),
    case(
        "check: layout is a directory",
        Sysfs,
        &[("l.toml", Dir)],
        &["check", "--sysfs-root", "{T}/sys", "--device", "03:00.0", "--layout", "{T}/l.toml"],
        &["{T}/l.toml", "directory"],
    ),
    layout_case!("layout empty", b"", ["{T}/l.toml", "section"]),
    layout_case!("layout non-UTF-8", b"name = \"\xff\xfe\"\n", ["{T}/l.toml", "UTF-8"]),
    layout_case!(
        "layout truncated",
        b"[[section]\nname = \"a\"\n",
        ["{T}/l.toml:1"]
    ),
    layout_case!(
        "layout last below first",
        b"[[section]]\nname = \"low\"\nkind = \"ram\"\nfirst = \"0x2000\"\nlast = \"0x1000\"\n",
        ["{T}/l.toml:1", "'low'", "below first"]
    ),
    layout_case!(
        "layout range past 2^64",
        b"[[section]]\nname = \"top\"\nkind = \"ram\"\nstart = \"0xffffffffffff0000\"\nsize = \"1M\"\n",
        ["{T}/l.toml:1", "'top'", "wraps"]
    ),
    layout_case!(
        "layout fractional size",
        b"[[section]]\nname = \"ram\"\nkind = \"ram\"\nstart = \"4G\"\nsize = \"1.5T\"\n",
        ["{T}/l.toml:1", "'1.5T'"]
    ),
    layout_case!(
        "layout wrong radix",
        b"[[section]]\nname = \"ram\"\nkind = \"ram\"\nfirst = \"12ab\"\nlast = \"0x1fff\"\n",
        ["{T}/l.toml:1", "'12ab'"]
    ),
    layout_case!(
        "layout unknown kind",
        b"[[section]]\nname = \"a\"\nkind = \"dram\"\nstart = \"4G\"\nsize = \"1G\"\n",
        ["{T}/l.toml:1", "'dram'"]
    ),
    case(
        "plan: fractional memory",
        Sysfs,
        &[],
        &[
            "plan", "--sysfs-root", "{T}/sys", "--device", "03:00.0", "--guest", "qemu-q35",
            "--memory", "1.5T",
        ],
        &["'1.5T'"],
    ),
    case(
        "render: unknown preset",
        Sysfs,
        &[],
        &[
            "render", "--sysfs-root", "{T}/sys", "--device", "03:00.0", "--guest", "bogus",
            "--memory", "1G", "--svg", "{T}/out.svg",
        ],
        &["bogus"],
    ),
    case(
        "export: unknown format",
        Sysfs,
        &[],
        &["export", "xml", "--sysfs-root", "{T}/sys", "--device", "03:00.0"],
        &["xml"],
    ),
    case(
        "export: unknown device",
        Sysfs,
        &[],
        &["export", "virtio-iommu", "--sysfs-root", "{T}/sys", "--device", "07:00.0"],
        &["07:00.0"],
    ),
    // ---- host profiles -----------------------------------------------------------
    case(
        "profile missing",
        Empty,
        &[],
        &["inspect", "--host", "{T}/none.json"],
        &["{T}/none.json"],
    ),
    case(
        "profile is a directory",
        Empty,
        &[("p.json", Dir)],
        &["inspect", "--host", "{T}/p.json"],
        &["{T}/p.json", "directory"],
    ),
    case(
        "profile is a FIFO",
        Empty,
        &[("p.json", Fifo)],
        &["inspect", "--host", "{T}/p.json"],
        &["{T}/p.json", "FIFO"],
    ),
    case(
        "profile is a dangling symlink",
        Empty,
        &[("p.json", Dangling)],
        &["inspect", "--host", "{T}/p.json"],
        &["{T}/p.json", "dangling"],
    ),
    profile_case!("profile empty", b"", ["line 1"]),
    profile_case!(
        "profile truncated",
        b"{\"iommus\": [{\"name\": \"dmar0\", \"vendor\": \"in",
        ["line 1"]
    ),
    profile_case!("profile binary garbage", b"\x00\x01\x02\x03PK\x03\x04", ["line 1"]),
    profile_case!("profile non-UTF-8", b"{\"iommus\": [\"\xff\"]}", ["UTF-8"]),
    profile_case!(
        "profile address 0xzz",
        b"{\"iommus\": [{\"name\": \"d\", \"vendor\": \"intel\", \"aperture\": {\"first\": \"0xzz\", \"last\": \"0x1\"}}]}",
        ["'0xzz'", "line 1"]
    ),
    profile_case!(
        "profile range last below first",
        b"{\"iommus\": [{\"name\": \"d\", \"vendor\": \"intel\",\n \"aperture\": {\"first\": \"0x2000\", \"last\": \"0x1000\"}}]}",
        ["line 2"]
    ),
    profile_case!(
        "profile address past 2^64",
        b"{\"iommus\": [{\"name\": \"d\", \"vendor\": \"intel\", \"page_sizes\": \"0x10000000000000000\"}]}",
        ["'0x10000000000000000'"]
    ),
    profile_case!(
        "profile negative address",
        b"{\"iommus\": [{\"name\": \"d\", \"vendor\": \"intel\", \"page_sizes\": -4096}]}",
        ["-4096"]
    ),
    profile_case!(
        "profile unknown vendor",
        b"{\"iommus\": [{\"name\": \"d\", \"vendor\": \"via\"}]}",
        ["via"]
    ),
    profile_case!("profile is a JSON array", b"[1, 2, 3]", ["line 1"]),
    // Writing is the operating system's refusal, not bad content: exit 3.
    Case {
        code: 3,
        ..case(
        "inspect --save-profile into a directory",
        Sysfs,
        &[("out", Dir)],
        &[
            "inspect",
            "--sysfs-root",
            "{T}/sys",
            "--save-profile",
            "{T}/out",
        ],
        &["{T}/out"],
    )},
    // ---- round two (issue #11): output that cannot be written ------------------
    // A reader that goes away ends the program quietly, with the status a shell shows
    // for SIGPIPE; a failed write is the operating system's refusal, exit 3.
    Case {
        stdout: Stdout::ClosedPipe,
        ..case_code(141, "replay into a closed pipe", Sysfs, &[], REPLAY_OK, &[])
    },
    Case {
        stdout: Stdout::ClosedPipe,
        ..case_code(141, "inspect into a closed pipe", Sysfs, &[], INSPECT, &[])
    },
    Case {
        stdout: Stdout::Full,
        ..case_code(3, "inspect into a full device", Sysfs, &[], INSPECT, &["cannot write to standard output"])
    },
    Case {
        stdout: Stdout::Full,
        ..case_code(3, "replay into a full device", Sysfs, &[], REPLAY_OK, &["cannot write to standard output"])
    },
    Case {
        stdout: Stdout::Full,
        ..case_code(
            3,
            "check --json into a full device",
            Sysfs,
            &[],
            &["check", "--sysfs-root", "{T}/sys", "--device", "03:00.0", "--guest", "qemu-q35", "--memory", "8G", "--json"],
            &["cannot write to standard output"],
        )
    },
    // ---- round two: files that exist but cannot be read are exit 3 ----------------
    // Reading /proc/self/mem at offset 0 fails with EIO even for root.
    case_code(
        3,
        "profile exists but cannot be read",
        Empty,
        &[("p.json", Link("/proc/self/mem"))],
        &["inspect", "--host", "{T}/p.json"],
        &["{T}/p.json"],
    ),
    case_code(
        3,
        "trace exists but cannot be read",
        Sysfs,
        &[("bad.trace", Link("/proc/self/mem"))],
        &["replay", "--sysfs-root", "{T}/sys", "--device", "03:00.0", "{T}/bad.trace"],
        &["{T}/bad.trace"],
    ),
    case_code(
        3,
        "layout exists but cannot be read",
        Sysfs,
        &[("l.toml", Link("/proc/self/mem"))],
        &["check", "--sysfs-root", "{T}/sys", "--device", "03:00.0", "--layout", "{T}/l.toml"],
        &["{T}/l.toml"],
    ),
    case_code(
        3,
        "reserved_regions exists but cannot be read",
        Sysfs,
        &[(rr!(), Link("/proc/self/mem"))],
        INSPECT,
        &[concat!("{T}/", rr!())],
    ),
    // ---- round two: replay as a gate --------------------------------------------
    case_code(
        1,
        "replay --fail-on-refusal with a refused map",
        Sysfs,
        &[("msi.trace", Bytes(b"map 0x100000 0x1000\nmap 0xfee00000 0x1000\n"))],
        &["replay", "--sysfs-root", "{T}/sys", "--device", "03:00.0", "--fail-on-refusal", "{T}/msi.trace"],
        &[],
    ),
    case(
        "replay --vfio with --sysfs-root",
        Sysfs,
        &[],
        &["replay", "--vfio", "--sysfs-root", "{T}/sys", "--device", "03:00.0", "{T}/ok.trace"],
        &["--vfio", "--sysfs-root"],
    ),
    case(
        "replay --vfio with --host",
        Sysfs,
        &[("p.json", Bytes(b"{}"))],
        &["replay", "--vfio", "--host", "{T}/p.json", "--device", "03:00.0", "{T}/ok.trace"],
        &["--vfio", "--host"],
    ),
    case(
        "trace line longer than 4 KiB",
        Sysfs,
        &[("bad.trace", Bytes(&[b'#'; 5000]))],
        &["replay", "--sysfs-root", "{T}/sys", "--device", "03:00.0", "{T}/bad.trace"],
        &["{T}/bad.trace", "line 1", "longer than"],
    ),
    case(
        "check: memory as QEMU's bare MiB",
        Sysfs,
        &[],
        &["check", "--sysfs-root", "{T}/sys", "--device", "03:00.0", "--guest", "qemu-q35", "--memory", "2048"],
        &["--memory 2048", "did you mean 2048M?"],
    ),
    // ---- round two: never overwrite an input -----------------------------------
    case(
        "render --svg onto its own layout",
        Sysfs,
        &[("l.toml", Bytes(b"[[section]]\nname = \"ram\"\nkind = \"ram\"\nstart = \"0\"\nsize = \"1G\"\n"))],
        &["render", "--sysfs-root", "{T}/sys", "--device", "03:00.0", "--layout", "{T}/l.toml", "--svg", "{T}/l.toml"],
        &["--svg {T}/l.toml", "refusing to overwrite"],
    ),
    case(
        "render --svg onto a link to its layout",
        Sysfs,
        &[
            ("l.toml", Bytes(b"[[section]]\nname = \"ram\"\nkind = \"ram\"\nstart = \"0\"\nsize = \"1G\"\n")),
            ("out.svg", Link("l.toml")),
        ],
        &["render", "--sysfs-root", "{T}/sys", "--device", "03:00.0", "--layout", "{T}/l.toml", "--svg", "{T}/out.svg"],
        &["{T}/out.svg", "refusing to overwrite"],
    ),
    // ---- round two: unknown means unsafe ------------------------------------------
    sysfs_case!(
        "reserved_regions missing",
        rr!(),
        Absent,
        ["missing", "group 1", "refusing to assume there are none"]
    ),
    sysfs_case!(
        "VT-d cap: 0",
        "sys/class/iommu/dmar0/intel-iommu/cap",
        Bytes(b"0\n"),
        ["SAGAW", "MGAW"]
    ),
    case(
        "sysfs root: an empty folder",
        Empty,
        &[("sys", Dir)],
        INSPECT,
        &["{T}/sys", "does not look like sysfs"],
    ),
    case(
        "sysfs root: a folder of example hosts",
        Empty,
        &[("sys/intel/kernel/iommu_groups", Dir), ("sys/amd/class/iommu", Dir)],
        INSPECT,
        &["{T}/sys", "does not look like sysfs"],
    ),
    case(
        "sysfs root: /",
        Empty,
        &[],
        &["inspect", "--sysfs-root", "/"],
        &["/: does not look like sysfs"],
    ),
    profile_case!(
        "profile address width 0",
        b"{\"iommus\": [{\"name\": \"d\", \"vendor\": \"intel\", \"address_width\": 0}]}",
        ["iommus[0].address_width", "0 bits"]
    ),
    profile_case!(
        "profile address width 200",
        b"{\"iommus\": [{\"name\": \"d\", \"vendor\": \"intel\", \"address_width\": 200}]}",
        ["iommus[0].address_width", "200 bits"]
    ),
    profile_case!(
        "profile address width 64 against a 39-bit aperture",
        b"{\"iommus\": [{\"name\": \"d\", \"vendor\": \"intel\", \"address_width\": 64, \"aperture\": {\"first\": \"0x0\", \"last\": \"0x7fffffffff\"}}]}",
        ["iommus[0].address_width", "contradicts the aperture"]
    ),
    profile_case!(
        "profile address width without its aperture",
        b"{\"iommus\": [{\"name\": \"d\", \"vendor\": \"intel\", \"address_width\": 39}]}",
        ["iommus[0].address_width", "contradicts the aperture (none)"]
    ),
    profile_case!(
        "profile page sizes 0",
        b"{\"iommus\": [{\"name\": \"d\", \"vendor\": \"intel\", \"page_sizes\": \"0x0\"}]}",
        ["iommus[0].page_sizes", "no page size"]
    ),
    // Page sizes below 4 KiB are not a bad input (the kernel maps with them; see
    // `profile_pages_below_4k_are_accepted`); a bitmap of 0 (above), one whose smallest
    // page is above 64 KiB (below) or one that is not a number still is.
    profile_case!(
        "profile page sizes as a list",
        b"{\"iommus\": [{\"name\": \"d\", \"vendor\": \"intel\", \"page_sizes\": \"2K 4K\"}]}",
        ["'2K 4K'", "line 1"]
    ),
    profile_case!(
        "profile smallest page 1 GiB",
        b"{\"iommus\": [{\"name\": \"d\", \"vendor\": \"intel\", \"page_sizes\": \"0x40000000\"}]}",
        ["iommus[0].page_sizes", "above 64 KiB"]
    ),
    profile_case!(
        "profile duplicate groups",
        b"{\"groups\": [{\"id\": 1, \"type\": \"DMA\", \"devices\": []}, {\"id\": 1, \"type\": \"DMA\", \"devices\": []}]}",
        ["groups[1].id", "group 1 is listed twice"]
    ),
    profile_case!(
        "profile group naming a missing IOMMU",
        b"{\"groups\": [{\"id\": 1, \"type\": \"DMA\", \"devices\": [], \"iommu\": \"dmar9\"}]}",
        ["groups[0].iommu", "'dmar9'"]
    ),
    profile_case!(
        "profile device naming a missing group",
        b"{\"devices\": [{\"name\": \"0000:03:00.0\", \"group\": 7}]}",
        ["devices[0].group", "group 7"]
    ),
    // ---- round two: export reports blockers as check does ------------------------
    case_code(
        1,
        "export virtio-iommu where the kernel did not enable interrupt remapping",
        Sysfs,
        // intremap=off: the VT-d ecap still has IR, the kernel's MSI chips are not
        // remapped ones.
        &[("sys/kernel/irq/24/chip_name", Bytes(b"PCI-MSI-0000:03:00.0\n"))],
        &["export", "virtio-iommu", "--sysfs-root", "{T}/sys", "--device", "03:00.0"],
        &["blocked", "group 1", "no interrupt remapping"],
    ),
    // ---- launch readiness: driver links ------------------------------------------
    case(
        "a driver link that names no driver",
        Sysfs,
        &[
            ("sys/bus/pci/devices/0000:03:00.0/vendor", Bytes(b"0x8086\n")),
            ("sys/bus/pci/devices/0000:03:00.0/driver", Link("/")),
        ],
        &["inspect", "--sysfs-root", "{T}/sys"],
        &["0000:03:00.0/driver", "a link to a driver directory"],
    ),
    case(
        "a driver that is not a symbolic link",
        Sysfs,
        &[("sys/bus/pci/devices/0000:03:00.0/driver", Bytes(b"vfio-pci\n"))],
        &["inspect", "--sysfs-root", "{T}/sys"],
        &["0000:03:00.0/driver", "symbolic link"],
    ),
];

/// A small valid host: one VT-d unit with a 39-bit aperture, group 1 (DMA, MSI
/// window) holding 0000:03:00.0, an AMD unit with no devices, the type1 parameters.
fn valid_sysfs(root: &Path) {
    let files: &[(&str, &[u8])] = &[
        (
            "kernel/iommu_groups/1/reserved_regions",
            b"0x00000000fee00000 0x00000000feefffff msi\n",
        ),
        ("kernel/iommu_groups/1/type", b"DMA\n"),
        ("kernel/iommu_groups/1/devices/0000:03:00.0", b""),
        ("class/iommu/dmar0/intel-iommu/cap", b"d2008c22260286\n"),
        ("class/iommu/dmar0/intel-iommu/ecap", b"f050da\n"),
        ("class/iommu/dmar0/devices/0000:03:00.0", b""),
        ("class/iommu/ivhd0/amd-iommu/cap", b"190b3\n"),
        ("class/iommu/ivhd0/amd-iommu/features", b"f77ef22294:0\n"),
        ("bus/pci/devices/0000:03:00.0/vendor", b"0x8086\n"),
        ("bus/pci/devices/0000:03:00.0/device", b"0x1533\n"),
        ("bus/pci/devices/0000:03:00.0/class", b"0x020000\n"),
        (
            "module/vfio_iommu_type1/parameters/dma_entry_limit",
            b"65535\n",
        ),
        (
            "module/vfio_iommu_type1/parameters/allow_unsafe_interrupts",
            b"N\n",
        ),
    ];
    for (p, bytes) in files {
        let path = root.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
    }
    std::os::unix::fs::symlink(
        "../../../../kernel/iommu_groups/1",
        root.join("bus/pci/devices/0000:03:00.0/iommu_group"),
    )
    .unwrap();
}

fn make(dir: &Path, rel: &str, f: F) {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    // Replace whatever the base tree has there.
    if let Ok(m) = path.symlink_metadata() {
        if m.is_dir() {
            std::fs::remove_dir_all(&path).unwrap();
        } else {
            std::fs::remove_file(&path).unwrap();
        }
    }
    match f {
        Bytes(b) => std::fs::write(&path, b).unwrap(),
        Dir => std::fs::create_dir_all(&path).unwrap(),
        Fifo => {
            let ok = {
                let _g = spawn_lock();
                Command::new("mkfifo").arg(&path).status().unwrap()
            };
            assert!(ok.success(), "mkfifo {}", path.display());
        }
        Dangling => {
            std::os::unix::fs::symlink(dir.join("does-not-exist"), &path).unwrap();
        }
        Link(target) => std::os::unix::fs::symlink(target, &path).unwrap(),
        Absent => {}
    }
}

/// Every process this test starts is spawned under this lock, and a closed-pipe case
/// holds it while it runs: a process forked meanwhile on another thread would hold a
/// copy of the pipe's reading end (until its exec), and the write would not fail.
fn spawn_lock() -> std::sync::MutexGuard<'static, ()> {
    static SPAWN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SPAWN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn case_dir(i: usize) -> PathBuf {
    let d = std::env::temp_dir().join(format!("iovactl-bad-inputs-{}-{i}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs iovactl with a deadline (a FIFO read blocks forever); `None` when it hung.
fn run(args: &[String]) -> Option<(i32, String)> {
    run_to(args, Stdout::Null)
}

/// [`run`] with standard output sent to `stdout`.
fn run_to(args: &[String], stdout: Stdout) -> Option<(i32, String)> {
    // Every spawn is under the lock, and the pipe of a closed-pipe case is made (and
    // its reading end closed) under it too: a process forked meanwhile on another thread
    // would hold a copy of the reading end until its exec, and the write would succeed.
    let guard = spawn_lock();
    let out = match stdout {
        Stdout::Null => Stdio::null(),
        Stdout::Full => std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("open /dev/full")
            .into(),
        Stdout::ClosedPipe => {
            // No reader from the start: the program's first write meets EPIPE. The
            // pipe's only reading end is the standard input of a `true` that has
            // ended; this process keeps only the writing end.
            let mut t = Command::new("true")
                .stdin(Stdio::piped())
                .spawn()
                .expect("run true");
            let writer = t.stdin.take().expect("the pipe to true");
            t.wait().expect("wait for true");
            writer.into()
        }
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_iovactl"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(Stdio::piped())
        .spawn()
        .expect("run iovactl");
    drop(guard);
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            let code = status.code().unwrap_or(-1);
            return Some((code, String::from_utf8_lossy(&out.stderr).into_owned()));
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn check(i: usize, c: &Case) -> Result<(), String> {
    let dir = case_dir(i);
    let t = dir.to_str().unwrap();
    if c.base == Sysfs {
        valid_sysfs(&dir.join("sys"));
        std::fs::write(dir.join("ok.trace"), "map 0x100000 0x200000\nunmap-all\n").unwrap();
    }
    for &(rel, f) in c.files {
        make(&dir, rel, f);
    }
    let args: Vec<String> = c.args.iter().map(|a| a.replace("{T}", t)).collect();
    let result = run_to(&args, c.stdout);
    let _ = std::fs::remove_dir_all(&dir);
    let Some((code, stderr)) = result else {
        return Err(format!("{}: hung (killed after 20 s)", c.name));
    };
    let mut problems = Vec::new();
    if code == 101 || stderr.contains("panicked") {
        problems.push("panicked".to_owned());
    }
    if code != c.code {
        problems.push(format!("exit code {code}, expected {}", c.code));
    }
    if c.stdout == Stdout::ClosedPipe && !stderr.is_empty() {
        problems.push("a closed pipe must end the program quietly".to_owned());
    }
    for e in c.expect {
        let e = e.replace("{T}", t);
        if !stderr.contains(&e) {
            problems.push(format!("stderr lacks {e:?}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}\n    args: {args:?}\n    stderr: {}",
            c.name,
            problems.join("; "),
            stderr.trim_end().replace('\n', "\n            ")
        ))
    }
}

#[test]
fn the_valid_base_tree_and_trace_are_accepted() {
    // The catalogue's cases are only meaningful if the tree they spoil is valid.
    let dir = case_dir(usize::MAX);
    valid_sysfs(&dir.join("sys"));
    std::fs::write(dir.join("ok.trace"), "map 0x100000 0x200000\nunmap-all\n").unwrap();
    let t = dir.to_str().unwrap();
    for args in [INSPECT, REPLAY_OK] {
        let args: Vec<String> = args.iter().map(|a| a.replace("{T}", t)).collect();
        let (code, stderr) = run(&args).expect("finishes");
        assert_eq!(code, 0, "{args:?}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A profile whose IOMMU has pages below 4 KiB is not a bad input: iommufd maps with
/// any IOMMU page up to the CPU page (iopt_table_add_domain; the selftests' mock domain
/// has 2 KiB pages) and type1 shows such pages as the CPU page
/// (vfio_update_pgsize_bitmap). A bitmap of 0 stays refused.
#[test]
fn profile_pages_below_4k_are_accepted() {
    let dir = case_dir(usize::MAX - 2);
    let t = dir.to_str().unwrap().to_owned();
    for (bitmap, code) in [
        ("0x40201001", 0),
        ("0x800", 0),
        ("0x40201800", 0),
        ("0x0", 2),
    ] {
        let path = format!("{t}/p.json");
        std::fs::write(
            &path,
            format!(
                "{{\"iommus\": [{{\"name\": \"d\", \"vendor\": \"intel\", \"page_sizes\": \"{bitmap}\"}}]}}"
            ),
        )
        .unwrap();
        let args = ["inspect".to_owned(), "--host".to_owned(), path];
        let (got, stderr) = run(&args).expect("finishes");
        assert_eq!(got, code, "page_sizes {bitmap}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_bad_input_is_refused_clearly() {
    assert!(CASES.len() >= 40, "the catalogue shrank to {}", CASES.len());
    // Run the cases on a few threads: each spawns a process, mostly waiting.
    let failures = std::sync::Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(c) = CASES.get(i) else { break };
                    if let Err(e) = check(i, c) {
                        failures.lock().unwrap().push(e);
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    println!(
        "bad-input catalogue: {} cases, {} failed",
        CASES.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} bad-input cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

/// Security defaults on the command line: `replay` refuses (exit 1, EPERM) a group
/// with a direct RMRR and a group without interrupt remapping, and attaches each only
/// with the `--allow-unsafe-*` flag for its risk; an identity (iommu=pt) group needs
/// none.
#[test]
fn unsafe_groups_need_their_unsafe_flag() {
    let dir = case_dir(usize::MAX - 1);
    let t = dir.to_str().unwrap().to_owned();
    valid_sysfs(&dir.join("sys"));
    // The same tree with interrupt remapping off (ecap bit 3 clear).
    valid_sysfs(&dir.join("noir"));
    std::fs::write(dir.join("noir/class/iommu/dmar0/intel-iommu/ecap"), "0\n").unwrap();
    std::fs::write(dir.join("ok.trace"), "map 0x100000 0x200000\n").unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/hosts/intel-vtd-39");
    let repo = repo.to_str().unwrap().to_owned();
    let trace = format!("{t}/ok.trace");
    let noir = format!("{t}/noir");
    // Group 0 of the example host is identity: VFIO claims it like any other.
    let (code, stderr) = run(&[
        "replay".to_owned(),
        "--sysfs-root".to_owned(),
        repo.clone(),
        "--device".to_owned(),
        "00:00.0".to_owned(),
        trace.clone(),
    ])
    .expect("finishes");
    assert_eq!(code, 0, "identity group: {stderr}");
    // (root, device, flag): group 5 has a direct RMRR.
    for (root, device, flag) in [
        (repo.as_str(), "00:14.0", "--allow-unsafe-direct"),
        (noir.as_str(), "03:00.0", "--allow-unsafe-interrupts"),
    ] {
        let base = ["replay", "--sysfs-root", root, "--device", device];
        let mut args: Vec<String> = base.iter().map(|s| s.to_string()).collect();
        args.push(trace.clone());
        let (code, stderr) = run(&args).expect("finishes");
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert!(stderr.contains("EPERM"), "{stderr}");
        for other in ["--allow-unsafe-direct", "--allow-unsafe-interrupts"] {
            let mut a = args.clone();
            a.insert(5, other.to_owned());
            let (code, stderr) = run(&a).expect("finishes");
            if other == flag {
                assert_eq!(code, 0, "{a:?}: {stderr}");
            } else {
                assert_eq!(code, 1, "{a:?} must still refuse: {stderr}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
