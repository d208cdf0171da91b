//! The sysfs `reserved_regions` parser on arbitrary bytes: never panics; what it
//! accepts it accepts exactly (re-printed the kernel's way, it parses to the same).
//!
//! The body is `iova_fuzzing::reserved_regions::run` (crates/iova-fuzzing), which
//! `cargo test` also runs on every saved input of this target.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| iova_fuzzing::reserved_regions::run(data));
