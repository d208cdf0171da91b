//! Placeholder replaced by the real sysfs reader (being written on the `sysfs` branch).
use std::path::Path;

/// A sysfs tree that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SysfsError(String);

/// Reads a host from a sysfs-shaped tree.
pub fn read_host(root: &Path) -> Result<iova::host::Host, SysfsError> {
    Err(SysfsError(format!(
        "{}: sysfs reading is not built yet",
        root.display()
    )))
}
