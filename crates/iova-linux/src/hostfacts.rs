//! Facts of the running machine the model needs besides `/sys`: the CPU page size and
//! the kernel release.

/// The CPU page size of the running machine (`sysconf(_SC_PAGESIZE)`), if it answers
/// with a power of two.
pub fn cpu_page_size() -> Option<u64> {
    // SAFETY: sysconf takes no pointers and only reads a configuration value.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(n).ok().filter(|n| n.is_power_of_two())
}

/// The running kernel's release (`uname -r`): `uname(2)`, which works without
/// `/proc/sys` (the small vmtest kernels have no sysctl files).
pub fn kernel_release() -> Option<String> {
    // SAFETY: `utsname` is plain bytes, valid when zeroed; uname writes only into it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable utsname for the duration of the call.
    if unsafe { libc::uname(&mut u) } != 0 {
        return None;
    }
    let bytes: Vec<u8> = u
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c.to_ne_bytes()[0])
        .collect();
    let s = String::from_utf8(bytes).ok()?;
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
