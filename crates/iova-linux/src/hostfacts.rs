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

/// Waits for `child` to end: its exit status and its peak resident set size in KiB
/// (`wait4`'s `ru_maxrss`), which only the parent can read once the child is gone.
pub fn wait_with_peak_rss(
    child: std::process::Child,
) -> std::io::Result<(std::process::ExitStatus, u64)> {
    use std::os::unix::process::ExitStatusExt as _;
    let pid = i32::try_from(child.id()).map_err(|_| std::io::Error::other("pid out of range"))?;
    let mut status = 0;
    // SAFETY: `rusage` is plain integers, valid when zeroed.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our own child, not yet waited for (we own `child`); the
        // pointers are to live, writable locals for the duration of the call.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    let rss = u64::try_from(usage.ru_maxrss).unwrap_or(0);
    Ok((std::process::ExitStatus::from_raw(status), rss))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_running_machine_answers() {
        let p = super::cpu_page_size().unwrap();
        assert!((4096..=65536).contains(&p));
        assert!(super::kernel_release().is_some());
    }

    #[test]
    fn a_child_is_waited_for_with_its_peak_rss() {
        let child = std::process::Command::new("sh")
            .args(["-c", "exit 3"])
            .spawn()
            .unwrap();
        let (status, rss) = super::wait_with_peak_rss(child).unwrap();
        assert_eq!(status.code(), Some(3));
        // A shell needs more than a page and less than a GiB.
        assert!(rss > 4 && rss < 1 << 20, "{rss} KiB");
    }
}
