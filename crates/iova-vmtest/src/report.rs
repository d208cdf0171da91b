//! Check results, printed one per line for the harness.

use std::fmt::Display;
use std::io::Write;

/// Counts and prints check results.
pub struct Report {
    tag: String,
    /// Checks passed.
    pub passed: u32,
    /// Checks failed.
    pub failed: u32,
}

impl Report {
    /// A report whose check names are prefixed with `tag/`.
    pub fn new(tag: &str) -> Report {
        Report {
            tag: tag.to_owned(),
            passed: 0,
            failed: 0,
        }
    }

    /// Records a passed check.
    pub fn pass(&mut self, name: &str) {
        self.passed += 1;
        println!("vmtest: PASS {}/{name}", self.tag);
        let _ = std::io::stdout().flush();
    }

    /// Records a failed check.
    pub fn fail(&mut self, name: &str, why: &str) {
        self.failed += 1;
        println!("vmtest: FAIL {}/{name}: {why}", self.tag);
        let _ = std::io::stdout().flush();
    }

    /// Records `result` as a check.
    pub fn check<E: Display>(&mut self, name: &str, result: Result<(), E>) {
        match result {
            Ok(()) => self.pass(name),
            Err(e) => self.fail(name, &e.to_string()),
        }
    }

    /// Records whether `got == want`.
    pub fn eq<T: PartialEq + std::fmt::Debug>(&mut self, name: &str, got: T, want: T) {
        if got == want {
            self.pass(name);
        } else {
            self.fail(name, &format!("got {got:?}, want {want:?}"));
        }
    }

    /// Prints an informational line (not a check).
    pub fn note(&self, text: &str) {
        println!("vmtest-guest: [{}] {text}", self.tag);
    }
}
