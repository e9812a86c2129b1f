//! Companies: the list, a new one, each one's General tab (name and
//! e-mail), API keys and administrators; the tabs every company page shows.

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use carteiro_core::id::CompanySlug;
use carteiro_core::settings::Scope;
use serde::Deserialize;

use super::ConsoleError;
use super::page::{Done, FieldMessages, Page};
use super::session::Session;
use crate::service::tenants::{self, ApiKeyIn, ApiKeyOut, CompanyIn};
use crate::service::{Actor, ServiceError, auth, settings};
use crate::state::AppState;

/// The tabs of a company's pages.
pub struct Tabs {
    pub slug: String,
    pub name: String,
    /// `general`, `email`, `users`, `effective`, `keys` or `admins`.
    pub active: &'static str,
    /// Administrators are a platform administrator's to manage.
    pub admins: bool,
}

impl Tabs {
    /// The company's tabs; 404 when it does not exist.
    pub async fn of(
        state: &AppState,
        session: &Session,
        slug: &CompanySlug,
        active: &'static str,
    ) -> Result<Self, ConsoleError> {
        let company = tenants::company(state, slug).await?;
        Ok(Self { slug: slug.as_str().to_owned(), name: company.name, active, admins: session.admin.is_platform() })
    }
}

fn actor(session: &Session) -> Actor {
    Actor::Admin(session.admin.clone())
}

#[derive(Template, WebTemplate)]
#[template(path = "companies.html")]
struct CompaniesPage {
    page: Page,
    companies: Vec<CompanyLine>,
}

struct CompanyLine {
    slug: String,
    name: String,
    email: String,
    own_sending: bool,
}

pub async fn list(State(state): State<AppState>, session: Session) -> Result<Response, ConsoleError> {
    let mut companies = Vec::new();
    for company in tenants::companies(&state).await? {
        let Ok(slug) = session.require_company(&company.slug) else { continue };
        let level = settings::load_level(&state, &Scope::Company(slug)).await?;
        let own_sending = level.and_then(|l| l.connection).is_some_and(|c| c.enabled);
        companies.push(CompanyLine {
            slug: company.slug,
            name: company.name,
            email: company.email.unwrap_or_default(),
            own_sending,
        });
    }
    let page = session.page(session.t().companies_title);
    Ok(CompaniesPage { page, companies }.into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "company_form.html")]
struct CompanyFormPage {
    page: Page,
    /// `None` for a new company.
    tabs: Option<Tabs>,
    slug: String,
    name: String,
    email: String,
    errors: FieldMessages,
}

/// Every field may be missing: the session and its reach are checked before what was typed.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct CompanyForm {
    csrf: Option<String>,
    slug: Option<String>,
    name: String,
    email: Option<String>,
}

pub async fn new_form(session: Session) -> Result<Response, ConsoleError> {
    session.require_platform()?;
    let page = session.page(session.t().new_company);
    let form = CompanyFormPage {
        page,
        tabs: None,
        slug: String::new(),
        name: String::new(),
        email: String::new(),
        errors: FieldMessages::default(),
    };
    Ok(form.into_response())
}

pub async fn create(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<CompanyForm>,
) -> Result<Response, ConsoleError> {
    session.require_platform()?;
    session.check_csrf(form.csrf.as_deref())?;
    let slug = form.slug.clone().unwrap_or_default();
    let input = CompanyIn { slug: slug.clone(), name: form.name.clone(), email: form.email.clone() };
    let page = session.page(session.t().new_company);
    let errors = match tenants::create_company(&state, &actor(&session), &input).await {
        Ok(created) => return Ok(Redirect::to(&format!("/companies/{}/email", created.slug)).into_response()),
        Err(ServiceError::Invalid(errors)) => FieldMessages::of(page.lang, &errors),
        Err(ServiceError::Conflict(_)) => FieldMessages::one("slug", page.t.company_exists),
        Err(other) => return Err(other.into()),
    };
    let mut page = page;
    page.set_flash(false, page.t.not_saved);
    let form =
        CompanyFormPage { page, tabs: None, slug, name: form.name, email: form.email.unwrap_or_default(), errors };
    Ok((StatusCode::UNPROCESSABLE_ENTITY, form).into_response())
}

pub async fn general(
    State(state): State<AppState>,
    session: Session,
    Path(slug): Path<String>,
    Query(done): Query<Done>,
) -> Result<Response, ConsoleError> {
    let slug = session.require_company(&slug)?;
    let tabs = Tabs::of(&state, &session, &slug, "general").await?;
    let company = tenants::company_out(&state, &slug).await?;
    let mut page = session.page(tabs.name.clone());
    if done.is("saved") {
        page.set_flash(true, page.t.saved);
    }
    let form = CompanyFormPage {
        page,
        tabs: Some(tabs),
        slug: company.slug,
        name: company.name,
        email: company.email.unwrap_or_default(),
        errors: FieldMessages::default(),
    };
    Ok(form.into_response())
}

pub async fn update(
    State(state): State<AppState>,
    session: Session,
    Path(slug): Path<String>,
    Form(form): Form<CompanyForm>,
) -> Result<Response, ConsoleError> {
    let slug = session.require_company(&slug)?;
    session.check_csrf(form.csrf.as_deref())?;
    let tabs = Tabs::of(&state, &session, &slug, "general").await?;
    let page = session.page(tabs.name.clone());
    let errors = match tenants::update_company(&state, &actor(&session), &slug, &form.name, form.email.as_deref()).await
    {
        Ok(_) => return Ok(Redirect::to(&format!("/companies/{slug}?done=saved")).into_response()),
        Err(ServiceError::Invalid(errors)) => FieldMessages::of(page.lang, &errors),
        Err(other) => return Err(other.into()),
    };
    let mut page = page;
    page.set_flash(false, page.t.not_saved);
    let email = form.email.unwrap_or_default();
    let form =
        CompanyFormPage { page, tabs: Some(tabs), slug: slug.as_str().to_owned(), name: form.name, email, errors };
    Ok((StatusCode::UNPROCESSABLE_ENTITY, form).into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "api_keys.html")]
struct KeysPage {
    page: Page,
    tabs: Tabs,
    keys: Vec<ApiKeyOut>,
    /// A key just created: shown this once.
    new_key: Option<String>,
}

pub async fn keys(
    State(state): State<AppState>,
    session: Session,
    Path(slug): Path<String>,
    Query(done): Query<Done>,
) -> Result<Response, ConsoleError> {
    let slug = session.require_company(&slug)?;
    show_keys(&state, &session, &slug, None, done.is("revoked")).await
}

async fn show_keys(
    state: &AppState,
    session: &Session,
    slug: &CompanySlug,
    new_key: Option<String>,
    revoked: bool,
) -> Result<Response, ConsoleError> {
    let tabs = Tabs::of(state, session, slug, "keys").await?;
    let mut page = session.page(format!("{} · {}", tabs.name, session.t().tab_keys));
    if revoked {
        page.set_flash(true, page.t.key_revoked);
    }
    let keys = tenants::api_keys(state, slug).await?;
    Ok(KeysPage { page, tabs, keys, new_key }.into_response())
}

#[derive(Deserialize)]
pub struct KeyForm {
    csrf: Option<String>,
    name: Option<String>,
}

/// Creates a key and shows it in the answer itself: never in a URL, never again.
pub async fn create_key(
    State(state): State<AppState>,
    session: Session,
    Path(slug): Path<String>,
    Form(form): Form<KeyForm>,
) -> Result<Response, ConsoleError> {
    let slug = session.require_company(&slug)?;
    session.check_csrf(form.csrf.as_deref())?;
    let created = tenants::create_api_key(&state, &actor(&session), &slug, &ApiKeyIn { name: form.name }).await?;
    show_keys(&state, &session, &slug, Some(created.key), false).await
}

/// A form that carries nothing but its CSRF token (a button).
#[derive(Deserialize)]
pub struct CsrfOnly {
    csrf: Option<String>,
}

impl CsrfOnly {
    pub fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

pub async fn revoke_key(
    State(state): State<AppState>,
    session: Session,
    Path((slug, id)): Path<(String, String)>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, ConsoleError> {
    let slug = session.require_company(&slug)?;
    session.check_csrf(form.csrf.as_deref())?;
    tenants::revoke_api_key(&state, &actor(&session), &slug, &id).await?;
    Ok(Redirect::to(&format!("/companies/{slug}/api-keys?done=revoked")).into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "admins.html")]
struct AdminsPage {
    page: Page,
    tabs: Tabs,
    admins: Vec<String>,
    username: String,
    errors: FieldMessages,
}

async fn admins_page(
    state: &AppState,
    session: &Session,
    slug: &CompanySlug,
    username: String,
    errors: FieldMessages,
) -> Result<AdminsPage, ConsoleError> {
    let tabs = Tabs::of(state, session, slug, "admins").await?;
    let page = session.page(format!("{} · {}", tabs.name, session.t().tab_admins));
    let admins = auth::company_admins(state, slug).await?.into_iter().map(|a| a.username).collect();
    Ok(AdminsPage { page, tabs, admins, username, errors })
}

pub async fn admins(
    State(state): State<AppState>,
    session: Session,
    Path(slug): Path<String>,
    Query(done): Query<Done>,
) -> Result<Response, ConsoleError> {
    session.require_platform()?;
    let slug = session.require_company(&slug)?;
    let mut admins = admins_page(&state, &session, &slug, String::new(), FieldMessages::default()).await?;
    if done.is("created") {
        admins.page.set_flash(true, admins.page.t.admin_created);
    }
    Ok(admins.into_response())
}

/// Every field may be missing: the session and its reach are checked before what was typed.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct AdminForm {
    csrf: Option<String>,
    username: String,
    password: String,
}

pub async fn create_admin(
    State(state): State<AppState>,
    session: Session,
    Path(slug): Path<String>,
    Form(form): Form<AdminForm>,
) -> Result<Response, ConsoleError> {
    session.require_platform()?;
    let slug = session.require_company(&slug)?;
    session.check_csrf(form.csrf.as_deref())?;
    let username = form.username.trim().to_owned();
    let lang = session.lang;
    let errors = match auth::create_admin(&state, &actor(&session), &username, &form.password, Some(&slug)).await {
        Ok(_) => return Ok(Redirect::to(&format!("/companies/{slug}/admins?done=created")).into_response()),
        Err(ServiceError::Invalid(errors)) => FieldMessages::of(lang, &errors),
        Err(ServiceError::Conflict(_)) => FieldMessages::one("username", session.t().username_taken),
        Err(other) => return Err(other.into()),
    };
    let mut page = admins_page(&state, &session, &slug, username, errors).await?;
    page.page.set_flash(false, session.t().not_saved);
    Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
}
