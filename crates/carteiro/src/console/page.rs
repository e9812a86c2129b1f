//! What every console page shows around its content: the language, who is
//! logged in, the navigation, the CSRF token of its forms, a notice.

use super::session::urlencode;
use super::texts::{self, Texts};
use crate::i18n::Lang;

/// What a page redirected to after a change says was done (`?done=saved`).
#[derive(serde::Deserialize)]
pub struct Done {
    done: Option<String>,
}

impl Done {
    pub fn is(&self, what: &str) -> bool {
        self.done.as_deref() == Some(what)
    }
}

/// A refused form's messages, by field, in the page's language.
#[derive(Default)]
pub struct FieldMessages(Vec<(String, String)>);

impl FieldMessages {
    pub fn of(lang: Lang, errors: &carteiro_core::FieldErrors) -> Self {
        Self(errors.0.iter().map(|e| (e.field.clone(), lang.rule(&e.message))).collect())
    }

    pub fn one(field: &str, message: impl Into<String>) -> Self {
        Self(vec![(field.to_owned(), message.into())])
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.iter().find(|(f, _)| f == field).map(|(_, m)| m.as_str())
    }
}

pub struct PageUser {
    pub username: String,
    pub platform: bool,
    /// The company a company administrator manages.
    pub company: Option<String>,
}

/// A notice at the top of the page: something done, or refused.
pub struct Flash {
    pub ok: bool,
    pub text: String,
}

pub struct Page {
    pub lang: Lang,
    pub t: &'static Texts,
    pub title: String,
    pub user: Option<PageUser>,
    pub csrf: String,
    /// The page's own path and query: where a language switch comes back to.
    pub path: String,
    pub flash: Option<Flash>,
}

impl Page {
    pub fn new(lang: Lang, title: String, user: Option<PageUser>, csrf: String, path: String) -> Self {
        Self { lang, t: texts::texts(lang), title, user, csrf, path, flash: None }
    }

    pub fn with_flash(mut self, ok: bool, text: impl Into<String>) -> Self {
        self.set_flash(ok, text);
        self
    }

    pub fn set_flash(&mut self, ok: bool, text: impl Into<String>) {
        self.flash = Some(Flash { ok, text: text.into() });
    }

    pub fn tag(&self) -> &'static str {
        self.lang.tag()
    }

    /// The link that switches to `tag` and comes back here.
    pub fn switch_to(&self, tag: &str) -> String {
        format!("/lang/{tag}?back={}", urlencode(&self.path))
    }

    pub fn status(&self, status: &str) -> String {
        texts::status(self.lang, status)
    }

    pub fn rule(&self, message: &str) -> String {
        self.lang.rule(message)
    }

    pub fn is_platform(&self) -> bool {
        self.user.as_ref().is_some_and(|u| u.platform)
    }
}
