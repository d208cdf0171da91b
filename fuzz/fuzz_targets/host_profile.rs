//! Host profiles (the JSON `--host` loads) from arbitrary bytes: deserializing never
//! panics, and whatever deserializes can be examined, attached in every flavour and
//! mapped without a panic, keeping the container's invariants.
//!
//! The body is `iova_fuzzing::host_profile::run` (crates/iova-fuzzing), which
//! `cargo test` also runs on every saved input of this target.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| iova_fuzzing::host_profile::run(data));
