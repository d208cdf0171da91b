//! Pins the ioctl numbers and checks the argument structs against the kernel headers.

use super::{nr, req};

/// The `_IOC` layout of an architecture, as `<asm/ioctl.h>` documents it: `nr` in bits
/// 0-7, `type` in bits 8-15, the size from bit 16, the direction from `dir_shift`.
#[derive(Clone, Copy)]
struct IocLayout {
    /// `_IOC_NONE`.
    none: u64,
    /// `_IOC_DIRSHIFT`.
    dir_shift: u32,
}

/// asm-generic (x86, arm, arm64, riscv, s390, loongarch): `_IOC_NONE` 0, 2 direction
/// bits at bit 30.
const GENERIC: IocLayout = IocLayout {
    none: 0,
    dir_shift: 30,
};
/// powerpc (also mips and sparc): `_IOC_NONE` 1, 3 direction bits at bit 29 (13 size
/// bits).
const POWERPC: IocLayout = IocLayout {
    none: 1,
    dir_shift: 29,
};

/// `_IO(ty, nr)` under `layout`: size 0, direction `_IOC_NONE`.
const fn io_for(layout: IocLayout, ty: u8, nr: u8) -> u64 {
    (layout.none << layout.dir_shift) | ((ty as u64) << 8) | nr as u64
}

/// The numbers on x86_64, as the C macros give them.
const X86_64: [(&str, u64); 19] = [
    ("VFIO_GET_API_VERSION", 0x3b64),
    ("VFIO_CHECK_EXTENSION", 0x3b65),
    ("VFIO_SET_IOMMU", 0x3b66),
    ("VFIO_GROUP_GET_STATUS", 0x3b67),
    ("VFIO_GROUP_SET_CONTAINER", 0x3b68),
    ("VFIO_GROUP_GET_DEVICE_FD", 0x3b6a),
    ("VFIO_DEVICE_GET_INFO", 0x3b6b),
    ("VFIO_DEVICE_GET_REGION_INFO", 0x3b6c),
    ("VFIO_IOMMU_GET_INFO", 0x3b70),
    ("VFIO_IOMMU_MAP_DMA", 0x3b71),
    ("VFIO_IOMMU_UNMAP_DMA", 0x3b72),
    ("VFIO_DEVICE_BIND_IOMMUFD", 0x3b76),
    ("VFIO_DEVICE_ATTACH_IOMMUFD_PT", 0x3b77),
    ("IOMMU_IOAS_ALLOC", 0x3b81),
    ("IOMMU_IOAS_ALLOW_IOVAS", 0x3b82),
    ("IOMMU_IOAS_COPY", 0x3b83),
    ("IOMMU_IOAS_IOVA_RANGES", 0x3b84),
    ("IOMMU_IOAS_MAP", 0x3b85),
    ("IOMMU_IOAS_UNMAP", 0x3b86),
];

/// The numbers on powerpc64: the same with `_IOC_NONE << 29` = 0x2000_0000.
const POWERPC64: [(&str, u64); 19] = [
    ("VFIO_GET_API_VERSION", 0x2000_3b64),
    ("VFIO_CHECK_EXTENSION", 0x2000_3b65),
    ("VFIO_SET_IOMMU", 0x2000_3b66),
    ("VFIO_GROUP_GET_STATUS", 0x2000_3b67),
    ("VFIO_GROUP_SET_CONTAINER", 0x2000_3b68),
    ("VFIO_GROUP_GET_DEVICE_FD", 0x2000_3b6a),
    ("VFIO_DEVICE_GET_INFO", 0x2000_3b6b),
    ("VFIO_DEVICE_GET_REGION_INFO", 0x2000_3b6c),
    ("VFIO_IOMMU_GET_INFO", 0x2000_3b70),
    ("VFIO_IOMMU_MAP_DMA", 0x2000_3b71),
    ("VFIO_IOMMU_UNMAP_DMA", 0x2000_3b72),
    ("VFIO_DEVICE_BIND_IOMMUFD", 0x2000_3b76),
    ("VFIO_DEVICE_ATTACH_IOMMUFD_PT", 0x2000_3b77),
    ("IOMMU_IOAS_ALLOC", 0x2000_3b81),
    ("IOMMU_IOAS_ALLOW_IOVAS", 0x2000_3b82),
    ("IOMMU_IOAS_COPY", 0x2000_3b83),
    ("IOMMU_IOAS_IOVA_RANGES", 0x2000_3b84),
    ("IOMMU_IOAS_MAP", 0x2000_3b85),
    ("IOMMU_IOAS_UNMAP", 0x2000_3b86),
];

#[test]
fn request_numbers_per_architecture() {
    for (((name, tn), (xn, x)), (pn, p)) in nr::ALL.iter().zip(X86_64).zip(POWERPC64) {
        assert_eq!((*name, *name), (xn, pn), "table order");
        assert_eq!(io_for(GENERIC, tn.0, tn.1), x, "{name} on x86_64");
        assert_eq!(io_for(POWERPC, tn.0, tn.1), p, "{name} on powerpc64");
    }
}

#[test]
fn request_numbers_used_on_this_host() {
    let host = if cfg!(any(
        target_arch = "powerpc",
        target_arch = "powerpc64",
        target_arch = "mips",
        target_arch = "mips64",
        target_arch = "sparc",
        target_arch = "sparc64"
    )) {
        POWERPC64
    } else {
        X86_64
    };
    for ((name, tn), (_, want)) in nr::ALL.iter().zip(host) {
        #[allow(clippy::unnecessary_cast)] // c_int on musl, c_ulong on glibc
        let got = req(*tn) as u64 & 0xffff_ffff;
        assert_eq!(got, want, "{name}");
    }
}

/// Another source of `<linux/vfio.h>` and `<linux/iommufd.h>`:
/// `IOVA_LINUX_UAPI=<linux>/include/uapi` checks against a kernel tree's headers (e.g.
/// the 6.12 source vmtest unpacks) instead of the installed `linux-libc-dev`, which
/// lacks `<linux/iommufd.h>` before 6.2 (Debian bookworm ships 6.1).
fn uapi_dir() -> Option<std::path::PathBuf> {
    std::env::var_os("IOVA_LINUX_UAPI").map(Into::into)
}

/// Compiles and runs a C program against the kernel headers (`linux-libc-dev`, or
/// [`uapi_dir`]); returns its output, or `None` when it did not compile.
fn run_c(src: &str) -> Option<String> {
    let dir = std::env::temp_dir().join(format!("iova-linux-abi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let c = dir.join(format!("t{}.c", src.len()));
    let exe = dir.join(format!("t{}", src.len()));
    std::fs::write(&c, src).ok()?;
    let mut cc = std::process::Command::new("cc");
    if let Some(d) = uapi_dir() {
        // Only the two headers: the rest of a kernel tree's uapi needs headers_install.
        let inc = dir.join("inc");
        std::fs::create_dir_all(inc.join("linux")).ok()?;
        for h in ["vfio.h", "iommufd.h"] {
            let _ = std::fs::copy(d.join("linux").join(h), inc.join("linux").join(h));
        }
        // headers_install strips `__user`; define it away instead.
        cc.arg("-D__user=").arg("-I").arg(inc);
    }
    let ok = cc.arg("-o").arg(&exe).arg(&c).status().ok()?.success();
    if !ok {
        return None;
    }
    let out = std::process::Command::new(&exe).output().ok()?;
    let _ = std::fs::remove_dir_all(&dir);
    String::from_utf8(out.stdout).ok()
}

/// `name value` lines into pairs.
fn parse(out: &str) -> Vec<(String, u64)> {
    out.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

/// One struct's size and the offsets of the fields this crate uses, as the bindings
/// lay them out, under C names (`struct.field`).
macro_rules! layout {
    ($out:ident, $c:literal, $t:ty, [$($f:ident),*]) => {
        $out.push((concat!($c, ".sizeof()").to_owned(), std::mem::size_of::<$t>() as u64));
        $( $out.push((concat!($c, ".", stringify!($f)).to_owned(),
            std::mem::offset_of!($t, $f) as u64)); )*
    };
}

/// C statements printing the same names from the header.
fn c_layout(c: &str, fields: &[&str]) -> String {
    let mut s = format!("printf(\"{c}.sizeof() %zu\\n\", sizeof(struct {c}));\n");
    for f in fields {
        s.push_str(&format!(
            "printf(\"{c}.{f} %zu\\n\", offsetof(struct {c}, {f}));\n"
        ));
    }
    s
}

/// The argument structs (from vfio-bindings and iommufd-bindings) and the request
/// numbers against the kernel headers installed on this machine. Every field offset
/// and request number must match; a struct may be longer in the bindings than in an
/// older header (fields appended since), never shorter.
#[test]
fn bindings_match_the_installed_kernel_headers() {
    use iommufd_bindings as fd;
    use vfio_bindings::bindings::vfio as v;
    let have = |h: &str| {
        std::path::Path::new("/usr/include/linux").join(h).exists()
            || uapi_dir().is_some_and(|d| d.join("linux").join(h).exists())
    };
    assert!(
        have("vfio.h"),
        "no /usr/include/linux/vfio.h: install linux-libc-dev"
    );
    let iommufd = have("iommufd.h");
    let mut ours: Vec<(String, u64)> = Vec::new();
    layout!(
        ours,
        "vfio_group_status",
        v::vfio_group_status,
        [argsz, flags]
    );
    layout!(
        ours,
        "vfio_iommu_type1_info",
        v::vfio_iommu_type1_info,
        [argsz, flags, iova_pgsizes, cap_offset]
    );
    layout!(
        ours,
        "vfio_info_cap_header",
        v::vfio_info_cap_header,
        [id, version, next]
    );
    layout!(
        ours,
        "vfio_iommu_type1_info_cap_iova_range",
        v::vfio_iommu_type1_info_cap_iova_range,
        [header, nr_iovas, iova_ranges]
    );
    layout!(ours, "vfio_iova_range", v::vfio_iova_range, [start, end]);
    layout!(
        ours,
        "vfio_iommu_type1_info_dma_avail",
        v::vfio_iommu_type1_info_dma_avail,
        [header, avail]
    );
    layout!(
        ours,
        "vfio_iommu_type1_dma_map",
        v::vfio_iommu_type1_dma_map,
        [argsz, flags, vaddr, iova, size]
    );
    layout!(
        ours,
        "vfio_iommu_type1_dma_unmap",
        v::vfio_iommu_type1_dma_unmap,
        [argsz, flags, iova, size]
    );
    layout!(
        ours,
        "vfio_device_info",
        v::vfio_device_info,
        [argsz, flags, num_regions, num_irqs]
    );
    layout!(
        ours,
        "vfio_region_info",
        v::vfio_region_info,
        [argsz, flags, index, cap_offset, size, offset]
    );
    let mut c = String::from("#include <stdio.h>\n#include <stddef.h>\n#include <linux/vfio.h>\n");
    if iommufd {
        c.push_str("#include <linux/iommufd.h>\n");
    }
    c.push_str("int main(void) {\n");
    let type1: [(&str, &[&str]); 10] = [
        ("vfio_group_status", &["argsz", "flags"]),
        (
            "vfio_iommu_type1_info",
            &["argsz", "flags", "iova_pgsizes", "cap_offset"],
        ),
        ("vfio_info_cap_header", &["id", "version", "next"]),
        (
            "vfio_iommu_type1_info_cap_iova_range",
            &["header", "nr_iovas", "iova_ranges"],
        ),
        ("vfio_iova_range", &["start", "end"]),
        ("vfio_iommu_type1_info_dma_avail", &["header", "avail"]),
        (
            "vfio_iommu_type1_dma_map",
            &["argsz", "flags", "vaddr", "iova", "size"],
        ),
        (
            "vfio_iommu_type1_dma_unmap",
            &["argsz", "flags", "iova", "size"],
        ),
        (
            "vfio_device_info",
            &["argsz", "flags", "num_regions", "num_irqs"],
        ),
        (
            "vfio_region_info",
            &["argsz", "flags", "index", "cap_offset", "size", "offset"],
        ),
    ];
    for (s, f) in type1 {
        c.push_str(&c_layout(s, f));
    }
    // The iommufd-era VFIO structs and requests appeared in Linux 6.6 headers.
    c.push_str("#ifdef VFIO_DEVICE_BIND_IOMMUFD\n");
    c.push_str(&c_layout(
        "vfio_device_bind_iommufd",
        &["argsz", "flags", "iommufd", "out_devid"],
    ));
    c.push_str(&c_layout(
        "vfio_device_attach_iommufd_pt",
        &["argsz", "flags", "pt_id"],
    ));
    c.push_str("#endif\n");
    let mut numbers = vec![
        "VFIO_GET_API_VERSION",
        "VFIO_CHECK_EXTENSION",
        "VFIO_SET_IOMMU",
        "VFIO_GROUP_GET_STATUS",
        "VFIO_GROUP_SET_CONTAINER",
        "VFIO_GROUP_GET_DEVICE_FD",
        "VFIO_DEVICE_GET_INFO",
        "VFIO_DEVICE_GET_REGION_INFO",
        "VFIO_IOMMU_GET_INFO",
        "VFIO_IOMMU_MAP_DMA",
        "VFIO_IOMMU_UNMAP_DMA",
        "VFIO_DEVICE_BIND_IOMMUFD",
        "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
    ];
    if iommufd {
        for (s, f) in [
            ("iommu_ioas_alloc", &["size", "flags", "out_ioas_id"][..]),
            ("iommu_iova_range", &["start", "last"]),
            (
                "iommu_ioas_iova_ranges",
                &[
                    "size",
                    "ioas_id",
                    "num_iovas",
                    "allowed_iovas",
                    "out_iova_alignment",
                ],
            ),
            (
                "iommu_ioas_allow_iovas",
                &["size", "ioas_id", "num_iovas", "allowed_iovas"],
            ),
            (
                "iommu_ioas_map",
                &["size", "flags", "ioas_id", "user_va", "length", "iova"],
            ),
            ("iommu_ioas_unmap", &["size", "ioas_id", "iova", "length"]),
            (
                "iommu_ioas_copy",
                &[
                    "size",
                    "flags",
                    "dst_ioas_id",
                    "src_ioas_id",
                    "length",
                    "dst_iova",
                    "src_iova",
                ],
            ),
        ] {
            c.push_str(&c_layout(s, f));
        }
        numbers.extend([
            "IOMMU_IOAS_ALLOC",
            "IOMMU_IOAS_ALLOW_IOVAS",
            "IOMMU_IOAS_COPY",
            "IOMMU_IOAS_IOVA_RANGES",
            "IOMMU_IOAS_MAP",
            "IOMMU_IOAS_UNMAP",
        ]);
    }
    for n in &numbers {
        c.push_str(&format!(
            "#ifdef {n}\nprintf(\"{n} %lu\\n\", (unsigned long){n});\n#endif\n"
        ));
    }
    c.push_str("return 0;\n}\n");
    let out = run_c(&c).expect("cc could not compile a program against <linux/vfio.h>");
    let theirs = parse(&out);

    layout!(
        ours,
        "vfio_device_bind_iommufd",
        v::vfio_device_bind_iommufd,
        [argsz, flags, iommufd, out_devid]
    );
    layout!(
        ours,
        "vfio_device_attach_iommufd_pt",
        v::vfio_device_attach_iommufd_pt,
        [argsz, flags, pt_id]
    );
    layout!(
        ours,
        "iommu_ioas_alloc",
        fd::iommu_ioas_alloc,
        [size, flags, out_ioas_id]
    );
    layout!(
        ours,
        "iommu_iova_range",
        fd::iommu_iova_range,
        [start, last]
    );
    layout!(
        ours,
        "iommu_ioas_iova_ranges",
        fd::iommu_ioas_iova_ranges,
        [size, ioas_id, num_iovas, allowed_iovas, out_iova_alignment]
    );
    layout!(
        ours,
        "iommu_ioas_allow_iovas",
        fd::iommu_ioas_allow_iovas,
        [size, ioas_id, num_iovas, allowed_iovas]
    );
    layout!(
        ours,
        "iommu_ioas_map",
        fd::iommu_ioas_map,
        [size, flags, ioas_id, user_va, length, iova]
    );
    layout!(
        ours,
        "iommu_ioas_unmap",
        fd::iommu_ioas_unmap,
        [size, ioas_id, iova, length]
    );
    layout!(
        ours,
        "iommu_ioas_copy",
        fd::iommu_ioas_copy,
        [
            size,
            flags,
            dst_ioas_id,
            src_ioas_id,
            length,
            dst_iova,
            src_iova
        ]
    );
    for (name, tn) in nr::ALL {
        #[allow(clippy::unnecessary_cast)]
        ours.push((name.to_owned(), req(tn) as u64 & 0xffff_ffff));
    }

    let mut checked = 0;
    for (k, v) in &theirs {
        let mine = ours.iter().find(|(n, _)| n == k).map(|(_, m)| *m);
        if k.ends_with(".sizeof()") {
            // The kernel extends its structs at the end (argsz tells it which version
            // it got): newer bindings may be longer than an older header's struct
            // (`vfio_device_info.pad` since 6.6, `vfio_device_bind_iommufd.
            // token_uuid_ptr` since 6.18), never shorter.
            assert!(mine >= Some(*v), "{k}: bindings {mine:?}, header {v}");
        } else {
            assert_eq!(mine, Some(*v), "{k}: bindings vs the installed header");
        }
        checked += 1;
    }
    // Every type1 struct and the type1 request numbers are in any header since 3.x.
    assert!(checked >= 45, "only {checked} items checked:\n{out}");
    eprintln!(
        "checked {checked} sizes, offsets and request numbers against {} (iommufd.h {})",
        uapi_dir().map_or("/usr/include".into(), |d| d.display().to_string()),
        if iommufd {
            "present"
        } else {
            "absent: iommufd structs not checked"
        }
    );
}
