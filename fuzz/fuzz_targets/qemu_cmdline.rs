//! The QEMU command-line parser and model over arbitrary argv (NUL-separated, as in
//! /proc/PID/cmdline): never a panic; a model's layout is sorted and non-overlapping
//! and, for a command line the model accepts, it maps no more RAM than `-m` and the
//! memory devices ask for.
//!
//! The body is `iova_fuzzing::qemu_cmdline::run` (crates/iova-fuzzing), which
//! `cargo test` also runs on every saved input of this target.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| iova_fuzzing::qemu_cmdline::run(data));
