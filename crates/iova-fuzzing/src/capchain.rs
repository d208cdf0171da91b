//! The VFIO GET_INFO capability-chain parser over raw bytes (what the kernel writes
//! back): never a panic, never a loop, and what it returns is within the buffer.

use iova_linux::capchain::parse_type1_info;

/// Runs one input (the bytes libFuzzer gives); panics on a finding.
pub fn run(data: &[u8]) {
    match parse_type1_info(data) {
        Ok(info) => {
            if let Some(r) = &info.iova_ranges {
                // Each range is at least 16 bytes of the buffer.
                assert!(r.len() <= data.len() / 16);
            }
            for u in &info.unknown {
                assert!(u.offset < data.len());
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}
