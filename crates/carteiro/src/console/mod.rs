//! The web console (SPEC §5): server-rendered pages in English and
//! Portuguese for platform and company administrators. Handlers are thin,
//! like the API's: a `Session` extractor decides who may come in, one use
//! case of `service` does the work, a template shows the result.

mod audit;
mod companies;
mod dkim;
mod form;
mod login;
mod messages;
mod page;
mod session;
mod settings;
mod texts;

use askama::Template;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::cookie::CookieJar;

use crate::error::ApiError;
use crate::i18n::Lang;
use crate::service::ServiceError;
use crate::state::AppState;
use page::Page;
use session::Session;

/// Forms are small; a CA certificate in PEM is the largest field.
const FORM_LIMIT: usize = 256 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login::page).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/lang/{tag}", get(login::switch_language))
        .route("/settings/email", get(settings::global).post(settings::save_global))
        .route("/companies", get(companies::list))
        .route("/companies/new", get(companies::new_form).post(companies::create))
        .route("/companies/{slug}", get(companies::general).post(companies::update))
        .route("/companies/{slug}/email", get(settings::company).post(settings::save_company))
        .route("/companies/{slug}/users", get(settings::users))
        .route("/companies/{slug}/users/{user}", get(settings::user).post(settings::save_user))
        .route("/companies/{slug}/effective", get(settings::effective))
        .route("/companies/{slug}/api-keys", get(companies::keys).post(companies::create_key))
        .route("/companies/{slug}/api-keys/{id}/revoke", post(companies::revoke_key))
        .route("/companies/{slug}/admins", get(companies::admins).post(companies::create_admin))
        .route("/companies/{slug}/dkim", get(dkim::show).post(dkim::create))
        .route("/companies/{slug}/dkim/{selector}/remove", post(dkim::remove))
        .route("/messages", get(messages::list))
        .route("/companies/{slug}/messages/{id}", get(messages::detail))
        .route("/companies/{slug}/messages/{id}/cancel", post(messages::cancel))
        .route("/companies/{slug}/messages/{id}/retry", post(messages::retry))
        .route("/companies/{slug}/messages/{id}/raw", get(messages::raw))
        .route("/audit", get(audit::list))
        .route("/static/console.css", get(|| asset("text/css", include_str!("../../assets/console.css"))))
        .route("/static/console.js", get(|| asset("text/javascript", include_str!("../../assets/console.js"))))
        .layer(DefaultBodyLimit::max(FORM_LIMIT))
        .layer(middleware::from_fn(pages))
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "max-age=3600")], body).into_response()
}

/// The start page: a platform administrator's is the global e-mail settings,
/// a company administrator's their company's.
async fn home(session: Session) -> Redirect {
    match &session.admin.scope {
        crate::service::auth::AdminScope::Platform => Redirect::to("/settings/email"),
        crate::service::auth::AdminScope::Company(c) => Redirect::to(&format!("/companies/{c}/email")),
    }
}

/// Why a page cannot be shown. Rendered, in the visitor's language, by [`pages`].
#[derive(Debug)]
pub enum ConsoleError {
    Forbidden,
    NotFound,
    Csrf,
    Service(ServiceError),
}

impl From<ServiceError> for ConsoleError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::NotFound(_) => Self::NotFound,
            other => Self::Service(other),
        }
    }
}

/// An error page still to be written: the status, and what to say.
#[derive(Debug, Clone)]
enum Problem {
    Forbidden,
    NotFound,
    Csrf,
    Unavailable,
    Internal,
    /// A sentence of carteiro's own (a conflict, a refused value), in English.
    Said(String),
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let (status, problem) = match self {
            Self::Forbidden => (StatusCode::FORBIDDEN, Problem::Forbidden),
            Self::NotFound => (StatusCode::NOT_FOUND, Problem::NotFound),
            Self::Csrf => (StatusCode::FORBIDDEN, Problem::Csrf),
            Self::Service(e) => {
                // The API's mapping logs what must be logged and picks the status.
                let api = ApiError::from(e);
                let problem = match api.status {
                    StatusCode::SERVICE_UNAVAILABLE => Problem::Unavailable,
                    StatusCode::INTERNAL_SERVER_ERROR => Problem::Internal,
                    StatusCode::NOT_FOUND => Problem::NotFound,
                    _ => Problem::Said(api.message),
                };
                (api.status, problem)
            }
        };
        let mut response = status.into_response();
        response.extensions_mut().insert(problem);
        response
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    page: Page,
    message: String,
}

fn error_page(lang: Lang, problem: &Problem) -> String {
    let page = Page::new(lang, String::new(), None, String::new(), "/".to_owned());
    let t = page.t;
    let message = match problem {
        Problem::Forbidden => t.forbidden.to_owned(),
        Problem::NotFound => t.not_found.to_owned(),
        Problem::Csrf => t.csrf_failed.to_owned(),
        Problem::Unavailable => t.unavailable.to_owned(),
        Problem::Internal => t.internal.to_owned(),
        Problem::Said(text) => lang.rule(text),
    };
    let page = Page { title: t.error_title.to_owned(), ..page };
    ErrorPage { page, message }.render().unwrap_or_else(|_| "error".to_owned())
}

/// Around every console page: error pages written in the visitor's
/// language, and the headers that keep the pages from being framed,
/// sniffed, cached or fed scripts from elsewhere.
async fn pages(request: Request, next: Next) -> Response {
    let lang = session::language(request.headers(), &CookieJar::from_headers(request.headers()));
    let mut response = next.run(request).await;
    if let Some(problem) = response.extensions_mut().remove::<Problem>() {
        response = (response.status(), Html(error_page(lang, &problem))).into_response();
    }
    let headers = response.headers_mut();
    let set = [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
    ];
    for (name, value) in set {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}
