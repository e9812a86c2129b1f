//! Logging in and out, and switching the language.

use askama::Template;
use askama_web::WebTemplate;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar};
use serde::Deserialize;

use super::ConsoleError;
use super::page::Page;
use super::session::{LANG_COOKIE, LOGIN_COOKIE, SESSION_COOKIE, Session, Visitor, local_path, private_cookie, same};
use crate::i18n::Lang;
use crate::service::ServiceError;
use crate::service::auth::{self, random_token};
use crate::state::AppState;

#[derive(Template, WebTemplate)]
#[template(path = "login.html")]
struct LoginPage {
    page: Page,
    next: String,
    username: String,
}

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
    bye: Option<String>,
}

pub async fn page(visitor: Visitor, Query(query): Query<LoginQuery>) -> Response {
    let (jar, csrf) = login_csrf(visitor.jar, visitor.https);
    let mut page = Page::new(visitor.lang, String::new(), None, csrf, visitor.path);
    page.title = page.t.login_title.to_owned();
    if query.bye.is_some() {
        page.set_flash(true, page.t.logged_out);
    }
    let next = local_path(query.next.as_deref());
    (jar, LoginPage { page, next, username: String::new() }).into_response()
}

/// The login form's CSRF token: the random value of its cookie, made when missing.
fn login_csrf(jar: CookieJar, https: bool) -> (CookieJar, String) {
    match jar.get(LOGIN_COOKIE) {
        Some(cookie) => {
            let value = cookie.value().to_owned();
            (jar, value)
        }
        None => {
            let value = random_token("");
            (jar.add(private_cookie(LOGIN_COOKIE, value.clone(), https)), value)
        }
    }
}

#[derive(Deserialize)]
pub struct LoginForm {
    username: String,
    password: String,
    csrf: String,
    next: Option<String>,
}

pub async fn submit(State(state): State<AppState>, visitor: Visitor, Form(form): Form<LoginForm>) -> Response {
    let expected = visitor.jar.get(LOGIN_COOKIE).map(|c| c.value().to_owned()).unwrap_or_default();
    if expected.is_empty() || !same(&form.csrf, &expected) {
        return ConsoleError::Csrf.into_response();
    }
    let next = local_path(form.next.as_deref());
    match auth::login(&state, form.username.trim(), &form.password).await {
        Ok(token) => {
            let mut session = private_cookie(SESSION_COOKIE, token, visitor.https);
            session.set_max_age(time::Duration::hours(12));
            let jar = visitor.jar.remove(Cookie::build(LOGIN_COOKIE).path("/")).add(session);
            (jar, Redirect::to(&next)).into_response()
        }
        Err(error) => {
            let mut page = Page::new(visitor.lang, String::new(), None, expected, visitor.path);
            page.title = page.t.login_title.to_owned();
            let (status, text) = match error {
                ServiceError::BadCredentials => (StatusCode::UNAUTHORIZED, page.t.login_wrong.to_owned()),
                ServiceError::Throttled { seconds } => {
                    (StatusCode::TOO_MANY_REQUESTS, page.t.login_throttled.replace("{n}", &seconds.to_string()))
                }
                other => return ConsoleError::from(other).into_response(),
            };
            let page = page.with_flash(false, text);
            (status, LoginPage { page, next, username: form.username }).into_response()
        }
    }
}

#[derive(Deserialize)]
pub struct LogoutForm {
    csrf: Option<String>,
}

pub async fn logout(
    State(state): State<AppState>,
    session: Session,
    jar: CookieJar,
    Form(form): Form<LogoutForm>,
) -> Result<Response, ConsoleError> {
    session.check_csrf(form.csrf.as_deref())?;
    auth::logout(&state, session.token()).await?;
    let jar = jar.remove(Cookie::build(SESSION_COOKIE).path("/"));
    Ok((jar, Redirect::to("/login?bye=1")).into_response())
}

#[derive(Deserialize)]
pub struct SwitchQuery {
    back: Option<String>,
}

/// Remembers the language chosen (a year) and goes back to the page.
pub async fn switch_language(Path(tag): Path<String>, visitor: Visitor, Query(query): Query<SwitchQuery>) -> Response {
    let back = local_path(query.back.as_deref());
    let Some(lang) = Lang::from_tag(&tag) else {
        return Redirect::to(&back).into_response();
    };
    let mut cookie = private_cookie(LANG_COOKIE, lang.tag().to_owned(), visitor.https);
    cookie.set_max_age(time::Duration::days(365));
    (visitor.jar.add(cookie), Redirect::to(&back)).into_response()
}
