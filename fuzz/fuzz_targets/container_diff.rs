//! Differential fuzzing of the simulated container against a naive reference model.
//!
//! Random sequences of attach / detach / map / unmap / unmap_all / map_auto /
//! allow_iovas run on the container (type1 v1, v2 or iommufd, with or without the
//! unsafe permissions) and on a reference model, which decides every check the slow,
//! obvious way (page by page over a small space, in the kernel's order from
//! SEMANTICS.md; overlaps to the byte, as an IOAS without a domain has alignment 1).
//! Any disagreement in a result, in the mappings, the valid IOVAs or the allowed
//! list, any change made by a failed operation, or any broken container invariant is
//! a crash. Bit 3 of `unsafe_bits` picks the kernel, 6.12 or 6.18; on type1 before
//! 6.18, once a mapping ends at 2^64-1 the kernel's answers depend on the shape of its
//! `vfio_dma` tree, which the model does not keep, so from then on only the
//! container's invariants and the atomicity of failures are checked.
//!
//! The body is `iova_fuzzing::container_diff::run` (crates/iova-fuzzing), which
//! `cargo test` also runs on every saved input of this target.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: iova_fuzzing::container_diff::Input| {
    iova_fuzzing::container_diff::run(input)
});
