//! JSON bodies with errors that name the field: a syntax error is a 400, a
//! value of the wrong shape a 422 naming its path, a body over the limit a 413.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use carteiro_core::{FieldError, FieldErrors};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "the request body is larger than carteiro accepts")
            } else {
                ApiError::new(rejection.status(), "bad_request", rejection.body_text())
            }
        })?;
        parse(&bytes).map(ApiJson)
    }
}

/// Parses a JSON document, telling a syntax error (400) from a value of the wrong shape (422).
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let malformed = |e: &serde_json::Error| ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", format!("the body is not valid JSON: {e}"));
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let inner = e.inner();
        if inner.is_syntax() || inner.is_eof() || inner.is_io() { malformed(inner) } else { shape_error(&e.path().to_string(), inner) }
    })?;
    de.end().map_err(|e| malformed(&e))?;
    Ok(value)
}

/// Deserializes one JSON value (a batch item), naming the field that has the wrong shape.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| shape_error(&e.path().to_string(), e.inner()))
}

fn shape_error(path: &str, inner: &serde_json::Error) -> ApiError {
    // serde reports an unknown field at the object holding it; name the field itself.
    let text = inner.to_string();
    let text = text.split(" at line ").next().unwrap_or(&text);
    let field = match text.strip_prefix("unknown field `").and_then(|r| r.split('`').next()) {
        Some(unknown) if path == "." || path.is_empty() => unknown.to_owned(),
        Some(unknown) => format!("{path}.{unknown}"),
        None if path == "." => String::new(),
        None => path.to_owned(),
    };
    let message = if field.is_empty() { text.to_owned() } else { format!("{field}: {text}") };
    ApiError::invalid(FieldErrors::from(FieldError::new(field, message)))
}
