//! An OAuth 2 token endpoint on loopback (RFC 6749 §4.1.3 refresh and §4.4
//! client credentials), the bearer tokens it hands out kept in a file that the
//! aiosmtpd peer reads at each AUTH (`--tokens-file`): a token works at the
//! SMTP server exactly while the endpoint holds it valid, so a test sees a
//! refresh when one expires, and a clear failure once the grant is revoked.
//!
//! ```ignore
//! let endpoint = TokenEndpoint::start().await; // tokens live 2 s
//! let mut peer = SmtpPeer::start(&endpoint.peer_args()).await;
//! // connection: username = endpoint.options.user, oauth: token_url = endpoint.url,
//! // client_id / client_secret / refresh_token = endpoint.options.…
//! ```
//!
//! Answers, as Google's:
//! - `grant_type=refresh_token` (client_id, client_secret unless `client_secret`
//!   is `None`, refresh_token) and `grant_type=client_credentials` (client_id,
//!   client_secret, scope): 200 `{"access_token": "tok-N", "token_type":
//!   "Bearer", "expires_in": N, "scope": …}`, each token new (`tok-1`, `tok-2`…);
//! - the client may authenticate in the body or with HTTP Basic (§2.3.1);
//! - a wrong client: 401 `invalid_client`; a wrong refresh token, or any grant
//!   after `revoke()`: 400 `{"error": "invalid_grant", "error_description":
//!   "Token has been expired or revoked."}`; a wrong scope: 400 `invalid_scope`;
//!   another grant: 400 `unsupported_grant_type`; not a form: 400
//!   `invalid_request`; during `set_outage(true)`: 503 `temporarily_unavailable`.
//!
//! Any path is accepted (Google's is `/token`, Microsoft's
//! `/TENANT/oauth2/v2.0/token`); `requests()` records each one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub const REVOKED_DESCRIPTION: &str = "Token has been expired or revoked.";

/// What the endpoint accepts and hands out.
#[derive(Debug, Clone)]
pub struct TokenOptions {
    pub client_id: String,
    /// `None`: the refresh grant takes any secret or none (an installed app).
    pub client_secret: Option<String>,
    pub refresh_token: String,
    /// The scope `client_credentials` must ask for; `None`: any.
    pub scope: Option<String>,
    /// The mailbox the tokens are for: the user of the tokens file (the SMTP user name).
    pub user: String,
    /// How long a token lives, in seconds (`expires_in`).
    pub expires_in: u64,
}

impl Default for TokenOptions {
    fn default() -> Self {
        Self {
            client_id: "carteiro-test-client".into(),
            client_secret: Some("carteiro-test-client-secret".into()),
            refresh_token: "carteiro-test-refresh-token".into(),
            scope: None,
            user: "relay@acme.example".into(),
            expires_in: 2,
        }
    }
}

/// One request the endpoint answered.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub method: String,
    pub path: String,
    /// The form fields (client_secret included).
    pub form: BTreeMap<String, String>,
    /// The client authenticated with HTTP Basic rather than in the form.
    pub basic_auth: bool,
    pub status: u16,
    /// The token handed out, if any.
    pub token: Option<String>,
}

impl TokenRequest {
    pub fn grant_type(&self) -> Option<&str> {
        self.form.get("grant_type").map(String::as_str)
    }
}

pub struct TokenEndpoint {
    /// `http://127.0.0.1:PORT/token`.
    pub url: String,
    pub port: u16,
    pub options: TokenOptions,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

struct Shared {
    state: Mutex<State>,
    tokens_file: PathBuf,
}

struct State {
    options: TokenOptions,
    revoked: bool,
    outage: bool,
    /// Every token handed out, with the instant it stops working.
    issued: Vec<(String, Instant)>,
    requests: Vec<TokenRequest>,
    /// The tokens the file holds now.
    written: Option<Vec<String>>,
}

impl TokenEndpoint {
    /// With the default options: tokens for `relay@acme.example`, living 2 s.
    pub async fn start() -> Self {
        Self::start_with(TokenOptions::default()).await
    }

    pub async fn start_with(options: TokenOptions) -> Self {
        let dir = tempfile::Builder::new().prefix("carteiro-oauth-").tempdir().unwrap();
        #[cfg(unix)]
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                options: options.clone(),
                revoked: false,
                outage: false,
                issued: Vec::new(),
                requests: Vec::new(),
                written: None,
            }),
            tokens_file: dir.path().join("tokens"),
        });
        // The file exists from the start (empty: no token works yet).
        shared.sync_tokens_file(&mut shared.lock());

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = {
            let shared = shared.clone();
            tokio::spawn(async move {
                while let Ok((socket, _)) = listener.accept().await {
                    tokio::spawn(serve_connection(socket, shared.clone()));
                }
            })
        };
        // Expired tokens leave the file on time, with or without requests.
        let expiry = {
            let shared = shared.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(25)).await;
                    shared.sync_tokens_file(&mut shared.lock());
                }
            })
        };
        Self {
            url: format!("http://127.0.0.1:{port}/token"),
            port,
            options,
            shared,
            tasks: vec![server, expiry],
            _dir: dir,
        }
    }

    /// The file of the tokens valid now, one `USER:TOKEN` a line, for the peer's `--tokens-file`.
    pub fn tokens_file(&self) -> &Path {
        &self.shared.tokens_file
    }

    /// `["--tokens-file", PATH]`, to add to `SmtpPeer::start`'s flags.
    pub fn peer_args(&self) -> Vec<String> {
        vec!["--tokens-file".into(), self.tokens_file().display().to_string()]
    }

    /// Revokes the grant: every token stops working now, and every later token request fails with `invalid_grant`.
    pub fn revoke(&self) {
        let mut state = self.shared.lock();
        state.revoked = true;
        state.issued.iter_mut().for_each(|(_, until)| *until = Instant::now());
        self.shared.sync_tokens_file(&mut state);
    }

    /// Every token handed out so far expires now (the grant stays good: the next refresh works).
    pub fn expire_now(&self) {
        let mut state = self.shared.lock();
        state.issued.iter_mut().for_each(|(_, until)| *until = Instant::now());
        self.shared.sync_tokens_file(&mut state);
    }

    /// The lifetime of the tokens handed out from now on.
    pub fn set_expires_in(&self, seconds: u64) {
        self.shared.lock().options.expires_in = seconds;
    }

    /// While on, every request gets 503 `temporarily_unavailable` (the tokens already out keep working).
    pub fn set_outage(&self, on: bool) {
        self.shared.lock().outage = on;
    }

    /// How many token requests it has answered (refused ones included).
    pub fn request_count(&self) -> usize {
        self.shared.lock().requests.len()
    }

    /// Every request answered, in order.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.shared.lock().requests.clone()
    }

    /// Every token handed out, in order (`tok-1`, `tok-2`…).
    pub fn issued(&self) -> Vec<String> {
        self.shared.lock().issued.iter().map(|(token, _)| token.clone()).collect()
    }

    /// The tokens that work now.
    pub fn valid_tokens(&self) -> Vec<String> {
        self.shared.lock().valid()
    }
}

impl Drop for TokenEndpoint {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Rewrites the tokens file when the valid tokens changed (atomically: the peer never reads half a file).
    fn sync_tokens_file(&self, state: &mut State) {
        let valid = state.valid();
        if state.written.as_ref() == Some(&valid) {
            return;
        }
        let text: String = valid.iter().map(|token| format!("{}:{token}\n", state.options.user)).collect();
        let temporary = self.tokens_file.with_extension("tmp");
        std::fs::write(&temporary, text).unwrap();
        std::fs::rename(&temporary, &self.tokens_file).unwrap();
        state.written = Some(valid);
    }

    fn answer(&self, request: &HttpRequest) -> (u16, Value) {
        let mut state = self.lock();
        let form = request.form();
        let basic = request.basic_credentials();
        let (status, body, token) = state.decide(request, &form, basic.as_ref());
        state.requests.push(TokenRequest {
            method: request.method.clone(),
            path: request.path.clone(),
            form,
            basic_auth: basic.is_some(),
            status,
            token,
        });
        // The token is in the file before the client has it.
        self.sync_tokens_file(&mut state);
        (status, body)
    }
}

impl State {
    fn valid(&self) -> Vec<String> {
        let now = Instant::now();
        self.issued.iter().filter(|(_, until)| *until > now).map(|(token, _)| token.clone()).collect()
    }

    fn decide(
        &mut self,
        request: &HttpRequest,
        form: &BTreeMap<String, String>,
        basic: Option<&(String, String)>,
    ) -> (u16, Value, Option<String>) {
        let error = |status: u16, code: &str, description: &str| {
            (status, json!({"error": code, "error_description": description}), None)
        };
        if self.outage {
            return error(503, "temporarily_unavailable", "The token endpoint is down (scripted).");
        }
        if request.method != "POST" {
            return error(405, "invalid_request", "Token requests are POSTed.");
        }
        let content_type = request.header("content-type").unwrap_or_default().to_ascii_lowercase();
        if !content_type.starts_with("application/x-www-form-urlencoded") {
            return error(400, "invalid_request", "The body must be application/x-www-form-urlencoded.");
        }
        let (client_id, client_secret) = match basic {
            Some((id, secret)) => (Some(id.as_str()), Some(secret.as_str())),
            None => (form.get("client_id").map(String::as_str), form.get("client_secret").map(String::as_str)),
        };
        let Some(grant_type) = form.get("grant_type") else {
            return error(400, "invalid_request", "Missing required parameter: grant_type");
        };
        let secret_ok = |required: bool| match &self.options.client_secret {
            Some(expected) => client_secret == Some(expected.as_str()),
            None => !required,
        };
        let scope = match grant_type.as_str() {
            "refresh_token" => {
                if client_id != Some(self.options.client_id.as_str()) || !secret_ok(false) {
                    return error(401, "invalid_client", "The OAuth client was not found.");
                }
                let Some(refresh_token) = form.get("refresh_token") else {
                    return error(400, "invalid_request", "Missing required parameter: refresh_token");
                };
                if self.revoked || *refresh_token != self.options.refresh_token {
                    return error(400, "invalid_grant", REVOKED_DESCRIPTION);
                }
                "https://mail.google.com/".to_owned()
            }
            "client_credentials" => {
                if client_id != Some(self.options.client_id.as_str()) || !secret_ok(true) {
                    return error(401, "invalid_client", "The OAuth client was not found.");
                }
                let Some(scope) = form.get("scope") else {
                    return error(400, "invalid_request", "Missing required parameter: scope");
                };
                if self.options.scope.as_ref().is_some_and(|expected| expected != scope) {
                    return error(400, "invalid_scope", "The provided scope is not valid for this client.");
                }
                if self.revoked {
                    return error(400, "invalid_grant", REVOKED_DESCRIPTION);
                }
                scope.clone()
            }
            other => return error(400, "unsupported_grant_type", &format!("Invalid grant_type: {other}")),
        };
        let token = format!("tok-{}", self.issued.len() + 1);
        let lifetime = Duration::from_secs(self.options.expires_in);
        self.issued.push((token.clone(), Instant::now() + lifetime));
        let body = json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": self.options.expires_in,
            "scope": scope,
        });
        (200, body, Some(token))
    }
}

struct HttpRequest {
    method: String,
    path: String,
    /// Names in lower case.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl HttpRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn form(&self) -> BTreeMap<String, String> {
        form_decode(&String::from_utf8_lossy(&self.body))
    }

    /// `Authorization: Basic base64(urlencode(id) ":" urlencode(secret))`.
    fn basic_credentials(&self) -> Option<(String, String)> {
        let value = self.header("authorization")?;
        let (scheme, encoded) = value.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (id, secret) = decoded.split_once(':')?;
        Some((percent_decode(id), percent_decode(secret)))
    }
}

async fn serve_connection(mut socket: TcpStream, shared: Arc<Shared>) {
    let request = match tokio::time::timeout(Duration::from_secs(10), read_request(&mut socket)).await {
        Ok(Ok(request)) => request,
        Ok(Err(problem)) => {
            let body = json!({"error": "invalid_request", "error_description": problem});
            let _ = write_response(&mut socket, 400, &body).await;
            return;
        }
        Err(_) => return,
    };
    let (status, body) = shared.answer(&request);
    let _ = write_response(&mut socket, status, &body).await;
}

async fn write_response(socket: &mut TcpStream, status: u16, body: &Value) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let body = body.to_string();
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\n\
         Content-Type: application/json; charset=utf-8\r\n\
         Cache-Control: no-store\r\n\
         Pragma: no-cache\r\n\
         Content-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(response.as_bytes()).await?;
    socket.shutdown().await
}

const MAX_REQUEST: usize = 1024 * 1024;

async fn read_request(socket: &mut TcpStream) -> Result<HttpRequest, String> {
    let mut buffer = Vec::new();
    let head_end = loop {
        if let Some(at) = find(&buffer, b"\r\n\r\n") {
            break at;
        }
        read_more(socket, &mut buffer).await?;
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut rest = buffer[head_end + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let (Some(method), Some(target), Some(_version)) = (request_line.next(), request_line.next(), request_line.next())
    else {
        return Err("malformed request line".into());
    };
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    if header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        socket.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.map_err(|e| e.to_string())?;
    }
    let body = if header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        loop {
            if let Some(body) = dechunk(&rest)? {
                break body;
            }
            read_more(socket, &mut rest).await?;
        }
    } else {
        let length: usize = match header("content-length") {
            Some(value) => value.parse().map_err(|_| format!("bad Content-Length {value:?}"))?,
            None => 0,
        };
        if length > MAX_REQUEST {
            return Err("body too large".into());
        }
        while rest.len() < length {
            read_more(socket, &mut rest).await?;
        }
        rest.truncate(length);
        rest
    };
    let path = target.split('?').next().unwrap_or_default().to_owned();
    Ok(HttpRequest { method: method.to_owned(), path, headers, body })
}

async fn read_more(socket: &mut TcpStream, buffer: &mut Vec<u8>) -> Result<(), String> {
    if buffer.len() > MAX_REQUEST {
        return Err("request too large".into());
    }
    let mut chunk = [0u8; 8192];
    let n = socket.read(&mut chunk).await.map_err(|e| e.to_string())?;
    if n == 0 {
        return Err("the connection closed in the middle of the request".into());
    }
    buffer.extend_from_slice(&chunk[..n]);
    Ok(())
}

/// The body of a complete chunked encoding, or `None` while more is needed.
fn dechunk(data: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let Some(line_end) = find(&data[at..], b"\r\n") else { return Ok(None) };
        let size_text = String::from_utf8_lossy(&data[at..at + line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| format!("bad chunk size {size_text:?}"))?;
        at += line_end + 2;
        if size == 0 {
            // Trailers (none expected) up to the empty line.
            return Ok(find(&data[at..], b"\r\n").map(|_| body));
        }
        if data.len() < at + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&data[at..at + size]);
        at += size + 2;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}

fn form_decode(body: &str) -> BTreeMap<String, String> {
    body.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(name), percent_decode(value))
        })
        .collect()
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 3 <= bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(byte) => {
                        out.push(byte);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
