//! The QEMU command-line parser and model over arbitrary argv (NUL-separated, as in
//! /proc/PID/cmdline): never a panic; a model's layout is sorted and non-overlapping
//! and, for a command line the model accepts, it maps no more RAM than `-m` and the
//! memory devices ask for.

use iova_guest::qemu_cmdline::{QemuVersion, parse_qemu_argv};
use iova_guest::qemu_model::{HostCpu, model};

/// Runs one input (the bytes libFuzzer gives); panics on a finding.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut argv: Vec<String> = vec!["qemu-system-x86_64".to_owned()];
    if let Some(rest) = text.strip_prefix("arm\0") {
        argv[0] = "qemu-system-aarch64".to_owned();
        argv.extend(rest.split('\0').map(str::to_owned));
    } else {
        argv.extend(text.split('\0').map(str::to_owned));
    }
    let vm = match parse_qemu_argv(&argv, |_, _| Some(256 << 10)) {
        Ok(vm) => vm,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    for v in [QemuVersion::new(7, 2), QemuVersion::new(10, 0)] {
        if let Ok(m) = model(&vm, v, &HostCpu::default()) {
            let s = m.layout.sections();
            for w in s.windows(2) {
                assert!(w[0].range.last() < w[1].range.first());
            }
            let devices: u128 = vm.mem_devices.iter().map(|d| u128::from(d.size)).sum();
            assert!(m.layout.ram_bytes() <= u128::from(vm.ram) + devices);
        }
    }
}
