//! Where a host description comes from: a saved profile file or a sysfs tree.

use std::path::{Path, PathBuf};

use clap::Args;
use iova::host::Host;

use crate::error::CliError;

/// Options that choose the host to look at. With neither, the running host's `/sys`.
#[derive(Debug, Clone, Args)]
pub struct HostArgs {
    /// Read the host from a directory shaped like /sys (for example one of
    /// examples/hosts/*) instead of the running host's /sys.
    #[arg(long, value_name = "DIR", conflicts_with = "host")]
    pub sysfs_root: Option<PathBuf>,
    /// Read the host from a profile file (JSON, as written by `iovactl inspect --json
    /// --profile`).
    #[arg(long, value_name = "PROFILE")]
    pub host: Option<PathBuf>,
}

/// A loaded host and a phrase saying where it came from.
pub struct LoadedHost {
    /// The host.
    pub host: Host,
    /// Where it came from, for messages ("sysfs at /sys").
    pub source: String,
}

impl HostArgs {
    /// Loads the host these options name.
    pub fn load(&self) -> Result<LoadedHost, CliError> {
        if let Some(p) = &self.host {
            return load_profile(p);
        }
        let root = self
            .sysfs_root
            .clone()
            .unwrap_or_else(|| PathBuf::from("/sys"));
        let host =
            iova_linux::sysfs::read_host(&root).map_err(|e| CliError::input(e.to_string()))?;
        Ok(LoadedHost {
            host,
            source: format!("sysfs at {}", root.display()),
        })
    }
}

fn load_profile(path: &Path) -> Result<LoadedHost, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError::input(format!("cannot read host profile {}: {e}", path.display()))
    })?;
    let host: Host = serde_json::from_str(&text).map_err(|e| {
        CliError::input(format!("host profile {} is not valid: {e}", path.display()))
    })?;
    Ok(LoadedHost {
        host,
        source: format!("profile {}", path.display()),
    })
}
