//! Secrets never leave carteiro in clear (SPEC §1, §6): no SMTP password in
//! any API response, log line, CLI output or error message, and none in the
//! database's bytes on disk; the master key is the operator's alone, and a
//! wrong one is said so instead of sending a wrong password.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::app::{ADMIN_PASSWORD, system_message, user_message};
use crate::helpers::console::Browser;
use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(20);
/// Everything carteiro can say, and more than operators would switch on.
const VERBOSE: &str = "debug,carteiro=trace";

const GLOBAL_ACCOUNT: &str = "relay@plataforma.example";
const GLOBAL_SECRET: &str = "SMTP-GLOBAL-SECRET-7731";
const ACME_ACCOUNT: &str = "relay@acme.example";
const ACME_SECRET: &str = "SMTP-ACME-SECRET-4412";
const USER_ACCOUNT: &str = "ana@acme.example";
const USER_SECRET: &str = "SMTP-USER-SECRET-9901";
/// Stored for company gamma, whose server refuses it (a failed AUTH).
const GAMMA_ACCOUNT: &str = "relay@gamma.example";
const GAMMA_SECRET: &str = "SMTP-GAMMA-SECRET-2718";
/// Typed into unsaved settings on a Test connection, and refused by the server.
const TYPED_SECRET: &str = "SMTP-TYPED-SECRET-5150";
/// Company delta logs in with XOAUTH2 through a SOCKS5 proxy: every secret such a connection holds.
const DELTA_ACCOUNT: &str = "relay@delta.example";
const PROXY_SECRET: &str = "PROXY-DELTA-SECRET-6021";
const OAUTH_CLIENT_SECRET: &str = "OAUTH-CLIENT-SECRET-8808";
const OAUTH_REFRESH_TOKEN: &str = "OAUTH-REFRESH-TOKEN-1337";
const OAUTH_ACCESS_TOKEN: &str = "OAUTH-ACCESS-TOKEN-4096";

/// Every secret of the scenario, with the account it logs in as.
const SECRETS: [(&str, &str); 9] = [
    (GLOBAL_ACCOUNT, GLOBAL_SECRET),
    (ACME_ACCOUNT, ACME_SECRET),
    (USER_ACCOUNT, USER_SECRET),
    (GAMMA_ACCOUNT, GAMMA_SECRET),
    (GLOBAL_ACCOUNT, TYPED_SECRET),
    ("p", PROXY_SECRET),
    (DELTA_ACCOUNT, OAUTH_CLIENT_SECRET),
    (DELTA_ACCOUNT, OAUTH_REFRESH_TOKEN),
    (DELTA_ACCOUNT, OAUTH_ACCESS_TOKEN),
];

/// The forms a password takes on its way out: as typed, base64 for AUTH
/// LOGIN, and the base64 AUTH PLAIN token (with and without authorization identity).
fn forms_of(account: &str, secret: &str) -> Vec<(String, String)> {
    vec![
        (secret.to_owned(), format!("{secret} in clear")),
        (B64.encode(secret), format!("{secret} as AUTH LOGIN base64")),
        (B64.encode(format!("\0{account}\0{secret}")), format!("{secret} as an AUTH PLAIN token")),
        (
            B64.encode(format!("{account}\0{account}\0{secret}")),
            format!("{secret} as an AUTH PLAIN token with authzid"),
        ),
    ]
}

fn all_forms() -> Vec<(String, String)> {
    SECRETS.iter().flat_map(|(account, secret)| forms_of(account, secret)).collect()
}

/// Where each form of a secret appears in `text`, one line per finding.
fn findings(place: &str, text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        for (form, what) in all_forms() {
            if let Some(at) = line.find(&form) {
                found.push(format!("{what} in {place}, line {}: …{}…", n + 1, around(line, at, form.len())));
            }
        }
    }
    found
}

/// The text around a match, enough to tell where it sits.
fn around(line: &str, at: usize, len: usize) -> &str {
    let mut start = at.saturating_sub(160);
    while !line.is_char_boundary(start) {
        start -= 1;
    }
    let mut end = (at + len + 80).min(line.len());
    while !line.is_char_boundary(end) {
        end += 1;
    }
    &line[start..end]
}

fn findings_in_bytes(place: &str, bytes: &[u8]) -> Vec<String> {
    all_forms()
        .into_iter()
        .filter(|(form, _)| bytes.windows(form.len()).any(|w| w == form.as_bytes()))
        .map(|(_, what)| format!("{what} in the bytes of {place}"))
        .collect()
}

/// What the scenario left behind: every answer, the log, the CLI's outputs, the database files.
struct Evidence {
    /// (request, answer body) of every API call made.
    responses: Vec<(String, String)>,
    logs: String,
    /// (command, standard output and error) of every CLI run.
    cli: Vec<(String, String)>,
    /// (file name, bytes) of the SQLite database and its WAL.
    database: Vec<(String, Vec<u8>)>,
    /// (request, page) of every console page and form answer.
    console: Vec<(String, String)>,
}

/// An API client that keeps every answer it gets.
struct Recorder<'a> {
    app: &'a Carteiro,
    responses: Vec<(String, String)>,
}

impl<'a> Recorder<'a> {
    async fn call(
        &mut self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (status, answer) = self.app.call(method.clone(), path, bearer, body).await;
        self.responses.push((format!("{method} {path} → {status}"), answer.to_string()));
        (status, answer)
    }

    async fn admin(&mut self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let token = self.app.token.clone();
        self.call(method, path, Some(&token), body).await
    }

    /// An admin call that must succeed.
    async fn admin_ok(&mut self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, answer) = self.admin(method.clone(), path, body).await;
        assert!(status.is_success(), "{method} {path} → {status}: {answer}");
        answer
    }

    /// A body sent as raw bytes, for documents that are not valid JSON.
    async fn admin_raw(&mut self, method: Method, path: &str, raw: String) -> StatusCode {
        let response = self
            .app
            .http
            .request(method.clone(), self.app.url(path))
            .bearer_auth(&self.app.token)
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        let status = response.status();
        self.responses.push((format!("{method} {path} (raw) → {status}"), response.text().await.unwrap()));
        status
    }

    async fn test_connection(&mut self, request: Value) -> Value {
        self.admin_ok(Method::POST, "/api/v1/test-connection", Some(request)).await
    }

    async fn send(&mut self, company: &Company, message: Value) -> String {
        let (status, answer) = self.call(Method::POST, "/api/v1/messages", Some(&company.key), Some(message)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        answer["id"].as_str().unwrap().to_owned()
    }

    async fn read_message(&mut self, company: &Company, id: &str) -> Value {
        let (status, answer) =
            self.call(Method::GET, &format!("/api/v1/messages/{id}"), Some(&company.key), None).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        answer
    }
}

/// Runs the carteiro CLI on the data directory with the given environment, logging verbosely.
async fn carteiro_cli(data_dir: &Path, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_carteiro"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .args(crate::helpers::store::args(data_dir))
        .env("CARTEIRO_HOSTNAME", "carteiro.test")
        .env("RUST_LOG", VERBOSE)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default().as_bytes()).await.unwrap();
    drop(input);
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await.expect("the CLI finishes").unwrap()
}

fn printed(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// A connection at STARTTLS with AUTH to one of the peers.
fn authenticated(certs: &TestCertificates, port: u16, account: &str, password: &str) -> Value {
    json!({
        "enabled": true, "host": "localhost", "port": port, "security": "starttls", "auth_enabled": true,
        "username": account, "password": password, "timeout_s": 10, "tls_ca_pem": certs.ca_pem
    })
}

async fn wait_until_sent(app: &Carteiro, company: &Company, id: &str) {
    app.wait_for_status(company, id, "sent", WAIT).await;
}

/// Three levels with recognisable passwords, each used for real: settings
/// read and written (also wrongly), explained, tested (with success and with
/// refused passwords), messages delivered and read back, the CLI run.
async fn scenario() -> Evidence {
    let certs = TestCertificates::for_localhost();
    let mut global_peer = SmtpPeer::starttls(&certs, &format!("{GLOBAL_ACCOUNT}:{GLOBAL_SECRET}")).await;
    let mut acme_peer = SmtpPeer::starttls(&certs, &format!("{ACME_ACCOUNT}:{ACME_SECRET}")).await;
    let mut user_peer = SmtpPeer::starttls(&certs, &format!("{USER_ACCOUNT}:{USER_SECRET}")).await;
    // A server that knows none of the passwords: every AUTH against it is refused.
    let refusing_peer = SmtpPeer::starttls(&certs, &format!("{GAMMA_ACCOUNT}:another-password-entirely")).await;

    let app = Carteiro::start_with(&[], &[("RUST_LOG", VERBOSE)]).await;
    let mut api = Recorder { app: &app, responses: Vec::new() };

    // Every level gets its password.
    let global_doc = json!({
        "connection": authenticated(&certs, global_peer.port, GLOBAL_ACCOUNT, GLOBAL_SECRET),
        "policy": {"default_sender_enabled": true, "default_sender_name": "Plataforma", "default_sender_address": "noreply@plataforma.example"}
    });
    api.admin_ok(Method::PUT, "/api/v1/settings/global", Some(global_doc.clone())).await;
    let acme = app.create_company("acme").await;
    let beta = app.create_company("beta").await;
    let gamma = app.create_company("gamma").await;
    let acme_doc = json!({"connection": authenticated(&certs, acme_peer.port, ACME_ACCOUNT, ACME_SECRET)});
    api.admin_ok(Method::PUT, "/api/v1/companies/acme/settings", Some(acme_doc.clone())).await;
    api.admin_ok(
        Method::PUT,
        "/api/v1/companies/acme/users/42/settings",
        Some(json!({"connection": authenticated(&certs, user_peer.port, USER_ACCOUNT, USER_SECRET)})),
    )
    .await;
    api.admin_ok(
        Method::PUT,
        "/api/v1/companies/gamma/settings",
        Some(json!({"connection": authenticated(&certs, refusing_peer.port, GAMMA_ACCOUNT, GAMMA_SECRET)})),
    )
    .await;
    let delta = app.create_company("delta").await;
    let delta_doc = json!({"connection": {
        "host": "smtp.delta.example", "port": 587, "security": "starttls", "auth_enabled": true,
        "auth_mechanism": "xoauth2", "username": DELTA_ACCOUNT, "timeout_s": 10,
        "oauth": {"token_url": "https://login.delta.example/token", "client_id": "delta-client",
                  "client_secret": OAUTH_CLIENT_SECRET, "refresh_token": OAUTH_REFRESH_TOKEN, "access_token": OAUTH_ACCESS_TOKEN},
        "proxy": {"enabled": true, "kind": "socks5", "address": "127.0.0.1", "port": crate::helpers::peers::free_port(),
                  "username": "p", "password": PROXY_SECRET}
    }});
    let saved = api.admin_ok(Method::PUT, "/api/v1/companies/delta/settings", Some(delta_doc)).await;
    assert_eq!(saved["connection"]["proxy"]["password_set"], true, "{saved}");
    assert_eq!(saved["connection"]["oauth"]["refresh_token_set"], true, "{saved}");
    // Saving again with the password left blank keeps it.
    let mut blank = global_doc.clone();
    blank["connection"]["password"] = json!("");
    api.admin_ok(Method::PUT, "/api/v1/settings/global", Some(blank)).await;

    // Invalid documents that carry a password beside the mistake.
    let mut too_short = acme_doc.clone();
    too_short["connection"]["timeout_s"] = json!(5);
    let (status, answer) = api.admin(Method::PUT, "/api/v1/companies/acme/settings", Some(too_short)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["field"], "connection.timeout_s", "{answer}");
    let mut wrong_shape = acme_doc.clone();
    wrong_shape["connection"]["port"] = json!("587");
    let (status, answer) = api.admin(Method::PUT, "/api/v1/companies/acme/settings", Some(wrong_shape)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    let mut line_break = acme_doc.clone();
    line_break["connection"]["password"] = json!(format!("{ACME_SECRET}\r\nRSET"));
    let (status, answer) = api.admin(Method::PUT, "/api/v1/companies/acme/settings", Some(line_break)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["field"], "connection.password", "{answer}");
    let mut misspelt = acme_doc.clone();
    misspelt["connection"]["passwd"] = json!(ACME_SECRET);
    let (status, answer) = api.admin(Method::PUT, "/api/v1/companies/acme/settings", Some(misspelt)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    let mut proxy = acme_doc.clone();
    proxy["connection"]["proxy"] = json!({"enabled": true, "kind": "socks5", "address": "proxy.acme.example", "port": 1080, "username": "p", "password": ACME_SECRET});
    let (status, answer) = api.admin(Method::PUT, "/api/v1/companies/acme/settings", Some(proxy)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["connection"]["proxy"]["password_set"], true, "{answer}");
    let (status, answer) = api.admin(Method::PUT, "/api/v1/companies/acme/settings", Some(acme_doc.clone())).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let malformed = format!(r#"{{"connection": {{"host": "localhost", "password": "{ACME_SECRET}", "port": 25,,}}}}"#);
    assert_eq!(api.admin_raw(Method::PUT, "/api/v1/companies/acme/settings", malformed).await, StatusCode::BAD_REQUEST);

    // Reading every level, the effective values and the audit log.
    for path in [
        "/api/v1/settings/global",
        "/api/v1/companies/acme/settings",
        "/api/v1/companies/acme/users/42/settings",
        "/api/v1/companies/gamma/settings",
        "/api/v1/companies/acme/effective-settings",
        "/api/v1/companies/acme/effective-settings?user=42",
        "/api/v1/companies/beta/effective-settings",
        "/api/v1/companies/gamma/effective-settings",
        "/api/v1/companies",
        "/api/v1/audit",
        "/api/v1/audit?company=acme",
    ] {
        api.admin_ok(Method::GET, path, None).await;
    }

    // Test connection at each level, succeeding and failing at AUTH.
    let to = "admin@example.com";
    let report = api.test_connection(json!({"to": to})).await;
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(global_peer.next_message(WAIT).await.auth_user.as_deref(), Some(GLOBAL_ACCOUNT));
    let report = api.test_connection(json!({"company": "acme", "to": to})).await;
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(acme_peer.next_message(WAIT).await.auth_user.as_deref(), Some(ACME_ACCOUNT));
    let report = api.test_connection(json!({"company": "acme", "user": "42", "to": to})).await;
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(user_peer.next_message(WAIT).await.auth_user.as_deref(), Some(USER_ACCOUNT));
    let report = api.test_connection(json!({"company": "gamma", "to": to})).await;
    assert_eq!(report["ok"], false, "gamma's password is refused: {report:#}");
    let report = api.test_connection(json!({"company": "delta", "to": to})).await;
    assert_eq!(report["ok"], false, "nothing listens at delta's proxy: {report:#}");
    let mut typed = global_doc.clone();
    typed["connection"]["password"] = json!(TYPED_SECRET);
    let report = api.test_connection(json!({"settings": typed, "to": to})).await;
    assert_eq!(report["ok"], false, "a typed wrong password is refused: {report:#}");
    let mut stored_elsewhere = global_doc.clone();
    stored_elsewhere["connection"]["port"] = json!(refusing_peer.port);
    stored_elsewhere["connection"]["password"] = json!("");
    let report = api.test_connection(json!({"settings": stored_elsewhere, "to": to})).await;
    assert_eq!(report["ok"], false, "the stored global password is refused by another server: {report:#}");

    // Messages through each level, delivered with real AUTH, and read back.
    let through_global = api.send(&beta, system_message(&["cliente@example.com"])).await;
    let through_company = api.send(&acme, system_message(&["cliente@example.com"])).await;
    let through_user = api.send(&acme, user_message(&["cliente@example.com"])).await;
    let refused_login = api.send(&gamma, system_message(&["cliente@example.com"])).await;
    let through_proxy = api.send(&delta, system_message(&["cliente@example.com"])).await;
    assert_eq!(global_peer.next_message(WAIT).await.auth_user.as_deref(), Some(GLOBAL_ACCOUNT));
    assert_eq!(acme_peer.next_message(WAIT).await.auth_user.as_deref(), Some(ACME_ACCOUNT));
    assert_eq!(user_peer.next_message(WAIT).await.auth_user.as_deref(), Some(USER_ACCOUNT));
    wait_until_sent(&app, &beta, &through_global).await;
    wait_until_sent(&app, &acme, &through_company).await;
    wait_until_sent(&app, &acme, &through_user).await;
    let refused = eventually(WAIT, "gamma's refused login to be recorded as an attempt", || async {
        let message = app.message(&gamma, &refused_login).await;
        (!message["attempts"].as_array().unwrap().is_empty()).then_some(message)
    })
    .await;
    assert_ne!(refused["status"], "sent", "{refused:#}");
    api.read_message(&beta, &through_global).await;
    api.read_message(&acme, &through_company).await;
    api.read_message(&acme, &through_user).await;
    api.read_message(&gamma, &refused_login).await;
    eventually(WAIT, "delta's message to be tried through its proxy", || async {
        let message = app.message(&delta, &through_proxy).await;
        (!message["attempts"].as_array().unwrap().is_empty()).then_some(())
    })
    .await;
    api.read_message(&delta, &through_proxy).await;
    api.admin_ok(Method::GET, "/api/v1/companies/delta/settings", None).await;
    api.admin_ok(Method::GET, "/api/v1/companies/delta/effective-settings", None).await;
    api.call(Method::GET, "/api/v1/messages", Some(&acme.key), None).await;
    api.call(Method::GET, "/api/v1/messages", Some(&gamma.key), None).await;
    api.admin_ok(Method::GET, "/api/v1/companies/acme/messages", None).await;
    api.admin_ok(Method::GET, &format!("/api/v1/companies/gamma/messages/{refused_login}"), None).await;

    // The command line on the same data directory.
    let data_dir = app.data_dir();
    let mut typed_file = global_doc.clone();
    typed_file["connection"]["password"] = json!(TYPED_SECRET);
    let typed_file = typed_file.to_string();
    let runs: [(&[&str], Option<&str>); 9] = [
        (&["config", "export"], None),
        (&["config", "export", "--with-secrets"], None),
        (&["config", "explain", "--company", "delta"], None),
        (&["config", "explain", "--company", "acme", "--user", "42"], None),
        (&["config", "explain", "--company", "gamma"], None),
        (&["test-connection", "--to", to], None),
        (&["test-connection", "--company", "acme", "--user", "42", "--to", to], None),
        (&["test-connection", "--company", "gamma", "--to", to], None),
        (&["test-connection", "--settings", "-", "--to", to], Some(typed_file.as_str())),
    ];
    let mut cli = Vec::new();
    for (args, stdin) in runs {
        let output = carteiro_cli(&data_dir, args, &[], stdin).await;
        cli.push((format!("carteiro {}", args.join(" ")), printed(&output)));
    }
    assert_eq!(
        global_peer.next_message(WAIT).await.auth_user.as_deref(),
        Some(GLOBAL_ACCOUNT),
        "the CLI's test logged in"
    );

    let console = console_pages(&app, &[&through_company, &through_user, &refused_login]).await;
    let database = store::contents(&data_dir);
    Evidence { responses: api.responses, logs: app.logs(), cli, database, console }
}

/// Every console page of the scenario, and the answers to a Test connection
/// and a refused save with a password typed into the form.
async fn console_pages(app: &Carteiro, messages: &[&str]) -> Vec<(String, String)> {
    let mut browser = Browser::logged_in(app, "admin", ADMIN_PASSWORD).await;
    let mut pages =
        vec!["/settings/email".to_owned(), "/companies".to_owned(), "/messages".to_owned(), "/audit".to_owned()];
    for company in ["acme", "beta", "gamma"] {
        for tab in ["", "/email", "/users", "/effective?user=42", "/api-keys", "/admins", "/dkim"] {
            pages.push(format!("/companies/{company}{tab}"));
        }
    }
    pages.push("/companies/acme/users/42".to_owned());
    for id in messages {
        for company in ["acme", "gamma"] {
            pages.push(format!("/companies/{company}/messages/{id}"));
        }
    }
    let mut shown = Vec::new();
    for page in &pages {
        let answer = browser.get(page).await;
        shown.push((format!("GET {page} → {}", answer.status), answer.body));
    }
    browser.get("/settings/email").await;
    let typed = [
        ("connection.host", "localhost"),
        ("connection.auth_enabled", "true"),
        ("connection.username", GLOBAL_ACCOUNT),
        ("connection.password", TYPED_SECRET),
        ("connection.timeout_s", "10"),
        ("test_to", "admin@example.com"),
    ];
    for (action, extra) in [("test", None), ("test", Some(("fragment", "1"))), ("save", Some(("connection.port", "0")))]
    {
        let mut fields: Vec<(&str, &str)> = typed.to_vec();
        fields.push(("action", action));
        fields.extend(extra);
        let answer = browser.post("/settings/email", &fields).await;
        shown.push((format!("POST /settings/email ({action}) → {}", answer.status), answer.body));
    }
    assert!(shown.iter().filter(|(request, _)| request.contains("→ 200")).count() >= 25, "the console was browsed");
    shown
}

#[tokio::test]
async fn no_console_page_contains_a_secret() {
    let evidence = scenario().await;

    let leaks: Vec<String> = evidence
        .console
        .iter()
        .flat_map(|(request, page)| findings(&format!("the console's {request}"), page))
        .collect();
    assert!(leaks.is_empty(), "secrets in console pages:\n{}", leaks.join("\n"));
}

#[tokio::test]
async fn no_api_response_contains_a_secret() {
    let evidence = scenario().await;

    let leaks: Vec<String> = evidence
        .responses
        .iter()
        .flat_map(|(request, body)| findings(&format!("the answer to {request}"), body))
        .collect();
    assert!(evidence.responses.len() >= 40, "the scenario exercised the API: {} calls", evidence.responses.len());
    assert!(leaks.is_empty(), "secrets in API responses:\n{}", leaks.join("\n"));
}

#[tokio::test]
async fn no_log_line_contains_a_secret_even_at_trace_level() {
    let evidence = scenario().await;

    assert!(evidence.logs.contains("DEBUG"), "the log is verbose: debug lines were written");
    let leaks = findings("the serve log", &evidence.logs);
    assert!(leaks.is_empty(), "secrets in the log:\n{}", leaks.join("\n"));
}

#[tokio::test]
async fn no_cli_output_contains_a_secret() {
    let evidence = scenario().await;

    let output_of = |command: &str| &evidence.cli.iter().find(|(c, _)| c == command).expect(command).1;
    let explain = output_of("carteiro config explain --company acme --user 42");
    assert!(explain.contains(USER_ACCOUNT), "config explain shows the user's connection: {explain}");
    let export = output_of("carteiro config export");
    assert!(export.contains(DELTA_ACCOUNT), "the export holds delta's connection: {export}");
    assert!(output_of("carteiro config export --with-secrets").contains("v1:"), "sealed values, never clear ones");
    let leaks: Vec<String> = evidence
        .cli
        .iter()
        .flat_map(|(command, output)| findings(&format!("the output of `{command}`"), output))
        .collect();
    assert!(leaks.is_empty(), "secrets in CLI output:\n{}", leaks.join("\n"));
}

#[tokio::test]
async fn stored_passwords_are_sealed_in_the_database_and_its_wal() {
    let evidence = scenario().await;

    let names: Vec<&str> = evidence.database.iter().map(|(name, _)| name.as_str()).collect();
    assert!(names.iter().any(|n| *n == "carteiro.db" || n.starts_with("pg_dump")), "the database was read: {names:?}");
    let all: Vec<u8> = evidence.database.iter().flat_map(|(_, bytes)| bytes.iter().copied()).collect();
    assert!(
        all.windows(USER_ACCOUNT.len()).any(|w| w == USER_ACCOUNT.as_bytes()),
        "the settings themselves are readable in the files, so a password in clear would be too"
    );
    assert!(all.windows(3).any(|w| w == b"v1:"), "the passwords are stored sealed (v1:…)");
    let leaks: Vec<String> =
        evidence.database.iter().flat_map(|(name, bytes)| findings_in_bytes(name, bytes)).collect();
    assert!(leaks.is_empty(), "secrets in clear on disk:\n{}", leaks.join("\n"));
}

#[cfg(unix)]
#[tokio::test]
async fn the_master_key_file_is_created_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let app = Carteiro::start().await;

    let key_file = app.data_dir().join("master.key");
    let mode = std::fs::metadata(&key_file).expect("a key file is created on first run").permissions().mode();

    assert_eq!(mode & 0o777, 0o600, "the key file is mode {:o}", mode & 0o777);
    let key = B64.decode(std::fs::read_to_string(&key_file).unwrap().trim()).expect("the key file holds base64");
    assert_eq!(key.len(), 32);
}

/// The base64 of 32 bytes, as `CARTEIRO_MASTER_KEY` takes it.
fn master_key(byte: u8) -> String {
    B64.encode([byte; 32])
}

#[tokio::test]
async fn a_master_key_from_the_environment_leaves_no_key_file_and_opens_the_passwords() {
    let certs = TestCertificates::for_localhost();
    let mut peer = SmtpPeer::starttls(&certs, &format!("{GLOBAL_ACCOUNT}:{GLOBAL_SECRET}")).await;
    let key = master_key(0x11);
    let mut app = Carteiro::start_with(&[], &[("CARTEIRO_MASTER_KEY", &key)]).await;
    app.set_global(json!({
        "connection": authenticated(&certs, peer.port, GLOBAL_ACCOUNT, GLOBAL_SECRET),
        "policy": {"default_sender_enabled": true, "default_sender_address": "noreply@plataforma.example"}
    }))
    .await;
    let beta = app.create_company("beta").await;

    app.restart().await;
    let id = app.send(&beta, system_message(&["cliente@example.com"])).await;

    assert_eq!(
        peer.next_message(WAIT).await.auth_user.as_deref(),
        Some(GLOBAL_ACCOUNT),
        "the password opened with the key from the environment"
    );
    app.wait_for_status(&beta, &id, "sent", WAIT).await;
    assert!(!app.data_dir().join("master.key").exists(), "no key file was written beside the database");
}

/// A `carteiro serve` on an existing data directory with another master key.
struct Relaunched {
    _child: Child,
    base: String,
    token: String,
    http: reqwest::Client,
    log: PathBuf,
}

impl Relaunched {
    async fn start(data_dir: &Path, log: PathBuf, key: &str) -> Self {
        let log_file = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_carteiro"))
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(crate::helpers::store::args(data_dir))
            .args(["--poll-ms", "50", "--retry-first-delay-s", "0.2", "--retry-max-delay-s", "1", "--lease-s", "3"])
            .env("CARTEIRO_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("CARTEIRO_HOSTNAME", "carteiro.test")
            .env("CARTEIRO_MASTER_KEY", key)
            .env("RUST_LOG", VERBOSE)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let address = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(rest) = line.strip_prefix("carteiro: API on http://") {
                    return rest.trim_end_matches("/api/v1").to_owned();
                }
            }
            panic!(
                "carteiro exited at start with another master key; its log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        })
        .await
        .expect("carteiro did not start in time");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let http = crate::helpers::http_client();
        let base = format!("http://{address}");
        let login: Value = http
            .post(format!("{base}/api/v1/login"))
            .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = login["token"].as_str().expect("the administrator logs in").to_owned();
        Self { _child: child, base, token, http, log }
    }

    async fn call(&self, method: Method, path: &str, bearer: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(bearer);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// What is left after carteiro stored a password under one master key and
/// came back with another: the peer that knows the password, a company, and a
/// message that was queued (scheduled) under the first key and falls due under the second.
struct KeyChanged {
    /// The first run, stopped; its data directory and log are used by the second.
    first: Carteiro,
    second: Relaunched,
    peer: SmtpPeer,
    beta: Company,
    scheduled: String,
}

async fn restarted_with_another_master_key() -> KeyChanged {
    let certs = TestCertificates::for_localhost();
    let peer = SmtpPeer::starttls(&certs, &format!("{GLOBAL_ACCOUNT}:{GLOBAL_SECRET}")).await;
    let mut first = Carteiro::start_with(&[], &[("CARTEIRO_MASTER_KEY", &master_key(0x11))]).await;
    first
        .set_global(json!({
            "connection": authenticated(&certs, peer.port, GLOBAL_ACCOUNT, GLOBAL_SECRET),
            "policy": {"default_sender_enabled": true, "default_sender_address": "noreply@plataforma.example"}
        }))
        .await;
    let beta = first.create_company("beta").await;
    let due = (time::OffsetDateTime::now_utc() + Duration::from_secs(3))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let mut later = system_message(&["cliente@example.com"]);
    later["send_at"] = json!(due);
    let scheduled = first.send(&beta, later).await;
    first.kill().await;

    let second = Relaunched::start(&first.data_dir(), first.log_path(), &master_key(0x22)).await;
    KeyChanged { first, second, peer, beta, scheduled }
}

fn mentions_the_master_key(text: &str) -> bool {
    text.to_lowercase().contains("master key")
}

#[tokio::test]
async fn after_a_master_key_change_reading_the_settings_shows_no_password_or_says_the_key_is_wrong() {
    let changed = restarted_with_another_master_key().await;

    let (status, settings) =
        changed.second.call(Method::GET, "/api/v1/settings/global", &changed.second.token, None).await;

    assert!(
        status == StatusCode::OK && settings["connection"]["password_set"] == true
            || mentions_the_master_key(&settings.to_string()),
        "reading the level either works (the password is not shown anyway) or says the master key does not open it; got {status} {settings}"
    );
    assert!(findings("the settings", &settings.to_string()).is_empty());
}

#[tokio::test]
async fn after_a_master_key_change_test_connection_says_the_key_does_not_open_the_password() {
    let changed = restarted_with_another_master_key().await;

    let (status, report) = changed
        .second
        .call(Method::POST, "/api/v1/test-connection", &changed.second.token, Some(json!({"to": "admin@example.com"})))
        .await;

    assert_ne!(report["ok"], true, "{report}");
    assert!(
        mentions_the_master_key(&report.to_string()),
        "the answer says the stored password cannot be opened with this master key; got {status} {report}"
    );
}

#[tokio::test]
async fn after_a_master_key_change_a_new_message_is_queued_or_refused_with_a_sentence_about_the_key() {
    let changed = restarted_with_another_master_key().await;

    let (status, answer) = changed
        .second
        .call(Method::POST, "/api/v1/messages", &changed.beta.key, Some(system_message(&["cliente@example.com"])))
        .await;

    assert!(
        status == StatusCode::ACCEPTED || mentions_the_master_key(&answer.to_string()),
        "the message is either accepted (and waits for the right key) or refused saying the master key is wrong; got {status} {answer}"
    );
}

#[tokio::test]
async fn after_a_master_key_change_a_queued_message_is_not_sent_and_says_why() {
    let mut changed = restarted_with_another_master_key().await;
    let second = &changed.second;
    let path = format!("/api/v1/messages/{}", changed.scheduled);

    let explained = tokio::time::timeout(WAIT, async {
        loop {
            let (_, message) = second.call(Method::GET, &path, &changed.beta.key, None).await;
            if mentions_the_master_key(&message.to_string()) || message["status"] == "sent" {
                return message;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;

    assert!(mentions_the_master_key(&second.logs()), "the log names the master key");
    assert!(changed.peer.received().is_empty(), "nothing reached the server with a password that could not be opened");
    let (_, last_seen) = second.call(Method::GET, &path, &changed.beta.key, None).await;
    let explained = explained.unwrap_or_else(|_| panic!("within {WAIT:?} the due message never said that the master key does not open the password; last seen: {last_seen:#}"));
    assert_ne!(explained["status"], "sent", "{explained:#}");
}

#[tokio::test]
async fn after_a_master_key_change_the_cli_says_the_key_does_not_open_the_password() {
    let changed = restarted_with_another_master_key().await;

    let output = carteiro_cli(
        &changed.first.data_dir(),
        &["config", "explain", "--company", "beta"],
        &[("CARTEIRO_MASTER_KEY", &master_key(0x22))],
        None,
    )
    .await;

    assert!(!output.status.success(), "{}", printed(&output));
    let error = String::from_utf8_lossy(&output.stderr);
    let last_line = error.lines().last().unwrap_or_default();
    assert!(
        last_line.starts_with("carteiro:") && mentions_the_master_key(last_line),
        "the last line says it in a sentence: {last_line}"
    );
    assert!(findings("the CLI", &printed(&output)).is_empty());
}
