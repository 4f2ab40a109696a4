//! A book, valid by construction: past `Book::from_json` no empty title,
//! no fractional id and no unknown field can exist.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What a client may not send, naming the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BookError {
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("the body must be a JSON object (a book)")]
    NotAnObject,
    #[error("{message}")]
    InvalidField { field: String, message: String },
}

impl BookError {
    fn field(field: &str, message: impl Into<String>) -> Self {
        BookError::InvalidField { field: field.to_owned(), message: message.into() }
    }

    /// The field at fault, if one is.
    pub fn field_name(&self) -> Option<&str> {
        match self {
            BookError::InvalidField { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// A book's id: an integer chosen by the client, in the 32-bit range of the
/// original service (stored as a BSON int32, as the original did).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BookId(i32);

impl BookId {
    pub fn new(id: i32) -> Self {
        BookId(id)
    }

    pub fn get(self) -> i32 {
        self.0
    }

    /// An id as it appears in a URL path or query (`/api/v1/books/_id/42`).
    pub fn parse_str(field: &str, raw: &str) -> Result<Self, BookError> {
        raw.parse::<i32>().map(BookId).map_err(|_| match raw.parse::<i128>() {
            Ok(_) => BookError::field(field, format!("`{field}` must be between {} and {}", i32::MIN, i32::MAX)),
            Err(_) => BookError::field(field, format!("`{field}` must be an integer, not `{raw}`")),
        })
    }

    fn from_json(value: Option<&Value>) -> Result<Self, BookError> {
        let value = value.ok_or_else(|| BookError::field("_id", "`_id` is missing; a book needs an integer `_id`"))?;
        let Value::Number(n) = value else {
            return Err(BookError::field("_id", format!("`_id` must be an integer, not {}", kind(value))));
        };
        if let Some(i) = n.as_i64() {
            return i32::try_from(i)
                .map(BookId)
                .map_err(|_| BookError::field("_id", format!("`_id` must be between {} and {}", i32::MIN, i32::MAX)));
        }
        if n.is_u64() {
            return Err(BookError::field("_id", format!("`_id` must be between {} and {}", i32::MIN, i32::MAX)));
        }
        // `1.0` and `1e3` are whole numbers, as JSON Schema (and so the
        // OpenAPI document) counts them: the id they spell is taken.
        match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f >= f64::from(i32::MIN) && f <= f64::from(i32::MAX) => Ok(BookId(f as i32)),
            Some(f) if f.fract() == 0.0 => {
                Err(BookError::field("_id", format!("`_id` must be between {} and {}", i32::MIN, i32::MAX)))
            }
            _ => Err(BookError::field("_id", format!("`_id` must be a whole number, not {n}"))),
        }
    }
}

impl std::fmt::Display for BookId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Text that must not be empty (a title, an author). Stored exactly as sent.
fn required_text(field: &str, value: Option<&Value>) -> Result<String, BookError> {
    match value {
        None | Some(Value::Null) => {
            Err(BookError::field(field, format!("`{field}` is missing; a book needs a {field}")))
        }
        Some(Value::String(s)) if s.trim().is_empty() => {
            Err(BookError::field(field, format!("`{field}` must not be empty")))
        }
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(BookError::field(field, format!("`{field}` must be a string, not {}", kind(other)))),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The fields a book has; anything else in a request is refused rather than
/// silently dropped, because PUT replaces the whole document and a client
/// that sends `isbn` would otherwise believe it was stored.
pub const BOOK_FIELDS: [&str; 4] = ["_id", "title", "author", "description"];

/// A complete, valid book. No other field is accepted (see `BOOK_FIELDS`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Book {
    /// Chosen by the client: an integer in the 32-bit signed range, written
    /// without a fraction or exponent.
    #[serde(rename = "_id")]
    #[schema(value_type = i32, minimum = -2147483648, maximum = 2147483647)]
    pub id: BookId,
    /// Must not be empty or only white space. The pattern: at least one
    /// character that is not white space as `str::trim` sees it (Unicode's
    /// White_Space, spelled out because regex engines disagree on `\s`;
    /// a unit test in `routes/openapi.rs` checks it against `char::is_whitespace`).
    #[schema(
        min_length = 1,
        pattern = "[^\t\n\u{b}\u{c}\r \u{85}\u{a0}\u{1680}\u{2000}-\u{200a}\u{2028}\u{2029}\u{202f}\u{205f}\u{3000}]"
    )]
    pub title: String,
    /// Must not be empty or only white space.
    #[schema(
        min_length = 1,
        pattern = "[^\t\n\u{b}\u{c}\r \u{85}\u{a0}\u{1680}\u{2000}-\u{200a}\u{2028}\u{2029}\u{202f}\u{205f}\u{3000}]"
    )]
    pub author: String,
    /// Optional in requests (missing or null is stored as ""), always present in responses.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub description: String,
}

impl Book {
    /// Parses and validates a request body.
    pub fn from_json(body: &[u8]) -> Result<Self, BookError> {
        let value: Value = serde_json::from_slice(body).map_err(|e| BookError::MalformedJson(e.to_string()))?;
        let Value::Object(map) = value else {
            return Err(BookError::NotAnObject);
        };
        Book::try_from(map)
    }
}

impl TryFrom<Map<String, Value>> for Book {
    type Error = BookError;

    fn try_from(map: Map<String, Value>) -> Result<Self, Self::Error> {
        let id = BookId::from_json(map.get("_id"))?;
        let title = required_text("title", map.get("title"))?;
        let author = required_text("author", map.get("author"))?;
        let description = match map.get("description") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(BookError::field(
                    "description",
                    format!("`description` must be a string, not {}", kind(other)),
                ))
            }
        };
        if let Some(unknown) = map.keys().find(|k| !BOOK_FIELDS.contains(&k.as_str())) {
            return Err(BookError::field(
                unknown,
                format!("unknown field `{unknown}`; a book has only _id, title, author and description"),
            ));
        }
        Ok(Book { id, title, author, description })
    }
}

/// What the list returns for each book.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BookSummary {
    #[serde(rename = "_id")]
    #[schema(value_type = i32, minimum = -2147483648, maximum = 2147483647)]
    pub id: BookId,
    pub title: String,
    pub author: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Book, BookError> {
        Book::from_json(json.as_bytes())
    }

    fn field_of(json: &str) -> String {
        parse(json).unwrap_err().field_name().expect("a field error").to_owned()
    }

    #[test]
    fn a_complete_book_parses() {
        let book = parse(r#"{"_id":1,"title":"T","author":"A","description":"D"}"#).unwrap();
        assert_eq!(book, Book { id: BookId(1), title: "T".into(), author: "A".into(), description: "D".into() });
    }

    #[test]
    fn description_is_optional() {
        assert_eq!(parse(r#"{"_id":1,"title":"T","author":"A"}"#).unwrap().description, "");
        assert_eq!(parse(r#"{"_id":1,"title":"T","author":"A","description":null}"#).unwrap().description, "");
    }

    #[test]
    fn empty_or_missing_title_and_author_are_refused_by_name() {
        assert_eq!(field_of(r#"{"_id":1,"author":"A"}"#), "title");
        assert_eq!(field_of(r#"{"_id":1,"title":"","author":"A"}"#), "title");
        assert_eq!(field_of(r#"{"_id":1,"title":"   ","author":"A"}"#), "title");
        assert_eq!(field_of(r#"{"_id":1,"title":"T"}"#), "author");
        assert_eq!(field_of(r#"{"_id":1,"title":"T","author":""}"#), "author");
        assert_eq!(field_of(r#"{"_id":1,"title":7,"author":"A"}"#), "title");
    }

    #[test]
    fn ids_must_be_whole_numbers_in_range() {
        for json in [
            r#"{"title":"T","author":"A"}"#,
            r#"{"_id":"1","title":"T","author":"A"}"#,
            r#"{"_id":1.5,"title":"T","author":"A"}"#,
            r#"{"_id":1e-3,"title":"T","author":"A"}"#,
            r#"{"_id":2147483648.0,"title":"T","author":"A"}"#,
            r#"{"_id":2147483648,"title":"T","author":"A"}"#,
            r#"{"_id":-2147483649,"title":"T","author":"A"}"#,
            r#"{"_id":18446744073709551615,"title":"T","author":"A"}"#,
            r#"{"_id":null,"title":"T","author":"A"}"#,
        ] {
            assert_eq!(field_of(json), "_id", "{json}");
        }
        assert_eq!(parse(r#"{"_id":-2147483648,"title":"T","author":"A"}"#).unwrap().id.get(), i32::MIN);
        assert_eq!(parse(r#"{"_id":2147483647,"title":"T","author":"A"}"#).unwrap().id.get(), i32::MAX);
        // Whole numbers in any spelling, as JSON Schema counts them.
        assert_eq!(parse(r#"{"_id":93969.0,"title":"T","author":"A"}"#).unwrap().id.get(), 93969);
        assert_eq!(parse(r#"{"_id":1e3,"title":"T","author":"A"}"#).unwrap().id.get(), 1000);
        assert_eq!(parse(r#"{"_id":-2147483648.0,"title":"T","author":"A"}"#).unwrap().id.get(), i32::MIN);
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        assert_eq!(field_of(r#"{"_id":1,"title":"T","author":"A","isbn":"x"}"#), "isbn");
    }

    #[test]
    fn malformed_json_and_non_objects_are_refused() {
        assert!(matches!(parse(r#"{"_id":1,"#), Err(BookError::MalformedJson(_))));
        assert!(matches!(parse("[1,2]"), Err(BookError::NotAnObject)));
        assert!(matches!(parse("\"book\""), Err(BookError::NotAnObject)));
    }

    #[test]
    fn text_in_any_language_is_kept_as_is() {
        let json = r#"{"_id":7,"title":"Война и мир 📚","author":"列夫·托尔斯泰","description":"ما شاء الله \u0000"}"#;
        let book = parse(json).unwrap();
        assert_eq!(book.title, "Война и мир 📚");
        assert_eq!(book.author, "列夫·托尔斯泰");
        assert_eq!(book.description, "ما شاء الله \u{0}");
    }

    #[test]
    fn path_ids_parse_or_name_the_problem() {
        assert_eq!(BookId::parse_str("_id", "42").unwrap().get(), 42);
        assert_eq!(BookId::parse_str("_id", "-3").unwrap().get(), -3);
        assert!(BookId::parse_str("_id", "4.2").unwrap_err().to_string().contains("integer"));
        assert!(BookId::parse_str("_id", "99999999999").unwrap_err().to_string().contains("between"));
    }
}
