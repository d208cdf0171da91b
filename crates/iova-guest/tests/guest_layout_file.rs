//! Custom layouts from TOML: good files parse; every bad one names file, line, section.

use iova::range::IovaRange;
use iova_guest::SectionKind;
use iova_guest::layout_file::{parse, to_toml};

const GOOD: &str = r#"
name = "two-chunks"

[[section]]
name = "ram-low"
kind = "ram"
first = "0x0"
last = "0x7fffffff"

[[section]]
name = "ram-high"
kind = "ram"
start = "4G"
size = "60G"

[[section]]
name = "gpu-bar"
kind = "bar"
start = 0x100_0000_0000
size = "16G"
"#;

#[test]
fn a_good_file_parses() {
    let l = parse("vm.toml", GOOD).unwrap();
    assert_eq!(l.name, "two-chunks");
    assert_eq!(l.sections().len(), 3);
    let hi = l.section("ram-high").unwrap();
    assert_eq!(
        hi.range,
        IovaRange::new(1 << 32, (64u64 << 30) - 1).unwrap()
    );
    let bar = l.section("gpu-bar").unwrap();
    assert!(bar.p2p && bar.kind == SectionKind::Mmio);
    assert_eq!(l.ram_bytes(), (2u128 << 30) + (60u128 << 30));
    // Writing and reading back gives the same layout.
    assert_eq!(parse("again.toml", &to_toml(&l)).unwrap(), l);
}

fn err(text: &str) -> String {
    parse("bad.toml", text).unwrap_err().to_string()
}

#[test]
fn overlapping_sections_are_refused_with_both_names_and_lines() {
    let e = err(
        "[[section]]\nname = \"a\"\nkind = \"ram\"\nstart = \"0\"\nsize = \"2G\"\n\n[[section]]\nname = \"b\"\nkind = \"ram\"\nstart = \"1G\"\nsize = \"2G\"\n",
    );
    assert!(e.starts_with("bad.toml:7: section 'b'"), "{e}");
    assert!(
        e.contains("overlaps section 'a'") && e.contains("line 1"),
        "{e}"
    );
}

#[test]
fn wrapping_and_reversed_ranges_are_refused() {
    let e = err(
        "[[section]]\nname = \"w\"\nkind = \"ram\"\nstart = \"0xffffffffffff0000\"\nsize = \"1M\"\n",
    );
    assert!(
        e.starts_with("bad.toml:1: section 'w'") && e.contains("wraps"),
        "{e}"
    );
    let e = err(
        "\n\n[[section]]\nname = \"r\"\nkind = \"rom\"\nfirst = \"0x2000\"\nlast = \"0x1000\"\n",
    );
    assert!(
        e.starts_with("bad.toml:3: section 'r'") && e.contains("below first"),
        "{e}"
    );
    let e = err("[[section]]\nname = \"z\"\nkind = \"ram\"\nstart = 0\nsize = 0\n");
    assert!(e.contains("size is 0"), "{e}");
}

#[test]
fn other_mistakes_name_the_line() {
    let e = err("[[section]]\nname = \"k\"\nkind = \"dram\"\nstart = 0\nsize = \"1G\"\n");
    assert!(
        e.starts_with("bad.toml:1: section 'k'") && e.contains("unknown kind 'dram'"),
        "{e}"
    );
    let e = err("[[section]]\nname = \"x\"\nkind = \"ram\"\nstart = 0\n");
    assert!(
        e.contains("section 'x'") && e.contains("'start' and 'size'"),
        "{e}"
    );
    let e = err("[[section]]\nname = \"x\"\nkind = \"ram\"\nstart = 0\nsize = \"1.5T\"\n");
    assert!(e.contains("fractional"), "{e}");
    let e = err("[[section]]\nname = \"x\"\nkind = \"ram\"\nbegin = 0\nsize = 1\n");
    assert!(e.starts_with("bad.toml:"), "{e}");
    assert!(e.contains("begin"), "{e}");
    let e = err("[[section]\n");
    assert!(e.starts_with("bad.toml:1:"), "{e}");
    let e = err("name = \"empty\"\n");
    assert!(e.contains("no [[section]]"), "{e}");
    let e = err(
        "[[section]]\nname = \"d\"\nkind = \"ram\"\nstart = 0\nsize = \"1G\"\n[[section]]\nname = \"d\"\nkind = \"ram\"\nstart = \"2G\"\nsize = \"1G\"\n",
    );
    assert!(
        e.starts_with("bad.toml:6: section 'd'") && e.contains("already used at line 1"),
        "{e}"
    );
    let e = err("[[section]]\nname = \"n\"\nkind = \"ram\"\nstart = -5\nsize = 1\n");
    assert!(e.contains("negative"), "{e}");
}
