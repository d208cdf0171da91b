//! `iovactl check | plan | render -- <QEMU command line>` against the example hosts:
//! the same verdicts as the preset form, the command-line-only findings (versioned
//! machine types, vIOMMU address widths by release, phys-bits), and the argv sources.

mod common;

use common::{host, json, root, run};

use std::process::{Command, Output};

use serde_json::Value;

/// `iovactl CMD --sysfs-root HOST --qemu-version V --json -- qemu-system-x86_64 ARGS`.
fn vmm(cmd: &str, h: &str, version: &str, argv: &str) -> Output {
    let hp = host(h);
    let mut a = vec![
        cmd,
        "--sysfs-root",
        &hp,
        "--qemu-version",
        version,
        "--json",
        "--",
    ];
    a.extend(argv.split_whitespace());
    run(&a)
}

#[test]
fn command_line_and_preset_give_the_same_verdict() {
    for (h, dev, cpu, vendor, mem) in [
        (
            "intel-vtd-39",
            "0000:03:00.0",
            "Skylake-Client",
            "intel",
            "600G",
        ),
        (
            "intel-vtd-39",
            "0000:03:00.0",
            "Skylake-Client",
            "intel",
            "8G",
        ),
        ("amd-epyc", "0000:41:00.0", "EPYC", "amd", "1000G"),
        (
            "amd-epyc",
            "0000:41:00.0",
            "Skylake-Client",
            "intel",
            "1000G",
        ),
        ("amd-epyc", "0000:41:00.0", "EPYC", "amd", "64G"),
    ] {
        for machine in ["q35", "pc"] {
            let preset = run(&[
                "check",
                "--sysfs-root",
                &host(h),
                "--device",
                dev,
                "--guest",
                machine,
                "--memory",
                mem,
                "--cpu-vendor",
                vendor,
                "--json",
            ]);
            // phys-bits=52 so the comparison is about the layout, not the vCPU width.
            let cl = vmm(
                "check",
                h,
                "10.0",
                &format!(
                    "qemu-system-x86_64 -machine {machine} -m {mem} -cpu {cpu},phys-bits=52 \
                     -device vfio-pci,host={dev}"
                ),
            );
            let (p, c) = (json(&preset), json(&cl));
            assert_eq!(p["ok"], c["ok"], "{h} {machine} {mem} {cpu}");
            assert_eq!(
                preset.status.code(),
                cl.status.code(),
                "{h} {machine} {mem} {cpu}"
            );
            let fatal = |v: &Value| {
                v["conflicts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|c| c["fatal"] == true)
                    .map(|c| (c["first"].clone(), c["last"].clone()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(fatal(&p), fatal(&c), "{h} {machine} {mem} {cpu}");
        }
    }
}

#[test]
fn pc_q35_7_0_keeps_amd_ram_across_the_ht_window() {
    let argv = "qemu-system-x86_64 -machine pc-q35-7.0 -m 1020G -cpu EPYC,phys-bits=48 \
                -device vfio-pci,host=0000:41:00.0";
    let old = vmm("check", "amd-epyc", "10.0", argv);
    assert_eq!(old.status.code(), Some(1));
    let v = json(&old);
    assert!(
        v["conflicts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["section"] == "ram-above-4g"
                && c["fatal"] == true
                && c["reason_kind"] == "reserved"),
        "{v}"
    );
    let new = vmm(
        "check",
        "amd-epyc",
        "10.0",
        &argv.replace("pc-q35-7.0", "pc-q35-7.1"),
    );
    assert_eq!(
        new.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&new.stdout)
    );
}

#[test]
fn intel_iommu_48_bits_on_a_39_bit_host_fails_when_the_release_says() {
    let argv = "qemu-system-x86_64 -machine q35 -accel kvm -m 8G -cpu host \
                -device intel-iommu,aw-bits=48 -device vfio-pci,host=0000:03:00.0";
    for (version, when) in [("10.0", "start"), ("7.2", "first-dma")] {
        let out = vmm("check", "intel-vtd-39", version, argv);
        assert_eq!(out.status.code(), Some(1));
        let v = json(&out);
        let p = &v["vmm"]["problems"][0];
        assert_eq!(p["kind"], "viommu-iova-range", "{v}");
        assert_eq!(p["when"], when);
        assert_eq!(p["first"], "0x8000000000");
        assert_eq!(p["last"], "0xffffffffffff");
        assert!(p["fix"].as_str().unwrap().contains("aw-bits=39"));
    }
    // The default width: 39 up to machine type 9.1, 48 from 9.2.
    let default = argv.replace(",aw-bits=48", "");
    assert_eq!(
        vmm("check", "intel-vtd-39", "10.0", &default).status.code(),
        Some(1)
    );
    let pinned = default.replace("q35", "pc-q35-9.1");
    assert_eq!(
        vmm("check", "intel-vtd-39", "10.0", &pinned).status.code(),
        Some(0)
    );
    assert_eq!(
        vmm("check", "intel-vtd-39", "7.2", &default).status.code(),
        Some(0)
    );
}

#[test]
fn phys_bits_too_low_is_a_refusal_and_plan_says_the_width() {
    let argv =
        "qemu-system-x86_64 -machine q35 -m 979G -cpu EPYC -device vfio-pci,host=0000:41:00.0";
    let out = vmm("check", "amd-epyc", "7.2", argv);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert_eq!(v["vmm"]["problems"][0]["kind"], "refused-at-start", "{v}");
    let plan = json(&vmm("plan", "amd-epyc", "7.2", argv));
    let opts: Vec<&str> = plan["options"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(opts.contains(&"-cpu EPYC,phys-bits=41"), "{opts:?}");
}

#[test]
fn kvm_plans_never_exceed_the_host_address_width() {
    let hp = host("amd-epyc");
    let out = run(&[
        "plan",
        "--sysfs-root",
        &hp,
        "--host-phys-bits",
        "40",
        "--qemu-version",
        "10.0",
        "--json",
        "--",
        "qemu-system-x86_64",
        "-accel",
        "kvm",
        "-machine",
        "q35",
        "-m",
        "1000G",
        "-cpu",
        "host",
        "-device",
        "vfio-pci,host=0000:41:00.0",
    ]);
    let v = json(&out);
    assert_eq!(v["feasible"], false, "{v}");
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn virt_flash_is_not_mapped_and_large_guests_are_modelled() {
    let hp = host("arm-smmuv3");
    let out = run(&[
        "check",
        "--sysfs-root",
        &hp,
        "--qemu-version",
        "10.0",
        "--json",
        "--device",
        "0000:00:01.0",
        "--",
        "qemu-system-aarch64",
        "-machine",
        "virt",
        "-cpu",
        "max",
        "-m",
        "1T",
    ]);
    let v = json(&out);
    let layout = v["layout"].as_array().unwrap();
    let flash = layout.iter().find(|s| s["name"] == "flash").unwrap();
    assert_eq!(flash["dma_mapped"], false);
    let high = layout
        .iter()
        .find(|s| s["name"] == "pcie-mmio-high")
        .unwrap();
    assert_eq!(high["first"], "0x18000000000");
}

#[test]
fn cmdline_files_nul_and_lines() {
    let dir = std::env::temp_dir().join(format!("iovactl-vmm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let nul = dir.join("cmdline");
    std::fs::write(
        &nul,
        b"qemu-system-x86_64\0-machine\0q35\0-m\08G\0-cpu\0EPYC\0-device\0vfio-pci,host=0000:41:00.0\0",
    )
    .unwrap();
    let lines = dir.join("cmdline.txt");
    std::fs::write(
        &lines,
        "qemu-system-x86_64\n-machine\nq35\n-m\n8G\n-cpu\nEPYC\n-append\n'console=ttyS0 quiet'\n-device\nvfio-pci,host=0000:41:00.0\n",
    )
    .unwrap();
    for f in [&nul, &lines] {
        let out = run(&[
            "check",
            "--sysfs-root",
            &host("amd-epyc"),
            "--qemu-version",
            "10.0",
            "--json",
            "--cmdline",
            f.to_str().unwrap(),
        ]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(json(&out)["vmm"]["assigned"][0], "0000:41:00.0");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_version_is_said_when_assumed() {
    let hp = host("amd-epyc");
    let out = run(&[
        "check",
        "--sysfs-root",
        &hp,
        "--json",
        "--",
        "/nonexistent/qemu-system-x86_64",
        "-m",
        "8G",
        "-cpu",
        "EPYC",
        "-device",
        "vfio-pci,host=0000:41:00.0",
    ]);
    let v = json(&out);
    assert_eq!(v["vmm"]["qemu_version"], "10.0");
    assert!(
        v["vmm"]["qemu_version_source"]
            .as_str()
            .unwrap()
            .contains("assumed")
    );
}

#[test]
fn devices_by_vendor_and_device_id() {
    let hp = host("amd-epyc");
    let out = run(&[
        "export",
        "virtio-iommu",
        "--sysfs-root",
        &hp,
        "--device",
        "15b3:1017",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let v = json(&out);
    assert_eq!(v["devices"][0], "0000:41:00.0");
    assert!(
        v["vmm_options"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o == "-device intel-iommu,aw-bits=48"),
        "{v}"
    );
    let none = run(&[
        "export",
        "virtio-iommu",
        "--sysfs-root",
        &hp,
        "--device",
        "10de:2330",
    ]);
    assert_eq!(none.status.code(), Some(2));
    let e = String::from_utf8_lossy(&none.stderr);
    assert!(
        e.contains("10de:2330") && e.contains("0000:41:00.0 [15b3:1017]"),
        "{e}"
    );
    let amb = run(&[
        "export",
        "virtio-iommu",
        "--sysfs-root",
        &hp,
        "--device",
        "1022:*",
    ]);
    assert_eq!(amb.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&amb.stderr).contains("ambiguous"));
    let cl = vmm(
        "check",
        "amd-epyc",
        "10.0",
        "qemu-system-x86_64 -machine q35 -m 8G -cpu EPYC",
    );
    assert_eq!(cl.status.code(), Some(2), "no device at all");
}

fn hook(h: &str, args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let hp = host(h);
    let mut a = vec![
        "libvirt-hook",
        "--sysfs-root",
        hp.as_str(),
        "--qemu-version",
        "10.0",
    ];
    a.extend_from_slice(args);
    let mut child = Command::new(env!("CARGO_BIN_EXE_iovactl"))
        .args(&a)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

#[test]
fn libvirt_domains_check_like_their_command_lines() {
    let xml = root().join("examples/libvirt-600g-q35.xml");
    let out = run(&[
        "check",
        "--sysfs-root",
        &host("intel-vtd-39"),
        "--qemu-version",
        "10.0",
        "--json",
        "--libvirt",
        xml.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert_eq!(v["vmm"]["assigned"][0], "0000:03:00.0");
    assert!(
        v["conflicts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["section"] == "ram-above-4g" && c["fatal"] == true)
    );
}

#[test]
fn the_libvirt_hook_refuses_only_what_fails() {
    let xml = std::fs::read_to_string(root().join("examples/libvirt-600g-q35.xml")).unwrap();
    let refused = hook("intel-vtd-39", &["big", "prepare", "begin", "-"], &xml);
    assert_eq!(refused.status.code(), Some(1));
    let e = String::from_utf8_lossy(&refused.stderr);
    assert!(
        e.contains("domain big") && e.contains("ram-above-4g"),
        "{e}"
    );
    let fits = hook(
        "intel-vtd-39",
        &["big", "prepare", "begin", "-"],
        &xml.replace(">600<", ">8<"),
    );
    assert_eq!(
        fits.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&fits.stderr)
    );
    // Other operations pass without reading the XML.
    let other = hook("intel-vtd-39", &["big", "release", "end", "-"], "");
    assert_eq!(other.status.code(), Some(0));
    // What the model cannot answer passes with a warning, never blocks.
    let odd = hook(
        "intel-vtd-39",
        &["big", "prepare", "begin", "-"],
        &xml.replace(
            "<devices>",
            "<devices><memory model='sgx-epc'><target><size>1</size></target></memory>",
        ),
    );
    assert_eq!(odd.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&odd.stderr).contains("not checked"));
}

#[test]
fn virtio_iommu_is_a_problem_only_before_9_0() {
    let argv = "qemu-system-x86_64 -machine q35 -accel kvm -m 8G -cpu host \
                -device virtio-iommu-pci -device vfio-pci,host=0000:03:00.0";
    let old = vmm("check", "intel-vtd-39", "7.2", argv);
    assert_eq!(old.status.code(), Some(1));
    let v = json(&old);
    assert_eq!(v["vmm"]["problems"][0]["when"], "first-dma", "{v}");
    assert_eq!(v["vmm"]["problems"][0]["first"], "0x8000000000");
    assert_eq!(
        vmm("check", "intel-vtd-39", "10.0", argv).status.code(),
        Some(0)
    );
}

#[test]
fn a_running_vm_by_pid() {
    // A process whose argv is a (minimal) QEMU command line: argv[0] and a disk image.
    let mut child = Command::new("bash")
        .args(["-c", "exec -a qemu-system-x86_64 sleep 30"])
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let mut ok = false;
    for _ in 0..100 {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmdline.starts_with(b"qemu-system-x86_64\0") {
            ok = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(ok, "the stand-in process did not exec");
    let out = run(&[
        "check",
        "--sysfs-root",
        &host("amd-epyc"),
        "--qemu-version",
        "10.0",
        "--json",
        "--device",
        "0000:41:00.0",
        "--pid",
        &pid,
    ]);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["vmm"]["machine"], "pc");
    assert_eq!(v["vmm"]["cpu_vendor"], "amd", "qemu64 is an AMD model");
}

#[test]
fn the_dma_entry_limit_is_type1s_not_iommufds() {
    // 256 GiB of virtio-mem in 2 MiB blocks: 131072 mappings, above type1's default
    // limit of 65535; an iommufd IOAS has no such limit (`-object iommufd`, accepted).
    let type1 = "qemu-system-x86_64 -machine q35 -m 1G,maxmem=300G \
                 -object memory-backend-ram,id=vm0,size=256G \
                 -device virtio-mem-pci,memdev=vm0,requested-size=256G,block-size=2M \
                 -device vfio-pci,host=0000:03:00.0";
    let out = vmm("check", "intel-vtd-39", "10.0", type1);
    let v = json(&out);
    assert_eq!(v["vmm"]["problems"][0]["kind"], "dma-entry-limit", "{v}");
    assert_eq!(out.status.code(), Some(1));
    let iommufd = type1.replace(
        "-device vfio-pci,host=0000:03:00.0",
        "-object iommufd,id=fd0 -device vfio-pci,host=0000:03:00.0,iommufd=fd0",
    );
    let out = vmm("check", "intel-vtd-39", "10.0", &iommufd);
    let v = json(&out);
    assert_eq!(v["vmm"]["problems"], Value::Array(vec![]), "{v}");
    assert_eq!(out.status.code(), Some(0), "{v}");
}

/// examples/hosts/intel-vtd-39 group 8 holds 0000:00:1f.0 and 0000:00:1f.4. Behind a
/// vIOMMU each PCI device on the root bus has its own address space, and QEMU opens a
/// group in one only ("group 8 used in multiple address spaces"); two devices on one
/// conventional PCI bus (pci-bridge) alias to it and share one, as without a vIOMMU.
#[test]
fn one_group_in_two_address_spaces_is_refused() {
    let problems = |argv: &str| -> Vec<String> {
        let v = json(&vmm("check", "intel-vtd-39", "7.2", argv));
        v["vmm"]["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["kind"].as_str().unwrap().to_owned())
            .collect()
    };
    let base = "qemu-system-x86_64 -M q35,kernel-irqchip=split -m 1G";
    let viommu = "-device intel-iommu,caching-mode=on,aw-bits=39";
    let split = problems(&format!(
        "{base} {viommu} -device vfio-pci,host=00:1f.0 -device vfio-pci,host=00:1f.4"
    ));
    assert_eq!(split, ["address-space-split"], "{split:?}");
    let bridged = problems(&format!(
        "{base} {viommu} -device pci-bridge,id=br0,chassis_nr=1 \
         -device vfio-pci,host=00:1f.0,bus=br0,addr=1 -device vfio-pci,host=00:1f.4,bus=br0,addr=2"
    ));
    assert!(bridged.is_empty(), "{bridged:?}");
    let plain = problems(&format!(
        "{base} -device vfio-pci,host=00:1f.0 -device vfio-pci,host=00:1f.4"
    ));
    assert!(plain.is_empty(), "{plain:?}");
    // Two devices of different groups behind the vIOMMU: two address spaces, no split,
    // and each container charges its own pins (two containers).
    let v = json(&vmm(
        "check",
        "intel-vtd-39",
        "7.2",
        &format!("{base} {viommu} -device vfio-pci,host=00:1f.0 -device vfio-pci,host=03:00.0"),
    ));
    assert_eq!(v["vmm"]["problems"], serde_json::json!([]), "{v}");
    assert_eq!(v["memlock"]["containers"], 2, "{v}");
}

/// A machine type the real QEMU has (`-machine help` of 7.2 and 10.0.2) but the model
/// does not cover cannot be answered (exit 4, naming it); a name QEMU does not know is
/// bad input (exit 2).
#[test]
fn real_but_unmodelled_machine_types_cannot_be_answered() {
    for (h, bin, machine, dev, want) in [
        (
            "arm-smmuv3",
            "qemu-system-aarch64",
            "versatilepb",
            "00:01.0",
            4,
        ),
        (
            "arm-smmuv3",
            "qemu-system-aarch64",
            "vexpress-a9",
            "00:01.0",
            4,
        ),
        (
            "arm-smmuv3",
            "qemu-system-aarch64",
            "nosuchboard",
            "00:01.0",
            2,
        ),
        ("intel-vtd-39", "qemu-system-x86_64", "isapc", "03:00.0", 4),
        (
            "intel-vtd-39",
            "qemu-system-x86_64",
            "microvm",
            "03:00.0",
            4,
        ),
        (
            "intel-vtd-39",
            "qemu-system-x86_64",
            "pc-q35-nosuch",
            "03:00.0",
            2,
        ),
    ] {
        let out = vmm(
            "check",
            h,
            "10.0",
            &format!("{bin} -M {machine} -m 256M -device vfio-pci,host={dev}"),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(want), "{machine}: {err}");
        assert!(err.contains(machine), "{machine}: {err}");
        if want == 4 {
            assert!(err.contains("not modelled"), "{machine}: {err}");
        }
    }
}

/// `virtio-vga-gl` (virtio-vga with virgl, what libvirt's `<model type='virtio'>` with
/// 3D acceleration becomes) is VGA-compatible like `virtio-vga`: it takes the legacy VGA
/// window, which is then not RAM.
#[test]
fn virtio_vga_gl_takes_the_vga_window() {
    let window = |dev: &str| -> Vec<String> {
        let v = json(&vmm(
            "check",
            "intel-vtd-39",
            "10.0",
            &format!(
                "qemu-system-x86_64 -nodefaults -M q35 -m 1G {dev} -device vfio-pci,host=03:00.0"
            ),
        ));
        v["layout"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["first"] == "0xa0000")
            .map(|s| s["kind"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(window("-device virtio-vga"), ["mmio"]);
    assert_eq!(window("-device virtio-vga-gl"), ["mmio"]);
    // Without a VGA device (-nodefaults), QEMU leaves RAM there.
    assert_ne!(window(""), ["mmio"]);
}
