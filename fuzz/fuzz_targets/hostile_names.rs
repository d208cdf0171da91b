//! Hostile names (any Unicode text: controls, NUL, ESC, line breaks, XML specials, the
//! bidirectional overrides, U+FFFE/U+FFFF) through every output: the SVG must parse as
//! XML, the TOML a plan proposes must parse back to the same names, JSON must round-trip
//! them exactly, and the text `iovactl` prints (names, conflicts, notes, blockers, all
//! through `text::clean`) must hold no control character, no line break and no bidi
//! override.
//!
//! The body is `iova_fuzzing::hostile_names::run` (crates/iova-fuzzing), which
//! `cargo test` also runs on every saved input of this target.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| iova_fuzzing::hostile_names::run(data));
