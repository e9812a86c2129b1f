//! An OAuth 2 token endpoint on loopback (RFC 6749 §6 refresh token and §4.4
//! client credentials), answering as Google's does. The bearer tokens it
//! hands out are kept in a file that the aiosmtpd peer reads at each AUTH
//! (`--tokens-file`): a token works at the SMTP server exactly while the
//! endpoint holds it valid, so a test sees a refresh when one expires and a
//! clear failure once the grant is revoked.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::State as Shared;
use axum::http::StatusCode;
use axum::{Form, Json, Router};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

pub const REVOKED: &str = "Token has been expired or revoked.";

/// What the endpoint accepts and hands out.
#[derive(Debug, Clone)]
pub struct TokenOptions {
    pub client_id: String,
    pub client_secret: String,
    pub refresh_token: String,
    /// The scope `client_credentials` must ask for; `None`: any.
    pub scope: Option<String>,
    /// The mailbox the tokens are for (the SMTP user name).
    pub user: String,
    /// How long a token lives, in seconds (`expires_in`).
    pub expires_in: u64,
}

impl Default for TokenOptions {
    fn default() -> Self {
        Self {
            client_id: "carteiro-test-client".into(),
            client_secret: "carteiro-test-client-secret".into(),
            refresh_token: "carteiro-test-refresh-token".into(),
            scope: None,
            user: "relay@acme.example".into(),
            expires_in: 2,
        }
    }
}

/// One request the endpoint answered: its form and the status given.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub form: BTreeMap<String, String>,
    pub status: u16,
}

impl TokenRequest {
    pub fn grant_type(&self) -> Option<&str> {
        self.form.get("grant_type").map(String::as_str)
    }
}

pub struct TokenEndpoint {
    /// `http://127.0.0.1:PORT/token`.
    pub url: String,
    pub options: TokenOptions,
    state: Arc<Mutex<State>>,
    server: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

struct State {
    options: TokenOptions,
    revoked: bool,
    /// Every token handed out, with the instant it stops working.
    issued: Vec<(String, Instant)>,
    requests: Vec<TokenRequest>,
    tokens_file: PathBuf,
}

impl TokenEndpoint {
    /// With the default options: tokens for `relay@acme.example`, living 2 s.
    pub async fn start() -> Self {
        Self::start_with(TokenOptions::default()).await
    }

    pub async fn start_with(options: TokenOptions) -> Self {
        let dir = tempfile::Builder::new().prefix("carteiro-oauth-").tempdir().unwrap();
        let state = Arc::new(Mutex::new(State {
            options: options.clone(),
            revoked: false,
            issued: Vec::new(),
            requests: Vec::new(),
            tokens_file: dir.path().join("tokens"),
        }));
        lock(&state).write_tokens_file();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = Router::new().fallback(answer).with_state(state.clone());
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url: format!("http://127.0.0.1:{port}/token"), options, state, server, _dir: dir }
    }

    /// `["--tokens-file", PATH]`, to add to the peer's flags.
    pub fn peer_args(&self) -> Vec<String> {
        vec!["--tokens-file".into(), lock(&self.state).tokens_file.display().to_string()]
    }

    /// Revokes the grant: every token stops working now, and every later request fails with `invalid_grant`.
    pub fn revoke(&self) {
        let mut state = lock(&self.state);
        state.revoked = true;
        state.issued.iter_mut().for_each(|(_, until)| *until = Instant::now());
        state.write_tokens_file();
    }

    /// Every request answered, in order.
    pub fn requests(&self) -> Vec<TokenRequest> {
        lock(&self.state).requests.clone()
    }

    /// Every token handed out, in order (`tok-1`, `tok-2`…).
    pub fn issued(&self) -> Vec<String> {
        lock(&self.state).issued.iter().map(|(token, _)| token.clone()).collect()
    }

    /// The tokens that work now (an expired one also leaves the peer's file).
    pub fn valid_tokens(&self) -> Vec<String> {
        let state = lock(&self.state);
        state.write_tokens_file();
        state.valid()
    }
}

impl Drop for TokenEndpoint {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn answer(
    Shared(state): Shared<Arc<Mutex<State>>>,
    Form(form): Form<BTreeMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    let mut state = lock(&state);
    let (status, body) = state.decide(&form);
    state.requests.push(TokenRequest { form, status: status.as_u16() });
    // The token is in the file before the client has it.
    state.write_tokens_file();
    (status, Json(body))
}

impl State {
    fn valid(&self) -> Vec<String> {
        let now = Instant::now();
        self.issued.iter().filter(|(_, until)| *until > now).map(|(token, _)| token.clone()).collect()
    }

    /// One `USER:TOKEN` a line, replaced whole: the peer never reads half a file.
    fn write_tokens_file(&self) {
        let text: String = self.valid().iter().map(|token| format!("{}:{token}\n", self.options.user)).collect();
        let temporary = self.tokens_file.with_extension("tmp");
        std::fs::write(&temporary, text).unwrap();
        std::fs::rename(&temporary, &self.tokens_file).unwrap();
    }

    fn decide(&mut self, form: &BTreeMap<String, String>) -> (StatusCode, Value) {
        let refuse = |status, error: &str, description: &str| {
            (status, json!({"error": error, "error_description": description}))
        };
        let field = |name: &str| form.get(name).map(String::as_str);
        let o = &self.options;
        if field("client_id") != Some(&o.client_id) || field("client_secret") != Some(&o.client_secret) {
            return refuse(StatusCode::UNAUTHORIZED, "invalid_client", "The OAuth client was not found.");
        }
        let scope = match field("grant_type") {
            Some("refresh_token") if field("refresh_token") != Some(&o.refresh_token) => {
                return refuse(StatusCode::BAD_REQUEST, "invalid_grant", REVOKED);
            }
            Some("refresh_token") => "https://mail.google.com/",
            Some("client_credentials") => match field("scope") {
                Some(scope) if o.scope.as_deref().is_none_or(|expected| expected == scope) => scope,
                _ => {
                    return refuse(StatusCode::BAD_REQUEST, "invalid_scope", "The scope is not valid for this client.");
                }
            },
            _ => return refuse(StatusCode::BAD_REQUEST, "unsupported_grant_type", "Invalid grant_type."),
        };
        if self.revoked {
            return refuse(StatusCode::BAD_REQUEST, "invalid_grant", REVOKED);
        }
        let token = format!("tok-{}", self.issued.len() + 1);
        let body = json!({"access_token": token, "token_type": "Bearer", "expires_in": o.expires_in, "scope": scope});
        self.issued.push((token, Instant::now() + Duration::from_secs(o.expires_in)));
        (StatusCode::OK, body)
    }
}
