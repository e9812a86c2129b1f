//! The JSON API under `/api/v1` (SPEC §7). Handlers are thin: extract,
//! authorize (by extractor), call one use case, shape the answer.

mod admin;
mod auth;
mod json;
mod messages;
mod query;

use axum::Extension;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};

use crate::state::AppState;

pub use json::ApiJson;
use json::BodyLimit;

pub fn router(state: AppState) -> Router {
    let max = state.delivery.max_message_bytes;
    // JSON and base64 inflate a message by about 4/3; leave room for the envelope of the document.
    let single_limit = max / 3 * 4 + 1024 * 1024;
    let batch_limit = single_limit.max(64 * 1024 * 1024);
    let api = Router::new()
        .route("/login", post(admin::login))
        .route("/settings/global", get(admin::get_global).put(admin::put_global))
        .route("/companies", get(admin::list_companies).post(admin::create_company))
        .route("/companies/{slug}", get(admin::get_company))
        .route("/companies/{slug}/settings", get(admin::get_company_settings).put(admin::put_company_settings))
        .route(
            "/companies/{slug}/users/{user_id}/settings",
            get(admin::get_user_settings).put(admin::put_user_settings),
        )
        .route("/companies/{slug}/effective-settings", get(admin::effective_settings))
        .route("/companies/{slug}/api-keys", get(admin::list_api_keys).post(admin::create_api_key))
        .route("/companies/{slug}/api-keys/{id}", delete(admin::revoke_api_key))
        .route("/companies/{slug}/admins", post(admin::create_company_admin))
        .route("/companies/{slug}/dkim-keys", get(admin::list_dkim_keys).post(admin::create_dkim_key))
        .route("/companies/{slug}/dkim-keys/{selector}", delete(admin::remove_dkim_key))
        .route("/companies/{slug}/webhooks", get(admin::list_webhooks).post(admin::create_webhook))
        .route("/companies/{slug}/webhooks/{id}", delete(admin::delete_webhook))
        .route("/companies/{slug}/webhooks/{id}/deliveries", get(admin::webhook_deliveries))
        .route("/companies/{slug}/messages", get(admin::list_company_messages))
        .route("/companies/{slug}/messages/{id}", get(admin::get_company_message))
        .route("/companies/{slug}/messages/{id}/raw", get(admin::get_company_message_raw))
        .route("/test-connection", post(admin::test_connection))
        .route("/audit", get(admin::audit_log))
        .route("/messages", post(messages::submit).get(messages::list))
        .route("/messages/{id}", get(messages::get))
        .route("/messages/{id}/raw", get(messages::raw))
        .route("/messages/{id}/cancel", post(messages::cancel))
        .route("/messages/batch", post(messages::submit_batch).layer(Extension(BodyLimit(batch_limit))))
        .route_layer(Extension(BodyLimit(single_limit)))
        .fallback(|| async {
            crate::error::ApiError::new(StatusCode::NOT_FOUND, "not_found", "there is no such API route")
        });
    Router::new()
        .nest("/api/v1", api)
        .merge(crate::console::router())
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        // Bodies are read by `ApiJson`, which applies each route's `BodyLimit`.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
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
