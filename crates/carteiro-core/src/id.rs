//! Identifiers that travel in URLs and rows.

use std::fmt;

use crate::error::FieldError;

/// A company's stable key: 2 to 63 characters of `a-z`, `0-9` and `-`,
/// starting with a letter or digit (`acme`, `acme-brasil`). Used in URLs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CompanySlug(String);

impl CompanySlug {
    pub fn parse(field: &str, input: &str) -> Result<Self, FieldError> {
        let ok = (2..=63).contains(&input.len())
            && input.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && input.as_bytes()[0] != b'-';
        if ok {
            Ok(Self(input.to_owned()))
        } else {
            Err(FieldError::new(
                field,
                format!(
                    "{field} must be 2 to 63 characters of a-z, 0-9 and '-', starting with a letter or digit, got {input:?}"
                ),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CompanySlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A person inside a company, as the calling platform names them (`actor.id`):
/// 1 to 128 printable characters, no spaces or slashes (it appears in URLs).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserRef(String);

impl UserRef {
    pub fn parse(field: &str, input: &str) -> Result<Self, FieldError> {
        let ok = (1..=128).contains(&input.chars().count())
            && input.chars().all(|c| !c.is_control() && !c.is_whitespace() && c != '/' && c != '?' && c != '#');
        if ok {
            Ok(Self(input.to_owned()))
        } else {
            Err(FieldError::new(
                field,
                format!("{field} must be 1 to 128 characters without spaces, '/', '?' or '#', got {input:?}"),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert!(CompanySlug::parse("slug", "acme").is_ok());
        assert!(CompanySlug::parse("slug", "acme-brasil-2").is_ok());
        for bad in ["a", "-acme", "Acme", "acme_br", "acme br", ""] {
            assert_eq!(CompanySlug::parse("slug", bad).unwrap_err().field, "slug", "{bad}");
        }
    }

    #[test]
    fn user_refs() {
        assert!(UserRef::parse("actor.id", "42").is_ok());
        assert!(UserRef::parse("actor.id", "ana.souza@acme").is_ok());
        for bad in ["", "a b", "a/b", "a\nb"] {
            assert!(UserRef::parse("actor.id", bad).is_err(), "{bad:?}");
        }
    }
}
