//! The in-guest test binary of `vmtest/`.
//!
//! `vmtest/run` boots a Linux guest under QEMU (emulated Intel VT-d plus the `edu` DMA
//! device), binds `edu` to `vfio-pci` and runs this binary as
//! `iova-vmtest <type1|iommufd|compat|spapr|top-type1|top-compat|readiness-pt|readiness-noir> <tag> <pci-address>`
//! (`spapr` on a pseries guest, see `spapr_tests`; `top-*` on a guest whose IOMMU
//! reaches 2^64-1, see `top_tests`). Every check prints one line,
//! `vmtest: PASS <tag>/<name>` or `vmtest: FAIL <tag>/<name>: why`, on the serial
//! console; the harness counts them. The last line is `vmtest-guest: done <tag>`, so a
//! crash or hang shows as a missing line.
//!
//! Expected answers come from facts, never from the code under test: the errno tables
//! of `docs/semantics.md`, the guest's own sysfs (reserved regions, the VT-d
//! address width) read here independently, and the data a device DMA leaves in memory.

mod cli_tests;
mod compat_tests;
mod diff;
mod edu;
mod facts;
mod iommufd_tests;
mod qemu_vfio;
mod readiness_tests;
mod report;
mod spapr_tests;
mod top_tests;
mod type1_tests;

use report::Report;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(mode), Some(tag), Some(bdf)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!(
            "usage: iova-vmtest <type1|iommufd|compat|spapr|top-type1|top-compat|readiness-pt|readiness-noir> <tag> <pci-address> [seed]"
        );
        std::process::exit(2);
    };
    let seed = args
        .get(4)
        .and_then(|s| iova::range::parse_u64(s).ok())
        .unwrap_or(1);
    let mut r = Report::new(tag);
    // The release every expectation below is taken for: the one booted, never one the
    // test script assumed (vmtest/run prints this line with the boot's results).
    let (release, modelled) = facts::kernel();
    // `uname -r`, and the point release where the distribution's ABI name hides it
    // (Debian's 6.1.0-57-amd64 is 6.1.192).
    let uname = iova_linux::hostfacts::kernel_release().unwrap_or_default();
    let shown = match &release {
        Some(rel) if *rel != uname => format!("{uname} (point release {rel})"),
        _ => uname.clone(),
    };
    match &release {
        Some(rel) if iova::kernel::KernelVersion::parse(rel) == Ok(modelled) => {
            println!("vmtest-guest: kernel {shown} (answers modelled as {modelled})");
        }
        Some(_) => println!(
            "vmtest-guest: kernel {shown} (newer than every modelled release or unreadable: \
             answers modelled as {modelled}, the newest)"
        ),
        None => r.fail("kernel-release", "uname failed"),
    }
    match mode.as_str() {
        "type1" => {
            type1_tests::run(&mut r, bdf, seed);
            cli_tests::run(&mut r, bdf, tag);
        }
        "iommufd" => iommufd_tests::run(&mut r, bdf, seed),
        "spapr" => spapr_tests::run(&mut r, bdf, seed),
        // iommufd's VFIO compatibility container (kernels with
        // CONFIG_IOMMUFD_VFIO_CONTAINER), then the native IOAS checks.
        "compat" => {
            compat_tests::run(&mut r, bdf, seed);
            iommufd_tests::run(&mut r, bdf, seed);
        }
        // Launch readiness: iommu=pt, intremap=off, group viability.
        "readiness-pt" | "readiness-noir" => readiness_tests::run(&mut r, mode, bdf),
        // The top of the address space (guests whose IOMMU reaches 2^64-1).
        "top-type1" | "top-compat" => top_tests::run(&mut r, mode, bdf, seed),
        other => r.fail("mode", &format!("unknown mode {other}")),
    }
    // The real QEMU with vfio-pci against `iovactl check`, when vmtest/qemu-vfio.sh put
    // QEMU into this guest (after the other checks: the group is free again).
    qemu_vfio::run(&mut r, mode, bdf);
    println!("vmtest-guest: {} passed, {} failed", r.passed, r.failed);
    println!("vmtest-guest: done {tag}");
}
