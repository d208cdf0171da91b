//! The naive reference for the replay row: a per-4 KiB-page `HashMap` model of a type1
//! container that parses the same trace text `iovactl replay` reads and writes one
//! answer per line.
//!
//! It is what one writes first to answer "what would the kernel say": every map checks
//! and inserts each of its pages, every unmap looks up each page of its range. It knows
//! only `map IOVA SIZE` and `unmap IOVA SIZE` of 4 KiB-aligned ranges inside fixed
//! valid ranges, which is all the benchmark's trace uses, and it does not track mapping
//! boundaries (an unmap of part of a mapping succeeds, where type1 v2 refuses it): the
//! benchmark's trace maps and unmaps single pages, where both answer alike.

use std::collections::HashMap;
use std::io::{BufRead, Write};

/// 4 KiB.
const PAGE: u64 = 4096;

/// A per-page model: page number -> host address.
pub struct PerPageModel {
    pages: HashMap<u64, u64>,
    /// Valid IOVA ranges, inclusive.
    valid: Vec<(u64, u64)>,
}

impl PerPageModel {
    /// An empty model whose maps must fall inside one of `valid` (inclusive ranges).
    pub fn new(valid: &[(u64, u64)]) -> Self {
        PerPageModel {
            pages: HashMap::new(),
            valid: valid.to_vec(),
        }
    }

    /// Number of mapped pages.
    pub fn len(&self) -> usize {
        self.pages.len()
    }

    /// Whether nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    /// Maps `[iova, iova + size)` page by page (host = iova); the answer's text.
    pub fn map(&mut self, iova: u64, size: u64) -> &'static str {
        if size == 0 || (iova | size) % PAGE != 0 {
            return "EINVAL";
        }
        let Some(last) = iova.checked_add(size - 1) else {
            return "EINVAL";
        };
        if !self.valid.iter().any(|&(f, l)| f <= iova && last <= l) {
            return "EINVAL";
        }
        let (first_page, last_page) = (iova / PAGE, last / PAGE);
        if (first_page..=last_page).any(|p| self.pages.contains_key(&p)) {
            return "EEXIST";
        }
        for p in first_page..=last_page {
            self.pages.insert(p, p * PAGE);
        }
        "ok"
    }

    /// Unmaps every page of `[iova, iova + size)`; the bytes that were mapped, or
    /// `None` for a malformed range.
    pub fn unmap(&mut self, iova: u64, size: u64) -> Option<u64> {
        if size == 0 || (iova | size) % PAGE != 0 {
            return None;
        }
        let last = iova.checked_add(size - 1)?;
        let mut bytes = 0u64;
        for p in iova / PAGE..=last / PAGE {
            if self.pages.remove(&p).is_some() {
                bytes += PAGE;
            }
        }
        Some(bytes)
    }

    /// Reads a trace of `map`/`unmap` lines from `input` and writes one answer per line
    /// to `out`; the number of operations. An unknown line is answered `EINVAL`.
    pub fn replay(&mut self, input: impl BufRead, mut out: impl Write) -> std::io::Result<u64> {
        let mut ops = 0u64;
        for line in input.lines() {
            let line = line?;
            let Some((op, a, b)) = parse_line(&line) else {
                writeln!(out, "EINVAL")?;
                ops += 1;
                continue;
            };
            match op {
                "map" => writeln!(out, "{}", self.map(a, b))?,
                "unmap" => match self.unmap(a, b) {
                    Some(n) => writeln!(out, "ok {n:#x}")?,
                    None => writeln!(out, "EINVAL")?,
                },
                _ => writeln!(out, "EINVAL")?,
            }
            ops += 1;
        }
        Ok(ops)
    }
}

/// The naive parser of one trace line: the first three words, the last two as `0x`
/// hex numbers (what the benchmark's trace holds); `None` for anything else.
pub fn parse_line(line: &str) -> Option<(&str, u64, u64)> {
    let mut words = line.split_whitespace();
    let (op, a, b) = (words.next(), words.next(), words.next());
    Some((op?, a.and_then(hex)?, b.and_then(hex)?))
}

fn hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.strip_prefix("0x")?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_page_by_page() {
        let mut m = PerPageModel::new(&[(0, 0xfedf_ffff)]);
        let trace = "map 0x100000 0x2000\nmap 0x101000 0x1000\nmap 0xfee00000 0x1000\n\
                     unmap 0x100000 0x1000\nunmap 0x100000 0x2000\nbogus\n";
        let mut out = Vec::new();
        let ops = m.replay(trace.as_bytes(), &mut out).expect("in memory");
        assert_eq!(ops, 6);
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "ok\nEEXIST\nEINVAL\nok 0x1000\nok 0x1000\nEINVAL\n"
        );
        assert!(m.is_empty());
    }
}
