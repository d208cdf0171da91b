//! Launch readiness on the real kernel: what `iovactl check` predicts about a group
//! that VFIO must claim, against what VFIO then does (checks `readiness/...`).
//!
//! Two boots of the VT-d guest (vmtest/run):
//! - `readiness-pt`, kernel command line `iommu=pt`: every group's default domain is
//!   `identity`; VFIO must still attach, map and translate (the edu device DMAs through
//!   the mapping, and an unmapped IOVA gets nothing), and `check` must say it fits. The
//!   guest also has a conventional PCI bridge with a second edu and a `pci-serial`
//!   (bound to the kernel's 8250 driver, `serial`) behind it, which share one group:
//!   `check` of that edu must name the serial device and its driver, and VFIO must
//!   find the group not viable; after the serial device is rebound to vfio-pci both must
//!   agree that it is viable, and it attaches.
//! - `readiness-noir`, `intremap=off`: the VT-d unit still reports the IR capability,
//!   but the kernel's interrupt chips are not remapped ones. `check` must predict the
//!   refusal and type1 must refuse the group with EPERM (the simulation too); with
//!   `vfio_iommu_type1.allow_unsafe_interrupts=1` set at run time both must accept it.
//!
//! Expectations come from the kernel (its answers, its sysfs), never from the model;
//! each check compares the two.

use std::path::Path;
use std::process::Command;

use iova::container::{Container as SimContainer, Flavour};
use iova::dma::Errno;
use iova_linux::type1::{self, Container, Group, IommuType};

use crate::report::Report;
use crate::{diff, edu, facts};

const IOVACTL: &str = "/iovactl";

/// `iovactl check` of a small q35 guest with `devices`, on the live host: the exit code
/// and the JSON.
fn predict(devices: &[&str]) -> Result<(i32, String), String> {
    let mut args = vec!["check", "--guest", "qemu-q35", "--memory", "256M", "--json"];
    for d in devices {
        args.extend_from_slice(&["--device", d]);
    }
    let out = Command::new(IOVACTL)
        .args(&args)
        .output()
        .map_err(|e| format!("cannot run {IOVACTL}: {e}"))?;
    let code = out.status.code().unwrap_or(-1);
    if !matches!(code, 0 | 1) {
        return Err(format!(
            "iovactl {} exited {code}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok((code, String::from_utf8_lossy(&out.stdout).into_owned()))
}

fn driver_of(bdf: &str) -> Option<String> {
    std::fs::read_link(format!("/sys/bus/pci/devices/{bdf}/driver"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
}

/// Whether the kernel says group `id` is viable (`VFIO_GROUP_GET_STATUS`), and whether
/// a type1 container takes it.
fn real_attach(id: u32) -> (Option<bool>, Result<Container, type1::Type1Error>) {
    let viable = Group::open(id)
        .and_then(|g| g.status())
        .map(|f| f & type1::GROUP_FLAGS_VIABLE != 0)
        .ok();
    let attached = Container::open().and_then(|mut c| {
        c.attach_group(id, IommuType::Type1v2)?;
        Ok(c)
    });
    (viable, attached)
}

/// The simulated type1 container's answer to attaching `group`, from the guest's sysfs.
fn sim_attach(group: u32) -> Result<(), String> {
    let host = iova_linux::sysfs::read_host(Path::new("/sys")).map_err(|e| e.to_string())?;
    let mut c = SimContainer::new(diff::guest_config(Flavour::Type1V2));
    c.attach(&host, group).map_err(|e| e.errno().name())
}

/// Runs the readiness checks of `mode` (`readiness-pt` or `readiness-noir`) with the
/// primary edu device `bdf`.
pub fn run(r: &mut Report, mode: &str, bdf: &str) {
    let group = match facts::group_of(bdf) {
        Ok(g) => g,
        Err(e) => return r.fail("readiness/setup", &e),
    };
    match mode {
        "readiness-pt" => {
            identity_domain(r, bdf, group);
            viability(r, bdf);
        }
        "readiness-noir" => interrupt_remapping_off(r, bdf, group),
        other => r.fail("readiness/mode", &format!("unknown mode {other}")),
    }
}

/// iommu=pt: identity default domains, and VFIO works as predicted.
fn identity_domain(r: &mut Report, bdf: &str, group: u32) {
    let kind = facts::read_trimmed(&format!("/sys/kernel/iommu_groups/{group}/type"));
    r.eq(
        "readiness/pt-group-type-identity",
        kind.as_str(),
        "identity",
    );
    let predicted = predict(&[bdf]);
    let (viable, attached) = real_attach(group);
    r.eq("readiness/pt-group-viable", viable, Some(true));
    match (&predicted, &attached) {
        (Ok((0, _)), Ok(_)) => r.pass("readiness/pt-check-fits-and-vfio-attaches"),
        (p, a) => r.fail(
            "readiness/pt-check-fits-and-vfio-attaches",
            &format!(
                "check {:?}, attach {:?}",
                p.as_ref().map(|x| x.0),
                a.as_ref().map(|_| ()).map_err(ToString::to_string)
            ),
        ),
    }
    if let Ok((_, json)) = &predicted {
        r.eq(
            "readiness/pt-check-notes-identity",
            json.contains("identity (iommu=pt)"),
            true,
        );
    }
    r.eq("readiness/pt-sim-attaches", sim_attach(group), Ok(()));
    // The DMA itself: a mapped IOVA reaches memory, an unmapped one does not.
    if let Ok(mut c) = attached {
        edu::type1_dma_tests(r, &mut c, bdf, None);
    }
}

/// A group of two devices behind a conventional PCI bridge: the second edu (bound to
/// vfio-pci by vmtest/init) and a pci-serial on the kernel's `serial` driver.
fn viability(r: &mut Report, primary: &str) {
    let Some(edu2) = facts::pci_devices_with("0x1234", "0x11e8")
        .into_iter()
        .find(|d| d != primary)
    else {
        return r.fail("readiness/viability-setup", "no second edu device");
    };
    let Some(serial) = facts::pci_devices_with("0x1b36", "0x0002")
        .into_iter()
        .next()
    else {
        return r.fail("readiness/viability-setup", "no pci-serial device");
    };
    let (g2, gs) = (facts::group_of(&edu2), facts::group_of(&serial));
    let g2 = match (g2, gs) {
        (Ok(a), Ok(b)) if a == b => a,
        (a, b) => {
            return r.fail(
                "readiness/viability-setup",
                &format!("{edu2} in {a:?}, {serial} in {b:?}: not one group"),
            );
        }
    };
    let drv = driver_of(&serial);
    r.note(&format!(
        "group {g2}: {edu2} ({:?}), {serial} ({drv:?})",
        driver_of(&edu2)
    ));
    if drv.as_deref() != Some("serial") {
        return r.fail(
            "readiness/viability-setup",
            &format!("{serial} is bound to {drv:?}, not the 8250 driver `serial`"),
        );
    }
    // Predicted: not viable, naming the serial device and its driver.
    match predict(&[&edu2]) {
        Ok((1, json))
            if json.contains("not-viable")
                && json.contains(&format!("{serial} (driver serial)")) =>
        {
            r.pass("readiness/not-viable-predicted");
        }
        other => r.fail(
            "readiness/not-viable-predicted",
            &format!(
                "{:?}",
                other.map(|(c, j)| (c, j.chars().take(600).collect::<String>()))
            ),
        ),
    }
    let (viable, attached) = real_attach(g2);
    r.eq("readiness/not-viable-kernel-status", viable, Some(false));
    r.eq(
        "readiness/not-viable-attach-refused",
        attached
            .err()
            .map(|e| matches!(e, type1::Type1Error::NotViable(_))),
        Some(true),
    );
    // Rebind the serial device to vfio-pci, as `driverctl set-override BDF vfio-pci`.
    let sys = format!("/sys/bus/pci/devices/{serial}");
    let rebind = std::fs::write(format!("{sys}/driver_override"), "vfio-pci\n")
        .and_then(|()| std::fs::write(format!("{sys}/driver/unbind"), &serial))
        .and_then(|()| std::fs::write("/sys/bus/pci/drivers_probe", &serial));
    if let Err(e) = rebind {
        return r.fail("readiness/viable-after-rebind", &format!("rebind: {e}"));
    }
    r.eq(
        "readiness/rebound-to-vfio-pci",
        driver_of(&serial).as_deref(),
        Some("vfio-pci"),
    );
    let predicted = predict(&[&edu2]).map(|x| x.0);
    let (viable, attached) = real_attach(g2);
    match (&predicted, viable, &attached) {
        (Ok(0), Some(true), Ok(_)) => r.pass("readiness/viable-after-rebind"),
        (p, v, a) => r.fail(
            "readiness/viable-after-rebind",
            &format!(
                "check {p:?}, kernel viable {v:?}, attach {:?}",
                a.as_ref().map(|_| ()).map_err(ToString::to_string)
            ),
        ),
    }
}

/// intremap=off: the capability is there, remapping is not.
fn interrupt_remapping_off(r: &mut Report, bdf: &str, group: u32) {
    let host = match iova_linux::sysfs::read_host(Path::new("/sys")) {
        Ok(h) => h,
        Err(e) => return r.fail("readiness/noir-read-host", &e.to_string()),
    };
    let capable = host
        .group(group)
        .ok()
        .and_then(|g| host.iommu_of_group(g))
        .and_then(|u| u.interrupt_remapping);
    r.eq("readiness/noir-ecap-still-has-ir", capable, Some(true));
    r.note(&format!(
        "interrupt remapping evidence: {:?}",
        host.settings.interrupt_remapping_evidence
    ));
    r.eq(
        "readiness/noir-kernel-chips-not-remapped",
        host.settings.interrupt_remapping_active,
        Some(false),
    );
    let param = "/sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts";
    r.eq(
        "readiness/noir-unsafe-off-by-default",
        facts::read_trimmed(param).as_str(),
        "N",
    );
    // Predicted refusal, the kernel's refusal, the simulation's refusal.
    let predicted = predict(&[bdf]);
    let (_, attached) = real_attach(group);
    let errno = attached.as_ref().err().and_then(type1::Type1Error::errno);
    match (&predicted, errno) {
        (Ok((1, json)), Some(Errno::EPERM)) if json.contains("no-interrupt-remapping") => {
            r.pass("readiness/noir-check-predicts-the-eperm");
        }
        (p, e) => r.fail(
            "readiness/noir-check-predicts-the-eperm",
            &format!("check {:?}, attach errno {e:?}", p.as_ref().map(|x| x.0)),
        ),
    }
    r.eq(
        "readiness/noir-sim-refuses-eperm",
        sim_attach(group),
        Err("EPERM".to_owned()),
    );
    drop(attached);
    // allow_unsafe_interrupts=1 (the parameter is writable at run time).
    if let Err(e) = std::fs::write(param, "1\n") {
        return r.fail("readiness/noir-allow-unsafe", &format!("{param}: {e}"));
    }
    let predicted = predict(&[bdf]);
    let (_, attached) = real_attach(group);
    match (&predicted, &attached) {
        (Ok((0, json)), Ok(_)) if json.contains("allow_unsafe_interrupts=1") => {
            r.pass("readiness/noir-allow-unsafe-predicted-and-attaches");
        }
        (p, a) => r.fail(
            "readiness/noir-allow-unsafe-predicted-and-attaches",
            &format!(
                "check {:?}, attach {:?}",
                p.as_ref().map(|x| x.0),
                a.as_ref().map(|_| ()).map_err(ToString::to_string)
            ),
        ),
    }
    r.eq(
        "readiness/noir-allow-unsafe-sim-attaches",
        sim_attach(group),
        Ok(()),
    );
    if let Ok(mut c) = attached {
        edu::type1_dma_tests(r, &mut c, bdf, None);
    }
}
