//! Locked memory on the command line: `replay --memlock` answers ENOMEM where the
//! kernel would; `check` gives the locked-memory verdict from `--memlock`, a running
//! process's limits (`--pid`: /proc/PID/limits and CapEff), libvirt's rule
//! (`--libvirt`), and says where the limit came from. Limits are set on real processes
//! with util-linux's `prlimit` and `setpriv`, which the test runs.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::{host, json, run, stderr};

const GIB: u64 = 1 << 30;

fn replay(args: &[&str], trace: &str) -> std::process::Output {
    let mut a = vec![
        "replay",
        "--sysfs-root",
        "",
        "--device",
        "03:00.0",
        "--kernel",
        "6.12",
    ];
    let h = host("intel-vtd-39");
    a[2] = &h;
    a.extend_from_slice(args);
    a.push("-");
    let mut child = Command::new(env!("CARGO_BIN_EXE_iovactl"))
        .args(&a)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("iovactl runs");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(trace.as_bytes())
        .expect("write the trace");
    child.wait_with_output().expect("iovactl finishes")
}

#[test]
fn replay_answers_enomem_past_the_limit_per_flavour() {
    // 16 KiB: four 4 KiB pages. The fifth page is refused; an unmap makes room.
    let trace =
        "map 0x100000 0x4000\nmap 0x200000 0x1000\nunmap 0x100000 0x4000\nmap 0x200000 0x1000\n";
    for flavour in ["type1v2", "type1v1", "iommufd", "compat-type1v2"] {
        let out = replay(&["--flavour", flavour, "--memlock", "16K"], trace);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "ok\nENOMEM\nok 0x4000\nok\n",
            "{flavour}: {}",
            stderr(&out)
        );
    }
    // --memlock-used: 12 KiB already locked leaves one page.
    let out = replay(
        &["--memlock", "16K", "--memlock-used", "12K"],
        "map 0x100000 0x1000\nmap 0x200000 0x1000\n",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\nENOMEM\n");
    // CAP_IPC_LOCK: never refused.
    let out = replay(
        &["--memlock", "4K", "--cap-ipc-lock"],
        "map 0x100000 0x10000\n",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
    // -v names the limit.
    let out = replay(&["--memlock", "4K", "-v"], "map 0x100000 0x2000\n");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ENOMEM") && text.contains("RLIMIT_MEMLOCK"),
        "{text}"
    );
}

#[test]
fn bad_memlock_inputs_name_the_input() {
    for (args, want) in [
        (vec!["--memlock", "lots"], "--memlock lots"),
        (vec!["--memlock", "100"], "100K?"),
        (
            vec!["--memlock", "16K", "--memlock-used", "x"],
            "--memlock-used x",
        ),
    ] {
        let out = replay(&args, "");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    }
    // --memlock-used alone: clap refuses it (exit 2).
    let out = replay(&["--memlock-used", "4K"], "");
    assert_eq!(out.status.code(), Some(2));
}

/// `check` of a q35 guest with `mem` of RAM and the NIC of intel-vtd-39, JSON.
fn check(mem: &str, extra: &[&str]) -> std::process::Output {
    let h = host("intel-vtd-39");
    let mut a = vec![
        "check",
        "--sysfs-root",
        h.as_str(),
        "--json",
        "--device",
        "03:00.0",
        "--guest",
        "qemu-q35",
        "--memory",
        mem,
    ];
    a.extend_from_slice(extra);
    run(&a)
}

#[test]
fn check_memlock_boundary_in_whole_pages() {
    let out = check("2G", &["--memlock", "unlimited"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v = json(&out);
    let needed: u64 = v["memlock"]["needed_bytes"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("needed_bytes");
    // type1 charges the RAM block as QEMU first maps it, before the low ROM overlays:
    // 2 GiB less the VGA window (128 KiB at 0xa0000, an MMIO hole). SeaBIOS is mapped
    // before QEMU copies it in: read-only pins of the zero page, not charged.
    assert_eq!(needed, 2 * GIB - (128 << 10));
    let at = needed.to_string();
    let below = (needed - 1).to_string();
    assert_eq!(check("2G", &["--memlock", &at]).status.code(), Some(0));
    let out = check("2G", &["--memlock", &below]);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    let p = &v["memlock"]["problem"];
    assert_eq!(p["kind"], "memlock", "{v}");
    assert!(
        p["fix"]
            .as_str()
            .unwrap()
            .contains(&format!("ulimit -l {}", needed / 1024)),
        "{p}"
    );
    // What the same counter already holds counts too (iommufd: the user's other VMs).
    let out = check("2G", &["--memlock", &at, "--memlock-used", "4K"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(json(&out)["memlock"]["already_bytes"], "4096");
    // CAP_IPC_LOCK: the kernel does not check.
    let out = check("2G", &["--memlock", "4K", "--cap-ipc-lock"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // A preset without --memlock has no verdict.
    assert_eq!(json(&check("2G", &[]))["memlock"], serde_json::Value::Null);
    // iommufd charges every page it pins, the zero page too: SeaBIOS's 256 KiB as well.
    let h = host("intel-vtd-39");
    let out = run(&[
        "check",
        "--sysfs-root",
        &h,
        "--json",
        "--qemu-version",
        "10.0",
        "--memlock",
        "unlimited",
        "--",
        "qemu-system-x86_64",
        "-M",
        "q35",
        "-m",
        "2G",
        "-object",
        "iommufd,id=ifd0",
        "-device",
        "vfio-pci,host=0000:03:00.0,iommufd=ifd0",
    ]);
    let v = json(&out);
    assert_eq!(
        v["memlock"]["needed_bytes"],
        (needed + (256 << 10)).to_string(),
        "{v}"
    );
    assert_eq!(v["memlock"]["charged_to"], "user", "{v}");
}

fn domain_xml(extra: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("iova-memlock-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let n = extra.len();
    let p = dir.join(format!("d{n}.xml"));
    std::fs::write(
        &p,
        format!(
            "<domain type='kvm'><name>m</name><memory unit='GiB'>2</memory>{extra}\
             <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>\
             <cpu mode='host-passthrough'/><devices>\
             <hostdev mode='subsystem' type='pci' managed='yes'><source>\
             <address domain='0x0000' bus='0x03' slot='0x00' function='0x0'/>\
             </source></hostdev></devices></domain>"
        ),
    )
    .unwrap();
    p
}

#[test]
fn libvirt_sets_the_limit_by_its_rule() {
    let h = host("intel-vtd-39");
    let check = |xml: &PathBuf| {
        run(&[
            "check",
            "--sysfs-root",
            &h,
            "--json",
            "--libvirt",
            xml.to_str().unwrap(),
        ])
    };
    // No tunables: guest memory + 1 GiB (qemuDomainGetMemLockLimitBytes).
    let v = json(&check(&domain_xml("")));
    assert_eq!(v["memlock"]["limit_bytes"], (3 * GIB).to_string(), "{v}");
    assert_eq!(v["memlock"]["ok"], true);
    // <hard_limit> wins: 1 GiB is too little.
    let out = check(&domain_xml(
        "<memtune><hard_limit unit='GiB'>1</hard_limit></memtune>",
    ));
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert!(
        v["memlock"]["limit_from"]
            .as_str()
            .unwrap()
            .contains("hard_limit"),
        "{v}"
    );
    // libvirt's "unlimited" (2^53 - 1 KiB) and <locked/>: no limit.
    for extra in [
        "<memtune><hard_limit unit='KiB'>9007199254740991</hard_limit></memtune>",
        "<memoryBacking><locked/></memoryBacking>",
    ] {
        let v = json(&check(&domain_xml(extra)));
        assert_eq!(
            v["memlock"]["limit_bytes"],
            serde_json::Value::Null,
            "{extra}"
        );
        assert_eq!(v["memlock"]["ok"], true, "{extra}");
    }
    // A bad unit names the element.
    let out = check(&domain_xml(
        "<memtune><hard_limit unit='parsecs'>1</hard_limit></memtune>",
    ));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("hard_limit"), "{}", stderr(&out));
}

/// A process claiming to be QEMU (argv[0] qemu-system-x86_64, QEMU's default 128 MiB
/// guest) with RLIMIT_MEMLOCK `limit` (lowered with prlimit: raising it needs
/// CAP_SYS_RESOURCE, which a test must not assume) and, unless `keep_cap`, without
/// CAP_IPC_LOCK (setpriv drops it from the bounding set; root keeps it otherwise).
fn fake_vm(limit: u64, keep_cap: bool) -> std::process::Child {
    let mut args = vec![format!("--memlock={limit}:{limit}")];
    if !keep_cap {
        args.extend(
            [
                "setpriv",
                "--bounding-set",
                "-ipc_lock",
                "--inh-caps",
                "-ipc_lock",
            ]
            .iter()
            .map(|s| (*s).to_owned()),
        );
    }
    args.extend([
        "bash".to_owned(),
        "-c".to_owned(),
        "exec -a qemu-system-x86_64 sleep 30".to_owned(),
    ]);
    Command::new("prlimit")
        .args(&args)
        .spawn()
        .expect("prlimit runs")
}

fn wait_for_exec(pid: u32) {
    for _ in 0..200 {
        let c = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if c.starts_with(b"qemu-system-x86_64") {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("the stand-in process did not exec");
}

#[test]
fn pid_reads_the_process_limit_and_capability() {
    let h = host("intel-vtd-39");
    let check = |pid: u32| {
        run(&[
            "check",
            "--sysfs-root",
            &h,
            "--json",
            "--qemu-version",
            "10.0",
            "--device",
            "03:00.0",
            "--pid",
            &pid.to_string(),
        ])
    };
    // This test's own CAP_IPC_LOCK decides whether the kept-capability row applies.
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let have_cap = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
        .is_some_and(|c| c >> 14 & 1 == 1);
    let mut rows = vec![(4u64 << 20, false, 1)];
    if have_cap {
        rows.push((4 << 20, true, 0));
    }
    for (limit, keep_cap, want) in rows {
        let mut child = fake_vm(limit, keep_cap);
        wait_for_exec(child.id());
        let out = check(child.id());
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(
            out.status.code(),
            Some(want),
            "limit {limit} cap {keep_cap}: {}",
            stderr(&out)
        );
        let v = json(&out);
        assert_eq!(v["memlock"]["limit_bytes"], limit.to_string(), "{v}");
        assert_eq!(v["memlock"]["cap_ipc_lock"], keep_cap, "{v}");
    }
    // A process that is gone: the file is named.
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    let out = check(pid);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(&format!("/proc/{pid}")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn pseries_memlock_is_not_modelled() {
    let p = common::root().join("examples/hosts/pseries-qemu-64k.json");
    let out = run(&[
        "check",
        "--host",
        p.to_str().unwrap(),
        "--guest",
        "qemu-pseries",
        "--memory",
        "4G",
        "--device",
        "0000:00:00.0",
        "--memlock",
        "1G",
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("--memlock"));
}

#[test]
fn a_pid_that_vanished_is_an_error_naming_it() {
    // A process that has exited and been reaped: its /proc entry is gone.
    let mut child = Command::new("true").spawn().expect("true runs");
    let pid = child.id();
    child.wait().expect("true exits");
    let out = run(&[
        "check",
        "--sysfs-root",
        &host("intel-vtd-39"),
        "--qemu-version",
        "10.0",
        "--device",
        "03:00.0",
        "--pid",
        &pid.to_string(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("/proc/{pid}")),
        "{}",
        stderr(&out)
    );
}
