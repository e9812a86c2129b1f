//! The JSON API under `/api/v1` (SPEC §7). Handlers are thin: extract,
//! authorize (by extractor), call one use case, shape the answer.

mod admin;
mod auth;
mod json;
mod messages;
mod openapi;
mod path;
mod query;

use axum::Extension;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use utoipa::OpenApi as _;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::state::AppState;

pub use json::ApiJson;
use json::BodyLimit;

pub fn router(state: AppState) -> Router {
    let (api, document) = api(state.delivery.max_message_bytes);
    Router::new()
        .merge(api.layer(Extension(openapi::Served::new(&document))))
        .merge(crate::console::router())
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        // Bodies are read by `ApiJson`, which applies each route's `BodyLimit`.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// The routes under `/api/v1` and their OpenAPI document, built by the same
/// `routes!` calls so that neither can have a route the other lacks.
fn api(max_message_bytes: usize) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    // JSON and base64 inflate a message by about 4/3; leave room for the envelope of the document.
    let single_limit = max_message_bytes / 3 * 4 + 1024 * 1024;
    let batch_limit = single_limit.max(64 * 1024 * 1024);
    let api = OpenApiRouter::default()
        .routes(routes!(admin::login))
        .routes(routes!(admin::get_global, admin::put_global))
        .routes(routes!(admin::list_companies, admin::create_company))
        .routes(routes!(admin::get_company))
        .routes(routes!(admin::get_company_settings, admin::put_company_settings))
        .routes(routes!(admin::get_user_settings, admin::put_user_settings))
        .routes(routes!(admin::effective_settings))
        .routes(routes!(admin::list_api_keys, admin::create_api_key))
        .routes(routes!(admin::revoke_api_key))
        .routes(routes!(admin::create_company_admin))
        .routes(routes!(admin::list_dkim_keys, admin::create_dkim_key))
        .routes(routes!(admin::remove_dkim_key))
        .routes(routes!(admin::list_webhooks, admin::create_webhook))
        .routes(routes!(admin::delete_webhook))
        .routes(routes!(admin::webhook_deliveries))
        .routes(routes!(admin::list_company_messages))
        .routes(routes!(admin::get_company_message))
        .routes(routes!(admin::get_company_message_raw))
        .routes(routes!(admin::test_connection))
        .routes(routes!(admin::audit_log))
        .routes(routes!(messages::submit, messages::list))
        .routes(routes!(messages::get))
        .routes(routes!(messages::raw))
        .routes(routes!(messages::cancel))
        .routes(routes!(messages::submit_batch).layer(Extension(BodyLimit(batch_limit))))
        .routes(routes!(openapi::document))
        .route_layer(Extension(BodyLimit(single_limit)))
        .fallback(|| async {
            crate::error::ApiError::new(StatusCode::NOT_FOUND, "not_found", "there is no such API route")
        });
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi()).nest("/api/v1", api).split_for_parts()
}

/// Prometheus's scrape.
async fn metrics(State(state): State<AppState>) -> Response {
    let Some(handle) = &state.metrics else {
        return (StatusCode::NOT_FOUND, "metrics are recorded by `carteiro serve` only").into_response();
    };
    match crate::metrics::render(&state, handle).await {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        Err(e) => {
            tracing::warn!(error = format!("{e:#}"), "cannot read the queue for /metrics");
            (StatusCode::SERVICE_UNAVAILABLE, "the database does not answer").into_response()
        }
    }
}

/// Ready when the database answers.
async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "the database does not answer"),
    }
}
