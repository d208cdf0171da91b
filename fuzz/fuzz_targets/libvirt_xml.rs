//! libvirt domain XML to a QEMU argv and on through the parser: never a panic, never
//! unbounded work (DTDs are refused, the node count is capped).
//!
//! The body is `iova_fuzzing::libvirt_xml::run` (crates/iova-fuzzing), which
//! `cargo test` also runs on every saved input of this target.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| iova_fuzzing::libvirt_xml::run(data));
