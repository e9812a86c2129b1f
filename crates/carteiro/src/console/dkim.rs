//! A company's DKIM tab: its keys with the DNS records to publish, a new
//! key (made here or imported), and removal after a rotation.

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use carteiro_core::id::CompanySlug;
use serde::Deserialize;

use super::ConsoleError;
use super::companies::{CsrfOnly, Tabs};
use super::page::{Done, FieldMessages, Page};
use super::session::Session;
use crate::service::dkim::{self, DkimKeyIn, DkimKeyOut};
use crate::service::{Actor, ServiceError};
use crate::state::AppState;

#[derive(Template, WebTemplate)]
#[template(path = "dkim.html")]
struct DkimPage {
    page: Page,
    tabs: Tabs,
    keys: Vec<DkimKeyOut>,
    selector: String,
    domain: String,
    errors: FieldMessages,
}

async fn page(
    state: &AppState,
    session: &Session,
    slug: &CompanySlug,
    form: (String, String),
    errors: FieldMessages,
) -> Result<DkimPage, ConsoleError> {
    let tabs = Tabs::of(state, session, slug, "dkim").await?;
    let page = session.page(format!("{} · DKIM", tabs.name));
    let keys = dkim::list(state, slug).await?;
    Ok(DkimPage { page, tabs, keys, selector: form.0, domain: form.1, errors })
}

pub async fn show(
    State(state): State<AppState>,
    session: Session,
    Path(slug): Path<String>,
    Query(done): Query<Done>,
) -> Result<Response, ConsoleError> {
    let slug = session.require_company(&slug)?;
    let mut shown = page(&state, &session, &slug, Default::default(), FieldMessages::default()).await?;
    if done.is("created") {
        shown.page.set_flash(true, shown.page.t.dkim_created);
    } else if done.is("removed") {
        shown.page.set_flash(true, shown.page.t.dkim_removed);
    }
    Ok(shown.into_response())
}

/// Every field may be missing: the session and its reach are checked before what was typed.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct KeyForm {
    csrf: Option<String>,
    selector: String,
    domain: String,
    algorithm: Option<String>,
    private_key_pem: Option<String>,
}

pub async fn create(
    State(state): State<AppState>,
    session: Session,
    Path(slug): Path<String>,
    Form(form): Form<KeyForm>,
) -> Result<Response, ConsoleError> {
    let slug = session.require_company(&slug)?;
    session.check_csrf(form.csrf.as_deref())?;
    let input = DkimKeyIn {
        selector: form.selector.clone(),
        domain: form.domain.clone(),
        algorithm: form.algorithm,
        private_key_pem: form.private_key_pem,
    };
    let lang = session.lang;
    let errors = match dkim::create(&state, &Actor::Admin(session.admin.clone()), &slug, &input).await {
        Ok(_) => return Ok(Redirect::to(&format!("/companies/{slug}/dkim?done=created")).into_response()),
        Err(ServiceError::Invalid(errors)) => FieldMessages::of(lang, &errors),
        Err(ServiceError::Conflict(message)) => FieldMessages::one("selector", message),
        Err(other) => return Err(other.into()),
    };
    let mut shown = page(&state, &session, &slug, (form.selector, form.domain), errors).await?;
    shown.page.set_flash(false, session.t().not_saved);
    Ok((StatusCode::UNPROCESSABLE_ENTITY, shown).into_response())
}

pub async fn remove(
    State(state): State<AppState>,
    session: Session,
    Path((slug, selector)): Path<(String, String)>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, ConsoleError> {
    let slug = session.require_company(&slug)?;
    session.check_csrf(form.csrf())?;
    dkim::remove(&state, &Actor::Admin(session.admin.clone()), &slug, &selector).await?;
    Ok(Redirect::to(&format!("/companies/{slug}/dkim?done=removed")).into_response())
}
