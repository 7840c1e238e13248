//! [`Position`]: where an event came from, as the core holds it; [`Location`]: a line of a
//! named input, the position line-oriented sources start from.

use std::fmt;
use std::sync::Arc;

/// Where an event came from: the source's name and an offset within it. What the offset
/// counts is the source's choice (files: the 1-based line number); the core compares,
/// stores and displays a position (`source:offset`), and never takes one apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    /// The source's name, as records and messages show it (`<stdin>` for stdin).
    pub source: Arc<str>,
    /// Where in the source, in the source's own unit.
    pub offset: u64,
}

impl Position {
    /// The position `offset` of `source`.
    pub fn new(source: impl Into<Arc<str>>, offset: u64) -> Self {
        Position {
            source: source.into(),
            offset,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.source, self.offset)
    }
}

/// A line of a named input: the position of line-oriented sources (files, stdin, test
/// scenarios) before the core takes it as a [`Position`] (`-` names stdin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The input's name as given (`-` is stdin).
    pub file: Arc<str>,
    /// 1-based line number.
    pub line: u64,
}

/// The name stdin goes by in positions, records and messages.
pub const STDIN_NAME: &str = "<stdin>";

/// The name positions of the input `name` (as given) carry: stdin's `-` is `<stdin>`.
pub fn display_name(name: &str) -> Arc<str> {
    if name == "-" {
        Arc::from(STDIN_NAME)
    } else {
        Arc::from(name)
    }
}

impl From<&Location> for Position {
    fn from(location: &Location) -> Self {
        let source = if &*location.file == "-" {
            Arc::from(STDIN_NAME)
        } else {
            location.file.clone()
        };
        Position {
            source,
            offset: location.line,
        }
    }
}

impl From<Location> for Position {
    fn from(location: Location) -> Self {
        Position::from(&location)
    }
}

impl From<&Position> for Position {
    fn from(position: &Position) -> Self {
        position.clone()
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Position::from(self).fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_show_source_and_offset_and_stdin_by_name() {
        let file = Location {
            file: "logs/a.jsonl".into(),
            line: 7,
        };
        assert_eq!(Position::from(&file).to_string(), "logs/a.jsonl:7");
        let stdin = Location {
            file: "-".into(),
            line: 3,
        };
        assert_eq!(stdin.to_string(), "<stdin>:3");
        assert_eq!(Position::from(stdin), Position::new("<stdin>", 3));
        assert!(Position::new("a", 9) < Position::new("a", 10));
    }
}
