//! The bodies of the cargo-fuzz targets in `fuzz/`, as ordinary library functions.
//!
//! Each module is one target: its `run` takes one input and **panics on a finding**
//! (a broken assertion is how libFuzzer, and the replay test, see a finding; the
//! code under test itself must never panic). The cargo-fuzz binaries in
//! `fuzz/fuzz_targets/` only hand libFuzzer's input to these functions, and
//! `tests/replay.rs` runs every saved input (`fuzz/corpus/<target>/*` and
//! `fuzz/artifacts/<target>/*`) through the same functions on the stable toolchain,
//! so `cargo test --workspace` (and with it `scripts/test`) replays every corpus and
//! every crash ever found. `scripts/fuzz` stays the tool for finding new inputs.
//!
//! Targets that take structured input decode the bytes exactly as libfuzzer-sys's
//! `fuzz_target!` does ([`decode`]), so a saved file means the same operations in
//! both places.

#![deny(missing_docs)]

use arbitrary::{Arbitrary, Unstructured};

pub mod capchain;
pub mod caps;
pub mod common;
pub mod container_diff;
pub mod host_profile;
pub mod hostile_names;
pub mod layout_toml;
pub mod libvirt_xml;
pub mod qemu_cmdline;
pub mod reserved_regions;
pub mod sysfs_tree;
pub mod trace;

/// Decodes `data` as libfuzzer-sys's `fuzz_target!(|input: T| ...)` does: `None`
/// (the input is skipped) when it is shorter than `T`'s minimum size or does not
/// decode, else `T::arbitrary_take_rest`.
pub fn decode<T: for<'a> Arbitrary<'a>>(data: &[u8]) -> Option<T> {
    if data.len() < T::size_hint(0).0 {
        return None;
    }
    T::arbitrary_take_rest(Unstructured::new(data)).ok()
}

/// One fuzz target: its name (the cargo-fuzz binary, and the folder of its saved
/// inputs under `fuzz/corpus/` and `fuzz/artifacts/`) and its body over raw bytes.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// The cargo-fuzz target name.
    pub name: &'static str,
    /// Runs one input given as the bytes libFuzzer would pass; panics on a finding.
    pub run: fn(&[u8]),
}

/// Every fuzz target, in the order `cargo fuzz list` prints them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "capchain",
        run: capchain::run,
    },
    Target {
        name: "caps",
        run: caps::run,
    },
    Target {
        name: "container_diff",
        run: container_diff::run_bytes,
    },
    Target {
        name: "host_profile",
        run: host_profile::run,
    },
    Target {
        name: "hostile_names",
        run: hostile_names::run,
    },
    Target {
        name: "layout_toml",
        run: layout_toml::run,
    },
    Target {
        name: "libvirt_xml",
        run: libvirt_xml::run,
    },
    Target {
        name: "qemu_cmdline",
        run: qemu_cmdline::run,
    },
    Target {
        name: "reserved_regions",
        run: reserved_regions::run,
    },
    Target {
        name: "sysfs_tree",
        run: sysfs_tree::run_bytes,
    },
    Target {
        name: "trace",
        run: trace::run,
    },
];

/// The target called `name`, if there is one.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}
