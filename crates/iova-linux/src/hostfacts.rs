//! Facts of the running machine the model needs besides `/sys`: the CPU page size and
//! the kernel release.

/// The CPU page size of the running machine (`sysconf(_SC_PAGESIZE)`), if it answers
/// with a power of two.
pub fn cpu_page_size() -> Option<u64> {
    // SAFETY: sysconf takes no pointers and only reads a configuration value.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(n).ok().filter(|n| n.is_power_of_two())
}

/// The running kernel's release (`uname -r`, from `/proc/sys/kernel/osrelease`).
pub fn kernel_release() -> Option<String> {
    let s = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_running_machine_answers() {
        let p = super::cpu_page_size().unwrap();
        assert!((4096..=65536).contains(&p));
        assert!(super::kernel_release().is_some());
    }
}
