//! The extractors that ARE the authorization: a handler that takes
//! `AdminAuth` runs only for a logged-in administrator, one that takes
//! `CompanyKey` only for a valid API key, and then only within its company.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use carteiro_core::id::CompanySlug;

use crate::error::ApiError;
use crate::service::ServiceError;
use crate::service::auth::{self, Admin};
use crate::state::AppState;

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// A logged-in administrator (`Authorization: Bearer <token from /api/v1/login>`).
pub struct AdminAuth(pub Admin);

impl FromRequestParts<AppState> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts).ok_or_else(|| {
            ApiError::unauthorized("an administrator token is required: get one from POST /api/v1/login")
        })?;
        auth::admin_by_token(state, token)
            .await?
            .map(AdminAuth)
            .ok_or_else(|| ApiError::unauthorized("the token is unknown or has expired: log in again"))
    }
}

impl AdminAuth {
    pub fn require_platform(&self) -> Result<(), ApiError> {
        if self.0.is_platform() {
            Ok(())
        } else {
            Err(ApiError::forbidden("only a platform administrator can do this"))
        }
    }

    /// A company administrator sees only their own company: another one answers
    /// 404, as if it did not exist.
    pub fn require_company(&self, company: &str) -> Result<CompanySlug, ApiError> {
        let slug = CompanySlug::parse("company", company).map_err(|_| not_found(company))?;
        if self.0.manages(&slug) { Ok(slug) } else { Err(not_found(company)) }
    }
}

fn not_found(company: &str) -> ApiError {
    ServiceError::NotFound(format!("there is no company {company}")).into()
}

/// A company's API key (`Authorization: Bearer ck_…`): the company it belongs to.
pub struct CompanyKey(pub CompanySlug);

impl FromRequestParts<AppState> for CompanyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = bearer(parts)
            .ok_or_else(|| ApiError::unauthorized("a company API key is required: Authorization: Bearer ck_…"))?;
        auth::company_by_api_key(state, key)
            .await?
            .map(CompanyKey)
            .ok_or_else(|| ApiError::unauthorized("the API key is unknown or was revoked"))
    }
}
