//! Reading the files a user names on the command line (traces, host profiles), with
//! messages that say what is wrong with the path itself.

use std::io::Read as _;
use std::path::Path;

use iova_linux::sysfs::describe_file_type;

use crate::error::CliError;

/// The most bytes read from one input file (traces and profiles are text, far smaller).
pub const MAX_INPUT_BYTES: u64 = 256 << 20;

/// Reads the regular file `path` (`what` names it in messages: "trace", "host
/// profile"). A directory, FIFO, device or dangling symbolic link is refused before
/// anything is read (a FIFO would block, a device might never end), and so is a file
/// above [`MAX_INPUT_BYTES`]. Every error is an input error naming the path.
pub fn read_file(path: &Path, what: &str) -> Result<Vec<u8>, CliError> {
    let shown = path.display();
    let file = open_file(path, what)?;
    let mut bytes = Vec::new();
    file.take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| read_error(path, what, &e))?;
    if u64::try_from(bytes.len()).map_or(true, |n| n > MAX_INPUT_BYTES) {
        return Err(CliError::input(format!(
            "{what} {shown} is larger than {MAX_INPUT_BYTES} bytes"
        )));
    }
    Ok(bytes)
}

/// The error for a file that exists but cannot be opened or read: the operating
/// system's refusal (permissions, an I/O error), exit 3.
pub fn read_error(path: &Path, what: &str, e: &std::io::Error) -> CliError {
    CliError::Os(format!("cannot read {what} {}: {e}", path.display()))
}

/// Opens the regular file `path` for reading, with the checks of [`read_file`]
/// (missing, a directory, a FIFO, a device or a dangling link: exit 2; exists but
/// cannot be opened: exit 3).
pub fn open_file(path: &Path, what: &str) -> Result<std::fs::File, CliError> {
    let shown = path.display();
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => {}
        Ok(m) => {
            return Err(CliError::input(format!(
                "{what} {shown} is {}, not a regular file",
                describe_file_type(m.file_type())
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && path.symlink_metadata().is_ok() => {
            let target = std::fs::read_link(path)
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            return Err(CliError::input(format!(
                "{what} {shown} is a dangling symbolic link (to '{target}')"
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CliError::input(format!("cannot read {what} {shown}: {e}")));
        }
        Err(e) => return Err(read_error(path, what, &e)),
    }
    std::fs::File::open(path).map_err(|e| read_error(path, what, &e))
}
