//! Small formatting helpers shared by the commands' human output and JSON.

use iova::range::{IovaRange, IovaSet};
use serde_json::{Value, json};

/// `0x…` hex.
pub fn hex(v: u64) -> String {
    format!("{v:#x}")
}

/// A range as `{"first":"0x…","last":"0x…"}`.
pub fn range_json(r: &IovaRange) -> Value {
    json!({"first": hex(r.first()), "last": hex(r.last())})
}

/// A set as a list of ranges.
pub fn set_json(s: &IovaSet) -> Value {
    Value::Array(s.iter().map(range_json).collect())
}

pub use iova::units::human_bytes;

/// The page sizes of a bitmap spelled out: `4K 2M 1G`.
pub fn page_sizes(bitmap: u64) -> String {
    let mut out = Vec::new();
    for bit in 0..64u32 {
        if bitmap & (1u64 << bit) != 0 {
            let (v, unit) = match bit {
                0..=9 => (1u64 << bit, ""),
                10..=19 => (1u64 << (bit - 10), "K"),
                20..=29 => (1u64 << (bit - 20), "M"),
                30..=39 => (1u64 << (bit - 30), "G"),
                40..=49 => (1u64 << (bit - 40), "T"),
                50..=59 => (1u64 << (bit - 50), "P"),
                _ => (1u64 << (bit - 60), "E"),
            };
            out.push(format!("{v}{unit}"));
        }
    }
    if out.len() > 6 {
        let first = out.first().cloned().unwrap_or_default();
        return format!("{first} and every power of two above ({} sizes)", out.len());
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_spelled_in_binary_units() {
        assert_eq!(human_bytes(4096), "4 KiB");
        assert_eq!(human_bytes(1 << 39), "512 GiB");
        assert_eq!(human_bytes(1u128 << 64), "16 EiB");
        assert_eq!(human_bytes(0x10_0000), "1 MiB");
        assert_eq!(human_bytes(1000), "1000 B");
        assert_eq!(human_bytes(0xfee0_0000), "4078 MiB");
        assert_eq!(
            human_bytes((1 << 39) - 0x1000_0000 - 0x10_0000),
            "511.7 GiB"
        );
        assert_eq!(human_bytes((1u128 << 64) - 1), "15.9 EiB");
        assert_eq!(page_sizes(0x4020_1000), "4K 2M 1G");
        assert_eq!(page_sizes(0x2001_0000), "64K 512M");
    }
}
