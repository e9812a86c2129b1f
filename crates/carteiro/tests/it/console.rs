//! The console over HTTP: who may open which page, the CSRF token every form
//! needs, sessions that end at once, throttled logins, forms that refuse
//! invalid values at their field and save nothing, Test connection against a
//! real server, messages cancelled and retried, both languages. (The browser
//! tests in `e2e/` drive the same pages in Chromium.)

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::app::{ADMIN_PASSWORD, user_message};
use crate::helpers::certs::TestCertificates;
use crate::helpers::console::{Browser, element_text, html_unescape};
use crate::helpers::peers::SmtpPeer;
use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(20);
const ACME_ADMIN: (&str, &str) = ("ana.acme", "acme-admin-password");

async fn platform(app: &Carteiro) -> Browser {
    Browser::logged_in(app, "admin", ADMIN_PASSWORD).await
}

/// Two companies, and a console administrator of the first.
async fn two_companies(app: &Carteiro) -> (Company, Company) {
    let acme = app.create_company("acme").await;
    let beta = app.create_company("beta").await;
    let (status, body) = app
        .admin(
            Method::POST,
            "/api/v1/companies/acme/admins",
            Some(json!({"username": ACME_ADMIN.0, "password": ACME_ADMIN.1})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (acme, beta)
}

async fn settings_of(app: &Carteiro, path: &str) -> Value {
    let (status, body) = app.admin(Method::GET, path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn audit_entries(app: &Carteiro) -> usize {
    app.admin(Method::GET, "/api/v1/audit", None).await.1["entries"].as_array().unwrap().len()
}

#[tokio::test]
async fn a_visitor_logs_in_to_the_page_asked_for_and_logs_out_for_good() {
    let app = Carteiro::start().await;
    let mut browser = Browser::new(&app);
    let shown = browser.get("/companies").await;
    assert_eq!(shown.status, StatusCode::SEE_OTHER);
    assert_eq!(shown.location.as_deref(), Some("/login?next=/companies"));

    browser.get("/login?next=/companies").await;
    let wrong = browser
        .post("/login", &[("username", "admin"), ("password", "not the password"), ("next", "/companies")])
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("The user name or password is wrong."));
    assert!(!wrong.body.contains("not the password"), "a password is never echoed");
    let shown =
        browser.post("/login", &[("username", "admin"), ("password", ADMIN_PASSWORD), ("next", "/companies")]).await;
    assert_eq!(shown.location.as_deref(), Some("/companies"));
    let cookie = shown.headers.get("set-cookie").map(|c| c.to_str().unwrap().to_owned()).unwrap_or_default();
    let session = browser.cookie("carteiro_session").expect("a session cookie").to_owned();
    assert!(
        shown.headers.get_all("set-cookie").iter().any(|c| {
            let c = c.to_str().unwrap();
            c.starts_with("carteiro_session=") && c.contains("HttpOnly") && c.contains("SameSite=Strict")
        }),
        "{cookie}"
    );
    assert_eq!(browser.get("/companies").await.status, StatusCode::OK);

    // A login from elsewhere must not send the visitor off-site.
    let mut other = Browser::new(&app);
    other.get("/login").await;
    let shown =
        other.post("/login", &[("username", "admin"), ("password", ADMIN_PASSWORD), ("next", "//evil.example/")]).await;
    assert_eq!(shown.location.as_deref(), Some("/"));

    let out = browser.post("/logout", &[]).await;
    assert_eq!(out.location.as_deref(), Some("/login?bye=1"));
    // The old cookie, replayed, no longer opens anything.
    let mut replay = Browser::new(&app);
    replay.set_cookie("carteiro_session", &session);
    assert_eq!(replay.get("/companies").await.status, StatusCode::SEE_OTHER);
    let (status, _) = app.call(Method::GET, "/api/v1/settings/global", Some(&session), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the session is also the API token: it ended too");
}

#[tokio::test]
async fn every_form_needs_its_sessions_csrf_token_and_pages_carry_security_headers() {
    let app = Carteiro::start().await;
    two_companies(&app).await;
    let before = settings_of(&app, "/api/v1/settings/global").await;
    let mut admin = platform(&app).await;
    let mut other = platform(&app).await;
    let page = admin.get("/settings/email").await;
    for (name, value) in [
        ("content-security-policy", "frame-ancestors 'none'"),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("cache-control", "no-store"),
    ] {
        let got = page.headers.get(name).map(|v| v.to_str().unwrap()).unwrap_or_default();
        assert!(got.contains(value), "{name}: {got}");
    }
    other.get("/settings/email").await;
    let forged = [("action", "save"), ("connection.host", "evil.example"), ("csrf", other.csrf.as_str())];
    let forged: Vec<(&str, &str)> = forged.to_vec();
    for csrf in [None, Some(other.csrf.clone()), Some(String::new())] {
        let mut fields: Vec<(&str, &str)> = forged.iter().copied().filter(|(k, _)| *k != "csrf").collect();
        let csrf = csrf.unwrap_or_else(|| "missing".into());
        fields.push(("csrf", &csrf));
        let shown = admin.post("/settings/email", &fields).await;
        assert_eq!(shown.status, StatusCode::FORBIDDEN, "{}", shown.body);
        assert!(shown.body.contains("The form had expired"));
    }
    for (path, fields) in [
        ("/companies/new", vec![("slug", "gamma"), ("name", "Gamma")]),
        ("/companies/acme/api-keys", vec![("name", "k")]),
        ("/companies/acme/admins", vec![("username", "x.acme"), ("password", "long-enough-password")]),
        ("/logout", vec![]),
    ] {
        let mut fields = fields;
        fields.push(("csrf", "forged"));
        assert_eq!(admin.post(path, &fields).await.status, StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(settings_of(&app, "/api/v1/settings/global").await, before);
    let companies = app.admin(Method::GET, "/api/v1/companies", None).await.1;
    assert_eq!(companies.as_array().unwrap().len(), 2, "no company was created: {companies}");
    let keys = app.admin(Method::GET, "/api/v1/companies/acme/api-keys", None).await.1;
    assert_eq!(keys.as_array().unwrap().len(), 1, "no key was created: {keys}");
    assert_eq!(admin.get("/companies").await.status, StatusCode::OK, "the forged logout did not end the session");
}

#[tokio::test]
async fn a_company_administrator_reaches_only_its_own_company() {
    let app = Carteiro::start().await;
    let (acme, beta) = two_companies(&app).await;
    app.use_server(SmtpPeer::plain().await.port).await;
    let beta_message = app.send(&beta, user_message(&["someone@example.com"])).await;
    let mut ana = Browser::logged_in(&app, ACME_ADMIN.0, ACME_ADMIN.1).await;
    let home = ana.get("/").await;
    assert_eq!(home.location.as_deref(), Some("/companies/acme/email"));

    let global = ana.get("/settings/email").await;
    assert_eq!(global.status, StatusCode::FORBIDDEN);
    assert!(!global.body.contains("id=\"settings-form\""));
    for path in [
        "/companies/beta",
        "/companies/beta/email",
        "/companies/beta/users",
        "/companies/beta/users/42",
        "/companies/beta/effective",
        "/companies/beta/api-keys",
        &format!("/companies/beta/messages/{beta_message}"),
        &format!("/companies/beta/messages/{beta_message}/raw"),
        "/companies/nope/email",
    ] {
        assert_eq!(ana.get(path).await.status, StatusCode::NOT_FOUND, "{path}");
    }
    for path in ["/companies/new", "/companies/acme/admins"] {
        assert_eq!(ana.get(path).await.status, StatusCode::FORBIDDEN, "{path}");
    }
    let companies = ana.get("/companies").await.body;
    assert!(companies.contains("/companies/acme/email") && !companies.contains("/companies/beta"), "{companies}");
    let messages = ana.get("/messages?company=beta").await.body;
    assert!(!messages.contains(&beta_message), "another company's message is not listed");

    // Changing another company is refused and changes nothing.
    ana.get("/companies/acme/email").await;
    let beta_before = settings_of(&app, "/api/v1/companies/beta/settings").await;
    let fields = [("action", "save"), ("policy.bundle_enabled", "true")];
    assert_eq!(ana.post("/companies/beta/email", &fields).await.status, StatusCode::NOT_FOUND);
    assert_eq!(ana.post("/companies/beta/api-keys", &[]).await.status, StatusCode::NOT_FOUND);
    let cancel = format!("/companies/beta/messages/{beta_message}/cancel");
    assert_eq!(ana.post(&cancel, &[]).await.status, StatusCode::NOT_FOUND);
    assert_eq!(settings_of(&app, "/api/v1/companies/beta/settings").await, beta_before);
    // …while its own company is its to edit.
    let saved = ana.post("/companies/acme/email", &fields).await;
    assert_eq!(saved.location.as_deref(), Some("/companies/acme/email?done=saved"), "{}", saved.body);
    assert_eq!(settings_of(&app, "/api/v1/companies/acme/settings").await["policy"]["bundle_enabled"], true);
    let audit = ana.get("/audit?company=beta").await.body;
    assert!(audit.contains("company:acme") && !audit.contains("company:beta"), "{audit}");
    drop(acme);
}

#[tokio::test]
async fn an_invalid_value_is_refused_at_its_field_in_either_language_and_nothing_is_saved() {
    let app = Carteiro::start().await;
    let before = settings_of(&app, "/api/v1/settings/global").await;
    let entries = audit_entries(&app).await;
    let mut admin = platform(&app).await;
    admin.get("/settings/email").await;
    let fields = [
        ("action", "save"),
        ("connection.host", "smtp.typed.example"),
        ("connection.timeout_s", "5"),
        ("connection.tls_verify", "true"),
        ("policy.default_sender_address", "not an address"),
    ];
    let shown = admin.post("/settings/email", &fields).await;
    assert_eq!(shown.status, StatusCode::UNPROCESSABLE_ENTITY);
    let timeout = element_text(&shown.body, "data-field=\"connection.timeout_s\"").expect("an error at the timeout");
    assert_eq!(timeout, "SMTP timeout (seconds): must be between 10 and 180, got 5");
    let sender =
        element_text(&shown.body, "data-field=\"policy.default_sender_address\"").expect("an error at the sender");
    assert!(sender.starts_with("Sender's e-mail: is not a valid e-mail address"), "{sender}");
    assert!(shown.body.contains("value=\"smtp.typed.example\""), "the typed values stay in the form");
    assert!(shown.body.contains("Nothing was saved"));
    assert_eq!(settings_of(&app, "/api/v1/settings/global").await, before);
    assert_eq!(audit_entries(&app).await, entries);

    admin.accept_language = "pt-BR,pt;q=0.9".into();
    let shown = admin.post("/settings/email", &fields).await;
    assert!(shown.body.contains("<html lang=\"pt-BR\">"));
    let timeout = element_text(&shown.body, "data-field=\"connection.timeout_s\"").unwrap();
    assert_eq!(timeout, "Tempo limite SMTP (segundos): deve estar entre 10 e 180; recebido 5");
    assert!(shown.body.contains("Nada foi salvo"));
    let field = element_text(&shown.body, "for=\"connection-host\"").unwrap();
    assert_eq!(field, "Servidor (host)");

    // The switch wins over Accept-Language, and stays.
    let switched = admin.get("/lang/en?back=/settings/email").await;
    assert_eq!(switched.location.as_deref(), Some("/settings/email"));
    let page = admin.get("/settings/email").await.body;
    assert!(page.contains("<html lang=\"en\">") && page.contains(">Server host</label>"));
    assert_eq!(admin.get("/lang/pt-BR?back=https://evil.example/").await.location.as_deref(), Some("/"));
}

#[tokio::test]
async fn test_connection_runs_on_the_form_and_save_keeps_a_stored_password_left_blank() {
    let app = Carteiro::start().await;
    let certs = TestCertificates::for_localhost();
    let mut peer = SmtpPeer::starttls(&certs, "relay@plataforma.example:senha-do-relay").await;
    let mut admin = platform(&app).await;
    admin.get("/settings/email").await;
    let port = peer.port.to_string();
    let form = |password: &'static str, action: &'static str| {
        vec![
            ("action", action),
            ("fragment", "1"),
            ("test_to", "ops@cliente.example"),
            ("connection.host", "localhost"),
            ("connection.security", "starttls"),
            ("connection.auth_enabled", "true"),
            ("connection.username", "relay@plataforma.example"),
            ("connection.password", password),
            ("connection.timeout_s", "10"),
            ("connection.tls_verify", "true"),
            ("policy.default_sender_enabled", "true"),
            ("policy.default_sender_address", "noreply@plataforma.example"),
        ]
    };
    let with_port = |mut fields: Vec<(&'static str, &'static str)>, port: &'static str, ca: &'static str| {
        fields.push(("connection.port", port));
        fields.push(("connection.tls_ca_pem", ca));
        fields
    };
    let port: &'static str = Box::leak(port.into_boxed_str());
    let ca: &'static str = Box::leak(certs.ca_pem.clone().into_boxed_str());

    // Not saved yet: the test runs on the form's values.
    let shown = admin.post("/settings/email", &with_port(form("senha-do-relay", "test"), port, ca)).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
    assert!(shown.body.starts_with("<div id=\"test-result\" data-ok=\"true\""), "{}", shown.body);
    for step in ["tcp", "greeting", "ehlo", "starttls", "tls", "auth", "mail", "rcpt", "data"] {
        assert!(shown.body.contains(&format!("data-step=\"{step}\" data-ok=\"true\"")), "{step}: {}", shown.body);
    }
    let arrived = peer.next_message(WAIT).await;
    assert_eq!(arrived.auth_user.as_deref(), Some("relay@plataforma.example"));
    assert!(settings_of(&app, "/api/v1/settings/global").await["connection"].is_null(), "a test saves nothing");

    let wrong = admin.post("/settings/email", &with_port(form("senha-errada", "test"), port, ca)).await;
    assert!(wrong.body.contains("data-ok=\"false\""));
    assert!(wrong.body.contains("data-step=\"auth\" data-ok=\"false\""), "{}", wrong.body);
    assert!(wrong.body.contains("the server refused the user name or password"), "{}", wrong.body);
    assert!(!wrong.body.contains("senha-errada"), "a typed password is never echoed");

    let saved = admin.post("/settings/email", &with_port(form("senha-do-relay", "save"), port, ca)).await;
    assert_eq!(saved.location.as_deref(), Some("/settings/email?done=saved"), "{}", saved.body);
    let page = admin.get("/settings/email?done=saved").await.body;
    assert!(page.contains("class=\"flash ok\"") && page.contains("One is stored."));
    assert!(!page.contains("senha-do-relay"));
    // Saved again with the password left blank, and tested with it blank: the stored one is used.
    let saved = admin.post("/settings/email", &with_port(form("", "save"), port, ca)).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    assert_eq!(settings_of(&app, "/api/v1/settings/global").await["connection"]["password_set"], true);
    let blank = admin.post("/settings/email", &with_port(form("", "test"), port, ca)).await;
    assert!(blank.body.contains("data-step=\"auth\" data-ok=\"true\""), "{}", blank.body);

    // Portuguese steps and hint.
    admin.accept_language = "pt-BR".into();
    let wrong = admin.post("/settings/email", &with_port(form("senha-errada", "test"), port, ca)).await;
    assert!(wrong.body.contains("Autenticação (AUTH)"), "{}", wrong.body);
    assert!(wrong.body.contains("o servidor recusou o usuário ou a senha"), "{}", wrong.body);
}

#[tokio::test]
async fn logins_are_throttled_after_five_failures_for_a_user_name() {
    let app = Carteiro::start().await;
    let mut browser = Browser::new(&app);
    for _ in 0..5 {
        assert_eq!(browser.login("admin", "guess-guess-guess").await.status, StatusCode::UNAUTHORIZED);
    }
    let refused = browser.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "even the right password waits");
    assert!(refused.body.contains("Too many failed attempts"), "{}", refused.body);
    let (status, body) = app
        .call(Method::POST, "/api/v1/login", None, Some(json!({"username": "admin", "password": ADMIN_PASSWORD})))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "throttled");
    // Another user name is not locked out.
    app.admin(Method::POST, "/api/v1/companies", Some(json!({"slug": "acme", "name": "ACME"}))).await;
    app.admin(
        Method::POST,
        "/api/v1/companies/acme/admins",
        Some(json!({"username": "ana", "password": "ana-password-1"})),
    )
    .await;
    assert_eq!(Browser::new(&app).login("ana", "ana-password-1").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn companies_keys_and_admins_are_made_in_the_console() {
    let app = Carteiro::start().await;
    let mut admin = platform(&app).await;
    admin.get("/companies/new").await;
    let refused = admin.post("/companies/new", &[("slug", "Not A Slug"), ("name", ""), ("email", "x")]).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    for field in ["slug", "name", "email"] {
        assert!(refused.body.contains(&format!("data-field=\"{field}\"")), "{field}: {}", refused.body);
    }
    let created = admin
        .post("/companies/new", &[("slug", "acme"), ("name", "ACME Indústria"), ("email", "contato@acme.example")])
        .await;
    assert_eq!(created.location.as_deref(), Some("/companies/acme/email"));
    let again = admin.post("/companies/new", &[("slug", "acme"), ("name", "Other")]).await;
    assert!(again.body.contains("already exists"), "{}", again.body);

    admin.get("/companies/acme").await;
    let renamed = admin.post("/companies/acme", &[("name", "ACME S.A."), ("email", "")]).await;
    assert_eq!(renamed.location.as_deref(), Some("/companies/acme?done=saved"));
    let company = app.admin(Method::GET, "/api/v1/companies/acme", None).await.1;
    assert_eq!((company["name"].as_str(), company["email"].as_str()), (Some("ACME S.A."), None));

    admin.get("/companies/acme/api-keys").await;
    let shown = admin.post("/companies/acme/api-keys", &[("name", "ERP")]).await;
    let key = element_text(&shown.body, "id=\"new-key\"").expect("the new key, shown once");
    assert!(key.starts_with("ck_"));
    let acme = Company { slug: "acme".into(), key: key.clone() };
    let (status, _) = app.submit(&acme, user_message(&["x@example.com"])).await;
    assert_ne!(status, StatusCode::UNAUTHORIZED, "the key works");
    let listed = admin.get("/companies/acme/api-keys").await.body;
    assert!(!listed.contains(&key), "a key is shown only once");
    let revoke = listed.split("action=\"").find(|s| s.contains("/revoke\"")).unwrap();
    let revoke = html_unescape(&revoke[..revoke.find('"').unwrap()]);
    assert_eq!(admin.post(&revoke, &[]).await.location.as_deref(), Some("/companies/acme/api-keys?done=revoked"));
    let (status, _) = app.submit(&acme, user_message(&["x@example.com"])).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a revoked key stops working at once");

    admin.get("/companies/acme/admins").await;
    let short = admin.post("/companies/acme/admins", &[("username", "bia"), ("password", "short")]).await;
    assert!(short.body.contains("data-field=\"password\""));
    let made = admin.post("/companies/acme/admins", &[("username", "bia"), ("password", "bia-password-1")]).await;
    assert_eq!(made.status, StatusCode::SEE_OTHER);
    assert!(admin.get("/companies/acme/admins").await.body.contains("<li class=\"admin\">bia</li>"));
    let audit = admin.get("/audit?company=acme").await.body;
    assert!(audit.contains("admin.create") && audit.contains("admin:bia"), "{audit}");
    assert!(!audit.contains("bia-password-1"));
    let mut bia = Browser::logged_in(&app, "bia", "bia-password-1").await;
    assert_eq!(bia.get("/").await.location.as_deref(), Some("/companies/acme/email"));
}

#[tokio::test]
async fn messages_are_listed_with_their_attempts_cancelled_and_retried() {
    let app = Carteiro::start().await;
    let peer = SmtpPeer::start(&["--rcpt-reply", "refused@example.com=550"]).await;
    app.use_server(peer.port).await;
    let acme = app.create_company("acme").await;
    let failed = app.send(&acme, user_message(&["refused@example.com"])).await;
    app.wait_for_status(&acme, &failed, "failed", WAIT).await;
    let mut later = user_message(&["later@example.com"]);
    later["send_at"] = json!("2099-01-01T00:00:00Z");
    let scheduled = app.send(&acme, later).await;

    let mut admin = platform(&app).await;
    let list = admin.get("/messages?company=acme&status=failed").await.body;
    assert!(list.contains(&failed) && !list.contains(&scheduled), "the status filter applies");
    let list = admin.get("/messages?recipient=later@example.com").await.body;
    assert!(list.contains(&scheduled) && !list.contains(&failed), "the recipient filter applies");
    let bad = admin.get("/messages?after=yesterday").await.body;
    assert!(bad.contains("after must be a date"), "{bad}");

    let detail = admin.get(&format!("/companies/acme/messages/{failed}")).await.body;
    assert_eq!(element_text(&detail, "id=\"status\"").as_deref(), Some("failed"));
    assert_eq!(element_text(&detail, "class=\"code\"").as_deref(), Some("550"));
    assert!(detail.contains("id=\"headers\"") && detail.contains("Message-ID:"), "{detail}");
    assert!(detail.contains("id=\"retry\"") && !detail.contains("id=\"cancel\""));
    let retried = admin.post(&format!("/companies/acme/messages/{failed}/retry"), &[]).await;
    assert_eq!(retried.location, Some(format!("/companies/acme/messages/{failed}?done=retried")));
    eventually(WAIT, "a second attempt", || async {
        let message = app.message(&acme, &failed).await;
        (message["attempts"].as_array().unwrap().len() == 2 && message["status"] == "failed").then_some(())
    })
    .await;
    let again = admin.post(&format!("/companies/acme/messages/{scheduled}/retry"), &[]).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "only a failed message is retried");

    let detail = admin.get(&format!("/companies/acme/messages/{scheduled}")).await.body;
    assert!(detail.contains("id=\"cancel\""));
    admin.post(&format!("/companies/acme/messages/{scheduled}/cancel"), &[]).await;
    assert_eq!(app.message(&acme, &scheduled).await["status"], "cancelled");
}
