//! Where a host description comes from: a saved profile file or a sysfs tree.

use std::path::{Path, PathBuf};

use clap::Args;
use iova::host::{Group, GroupIssue, Host, ValidRanges};

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
        let mut host =
            iova_linux::sysfs::read_host(&root).map_err(|e| CliError::input(e.to_string()))?;
        if self.sysfs_root.is_none() {
            // The live host: facts /sys does not hold.
            let s = &mut host.settings;
            s.cpu_page_size = s
                .cpu_page_size
                .or_else(iova_linux::hostfacts::cpu_page_size);
            s.kernel = s
                .kernel
                .take()
                .or_else(iova_linux::hostfacts::kernel_release);
        }
        Ok(LoadedHost {
            host,
            source: format!("sysfs at {}", root.display()),
        })
    }
}

fn load_profile(path: &Path) -> Result<LoadedHost, CliError> {
    let bytes = crate::input::read_file(path, "host profile")?;
    let text = String::from_utf8(bytes).map_err(|e| {
        CliError::input(format!(
            "host profile {} is not UTF-8 text: {e}",
            path.display()
        ))
    })?;
    let host: Host = serde_json::from_str(&text).map_err(|e| {
        CliError::input(format!("host profile {} is not valid: {e}", path.display()))
    })?;
    Ok(LoadedHost {
        host,
        source: format!("profile {}", path.display()),
    })
}

/// The groups of the named devices, in the order given, without repeats. An unknown
/// device, or one without a group, is an input error naming it.
pub fn groups_of_devices<'h>(
    host: &'h Host,
    devices: &[String],
) -> Result<Vec<&'h Group>, CliError> {
    let mut out: Vec<&Group> = Vec::new();
    for d in devices {
        let g = host
            .group_of_device(d)
            .map_err(|e| CliError::input(format!("--device {d}: {e}")))?;
        if !out.iter().any(|x| x.id == g.id) {
            out.push(g);
        }
    }
    Ok(out)
}

/// A group's valid IOVA ranges and the issues a user must know about.
pub fn group_facts(host: &Host, group: &Group) -> Result<(ValidRanges, Vec<GroupIssue>), CliError> {
    let valid = host
        .valid_iova_ranges(group.id)
        .map_err(|e| CliError::input(e.to_string()))?;
    let issues = host
        .group_issues(group.id)
        .map_err(|e| CliError::input(e.to_string()))?;
    Ok((valid, issues))
}
