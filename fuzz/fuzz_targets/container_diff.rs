//! Differential fuzzing of the simulated container against a naive per-page model.
//!
//! Random sequences of attach / detach / map / unmap / unmap_all / map_auto /
//! allow_iovas run on the container (type1 v1, v2 or iommufd, with or without the
//! unsafe permissions) and on a reference model, which decides every check the slow,
//! obvious way (page by page over a small space, in the kernel's order from
//! SEMANTICS.md). Any disagreement in a result, in the mappings, the valid IOVAs or
//! the allowed list, any change made by a failed operation, or any broken container
//! invariant is a crash.
//!
//! The body is `iova_fuzzing::container_diff::run` (crates/iova-fuzzing), which
//! `cargo test` also runs on every saved input of this target.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: iova_fuzzing::container_diff::Input| {
    iova_fuzzing::container_diff::run(input)
});
