//! [`Error`]: the exception Python would raise, for rule functions that return `Result`.

use std::fmt;

/// A Python exception, as a port raises it where Panther's Python code would: the type
/// (`TypeError`, `AttributeError`, ...) and the message. It prints as
/// `TypeError: message`, the way rulehost reports a Python rule's exception, so a ported
/// rule's rule errors read the same as the original's.
///
/// Every rule function may return `Result<T, E>` with any `E: Display` (see
/// [`export_rule!`](crate::export_rule)); the SDK's helpers return this one, so a rule passes
/// their errors on with `?`.
///
/// ```
/// use rulehost_sdk::{Error, Event, Value};
///
/// fn title(event: &Event) -> Result<String, Error> {
///     match event.get("group") {
///         Some(Value::Str(group)) => Ok(format!("Group {}", group.to_lowercase())),
///         Some(other) => Err(Error::no_attribute(&other, "lower")),
///         None => Ok("No group".to_owned()),
///     }
/// }
///
/// let event = Event::from_json(r#"{"group": 7}"#).unwrap();
/// assert_eq!(title(&event).unwrap_err().to_string(), "AttributeError: 'int' object has no attribute 'lower'");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: String,
    message: String,
}

impl Error {
    /// An exception of type `kind` (`"ValueError"`, ...) with `message`.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Error {
            kind: kind.into(),
            message: message.into(),
        }
    }

    /// Python's `TypeError`.
    pub fn type_error(message: impl Into<String>) -> Self {
        Self::new("TypeError", message)
    }

    /// `value.attribute` on a value that lacks it (`7.lower()`): Python's
    /// `AttributeError: 'int' object has no attribute 'lower'`.
    pub fn no_attribute(value: &crate::Value, attribute: &str) -> Self {
        Self::new(
            "AttributeError",
            format!(
                "'{}' object has no attribute '{attribute}'",
                value.python_type()
            ),
        )
    }

    /// The exception's type name.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The exception's message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for Error {}
