//! The device nodes a VMM opens to use VFIO, with their owners and modes: the type1
//! container `/dev/vfio/vfio`, iommufd's `/dev/iommu`, each group's `/dev/vfio/N` and
//! each device's cdev `/dev/vfio/devices/vfioN`. A group's node exists only while one of
//! its devices is bound to a VFIO driver; a VMM that does not run as root needs read and
//! write access to every node it opens (libvirt gives QEMU its nodes itself).

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use iova::host::{DeviceNode, NodeKind};

use crate::sysfs::SysfsError;

/// Reads the VFIO and iommufd nodes under `dev` (`/dev`, or the `dev` directory of a
/// copied tree). A cdev's device is found through `sysfs` (`class/vfio-dev/vfioN`).
/// `Ok(None)` when `dev` does not exist (nothing is known); an empty list when it
/// exists without any such node (the vfio modules are not loaded). A node that cannot
/// be examined is an error naming it.
pub fn read_device_nodes(dev: &Path, sysfs: &Path) -> Result<Option<Vec<DeviceNode>>, SysfsError> {
    match fs::metadata(dev) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(SysfsError::NotADirectory {
                path: dev.to_owned(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(SysfsError::Io {
                path: dev.to_owned(),
                source,
            });
        }
    }
    let mut out = Vec::new();
    let vfio = dev.join("vfio");
    for (name, path) in entries(&vfio)? {
        let kind = if name == "vfio" {
            NodeKind::Container
        } else if let Ok(n) = name.parse::<u32>() {
            NodeKind::Group(n)
        } else {
            // `devices/` (below), no-IOMMU groups (`noiommu-N`): not for a VM.
            continue;
        };
        out.extend(node(&path, kind)?);
    }
    for (name, path) in entries(&vfio.join("devices"))? {
        let link = sysfs.join("class/vfio-dev").join(&name);
        // .../0000:00:03.0/vfio-dev/vfio0: the device is two levels up.
        let device = fs::read_link(&link).ok().and_then(|t| {
            t.parent()?
                .parent()?
                .file_name()?
                .to_str()
                .map(str::to_owned)
        });
        if let Some(device) = device {
            out.extend(node(&path, NodeKind::Cdev(device))?);
        }
    }
    out.extend(node(&dev.join("iommu"), NodeKind::Iommufd)?);
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Some(out))
}

/// The entries of a directory by name; none when it does not exist.
fn entries(dir: &Path) -> Result<Vec<(String, std::path::PathBuf)>, SysfsError> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(SysfsError::Io {
                path: dir.to_owned(),
                source,
            });
        }
    };
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(|source| SysfsError::Io {
            path: dir.to_owned(),
            source,
        })?;
        if let Some(n) = e.file_name().to_str() {
            out.push((n.to_owned(), e.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// The node at `path`, if there is one (a directory is not a node).
fn node(path: &Path, kind: NodeKind) -> Result<Option<DeviceNode>, SysfsError> {
    let m = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(SysfsError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    if m.is_dir() {
        return Ok(None);
    }
    Ok(Some(DeviceNode {
        path: path.display().to_string(),
        kind,
        uid: m.uid(),
        gid: m.gid(),
        mode: m.mode() & 0o7777,
        acl: has_access_acl(path),
    }))
}

/// Whether `path` carries a POSIX access ACL (`system.posix_acl_access`).
fn has_access_acl(path: &Path) -> bool {
    let (Ok(p), Ok(name)) = (
        CString::new(path.as_os_str().as_bytes()),
        CString::new("system.posix_acl_access"),
    ) else {
        return false;
    };
    // SAFETY: both pointers are valid NUL-terminated strings for the call; a null
    // buffer of size 0 asks only for the value's size, so nothing is written.
    let n = unsafe { libc::getxattr(p.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) };
    n > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_of_a_copied_tree() {
        let t = std::env::temp_dir().join(format!("iova-devnodes-{}", std::process::id()));
        let _ = fs::remove_dir_all(&t);
        let dev = t.join("dev");
        let sys = t.join("sys");
        fs::create_dir_all(dev.join("vfio/devices")).unwrap();
        fs::create_dir_all(sys.join("class/vfio-dev")).unwrap();
        for f in [
            "vfio/vfio",
            "vfio/7",
            "vfio/noiommu-3",
            "vfio/devices/vfio0",
            "iommu",
        ] {
            fs::write(dev.join(f), "").unwrap();
        }
        std::os::unix::fs::symlink(
            "../../devices/pci0000:00/0000:00:03.0/vfio-dev/vfio0",
            sys.join("class/vfio-dev/vfio0"),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(dev.join("vfio/7"), fs::Permissions::from_mode(0o600)).unwrap();
        let nodes = read_device_nodes(&dev, &sys).unwrap().unwrap();
        let kinds: Vec<_> = nodes.iter().map(|n| n.kind.clone()).collect();
        assert_eq!(
            kinds,
            vec![
                NodeKind::Iommufd,
                NodeKind::Group(7),
                NodeKind::Cdev("0000:00:03.0".into()),
                NodeKind::Container
            ]
        );
        let g = &nodes[1];
        assert_eq!(g.mode, 0o600);
        assert_eq!(g.read_write_by(g.uid, &[], false), Some(true));
        assert_eq!(
            g.read_write_by(g.uid.wrapping_add(1), &[g.gid], false),
            Some(false)
        );
        assert_eq!(
            g.read_write_by(g.uid.wrapping_add(1), &[], true),
            Some(true)
        );
        // No dev directory: nothing is known.
        assert_eq!(read_device_nodes(&t.join("nothing"), &sys).unwrap(), None);
        // A dev directory without vfio: known, none.
        fs::create_dir_all(t.join("empty")).unwrap();
        assert_eq!(
            read_device_nodes(&t.join("empty"), &sys).unwrap(),
            Some(vec![])
        );
        let _ = fs::remove_dir_all(&t);
    }
}
