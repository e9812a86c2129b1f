//! A minimal browser for the console's HTTP-level tests: keeps cookies,
//! follows no redirect by itself, and sends each form with the CSRF token of
//! the page it was last shown.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use reqwest::header::{ACCEPT_LANGUAGE, COOKIE, LOCATION, SET_COOKIE};

use super::app::Carteiro;

pub struct Browser {
    base: String,
    http: reqwest::Client,
    cookies: BTreeMap<String, String>,
    pub accept_language: String,
    /// The CSRF token of the last page shown.
    pub csrf: String,
}

/// A page as the browser received it.
pub struct Shown {
    pub status: StatusCode,
    pub location: Option<String>,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Browser {
    pub fn new(app: &Carteiro) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Self {
            base: app.base.clone(),
            http,
            cookies: BTreeMap::new(),
            accept_language: "en".into(),
            csrf: String::new(),
        }
    }

    /// A browser logged in as `username`.
    pub async fn logged_in(app: &Carteiro, username: &str, password: &str) -> Self {
        let mut browser = Self::new(app);
        let shown = browser.login(username, password).await;
        assert_eq!(shown.status, StatusCode::SEE_OTHER, "login as {username}: {}", shown.body);
        browser
    }

    pub async fn login(&mut self, username: &str, password: &str) -> Shown {
        self.get("/login").await;
        self.post("/login", &[("username", username), ("password", password), ("next", "/")]).await
    }

    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies.get(name).map(String::as_str)
    }

    pub fn set_cookie(&mut self, name: &str, value: &str) {
        self.cookies.insert(name.to_owned(), value.to_owned());
    }

    pub async fn get(&mut self, path: &str) -> Shown {
        let request = self.http.get(format!("{}{path}", self.base));
        self.send(request).await
    }

    /// Posts a form with the current CSRF token (unless the form gives its own `csrf`).
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Shown {
        let mut form: Vec<(String, String)> = fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        if !fields.iter().any(|(k, _)| *k == "csrf") {
            form.push(("csrf".into(), self.csrf.clone()));
        }
        let request = self.http.post(format!("{}{path}", self.base)).form(&form);
        self.send(request).await
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Shown {
        let cookies: Vec<String> = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let response = request
            .header(COOKIE, cookies.join("; "))
            .header(ACCEPT_LANGUAGE, &self.accept_language)
            .send()
            .await
            .expect("carteiro answers");
        for set in response.headers().get_all(SET_COOKIE) {
            let set = set.to_str().unwrap();
            let (pair, attributes) = set.split_once(';').unwrap_or((set, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() || attributes.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        let status = response.status();
        let location = response.headers().get(LOCATION).map(|l| l.to_str().unwrap().to_owned());
        let headers = response.headers().clone();
        let body = response.text().await.unwrap();
        if let Some(csrf) = hidden_value(&body, "csrf") {
            self.csrf = csrf;
        }
        Shown { status, location, headers, body }
    }
}

/// The value of the first hidden input named `name`.
pub fn hidden_value(body: &str, name: &str) -> Option<String> {
    let at = body.find(&format!("name=\"{name}\" value=\""))?;
    let rest = &body[at + name.len() + 15..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// The text of the element carrying `marker` (an attribute, say), up to its closing tag.
pub fn element_text(body: &str, marker: &str) -> Option<String> {
    let at = body.find(marker)?;
    let start = at + body[at..].find('>')? + 1;
    let end = start + body[start..].find('<')?;
    Some(html_unescape(&body[start..end]))
}

pub fn html_unescape(text: &str) -> String {
    text.replace("&#39;", "'")
        .replace("&#34;", "\"")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}
