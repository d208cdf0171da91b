//! The whole sysfs reader: a small valid tree is written to a scratch directory, then
//! fuzzed content replaces its files (or turns them into directories, links, or
//! removes them), extra groups and member devices appear, and `read_host` runs.
//! Never a panic; an error names a path inside the tree; a host that reads back
//! survives a JSON profile round trip and every group can be examined and attached.
//!
//! The body is `iova_fuzzing::sysfs_tree::run` (crates/iova-fuzzing), which
//! `cargo test` also runs on every saved input of this target.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: iova_fuzzing::sysfs_tree::Input| iova_fuzzing::sysfs_tree::run(input));
