//! The side-by-side harness behind `scripts/bench`.
//!
//! `bench [--quick] [--out PATH]`: runs every workload for ours and for its peer in
//! this process, prints `BENCH <name> ours_ns=<median> peer=<peer> peer_ns=<median>
//! ratio=<peer_ns/ours_ns> [extra fields]` per workload and peer, and writes the same
//! numbers as JSON (default `target/bench.json`).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use iova::alloc::{Policy, SharedAllocator};
use iova_bench::{
    FirstFitPeer, IovaAlloc, Latency, PAGE, RangeAllocPeer, Rng, alloc_hit, churn, fragment,
    low_4g, mixed_pages, one_page, ours, space_39, tracker,
};
use serde_json::{Value, json};

struct Report {
    rows: Vec<Value>,
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    fn line(&mut self, name: &str, ours_ns: f64, peer: &str, peer_ns: f64, extra: &[(&str, f64)]) {
        let ratio = if ours_ns > 0.0 {
            peer_ns / ours_ns
        } else {
            0.0
        };
        let mut text = format!(
            "BENCH {name} ours_ns={ours_ns:.1} peer={peer} peer_ns={peer_ns:.1} ratio={ratio:.2}"
        );
        let mut fields = BTreeMap::new();
        for (k, v) in extra {
            text.push_str(&format!(" {k}={v:.1}"));
            fields.insert((*k).to_owned(), json!(v));
        }
        println!("{text}");
        self.rows.push(json!({
            "name": name, "ours_ns": ours_ns, "peer": peer, "peer_ns": peer_ns,
            "ratio": ratio, "extra": fields,
        }));
    }
}

impl Report {
    /// A workload without a peer: its name and fields only.
    fn solo(&mut self, name: &str, fields: &[(&str, f64)]) {
        let mut text = format!("BENCH {name}");
        let mut map = BTreeMap::new();
        for (k, v) in fields {
            text.push_str(&format!(" {k}={v:.1}"));
            map.insert((*k).to_owned(), json!(v));
        }
        println!("{text}");
        self.rows
            .push(json!({"name": name, "peer": null, "extra": map}));
    }
}

/// Writes the replay trace of `ops` operations to `path`, line by line (this process
/// never holds it whole): a sliding window of 1,024 live 4 KiB mappings (map page j,
/// unmap page j - 1024) in the 39-bit example host's valid space.
fn write_replay_trace(path: &std::path::Path, ops: u64) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::fs::File::create(path)?);
    let page = |j: u64| 0x10_0000 + (j % (1 << 18)) * 0x1000;
    for j in 0..ops / 2 {
        writeln!(out, "map {:#x} 0x1000", page(j))?;
        writeln!(out, "unmap {:#x} 0x1000", page(j.wrapping_sub(1024)))?;
    }
    out.flush()
}

/// `iovactl replay --kernel KERNEL -` of the trace in file `trace` (its standard input) on the 39-bit
/// example host: seconds end to end (process start, parsing, simulation, answers to
/// /dev/null) and the child's peak RSS in MiB (from `wait4`). The trace is a file, not
/// a buffer of this process, because a child's peak RSS counts what it shared with
/// this process before its exec.
fn replay_run(iovactl: &str, trace: &std::path::Path, kernel: &str) -> Option<(f64, f64)> {
    let input = std::fs::File::open(trace).ok()?;
    let t = Instant::now();
    let child = std::process::Command::new(iovactl)
        .args([
            "replay",
            "--sysfs-root",
            "examples/hosts/intel-vtd-39",
            "--device",
            "03:00.0",
            "--kernel",
            kernel,
            "-",
        ])
        .stdin(input)
        .stdout(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let (status, rss_kib) = iova_linux::hostfacts::wait_with_peak_rss(child).ok()?;
    let secs = t.elapsed().as_secs_f64();
    if status.code() != Some(0) {
        eprintln!("bench: iovactl replay failed");
        return None;
    }
    Some((secs, rss_kib as f64 / 1024.0))
}

/// The same trace file through the naive per-page model (in this process): seconds,
/// reading included.
fn replay_naive(trace: &std::path::Path) -> Option<f64> {
    // The 39-bit example host's valid ranges (group 12): below and above the MSI window.
    let mut m =
        iova_bench::naive::PerPageModel::new(&[(0, 0xfedf_ffff), (0xfef0_0000, 0x7f_ffff_ffff)]);
    let t = Instant::now();
    let input = std::io::BufReader::new(std::fs::File::open(trace).ok()?);
    let ops = m.replay(input, std::io::BufWriter::new(std::io::sink()));
    let secs = t.elapsed().as_secs_f64();
    ops.ok()?;
    black_box(m.len());
    Some(secs)
}

fn replay_lines(r: &mut Report, quick: bool) {
    let iovactl = std::env::var("IOVACTL").unwrap_or_else(|_| "target/release/iovactl".into());
    let sizes: &[u64] = if quick {
        &[1_000_000]
    } else {
        &[1_000_000, 10_000_000]
    };
    for &ops in sizes {
        let path =
            std::env::temp_dir().join(format!("iova-bench-trace-{}-{ops}", std::process::id()));
        if let Err(e) = write_replay_trace(&path, ops) {
            eprintln!("bench: cannot write the trace: {e}");
            continue;
        }
        // 6.12: type1 before 6.18, where the model replays the kernel's own red-black
        // tree of mappings (its 64-bit sums decide the answers at the top of the
        // space); 7.2 needs no such tree.
        let ours = replay_run(&iovactl, &path, "6.12");
        let ours_72 = replay_run(&iovactl, &path, "7.2");
        let peer = replay_naive(&path);
        let _ = std::fs::remove_file(&path);
        let (Some((secs, rss_mib)), Some(peer_secs)) = (ours, peer) else {
            continue;
        };
        let per_op = |s: f64| s * 1e9 / ops as f64;
        r.line(
            &format!("replay-{}M", ops / 1_000_000),
            per_op(secs),
            "naive-per-page",
            per_op(peer_secs),
            &[
                ("ops", ops as f64),
                ("ops_per_s", ops as f64 / secs),
                ("peer_ops_per_s", ops as f64 / peer_secs),
                ("peak_rss_mib", rss_mib),
                (
                    "ours_kernel_7_2_ns",
                    ours_72.map_or(0.0, |(s, _)| per_op(s)),
                ),
            ],
        );
    }
}

/// Runs `cmd args` with output to /dev/null `reps` times; the median wall time in ms,
/// or `None` if a run failed (exit code other than 0).
fn run_ms(cmd: &str, args: &[String], reps: usize) -> Option<f64> {
    run_ms_with(cmd, args, None, reps)
}

/// [`run_ms`] with `stdin_file` (opened anew for each run) on standard input.
fn run_ms_with(
    cmd: &str,
    args: &[String],
    stdin_file: Option<&std::path::Path>,
    reps: usize,
) -> Option<f64> {
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let stdin = match stdin_file {
            Some(f) => std::process::Stdio::from(std::fs::File::open(f).ok()?),
            None => std::process::Stdio::inherit(),
        };
        let t = Instant::now();
        let status = std::process::Command::new(cmd)
            .args(args)
            .stdin(stdin)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .ok()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        if !status.success() {
            eprintln!("bench: {cmd} {} failed", args.join(" "));
            return None;
        }
    }
    Some(median(times))
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// `iovactl check` of a QEMU command line, end to end (process, parse, host, domain,
/// verdict), against the preset form of the same guest.
fn check_lines(r: &mut Report, quick: bool) {
    let iovactl = std::env::var("IOVACTL").unwrap_or_else(|_| "target/release/iovactl".into());
    let reps = if quick { 31 } else { 101 };
    let cmdline = strings(&[
        "check",
        "--sysfs-root",
        "examples/hosts/intel-vtd-39",
        "--qemu-version",
        "10.0",
        "--",
        "qemu-system-x86_64",
        "-machine",
        "q35",
        "-accel",
        "kvm",
        "-m",
        "8G",
        "-cpu",
        "host",
        "-device",
        "vfio-pci,host=0000:03:00.0",
    ]);
    let preset = strings(&[
        "check",
        "--sysfs-root",
        "examples/hosts/intel-vtd-39",
        "--device",
        "03:00.0",
        "--guest",
        "qemu-q35",
        "--memory",
        "8G",
    ]);
    let (Some(o), Some(p)) = (
        run_ms(&iovactl, &cmdline, reps),
        run_ms(&iovactl, &preset, reps),
    ) else {
        return;
    };
    r.line(
        "check-qemu-cmdline",
        o * 1e6,
        "preset-form",
        p * 1e6,
        &[("ours_ms", o), ("peer_ms", p), ("runs", reps as f64)],
    );
}

/// Writes a synthetic sysfs tree of `groups` IOMMU groups (one Intel NIC each, behind
/// one VT-d unit, an MSI reservation per group) under `root`.
fn synthetic_sysfs(root: &std::path::Path, groups: usize) -> std::io::Result<()> {
    use std::fs::{create_dir_all, write};
    use std::os::unix::fs::symlink;
    let ex = std::path::Path::new("examples/hosts/intel-vtd-39");
    let unit = root.join("devices/virtual/iommu/dmar0");
    create_dir_all(unit.join("intel-iommu"))?;
    create_dir_all(unit.join("devices"))?;
    for f in ["cap", "ecap", "version"] {
        let from = ex.join("devices/virtual/iommu/dmar1/intel-iommu").join(f);
        write(unit.join("intel-iommu").join(f), std::fs::read(from)?)?;
    }
    create_dir_all(root.join("class/iommu"))?;
    symlink(
        "../../devices/virtual/iommu/dmar0",
        root.join("class/iommu/dmar0"),
    )?;
    let params = root.join("module/vfio_iommu_type1/parameters");
    create_dir_all(&params)?;
    write(params.join("dma_entry_limit"), "65535\n")?;
    write(params.join("allow_unsafe_interrupts"), "N\n")?;
    create_dir_all(root.join("bus/pci/devices"))?;
    for g in 0..groups {
        let bdf = format!("0000:{:02x}:{:02x}.0", 1 + g / 32, g % 32);
        let dev = root.join("devices/pci0000:00").join(&bdf);
        create_dir_all(&dev)?;
        write(dev.join("vendor"), "0x8086\n")?;
        write(dev.join("device"), "0x1533\n")?;
        write(dev.join("class"), "0x020000\n")?;
        symlink("../../virtual/iommu/dmar0", dev.join("iommu"))?;
        symlink(
            format!("../../../kernel/iommu_groups/{g}"),
            dev.join("iommu_group"),
        )?;
        symlink(
            format!("../../../devices/pci0000:00/{bdf}"),
            root.join("bus/pci/devices").join(&bdf),
        )?;
        symlink(
            format!("../../../../pci0000:00/{bdf}"),
            unit.join("devices").join(&bdf),
        )?;
        let group = root.join("kernel/iommu_groups").join(g.to_string());
        create_dir_all(group.join("devices"))?;
        write(group.join("type"), "DMA\n")?;
        write(
            group.join("reserved_regions"),
            "0x00000000fee00000 0x00000000feefffff msi\n",
        )?;
        symlink(
            format!("../../../../devices/pci0000:00/{bdf}"),
            group.join("devices").join(&bdf),
        )?;
    }
    Ok(())
}

/// `iovactl inspect --json` of a synthetic host with 256 groups, against the same
/// host as a saved profile (`--host`), and against `find ... -exec cat` of the fact
/// files (reading them without interpreting anything).
fn inspect_lines(r: &mut Report, quick: bool) {
    let iovactl = std::env::var("IOVACTL").unwrap_or_else(|_| "target/release/iovactl".into());
    let reps = if quick { 21 } else { 101 };
    let dir = std::env::temp_dir().join(format!("iova-bench-sysfs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let root = dir.join("sys");
    if let Err(e) = synthetic_sysfs(&root, 256) {
        eprintln!("bench: cannot write the synthetic sysfs tree: {e}");
        return;
    }
    let root_s = root.to_string_lossy().into_owned();
    let profile = dir.join("host.json").to_string_lossy().into_owned();
    // The tree must read as 256 groups, and the profile is saved from it.
    let groups = std::process::Command::new(&iovactl)
        .args([
            "inspect",
            "--sysfs-root",
            &root_s,
            "--json",
            "--save-profile",
            &profile,
        ])
        .output()
        .ok()
        .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok())
        .and_then(|v| v["groups"].as_array().map(Vec::len));
    if groups != Some(256) {
        eprintln!("bench: the synthetic host reads as {groups:?} groups, not 256");
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let ours = run_ms(
        &iovactl,
        &strings(&["inspect", "--sysfs-root", &root_s, "--json"]),
        reps,
    );
    let prof = run_ms(
        &iovactl,
        &strings(&["inspect", "--host", &profile, "--json"]),
        reps,
    );
    let find = run_ms(
        "find",
        &strings(&[&root_s, "-type", "f", "-exec", "cat", "{}", "+"]),
        reps,
    );
    let _ = std::fs::remove_dir_all(&dir);
    let Some(o) = ours else { return };
    for (peer, p) in [("profile-form", prof), ("find-cat", find)] {
        if let Some(p) = p {
            r.line(
                "inspect-json-256",
                o * 1e6,
                peer,
                p * 1e6,
                &[("ours_ms", o), ("peer_ms", p), ("groups", 256.0)],
            );
        }
    }
}

/// Latency where a VM's start waits: `iovactl libvirt-hook NAME prepare begin -` as
/// libvirtd runs it (the domain XML on standard input, a host of 256 groups read from
/// sysfs), and `iovactl check --pid` of a running process with a QEMU command line; each
/// against `true`, the cost of starting any process.
fn start_path_lines(r: &mut Report, quick: bool) {
    let iovactl = std::env::var("IOVACTL").unwrap_or_else(|_| "target/release/iovactl".into());
    let reps = if quick { 21 } else { 101 };
    let dir = std::env::temp_dir().join(format!("iova-bench-hook-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let root = dir.join("sys");
    if let Err(e) = synthetic_sysfs(&root, 256) {
        eprintln!("bench: cannot write the synthetic sysfs tree: {e}");
        return;
    }
    let root_s = root.to_string_lossy().into_owned();
    let xml = dir.join("domain.xml");
    let domain = "<domain type='kvm'><name>bench</name><memory unit='GiB'>8</memory>\
        <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>\
        <cpu mode='host-passthrough'/><devices><hostdev mode='subsystem' type='pci' \
        managed='yes'><source><address domain='0x0000' bus='0x01' slot='0x00' \
        function='0x0'/></source></hostdev></devices></domain>";
    if let Err(e) = std::fs::write(&xml, domain) {
        eprintln!("bench: cannot write {}: {e}", xml.display());
        return;
    }
    let floor = run_ms("true", &[], reps);
    // One line per row, against starting `true`, when both were measured.
    let against_true = |r: &mut Report, name: &str, ours: Option<f64>| {
        if let (Some(o), Some(p)) = (ours, floor) {
            r.line(
                name,
                o * 1e6,
                "true",
                p * 1e6,
                &[("ours_ms", o), ("peer_ms", p), ("groups", 256.0)],
            );
        }
    };
    let hook = run_ms_with(
        &iovactl,
        &strings(&[
            "libvirt-hook",
            "--sysfs-root",
            &root_s,
            "bench",
            "prepare",
            "begin",
            "-",
        ]),
        Some(&xml),
        reps,
    );
    against_true(r, "libvirt-hook", hook);
    // The command line of a libvirt domain as libvirt writes it (a `.args` file or a
    // domain log: its environment, JSON -object/-device), checked from the file.
    let args_file = dir.join("domain.args");
    let libvirt_args = "LC_ALL=C \\\nPATH=/bin \\\nHOME=/var/lib/libvirt/qemu/domain-1-bench \\\n\
        /usr/bin/qemu-system-x86_64 \\\n-name guest=bench,debug-threads=on \\\n-S \\\n\
        -object '{\"qom-type\":\"secret\",\"id\":\"masterKey0\",\"format\":\"raw\",\"file\":\"/k\"}' \\\n\
        -machine pc-q35-7.2,usb=off,dump-guest-core=off,memory-backend=pc.ram,acpi=on \\\n\
        -accel kvm \\\n-cpu host,migratable=on \\\n-m size=8388608k \\\n\
        -object '{\"qom-type\":\"memory-backend-ram\",\"id\":\"pc.ram\",\"size\":8589934592}' \\\n\
        -overcommit mem-lock=off \\\n-smp 4,sockets=4,cores=1,threads=1 \\\n-no-user-config \\\n\
        -nodefaults \\\n-device '{\"driver\":\"pcie-root-port\",\"port\":16,\"chassis\":1,\"id\":\"pci.1\",\"bus\":\"pcie.0\",\"addr\":\"0x2\"}' \\\n\
        -device '{\"driver\":\"vfio-pci\",\"host\":\"0000:01:00.0\",\"id\":\"hostdev0\",\"bus\":\"pci.1\",\"addr\":\"0x0\"}' \\\n\
        -msg timestamp=on\n";
    if std::fs::write(&args_file, libvirt_args).is_ok() {
        let args_s = args_file.to_string_lossy().into_owned();
        let ms = run_ms(
            &iovactl,
            &strings(&[
                "check",
                "--sysfs-root",
                &root_s,
                "--qemu-version",
                "10.0",
                "--memlock",
                "unlimited",
                "--host-phys-bits",
                "46",
                "--cmdline",
                &args_s,
            ]),
            reps,
        );
        against_true(r, "check-libvirt-args", ms);
    }
    // A stand-in for a running QEMU: argv[0] qemu-system-x86_64, the default machine.
    let child = std::process::Command::new("bash")
        .args(["-c", "exec -a qemu-system-x86_64 sleep 120"])
        .spawn();
    if let Ok(mut child) = child {
        let pid = child.id().to_string();
        std::thread::sleep(std::time::Duration::from_millis(100));
        let pid_ms = run_ms(
            &iovactl,
            &strings(&[
                "check",
                "--sysfs-root",
                &root_s,
                "--qemu-version",
                "10.0",
                "--memlock",
                "unlimited",
                "--device",
                "0000:01:00.0",
                "--pid",
                &pid,
            ]),
            reps,
        );
        let _ = child.kill();
        let _ = child.wait();
        against_true(r, "check-pid", pid_ms);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `iovactl fleet`: one VM against 10,000 saved host profiles (2,500 copies of each of
/// the four example sysfs hosts, saved by `inspect --save-profile`), against the loop a
/// user would otherwise write (`iovactl check --host P` per profile, timed over the
/// first profiles) and against reading the profile files (`find -exec cat`, the floor).
fn fleet_lines(r: &mut Report, quick: bool) {
    let iovactl = std::env::var("IOVACTL").unwrap_or_else(|_| "target/release/iovactl".into());
    let (reps, loop_hosts) = if quick { (5, 40) } else { (21, 200) };
    let hosts = 10_000usize;
    let dir = std::env::temp_dir().join(format!("iova-bench-fleet-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let profiles = dir.join("profiles");
    if let Err(e) = std::fs::create_dir_all(&profiles) {
        eprintln!("bench: cannot create {}: {e}", profiles.display());
        return;
    }
    let names = ["intel-vtd-39", "intel-vtd-48", "amd-epyc", "arm-smmuv3"];
    let mut texts = Vec::new();
    for n in names {
        let p = dir.join(format!("{n}.json"));
        let ok = std::process::Command::new(&iovactl)
            .args(["inspect", "--sysfs-root", &format!("examples/hosts/{n}")])
            .arg("--save-profile")
            .arg(&p)
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        match std::fs::read(&p) {
            Ok(t) if ok => texts.push(t),
            _ => {
                eprintln!("bench: cannot save the profile of {n}");
                let _ = std::fs::remove_dir_all(&dir);
                return;
            }
        }
    }
    for i in 0..hosts {
        let p = profiles.join(format!("host-{i:05}.json"));
        if let Err(e) = std::fs::write(&p, &texts[i % texts.len()]) {
            eprintln!("bench: cannot write {}: {e}", p.display());
            let _ = std::fs::remove_dir_all(&dir);
            return;
        }
    }
    let dir_s = profiles.to_string_lossy().into_owned();
    let vm = [
        "--guest",
        "qemu-q35",
        "--memory",
        "600G",
        "--device",
        "144d:a808",
    ];
    let mut args = strings(&["fleet", "--hosts-dir", &dir_s]);
    args.extend(strings(&vm));
    let ours = run_ms(&iovactl, &args, reps);
    // The loop: check exits 1 (does not fit) or 2 (no such device) on most hosts, which
    // is an answer here, not a failure.
    let mut times = Vec::new();
    for i in 0..loop_hosts {
        let p = profiles.join(format!("host-{i:05}.json"));
        let t = Instant::now();
        let code = std::process::Command::new(&iovactl)
            .arg("check")
            .arg("--host")
            .arg(&p)
            .args(vm)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .ok()
            .and_then(|s| s.code());
        if !matches!(code, Some(0..=2)) {
            eprintln!("bench: check --host {} ended with {code:?}", p.display());
            let _ = std::fs::remove_dir_all(&dir);
            return;
        }
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let per_check_ms = times.iter().sum::<f64>() / times.len().max(1) as f64;
    let cat = run_ms(
        "find",
        &strings(&[&dir_s, "-name", "*.json", "-exec", "cat", "{}", "+"]),
        reps,
    );
    let _ = std::fs::remove_dir_all(&dir);
    let Some(o) = ours else { return };
    let per_host_ns = o * 1e6 / hosts as f64;
    let rate = hosts as f64 / (o / 1e3);
    r.line(
        "fleet-check",
        per_host_ns,
        "check-loop",
        per_check_ms * 1e6,
        &[
            ("ours_ms", o),
            ("profiles_per_s", rate),
            ("hosts", hosts as f64),
            ("loop_hosts", loop_hosts as f64),
        ],
    );
    if let Some(c) = cat {
        r.line(
            "fleet-check",
            per_host_ns,
            "find-cat",
            c * 1e6 / hosts as f64,
            &[("ours_ms", o), ("peer_ms", c), ("profiles_per_s", rate)],
        );
    }
}

/// Parses a layout file of `n` sections (each 4 KiB of RAM, 8 KiB apart): median of 3.
fn layout_parse_lines(r: &mut Report) {
    for n in [10_000u64, 100_000] {
        let mut text = String::new();
        for i in 0..n {
            text.push_str(&format!(
                "[[section]]\nname = \"s{i}\"\nkind = \"ram\"\nstart = \"{:#x}\"\nsize = \"0x1000\"\n\n",
                (1u64 << 32) + i * 0x2000
            ));
        }
        let times: Vec<f64> = (0..3)
            .map(|_| {
                let t = Instant::now();
                let l = iova_guest::layout_file::parse("bench.toml", black_box(&text));
                assert!(l.is_ok());
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        r.solo(
            &format!("layout-parse-{}k", n / 1000),
            &[("sections", n as f64), ("ms", median(times))],
        );
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Median ns per pair over `batches` batches of `pairs`.
fn hit_median<A: IovaAlloc>(a: &mut A, batches: usize, pairs: usize) -> f64 {
    alloc_hit(a, pairs); // warm-up: fills the magazines, faults the pages in
    median((0..batches).map(|_| alloc_hit(a, pairs)).collect())
}

struct Cfg {
    hit_batches: usize,
    hit_pairs: usize,
    frag_ops: usize,
    peer_frag_ops: usize,
    full_ops: usize,
    peer_full_ops: usize,
    scale_ops: usize,
    scale_peer_ops: [usize; 4],
    thread_pairs: usize,
    thread_reps: usize,
    tracker_ops: usize,
    pt_reps: usize,
    pt_single: usize,
    pt_translate: usize,
}

fn lat_fields(o: &Latency, p: &Latency) -> Vec<(&'static str, f64)> {
    vec![
        ("ours_avg_ns", o.avg),
        ("ours_p999_ns", o.p999),
        ("ours_max_ns", o.max),
        ("peer_avg_ns", p.avg),
        ("peer_p999_ns", p.p999),
        ("avg_ratio", if o.avg > 0.0 { p.avg / o.avg } else { 0.0 }),
        ("ours_ops", o.ops as f64),
        ("peer_ops", p.ops as f64),
        ("failed_allocs_pct", o.failed_pct),
        ("ours_free_median_ns", o.free_median),
        ("ours_alloc_median_ns", o.alloc_median),
        ("peer_free_median_ns", p.free_median),
        ("peer_alloc_median_ns", p.alloc_median),
    ]
}

fn alloc_hit_lines(r: &mut Report, c: &Cfg) {
    let shared = SharedAllocator::new(&low_4g(), PAGE, Policy::FirstFit).expect("set");
    let mut cache = shared.local();
    let ours_ns = hit_median(&mut cache, c.hit_batches, c.hit_pairs);
    let core_ns = hit_median(&mut ours(&low_4g()), c.hit_batches, c.hit_pairs);
    let ra = hit_median(
        &mut RangeAllocPeer::new(0, 0xffff_ffff),
        c.hit_batches,
        c.hit_pairs,
    );
    let ff = hit_median(
        &mut FirstFitPeer::new(&low_4g()),
        c.hit_batches,
        c.hit_pairs,
    );
    r.line(
        "alloc-hit",
        ours_ns,
        "range-alloc",
        ra,
        &[("core_ns", core_ns)],
    );
    r.line(
        "alloc-hit",
        ours_ns,
        "first-fit",
        ff,
        &[("core_ns", core_ns)],
    );
}

/// Builds the same fragmented state in `a`, then churns; returns the latencies.
fn frag_run<A: IovaAlloc>(
    a: &mut A,
    fill: usize,
    holes: usize,
    ops: usize,
    sizes: fn(&mut Rng) -> u64,
) -> Latency {
    let mut rng = Rng::new(0x5eed);
    let mut live = fragment(a, fill, holes, &mut rng);
    churn(a, &mut live, ops, &mut rng, sizes)
}

fn fragmented_lines(r: &mut Report, c: &Cfg) {
    // 300,000 live 4 KiB IOVAs below 4 GiB: fill 600,000, free a random half, churn.
    let (fill, holes) = (600_000, 300_000);
    let o = frag_run(&mut ours(&low_4g()), fill, holes, c.frag_ops, one_page);
    // First fit is fast on one-page requests (its scan ends at the first extent), so
    // it runs the whole sequence ours runs, not the first few thousand operations
    // only (whose median moved by 1.7x between runs); range-alloc, 100x slower here,
    // runs the shorter prefix.
    let ff = frag_run(
        &mut FirstFitPeer::new(&low_4g()),
        fill,
        holes,
        c.frag_ops,
        one_page,
    );
    let ra = frag_run(
        &mut RangeAllocPeer::new(0, 0xffff_ffff),
        fill,
        holes,
        c.peer_frag_ops,
        one_page,
    );
    r.line(
        "alloc-fragmented",
        o.median,
        "first-fit",
        ff.median,
        &lat_fields(&o, &ff),
    );
    r.line(
        "alloc-fragmented",
        o.median,
        "range-alloc",
        ra.median,
        &lat_fields(&o, &ra),
    );

    // The near-full low 4 GiB: 2^20 one-page entries fill it, a random 1/16 is freed,
    // then churn with mixed sizes (half of them 2..16 pages).
    let (fill, holes) = (1 << 20, 1 << 16);
    let o = frag_run(&mut ours(&low_4g()), fill, holes, c.full_ops, mixed_pages);
    let ff = frag_run(
        &mut FirstFitPeer::new(&low_4g()),
        fill,
        holes,
        c.peer_full_ops,
        mixed_pages,
    );
    let ra = frag_run(
        &mut RangeAllocPeer::new(0, 0xffff_ffff),
        fill,
        holes,
        c.peer_full_ops,
        mixed_pages,
    );
    r.line(
        "alloc-nearfull",
        o.median,
        "first-fit",
        ff.median,
        &lat_fields(&o, &ff),
    );
    r.line(
        "alloc-nearfull",
        o.median,
        "range-alloc",
        ra.median,
        &lat_fields(&o, &ra),
    );
}

fn scaling_lines(r: &mut Report, c: &Cfg) {
    for (k, n) in [1_000usize, 10_000, 100_000, 1_000_000]
        .into_iter()
        .enumerate()
    {
        let peer_ops = c.scale_peer_ops[k];
        let o = frag_run(&mut ours(&space_39()), 2 * n, n, c.scale_ops, mixed_pages);
        let ff = frag_run(
            &mut FirstFitPeer::new(&space_39()),
            2 * n,
            n,
            peer_ops,
            mixed_pages,
        );
        let name = format!("scaling-alloc-{n}");
        // Averages: the peers' cost is in the long scans, which a median can hide.
        r.line(
            &name,
            o.avg,
            "first-fit",
            ff.avg,
            &[
                ("ours_median_ns", o.median),
                ("ours_p999_ns", o.p999),
                ("peer_median_ns", ff.median),
                ("peer_ops", ff.ops as f64),
            ],
        );
    }
}

/// Wall-clock ns per alloc+free pair with `threads` threads, each on its own cache.
fn threads_ours(threads: usize, pairs: usize) -> f64 {
    let shared = SharedAllocator::new(&low_4g(), PAGE, Policy::FirstFit).expect("set");
    let caches: Vec<_> = (0..threads).map(|_| shared.local()).collect();
    let t = Instant::now();
    std::thread::scope(|s| {
        for mut cache in caches {
            s.spawn(move || {
                black_box(alloc_hit(&mut cache, pairs));
            });
        }
    });
    t.elapsed().as_nanos() as f64 / (threads * pairs) as f64
}

/// The same with range-alloc behind one mutex.
fn threads_peer(threads: usize, pairs: usize) -> f64 {
    let peer = std::sync::Mutex::new(RangeAllocPeer::new(0, 0xffff_ffff));
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            let peer = &peer;
            s.spawn(move || {
                for i in 0..pairs {
                    let size = iova_bench::HIT_SIZES[i % iova_bench::HIT_SIZES.len()];
                    let first = peer.lock().unwrap().alloc(size, PAGE).expect("space");
                    peer.lock().unwrap().free(black_box(first), size);
                }
            });
        }
    });
    t.elapsed().as_nanos() as f64 / (threads * pairs) as f64
}

fn threads_lines(r: &mut Report, c: &Cfg) {
    let mut one = Vec::new();
    let mut two = Vec::new();
    let mut p1 = Vec::new();
    let mut p2 = Vec::new();
    for _ in 0..c.thread_reps {
        one.push(threads_ours(1, c.thread_pairs));
        two.push(threads_ours(2, c.thread_pairs));
        p1.push(threads_peer(1, c.thread_pairs / 4));
        p2.push(threads_peer(2, c.thread_pairs / 4));
    }
    let (one, two, p1, p2) = (median(one), median(two), median(p1), median(p2));
    r.line(
        "threads-1",
        one,
        "range-alloc-mutex",
        p1,
        &[("mops_per_s", 1e3 / one)],
    );
    r.line(
        "threads-2",
        two,
        "range-alloc-mutex",
        p2,
        &[
            ("mops_per_s", 1e3 / two),
            ("speedup_vs_1", one / two),
            ("peer_speedup_vs_1", p1 / p2),
        ],
    );
}

fn tracker_lines(r: &mut Report, c: &Cfg) {
    // 65,535 live 4 KiB mappings (type1's default dma_entry_limit) among 2^20 pages.
    let live = 65_535;
    let mut ours = tracker::container(65_535);
    let o = tracker::tracker_churn(&mut ours, 1 << 20, live, c.tracker_ops);
    let tables = ours.page_table().map_or(0, |t| t.table_count());
    let table_bytes = (tables * 4096) as f64 / live as f64;
    let mut peer = tracker::RangeMapTracker::default();
    let p = tracker::tracker_churn(&mut peer, 1 << 20, live, c.tracker_ops);
    // The same sequence on the container's page table alone (39-bit VT-d shape): the
    // part of the container's time that is page-table updates, not tracking.
    let mut pt = iova::pagetable::PageTable::x86(39).expect("table");
    let t = tracker::tracker_churn(&mut pt, 1 << 20, live, c.tracker_ops);
    // The floor: the same page table plus an unordered hash of mapping starts.
    let mut floor = tracker::HashFloor::default();
    let h = tracker::tracker_churn(&mut floor, 1 << 20, live, c.tracker_ops);
    let mut f = lat_fields(&o.lat, &p.lat);
    f.truncate(6);
    f.push(("ours_pagetable_only_ns", t.lat.median));
    f.push(("floor_hash_pagetable_ns", h.lat.median));
    // Memory is measured in a fresh child process: a heap that has held other
    // workloads hides growth in its free lists.
    let ours_rss = rss_probe("container", live);
    let peer_rss = rss_probe("rangemap", live);
    f.push(("ours_rss_bytes_per_mapping", ours_rss));
    f.push(("ours_pagetable_bytes_per_mapping", table_bytes));
    f.push((
        "ours_tracker_bytes_per_mapping",
        (ours_rss - table_bytes).max(0.0),
    ));
    f.push(("peer_bytes_per_mapping", peer_rss));
    r.line("tracker-churn", o.lat.median, "rangemap", p.lat.median, &f);
}

/// Runs this binary as `--rss-probe KIND N` and reads the bytes per mapping it prints.
fn rss_probe(kind: &str, n: usize) -> f64 {
    let Ok(exe) = std::env::current_exe() else {
        return 0.0;
    };
    std::process::Command::new(exe)
        .args(["--rss-probe", kind, &n.to_string()])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// The child side of [`rss_probe`]: fills a fresh tracker and prints RSS growth per
/// mapping.
fn rss_child(kind: &str, n: usize) {
    let bytes = if kind == "container" {
        let mut c = tracker::container(u32::MAX);
        tracker::tracker_churn(&mut c, 1 << 20, n, 0).bytes_per_mapping
    } else {
        let mut m = tracker::RangeMapTracker::default();
        tracker::tracker_churn(&mut m, 1 << 20, n, 0).bytes_per_mapping
    };
    println!("{bytes:.1}");
}

fn tracker_scaling_lines(r: &mut Report, c: &Cfg) {
    for n in [1_000usize, 10_000, 100_000, 1_000_000] {
        let slots = 4 * n as u64;
        let mut ours = tracker::container(u32::MAX);
        let o = tracker::tracker_churn(&mut ours, slots, n, c.scale_ops / 2);
        let mut peer = tracker::RangeMapTracker::default();
        let p = tracker::tracker_churn(&mut peer, slots, n, c.scale_ops / 2);
        r.line(
            &format!("scaling-tracker-{n}"),
            o.lat.avg,
            "rangemap",
            p.lat.avg,
            &[
                ("ours_median_ns", o.lat.median),
                ("ours_p999_ns", o.lat.p999),
                ("peer_median_ns", p.lat.median),
            ],
        );
    }
}

fn pagetable_lines(r: &mut Report, c: &Cfg) {
    let (ours, peer) = tracker::pt_map_1g(c.pt_reps);
    r.line("pt-map", ours, "array-walk", peer, &[("ptes", 262_144.0)]);
    let (o, p) = tracker::pt_map_single(c.pt_single);
    r.line(
        "pt-map-4k",
        o.median,
        "array-walk",
        p.median,
        &[
            ("ours_avg_ns", o.avg),
            ("ours_p999_ns", o.p999),
            ("peer_avg_ns", p.avg),
        ],
    );
    let (ours, peer) = tracker::pt_translate(c.pt_translate);
    r.line("pt-translate", ours, "array-walk", peer, &[]);
}

fn main() {
    let mut quick = false;
    let mut out = String::from("target/bench.json");
    let mut only: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--out" => out = args.next().unwrap_or(out),
            "--only" => only = args.next(),
            "--rss-probe" => {
                let kind = args.next().unwrap_or_default();
                let n = args.next().and_then(|x| x.parse().ok()).unwrap_or(0);
                rss_child(&kind, n);
                return;
            }
            "-h" | "--help" => {
                println!("usage: bench [--quick] [--out PATH] [--only WORKLOAD-PREFIX]");
                return;
            }
            other => {
                eprintln!("bench: unknown argument '{other}' (try --help)");
                std::process::exit(2);
            }
        }
    }
    let c = if quick {
        Cfg {
            hit_batches: 31,
            hit_pairs: 20_000,
            frag_ops: 100_000,
            peer_frag_ops: 5_000,
            full_ops: 60_000,
            peer_full_ops: 1_000,
            scale_ops: 20_000,
            scale_peer_ops: [10_000, 5_000, 1_000, 200],
            thread_pairs: 1_000_000,
            thread_reps: 5,
            tracker_ops: 50_000,
            pt_reps: 3,
            pt_single: 50_000,
            pt_translate: 1_000_000,
        }
    } else {
        Cfg {
            hit_batches: 101,
            hit_pairs: 50_000,
            frag_ops: 1_000_000,
            peer_frag_ops: 100_000,
            full_ops: 500_000,
            peer_full_ops: 10_000,
            scale_ops: 200_000,
            scale_peer_ops: [100_000, 50_000, 10_000, 2_000],
            thread_pairs: 10_000_000,
            thread_reps: 9,
            tracker_ops: 500_000,
            pt_reps: 7,
            pt_single: 200_000,
            pt_translate: 10_000_000,
        }
    };
    let mut r = Report { rows: Vec::new() };
    // How loaded the machine is: the cost of one Instant::now() (about 20 ns on an
    // idle TSC machine) and the load average.
    let timer_ns = {
        let t = Instant::now();
        let mut x = 0u64;
        for _ in 0..100_000 {
            x = x.wrapping_add(iova_bench::nanos(black_box(Instant::now())));
        }
        black_box(x);
        t.elapsed().as_nanos() as f64 / 100_000.0
    };
    let loadavg = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default();
    println!(
        "NOTE timer_ns={timer_ns:.1} loadavg={loadavg} (the cheapest timer read is subtracted from each timed op)"
    );
    let want = |w: &str| only.as_deref().is_none_or(|o| w.starts_with(o));
    let t = Instant::now();
    // The rows that start child processes come first: a child's peak RSS (replay's
    // `peak_rss_mib`, from `wait4`) includes this process's own peak before the
    // child's exec, which the in-process workloads below raise to 150 MiB.
    if want("replay") {
        replay_lines(&mut r, quick);
    }
    if want("check") {
        check_lines(&mut r, quick);
    }
    if want("inspect") {
        inspect_lines(&mut r, quick);
    }
    if want("fleet") {
        fleet_lines(&mut r, quick);
    }
    if want("libvirt-hook") || want("check-pid") || want("check-libvirt-args") {
        start_path_lines(&mut r, quick);
    }
    if want("alloc-hit") {
        alloc_hit_lines(&mut r, &c);
    }
    if want("alloc-fragmented") || want("alloc-nearfull") {
        fragmented_lines(&mut r, &c);
    }
    if want("scaling") {
        scaling_lines(&mut r, &c);
    }
    if want("threads") {
        threads_lines(&mut r, &c);
    }
    if want("tracker") {
        tracker_lines(&mut r, &c);
    }
    if want("pt-") {
        pagetable_lines(&mut r, &c);
    }
    if want("scaling") {
        tracker_scaling_lines(&mut r, &c);
    }
    if want("layout-parse") {
        layout_parse_lines(&mut r);
    }
    let missing: [&str; 0] = [];
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_default();
    let doc = json!({
        "mode": if quick { "quick" } else { "full" },
        "cpu": cpu,
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "seconds": t.elapsed().as_secs_f64(),
        "timer_ns": timer_ns,
        "loadavg_at_start": loadavg,
        "results": r.rows,
        "missing": missing,
    });
    if let Some(dir) = std::path::Path::new(&out).parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match std::fs::write(&out, serde_json::to_string_pretty(&doc).unwrap_or_default()) {
        Ok(()) => eprintln!("bench: wrote {out} in {:.1}s", t.elapsed().as_secs_f64()),
        Err(e) => {
            eprintln!("bench: cannot write {out}: {e}");
            std::process::exit(1);
        }
    }
}
