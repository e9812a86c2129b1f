//! Validation errors that name the field and the rule.

use std::fmt;

/// One invalid field: `field` is the path in the submitted document
/// (`connection.timeout_s`, `to[2]`), `message` a sentence a person
/// understands (`connection.timeout_s must be between 10 and 180, got 5`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FieldError {}

/// Every invalid field of one document, in document order (a form shows them all).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldErrors(pub Vec<FieldError>);

impl FieldErrors {
    pub fn push(&mut self, error: FieldError) {
        self.0.push(error);
    }

    /// Keeps the value when valid, records the error otherwise.
    pub fn check<T>(&mut self, result: Result<T, FieldError>) -> Option<T> {
        result.map_err(|e| self.push(e)).ok()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn first(&self) -> Option<&FieldError> {
        self.0.first()
    }

    pub fn into_result<T>(self, value: impl FnOnce() -> T) -> Result<T, FieldErrors> {
        if self.is_empty() { Ok(value()) } else { Err(self) }
    }
}

impl From<FieldError> for FieldErrors {
    fn from(error: FieldError) -> Self {
        Self(vec![error])
    }
}

impl fmt::Display for FieldErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sentences: Vec<&str> = self.0.iter().map(|e| e.message.as_str()).collect();
        f.write_str(&sentences.join("; "))
    }
}

impl std::error::Error for FieldErrors {}

/// Refuses CR, LF and other control characters in a value that becomes part of a header.
pub fn check_header_text(field: &str, value: &str) -> Result<(), FieldError> {
    if value.contains(['\r', '\n']) {
        return Err(FieldError::new(field, format!("{field} must not contain CR or LF")));
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(FieldError::new(field, format!("{field} must not contain control characters")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_text_refuses_line_breaks() {
        assert!(check_header_text("subject", "Olá, mundo").is_ok());
        assert!(check_header_text("subject", "a\r\nBcc: x@y").unwrap_err().message.contains("CR or LF"));
        assert!(check_header_text("subject", "a\u{0}b").is_err());
    }
}
