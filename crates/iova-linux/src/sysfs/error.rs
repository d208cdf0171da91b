//! Errors of the sysfs reader. Every error names the file (and, for line-oriented
//! files, the 1-based line and the offending text).

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why one line of a `reserved_regions` file was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LineProblem {
    /// The line is empty.
    Empty,
    /// The line does not have exactly three white-space separated fields.
    FieldCount {
        /// How many fields were found.
        found: usize,
    },
    /// An address is not `0x` followed by hex digits.
    NotHex {
        /// Which address: `"first"` or `"last"`.
        field: &'static str,
        /// The token as written.
        token: String,
    },
    /// An address does not fit in 64 bits.
    TooLarge {
        /// Which address: `"first"` or `"last"`.
        field: &'static str,
        /// The token as written.
        token: String,
    },
    /// The region type is none of `direct`, `direct-relaxable`, `reserved`, `msi`.
    UnknownKind {
        /// The token as written.
        token: String,
    },
    /// The last address is below the first (the range is inclusive, so equal is fine).
    LastBeforeFirst {
        /// The first address.
        first: u64,
        /// The last address.
        last: u64,
    },
}

/// A line of a line-oriented sysfs file that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    /// The text of the line, without its line ending.
    pub text: String,
    /// What is wrong with it.
    pub problem: LineProblem,
}

/// The line format of `reserved_regions`, as shown in messages.
pub(crate) const RESERVED_FORMAT: &str = "'0x<first> 0x<last> <type>'";

impl fmt::Display for LineError {
    /// Formats as `<line>: <problem>`; [`SysfsError`] prefixes the file path.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.line)?;
        self.fmt_problem(f)
    }
}

impl LineError {
    fn fmt_problem(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = Shown(&self.text);
        match &self.problem {
            LineProblem::Empty => write!(f, "empty line, expected {RESERVED_FORMAT}"),
            LineProblem::FieldCount { .. } => {
                write!(f, "expected {RESERVED_FORMAT}, got '{text}'")
            }
            LineProblem::NotHex { field, token } => write!(
                f,
                "{field} address '{}' is not 0x-prefixed hex, in '{text}'",
                Shown(token)
            ),
            LineProblem::TooLarge { field, token } => write!(
                f,
                "{field} address '{}' is larger than 0xffffffffffffffff, in '{text}'",
                Shown(token)
            ),
            LineProblem::UnknownKind { token } => write!(
                f,
                "unknown region type '{}' (expected direct, direct-relaxable, reserved or msi), in '{text}'",
                Shown(token)
            ),
            LineProblem::LastBeforeFirst { first, last } => write!(
                f,
                "last address {last:#x} is below first address {first:#x}, in '{text}'"
            ),
        }
    }
}

impl std::error::Error for LineError {}

/// Text from a file, with control characters escaped so messages stay on one line.
struct Shown<'a>(&'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// Shows file content in a message (control characters escaped).
pub(crate) fn shown(text: &str) -> String {
    Shown(text).to_string()
}

/// Why a host could not be read from a sysfs tree.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SysfsError {
    /// The root given to [`read_host`](super::read_host) does not exist or cannot be
    /// examined.
    #[error("{}: cannot use as sysfs root: {source}", path.display())]
    Root {
        /// The root.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The root (or a directory below it) is not a directory.
    #[error("{}: not a directory", path.display())]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// A file or directory could not be read (permissions, I/O error).
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A path where a regular file is expected holds something else: a directory, a
    /// FIFO, a device, a socket, or a symbolic link to nothing. (A FIFO or a device
    /// could block or never end; a dangling link is not "missing": someone put it
    /// there.)
    #[error("{}: {what}, where a regular file is expected", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What is there instead ("a directory", "a FIFO", "a dangling symbolic link").
        what: &'static str,
    },
    /// A file is larger than any sysfs attribute can be.
    #[error("{}: larger than {limit} bytes; not a sysfs attribute", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The most bytes read.
        limit: u64,
    },
    /// A file's content or an entry's name is not UTF-8.
    #[error("{}: not valid UTF-8", path.display())]
    NotUtf8 {
        /// The path.
        path: PathBuf,
    },
    /// A line of a line-oriented file (`reserved_regions`) is malformed.
    #[error("{}:{}", path.display(), error)]
    Line {
        /// The file.
        path: PathBuf,
        /// The line, its number and the problem.
        error: LineError,
    },
    /// A directory under `kernel/iommu_groups` is not named by a decimal `u32`.
    #[error("{}: IOMMU group directory name '{}' is not a decimal group number", path.display(), shown(name))]
    BadGroupName {
        /// The directory.
        path: PathBuf,
        /// Its name.
        name: String,
    },
    /// A group's `type` file holds an unknown domain type.
    #[error("{}: unknown domain type '{}' (expected DMA, DMA-FQ, identity, blocked or unmanaged)", path.display(), shown(text))]
    UnknownDomainType {
        /// The `type` file.
        path: PathBuf,
        /// Its content, trimmed.
        text: String,
    },
    /// A single-value file holds something other than what it should.
    #[error("{}: expected {expected}, got '{}'", path.display(), shown(text))]
    BadValue {
        /// The file.
        path: PathBuf,
        /// What the file should hold.
        expected: &'static str,
        /// Its content, trimmed.
        text: String,
    },
    /// A device's `iommu_group` link does not end in a group number.
    #[error("{}: link target '{}' does not end in a decimal group number", path.display(), shown(target))]
    BadGroupLink {
        /// The link.
        path: PathBuf,
        /// The link text.
        target: String,
    },
    /// A device's `iommu_group` link names a different group than the group that
    /// lists the device.
    #[error("{}: links to group {linked}, but kernel/iommu_groups/{listed}/devices lists device '{device}'", path.display())]
    GroupMismatch {
        /// The `iommu_group` link.
        path: PathBuf,
        /// The device.
        device: String,
        /// The group the link names.
        linked: u32,
        /// The group whose `devices` directory holds the device.
        listed: u32,
    },
    /// The root is a directory, but nothing in it is shaped like sysfs (no `kernel`,
    /// `class`, `bus` or `devices` directory): a wrong `--sysfs-root`, such as the
    /// folder of several example hosts, `/`, or an empty folder.
    #[error("{}: does not look like sysfs (it has no kernel/, class/, bus/ or devices/ directory); give the directory that holds them, such as /sys or examples/hosts/intel-vtd-39", path.display())]
    NotSysfs {
        /// The root.
        path: PathBuf,
    },
    /// A file whose content decides safety is missing: guessing it (for example "no
    /// reserved regions", which would make the MSI window mappable) would be unsafe.
    #[error("{}: missing, so {what} unknown; refusing to assume there are none", path.display())]
    MissingFact {
        /// The file that should be there.
        path: PathBuf,
        /// What it would have said ("the reserved regions of IOMMU group 3 are").
        what: String,
    },
    /// Two groups list the same device.
    #[error("{}: device '{device}' is also listed by group {other}", path.display())]
    DeviceInTwoGroups {
        /// The second group's entry for the device.
        path: PathBuf,
        /// The device.
        device: String,
        /// The group that listed it first.
        other: u32,
    },
}

impl SysfsError {
    /// The file or directory the error is about.
    pub fn path(&self) -> &std::path::Path {
        match self {
            SysfsError::Root { path, .. }
            | SysfsError::NotADirectory { path }
            | SysfsError::Io { path, .. }
            | SysfsError::NotUtf8 { path }
            | SysfsError::NotAFile { path, .. }
            | SysfsError::TooLarge { path, .. }
            | SysfsError::Line { path, .. }
            | SysfsError::BadGroupName { path, .. }
            | SysfsError::UnknownDomainType { path, .. }
            | SysfsError::BadValue { path, .. }
            | SysfsError::BadGroupLink { path, .. }
            | SysfsError::GroupMismatch { path, .. }
            | SysfsError::DeviceInTwoGroups { path, .. }
            | SysfsError::NotSysfs { path }
            | SysfsError::MissingFact { path, .. } => path,
        }
    }
}
