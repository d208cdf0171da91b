//! One number grammar and one byte-size formatter for every input and output of the
//! project: trace files, layout files, host profiles, `--memory` and the reports.
//!
//! - [`parse_number`] (the grammar every human-written number goes through): `0x…` hex
//!   or decimal, `_` separators allowed, optionally followed by a binary unit (`K`,
//!   `M`, `G`, `T`, `P`, `E`, powers of 1024; `KiB`/`KB` spellings accepted): `4096`,
//!   `0x1000`, `4K`, `2M`, `512G`. Fractions, signs and values above 2^64-1 are errors
//!   that repeat the input.
//! - [`parse_u64`]: the same without units, for fields written by machines (sysfs,
//!   kernel answers).
//! - [`human_bytes`]: `4 KiB`, `4078 MiB`, `508.0 GiB`, exact where a unit divides the
//!   count.
//!
//! ```
//! use iova::units::{human_bytes, parse_number};
//! assert_eq!(parse_number("2M"), Ok(0x20_0000));
//! assert_eq!(parse_number("0x20_0000"), Ok(0x20_0000));
//! assert!(parse_number("1.5G").is_err());
//! assert_eq!(human_bytes(0x20_0000), "2 MiB");
//! assert_eq!(human_bytes(u128::from(u64::MAX) + 1), "16 EiB");
//! ```

/// Parses an unsigned 64-bit number written as `0x…` hex or as decimal.
///
/// Underscores between digits are accepted (`0xfee0_0000`). Anything else, including
/// values above `u64::MAX`, an empty string, a sign or a fraction, is an error that
/// repeats the input.
pub fn parse_u64(text: &str) -> Result<u64, ParseNumberError> {
    let err = |why: &'static str| ParseNumberError {
        input: text.to_owned(),
        why,
    };
    let t = text.trim();
    let (digits, radix) = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(rest) => (rest, 16),
        None => (t, 10),
    };
    if digits.is_empty() {
        return Err(err("no digits"));
    }
    if digits.starts_with('_') || digits.ends_with('_') {
        return Err(err("misplaced '_'"));
    }
    let mut value: u64 = 0;
    // Bytes, not chars: a non-ASCII byte is no digit either way, and the error is the
    // same.
    for c in digits.bytes() {
        if c == b'_' {
            continue;
        }
        let d = char::from(c).to_digit(radix).ok_or_else(|| {
            err(if radix == 16 {
                "not a hex digit"
            } else {
                "not a decimal digit (use 0x for hex)"
            })
        })?;
        value = value
            .checked_mul(u64::from(radix))
            .and_then(|v| v.checked_add(u64::from(d)))
            .ok_or_else(|| err("larger than 2^64-1"))?;
    }
    Ok(value)
}

/// Parses a number in the project's grammar (see the [module documentation](self)):
/// the same as [`parse_size`].
pub fn parse_number(text: &str) -> Result<u64, ParseNumberError> {
    parse_size(text)
}

/// Parses a byte size: a number (as [`parse_u64`]) optionally followed by a binary unit
/// suffix `K`, `M`, `G`, `T`, `P` or `E` (powers of 1024; `KiB`, `MB`, … spellings are
/// accepted too). `512M`, `8G`, `1T`, `0x1000`. Fractions such as `1.5T` are refused.
pub fn parse_size(text: &str) -> Result<u64, ParseNumberError> {
    let err = |why: &'static str| ParseNumberError {
        input: text.to_owned(),
        why,
    };
    let t = text.trim();
    if t.starts_with("0x") || t.starts_with("0X") {
        return parse_u64(t);
    }
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.contains('.') {
        return Err(err(
            "fractional sizes are not supported; use a smaller unit",
        ));
    }
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        "P" | "PB" | "PIB" => 50,
        "E" | "EB" | "EIB" => 60,
        _ => return Err(err("unknown unit (use K, M, G, T, P or E)")),
    };
    let n = parse_u64(num).map_err(|e| ParseNumberError {
        input: text.to_owned(),
        why: e.why,
    })?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| err("larger than 2^64-1 bytes"))
}

/// A number that could not be parsed; names the input and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid number '{input}': {why}")]
pub struct ParseNumberError {
    /// The text that was given.
    pub input: String,
    /// What is wrong with it.
    pub why: &'static str,
}

/// A byte count with a binary unit: `4 KiB`, `512 GiB`, `16 EiB`; exact where a unit
/// divides it (`4078 MiB`), otherwise rounded down to one decimal (`508.0 GiB`).
pub fn human_bytes(n: u128) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let unit = |j: usize| 1u128 << (10 * j);
    let j = (0..UNITS.len()).rev().find(|&j| n >= unit(j)).unwrap_or(0);
    if n % unit(j) == 0 {
        return format!("{} {}", n / unit(j), UNITS[j]);
    }
    if j > 0 && n % unit(j - 1) == 0 && n / unit(j - 1) < 10_000 {
        return format!("{} {}", n / unit(j - 1), UNITS[j - 1]);
    }
    // Tenths of the unit, rounded down: integer arithmetic, no float conversion.
    // (n % unit < 2^60, so the product cannot overflow whatever n is.)
    let whole = n / unit(j);
    let tenth = (n % unit(j)) * 10 / unit(j);
    format!("{whole}.{tenth} {}", UNITS[j])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_format_exactly_where_they_can() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(4096), "4 KiB");
        assert_eq!(human_bytes(4078 << 20), "4078 MiB");
        assert_eq!(human_bytes((508 << 30) + (1 << 20) * 3), "508.0 GiB");
        assert_eq!(human_bytes(1 << 64), "16 EiB");
        assert!(human_bytes(u128::MAX).ends_with(" EiB"));
    }

    #[test]
    fn one_grammar_for_numbers() {
        for (t, v) in [
            ("4096", 4096),
            ("0x1000", 4096),
            ("4K", 4096),
            ("4KiB", 4096),
            ("2m", 2 << 20),
            ("1_024", 1024),
            ("16E", 0),
        ] {
            if t == "16E" {
                assert!(parse_number(t).is_err());
            } else {
                assert_eq!(parse_number(t), Ok(v), "{t}");
            }
        }
        for bad in ["", "-1", "1.5G", "4Q", "0x", "1__"] {
            assert!(parse_number(bad).is_err(), "{bad}");
        }
        assert!(parse_u64("4K").is_err());
    }
}
