//! Writing to standard output without `print!`, which panics when the write fails.
//!
//! A reader that goes away (`iovactl replay big.trace | head -1`) ends the program
//! quietly ([`CliError::BrokenPipe`]); any other failed write (`> /dev/full`) is an
//! operating-system error, exit 3, with a message.

use std::io::{self, Write};
use std::path::Path;

use crate::error::CliError;

/// The error for a failed write to standard output.
pub fn stdout_error(e: &io::Error) -> CliError {
    if e.kind() == io::ErrorKind::BrokenPipe {
        CliError::BrokenPipe
    } else {
        CliError::Os(format!("cannot write to standard output: {e}"))
    }
}

/// Writes `text` to standard output and flushes it.
pub fn print(text: &str) -> Result<(), CliError> {
    let mut o = io::stdout().lock();
    o.write_all(text.as_bytes())
        .and_then(|()| o.flush())
        .map_err(|e| stdout_error(&e))
}

/// Writes `text` and a line ending to standard output.
pub fn println(text: &str) -> Result<(), CliError> {
    let mut o = io::stdout().lock();
    o.write_all(text.as_bytes())
        .and_then(|()| o.write_all(b"\n"))
        .and_then(|()| o.flush())
        .map_err(|e| stdout_error(&e))
}

/// Writes a line to standard error with control characters escaped; a failed write is
/// ignored (there is nowhere left to report it), never a panic.
pub fn eprintln(text: &str) {
    let mut e = io::stderr().lock();
    let _ = e
        .write_all(iova_guest::text::clean(text).as_bytes())
        .and_then(|()| e.write_all(b"\n"));
}

/// Whether two paths name the same existing file (same device and inode, links
/// followed).
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// Writes `bytes` to the file `path` (`what` names it in messages, such as "--svg").
///
/// - `-` is standard output.
/// - A path that names one of `inputs` (the files the same command reads) is refused
///   (exit 2) before anything is written: the input would be lost.
/// - A regular file (or a new one) is written whole to a temporary file in the same
///   folder, then renamed into place, so a failed write never leaves half a file and
///   never destroys the old one.
/// - Something that exists and is not a regular file (`/dev/null`, a FIFO) is opened
///   and written directly; a directory is an error naming it (exit 3).
pub fn write_output(
    path: &Path,
    what: &str,
    bytes: &[u8],
    inputs: &[&Path],
) -> Result<(), CliError> {
    if path.as_os_str() == "-" {
        let mut o = io::stdout().lock();
        return o
            .write_all(bytes)
            .and_then(|()| o.flush())
            .map_err(|e| stdout_error(&e));
    }
    let shown = path.display();
    for input in inputs {
        if same_file(path, input) {
            return Err(CliError::input(format!(
                "{what} {shown} is {}, which this command reads: refusing to overwrite it",
                input.display()
            )));
        }
    }
    let os = |e: io::Error| CliError::Os(format!("cannot write {what} {shown}: {e}"));
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => {
            return Err(CliError::Os(format!(
                "cannot write {what} {shown}: it is a directory"
            )));
        }
        Ok(m) if !m.is_file() => {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(os)?;
            return f.write_all(bytes).and_then(|()| f.flush()).map_err(os);
        }
        _ => {}
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| CliError::input(format!("{what} {shown} does not name a file")))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".iovactl-{}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(os(e));
    }
    Ok(())
}
