//! Path parameters with the API's JSON errors.

use axum::extract::{FromRequestParts, Path};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    /// Every parameter is text, so the one way to fail is a segment that is not
    /// UTF-8 (`%FF`): such a name cannot be any company's, key's or message's.
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("there is nothing at this path: {}", rejection.body_text()),
            )),
        }
    }
}
