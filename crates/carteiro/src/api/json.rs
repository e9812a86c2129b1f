//! JSON bodies with errors that name the field: a syntax error is a 400, a
//! value of the wrong shape a 422 naming its path, a body over the limit a 413.

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use carteiro_core::{FieldError, FieldErrors};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// How many bytes of body a route reads; set on a route with `Extension(BodyLimit(n))`.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

const DEFAULT_LIMIT: usize = 1024 * 1024;
/// A body over its limit is still read, and dropped, up to this many times the
/// limit: a client gets the 413 rather than a connection reset in mid-upload.
const DRAIN_FACTOR: usize = 8;

pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        parse(&read_body(req, state).await?).map(ApiJson)
    }
}

/// The whole body, or a 413 that states the limit.
pub async fn read_body(req: Request, state: &AppState) -> Result<Vec<u8>, ApiError> {
    let limit = req.extensions().get::<BodyLimit>().map_or(DEFAULT_LIMIT, |l| l.0);
    let mut body = req.into_body();
    let (mut bytes, mut seen) = (Vec::new(), 0usize);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_request", format!("cannot read the request body: {e}"))
        })?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        seen += data.len();
        if seen <= limit {
            bytes.extend_from_slice(data);
        } else if seen > limit * DRAIN_FACTOR {
            break;
        } else {
            bytes = Vec::new();
        }
    }
    if seen > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the request body is over {limit} bytes, more than carteiro reads for this request; a message may be at most {} bytes once built, attachments included",
                state.delivery.max_message_bytes
            ),
        ));
    }
    Ok(bytes)
}

/// Parses a JSON document, telling a syntax error (400) from a value of the wrong shape (422).
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let malformed = |e: &serde_json::Error| {
        ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", format!("the body is not valid JSON: {e}"))
    };
    // Every document of the API is an object (or null for an optional one): serde would also
    // take a struct written as an array.
    if let Some(b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f') = bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        return Err(ApiError::invalid(FieldError::new("", "the body must be a JSON object ({…})").into()));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let inner = e.inner();
        if inner.is_syntax() || inner.is_eof() || inner.is_io() {
            malformed(inner)
        } else {
            shape_error(&e.path().to_string(), inner)
        }
    })?;
    de.end().map_err(|e| malformed(&e))?;
    Ok(value)
}

fn shape_error(path: &str, inner: &serde_json::Error) -> ApiError {
    let text = inner.to_string();
    let text = text.split(" at line ").next().unwrap_or(&text);
    // The path already ends at an unknown field; a missing field is named only in the text.
    let path = if path == "." { "" } else { path };
    let field = match text.strip_prefix("missing field `").and_then(|r| r.split('`').next()) {
        Some(missing) if path.is_empty() => missing.to_owned(),
        Some(missing) => format!("{path}.{missing}"),
        None => path.to_owned(),
    };
    // A value of the wrong type is echoed by serde: never for a secret.
    if field.ends_with("password") {
        return ApiError::invalid(FieldErrors::from(FieldError::new(&field, format!("{field} must be text"))));
    }
    let message = if field.is_empty() { text.to_owned() } else { format!("{field}: {text}") };
    ApiError::invalid(FieldErrors::from(FieldError::new(field, message)))
}
