//! The VT-d cap/ecap decoders and the AMD-Vi `features` parser: never panic, and the
//! decoded values stay in their documented ranges.
//!
//! The body is `iova_fuzzing::caps::run` (crates/iova-fuzzing), which
//! `cargo test` also runs on every saved input of this target.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| iova_fuzzing::caps::run(data));
