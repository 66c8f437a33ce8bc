//! Errors for TOML configuration files that say where the problem is: the 1-based line and
//! column, and the key assigned on that line when the `toml` crate's own message does not
//! name it (a wrong type, a duplicate key). Also the duration syntax the configurations share
//! (`"500ms"`, `"3s"`, `"5m"`, `"1h"` or a whole number of seconds).
//!
//! uma-proxy and uma-test-as read their files with it, so that both explain a mistake the
//! same way. It knows nothing of UMA: each crate keeps its own keys, checks and error type,
//! and wraps a [`Diagnostic`] with the file name.
//!
//! # Example
//!
//! ```
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Raw {
//!     #[allow(dead_code)]
//!     max_entries: Option<u64>,
//! }
//!
//! let text = "# the cache\nmax_entries = \"lots\"\n";
//! let error = toml_diag::from_str::<Raw>(text).err().unwrap();
//! assert_eq!(error.line(), Some(2));
//! assert!(
//!     error.to_string().starts_with("line 2, column 15: `max_entries`: invalid type"),
//!     "{error}"
//! );
//!
//! // Problems found after parsing point at a `toml::Spanned` value the same way.
//! let error = toml_diag::Diagnostic::at(text, 12, "`max_entries` is too large");
//! assert_eq!(error.to_string(), "line 2, column 1: `max_entries` is too large");
//! ```

use std::fmt;
use std::time::Duration;

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};

/// A problem in a TOML document: what is wrong and, when known, where.
///
/// `Display` reads `line 4, column 1: unknown field `colour`, expected …`, or only the
/// message when there is no position; callers prefix the file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// 1-based line and column.
    position: Option<(usize, usize)>,
    message: String,
}

impl Diagnostic {
    /// A problem with no position in the text (a missing key, a command-line value).
    #[must_use]
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            position: None,
            message: message.into(),
        }
    }

    /// A problem at byte `offset` of `text` (the start of a `toml::Spanned` value's span).
    #[must_use]
    pub fn at(text: &str, offset: usize, message: impl Into<String>) -> Self {
        Self {
            position: Some(line_col(text, offset)),
            message: message.into(),
        }
    }

    /// The 1-based line of the offending key or value, when known.
    #[must_use]
    pub const fn line(&self) -> Option<usize> {
        match self.position {
            Some((line, _)) => Some(line),
            None => None,
        }
    }

    /// The 1-based column of the offending key or value, when known.
    #[must_use]
    pub const fn column(&self) -> Option<usize> {
        match self.position {
            Some((_, column)) => Some(column),
            None => None,
        }
    }

    /// What is wrong, without the position.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((line, column)) = self.position {
            write!(f, "line {line}, column {column}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for Diagnostic {}

/// Deserializes `text` like `toml::from_str`, with an error that carries the line and column
/// of the problem and, when the `toml` crate's message does not name the key assigned on that
/// line (a wrong type, a duplicate key), starts with it: `` `max_entries`: invalid type: … ``.
///
/// # Errors
///
/// A [`Diagnostic`] for invalid TOML and for everything the deserializer of `T` refuses
/// (unknown keys, wrong types, missing keys, the custom errors of its fields).
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, Diagnostic> {
    from_str_with_secrets(text, &[])
}

/// [`from_str`] for a document some of whose keys hold secrets: an error on a line that names
/// one of `secrets` (as its key, quoted, or in an inline table) does not repeat the `toml`
/// crate's message, which can quote the value (`` invalid type: integer `918273645` ``).
///
/// ```
/// #[derive(serde::Deserialize)]
/// struct Raw {
///     #[allow(dead_code)]
///     client_secret: String,
/// }
///
/// let error = toml_diag::from_str_with_secrets::<Raw>("client_secret = 918273645\n", &["client_secret"])
///     .err()
///     .unwrap();
/// assert!(!error.to_string().contains("918273645"), "{error}");
/// assert!(error.to_string().starts_with("line 1, column 17: `client_secret`: "), "{error}");
/// ```
///
/// # Errors
///
/// As [`from_str`].
pub fn from_str_with_secrets<T: DeserializeOwned>(
    text: &str,
    secrets: &[&str],
) -> Result<T, Diagnostic> {
    toml::from_str(text).map_err(|e| {
        let message = e.message().trim_end();
        let key = e.span().and_then(|span| key_of_line(text, span.start));
        // The line names a secret's key (as the key, quoted, or inside an inline table).
        let secret_line = e.span().is_some_and(|span| {
            let start = text
                .get(..span.start)
                .and_then(|t| t.rfind('\n'))
                .map_or(0, |i| i + 1);
            let line = text
                .get(start..)
                .and_then(|t| t.lines().next())
                .unwrap_or("");
            secrets.iter().any(|s| line.contains(s))
        });
        let message = match key {
            _ if secret_line => format!(
                "{}not a valid value; write it as a string in quotes (the value is not \
                 repeated here: the line holds a secret)",
                key.map(|k| format!("`{k}`: ")).unwrap_or_default()
            ),
            Some(key) if !message.contains(&format!("`{key}`")) => format!("`{key}`: {message}"),
            _ => message.to_owned(),
        };
        Diagnostic {
            position: e.span().map(|span| line_col(text, span.start)),
            message,
        }
    })
}

/// The key assigned on the line holding byte `offset` (`max_entries` in
/// `max_entries = "lots"`, `a.b` in `a.b = 1`); `None` on a table header, a line without `=`
/// or a quoted key.
///
/// ```
/// assert_eq!(toml_diag::key_of_line("[cache]\nx = 1", 2), None);
/// assert_eq!(toml_diag::key_of_line("[cache]\nx = 1", 9), Some("x"));
/// ```
#[must_use]
pub fn key_of_line(text: &str, offset: usize) -> Option<&str> {
    let start = text.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
    let line = text.get(start..)?.lines().next()?;
    let key = line.split_once('=')?.0.trim();
    let bare = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.';
    (!key.is_empty() && key.bytes().all(bare)).then_some(key)
}

/// The 1-based line and column (in characters) of byte `offset` of `text`; an offset past
/// the end or inside a character counts as the end of the text.
///
/// ```
/// assert_eq!(toml_diag::line_col("ab\ncd", 4), (2, 2));
/// ```
#[must_use]
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Parses `"500ms"`, `"3s"`, `"5m"`, `"1h"` or a bare number of seconds (`"7"`); `None` for
/// anything else (fractions, negative numbers, other units, overflow).
///
/// ```
/// use std::time::Duration;
/// assert_eq!(toml_diag::parse_duration("5m"), Some(Duration::from_secs(300)));
/// assert_eq!(toml_diag::parse_duration("1.5s"), None);
/// ```
#[must_use]
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    match unit.trim() {
        "ms" => Some(Duration::from_millis(number)),
        "s" | "" => Some(Duration::from_secs(number)),
        "m" => number.checked_mul(60).map(Duration::from_secs),
        "h" => number.checked_mul(3600).map(Duration::from_secs),
        _ => None,
    }
}

/// Deserializes a duration written as [`parse_duration`] reads it (a string), or as a whole
/// number of seconds (a TOML integer). `examples` are the values that messages show, the
/// first one also as the "e.g.": with `["3s", "5m"]` a bad string reads
/// `` invalid duration `soon`: expected a number followed by ms, s, m or h, e.g. "3s" `` and
/// a value of another type `` invalid type: boolean `true`, expected a duration such as "3s"
/// or "5m" ``.
///
/// For a `deserialize_with` function or a newtype's `Deserialize` implementation:
///
/// ```
/// use std::time::Duration;
///
/// #[derive(serde::Deserialize)]
/// struct Raw {
///     #[serde(deserialize_with = "timeout")]
///     timeout: Duration,
/// }
///
/// fn timeout<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
///     toml_diag::deserialize_duration(d, &["3s", "500ms"])
/// }
///
/// let raw: Raw = toml::from_str("timeout = \"250ms\"").unwrap();
/// assert_eq!(raw.timeout, Duration::from_millis(250));
/// let raw: Raw = toml::from_str("timeout = 2").unwrap();
/// assert_eq!(raw.timeout, Duration::from_secs(2));
/// ```
///
/// # Errors
///
/// The deserializer's error for a string [`parse_duration`] refuses, a negative integer or a
/// value of another type.
pub fn deserialize_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
    examples: &'static [&'static str],
) -> Result<Duration, D::Error> {
    deserializer.deserialize_any(DurationVisitor { examples })
}

struct DurationVisitor {
    examples: &'static [&'static str],
}

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as ")?;
        let last = self.examples.len().saturating_sub(1);
        for (i, example) in self.examples.iter().enumerate() {
            match i {
                0 => {}
                i if i == last => f.write_str(" or ")?,
                _ => f.write_str(", ")?,
            }
            write!(f, "\"{example}\"")?;
        }
        Ok(())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse_duration(v).ok_or_else(|| {
            let example = self.examples.first().copied().unwrap_or("3s");
            E::custom(format!(
                "invalid duration `{v}`: expected a number followed by ms, s, m or h, e.g. \"{example}\""
            ))
        })
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        u64::try_from(v)
            .map(Duration::from_secs)
            .map_err(|_| E::custom("a duration cannot be negative"))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        Ok(Duration::from_secs(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("ab", 99), (1, 3));
        assert_eq!(line_col("é\nx", 1), (2, 2), "inside a character: the end");
    }

    #[test]
    fn the_key_of_a_line() {
        assert_eq!(key_of_line("[cache]\nx = 1", 2), None);
        assert_eq!(key_of_line("[cache]\nx = 1", 9), Some("x"));
        assert_eq!(key_of_line("a.b = { c = 1 }", 12), Some("a.b"));
        assert_eq!(key_of_line("\"quoted\" = 1", 11), None);
        assert_eq!(key_of_line("= 1", 2), None);
        assert_eq!(key_of_line("x = 1", 99), None);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("300s"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_duration(" 2 m "), Some(Duration::from_secs(120)));
        for bad in [
            "",
            "s",
            "5x",
            "-1s",
            "1.5s",
            "5 minutes",
            "99999999999999999999h",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Raw {
        #[serde(default, deserialize_with = "ttl")]
        ttl: Option<Duration>,
        #[serde(default)]
        max_entries: u64,
    }

    fn ttl<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        deserialize_duration(d, &["3s", "500ms", "5m", "1h"]).map(Some)
    }

    fn error(text: &str) -> Diagnostic {
        from_str::<Raw>(text).unwrap_err()
    }

    #[test]
    fn messages_name_the_position_and_the_key() {
        let ok = from_str::<Raw>("ttl = 2\nmax_entries = 3").unwrap();
        assert_eq!((ok.ttl, ok.max_entries), (Some(Duration::from_secs(2)), 3));

        let e = error("ttl = \"1s\"\ncolour = 1\n");
        assert_eq!((e.line(), e.column()), (Some(2), Some(1)));
        assert_eq!(
            e.to_string(),
            "line 2, column 1: unknown field `colour`, expected `ttl` or `max_entries`"
        );
        // toml names the key of an unknown field itself: not twice.
        assert_eq!(e.message().matches("colour").count(), 1, "{e}");

        let e = error("max_entries = \"lots\"");
        assert_eq!(
            e.to_string(),
            "line 1, column 15: `max_entries`: invalid type: string \"lots\", expected u64"
        );
        let e = error("ttl = 1\nttl = 2");
        assert!(e.message().starts_with("`ttl`: duplicate key"), "{e}");
    }

    #[test]
    fn duration_messages_show_the_examples() {
        let e = error("ttl = \"soon\"");
        assert_eq!(
            e.message(),
            "`ttl`: invalid duration `soon`: expected a number followed by ms, s, m or h, e.g. \"3s\""
        );
        let e = error("ttl = true");
        assert_eq!(
            e.message(),
            "`ttl`: invalid type: boolean `true`, expected a duration such as \"3s\", \"500ms\", \"5m\" or \"1h\""
        );
        let e = error("ttl = -1");
        assert_eq!(e.message(), "`ttl`: a duration cannot be negative");
    }

    #[test]
    fn no_position_no_prefix() {
        let e = Diagnostic::new("missing key `upstream`");
        assert_eq!((e.line(), e.column()), (None, None));
        assert_eq!(e.to_string(), "missing key `upstream`");
    }
}
