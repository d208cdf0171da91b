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

/// Whether a read from `fd` would return at once (data waiting, end of input, or an
/// error to report) instead of waiting for a writer: `poll(2)` with a zero timeout.
/// A failed poll answers `false`, so that a caller flushing its answers before a read
/// that may wait errs on the side of flushing.
pub fn readable_now(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    use std::os::fd::AsRawFd as _;
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `p` is one valid, writable pollfd for the duration of the call (count 1),
    // and its descriptor is borrowed, so it stays open; timeout 0 never blocks.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents != 0
}

/// The running kernel's version as precisely as the machine tells it: `uname -r`
/// when that carries the stable point release (`6.12.118+deb12-amd64`), else the
/// point release the distribution records beside its ABI name (Debian's 6.1 kernels
/// say `6.1.0-57-amd64` in `uname -r` and `Debian 6.1.192-1` in `/proc/version`;
/// Ubuntu's `/proc/version_signature` ends in the upstream version). Stable updates
/// change answers (see `iova::kernel`), so `6.1.0` must not stand for 6.1.192.
pub fn kernel_version() -> Option<String> {
    let uname = kernel_release()?;
    let proc_version = std::fs::read_to_string("/proc/version").ok();
    let signature = std::fs::read_to_string("/proc/version_signature").ok();
    Some(point_release(
        &uname,
        proc_version.as_deref(),
        signature.as_deref(),
    ))
}

/// [`kernel_version`]'s rule on given texts: `uname` unless its third number is 0 (or
/// missing) and `/proc/version` (`... Debian X.Y.Z-N ...`) or the Ubuntu signature
/// (`Ubuntu ABI X.Y.Z`) names the same `X.Y` with a point release.
pub fn point_release(uname: &str, proc_version: Option<&str>, signature: Option<&str>) -> String {
    let uname = uname.trim();
    let nums = |s: &str| -> Option<(u32, u32, u32)> {
        let mut it = s.split(|c: char| !c.is_ascii_digit());
        let a = it.next()?.parse().ok()?;
        let b = it.next()?.parse().ok()?;
        let c = it.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        Some((a, b, c))
    };
    let Some((major, minor, 0)) = nums(uname) else {
        return uname.to_owned();
    };
    let debian = proc_version.into_iter().flat_map(|t| {
        t.match_indices(" Debian ")
            .filter_map(move |(i, _)| t[i + 8..].split_whitespace().next())
    });
    let ubuntu = signature.and_then(|t| t.split_whitespace().last());
    for cand in debian.chain(ubuntu) {
        if let Some((a, b, c)) = nums(cand)
            && (a, b) == (major, minor)
            && c > 0
            && cand.starts_with(|ch: char| ch.is_ascii_digit())
        {
            return cand.to_owned();
        }
    }
    uname.to_owned()
}

#[cfg(test)]
mod readable_now_tests {
    use super::readable_now;
    use std::io::Write as _;
    use std::os::fd::{AsFd as _, FromRawFd as _, OwnedFd};

    /// A pipe (std::io::pipe is above the MSRV).
    fn pipe() -> (OwnedFd, std::fs::File) {
        let mut fds = [0i32; 2];
        // SAFETY: `fds` is a writable array of two ints, as pipe(2) requires.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: pipe succeeded, so both descriptors are open and owned by nobody else.
        unsafe {
            (
                OwnedFd::from_raw_fd(fds[0]),
                std::fs::File::from_raw_fd(fds[1]),
            )
        }
    }

    #[test]
    fn a_pipe_is_readable_only_with_data_or_at_its_end() {
        let (reader, mut writer) = pipe();
        assert!(!readable_now(reader.as_fd()), "empty pipe, writer open");
        writer.write_all(b"x").unwrap();
        assert!(readable_now(reader.as_fd()), "a byte waiting");
        let (reader2, writer2) = pipe();
        drop(writer2);
        assert!(readable_now(reader2.as_fd()), "end of input");
    }
}

#[cfg(test)]
mod point_release_tests {
    use super::point_release;

    #[test]
    fn debian_abi_names_take_the_point_release_from_proc_version() {
        let pv = "Linux version 6.1.0-57-amd64 (debian-kernel@lists.debian.org) (gcc-12 \
                  (Debian 12.2.0-14+deb12u1) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) \
                  #1 SMP PREEMPT_DYNAMIC Debian 6.1.192-1 (2026-11-20)\n";
        assert_eq!(point_release("6.1.0-57-amd64", Some(pv), None), "6.1.192-1");
        // uname -r already names the point release: kept.
        let pv12 = "Linux version 6.12.118+deb12-amd64 ... Debian 6.12.118-1~deb12u1 (2026-11-02)";
        assert_eq!(
            point_release("6.12.118+deb12-amd64", Some(pv12), None),
            "6.12.118+deb12-amd64"
        );
        // Ubuntu's signature.
        assert_eq!(
            point_release(
                "5.15.0-91-generic",
                Some("Linux version 5.15.0-91-generic (buildd@lcy02) #101-Ubuntu SMP"),
                Some("Ubuntu 5.15.0-91.101-generic 5.15.131\n")
            ),
            "5.15.131"
        );
        // Nothing better, or another series named: uname -r stands.
        assert_eq!(
            point_release("6.1.0-57-amd64", None, None),
            "6.1.0-57-amd64"
        );
        assert_eq!(
            point_release("6.1.0-57-amd64", Some("... Debian 6.12.3-1 ..."), None),
            "6.1.0-57-amd64"
        );
        // A compiler's "Debian 12.2.0" is not taken for the kernel's.
        assert_eq!(
            point_release(
                "6.1.0-1-amd64",
                Some("(gcc-12 Debian 12.2.0-14) 12.2.0) #1 SMP Debian 6.1.4-1 (2023-01-07)"),
                None
            ),
            "6.1.4-1"
        );
        assert_eq!(
            point_release(
                "6.1.0-1-amd64",
                Some("gcc-12 Debian 12.2.0-14 12.2.0"),
                None
            ),
            "6.1.0-1-amd64"
        );
        assert_eq!(point_release("7.2.13", None, None), "7.2.13");
    }
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
