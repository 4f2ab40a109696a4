//! Optional paging of the list: `?limit=N&after=ID` (keyset paging on `_id`,
//! stable while books are added or removed, unlike an offset).

use super::{BookError, BookId};

/// The most books one page may ask for.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// Which part of the list to return; the default is every book, as the
/// original did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Page {
    /// Only books whose `_id` is greater than this.
    pub after: Option<BookId>,
    /// At most this many books.
    pub limit: Option<u32>,
}

impl Page {
    /// Parses the raw query values; `None` means the parameter was absent.
    pub fn parse(limit: Option<&str>, after: Option<&str>) -> Result<Self, BookError> {
        let limit = limit
            .map(|raw| {
                raw.parse::<u32>().ok().filter(|n| (1..=MAX_PAGE_SIZE).contains(n)).ok_or_else(|| {
                    BookError::InvalidField {
                        field: "limit".to_owned(),
                        message: format!("`limit` must be an integer from 1 to {MAX_PAGE_SIZE}, not `{raw}`"),
                    }
                })
            })
            .transpose()?;
        let after = after.map(|raw| BookId::parse_str("after", raw)).transpose()?;
        Ok(Page { after, limit })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_parameters_means_every_book() {
        assert_eq!(Page::parse(None, None).unwrap(), Page::default());
    }

    #[test]
    fn limit_and_after_parse() {
        assert_eq!(
            Page::parse(Some("10"), Some("-4")).unwrap(),
            Page { after: Some(BookId::new(-4)), limit: Some(10) }
        );
    }

    #[test]
    fn bad_values_name_their_parameter() {
        for (limit, after, field) in [
            (Some("0"), None, "limit"),
            (Some("1001"), None, "limit"),
            (Some("ten"), None, "limit"),
            (None, Some("x"), "after"),
            (None, Some("1.5"), "after"),
        ] {
            assert_eq!(Page::parse(limit, after).unwrap_err().field_name(), Some(field));
        }
    }
}
