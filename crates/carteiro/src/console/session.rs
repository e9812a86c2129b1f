//! Who is using the console, in which language, and the proof that a form
//! came from our own page.
//!
//! A console session is an administrator token (the same kind the API's
//! `POST /api/v1/login` hands out, stored hashed in the database with its
//! expiry) kept in an HttpOnly, SameSite=Strict cookie: so it works on every
//! instance sharing the database, logging out or a password reset ends it at
//! once, and no second session store is needed beside the one we have.
//! The CSRF token of a session is derived from its token, so every form of
//! the session carries it without any state of its own.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use carteiro_core::id::CompanySlug;
use sha2::{Digest, Sha256};

use super::ConsoleError;
use super::page::{Page, PageUser};
use crate::i18n::Lang;
use crate::service::auth::{self, Admin};
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "carteiro_session";
pub const LANG_COOKIE: &str = "carteiro_lang";
/// Before logging in there is no session: the login form's CSRF token is a
/// random value that must match this cookie.
pub const LOGIN_COOKIE: &str = "carteiro_login";

/// A cookie only our own pages send, never readable by scripts; sent over
/// https only when the page was (carteiro behind a TLS-terminating proxy).
pub fn private_cookie(name: &'static str, value: String, https: bool) -> Cookie<'static> {
    Cookie::build((name, value)).path("/").http_only(true).same_site(SameSite::Strict).secure(https).build()
}

/// Whether the visitor reached carteiro over https, as the proxy in front says.
fn over_https(headers: &HeaderMap) -> bool {
    headers.get("x-forwarded-proto").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
}

/// The language a request asks for: the switch's cookie, else `Accept-Language`.
pub fn language(headers: &HeaderMap, jar: &CookieJar) -> Lang {
    jar.get(LANG_COOKIE).and_then(|c| Lang::from_tag(c.value())).unwrap_or_else(|| {
        Lang::negotiate(headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()).unwrap_or_default())
    })
}

/// The path and query of the page, to come back to after a language switch or a login.
fn here(parts: &Parts) -> String {
    parts.uri.path_and_query().map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned())
}

/// A visitor who may not be logged in: the login page's.
pub struct Visitor {
    pub lang: Lang,
    pub jar: CookieJar,
    pub path: String,
    pub https: bool,
}

impl FromRequestParts<AppState> for Visitor {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Self, Self::Rejection> {
        let jar = CookieJar::from_headers(&parts.headers);
        Ok(Self { lang: language(&parts.headers, &jar), path: here(parts), https: over_https(&parts.headers), jar })
    }
}

/// A logged-in administrator. A handler that takes it runs only for one;
/// anyone else is sent to the login page and back.
pub struct Session {
    pub admin: Admin,
    pub lang: Lang,
    token: String,
    path: String,
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let jar = CookieJar::from_headers(&parts.headers);
        let lang = language(&parts.headers, &jar);
        let token = jar.get(SESSION_COOKIE).map(|c| c.value().to_owned()).unwrap_or_default();
        let admin = match auth::admin_by_token(state, &token).await {
            Ok(Some(admin)) => admin,
            Ok(None) => {
                let back = if parts.method == axum::http::Method::GET { here(parts) } else { "/".to_owned() };
                return Err(Redirect::to(&format!("/login?next={}", urlencode(&back))).into_response());
            }
            Err(e) => return Err(ConsoleError::from(e).into_response()),
        };
        Ok(Self { admin, lang, token, path: here(parts) })
    }
}

impl Session {
    /// The CSRF token of every form of this session.
    pub fn csrf(&self) -> String {
        csrf_of(&self.token)
    }

    /// Refuses a form that does not carry this session's CSRF token.
    pub fn check_csrf(&self, sent: Option<&str>) -> Result<(), ConsoleError> {
        if sent.is_some_and(|sent| same(sent, &self.csrf())) { Ok(()) } else { Err(ConsoleError::Csrf) }
    }

    /// The words of the session's language.
    pub fn t(&self) -> &'static super::texts::Texts {
        super::texts::texts(self.lang)
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn page(&self, title: impl Into<String>) -> Page {
        let user = PageUser {
            username: self.admin.username.clone(),
            platform: self.admin.is_platform(),
            company: match &self.admin.scope {
                auth::AdminScope::Platform => None,
                auth::AdminScope::Company(c) => Some(c.as_str().to_owned()),
            },
        };
        Page::new(self.lang, title.into(), Some(user), self.csrf(), self.path.clone())
    }

    pub fn require_platform(&self) -> Result<(), ConsoleError> {
        if self.admin.is_platform() { Ok(()) } else { Err(ConsoleError::Forbidden) }
    }

    /// A company administrator sees only their own company: another answers 404.
    pub fn require_company(&self, slug: &str) -> Result<CompanySlug, ConsoleError> {
        CompanySlug::parse("company", slug).ok().filter(|c| self.admin.manages(c)).ok_or(ConsoleError::NotFound)
    }
}

fn csrf_of(secret: &str) -> String {
    hex::encode(Sha256::digest(format!("carteiro console csrf\0{secret}").as_bytes()))
}

/// Compares without telling, by its timing, how much of a guess was right.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A local path to come back to; anything else (another site) is the start page.
pub fn local_path(next: Option<&str>) -> String {
    match next {
        // Browsers drop tabs and line breaks from URLs ("/\t/x" is "//x", another site): only visible ASCII passes.
        Some(p)
            if p.starts_with('/') && !p.starts_with("//") && p.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') =>
        {
            p.to_owned()
        }
        _ => "/".to_owned(),
    }
}

pub fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(local_path(Some("/companies/acme/email")), "/companies/acme/email");
        assert_eq!(local_path(Some("//evil.example/")), "/");
        assert_eq!(local_path(Some("https://evil.example/")), "/");
        assert_eq!(local_path(Some("/\\evil.example")), "/");
        assert_eq!(local_path(Some("/\t/evil.example/")), "/");
        assert_eq!(local_path(Some("/\n/evil.example/")), "/");
        assert_eq!(local_path(Some("/ /evil.example/")), "/");
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn csrf_tokens_belong_to_their_session() {
        assert_eq!(csrf_of("ct_a"), csrf_of("ct_a"));
        assert_ne!(csrf_of("ct_a"), csrf_of("ct_b"));
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
