//! The `reserved_regions` file of an IOMMU group.
//!
//! The kernel (`iommu_group_show_resv_regions` in `drivers/iommu/iommu.c`) prints one
//! line per region: `0x%016llx 0x%016llx %s\n`, the first and the **inclusive** last
//! address, then the type: `direct`, `direct-relaxable`, `reserved` or `msi` (hardware
//! and software MSI windows both print `msi`). A group without regions has an empty
//! file.
//!
//! The parser accepts exactly that shape, with any run of blanks between the fields
//! and any number of hex digits (upper or lower case) after `0x`; everything else is an
//! error that names the line and quotes it. An empty file (or one holding only a line
//! ending) has no regions; an empty line anywhere else is an error.

use iova::host::{ReservedKind, ReservedRegion};
use iova::range::IovaRange;

use super::error::{LineError, LineProblem};

/// Parses the content of a `reserved_regions` file into regions, in file order.
///
/// ```
/// use iova::host::ReservedKind;
/// use iova_linux::sysfs::parse_reserved_regions;
///
/// let r = parse_reserved_regions("0x00000000fee00000 0x00000000feefffff msi\n").unwrap();
/// assert_eq!((r[0].range.first(), r[0].range.last()), (0xfee0_0000, 0xfeef_ffff));
/// assert_eq!(r[0].kind, ReservedKind::Msi);
///
/// let e = parse_reserved_regions("0xfee00000 msi\n").unwrap_err();
/// assert_eq!(e.line, 1);
/// ```
pub fn parse_reserved_regions(text: &str) -> Result<Vec<ReservedRegion>, LineError> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    if body.is_empty() {
        return Ok(Vec::new());
    }
    body.split('\n')
        .enumerate()
        .map(|(i, line)| {
            parse_line(line).map_err(|problem| LineError {
                line: i.saturating_add(1),
                text: line.to_owned(),
                problem,
            })
        })
        .collect()
}

fn parse_line(line: &str) -> Result<ReservedRegion, LineProblem> {
    if line.trim().is_empty() {
        return Err(LineProblem::Empty);
    }
    let fields: Vec<&str> = line.split_ascii_whitespace().collect();
    let [first, last, kind] = fields[..] else {
        return Err(LineProblem::FieldCount {
            found: fields.len(),
        });
    };
    let first = parse_hex("first", first)?;
    let last = parse_hex("last", last)?;
    let kind = ReservedKind::from_sysfs(kind).ok_or_else(|| LineProblem::UnknownKind {
        token: kind.to_owned(),
    })?;
    let range =
        IovaRange::new(first, last).map_err(|_| LineProblem::LastBeforeFirst { first, last })?;
    Ok(ReservedRegion { range, kind })
}

/// `0x` followed by one or more hex digits, value at most `u64::MAX`.
fn parse_hex(field: &'static str, token: &str) -> Result<u64, LineProblem> {
    let not_hex = || LineProblem::NotHex {
        field,
        token: token.to_owned(),
    };
    let digits = token.strip_prefix("0x").ok_or_else(not_hex)?;
    if digits.is_empty() {
        return Err(not_hex());
    }
    let mut value: u64 = 0;
    for c in digits.chars() {
        let d = c.to_digit(16).ok_or_else(not_hex)?;
        value = value
            .checked_mul(16)
            .and_then(|v| v.checked_add(u64::from(d)))
            .ok_or_else(|| LineProblem::TooLarge {
                field,
                token: token.to_owned(),
            })?;
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(text: &str) -> (usize, LineProblem) {
        let e = parse_reserved_regions(text).unwrap_err();
        (e.line, e.problem)
    }

    #[test]
    fn kernel_lines_parse() {
        let t = "0x0000000000000000 0x0000000000ffffff direct-relaxable\n\
                 0x00000000fee00000 0x00000000feefffff msi\n";
        let r = parse_reserved_regions(t).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].range, IovaRange::new(0, 0xff_ffff).unwrap());
        assert_eq!(r[0].kind, ReservedKind::DirectRelaxable);
        assert_eq!(
            r[1].range,
            IovaRange::new(0xfee0_0000, 0xfeef_ffff).unwrap()
        );
        assert_eq!(r[1].kind, ReservedKind::Msi);
    }

    #[test]
    fn empty_file_has_no_regions() {
        assert_eq!(parse_reserved_regions(""), Ok(vec![]));
        assert_eq!(parse_reserved_regions("\n"), Ok(vec![]));
        assert_eq!(parse_reserved_regions("\n\n").unwrap_err().line, 1);
    }

    #[test]
    fn full_space_and_single_address() {
        let r = parse_reserved_regions("0x0 0xffffffffffffffff reserved\n0x5 0x5 direct").unwrap();
        assert_eq!(r[0].range, IovaRange::FULL);
        assert_eq!(r[1].range.len(), 1);
    }

    #[test]
    fn malformed_lines_name_line_and_problem() {
        let ok = "0x00000000fee00000 0x00000000feefffff msi\n";
        assert_eq!(
            problem(&format!("{ok}0xfee00000 msi\n")),
            (2, LineProblem::FieldCount { found: 2 })
        );
        assert_eq!(
            problem("0x1 0x2 msi extra"),
            (1, LineProblem::FieldCount { found: 4 })
        );
        assert!(matches!(
            problem("fee00000 0x1 msi"),
            (1, LineProblem::NotHex { field: "first", .. })
        ));
        assert!(matches!(
            problem("0x1 0xg msi"),
            (1, LineProblem::NotHex { field: "last", .. })
        ));
        assert!(matches!(
            problem("0x 0x1 msi"),
            (1, LineProblem::NotHex { .. })
        ));
        assert!(matches!(
            problem("-0x1 0x1 msi"),
            (1, LineProblem::NotHex { .. })
        ));
        assert!(matches!(
            problem("0x0 0x10000000000000000 reserved"),
            (1, LineProblem::TooLarge { field: "last", .. })
        ));
        assert!(matches!(
            problem("0x0 0x1 MSI"),
            (1, LineProblem::UnknownKind { .. })
        ));
        assert_eq!(
            problem("0x2 0x1 msi"),
            (1, LineProblem::LastBeforeFirst { first: 2, last: 1 })
        );
        assert_eq!(problem(&format!("{ok}\n{ok}")), (2, LineProblem::Empty));
    }

    #[test]
    fn message_quotes_the_line() {
        let e = parse_reserved_regions("0x1 0x2 msi\n0xfee00000 msi\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "2: expected '0x<first> 0x<last> <type>', got '0xfee00000 msi'"
        );
    }
}
