//! API errors: `{"error": {"code", "message", "field"}}` with the right
//! status. A 500 shows a fixed sentence; the whole chain goes to the log.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use carteiro_core::FieldErrors;
use serde::Serialize;
use utoipa::ToSchema;

use crate::service::ServiceError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    /// Every invalid field, when there are several.
    pub details: FieldErrors,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), field: None, details: FieldErrors::default() }
    }

    pub fn invalid(errors: FieldErrors) -> Self {
        let first =
            errors.first().cloned().unwrap_or_else(|| carteiro_core::FieldError::new("", "the request is not valid"));
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid",
            message: first.message,
            field: Some(first.field).filter(|f| !f.is_empty()),
            details: errors,
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// The JSON body, also used for each failed item of a batch.
    pub fn body(&self) -> ErrorDocument {
        let details = if self.details.0.len() > 1 {
            self.details.0.iter().map(|e| FieldMessage { field: e.field.clone(), message: e.message.clone() }).collect()
        } else {
            Vec::new()
        };
        ErrorDocument {
            error: ErrorContent { code: self.code, message: self.message.clone(), field: self.field.clone(), details },
        }
    }
}

/// Every error the API answers: `{"error": {"code", "message", "field", "details"?}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDocument {
    pub error: ErrorContent,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorContent {
    /// A fixed word for programs: `invalid`, `malformed_json`, `too_large`, `unauthorized`, `forbidden`,
    /// `not_found`, `conflict`, `throttled`, `unavailable`…
    pub code: &'static str,
    /// A sentence a person understands.
    pub message: String,
    /// The field at fault, as a path in the document (`connection.port`, `to[2]`), when there is one.
    pub field: Option<String>,
    /// Every invalid field, when there are several.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<FieldMessage>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FieldMessage {
    pub field: String,
    pub message: String,
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::Invalid(errors) => Self::invalid(errors),
            ServiceError::Forbidden(errors) => {
                Self { status: StatusCode::FORBIDDEN, code: "forbidden", ..Self::invalid(errors) }
            }
            ServiceError::NotFound(message) => Self::new(StatusCode::NOT_FOUND, "not_found", message),
            ServiceError::Conflict(message) => Self::new(StatusCode::CONFLICT, "conflict", message),
            ServiceError::Unprocessable { code, field, message } => {
                Self { field, ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message) }
            }
            ServiceError::BadCredentials => Self::unauthorized("the user name or password is wrong"),
            e @ ServiceError::Throttled { .. } => Self::new(StatusCode::TOO_MANY_REQUESTS, "throttled", e.to_string()),
            ServiceError::Unavailable(why) => {
                tracing::error!(error = %why, "the database is unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "carteiro cannot reach its database right now; nothing was changed. Try again shortly.",
                )
            }
            ServiceError::Full(why) => {
                tracing::error!(error = %why, "the database's disk is full");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_full",
                    "carteiro's disk is full: it accepts nothing new until space is freed, and keeps what it accepted before; nothing was changed. Try again later.",
                )
            }
            ServiceError::Internal(e) if e.downcast_ref::<crate::crypto::WrongMasterKey>().is_some() => {
                tracing::error!(error = %e, "stored secrets cannot be opened");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "master_key", crate::crypto::WrongMasterKey.to_string())
            }
            ServiceError::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "internal error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "something went wrong inside carteiro; the error is in its log",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
