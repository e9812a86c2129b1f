//! Administration: log in, settings of the three levels, companies, API keys,
//! company administrators, Test connection, the audit log.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use carteiro_core::id::UserRef;
use carteiro_core::settings::{Scope, SettingsDoc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::AdminAuth;
use super::json::ApiJson;
use super::messages::{ListQuery, filter};
use super::query::ApiQuery;
use crate::error::{ApiError, ApiResult};
use crate::service::dkim::{DkimKeyIn, DkimKeyOut};
use crate::service::messages::MessageOut;
use crate::service::tenants::{ApiKeyIn, ApiKeyOut, CompanyIn, CompanyOut, NewApiKey};
use crate::service::test_connection::{TestConnectionIn, TestConnectionOut};
use crate::service::webhooks::{DeliveryOut, NewWebhook, WebhookIn, WebhookOut};
use crate::service::{Actor, auth, dkim, messages, settings, tenants, test_connection, webhooks};
use crate::state::{AppState, rfc3339};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginIn {
    username: String,
    password: String,
}

pub async fn login(State(state): State<AppState>, ApiJson(input): ApiJson<LoginIn>) -> ApiResult<Json<Value>> {
    let token = auth::login(&state, &input.username, &input.password).await?;
    Ok(Json(json!({"token": token})))
}

fn actor(admin: &AdminAuth) -> Actor {
    Actor::Admin(admin.0.clone())
}

fn user_ref(user_id: &str) -> ApiResult<UserRef> {
    UserRef::parse("user_id", user_id).map_err(|e| ApiError::invalid(e.into()))
}

pub async fn get_global(State(state): State<AppState>, admin: AdminAuth) -> ApiResult<Json<SettingsDoc>> {
    admin.require_platform()?;
    Ok(Json(settings::read_level(&state, &Scope::Global).await?))
}

pub async fn put_global(
    State(state): State<AppState>,
    admin: AdminAuth,
    ApiJson(doc): ApiJson<SettingsDoc>,
) -> ApiResult<Json<SettingsDoc>> {
    admin.require_platform()?;
    Ok(Json(settings::save_level(&state, &actor(&admin), &Scope::Global, &doc).await?))
}

pub async fn list_companies(State(state): State<AppState>, admin: AdminAuth) -> ApiResult<Json<Vec<CompanyOut>>> {
    let all = tenants::companies(&state).await?;
    Ok(Json(all.into_iter().filter(|c| admin.require_company(&c.slug).is_ok()).collect()))
}

pub async fn create_company(
    State(state): State<AppState>,
    admin: AdminAuth,
    ApiJson(input): ApiJson<CompanyIn>,
) -> ApiResult<(StatusCode, Json<CompanyOut>)> {
    admin.require_platform()?;
    Ok((StatusCode::CREATED, Json(tenants::create_company(&state, &actor(&admin), &input).await?)))
}

pub async fn get_company(
    State(state): State<AppState>,
    admin: AdminAuth,
    Path(slug): Path<String>,
) -> ApiResult<Json<CompanyOut>> {
    let company = admin.require_company(&slug)?;
    Ok(Json(tenants::company_out(&state, &company).await?))
}

pub async fn get_company_settings(
    State(state): State<AppState>,
    admin: AdminAuth,
    Path(slug): Path<String>,
) -> ApiResult<Json<SettingsDoc>> {
    let company = admin.require_company(&slug)?;
    Ok(Json(settings::read_level(&state, &Scope::Company(company)).await?))
}

pub async fn put_company_settings(
    State(state): State<AppState>,
    admin: AdminAuth,
    Path(slug): Path<String>,
    ApiJson(doc): ApiJson<SettingsDoc>,
) -> ApiResult<Json<SettingsDoc>> {
    let company = admin.require_company(&slug)?;
    Ok(Json(settings::save_level(&state, &actor(&admin), &Scope::Company(company), &doc).await?))
}

pub async fn get_user_settings(
    State(state): State<AppState>,
    admin: AdminAuth,
    Path((slug, user_id)): Path<(String, String)>,
) -> ApiResult<Json<SettingsDoc>> {
    let company = admin.require_company(&slug)?;
    Ok(Json(settings::read_level(&state, &Scope::User(company, user_ref(&user_id)?)).await?))
}

pub async fn put_user_settings(
    State(state): State<AppState>,
    admin: AdminAuth,
    Path((slug, user_id)): Path<(String, String)>,
    ApiJson(doc): ApiJson<SettingsDoc>,
) -> ApiResult<Json<SettingsDoc>> {
    let company = admin.require_company(&slug)?;
    let scope = Scope::User(company, user_ref(&user_id)?);
    Ok(Json(settings::save_level(&state, &actor(&admin), &scope, &doc).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EffectiveQuery {
    user: Option<String>,
}

pub async fn effective_settings(
    State(state): State<AppState>,
    admin: AdminAuth,
    Path(slug): Path<String>,
    ApiQuery(query): ApiQuery<EffectiveQuery>,
) -> ApiResult<Json<Value>> {
    let company = admin.require_company(&slug)?;
    let user = query.user.as_deref().map(user_ref).transpose()?;
    Ok(Json(settings::explain(&state, &company, user.as_ref()).await?))
}

pub async fn list_api_keys(
    State(state): State<AppState>,
    admin: AdminAuth,
    Path(slug): Path<String>,
) -> ApiResult<Json<Vec<ApiKeyOut>>> {
    let company = admin.require_company(&slug)?;
    Ok(Json(tenants::api_keys(&state, &company).await?))
}

pub async fn create_api_key(
    State(state): State<AppState>,
    admin: AdminAuth,
    Path(slug): Path<String>,
    request: axum::extract::Request,
) -> ApiResult<(StatusCode, Json<NewApiKey>)> {
    let body = super::json::read_body(request, &state).await?;
    let company = admin.require_company(&slug)?;
    // The body is optional: a key needs no more than its company.
    let input: ApiKeyIn =
        if body.iter().all(u8::is_ascii_whitespace) { ApiKeyIn::default() } else { super::json::parse(&body)? };
    Ok((StatusCode::CREATED, Json(tenants::create_api_key(&state, &actor(&admin), &company, &input).await?)))
}

pub async fn revoke_api_key(
    State(state): State<AppState>,
    admin: AdminAuth,
    Path((slug, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let company = admin.require_company(&slug)?;
    tenants::revoke_api_key(&state, &actor(&admin), &company, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompanyAdminIn {
    username: String,
    password: String,
}

pub async fn create_company_admin(
    State(state): State<AppState>,
    admin: AdminAuth,
    Path(slug): Path<String>,
    ApiJson(input): ApiJson<CompanyAdminIn>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    admin.require_platform()?;
    let company = admin.require_company(&slug)?;
    let created = auth::create_admin(&state, &actor(&admin), &input.username, &input.password, Some(&company)).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": created.id, "username": created.username, "company": company.as_str()})),
    ))
}

pub async fn list_dkim_keys(
    State(state): State<AppState>,
    admin: AdminAuth,
    Path(slug): Path<String>,
) -> ApiResult<Json<Vec<DkimKeyOut>>> {
    let company = admin.require_company(&slug)?;
    Ok(Json(dkim::list(&state, &company).await?))
}

pub async fn create_dkim_key(
    State(state): State<AppState>,
    admin: AdminAuth,
    Path(slug): Path<String>,
    ApiJson(input): ApiJson<DkimKeyIn>,
) -> ApiResult<(StatusCode, Json<DkimKeyOut>)> {
    let company = admin.require_company(&slug)?;
    Ok((StatusCode::CREATED, Json(dkim::create(&state, &actor(&admin), &company, &input).await?)))
}

pub async fn remove_dkim_key(
    State(state): State<AppState>,
    admin: AdminAuth,
    Path((slug, selector)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let company = admin.require_company(&slug)?;
    dkim::remove(&state, &actor(&admin), &company, &selector).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_webhooks(
    State(state): State<AppState>,
    admin: AdminAuth,
    Path(slug): Path<String>,
) -> ApiResult<Json<Vec<WebhookOut>>> {
    let company = admin.require_company(&slug)?;
    Ok(Json(webhooks::list(&state, &company).await?))
}

pub async fn create_webhook(
    State(state): State<AppState>,
    admin: AdminAuth,
    Path(slug): Path<String>,
    ApiJson(input): ApiJson<WebhookIn>,
) -> ApiResult<(StatusCode, Json<NewWebhook>)> {
    let company = admin.require_company(&slug)?;
    Ok((StatusCode::CREATED, Json(webhooks::create(&state, &actor(&admin), &company, &input).await?)))
}

pub async fn delete_webhook(
    State(state): State<AppState>,
    admin: AdminAuth,
    Path((slug, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let company = admin.require_company(&slug)?;
    webhooks::delete(&state, &actor(&admin), &company, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    limit: Option<i64>,
}

pub async fn webhook_deliveries(
    State(state): State<AppState>,
    admin: AdminAuth,
    Path((slug, id)): Path<(String, String)>,
    ApiQuery(query): ApiQuery<DeliveriesQuery>,
) -> ApiResult<Json<Vec<DeliveryOut>>> {
    let company = admin.require_company(&slug)?;
    Ok(Json(webhooks::deliveries(&state, &company, &id, query.limit).await?))
}

pub async fn list_company_messages(
    State(state): State<AppState>,
    admin: AdminAuth,
    Path(slug): Path<String>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<Vec<MessageOut>>> {
    let company = admin.require_company(&slug)?;
    Ok(Json(messages::list(&state, &company, &filter(&query)?).await?))
}

pub async fn get_company_message(
    State(state): State<AppState>,
    admin: AdminAuth,
    Path((slug, id)): Path<(String, String)>,
) -> ApiResult<Json<MessageOut>> {
    let company = admin.require_company(&slug)?;
    Ok(Json(messages::message(&state, &company, &id).await?))
}

pub async fn get_company_message_raw(
    State(state): State<AppState>,
    admin: AdminAuth,
    Path((slug, id)): Path<(String, String)>,
) -> ApiResult<impl axum::response::IntoResponse> {
    let company = admin.require_company(&slug)?;
    Ok(super::messages::rfc822(messages::raw(&state, &company, &id).await?))
}

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    company: Option<String>,
    limit: Option<i64>,
}

pub async fn audit_log(
    State(state): State<AppState>,
    admin: AdminAuth,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> ApiResult<Json<Value>> {
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
    let entries: Vec<Value> = rows
        .into_iter()
        .map(|r| json!({"at": rfc3339(r.at), "actor": r.actor, "action": r.action, "company": r.company, "target": r.target, "fields": r.fields}))
        .collect();
    Ok(Json(json!({"entries": entries})))
}
