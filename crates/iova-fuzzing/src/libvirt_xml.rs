//! libvirt domain XML to a QEMU argv and on through the parser: never a panic, never
//! unbounded work (DTDs are refused, the node count is capped).

use iova_guest::libvirt::domain_to_argv;
use iova_guest::qemu_cmdline::parse_qemu_argv;

/// Runs one input (the bytes libFuzzer gives); panics on a finding.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match domain_to_argv("fuzz.xml", text) {
        Ok(argv) => {
            assert!(!argv.is_empty());
            let _ = parse_qemu_argv(&argv, |_, _| None).map_err(|e| e.to_string());
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}
