//! The three levels' E-mail pages (global; a company's E-mail tab; a user's
//! SMTP data) with Test connection and Save, a company's users, and the
//! effective settings of a (company, user).

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use carteiro_core::FieldErrors;
use carteiro_core::id::{CompanySlug, UserRef};
use carteiro_core::settings::{Scope, SettingsDoc};
use serde::Deserialize;
use serde_json::Value;

use super::ConsoleError;
use super::companies::Tabs;
use super::form::{self, LevelKind, Posted, SettingsForm};
use super::page::{Done, Page};
use super::session::Session;
use crate::i18n::Lang;
use crate::service::test_connection::{self, TestConnectionIn, TestConnectionOut};
use crate::service::{Actor, ServiceError, settings};
use crate::state::AppState;

/// The level a page edits, and where its form posts.
struct Level {
    scope: Scope,
    kind: LevelKind,
    url: String,
}

impl Level {
    fn global() -> Self {
        Self { scope: Scope::Global, kind: LevelKind::Global, url: "/settings/email".to_owned() }
    }

    fn company(slug: CompanySlug) -> Self {
        Self { url: format!("/companies/{slug}/email"), scope: Scope::Company(slug), kind: LevelKind::Company }
    }

    fn user(slug: CompanySlug, user: UserRef) -> Self {
        Self {
            url: format!("/companies/{slug}/users/{}", super::session::urlencode(user.as_str())),
            scope: Scope::User(slug, user),
            kind: LevelKind::User,
        }
    }

    fn company_slug(&self) -> Option<&CompanySlug> {
        match &self.scope {
            Scope::Global => None,
            Scope::Company(c) | Scope::User(c, _) => Some(c),
        }
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "settings.html")]
struct SettingsPage {
    page: Page,
    tabs: Option<Tabs>,
    heading: String,
    intro: &'static str,
    action: String,
    form: SettingsForm,
    test_to: String,
    test: Option<TestView>,
}

#[derive(Template, WebTemplate)]
#[template(path = "test_result.html")]
struct TestFragment {
    page: Page,
    test: TestView,
}

/// A Test connection's result as shown.
pub struct TestView {
    ok: bool,
    steps: Vec<StepView>,
    hint: Option<String>,
    /// Why the test could not start (a value of the form breaks a rule).
    problems: Vec<String>,
}

struct StepView {
    name: &'static str,
    label: String,
    ok: bool,
    ms: u64,
    detail: String,
}

impl TestView {
    fn of(lang: Lang, out: TestConnectionOut) -> Self {
        Self {
            ok: out.ok,
            steps: out
                .steps
                .into_iter()
                .map(|s| StepView {
                    name: s.step,
                    label: super::texts::step(lang, s.step),
                    ok: s.ok,
                    ms: s.ms,
                    detail: lang.rule(&s.detail),
                })
                .collect(),
            hint: out.hint.map(|h| h.text(lang).to_owned()),
            problems: Vec::new(),
        }
    }

    fn refused(lang: Lang, errors: &FieldErrors) -> Self {
        Self {
            ok: false,
            steps: Vec::new(),
            hint: None,
            problems: errors.0.iter().map(|e| lang.rule(&e.message)).collect(),
        }
    }
}

pub async fn global(
    State(state): State<AppState>,
    session: Session,
    Query(done): Query<Done>,
) -> Result<Response, ConsoleError> {
    session.require_platform()?;
    show_stored(&state, &session, &Level::global(), done).await
}

pub async fn save_global(
    State(state): State<AppState>,
    session: Session,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Result<Response, ConsoleError> {
    session.require_platform()?;
    post(&state, &session, &Level::global(), Posted::new(pairs)).await
}

pub async fn company(
    State(state): State<AppState>,
    session: Session,
    Path(slug): Path<String>,
    Query(done): Query<Done>,
) -> Result<Response, ConsoleError> {
    let slug = session.require_company(&slug)?;
    show_stored(&state, &session, &Level::company(slug), done).await
}

pub async fn save_company(
    State(state): State<AppState>,
    session: Session,
    Path(slug): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Result<Response, ConsoleError> {
    let slug = session.require_company(&slug)?;
    post(&state, &session, &Level::company(slug), Posted::new(pairs)).await
}

fn user_ref(user: &str) -> Result<UserRef, ConsoleError> {
    UserRef::parse("user", user).map_err(|_| ConsoleError::NotFound)
}

pub async fn user(
    State(state): State<AppState>,
    session: Session,
    Path((slug, user)): Path<(String, String)>,
    Query(done): Query<Done>,
) -> Result<Response, ConsoleError> {
    let slug = session.require_company(&slug)?;
    show_stored(&state, &session, &Level::user(slug, user_ref(&user)?), done).await
}

pub async fn save_user(
    State(state): State<AppState>,
    session: Session,
    Path((slug, user)): Path<(String, String)>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Result<Response, ConsoleError> {
    let slug = session.require_company(&slug)?;
    post(&state, &session, &Level::user(slug, user_ref(&user)?), Posted::new(pairs)).await
}

async fn show_stored(state: &AppState, session: &Session, level: &Level, done: Done) -> Result<Response, ConsoleError> {
    let doc = settings::read_level(state, &level.scope).await?;
    let mut page = session.page("");
    if done.is("saved") {
        page.set_flash(true, page.t.saved);
    }
    let view =
        View { values: form::values_of(&doc), errors: FieldErrors::default(), test: None, test_to: String::new() };
    show(state, session, level, page, view).await.map(IntoResponse::into_response)
}

/// What a form shows besides the level itself.
struct View {
    values: std::collections::BTreeMap<String, String>,
    errors: FieldErrors,
    test: Option<TestView>,
    test_to: String,
}

async fn show(
    state: &AppState,
    session: &Session,
    level: &Level,
    mut page: Page,
    view: View,
) -> Result<SettingsPage, ConsoleError> {
    let t = page.t;
    let above = above(state, &level.scope).await?;
    let (heading, intro, tabs) = match &level.scope {
        Scope::Global => (t.global_title.to_owned(), t.global_intro, None),
        Scope::Company(slug) => {
            let tabs = Tabs::of(state, session, slug, "email").await?;
            (format!("{} · {}", tabs.name, t.tab_email), t.company_email_intro, Some(tabs))
        }
        Scope::User(slug, user) => {
            let tabs = Tabs::of(state, session, slug, "users").await?;
            (format!("{} · {} {}", tabs.name, t.user_title, user), t.user_intro, Some(tabs))
        }
    };
    page.title = heading.clone();
    let form = SettingsForm::new(page.lang, t, level.kind, &view.values, &above, &view.errors);
    Ok(SettingsPage {
        page,
        tabs,
        heading,
        intro,
        action: level.url.clone(),
        form,
        test_to: view.test_to,
        test: view.test,
    })
}

/// What the levels above `scope` have in force, field by field.
async fn above(state: &AppState, scope: &Scope) -> Result<Value, ServiceError> {
    let (company, user) = match scope {
        Scope::Global => (None, None),
        Scope::Company(c) => (Some(c), None),
        Scope::User(c, u) => (Some(c), Some(u)),
    };
    let mut levels = settings::levels_for(state, company, user).await?;
    for level in levels.iter_mut().skip(settings::slot(scope)) {
        *level = None;
    }
    Ok(settings::resolve(&levels).explain())
}

/// Save or Test connection (the button pressed says which).
async fn post(state: &AppState, session: &Session, level: &Level, posted: Posted) -> Result<Response, ConsoleError> {
    session.check_csrf(posted.get("csrf"))?;
    let doc = form::read(level.kind, &posted);
    // Typed values come back as typed; which secrets are stored, as stored.
    let mut values = form::values_posted(&posted);
    let stored = form::values_of(&settings::read_level(state, &level.scope).await?);
    values.extend(stored.into_iter().filter(|(path, _)| path.ends_with("_set")));
    let page = session.page("");
    if posted.get("action") == Some("test") {
        let to = posted.text("test_to").unwrap_or_default().to_owned();
        let test = run_test(state, session, level, doc, &to).await?;
        if posted.get("fragment").is_some() {
            return Ok(TestFragment { page, test }.into_response());
        }
        let view = View { values, errors: FieldErrors::default(), test: Some(test), test_to: to };
        return Ok(show(state, session, level, page, view).await?.into_response());
    }
    let saved = match doc {
        Ok(doc) => {
            settings::save_level(state, &Actor::Admin(session.admin.clone()), &level.scope, &doc).await.map(drop)
        }
        Err(errors) => Err(ServiceError::Invalid(errors)),
    };
    let (status, errors) = match saved {
        Ok(()) => return Ok(Redirect::to(&format!("{}?done=saved", level.url)).into_response()),
        Err(ServiceError::Invalid(errors)) => (StatusCode::UNPROCESSABLE_ENTITY, errors),
        Err(ServiceError::Forbidden(errors)) => (StatusCode::FORBIDDEN, errors),
        Err(other) => return Err(other.into()),
    };
    let page = page.with_flash(false, session.t().not_saved);
    let view = View { values, errors, test: None, test_to: String::new() };
    Ok((status, show(state, session, level, page, view).await?).into_response())
}

async fn run_test(
    state: &AppState,
    session: &Session,
    level: &Level,
    doc: Result<SettingsDoc, FieldErrors>,
    to: &str,
) -> Result<TestView, ConsoleError> {
    let lang = session.lang;
    let doc = match doc {
        Ok(doc) => doc,
        Err(errors) => return Ok(TestView::refused(lang, &errors)),
    };
    let input = TestConnectionIn {
        company: level.company_slug().map(|c| c.as_str().to_owned()),
        user: match &level.scope {
            Scope::User(_, u) => Some(u.as_str().to_owned()),
            _ => None,
        },
        settings: None,
        to: to.to_owned(),
    };
    let target = match input.target() {
        Ok(target) => target,
        Err(errors) => return Ok(TestView::refused(lang, &errors)),
    };
    match test_connection::run(state, &Actor::Admin(session.admin.clone()), &target, Some(&doc)).await {
        Ok(out) => Ok(TestView::of(lang, out)),
        Err(ServiceError::Invalid(errors) | ServiceError::Forbidden(errors)) => Ok(TestView::refused(lang, &errors)),
        Err(other) => Err(other.into()),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "users.html")]
struct UsersPage {
    page: Page,
    tabs: Tabs,
    users: Vec<String>,
    slug: String,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct OpenUser {
    open: Option<String>,
}

/// The users of a company with SMTP data of their own, and a way to open any user's.
pub async fn users(
    State(state): State<AppState>,
    session: Session,
    Path(slug): Path<String>,
    Query(query): Query<OpenUser>,
) -> Result<Response, ConsoleError> {
    let slug = session.require_company(&slug)?;
    let tabs = Tabs::of(&state, &session, &slug, "users").await?;
    let mut error = None;
    if let Some(open) = query.open.as_deref().map(str::trim) {
        match UserRef::parse("user", open) {
            Ok(user) => return Ok(Redirect::to(&Level::user(slug, user).url).into_response()),
            Err(e) => error = Some(session.lang.rule(&e.message)),
        }
    }
    let users = state
        .store
        .level_keys()
        .await
        .map_err(ServiceError::from)?
        .into_iter()
        .filter(|(company, user)| company == slug.as_str() && !user.is_empty())
        .map(|(_, user)| user)
        .collect();
    let page = session.page(format!("{} · {}", tabs.name, session.t().tab_users));
    Ok(UsersPage { page, tabs, users, slug: slug.as_str().to_owned(), error }.into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "effective.html")]
struct EffectivePage {
    page: Page,
    tabs: Tabs,
    user: String,
    rows: Vec<EffectiveRow>,
}

struct EffectiveRow {
    field: String,
    value: String,
    source: &'static str,
}

#[derive(Deserialize)]
pub struct EffectiveQuery {
    user: Option<String>,
}

pub async fn effective(
    State(state): State<AppState>,
    session: Session,
    Path(slug): Path<String>,
    Query(query): Query<EffectiveQuery>,
) -> Result<Response, ConsoleError> {
    let slug = session.require_company(&slug)?;
    let tabs = Tabs::of(&state, &session, &slug, "effective").await?;
    let user = query.user.as_deref().map(str::trim).filter(|u| !u.is_empty());
    let user_ref = user.map(|u| UserRef::parse("user", u)).transpose().map_err(|e| ServiceError::Invalid(e.into()))?;
    let explained = settings::explain(&state, &slug, user_ref.as_ref()).await?;
    let page = session.page(format!("{} · {}", tabs.name, session.t().tab_effective));
    let mut rows = Vec::new();
    for block in ["connection", "policy"] {
        rows_of(page.t, block, &explained[block], &mut rows);
    }
    Ok(EffectivePage { page, tabs, user: user.unwrap_or_default().to_owned(), rows }.into_response())
}

/// One row per explained value (`{"value", "source"}`), the password only as set or not.
fn rows_of(t: &super::texts::Texts, path: &str, node: &Value, rows: &mut Vec<EffectiveRow>) {
    let Value::Object(map) = node else {
        if node.is_null() {
            rows.push(EffectiveRow {
                field: path.to_owned(),
                value: t.no_connection.to_owned(),
                source: t.source_default,
            });
        }
        return;
    };
    if let Some(source) = map.get("source").and_then(Value::as_str)
        && map.contains_key("value")
    {
        let value = match (&map["value"], map.get("set")) {
            (_, Some(Value::Bool(set))) => if *set { t.secret_stored } else { t.not_set }.to_owned(),
            (Value::Null, _) => t.not_set.to_owned(),
            (Value::Bool(b), _) => if *b { t.yes } else { t.no }.to_owned(),
            (Value::String(s), _) => s.clone(),
            (other, _) => other.to_string(),
        };
        rows.push(EffectiveRow { field: path.to_owned(), value, source: t.source(source) });
        return;
    }
    for (key, inner) in map {
        if key != "source" {
            rows_of(t, &format!("{path}.{key}"), inner, rows);
        }
    }
}
