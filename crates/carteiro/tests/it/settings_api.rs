//! The settings API as an administrator sees it: each invalid field is
//! refused naming the field and the rule and changes nothing, a stored
//! password never comes back and survives a blank save, every effective value
//! says where it came from, every change is audited without secrets, and
//! each role reaches only what it may.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::helpers::app::system_message;
use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------- helpers

const GLOBAL: &str = "/api/v1/settings/global";
const ACME: &str = "/api/v1/companies/acme/settings";
const ANA: &str = "/api/v1/companies/acme/users/42/settings";

/// The three levels, by name and route.
const LEVELS: [(&str, &str); 3] = [("global", GLOBAL), ("company", ACME), ("user", ANA)];

/// A complete, valid level: a server with authentication and a default sender.
fn valid_level() -> Value {
    json!({
        "connection": {"enabled": true, "transport": "smtp", "host": "smtp.acme.example", "port": 587, "security": "starttls",
                       "auth_enabled": true, "username": "relay@acme.example", "password": "s3nha-antiga-do-relay", "timeout_s": 60},
        "policy": {"default_sender_enabled": true, "default_sender_name": "ACME", "default_sender_address": "noreply@acme.example",
                   "force_default_sender": false, "bundle_enabled": false, "bundle_interval_ms": 2000, "send_as_others": "allowed"}
    })
}

/// The valid level (password left blank) with `block.field` set to `value` (`null` removes it).
fn level_with(block: &str, field: &str, value: Value) -> Value {
    let mut doc = valid_level();
    doc["connection"].as_object_mut().unwrap().remove("password");
    if value.is_null() {
        doc[block].as_object_mut().unwrap().remove(field);
    } else {
        doc[block][field] = value;
    }
    doc
}

async fn get(app: &Carteiro, path: &str) -> Value {
    let (status, body) = app.admin(Method::GET, path, None).await;
    assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
    body
}

async fn put(app: &Carteiro, path: &str, doc: Value) -> Value {
    let (status, body) = app.admin(Method::PUT, path, Some(doc)).await;
    assert_eq!(status, StatusCode::OK, "PUT {path}: {body}");
    body
}

async fn effective(app: &Carteiro, query: &str) -> Value {
    get(app, &format!("/api/v1/companies/acme/effective-settings{query}")).await
}

async fn audit(app: &Carteiro) -> (String, Vec<Value>) {
    let (status, body) = app.admin(Method::GET, "/api/v1/audit", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (body.to_string(), body["entries"].as_array().expect("audit entries").clone())
}

fn settings_updates(entries: &[Value]) -> Vec<Value> {
    entries.iter().filter(|e| e["action"] == "settings.update").cloned().collect()
}

/// `{"value", "source"}` of one effective field.
#[track_caller]
fn assert_from(effective: &Value, path: &str, value: Value, source: &str) {
    let entry = path.split('.').fold(effective, |v, key| &v[key]);
    assert_eq!((&entry["value"], entry["source"].as_str()), (&value, Some(source)), "{path} in {effective:#}");
}

/// What is wrong with a refusal of a settings document, if anything.
fn refusal_problem(case: &str, answer: &(StatusCode, Value), field: &str, rule: &[&str]) -> Option<String> {
    let (status, body) = answer;
    let error = &body["error"];
    let message = error["message"].as_str().unwrap_or_default();
    if *status != StatusCode::UNPROCESSABLE_ENTITY {
        Some(format!("{case}: expected 422, got {status} with {body}"))
    } else if error["field"] != field {
        Some(format!("{case}: the error must name {field:?}, got {}: {body}", error["field"]))
    } else if !error["code"].as_str().is_some_and(|c| !c.is_empty()) {
        Some(format!("{case}: the error has no code: {body}"))
    } else if let Some(missing) = std::iter::once(&field).chain(rule).find(|part| !message.contains(*part)) {
        Some(format!("{case}: the message must state the field and the rule ({missing:?} is missing): {message:?}"))
    } else {
        None
    }
}

/// Sends each invalid document to each level, which holds a valid one, and
/// collects what is wrong: a refusal that does not name the field and the
/// rule, or a level (or the audit log) that changed anyway.
async fn refuse_each(app: &Carteiro, cases: &[(&str, Value, &str, &[&str])]) -> Vec<String> {
    for (_, path) in LEVELS {
        put(app, path, valid_level()).await;
    }
    let mut problems = Vec::new();
    for (level, path) in LEVELS {
        let before = get(app, path).await;
        let audit_before = audit(app).await.1.len();
        for (case, doc, field, rule) in cases {
            let case = format!("{level} level, {case}");
            let answer = app.admin(Method::PUT, path, Some(doc.clone())).await;
            problems.extend(refusal_problem(&case, &answer, field, rule));
            let after = get(app, path).await;
            if after != before {
                problems.push(format!(
                    "{case}: the level changed although the document was refused:\nbefore {before}\nafter  {after}"
                ));
            }
        }
        let audit_after = audit(app).await.1.len();
        if audit_after != audit_before {
            problems
                .push(format!("{level} level: refused documents added {} audit entries", audit_after - audit_before));
        }
    }
    problems
}

// ---------------------------------------------------------------- validation

#[tokio::test]
async fn each_invalid_field_is_refused_naming_the_field_and_the_rule_and_changes_nothing_at_any_level() {
    let app = Carteiro::start().await;
    app.create_company("acme").await;
    let c = |field: &str, value: Value| level_with("connection", field, value);
    let p = |field: &str, value: Value| level_with("policy", field, value);
    let cases: Vec<(&str, Value, &str, &[&str])> = vec![
        ("timeout_s 5", c("timeout_s", json!(5)), "connection.timeout_s", &["between 10 and 180", "got 5"]),
        ("timeout_s 181", c("timeout_s", json!(181)), "connection.timeout_s", &["between 10 and 180", "got 181"]),
        ("port 0", c("port", json!(0)), "connection.port", &["between 1 and 65535", "got 0"]),
        ("port 70000", c("port", json!(70000)), "connection.port", &["between 1 and 65535", "got 70000"]),
        ("security ssl", c("security", json!("ssl")), "connection.security", &["none, starttls, tls", "ssl"]),
        (
            "a host with spaces",
            c("host", json!("smtp acme.example")),
            "connection.host",
            &["host name or an IP address"],
        ),
        (
            "an invalid default sender",
            p("default_sender_address", json!("noreply")),
            "policy.default_sender_address",
            &["not a valid e-mail address"],
        ),
        (
            "send_as_others maybe",
            p("send_as_others", json!("maybe")),
            "policy.send_as_others",
            &["allowed, on_behalf, rewrite", "maybe"],
        ),
        (
            "bundle_interval_ms 10",
            p("bundle_interval_ms", json!(10)),
            "policy.bundle_interval_ms",
            &["between 100 and 600000", "got 10"],
        ),
        (
            "auth without a username",
            c("username", Value::Null),
            "connection.username",
            &["required when authentication is enabled"],
        ),
        ("tls_ca_pem that is not PEM", c("tls_ca_pem", json!("not a certificate")), "connection.tls_ca_pem", &["PEM"]),
        ("transport mapi", c("transport", json!("mapi")), "connection.transport", &["no longer supported", "smtp"]),
        ("transport notes", c("transport", json!("notes")), "connection.transport", &["no longer supported", "smtp"]),
        ("transport carrier-pigeon", c("transport", json!("carrier-pigeon")), "connection.transport", &["smtp"]),
        ("port as text", c("port", json!("587")), "connection.port", &[]),
        ("a password with a line break", c("password", json!("nova\r\nRSET")), "connection.password", &["line breaks"]),
    ];

    let problems = refuse_each(&app, &cases).await;

    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
}

#[tokio::test]
async fn an_unknown_settings_field_is_refused_naming_that_field_and_changes_nothing() {
    let app = Carteiro::start().await;
    app.create_company("acme").await;
    let mut top = valid_level();
    top["colour"] = json!("blue");
    let cases: Vec<(&str, Value, &str, &[&str])> = vec![
        ("an unknown top-level field", top, "colour", &[]),
        (
            "an unknown connection field",
            level_with("connection", "hots", json!("smtp.acme.example")),
            "connection.hots",
            &[],
        ),
        (
            "an unknown policy field",
            level_with("policy", "sender", json!("noreply@acme.example")),
            "policy.sender",
            &[],
        ),
    ];

    let problems = refuse_each(&app, &cases).await;

    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
}

#[tokio::test]
async fn a_tls_ca_pem_in_pem_armour_that_holds_no_certificate_is_refused() {
    let app = Carteiro::start().await;
    app.create_company("acme").await;
    // Looks like PEM, but the base64 inside is the text "not a certificate", not a DER certificate.
    let garbage = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";
    let cases: Vec<(&str, Value, &str, &[&str])> = vec![(
        "tls_ca_pem armoured garbage",
        level_with("connection", "tls_ca_pem", json!(garbage)),
        "connection.tls_ca_pem",
        &[],
    )];

    let problems = refuse_each(&app, &cases).await;

    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
}

#[tokio::test]
async fn a_default_sender_switched_on_without_any_address_is_refused() {
    let app = Carteiro::start().await;
    app.create_company("acme").await;
    let before = get(&app, GLOBAL).await;

    let answer = app
        .admin(
            Method::PUT,
            GLOBAL,
            Some(json!({"policy": {"default_sender_enabled": true, "default_sender_name": "Plataforma"}})),
        )
        .await;

    let problem = refusal_problem("no address", &answer, "policy.default_sender_address", &["required"]);
    assert!(problem.is_none(), "{}", problem.unwrap_or_default());
    assert_eq!(get(&app, GLOBAL).await, before, "nothing was stored");
}

#[tokio::test]
async fn malformed_settings_json_is_a_400_and_changes_nothing() {
    let app = Carteiro::start().await;
    let before = get(&app, GLOBAL).await;

    let response =
        app.http.put(app.url(GLOBAL)).bearer_auth(&app.token).body(r#"{"connection": {"host": "#).send().await.unwrap();

    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"].as_str().is_some_and(|m| m.contains("JSON")), "{body}");
    assert_eq!(get(&app, GLOBAL).await, before);
}

// ---------------------------------------------------------------- passwords

#[tokio::test]
async fn a_stored_password_is_never_returned_and_survives_blank_saves() {
    let secret = "s3nha-do-relay-nao-vaza";
    let mut peer = SmtpPeer::start(&["--auth", &format!("relay:{secret}"), "--require-auth"]).await;
    let app = Carteiro::start().await;
    let acme = app.create_company("acme").await;
    let level = |timeout: u16, password: Option<Value>| {
        let mut connection = json!({"host": "127.0.0.1", "port": peer.port, "security": "none", "auth_enabled": true,
                                    "username": "relay", "timeout_s": timeout});
        if let Some(password) = password {
            connection["password"] = password;
        }
        json!({"connection": connection,
               "policy": {"default_sender_enabled": true, "default_sender_address": "noreply@plataforma.example"}})
    };

    let saved = put(&app, GLOBAL, level(10, Some(json!(secret)))).await;
    assert_eq!(saved["connection"]["password"], Value::Null, "{saved}");
    assert_eq!(saved["connection"]["password_set"], true, "{saved}");
    assert!(!saved.to_string().contains(secret), "the PUT answer holds the password: {saved}");
    let read = get(&app, GLOBAL).await;
    assert_eq!(
        (&read["connection"]["password"], &read["connection"]["password_set"]),
        (&Value::Null, &json!(true)),
        "{read}"
    );
    assert!(!read.to_string().contains(secret), "the GET answer holds the password: {read}");

    for (case, timeout, password) in
        [("blank", 20, Some(json!(""))), ("null", 30, Some(Value::Null)), ("absent", 40, None)]
    {
        let saved = put(&app, GLOBAL, level(timeout, password)).await;
        assert_eq!(saved["connection"]["timeout_s"], timeout, "{case}: the save happened: {saved}");
        assert_eq!(saved["connection"]["password_set"], true, "{case}: the password is kept: {saved}");
        assert_eq!(get(&app, GLOBAL).await["connection"]["password_set"], true, "{case}");
    }
    let explained = effective(&app, "").await;
    let password = &explained["connection"]["password"];
    assert_eq!(
        (&password["set"], &password["value"], &password["source"]),
        (&json!(true), &Value::Null, &json!("global")),
        "{explained:#}"
    );
    assert!(!explained.to_string().contains(secret));

    // The server only takes mail from relay with that password: delivery proves it was kept.
    let id = app.send(&acme, system_message(&["cliente@example.com"])).await;
    let received = peer.next_message(WAIT).await;
    assert_eq!(received.auth_user.as_deref(), Some("relay"));
    app.wait_for_status(&acme, &id, "sent", WAIT).await;
}

#[tokio::test]
async fn company_and_user_passwords_are_redacted_and_kept_on_blank_saves_too() {
    let app = Carteiro::start().await;
    app.create_company("acme").await;

    for (level, path) in [("company", ACME), ("user", ANA)] {
        let saved = put(&app, path, valid_level()).await;
        assert_eq!(
            (&saved["connection"]["password"], &saved["connection"]["password_set"]),
            (&Value::Null, &json!(true)),
            "{level}: {saved}"
        );
        let saved = put(&app, path, level_with("connection", "timeout_s", json!(90))).await;
        assert_eq!(saved["connection"]["password_set"], true, "{level}: {saved}");
        let read = get(&app, path).await;
        assert_eq!(read["connection"]["timeout_s"], 90, "{level}: {read}");
        assert_eq!(read["connection"]["password_set"], true, "{level}: {read}");
        assert!(!read.to_string().contains("s3nha-antiga-do-relay"), "{level}: {read}");
    }
    let explained = effective(&app, "?user=42").await;
    assert_eq!(explained["connection"]["password"]["set"], true, "{explained:#}");
    assert_eq!(explained["connection"]["password"]["source"], "user", "{explained:#}");
}

// ---------------------------------------------------------------- effective settings

#[tokio::test]
async fn effective_settings_say_where_every_value_comes_from() {
    let app = Carteiro::start().await;
    app.create_company("acme").await;
    put(
        &app,
        GLOBAL,
        json!({
            "connection": {"host": "smtp.plataforma.example", "port": 587, "security": "starttls", "auth_enabled": true,
                           "username": "relay@plataforma.example", "password": "s3nha-global", "timeout_s": 30},
            "policy": {"default_sender_enabled": true, "default_sender_name": "Plataforma",
                       "default_sender_address": "noreply@plataforma.example", "bundle_enabled": true}
        }),
    )
    .await;

    // Only the global level: everything from global, or default where nobody says.
    let only_global = effective(&app, "").await;
    assert_eq!(only_global["connection"]["source"], "global", "{only_global:#}");
    assert_from(&only_global, "connection.host", json!("smtp.plataforma.example"), "global");
    assert_from(&only_global, "connection.username", json!("relay@plataforma.example"), "global");
    assert_from(&only_global, "connection.timeout_s", json!(30), "global");
    assert_from(&only_global, "connection.tls_verify", json!(true), "default");
    assert_eq!(only_global["connection"]["password"]["set"], true);
    assert_from(&only_global, "policy.send_as_others", json!("allowed"), "default");
    assert_from(&only_global, "policy.bundle_interval_ms", json!(2000), "default");

    put(
        &app,
        ACME,
        json!({
            "connection": {"enabled": true, "host": "smtp.acme.example", "port": 465, "security": "tls"},
            "policy": {"default_sender_name": "ACME"}
        }),
    )
    .await;
    put(&app, ANA, json!({"policy": {"send_as_others": "rewrite"}})).await;

    let ana = effective(&app, "?user=42").await;
    assert_eq!(ana["company"], "acme");
    assert_eq!(ana["user"], "42");
    // The company's connection block replaces the global one as a whole.
    assert_eq!(ana["connection"]["source"], "company", "{ana:#}");
    assert_from(&ana, "connection.host", json!("smtp.acme.example"), "company");
    assert_from(&ana, "connection.port", json!(465), "company");
    assert_from(&ana, "connection.security", json!("tls"), "company");
    assert_from(&ana, "connection.auth_enabled", json!(false), "company");
    assert_from(&ana, "connection.username", Value::Null, "company");
    assert_from(&ana, "connection.timeout_s", json!(180), "default");
    let password = &ana["connection"]["password"];
    assert_eq!(
        (&password["set"], &password["source"]),
        (&json!(false), &json!("company")),
        "never the global password: {ana:#}"
    );
    // The policy block is inherited field by field.
    assert_from(&ana, "policy.default_sender_enabled", json!(true), "global");
    assert_from(&ana, "policy.default_sender_name", json!("ACME"), "company");
    assert_from(&ana, "policy.default_sender_address", json!("noreply@plataforma.example"), "global");
    assert_from(&ana, "policy.force_default_sender", json!(false), "default");
    assert_from(&ana, "policy.bundle_enabled", json!(true), "global");
    assert_from(&ana, "policy.bundle_interval_ms", json!(2000), "default");
    assert_from(&ana, "policy.send_as_others", json!("rewrite"), "user");
    assert!(!ana.to_string().contains("s3nha-global"), "no secret in the explanation");

    // Another user of the company, and the company without a user, have no user level.
    for query in ["?user=43", ""] {
        let other = effective(&app, query).await;
        assert_from(&other, "policy.send_as_others", json!("allowed"), "default");
        assert_eq!(other["connection"]["source"], "company", "{query}");
    }

    // The company prevails over global even when global changes later.
    put(&app, GLOBAL, json!({
        // Another server: its password must be given again (the stored one never follows a new host).
        "connection": {"host": "smtp2.plataforma.example", "auth_enabled": true, "username": "relay@plataforma.example", "password": "s3nha-global-2"},
        "policy": {"default_sender_enabled": true, "default_sender_name": "Plataforma 2", "default_sender_address": "noreply@plataforma.example"}
    }))
    .await;
    let later = effective(&app, "?user=42").await;
    assert_from(&later, "connection.host", json!("smtp.acme.example"), "company");
    assert_from(&later, "policy.default_sender_name", json!("ACME"), "company");

    // A user's own connection block wins over the company's.
    put(&app, ANA, json!({"connection": {"host": "smtp.ana.example"}, "policy": {"send_as_others": "rewrite"}})).await;
    let own = effective(&app, "?user=42").await;
    assert_eq!(own["connection"]["source"], "user", "{own:#}");
    assert_from(&own, "connection.host", json!("smtp.ana.example"), "user");
    assert_from(&own, "connection.port", json!(25), "default");

    // A company block switched off leaves the global block in force, password included.
    put(&app, ACME, json!({"connection": {"enabled": false, "host": "smtp.acme.example"}, "policy": {"default_sender_name": "ACME"}})).await;
    let off = effective(&app, "?user=7").await;
    assert_eq!(off["connection"]["source"], "global", "{off:#}");
    assert_from(&off, "connection.host", json!("smtp2.plataforma.example"), "global");
    assert_eq!(off["connection"]["password"]["set"], true, "the kept global password: {off:#}");
}

#[tokio::test]
async fn a_company_block_with_authentication_never_borrows_the_global_password() {
    let app = Carteiro::start().await;
    app.create_company("acme").await;
    put(&app, GLOBAL, valid_level()).await;
    let before = get(&app, ACME).await;

    let borrowing = json!({"connection": {"enabled": true, "host": "smtp.acme.example", "auth_enabled": true, "username": "relay@acme.example"}});
    let answer = app.admin(Method::PUT, ACME, Some(borrowing)).await;

    let problem =
        refusal_problem("company auth without its own password", &answer, "connection.password", &["required"]);
    assert!(problem.is_none(), "{}", problem.unwrap_or_default());
    assert_eq!(get(&app, ACME).await, before);
}

#[tokio::test]
async fn effective_settings_of_an_unknown_company_are_not_found() {
    let app = Carteiro::start().await;

    for path in [
        "/api/v1/companies/nada/effective-settings",
        "/api/v1/companies/nada/settings",
        "/api/v1/companies/nada/users/42/settings",
    ] {
        let (status, body) = app.admin(Method::GET, path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }
    let (status, _) = app.admin(Method::PUT, "/api/v1/companies/nada/settings", Some(valid_level())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

// ---------------------------------------------------------------- audit

#[tokio::test]
async fn every_settings_change_is_audited_with_who_and_which_fields_and_never_a_secret() {
    let app = Carteiro::start().await;
    app.create_company("acme").await;
    let global_secret = "s3nha-global-secreta-1";
    let company_secret = "s3nha-da-acme-secreta-2";
    let mut global = valid_level();
    global["connection"]["password"] = json!(global_secret);
    let mut company = valid_level();
    company["connection"]["password"] = json!(company_secret);

    put(&app, GLOBAL, global.clone()).await;
    put(&app, ACME, company).await;
    put(&app, ANA, json!({"policy": {"send_as_others": "on_behalf"}})).await;
    let mut blank = global;
    blank["connection"]["password"] = json!("");
    blank["connection"]["timeout_s"] = json!(120);
    put(&app, GLOBAL, blank).await;
    let (status, _) = app.admin(Method::PUT, GLOBAL, Some(level_with("connection", "timeout_s", json!(5)))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let (text, entries) = audit(&app).await;
    assert!(!text.contains(global_secret) && !text.contains(company_secret), "a password is in the audit log: {text}");
    let updates = settings_updates(&entries);
    let targets: Vec<&str> = updates.iter().map(|e| e["target"].as_str().unwrap()).collect();
    assert_eq!(
        targets,
        ["global", "user:acme:42", "company:acme", "global"],
        "one entry per saved change, newest first: {updates:#?}"
    );
    for entry in &updates {
        assert_eq!(entry["actor"], "admin:admin", "{entry}");
        OffsetDateTime::parse(entry["at"].as_str().unwrap(), &Rfc3339).expect("at is RFC 3339");
    }
    let fields = |i: usize| -> Vec<String> {
        updates[i]["fields"].as_array().unwrap().iter().map(|f| f.as_str().unwrap().to_owned()).collect()
    };
    let first = fields(3);
    for field in ["connection.host", "connection.timeout_s", "connection.password", "policy.default_sender_address"] {
        assert!(first.contains(&field.to_owned()), "the first global save lists {field}: {first:?}");
    }
    assert_eq!(fields(0), ["connection.timeout_s"], "the blank save changed the timeout only, not the password");
    assert_eq!(fields(1), ["policy.send_as_others"]);
    assert!(fields(2).contains(&"connection.password".to_owned()));
    assert_eq!(updates[2]["company"], "acme");

    // The company's own view lists its entries only.
    let (status, body) = app.admin(Method::GET, "/api/v1/audit?company=acme", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let acme_entries = body["entries"].as_array().unwrap();
    assert!(acme_entries.iter().all(|e| e["company"] == "acme"), "{body:#}");
    assert_eq!(settings_updates(acme_entries).len(), 2);
}

// ---------------------------------------------------------------- access

#[tokio::test]
async fn logging_in_wants_the_right_password_and_the_settings_want_a_token() {
    let app = Carteiro::start().await;

    let login = |username: &str| json!({"username": username, "password": "not-the-password"});
    let (wrong, wrong_body) = app.call(Method::POST, "/api/v1/login", None, Some(login("admin"))).await;
    assert_eq!(wrong, StatusCode::UNAUTHORIZED, "{wrong_body}");
    let (unknown, unknown_body) = app.call(Method::POST, "/api/v1/login", None, Some(login("ninguem"))).await;
    assert_eq!(unknown, StatusCode::UNAUTHORIZED, "{unknown_body}");
    assert_eq!(
        wrong_body["error"]["message"], unknown_body["error"]["message"],
        "the answer does not tell which user names exist"
    );
    assert!(wrong_body.get("token").is_none());

    let acme = app.create_company("acme").await;
    for (case, bearer) in
        [("no token", None), ("a garbage token", Some("ct_garbage")), ("an API key", Some(acme.key.as_str()))]
    {
        for (method, path, body) in [
            (Method::GET, GLOBAL, None),
            (Method::PUT, GLOBAL, Some(valid_level())),
            (Method::GET, ACME, None),
            (Method::GET, "/api/v1/companies/acme/effective-settings", None),
            (Method::GET, "/api/v1/audit", None),
        ] {
            let (status, answer) = app.call(method.clone(), path, bearer, body).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {method} {path}: {answer}");
            assert_eq!(answer["error"]["code"], "unauthorized", "{case}: {answer}");
        }
    }
    assert_eq!(get(&app, GLOBAL).await["connection"], Value::Null, "nothing was saved without a token");
}

#[tokio::test]
async fn a_company_admin_manages_their_own_company_only() {
    let app = Carteiro::start().await;
    app.create_company("acme").await;
    app.create_company("beta").await;
    put(&app, GLOBAL, valid_level()).await;
    put(&app, "/api/v1/companies/beta/settings", json!({"policy": {"default_sender_name": "Beta"}})).await;
    let (status, created) = app
        .admin(
            Method::POST,
            "/api/v1/companies/acme/admins",
            Some(json!({"username": "gerente.acme", "password": "senha-do-gerente-1"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let token = app.login("gerente.acme", "senha-do-gerente-1").await.expect("the company admin logs in");
    let (app, token) = (&app, token.as_str());
    let as_manager = move |method: Method, path: &str, body: Option<Value>| {
        let path = path.to_owned();
        async move { app.call(method, &path, Some(token), body).await }
    };

    // Their own company: read and edit every level.
    let (status, body) = as_manager(Method::GET, ACME, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) =
        as_manager(Method::PUT, ACME, Some(json!({"policy": {"default_sender_name": "ACME Ltda"}}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["policy"]["default_sender_name"], "ACME Ltda");
    let (status, body) = as_manager(Method::PUT, ANA, Some(json!({"policy": {"send_as_others": "rewrite"}}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = as_manager(Method::GET, "/api/v1/companies/acme/effective-settings?user=42", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_from(&body, "policy.default_sender_name", json!("ACME Ltda"), "company");
    assert_from(&body, "policy.send_as_others", json!("rewrite"), "user");

    // The global level: forbidden, and untouched.
    let global_before = get(app, GLOBAL).await;
    let (status, body) = as_manager(Method::GET, GLOBAL, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) =
        as_manager(Method::PUT, GLOBAL, Some(json!({"policy": {"default_sender_name": "Hackeado"}}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    assert_eq!(get(app, GLOBAL).await, global_before);

    // Another company: as if it did not exist, and untouched.
    let beta_before = get(app, "/api/v1/companies/beta/settings").await;
    for (method, path, body) in [
        (Method::GET, "/api/v1/companies/beta/settings", None),
        (Method::PUT, "/api/v1/companies/beta/settings", Some(json!({"policy": {"default_sender_name": "Hackeado"}}))),
        (Method::GET, "/api/v1/companies/beta/users/42/settings", None),
        (
            Method::PUT,
            "/api/v1/companies/beta/users/42/settings",
            Some(json!({"policy": {"send_as_others": "rewrite"}})),
        ),
        (Method::GET, "/api/v1/companies/beta/effective-settings", None),
    ] {
        let (status, answer) = as_manager(method.clone(), path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {answer}");
    }
    assert_eq!(get(app, "/api/v1/companies/beta/settings").await, beta_before);

    // Platform-wide things: forbidden.
    let (status, body) =
        as_manager(Method::POST, "/api/v1/companies", Some(json!({"slug": "gama", "name": "Gama Ltda"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = app.admin(Method::GET, "/api/v1/companies/gama", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the company was not created");
    let (status, body) = as_manager(
        Method::POST,
        "/api/v1/companies/acme/admins",
        Some(json!({"username": "outro.gerente", "password": "senha-do-outro-1"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = as_manager(Method::GET, "/api/v1/companies", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let slugs: Vec<&str> = body.as_array().unwrap().iter().map(|c| c["slug"].as_str().unwrap()).collect();
    assert_eq!(slugs, ["acme"], "a company admin lists their own company only");

    // Their changes are audited under their name.
    let (_, entries) = audit(app).await;
    let theirs: Vec<Value> = settings_updates(&entries)
        .into_iter()
        .filter(|e| e["actor"] == "admin:gerente.acme")
        .map(|e| e["target"].clone())
        .collect();
    assert_eq!(theirs, [json!("user:acme:42"), json!("company:acme")]);
}

// ---------------------------------------------------------------- the host itself

/// A company administrator of acme, logged in: their token.
async fn acme_admin_token(app: &Carteiro) -> String {
    let (status, created) = app
        .admin(
            Method::POST,
            "/api/v1/companies/acme/admins",
            Some(json!({"username": "gerente.acme", "password": "senha-do-gerente-1"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    app.login("gerente.acme", "senha-do-gerente-1").await.expect("the company admin logs in")
}

/// A stand-in `sendmail` that takes the message and leaves `marker` behind: proof that it ran.
fn marking_sendmail(dir: &std::path::Path, marker: &std::path::Path) -> String {
    let path = dir.join("sendmail-that-marks");
    std::fs::write(&path, format!("#!/bin/sh\ncat >/dev/null\ntouch '{}'\nexit 0\n", marker.display())).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path.display().to_string()
}

fn files_in(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

fn host_policy() -> Value {
    json!({"default_sender_enabled": true, "default_sender_name": "ACME", "default_sender_address": "noreply@acme.example"})
}

/// Levels that would make carteiro act on its own host, each with the field a refusal must name.
fn host_reaching_levels(
    sendmail: &str,
    pickup: &std::path::Path,
    token_url: &str,
) -> Vec<(&'static str, Value, &'static str)> {
    vec![
        (
            "the sendmail transport",
            json!({"connection": {"transport": "sendmail", "sendmail_command": sendmail}, "policy": host_policy()}),
            "connection.transport",
        ),
        (
            "the pickup transport",
            json!({"connection": {"transport": "pickup", "pickup_dir": pickup}, "policy": host_policy()}),
            "connection.transport",
        ),
        (
            "a sendmail_command kept beside smtp",
            json!({"connection": {"host": "smtp.acme.example", "sendmail_command": sendmail}, "policy": host_policy()}),
            "connection.sendmail_command",
        ),
        (
            "a token endpoint over plain http",
            json!({"connection": {"host": "smtp.acme.example", "port": 587, "security": "starttls", "auth_enabled": true,
                                  "auth_mechanism": "xoauth2", "username": "relay@acme.example",
                                  "oauth": {"token_url": token_url, "client_id": "carteiro-test-client",
                                            "client_secret": "carteiro-test-client-secret",
                                            "refresh_token": "carteiro-test-refresh-token"}},
                   "policy": host_policy()}),
            "connection.oauth.token_url",
        ),
    ]
}

/// What is wrong with a refusal for lack of the platform role, if anything.
fn forbidden_problem(case: &str, answer: &(StatusCode, Value), field: &str) -> Option<String> {
    let (status, body) = answer;
    let error = &body["error"];
    let message = error["message"].as_str().unwrap_or_default();
    if *status != StatusCode::FORBIDDEN {
        Some(format!("{case}: expected 403, got {status} with {body}"))
    } else if error["code"] != "forbidden" || error["field"] != field {
        Some(format!("{case}: expected code \"forbidden\" naming {field:?}, got {body}"))
    } else if !message.contains(field) || !message.contains("only a platform administrator may") {
        Some(format!("{case}: the message must name {field:?} and the rule: {message:?}"))
    } else {
        None
    }
}

#[tokio::test]
async fn a_company_admin_may_not_make_carteiro_run_programs_write_files_or_call_local_ports() {
    let app = Carteiro::start().await;
    app.create_company("acme").await;
    let token = acme_admin_token(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("sendmail-ran");
    let sendmail = marking_sendmail(dir.path(), &marker);
    let pickup = dir.path().join("pickup");
    std::fs::create_dir(&pickup).unwrap();
    let endpoint = TokenEndpoint::start().await;
    let cases = host_reaching_levels(&sendmail, &pickup, &endpoint.url);
    // Each level holds a plain SMTP level of the company's own.
    for path in [ACME, ANA] {
        put(&app, path, valid_level()).await;
    }
    let levels_before = [get(&app, ACME).await, get(&app, ANA).await];
    let audit_before = audit(&app).await.1.len();

    let mut problems = Vec::new();
    for (case, doc, field) in &cases {
        for (level, path) in [("company", ACME), ("user", ANA)] {
            let answer = app.call(Method::PUT, path, Some(token.as_str()), Some(doc.clone())).await;
            problems.extend(forbidden_problem(&format!("saving {case} at the {level} level"), &answer, field));
        }
        for (level, target) in
            [("company", json!({"company": "acme"})), ("user", json!({"company": "acme", "user": "42"}))]
        {
            let mut request = target;
            request["settings"] = doc.clone();
            request["to"] = json!("admin@example.com");
            let answer = app.call(Method::POST, "/api/v1/test-connection", Some(token.as_str()), Some(request)).await;
            problems.extend(forbidden_problem(&format!("testing {case} unsaved at the {level} level"), &answer, field));
        }
    }

    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
    assert_eq!([get(&app, ACME).await, get(&app, ANA).await], levels_before, "no level changed");
    assert_eq!(audit(&app).await.1.len(), audit_before, "nothing was audited: nothing was saved");
    assert!(!marker.exists(), "the sendmail program ran");
    assert_eq!(files_in(&pickup), Vec::<String>::new(), "a file was written into the pickup directory");
    assert!(endpoint.requests().is_empty(), "the token endpoint was called: {:?}", endpoint.requests());

    // The same settings are the platform administrator's to choose for that company.
    for (case, doc, _) in &cases {
        for path in [ACME, ANA] {
            let (status, body) = app.admin(Method::PUT, path, Some(doc.clone())).await;
            assert_eq!(status, StatusCode::OK, "{case} at {path}: {body}");
        }
    }
    // And to test: the program and the directory were really in reach, so their silence above means something.
    for (doc, what) in [(&cases[0].1, "sendmail"), (&cases[1].1, "pickup")] {
        let request = json!({"company": "acme", "settings": doc, "to": "admin@example.com"});
        let (status, body) = app.admin(Method::POST, "/api/v1/test-connection", Some(request)).await;
        assert_eq!((status, &body["ok"]), (StatusCode::OK, &json!(true)), "{what}: {body:#}");
    }
    assert!(marker.exists(), "the platform administrator's test ran the sendmail program");
    assert_eq!(files_in(&pickup).len(), 1, "the platform administrator's test wrote one file: {:?}", files_in(&pickup));
}

#[tokio::test]
async fn a_company_admin_keeps_the_platform_s_choice_of_transport_but_cannot_change_it() {
    let app = Carteiro::start().await;
    app.create_company("acme").await;
    let token = acme_admin_token(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let (pickup, elsewhere) = (dir.path().join("pickup"), dir.path().join("elsewhere"));
    std::fs::create_dir(&pickup).unwrap();
    std::fs::create_dir(&elsewhere).unwrap();
    let marker = dir.path().join("sendmail-ran");
    let sendmail = marking_sendmail(dir.path(), &marker);
    put(&app, ACME, json!({"connection": {"transport": "pickup", "pickup_dir": pickup}, "policy": host_policy()}))
        .await;
    let as_manager =
        |method: Method, path: &'static str, body: Value| app.call(method, path, Some(token.as_str()), Some(body));

    // Saving the level as read back, with another policy, keeps the pickup directory the platform chose.
    let (status, mut doc) = app.call(Method::GET, ACME, Some(token.as_str()), None).await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    doc["policy"]["default_sender_name"] = json!("ACME Ltda");
    let (status, saved) = as_manager(Method::PUT, ACME, doc.clone()).await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    assert_eq!(
        (&saved["connection"]["pickup_dir"], &saved["policy"]["default_sender_name"]),
        (&json!(pickup), &json!("ACME Ltda"))
    );
    // Testing it as it stands uses the directory the platform chose.
    let request = json!({"company": "acme", "settings": doc, "to": "admin@example.com"});
    let (status, report) = as_manager(Method::POST, "/api/v1/test-connection", request).await;
    assert_eq!((status, &report["ok"]), (StatusCode::OK, &json!(true)), "{report:#}");
    assert_eq!(files_in(&pickup).len(), 1);

    // Pointing it elsewhere, or at a program, is refused and changes nothing.
    let before = get(&app, ACME).await;
    let mut moved = doc.clone();
    moved["connection"]["pickup_dir"] = json!(elsewhere);
    let sendmail_level =
        json!({"connection": {"transport": "sendmail", "sendmail_command": sendmail}, "policy": host_policy()});
    for (case, changed, field) in
        [("another pickup_dir", moved, "connection.pickup_dir"), ("sendmail", sendmail_level, "connection.transport")]
    {
        let answer = as_manager(Method::PUT, ACME, changed.clone()).await;
        let problem = forbidden_problem(case, &answer, field);
        assert!(problem.is_none(), "{}", problem.unwrap_or_default());
        let request = json!({"company": "acme", "settings": changed, "to": "admin@example.com"});
        let answer = as_manager(Method::POST, "/api/v1/test-connection", request).await;
        let problem = forbidden_problem(case, &answer, field);
        assert!(problem.is_none(), "{}", problem.unwrap_or_default());
    }
    assert_eq!(get(&app, ACME).await, before);
    assert!(files_in(&elsewhere).is_empty() && !marker.exists(), "nothing ran and nothing was written elsewhere");

    // Leaving for an SMTP server is theirs to do; coming back is not.
    let (status, body) = as_manager(Method::PUT, ACME, valid_level()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer = as_manager(Method::PUT, ACME, doc).await;
    let problem = forbidden_problem("back to pickup", &answer, "connection.transport");
    assert!(problem.is_none(), "{}", problem.unwrap_or_default());
}
