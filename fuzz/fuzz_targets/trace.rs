//! The trace parser on arbitrary text; accepted traces print and re-parse to the same
//! operations, and replay on every flavour over a mixed host keeps the container's
//! invariants. The replay is the simulation's own (`apply_sim`), so every operation
//! runs, those that need the host included: attach and detach mid-trace, IOAS copy,
//! the IOVA_RANGES capacity protocol, BAR-backed maps, allowed IOVAs.
//!
//! The body is `iova_fuzzing::trace::run` (crates/iova-fuzzing), which
//! `cargo test` also runs on every saved input of this target.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| iova_fuzzing::trace::run(data));
