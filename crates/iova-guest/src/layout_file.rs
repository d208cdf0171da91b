//! Custom guest layouts from TOML files.
//!
//! ```toml
//! name = "my-vm"            # optional; defaults to the file name
//!
//! [[section]]
//! name = "ram-low"
//! kind = "ram"              # ram | rom | mmio | bar (= mmio mapped for peer-to-peer)
//! first = "0x0"             # inclusive bounds ...
//! last = "0x7fffffff"
//!
//! [[section]]
//! name = "ram-high"
//! kind = "ram"
//! start = "4G"              # ... or start + size (numbers, hex strings or sizes)
//! size = "60G"
//! ```
//!
//! Every error names the file, the line and the section. Overlapping sections, ranges
//! that wrap past 2^64, `last < first`, a size of 0 and unknown keys are refused.

use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;

use super::{Layout, Section, SectionKind};
use iova::range::IovaRange;
use iova::units::parse_number;

/// A layout file that cannot be used; names the file, the line and the section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutFileError {
    /// The file, as given.
    pub file: String,
    /// The 1-based line, when known.
    pub line: Option<usize>,
    /// The section's name (or `#N` when it has none), when the error is in one.
    pub section: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for LayoutFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        f.write_str(": ")?;
        if let Some(s) = &self.section {
            write!(f, "section '{s}': ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for LayoutFileError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    name: Option<String>,
    #[serde(default)]
    section: Vec<toml::Spanned<RawSection>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSection {
    name: Option<String>,
    kind: Option<String>,
    first: Option<Num>,
    last: Option<Num>,
    start: Option<Num>,
    size: Option<Num>,
    p2p: Option<bool>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Num {
    Int(i64),
    Text(String),
}

impl Num {
    fn address(&self) -> Result<u64, String> {
        match self {
            Num::Int(i) => u64::try_from(*i).map_err(|_| format!("negative number {i}")),
            Num::Text(t) => parse_number(t).map_err(|e| e.to_string()),
        }
    }

    fn size(&self) -> Result<u64, String> {
        match self {
            Num::Int(i) => u64::try_from(*i).map_err(|_| format!("negative size {i}")),
            Num::Text(t) => parse_number(t).map_err(|e| e.to_string()),
        }
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(0, |p| p.bytes().filter(|&b| b == b'\n').count())
        + 1
}

/// The 1-based line of any byte offset, from one scan of the text: parsing stays
/// linear however many sections a file has (a rescan per section was quadratic:
/// 40,000 sections took half a minute).
struct Lines {
    /// The offset of every line break.
    breaks: Vec<usize>,
}

impl Lines {
    fn new(text: &str) -> Lines {
        Lines {
            breaks: text
                .bytes()
                .enumerate()
                .filter_map(|(i, b)| (b == b'\n').then_some(i))
                .collect(),
        }
    }

    fn line_of(&self, offset: usize) -> usize {
        self.breaks.partition_point(|&b| b < offset) + 1
    }
}

/// Parses a layout file's text. `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<Layout, LayoutFileError> {
    let err = |line: Option<usize>, section: Option<String>, message: String| LayoutFileError {
        file: file.to_owned(),
        line,
        section,
        message,
    };
    let raw: RawFile = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start));
        err(line, None, e.message().trim().to_owned())
    })?;
    if raw.section.is_empty() {
        return Err(err(None, None, "no [[section]] in the file".to_owned()));
    }
    let lines = Lines::new(text);
    let mut items: Vec<(Section, usize)> = Vec::with_capacity(raw.section.len());
    let mut by_name: HashMap<String, usize> = HashMap::with_capacity(raw.section.len());
    for (i, spanned) in raw.section.iter().enumerate() {
        let line = lines.line_of(spanned.span().start);
        let s = spanned.get_ref();
        let label = s.name.clone().unwrap_or_else(|| format!("#{}", i + 1));
        let fail = |m: String| err(Some(line), Some(label.clone()), m);
        let name = s
            .name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| fail("missing 'name'".to_owned()))?;
        let (kind, p2p_default) = match s.kind.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("ram") => (SectionKind::Ram, false),
            Some("rom") => (SectionKind::Rom, false),
            Some("mmio") => (SectionKind::Mmio, false),
            Some("bar") => (SectionKind::Mmio, true),
            Some(other) => {
                return Err(fail(format!(
                    "unknown kind '{other}' (use ram, rom, mmio or bar)"
                )));
            }
            None => return Err(fail("missing 'kind' (ram, rom, mmio or bar)".to_owned())),
        };
        let range = match (&s.first, &s.last, &s.start, &s.size) {
            (Some(f), Some(l), None, None) => {
                let f = f.address().map_err(|m| fail(format!("first: {m}")))?;
                let l = l.address().map_err(|m| fail(format!("last: {m}")))?;
                IovaRange::new(f, l)
                    .map_err(|_| fail(format!("last {l:#x} is below first {f:#x}")))?
            }
            (None, None, Some(st), Some(sz)) => {
                let st = st.address().map_err(|m| fail(format!("start: {m}")))?;
                let sz = sz.size().map_err(|m| fail(format!("size: {m}")))?;
                if sz == 0 {
                    return Err(fail("size is 0".to_owned()));
                }
                IovaRange::from_start_size(st, sz).map_err(|_| {
                    fail(format!(
                        "start {st:#x} + size {sz:#x} wraps past the end of the 64-bit space"
                    ))
                })?
            }
            _ => {
                return Err(fail(
                    "give either 'first' and 'last' (inclusive) or 'start' and 'size'".to_owned(),
                ));
            }
        };
        let mut section = Section::new(name, kind, range);
        section.p2p = s.p2p.unwrap_or(p2p_default);
        if section.p2p && kind != SectionKind::Mmio {
            return Err(fail("p2p applies to mmio sections only".to_owned()));
        }
        if let Some(other_line) = by_name.get(&section.name) {
            return Err(fail(format!(
                "name '{}' already used at line {other_line}",
                section.name
            )));
        }
        by_name.insert(section.name.clone(), line);
        items.push((section, line));
    }
    let mut sorted: Vec<&(Section, usize)> = items.iter().collect();
    sorted.sort_by_key(|(s, _)| (s.range.first(), s.range.last()));
    for w in sorted.windows(2) {
        if let [(a, la), (b, lb)] = w {
            if a.range.overlaps(&b.range) {
                let (first, later, line) = if la < lb { (a, b, *lb) } else { (b, a, *la) };
                return Err(err(
                    Some(line),
                    Some(later.name.clone()),
                    format!(
                        "{} overlaps section '{}' {} (line {})",
                        later.range,
                        first.name,
                        first.range,
                        la.min(lb)
                    ),
                ));
            }
        }
    }
    let name = raw.name.unwrap_or_else(|| file.to_owned());
    Layout::new(name, items.into_iter().map(|(s, _)| s).collect())
        .map_err(|e| err(None, None, e.to_string()))
}

/// Writes a layout in the file format [`parse`] reads.
pub fn to_toml(layout: &Layout) -> String {
    let mut out = format!("name = {}\n", quote(&layout.name));
    for s in layout.sections() {
        let kind = match (s.kind, s.p2p) {
            (SectionKind::Mmio, true) => "bar",
            (k, _) => k.as_str(),
        };
        out.push_str(&format!(
            "\n[[section]]\nname = {}\nkind = \"{kind}\"\nfirst = \"{:#x}\"\nlast = \"{:#x}\"\n",
            quote(&s.name),
            s.range.first(),
            s.range.last()
        ));
    }
    out
}

fn quote(s: &str) -> String {
    let mut q = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            // Control characters and the bidirectional overrides as TOML escapes: the
            // text can be printed to a terminal as is.
            c if c.is_control()
                || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') =>
            {
                q.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => q.push(c),
        }
    }
    q.push('"');
    q
}
