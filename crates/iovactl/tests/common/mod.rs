//! Helpers shared by the CLI test files: where the repository is, the example hosts,
//! running the built `iovactl`, and reading its output.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// The repository's root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The path of an example host under `examples/hosts`.
pub fn host(name: &str) -> String {
    root()
        .join("examples/hosts")
        .join(name)
        .display()
        .to_string()
}

/// Runs `iovactl` with these arguments and no standard input.
pub fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_iovactl"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("iovactl runs")
}

/// Standard output as JSON; a panic showing both streams when it is not.
pub fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Standard error as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
