//! Guest layout TOML files on arbitrary text: never a panic; an error names the file;
//! an accepted layout has disjoint sections, survives `to_toml` and re-parsing, and can
//! be checked against a container, rendered and exported.
//!
//! The body is `iova_fuzzing::layout_toml::run` (crates/iova-fuzzing), which
//! `cargo test` also runs on every saved input of this target.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| iova_fuzzing::layout_toml::run(data));
