//! Names from layouts, profiles and sysfs are untrusted text: before they reach a
//! terminal (every text output of `iovactl` passes them through [`clean`]), control characters (ESC, NUL, line breaks...) and the Unicode bidirectional
//! overrides are shown escaped (`\u{1b}`), so a name can neither break a table's lines
//! nor send escape sequences to the terminal.

/// Whether `c` must not reach a terminal as is.
pub fn is_hostile(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every hostile character escaped (`\n`, `\0`, `\u{1b}`).
pub fn clean(s: &str) -> String {
    if !s.chars().any(is_hostile) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_hostile(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// [`clean`] of each line of `s`: the line breaks of a multi-line report stay, every
/// other hostile character is escaped.
pub fn clean_lines(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for line in s.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        out.push_str(&clean(body));
        out.push_str(nl);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(clean("ram"), "ram");
        assert_eq!(clean("a\u{1b}[31mb"), "a\\u{1b}[31mb");
        assert_eq!(clean("a\nb\0"), "a\\nb\\u{0}");
        assert_eq!(clean("x\u{202e}y"), "x\\u{202e}y");
        assert_eq!(clean_lines("a\u{1b}\nb\r\n"), "a\\u{1b}\nb\\r\n");
    }
}
