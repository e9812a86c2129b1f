//! Query strings with the API's JSON errors naming the parameter.

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use carteiro_core::{FieldError, FieldErrors};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => {
                let text = rejection.body_text();
                let detail = text.strip_prefix("Failed to deserialize query string: ").unwrap_or(&text).to_owned();
                let field = detail
                    .strip_prefix("unknown field `")
                    .and_then(|r| r.split('`').next())
                    .unwrap_or("query")
                    .to_owned();
                Err(ApiError::invalid(FieldErrors::from(FieldError::new(
                    field,
                    format!("the query string is not valid: {detail}"),
                ))))
            }
        }
    }
}
