//! Administration: log in, settings of the three levels, companies, API keys,
//! company administrators, Test connection, the audit log.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use carteiro_core::id::UserRef;
use carteiro_core::settings::{Scope, SettingsDoc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::auth::AdminAuth;
use super::json::ApiJson;
use super::messages::{ListQuery, filter};
use super::openapi::{BadRequest, Forbidden, Invalid, NotFound, TooLarge, Unauthorized, Unavailable};
use super::path::ApiPath;
use super::query::ApiQuery;
use crate::error::{ApiError, ApiResult, ErrorDocument};
use crate::service::dkim::{DkimKeyIn, DkimKeyOut};
use crate::service::messages::MessageOut;
use crate::service::tenants::{ApiKeyIn, ApiKeyOut, CompanyIn, CompanyOut, NewApiKey};
use crate::service::test_connection::{TestConnectionIn, TestConnectionOut};
use crate::service::webhooks::{DeliveryOut, NewWebhook, WebhookIn, WebhookOut};
use crate::service::{Actor, auth, dkim, messages, settings, tenants, test_connection, webhooks};
use crate::state::{AppState, rfc3339};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginIn {
    username: String,
    #[schema(format = Password)]
    password: String,
}

#[derive(Serialize, ToSchema)]
pub struct LoginOut {
    /// The bearer token of the administrator's later calls.
    token: String,
}

/// Log in as an administrator
///
/// Wrong passwords are throttled per user name: after five, each try waits longer (429).
#[utoipa::path(
    post, path = "/login", tag = "administration",
    request_body = LoginIn,
    responses(
        (status = 200, description = "Logged in", body = LoginOut),
        BadRequest,
        (status = 401, description = "The user name or password is wrong", body = ErrorDocument),
        TooLarge, Invalid,
        (status = 429, description = "Too many failed logins for this user name lately", body = ErrorDocument),
        Unavailable,
    ),
)]
pub async fn login(State(state): State<AppState>, ApiJson(input): ApiJson<LoginIn>) -> ApiResult<Json<LoginOut>> {
    let token = auth::login(&state, &input.username, &input.password).await?;
    Ok(Json(LoginOut { token }))
}

fn actor(admin: &AdminAuth) -> Actor {
    Actor::Admin(admin.0.clone())
}

fn user_ref(user_id: &str) -> ApiResult<UserRef> {
    UserRef::parse("user_id", user_id).map_err(|e| ApiError::invalid(e.into()))
}

/// The global level of the settings (secrets redacted)
#[utoipa::path(
    get, path = "/settings/global", tag = "administration",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The global level", body = SettingsDoc),
        Unauthorized, Forbidden, Unavailable,
    ),
)]
pub async fn get_global(State(state): State<AppState>, admin: AdminAuth) -> ApiResult<Json<SettingsDoc>> {
    admin.require_platform()?;
    Ok(Json(settings::read_level(&state, &Scope::Global).await?))
}

/// Replace the global level of the settings
///
/// A blank or absent secret keeps the stored one while the server and user name stay the same.
#[utoipa::path(
    put, path = "/settings/global", tag = "administration",
    security(("admin_token" = [])),
    request_body = SettingsDoc,
    responses(
        (status = 200, description = "The level as stored (secrets redacted)", body = SettingsDoc),
        BadRequest, Unauthorized, Forbidden, TooLarge, Invalid, Unavailable,
    ),
)]
pub async fn put_global(
    State(state): State<AppState>,
    admin: AdminAuth,
    ApiJson(doc): ApiJson<SettingsDoc>,
) -> ApiResult<Json<SettingsDoc>> {
    admin.require_platform()?;
    Ok(Json(settings::save_level(&state, &actor(&admin), &Scope::Global, &doc).await?))
}

/// The companies this administrator manages
#[utoipa::path(
    get, path = "/companies", tag = "administration",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The companies", body = Vec<CompanyOut>),
        Unauthorized, Unavailable,
    ),
)]
pub async fn list_companies(State(state): State<AppState>, admin: AdminAuth) -> ApiResult<Json<Vec<CompanyOut>>> {
    let all = tenants::companies(&state).await?;
    Ok(Json(all.into_iter().filter(|c| admin.require_company(&c.slug).is_ok()).collect()))
}

/// Create a company
#[utoipa::path(
    post, path = "/companies", tag = "administration",
    security(("admin_token" = [])),
    request_body = CompanyIn,
    responses(
        (status = 201, description = "The company created", body = CompanyOut),
        BadRequest, Unauthorized, Forbidden,
        (status = 409, description = "A company with this slug already exists", body = ErrorDocument),
        TooLarge, Invalid, Unavailable,
    ),
)]
pub async fn create_company(
    State(state): State<AppState>,
    admin: AdminAuth,
    ApiJson(input): ApiJson<CompanyIn>,
) -> ApiResult<(StatusCode, Json<CompanyOut>)> {
    admin.require_platform()?;
    Ok((StatusCode::CREATED, Json(tenants::create_company(&state, &actor(&admin), &input).await?)))
}

/// A company
#[utoipa::path(
    get, path = "/companies/{slug}", tag = "administration",
    security(("admin_token" = [])),
    params(("slug" = String, Path, description = "The company's slug")),
    responses(
        (status = 200, description = "The company", body = CompanyOut),
        Unauthorized, NotFound, Unavailable,
    ),
)]
pub async fn get_company(
    State(state): State<AppState>,
    admin: AdminAuth,
    ApiPath(slug): ApiPath<String>,
) -> ApiResult<Json<CompanyOut>> {
    let company = admin.require_company(&slug)?;
    Ok(Json(tenants::company_out(&state, &company).await?))
}

/// A company's level of the settings (secrets redacted)
#[utoipa::path(
    get, path = "/companies/{slug}/settings", tag = "administration",
    security(("admin_token" = [])),
    params(("slug" = String, Path, description = "The company's slug")),
    responses(
        (status = 200, description = "The company level", body = SettingsDoc),
        Unauthorized, NotFound, Unavailable,
    ),
)]
pub async fn get_company_settings(
    State(state): State<AppState>,
    admin: AdminAuth,
    ApiPath(slug): ApiPath<String>,
) -> ApiResult<Json<SettingsDoc>> {
    let company = admin.require_company(&slug)?;
    Ok(Json(settings::read_level(&state, &Scope::Company(company)).await?))
}

/// Replace a company's level of the settings
///
/// A company administrator may not choose what acts on carteiro's host (sendmail, pickup, a local server): 403.
#[utoipa::path(
    put, path = "/companies/{slug}/settings", tag = "administration",
    security(("admin_token" = [])),
    params(("slug" = String, Path, description = "The company's slug")),
    request_body = SettingsDoc,
    responses(
        (status = 200, description = "The level as stored (secrets redacted)", body = SettingsDoc),
        BadRequest, Unauthorized, Forbidden, NotFound, TooLarge, Invalid, Unavailable,
    ),
)]
pub async fn put_company_settings(
    State(state): State<AppState>,
    admin: AdminAuth,
    ApiPath(slug): ApiPath<String>,
    ApiJson(doc): ApiJson<SettingsDoc>,
) -> ApiResult<Json<SettingsDoc>> {
    let company = admin.require_company(&slug)?;
    Ok(Json(settings::save_level(&state, &actor(&admin), &Scope::Company(company), &doc).await?))
}

/// A user's level of the settings (secrets redacted)
#[utoipa::path(
    get, path = "/companies/{slug}/users/{user_id}/settings", tag = "administration",
    security(("admin_token" = [])),
    params(
        ("slug" = String, Path, description = "The company's slug"),
        ("user_id" = String, Path, description = "The user's id on the platform"),
    ),
    responses(
        (status = 200, description = "The user level", body = SettingsDoc),
        Unauthorized, NotFound, Invalid, Unavailable,
    ),
)]
pub async fn get_user_settings(
    State(state): State<AppState>,
    admin: AdminAuth,
    ApiPath((slug, user_id)): ApiPath<(String, String)>,
) -> ApiResult<Json<SettingsDoc>> {
    let company = admin.require_company(&slug)?;
    Ok(Json(settings::read_level(&state, &Scope::User(company, user_ref(&user_id)?)).await?))
}

/// Replace a user's level of the settings
#[utoipa::path(
    put, path = "/companies/{slug}/users/{user_id}/settings", tag = "administration",
    security(("admin_token" = [])),
    params(
        ("slug" = String, Path, description = "The company's slug"),
        ("user_id" = String, Path, description = "The user's id on the platform"),
    ),
    request_body = SettingsDoc,
    responses(
        (status = 200, description = "The level as stored (secrets redacted)", body = SettingsDoc),
        BadRequest, Unauthorized, Forbidden, NotFound, TooLarge, Invalid, Unavailable,
    ),
)]
pub async fn put_user_settings(
    State(state): State<AppState>,
    admin: AdminAuth,
    ApiPath((slug, user_id)): ApiPath<(String, String)>,
    ApiJson(doc): ApiJson<SettingsDoc>,
) -> ApiResult<Json<SettingsDoc>> {
    let company = admin.require_company(&slug)?;
    let scope = Scope::User(company, user_ref(&user_id)?);
    Ok(Json(settings::save_level(&state, &actor(&admin), &scope, &doc).await?))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EffectiveQuery {
    /// A user's id on the platform: the settings in force for that user.
    user: Option<String>,
}

/// The settings in force for a company or one of its users
///
/// Each value with its `source`: `global`, `company`, `user` or `default`; a secret shows only whether it is set.
#[utoipa::path(
    get, path = "/companies/{slug}/effective-settings", tag = "administration",
    security(("admin_token" = [])),
    params(("slug" = String, Path, description = "The company's slug"), EffectiveQuery),
    responses(
        (
            status = 200,
            description = "`company`, `user`, `connection` (or null), `policy`: each value `{\"value\", \"source\"}`",
            body = Value,
        ),
        Unauthorized, NotFound, Invalid, Unavailable,
    ),
)]
pub async fn effective_settings(
    State(state): State<AppState>,
    admin: AdminAuth,
    ApiPath(slug): ApiPath<String>,
    ApiQuery(query): ApiQuery<EffectiveQuery>,
) -> ApiResult<Json<Value>> {
    let company = admin.require_company(&slug)?;
    let user = query.user.as_deref().map(user_ref).transpose()?;
    Ok(Json(settings::explain(&state, &company, user.as_ref()).await?))
}

/// A company's API keys (never the keys themselves)
#[utoipa::path(
    get, path = "/companies/{slug}/api-keys", tag = "administration",
    security(("admin_token" = [])),
    params(("slug" = String, Path, description = "The company's slug")),
    responses(
        (status = 200, description = "The keys, revoked ones included", body = Vec<ApiKeyOut>),
        Unauthorized, NotFound, Unavailable,
    ),
)]
pub async fn list_api_keys(
    State(state): State<AppState>,
    admin: AdminAuth,
    ApiPath(slug): ApiPath<String>,
) -> ApiResult<Json<Vec<ApiKeyOut>>> {
    let company = admin.require_company(&slug)?;
    Ok(Json(tenants::api_keys(&state, &company).await?))
}

/// Create an API key for a company
///
/// The key is in the answer, this once: carteiro keeps only its hash. The body is optional.
#[utoipa::path(
    post, path = "/companies/{slug}/api-keys", tag = "administration",
    security(("admin_token" = [])),
    params(("slug" = String, Path, description = "The company's slug")),
    request_body(content = Option<ApiKeyIn>, description = "The key's name (`default` when left out)"),
    responses(
        (status = 201, description = "The key created, with `key`", body = NewApiKey),
        BadRequest, Unauthorized, NotFound, TooLarge, Invalid, Unavailable,
    ),
)]
pub async fn create_api_key(
    State(state): State<AppState>,
    admin: AdminAuth,
    ApiPath(slug): ApiPath<String>,
    request: axum::extract::Request,
) -> ApiResult<(StatusCode, Json<NewApiKey>)> {
    let body = super::json::read_body(request, &state).await?;
    let company = admin.require_company(&slug)?;
    // The body is optional (absent, or null): a key needs no more than its company.
    let input: Option<ApiKeyIn> =
        if body.iter().all(u8::is_ascii_whitespace) { None } else { super::json::parse(&body)? };
    let input = input.unwrap_or_default();
    Ok((StatusCode::CREATED, Json(tenants::create_api_key(&state, &actor(&admin), &company, &input).await?)))
}

/// Revoke an API key
#[utoipa::path(
    delete, path = "/companies/{slug}/api-keys/{id}", tag = "administration",
    security(("admin_token" = [])),
    params(
        ("slug" = String, Path, description = "The company's slug"),
        ("id" = String, Path, description = "The key's id"),
    ),
    responses(
        (status = 204, description = "Revoked"),
        Unauthorized, NotFound, Unavailable,
    ),
)]
pub async fn revoke_api_key(
    State(state): State<AppState>,
    admin: AdminAuth,
    ApiPath((slug, id)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    let company = admin.require_company(&slug)?;
    tenants::revoke_api_key(&state, &actor(&admin), &company, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompanyAdminIn {
    username: String,
    #[schema(format = Password)]
    password: String,
}

#[derive(Serialize, ToSchema)]
pub struct CompanyAdminOut {
    id: String,
    username: String,
    company: String,
}

/// Create an administrator of a company
#[utoipa::path(
    post, path = "/companies/{slug}/admins", tag = "administration",
    security(("admin_token" = [])),
    params(("slug" = String, Path, description = "The company's slug")),
    request_body = CompanyAdminIn,
    responses(
        (status = 201, description = "The administrator created", body = CompanyAdminOut),
        BadRequest, Unauthorized, Forbidden, NotFound,
        (status = 409, description = "The user name is taken", body = ErrorDocument),
        TooLarge, Invalid, Unavailable,
    ),
)]
pub async fn create_company_admin(
    State(state): State<AppState>,
    admin: AdminAuth,
    ApiPath(slug): ApiPath<String>,
    ApiJson(input): ApiJson<CompanyAdminIn>,
) -> ApiResult<(StatusCode, Json<CompanyAdminOut>)> {
    admin.require_platform()?;
    let company = admin.require_company(&slug)?;
    let created = auth::create_admin(&state, &actor(&admin), &input.username, &input.password, Some(&company)).await?;
    let company = company.as_str().to_owned();
    Ok((StatusCode::CREATED, Json(CompanyAdminOut { id: created.id, username: created.username, company })))
}

/// A company's DKIM keys, each with the DNS record to publish
#[utoipa::path(
    get, path = "/companies/{slug}/dkim-keys", tag = "administration",
    security(("admin_token" = [])),
    params(("slug" = String, Path, description = "The company's slug")),
    responses(
        (status = 200, description = "The keys", body = Vec<DkimKeyOut>),
        Unauthorized, NotFound, Unavailable,
    ),
)]
pub async fn list_dkim_keys(
    State(state): State<AppState>,
    admin: AdminAuth,
    ApiPath(slug): ApiPath<String>,
) -> ApiResult<Json<Vec<DkimKeyOut>>> {
    let company = admin.require_company(&slug)?;
    Ok(Json(dkim::list(&state, &company).await?))
}

/// Make or import a DKIM key for a domain of a company
#[utoipa::path(
    post, path = "/companies/{slug}/dkim-keys", tag = "administration",
    security(("admin_token" = [])),
    params(("slug" = String, Path, description = "The company's slug")),
    request_body = DkimKeyIn,
    responses(
        (status = 201, description = "The key, with the DNS record to publish", body = DkimKeyOut),
        BadRequest, Unauthorized, NotFound,
        (status = 409, description = "The company already has a key with this selector", body = ErrorDocument),
        TooLarge, Invalid, Unavailable,
    ),
)]
pub async fn create_dkim_key(
    State(state): State<AppState>,
    admin: AdminAuth,
    ApiPath(slug): ApiPath<String>,
    ApiJson(input): ApiJson<DkimKeyIn>,
) -> ApiResult<(StatusCode, Json<DkimKeyOut>)> {
    let company = admin.require_company(&slug)?;
    Ok((StatusCode::CREATED, Json(dkim::create(&state, &actor(&admin), &company, &input).await?)))
}

/// Remove a DKIM key
#[utoipa::path(
    delete, path = "/companies/{slug}/dkim-keys/{selector}", tag = "administration",
    security(("admin_token" = [])),
    params(
        ("slug" = String, Path, description = "The company's slug"),
        ("selector" = String, Path, description = "The key's selector"),
    ),
    responses(
        (status = 204, description = "Removed"),
        Unauthorized, NotFound, Unavailable,
    ),
)]
pub async fn remove_dkim_key(
    State(state): State<AppState>,
    admin: AdminAuth,
    ApiPath((slug, selector)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    let company = admin.require_company(&slug)?;
    dkim::remove(&state, &actor(&admin), &company, &selector).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A company's webhook endpoints
#[utoipa::path(
    get, path = "/companies/{slug}/webhooks", tag = "administration",
    security(("admin_token" = [])),
    params(("slug" = String, Path, description = "The company's slug")),
    responses(
        (status = 200, description = "The endpoints", body = Vec<WebhookOut>),
        Unauthorized, NotFound, Unavailable,
    ),
)]
pub async fn list_webhooks(
    State(state): State<AppState>,
    admin: AdminAuth,
    ApiPath(slug): ApiPath<String>,
) -> ApiResult<Json<Vec<WebhookOut>>> {
    let company = admin.require_company(&slug)?;
    Ok(Json(webhooks::list(&state, &company).await?))
}

/// Add a webhook endpoint to a company
///
/// The signing secret is in the answer, this once.
#[utoipa::path(
    post, path = "/companies/{slug}/webhooks", tag = "administration",
    security(("admin_token" = [])),
    params(("slug" = String, Path, description = "The company's slug")),
    request_body = WebhookIn,
    responses(
        (status = 201, description = "The endpoint, with `secret`", body = NewWebhook),
        BadRequest, Unauthorized, Forbidden, NotFound, TooLarge, Invalid, Unavailable,
    ),
)]
pub async fn create_webhook(
    State(state): State<AppState>,
    admin: AdminAuth,
    ApiPath(slug): ApiPath<String>,
    ApiJson(input): ApiJson<WebhookIn>,
) -> ApiResult<(StatusCode, Json<NewWebhook>)> {
    let company = admin.require_company(&slug)?;
    Ok((StatusCode::CREATED, Json(webhooks::create(&state, &actor(&admin), &company, &input).await?)))
}

/// Remove a webhook endpoint
#[utoipa::path(
    delete, path = "/companies/{slug}/webhooks/{id}", tag = "administration",
    security(("admin_token" = [])),
    params(
        ("slug" = String, Path, description = "The company's slug"),
        ("id" = String, Path, description = "The endpoint's id"),
    ),
    responses(
        (status = 204, description = "Removed"),
        Unauthorized, NotFound, Unavailable,
    ),
)]
pub async fn delete_webhook(
    State(state): State<AppState>,
    admin: AdminAuth,
    ApiPath((slug, id)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    let company = admin.require_company(&slug)?;
    webhooks::delete(&state, &actor(&admin), &company, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// How many, newest first.
    limit: Option<i64>,
}

/// The deliveries of a webhook endpoint, newest first
#[utoipa::path(
    get, path = "/companies/{slug}/webhooks/{id}/deliveries", tag = "administration",
    security(("admin_token" = [])),
    params(
        ("slug" = String, Path, description = "The company's slug"),
        ("id" = String, Path, description = "The endpoint's id"),
        DeliveriesQuery,
    ),
    responses(
        (status = 200, description = "The deliveries", body = Vec<DeliveryOut>),
        Unauthorized, NotFound, Invalid, Unavailable,
    ),
)]
pub async fn webhook_deliveries(
    State(state): State<AppState>,
    admin: AdminAuth,
    ApiPath((slug, id)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<DeliveriesQuery>,
) -> ApiResult<Json<Vec<DeliveryOut>>> {
    let company = admin.require_company(&slug)?;
    Ok(Json(webhooks::deliveries(&state, &company, &id, query.limit).await?))
}

/// A company's messages, newest first
#[utoipa::path(
    get, path = "/companies/{slug}/messages", tag = "administration",
    security(("admin_token" = [])),
    params(("slug" = String, Path, description = "The company's slug"), ListQuery),
    responses(
        (status = 200, description = "The messages", body = Vec<MessageOut>),
        Unauthorized, NotFound, Invalid, Unavailable,
    ),
)]
pub async fn list_company_messages(
    State(state): State<AppState>,
    admin: AdminAuth,
    ApiPath(slug): ApiPath<String>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<Vec<MessageOut>>> {
    let company = admin.require_company(&slug)?;
    Ok(Json(messages::list(&state, &company, &filter(&query)?).await?))
}

/// A message of a company, with its recipients and attempts
#[utoipa::path(
    get, path = "/companies/{slug}/messages/{id}", tag = "administration",
    security(("admin_token" = [])),
    params(
        ("slug" = String, Path, description = "The company's slug"),
        ("id" = String, Path, description = "The message's id"),
    ),
    responses(
        (status = 200, description = "The message", body = MessageOut),
        Unauthorized, NotFound, Unavailable,
    ),
)]
pub async fn get_company_message(
    State(state): State<AppState>,
    admin: AdminAuth,
    ApiPath((slug, id)): ApiPath<(String, String)>,
) -> ApiResult<Json<MessageOut>> {
    let company = admin.require_company(&slug)?;
    Ok(Json(messages::message(&state, &company, &id).await?))
}

/// A message of a company as it was built (RFC 5322)
#[utoipa::path(
    get, path = "/companies/{slug}/messages/{id}/raw", tag = "administration",
    security(("admin_token" = [])),
    params(
        ("slug" = String, Path, description = "The company's slug"),
        ("id" = String, Path, description = "The message's id"),
    ),
    responses(
        (status = 200, description = "The message's bytes", body = String, content_type = "message/rfc822"),
        Unauthorized, NotFound, Unavailable,
    ),
)]
pub async fn get_company_message_raw(
    State(state): State<AppState>,
    admin: AdminAuth,
    ApiPath((slug, id)): ApiPath<(String, String)>,
) -> ApiResult<impl axum::response::IntoResponse> {
    let company = admin.require_company(&slug)?;
    Ok(super::messages::rfc822(messages::raw(&state, &company, &id).await?))
}

/// Test connection: connect, greet, secure, log in and send a test message with the settings of a level
///
/// Unsaved settings may be given; a failed step is an answer (200, `ok` false, with a `hint`), not an error.
#[utoipa::path(
    post, path = "/test-connection", tag = "administration",
    security(("admin_token" = [])),
    request_body = TestConnectionIn,
    responses(
        (status = 200, description = "Each step and its outcome", body = TestConnectionOut),
        BadRequest, Unauthorized, Forbidden, NotFound, TooLarge, Invalid, Unavailable,
    ),
)]
pub async fn test_connection(
    State(state): State<AppState>,
    admin: AdminAuth,
    ApiJson(input): ApiJson<TestConnectionIn>,
) -> ApiResult<Json<TestConnectionOut>> {
    let target = input.target().map_err(ApiError::invalid)?;
    match &target.company {
        Some(company) => {
            admin.require_company(company.as_str())?;
        }
        None => admin.require_platform()?,
    }
    Ok(Json(test_connection::run(&state, &actor(&admin), &target, input.settings.as_ref()).await?))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// One company's entries; all of them (platform administrators only) when left out.
    company: Option<String>,
    /// How many, newest first (1 to 1000, default 100).
    limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditOut {
    entries: Vec<AuditEntry>,
}

/// Who did what, when; the names of the changed fields, never their values.
#[derive(Serialize, ToSchema)]
pub struct AuditEntry {
    at: String,
    actor: String,
    action: String,
    company: Option<String>,
    target: String,
    fields: Vec<String>,
}

/// The audit log, newest first
#[utoipa::path(
    get, path = "/audit", tag = "administration",
    security(("admin_token" = [])),
    params(AuditQuery),
    responses(
        (status = 200, description = "The entries", body = AuditOut),
        Unauthorized, Forbidden, NotFound, Invalid, Unavailable,
    ),
)]
pub async fn audit_log(
    State(state): State<AppState>,
    admin: AdminAuth,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> ApiResult<Json<AuditOut>> {
    let company = match &query.company {
        Some(c) => Some(admin.require_company(c)?),
        None => {
            admin.require_platform()?;
            None
        }
    };
    let rows = state
        .store
        .audit_log(company.as_ref(), query.limit.unwrap_or(100).clamp(1, 1000))
        .await
        .map_err(crate::service::ServiceError::from)?;
    let entries = rows
        .into_iter()
        .map(|r| AuditEntry {
            at: rfc3339(r.at),
            actor: r.actor,
            action: r.action,
            company: r.company,
            target: r.target,
            fields: r.fields,
        })
        .collect();
    Ok(Json(AuditOut { entries }))
}
