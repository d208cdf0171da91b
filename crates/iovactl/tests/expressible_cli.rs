//! `iovactl replay` with the operations of issue 15's "not expressible" list: IOAS_COPY,
//! a reserved range arriving with a group mid-trace, BAR-backed maps and IOVA_RANGES
//! with a capacity. Expected answers are the kernel's (see
//! crates/iova/tests/expressible.rs for the source of each).

mod common;

use common::{host, run, stderr};

/// Writes `trace` to a file of its own and replays it on the 39-bit VT-d example host.
fn replay(name: &str, extra: &[&str], trace: &str) -> (Vec<String>, std::process::Output) {
    let dir = std::env::temp_dir().join(format!("iovactl-expressible-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.trace"));
    std::fs::write(&path, trace).unwrap();
    let root = host("intel-vtd-39");
    let mut args = vec!["replay", "--sysfs-root", root.as_str(), "--kernel", "6.12"];
    args.extend_from_slice(extra);
    let p = path.display().to_string();
    args.push(&p);
    let out = run(&args);
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    (lines, out)
}

#[test]
fn copy_through_replay() {
    let (got, out) = replay(
        "copy",
        &["--flavour", "iommufd", "--device", "0000:03:00.0"],
        "map 0x100000 0x4000 0x7f0000000000\n\
         map 0x104000 0x2000 0x7f0000100000 r\n\
         copy 0x100000 0x6000 0x200000 r   # two areas, one copy\n\
         copy 0x100000 0x6000 0x300000     # WRITE on read-only pages\n\
         copy 0x100000 0x7000 0x300000 r   # 0x106000 is not mapped\n\
         copy 0x100000 0x1000 auto\n\
         unmap 0x200000 0x4000\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        got,
        [
            "ok",
            "ok",
            "ok 0x200000",
            "EPERM",
            "ENOENT",
            "ok 0x1000",
            "ok 0x4000"
        ]
    );
    // type1 has no IOAS_COPY.
    let (got, _) = replay(
        "copy-type1",
        &["--device", "0000:03:00.0"],
        "map 0x100000 0x1000\ncopy 0x100000 0x1000 0x200000\n",
    );
    assert_eq!(got, ["ok", "ENOTTY"]);
}

/// Group 5 of the example host is a USB controller with a direct (RMRR) region at
/// 0xbd800000-0xbd9fffff: attaching it mid-trace adds that reserved range at run time.
#[test]
fn reserved_range_arrives_with_an_attach() {
    let trace = "map 0xbd800000 0x200000 0x7f0000000000\n\
                 attach 5\n\
                 unmap 0xbd800000 0x200000\n\
                 attach 5\n\
                 map 0xbd800000 0x1000 0x7f0000000000\n\
                 map 0xbda00000 0x1000 0x7f0000000000\n\
                 detach 5\n\
                 map 0xbd800000 0x1000 0x7f0000000000\n";
    for (flavour, conflict) in [("iommufd", "EADDRINUSE"), ("type1v2", "EINVAL")] {
        let (got, out) = replay(
            &format!("resv-{flavour}"),
            &[
                "--flavour",
                flavour,
                "--device",
                "0000:03:00.0",
                "--allow-unsafe-direct",
            ],
            trace,
        );
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(
            got,
            [
                "ok",
                conflict,
                "ok 0x200000",
                "ok",
                "EINVAL",
                "ok",
                "ok",
                "ok"
            ],
            "{flavour}"
        );
    }
    // Without the opt-in the group is refused for its RMRR before any IOVA check.
    let (got, _) = replay(
        "resv-refused",
        &["--flavour", "iommufd", "--device", "0000:03:00.0"],
        "attach 5\n",
    );
    assert_eq!(got, ["EPERM"]);
}

#[test]
fn bar_backed_maps_per_flavour() {
    let trace = "map 0x100000 0x1000 0x7f0000000000 bar\nmap 0x200000 0x1000 0x7f0000000000\n";
    for (flavour, want) in [
        ("type1v2", "ok"),
        ("type1v1", "ok"),
        ("iommufd", "EFAULT"),
        ("compat-type1v2", "EFAULT"),
    ] {
        let (got, out) = replay(
            &format!("bar-{flavour}"),
            &["--flavour", flavour, "--device", "0000:03:00.0"],
            trace,
        );
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(got, [want, "ok"], "{flavour}");
    }
    // An IOAS with no device accepts it, and the attach then fails.
    let (got, _) = replay(
        "bar-nodomain",
        &["--flavour", "iommufd"],
        "map 0x100000 0x1000 0x7f0000000000 bar\nattach 12\nunmap-all\nattach 12\n",
    );
    assert_eq!(got, ["ok", "EFAULT", "ok 0x1000", "ok"]);
}

#[test]
fn iova_ranges_capacity_and_fail_on_refusal() {
    let (got, out) = replay(
        "ranges",
        &["--flavour", "iommufd", "--device", "0000:03:00.0", "-v"],
        "iova-ranges 1\niova-ranges 2\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        got,
        [
            "iova-ranges 1 -> EMSGSIZE need 2 got 0x0-0xfedfffff align 0x1000",
            "iova-ranges 2 -> ok 0x0-0xfedfffff,0xfef00000-0x7fffffffff align 0x1000",
        ]
    );
    // EMSGSIZE is a failed ioctl: --fail-on-refusal counts it.
    let (_, out) = replay(
        "ranges-fail",
        &[
            "--flavour",
            "iommufd",
            "--device",
            "0000:03:00.0",
            "--fail-on-refusal",
        ],
        "iova-ranges 0\n",
    );
    assert_eq!(out.status.code(), Some(1));
    let (_, out) = replay(
        "ranges-pass",
        &[
            "--flavour",
            "iommufd",
            "--device",
            "0000:03:00.0",
            "--fail-on-refusal",
        ],
        "iova-ranges 2\n",
    );
    assert_eq!(out.status.code(), Some(0));
    // A capacity beyond num_iovas' 32 bits is bad input.
    let (_, out) = replay(
        "ranges-bad",
        &["--flavour", "iommufd"],
        "iova-ranges 0x100000000\n",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("CAPACITY"), "{}", stderr(&out));
}
