//! Regular expressions for rules, with Python's `re.match` and `re.search`.
//!
//! [`Regex`] is `regex-automata`'s meta regex (the engine behind the `regex` crate), built
//! without its `std` feature: with `std`, `regex` and `regex-lite` keep capture names in a
//! `std::collections::HashMap`, whose `RandomState` makes every component that links them
//! import `wasi:random`, and a rule that reads a random number in `evaluate-batch` has
//! its batches discarded and its batch path turned off. This build imports nothing
//! (`host/tests/it/ports.rs` checks a rule that uses it). The syntax is the `regex`
//! crate's; Unicode classes are limited to Perl's (`\w`, `\d`, `\s`) and case folding.
//!
//! Compile a pattern once per instance, not per call:
//!
//! ```
//! use std::sync::LazyLock;
//! use rulehost_sdk::regex::{self, Regex};
//!
//! static UUID: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"[0-9a-f]{8}").unwrap());
//! static EMAIL: LazyLock<Regex> = LazyLock::new(|| Regex::new(r".+@.+\.[a-zA-Z]{2,}").unwrap());
//!
//! assert!(regex::is_match_at_start(&EMAIL, "a@example.com and more"));
//! assert!(!regex::is_match_at_start(&EMAIL, "admins"));
//! assert!(!regex::is_match_at_start(&UUID, "id deadbeef"));
//! assert!(regex::is_match_anywhere(&UUID, "id deadbeef"));
//! ```

pub use regex_automata::meta::{BuildError, Regex};
pub use regex_automata::{Anchored, Input, Match};

/// Python's `re.match(pattern, text)`: a match that starts at the start of `text` (it may
/// end anywhere). Python's `$` also matches before a final `\n`: write it `\n?\z` here
/// (this crate's `$` is the very end).
pub fn is_match_at_start(regex: &Regex, text: &str) -> bool {
    regex.is_match(Input::new(text).anchored(Anchored::Yes))
}

/// Python's `re.search(pattern, text)`: a match anywhere (the same as [`Regex::is_match`]).
pub fn is_match_anywhere(regex: &Regex, text: &str) -> bool {
    regex.is_match(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_match_and_search() {
        let re = Regex::new(r"[0-9a-f]{8}").unwrap();
        assert!(is_match_at_start(&re, "deadbeef-x"));
        assert!(!is_match_at_start(&re, "x-deadbeef"));
        assert!(is_match_anywhere(&re, "x-deadbeef"));
        // Python's `$` before a final newline, written `\n?\z`.
        let end = Regex::new(r"^[0-9a-f]{8}\n?\z").unwrap();
        assert!(is_match_at_start(&end, "deadbeef\n"));
        assert!(!is_match_at_start(&end, "deadbeef\n\n"));
        // Unicode: `.` is one character, `\w` is Unicode's, (?i) folds case.
        assert!(is_match_at_start(&Regex::new(r"^é.\z").unwrap(), "éà"));
        assert!(is_match_at_start(&Regex::new(r"^\w+\z").unwrap(), "naïve"));
        assert!(is_match_at_start(
            &Regex::new(r"(?i)ADMIN").unwrap(),
            "admin"
        ));
        // `.` does not match a newline, as in Python.
        assert!(!is_match_at_start(&Regex::new(r"a.b").unwrap(), "a\nb"));
    }
}
