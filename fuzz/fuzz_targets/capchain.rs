//! The VFIO GET_INFO capability-chain parser over raw bytes (what the kernel writes
//! back): never a panic, never a loop, and what it returns is within the buffer.
//!
//! The body is `iova_fuzzing::capchain::run` (crates/iova-fuzzing), which
//! `cargo test` also runs on every saved input of this target.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| iova_fuzzing::capchain::run(data));
