//! Whether the VMM can open what VFIO needs (docs/semantics.md §3.6): each assigned
//! device bound to a VFIO driver, and, for a VMM that does not run as root, read and
//! write access to the nodes it opens: `/dev/vfio/vfio` and each group's `/dev/vfio/N`
//! for the type1 container; `/dev/iommu` and each device's `/dev/vfio/devices/vfioN`
//! for iommufd. libvirt does both itself: it binds a `managed='yes'` hostdev at start
//! and gives its QEMU the nodes.
//!
//! Both are the host's state at launch, judged only where that state was read: the
//! running host (or a profile saved from it), whose device nodes are known. A sysfs
//! tree or profile without them describes what the host is, not how it is prepared:
//! a device still on a host driver is then a note.

use iova::host::{Binding, DeviceNode, Host, NodeKind};
use serde_json::{Value, json};

use crate::error::CliError;
use crate::vmm::VmmProblem;

/// Who starts the VMM.
#[derive(Debug, Clone)]
pub enum Launcher {
    /// libvirt, which binds these (`managed='yes'`) devices and gives QEMU its nodes.
    Libvirt {
        /// The managed devices.
        managed: Vec<String>,
    },
    /// A process with these credentials (this shell's, whose QEMU would have them).
    Process(Runner),
    /// A VMM that is running already (`--pid`): it has its nodes open, possibly in its
    /// own `/dev` (libvirt gives QEMU a private one), so only the bindings are judged.
    Running,
    /// Credentials that could not be read (no `/proc` here): nodes are not judged.
    Unknown(String),
}

/// A process's credentials, as the kernel checks them when it opens a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runner {
    /// The filesystem user id.
    pub uid: u32,
    /// The filesystem group id and the supplementary groups.
    pub gids: Vec<u32>,
    /// Whether it has `CAP_DAC_OVERRIDE` (root's, which ignores the modes).
    pub dac_override: bool,
    /// In words, for the report.
    pub from: String,
}

/// The `CAP_DAC_OVERRIDE` bit of a capability set (`linux/capability.h`).
const CAP_DAC_OVERRIDE_BIT: u32 = 1;

/// The credentials in a `/proc/PID/status` text (`Uid:`, `Gid:`, `Groups:`, `CapEff:`):
/// the filesystem ids (the fourth field), which decide an `open`.
pub fn parse_status(name: &str, text: &str, from: String) -> Result<Runner, CliError> {
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::trim)
            .ok_or_else(|| CliError::input(format!("{name}: no {key} line")))
    };
    let ids = |key: &str| -> Result<Vec<u32>, CliError> {
        field(key)?
            .split_whitespace()
            .map(|t| {
                t.parse::<u32>()
                    .map_err(|_| CliError::input(format!("{name}: {key} has '{t}', not a number")))
            })
            .collect()
    };
    let fs_id = |key: &str| -> Result<u32, CliError> {
        ids(key)?
            .get(3)
            .copied()
            .ok_or_else(|| CliError::input(format!("{name}: {key} has fewer than 4 ids")))
    };
    let uid = fs_id("Uid:")?;
    let mut gids = vec![fs_id("Gid:")?];
    gids.extend(ids("Groups:")?);
    let caps = crate::memlock::parse_cap_eff(name, text)?;
    Ok(Runner {
        uid,
        gids,
        dac_override: caps >> CAP_DAC_OVERRIDE_BIT & 1 == 1,
        from,
    })
}

/// The launcher for a VMM started from this shell: its credentials, or `Unknown` when
/// they cannot be read (a sandbox without `/proc`), which only leaves node access
/// unjudged.
pub fn this_shell() -> Launcher {
    match runner_of(None) {
        Ok(r) => Launcher::Process(r),
        Err(e) => Launcher::Unknown(e.to_string()),
    }
}

/// The credentials of process `pid` (`None`: this process, whose children a VMM
/// started from this shell would have).
pub fn runner_of(pid: Option<u32>) -> Result<Runner, CliError> {
    let (name, text) = crate::memlock::read_proc(pid, "status")?;
    let from = match pid {
        Some(p) => format!("process {p}"),
        None => "this shell's user, whose QEMU would have the same; run the check as the \
                 VM's user for another"
            .to_owned(),
    };
    parse_status(&name, &text, from)
}

/// The verdict on bindings and device nodes.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// Who starts the VMM, in words.
    pub launcher: String,
    /// The nodes the VMM opens and what was found: `ok`, `denied`, `missing`,
    /// `acl` (decided by an ACL), `not-checked` (nodes not known).
    pub nodes: Vec<(String, &'static str)>,
    /// What stops the start.
    pub problems: Vec<VmmProblem>,
    /// What is worth knowing.
    pub notes: Vec<String>,
}

impl Verdict {
    /// JSON for `check --json` (`access`).
    pub fn json(&self) -> Value {
        json!({
            "launcher": self.launcher,
            "nodes": self.nodes.iter().map(|(p, s)| json!({"path": p, "state": s})).collect::<Vec<_>>(),
            "ok": self.problems.is_empty(),
            "problems": self.problems,
            "notes": self.notes,
        })
    }

    /// Lines for the text report.
    pub fn text(&self) -> String {
        let mut s = format!("Device access ({}):", self.launcher);
        if self.nodes.is_empty() {
            s.push_str(" nodes not known");
        }
        for (p, st) in &self.nodes {
            s.push_str(&format!(" {p} {st};"));
        }
        for n in &self.notes {
            s.push_str(&format!("\n  note: {n}"));
        }
        s
    }
}

fn node_desc(n: &DeviceNode) -> String {
    format!("owner {}:{}, mode {:04o}", n.uid, n.gid, n.mode)
}

/// The rebind a device needs, as `driverctl` and as plain sysfs writes.
fn rebind_fix(dev: &str) -> String {
    format!(
        "bind it to vfio-pci: `driverctl set-override {dev} vfio-pci` (or `echo vfio-pci > \
         /sys/bus/pci/devices/{dev}/driver_override`, unbind it from its driver and `echo {dev} \
         > /sys/bus/pci/drivers_probe`); libvirt does it for a managed='yes' hostdev"
    )
}

/// The bindings of `devices` and the nodes a VMM on the `iommufd` backend (or the
/// type1 container) opens for them on `host`, for `launcher`.
pub fn verdict(host: &Host, devices: &[String], iommufd: bool, launcher: &Launcher) -> Verdict {
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let managed = |d: &str| match launcher {
        Launcher::Libvirt { managed } => managed.iter().any(|m| m.eq_ignore_ascii_case(d)),
        _ => false,
    };
    let mut unbound_groups = Vec::new();
    for d in devices {
        let Ok(dev) = host.device(d) else { continue };
        let name = dev.name.clone();
        match &dev.driver {
            Some(Binding::Driver(drv)) if iova::host::is_vfio_driver(drv) => {}
            Some(b) if managed(&name) => {
                notes.push(format!(
                    "{name} is on {b}: libvirt binds it to vfio-pci at start (managed='yes')"
                ));
            }
            Some(b) if host.settings.device_nodes.is_none() => notes.push(format!(
                "{name} is on {b}: bind it to vfio-pci before the VM starts (this host's \
                 state at launch is not known here: its device nodes were not read)"
            )),
            Some(b) => {
                unbound_groups.extend(dev.group);
                problems.push(VmmProblem {
                    kind: "device-binding",
                    range: None,
                    when: "start",
                    message: format!(
                        "{name} is on {b}, not a VFIO driver: the VMM cannot open it (QEMU: \
                         no /dev/vfio/{} or \"group is not viable\")",
                        dev.group.map_or("N".to_owned(), |g| g.to_string())
                    ),
                    fix: rebind_fix(&name),
                });
            }
            None => notes.push(format!(
                "{name}: its driver binding is not known; it must be bound to vfio-pci"
            )),
        }
    }
    let runner = match launcher {
        Launcher::Process(r) => r,
        other => {
            let (who, why) = match other {
                Launcher::Libvirt { .. } => (
                    "libvirt".to_owned(),
                    "libvirt gives its QEMU access to the device nodes itself".to_owned(),
                ),
                Launcher::Running => (
                    "the running VMM".to_owned(),
                    "the running VMM has its device nodes open already (in its own /dev, \
                     for libvirt's QEMU): access not judged"
                        .to_owned(),
                ),
                Launcher::Unknown(e) => (
                    "unknown".to_owned(),
                    format!(
                        "the credentials of the VMM's user are not known ({e}): access not judged"
                    ),
                ),
                Launcher::Process(_) => (String::new(), String::new()),
            };
            notes.push(why);
            return Verdict {
                launcher: who,
                nodes: Vec::new(),
                problems,
                notes,
            };
        }
    };
    let launcher_desc = format!(
        "uid {}{}; {}",
        runner.uid,
        if runner.dac_override {
            " with CAP_DAC_OVERRIDE"
        } else {
            ""
        },
        runner.from
    );
    let mut wanted: Vec<(NodeKind, String)> = Vec::new();
    if iommufd {
        wanted.push((NodeKind::Iommufd, "/dev/iommu".to_owned()));
        for d in devices {
            if let Ok(dev) = host.device(d) {
                wanted.push((
                    NodeKind::Cdev(dev.name.clone()),
                    format!("the vfio cdev of {}", dev.name),
                ));
            }
        }
    } else {
        wanted.push((NodeKind::Container, "/dev/vfio/vfio".to_owned()));
        let mut groups: Vec<u32> = devices
            .iter()
            .filter_map(|d| host.device(d).ok()?.group)
            .collect();
        groups.sort_unstable();
        groups.dedup();
        wanted.extend(
            groups
                .into_iter()
                .map(|g| (NodeKind::Group(g), format!("/dev/vfio/{g}"))),
        );
    }
    let Some(nodes) = &host.settings.device_nodes else {
        notes.push(
            "the host's device nodes are not known (a profile or sysfs tree without /dev): \
             access not checked"
                .to_owned(),
        );
        return Verdict {
            launcher: launcher_desc,
            nodes: Vec::new(),
            problems,
            notes,
        };
    };
    let mut seen = Vec::new();
    for (kind, what) in wanted {
        let found = nodes.iter().find(|n| n.kind == kind);
        let Some(n) = found else {
            seen.push((what.clone(), "missing"));
            let explained = match &kind {
                NodeKind::Group(g) => unbound_groups.contains(g),
                NodeKind::Cdev(d) => host
                    .device(d)
                    .ok()
                    .and_then(|x| x.group)
                    .is_some_and(|g| unbound_groups.contains(&g)),
                _ => false,
            };
            if explained {
                continue;
            }
            let (message, fix) = match kind {
                NodeKind::Container => (
                    "/dev/vfio/vfio does not exist: the vfio module is not loaded".to_owned(),
                    "modprobe vfio-pci".to_owned(),
                ),
                NodeKind::Iommufd => (
                    "/dev/iommu does not exist: the kernel has no iommufd loaded \
                     (CONFIG_IOMMUFD)"
                        .to_owned(),
                    "modprobe iommufd, or use the type1 container (drop -object iommufd)"
                        .to_owned(),
                ),
                NodeKind::Group(g) => (
                    format!(
                        "/dev/vfio/{g} does not exist: no device of group {g} is bound to vfio-pci"
                    ),
                    "bind the group's assigned devices to vfio-pci".to_owned(),
                ),
                NodeKind::Cdev(d) => (
                    format!(
                        "{d} has no vfio cdev (/dev/vfio/devices/vfioN): the kernel lacks \
                         CONFIG_VFIO_DEVICE_CDEV or the device is not on vfio-pci"
                    ),
                    "use the type1 container (drop iommufd= from -device vfio-pci)".to_owned(),
                ),
            };
            problems.push(VmmProblem {
                kind: "device-node-missing",
                range: None,
                when: "start",
                message,
                fix,
            });
            continue;
        };
        match n.read_write_by(runner.uid, &runner.gids, runner.dac_override) {
            Some(true) => seen.push((n.path.clone(), "ok")),
            None => {
                seen.push((n.path.clone(), "acl"));
                notes.push(format!(
                    "{} has an access ACL ({}): whether uid {} may open it is not decided by \
                     its mode",
                    n.path,
                    node_desc(n),
                    runner.uid
                ));
            }
            Some(false) => {
                seen.push((n.path.clone(), "denied"));
                problems.push(VmmProblem {
                    kind: "device-node-access",
                    range: None,
                    when: "start",
                    message: format!(
                        "uid {} cannot open {} for reading and writing ({}): QEMU fails \
                         with {}",
                        runner.uid,
                        n.path,
                        node_desc(n),
                        if matches!(n.kind, NodeKind::Cdev(_)) {
                            format!("\"Failed to open {}\" (QEMU 10)", n.path)
                        } else {
                            format!("\"{}: Permission denied\"", n.path)
                        }
                    ),
                    fix: format!(
                        "give the VM's user the node (`chown {} {}`, or a udev rule such as \
                         SUBSYSTEM==\"vfio\", OWNER=\"<user>\"), run the VMM as root, or start \
                         it through libvirt, which does this",
                        runner.uid, n.path
                    ),
                });
            }
        }
    }
    Verdict {
        launcher: launcher_desc,
        nodes: seen,
        problems,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tqemu\nUid:\t1000\t1000\t1000\t1000\nGid:\t100\t100\t100\t100\n\
                          Groups:\t36 994\nCapEff:\t0000000000000000\n";

    fn host() -> Host {
        let root = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/hosts/intel-vtd-39"
        );
        iova_linux::sysfs::read_host(root).expect("fixture")
    }

    fn node(path: &str, kind: NodeKind, mode: u32) -> DeviceNode {
        DeviceNode {
            path: path.to_owned(),
            kind,
            uid: 0,
            gid: 0,
            mode,
            acl: false,
        }
    }

    fn user(uid: u32) -> Launcher {
        Launcher::Process(Runner {
            uid,
            gids: vec![uid],
            dac_override: uid == 0,
            from: String::new(),
        })
    }

    fn kinds(v: &Verdict) -> Vec<&'static str> {
        v.problems.iter().map(|p| p.kind).collect()
    }

    #[test]
    fn a_device_on_a_host_driver_blocks_only_where_the_launch_state_is_known() {
        // intel-vtd-39: 03:00.0 (group 12) is on igb.
        let mut h = host();
        let dev = ["0000:03:00.0".to_owned()];
        let v = verdict(&h, &dev, false, &user(0));
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert!(v.notes.iter().any(|n| n.contains("igb")), "{:?}", v.notes);
        h.settings.device_nodes = Some(vec![node("/dev/vfio/vfio", NodeKind::Container, 0o666)]);
        let v = verdict(&h, &dev, false, &user(0));
        assert_eq!(kinds(&v), ["device-binding"]);
        assert!(
            v.problems[0]
                .fix
                .contains("driverctl set-override 0000:03:00.0 vfio-pci")
        );
        // The missing /dev/vfio/12 is the binding's doing: one problem, not two.
        assert_eq!(
            v.nodes,
            [
                ("/dev/vfio/vfio".to_owned(), "ok"),
                ("/dev/vfio/12".to_owned(), "missing")
            ]
        );
        // libvirt binds a managed hostdev itself; an unmanaged one must be bound.
        let managed = Launcher::Libvirt {
            managed: dev.to_vec(),
        };
        assert!(verdict(&h, &dev, false, &managed).problems.is_empty());
        let unmanaged = Launcher::Libvirt { managed: vec![] };
        assert_eq!(
            kinds(&verdict(&h, &dev, false, &unmanaged)),
            ["device-binding"]
        );
    }

    #[test]
    fn node_modes_decide_for_a_user_and_not_for_root() {
        let mut h = host();
        for d in &mut h.devices {
            if d.name == "0000:03:00.0" {
                d.driver = Some(Binding::Driver("vfio-pci".into()));
            }
        }
        let dev = ["0000:03:00.0".to_owned()];
        let nodes = |group_mode| {
            Some(vec![
                node("/dev/vfio/vfio", NodeKind::Container, 0o666),
                node("/dev/vfio/12", NodeKind::Group(12), group_mode),
                node("/dev/iommu", NodeKind::Iommufd, 0o660),
            ])
        };
        h.settings.device_nodes = nodes(0o600);
        assert!(verdict(&h, &dev, false, &user(0)).problems.is_empty());
        let v = verdict(&h, &dev, false, &user(1000));
        assert_eq!(kinds(&v), ["device-node-access"]);
        assert!(
            v.problems[0].message.contains("/dev/vfio/12"),
            "{}",
            v.problems[0].message
        );
        h.settings.device_nodes = nodes(0o606);
        assert!(verdict(&h, &dev, false, &user(1000)).problems.is_empty());
        // iommufd opens /dev/iommu (root's group only here) and the cdev (missing).
        let v = verdict(&h, &dev, true, &user(1000));
        assert_eq!(kinds(&v), ["device-node-access", "device-node-missing"]);
        // An ACL may grant what the mode does not: a note, not a verdict.
        let mut acl = nodes(0o600).unwrap_or_default();
        acl[1].acl = true;
        h.settings.device_nodes = Some(acl);
        let v = verdict(&h, &dev, false, &user(1000));
        assert!(v.problems.is_empty());
        assert!(v.notes.iter().any(|n| n.contains("ACL")));
        // No vfio module: the container node is missing.
        h.settings.device_nodes = Some(vec![]);
        let v = verdict(&h, &dev, false, &user(0));
        assert_eq!(kinds(&v), ["device-node-missing", "device-node-missing"]);
        assert!(v.problems[0].fix.contains("modprobe vfio-pci"));
    }

    #[test]
    fn status_gives_the_filesystem_ids() {
        let r = parse_status("s", STATUS, String::new()).unwrap();
        assert_eq!(
            (r.uid, r.gids.clone(), r.dac_override),
            (1000, vec![100, 36, 994], false)
        );
        let root = STATUS
            .replace("Uid:\t1000\t1000\t1000\t1000", "Uid:\t0\t0\t0\t0")
            .replace("CapEff:\t0000000000000000", "CapEff:\t000001ffffffffff");
        let r = parse_status("s", &root, String::new()).unwrap();
        assert_eq!((r.uid, r.dac_override), (0, true));
        for bad in [
            STATUS.replace("Uid:\t1000\t1000\t1000\t1000\n", ""),
            STATUS.replace("Groups:\t36 994", "Groups:\t36 x"),
            STATUS.replace("Gid:\t100\t100\t100\t100", "Gid:\t100"),
            STATUS.replace("0000000000000000", "zz"),
        ] {
            let e = parse_status("/proc/9/status", &bad, String::new()).unwrap_err();
            assert!(e.to_string().contains("/proc/9/status"), "{e}");
        }
    }
}
