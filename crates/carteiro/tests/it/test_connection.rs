//! Test connection (SPEC §4): the settings on screen, saved or not, are tried
//! step by step against a real server; every step shows its time and the
//! server's replies, a test e-mail goes out as a `system` message, and a
//! failure comes with a hint in words an administrator understands.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::peers::free_port;
use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(20);
const ACCOUNT: &str = "relay@plataforma.example";
const PASSWORD: &str = "s3nha-do-relay";

/// A STARTTLS connection to `localhost:port` with AUTH, trusting the test CA.
fn starttls_settings(certs: &TestCertificates, port: u16, password: &str) -> Value {
    json!({
        "connection": {
            "host": "localhost", "port": port, "security": "starttls", "auth_enabled": true,
            "username": ACCOUNT, "password": password, "timeout_s": 10, "tls_ca_pem": certs.ca_pem
        },
        "policy": {"default_sender_enabled": true, "default_sender_name": "Plataforma", "default_sender_address": "noreply@plataforma.example"}
    })
}

/// A plain connection without AUTH, with a default sender.
fn plain_settings(host: &str, port: u16) -> Value {
    json!({
        "connection": {"host": host, "port": port, "timeout_s": 10},
        "policy": {"default_sender_enabled": true, "default_sender_name": "Plataforma", "default_sender_address": "noreply@plataforma.example"}
    })
}

/// The one step that failed (a report stops at its first failure).
fn failed_step(report: &Value) -> &Value {
    let failed: Vec<&Value> = report["steps"].as_array().unwrap().iter().filter(|s| s["ok"] == false).collect();
    assert_eq!(failed.len(), 1, "exactly one step fails: {report:#}");
    assert_eq!(
        report["steps"].as_array().unwrap().last(),
        Some(failed[0]),
        "the report stops at the failed step: {report:#}"
    );
    failed[0]
}

fn hint(report: &Value) -> &str {
    report["hint"].as_str().unwrap_or_else(|| panic!("a failed test comes with a hint: {report:#}"))
}

fn detail(step: &Value) -> &str {
    step["detail"].as_str().unwrap()
}

#[tokio::test]
async fn a_successful_test_reports_every_step_in_order_and_delivers_a_system_message() {
    let certs = TestCertificates::for_localhost();
    let mut peer = SmtpPeer::starttls(&certs, &format!("{ACCOUNT}:{PASSWORD}")).await;
    let app = Carteiro::start().await;
    app.set_global(starttls_settings(&certs, peer.port, PASSWORD)).await;

    let report = test_connection(&app, json!({"to": "admin@example.com"})).await;

    assert_eq!(report["ok"], true, "{report:#}");
    assert!(report.get("hint").is_none_or(Value::is_null), "a success has no hint: {report:#}");
    assert_eq!(
        step_names(&report),
        ["dns", "tcp", "greeting", "ehlo", "starttls", "tls", "ehlo", "auth", "mail", "rcpt", "data"]
    );
    for step in report["steps"].as_array().unwrap() {
        assert_eq!(step["ok"], true, "every step succeeds: {step}");
        assert!(step["ms"].is_u64(), "every step is timed in milliseconds: {step}");
        assert!(!detail(step).trim().is_empty(), "every step says what happened: {step}");
    }

    let received = peer.next_message(WAIT).await;
    assert_eq!(received.rcpt_tos, ["admin@example.com"]);
    assert!(received.tls, "the test e-mail went over the encrypted session");
    assert_eq!(received.auth_user.as_deref(), Some(ACCOUNT), "the test logged in with the configured account");
    assert_eq!(
        received.header("From").unwrap(),
        "\"Plataforma\" <noreply@plataforma.example>",
        "a system message comes from the default sender"
    );
    assert_eq!(received.mail_from, ACCOUNT, "the envelope sender is the authenticated account");
    assert!(
        received.header("Subject").unwrap().contains("test"),
        "the subject says it is a test: {:?}",
        received.header("Subject")
    );
}

#[tokio::test]
async fn each_step_of_a_successful_test_shows_what_the_server_answered() {
    let certs = TestCertificates::for_localhost();
    let peer = SmtpPeer::starttls(&certs, &format!("{ACCOUNT}:{PASSWORD}")).await;
    let app = Carteiro::start().await;
    app.set_global(starttls_settings(&certs, peer.port, PASSWORD)).await;

    let report = test_connection(&app, json!({"to": "admin@example.com"})).await;
    assert_eq!(report["ok"], true, "{report:#}");

    let steps = report["steps"].as_array().unwrap();
    let first_ehlo = steps.iter().find(|s| s["step"] == "ehlo").unwrap();
    let expectations: [(&str, &Value, &[&str]); 11] = [
        ("dns", step(&report, "dns"), &["localhost", "127.0.0.1"]),
        ("tcp", step(&report, "tcp"), &[&format!("127.0.0.1:{}", peer.port)]),
        ("greeting", step(&report, "greeting"), &["220"]),
        ("ehlo before TLS", first_ehlo, &["STARTTLS"]),
        ("starttls", step(&report, "starttls"), &["220"]),
        ("tls", step(&report, "tls"), &["TLS"]),
        ("ehlo after TLS", step(&report, "ehlo"), &["AUTH"]),
        ("auth", step(&report, "auth"), &["235"]),
        ("mail", step(&report, "mail"), &["250"]),
        ("rcpt", step(&report, "rcpt"), &["250", "admin@example.com"]),
        ("data", step(&report, "data"), &["250"]),
    ];
    let missing: Vec<String> = expectations
        .iter()
        .flat_map(|(name, step, wanted)| {
            wanted
                .iter()
                .filter(|w| !detail(step).contains(**w))
                .map(move |w| format!("{name}: {w:?} not in {:?}", detail(step)))
        })
        .collect();
    assert!(missing.is_empty(), "each step's detail carries the server's reply:\n{}", missing.join("\n"));
}

#[tokio::test]
async fn a_wrong_password_fails_at_auth_with_the_535_and_a_hint_about_app_passwords() {
    let certs = TestCertificates::for_localhost();
    let mut peer = SmtpPeer::starttls(&certs, &format!("{ACCOUNT}:{PASSWORD}")).await;
    let app = Carteiro::start().await;
    app.set_global(starttls_settings(&certs, peer.port, "not-the-password")).await;

    let report = test_connection(&app, json!({"to": "admin@example.com"})).await;

    assert_eq!(report["ok"], false, "{report:#}");
    let failed = failed_step(&report);
    assert_eq!(failed["step"], "auth");
    assert!(detail(failed).contains("535"), "the server's refusal is shown: {failed}");
    let hint = hint(&report);
    assert!(hint.contains("refused the user name or password"), "{hint}");
    assert!(
        hint.contains("XOAUTH2") && hint.contains("app password"),
        "the hint names the way out for Gmail and Microsoft 365: {hint}"
    );
    assert!(peer.received().is_empty(), "nothing was sent without logging in");
}

#[tokio::test]
async fn implicit_tls_on_a_starttls_port_fails_at_tls_and_suggests_starttls_or_port_465() {
    let certs = TestCertificates::for_localhost();
    let peer = SmtpPeer::start(&[
        "--mode",
        "starttls",
        "--cert",
        certs.cert_path.to_str().unwrap(),
        "--key",
        certs.key_path.to_str().unwrap(),
    ])
    .await;
    let app = Carteiro::start().await;
    app.set_global(json!({
        "connection": {"host": "localhost", "port": peer.port, "security": "tls", "timeout_s": 10, "tls_ca_pem": certs.ca_pem},
        "policy": {"default_sender_enabled": true, "default_sender_address": "noreply@plataforma.example"}
    }))
    .await;

    let report = test_connection(&app, json!({"to": "admin@example.com"})).await;

    assert_eq!(report["ok"], false, "{report:#}");
    assert_eq!(failed_step(&report)["step"], "tls");
    let hint = hint(&report);
    assert!(hint.contains("expects STARTTLS"), "the hint says what the port speaks: {hint}");
    assert!(hint.contains("choose STARTTLS") && hint.contains("465"), "the hint gives both fixes: {hint}");
}

#[tokio::test]
async fn unsaved_settings_are_tested_without_being_saved() {
    let mut peer = SmtpPeer::plain().await;
    let app = Carteiro::start().await;
    let nothing_there = free_port();
    app.set_global(plain_settings("127.0.0.1", nothing_there)).await;
    let (_, saved_before) = app.admin(Method::GET, "/api/v1/settings/global", None).await;
    let (_, audit_before) = app.admin(Method::GET, "/api/v1/audit", None).await;

    let report =
        test_connection(&app, json!({"settings": plain_settings("127.0.0.1", peer.port), "to": "admin@example.com"}))
            .await;

    assert_eq!(report["ok"], true, "the settings on screen were tested, not the saved ones: {report:#}");
    assert!(detail(step(&report, "tcp")).contains(&peer.port.to_string()), "{report:#}");
    assert_eq!(peer.next_message(WAIT).await.rcpt_tos, ["admin@example.com"]);
    let (_, saved_after) = app.admin(Method::GET, "/api/v1/settings/global", None).await;
    assert_eq!(saved_after, saved_before, "testing saves nothing");
    assert_eq!(saved_after["connection"]["port"], nothing_there);
    let (_, audit_after) = app.admin(Method::GET, "/api/v1/audit", None).await;
    assert_eq!(audit_after, audit_before, "testing changes nothing to audit");
}

#[tokio::test]
async fn a_blank_password_in_unsaved_settings_means_the_stored_one() {
    let certs = TestCertificates::for_localhost();
    let mut peer = SmtpPeer::starttls(&certs, &format!("{ACCOUNT}:{PASSWORD}")).await;
    let app = Carteiro::start().await;
    app.set_global(starttls_settings(&certs, peer.port, PASSWORD)).await;

    let mut on_screen = starttls_settings(&certs, peer.port, "");
    on_screen["connection"]["timeout_s"] = json!(30);
    let report = test_connection(&app, json!({"settings": on_screen, "to": "admin@example.com"})).await;

    assert_eq!(report["ok"], true, "the stored password was used: {report:#}");
    assert_eq!(step(&report, "auth")["ok"], true);
    assert_eq!(peer.next_message(WAIT).await.auth_user.as_deref(), Some(ACCOUNT));

    let typed = test_connection(
        &app,
        json!({"settings": starttls_settings(&certs, peer.port, "typed-but-wrong"), "to": "admin@example.com"}),
    )
    .await;
    assert_eq!(typed["ok"], false, "a password typed on screen replaces the stored one: {typed:#}");
    assert_eq!(failed_step(&typed)["step"], "auth");
}

#[tokio::test]
async fn the_stored_password_never_follows_the_form_to_another_server() {
    let certs = TestCertificates::for_localhost();
    let peer = SmtpPeer::starttls(&certs, &format!("{ACCOUNT}:{PASSWORD}")).await;
    let app = Carteiro::start().await;
    app.set_global(starttls_settings(&certs, peer.port, PASSWORD)).await;

    // The same form pointed at another host, password left blank.
    let mut elsewhere = starttls_settings(&certs, peer.port, "");
    elsewhere["connection"]["host"] = json!("127.0.0.1");
    let (status, answer) = app
        .admin(Method::POST, "/api/v1/test-connection", Some(json!({"settings": elsewhere, "to": "admin@example.com"})))
        .await;

    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["field"], "connection.password");
    assert!(answer["error"]["message"].as_str().unwrap().contains("server or user name changed"), "{answer}");
}

#[tokio::test]
async fn nothing_listening_fails_at_tcp_with_a_hint_about_host_and_port() {
    let app = Carteiro::start().await;
    let port = free_port();
    app.set_global(plain_settings("127.0.0.1", port)).await;

    let report = test_connection(&app, json!({"to": "admin@example.com"})).await;

    assert_eq!(report["ok"], false, "{report:#}");
    assert_eq!(step_names(&report), ["dns", "tcp"]);
    assert_eq!(failed_step(&report)["step"], "tcp");
    let hint = hint(&report);
    assert!(hint.contains(&format!("127.0.0.1:{port}")), "the hint names where it tried: {hint}");
    assert!(hint.contains("host") && hint.contains("port"), "the hint says to check host and port: {hint}");
}

#[tokio::test]
async fn a_host_that_does_not_resolve_fails_at_dns() {
    let app = Carteiro::start().await;
    app.set_global(plain_settings("no-such-host.invalid", 25)).await;

    let report = test_connection(&app, json!({"to": "admin@example.com"})).await;

    assert_eq!(report["ok"], false, "{report:#}");
    let failed = failed_step(&report);
    assert_eq!(failed["step"], "dns");
    assert!(detail(failed).contains("no-such-host.invalid"), "{failed}");
    assert!(hint(&report).contains("no-such-host.invalid"), "the hint names the host to check: {report:#}");
}

#[tokio::test]
async fn a_certificate_for_another_name_fails_at_tls_with_a_hint_about_the_certificate() {
    let certs = TestCertificates::for_names(&["mail.other.example"]);
    let peer = SmtpPeer::start(&[
        "--mode",
        "starttls",
        "--cert",
        certs.cert_path.to_str().unwrap(),
        "--key",
        certs.key_path.to_str().unwrap(),
    ])
    .await;
    let app = Carteiro::start().await;
    app.set_global(json!({
        "connection": {"host": "localhost", "port": peer.port, "security": "starttls", "timeout_s": 10, "tls_ca_pem": certs.ca_pem},
        "policy": {"default_sender_enabled": true, "default_sender_address": "noreply@plataforma.example"}
    }))
    .await;

    let report = test_connection(&app, json!({"to": "admin@example.com"})).await;

    assert_eq!(report["ok"], false, "{report:#}");
    assert_eq!(failed_step(&report)["step"], "tls");
    assert!(hint(&report).contains("certificate"), "the hint points at the certificate: {report:#}");
}

#[tokio::test]
async fn bad_requests_are_refused_naming_the_field() {
    let app = Carteiro::start().await;
    app.use_server(free_port()).await;
    app.create_company("acme").await;

    let (status, body) =
        app.admin(Method::POST, "/api/v1/test-connection", Some(json!({"to": "not an address"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "to", "{body}");

    let (status, body) = app
        .admin(Method::POST, "/api/v1/test-connection", Some(json!({"user": "42", "to": "admin@example.com"})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "user", "a user level needs its company: {body}");
}

#[tokio::test]
async fn a_company_administrator_tests_only_their_own_company() {
    let app = Carteiro::start().await;
    app.use_server(free_port()).await;
    app.create_company("acme").await;
    app.create_company("beta").await;
    let (status, body) = app
        .admin(
            Method::POST,
            "/api/v1/companies/acme/admins",
            Some(json!({"username": "acme-admin", "password": "acme-admin-password"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = app.login("acme-admin", "acme-admin-password").await.unwrap();
    let as_acme_admin =
        |request: Value| app.call(Method::POST, "/api/v1/test-connection", Some(token.as_str()), Some(request));

    let (status, body) = as_acme_admin(json!({"to": "admin@example.com"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "the global level is the platform's: {body}");

    let (status, body) = as_acme_admin(json!({"company": "beta", "to": "admin@example.com"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another company does not exist for them: {body}");

    let (status, body) = as_acme_admin(json!({"company": "acme", "to": "admin@example.com"})).await;
    assert_eq!(status, StatusCode::OK, "their own company can be tested: {body}");
}

#[tokio::test]
async fn the_cli_prints_the_same_steps_one_line_each() {
    let certs = TestCertificates::for_localhost();
    let mut peer = SmtpPeer::starttls(&certs, &format!("{ACCOUNT}:{PASSWORD}")).await;
    let app = Carteiro::start().await;
    app.set_global(starttls_settings(&certs, peer.port, PASSWORD)).await;
    let report = test_connection(&app, json!({"to": "admin@example.com"})).await;
    peer.next_message(WAIT).await;

    let output = app.cli(&["test-connection", "--to", "admin@example.com"], None).await;

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "stdout:\n{stdout}\nstderr:\n{}", String::from_utf8_lossy(&output.stderr));
    let printed: Vec<(&str, &str)> = stdout
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let verdict = words.next()?;
            matches!(verdict, "ok" | "FAIL").then(|| (verdict, words.next().unwrap_or_default()))
        })
        .collect();
    let names: Vec<&str> = printed.iter().map(|(_, name)| *name).collect();
    assert_eq!(names, step_names(&report), "the CLI shows the API's steps, in order:\n{stdout}");
    assert!(printed.iter().all(|(verdict, _)| *verdict == "ok"), "{stdout}");
    let data_line = stdout.lines().find(|l| l.split_whitespace().nth(1) == Some("data")).unwrap();
    assert!(
        data_line.contains("ms") && data_line.contains("250"),
        "a line shows the time and the server's reply: {data_line}"
    );
    assert_eq!(peer.next_message(WAIT).await.rcpt_tos, ["admin@example.com"], "the CLI sent a test e-mail too");
}

#[tokio::test]
async fn the_cli_shows_the_failed_step_and_the_hint_and_exits_with_an_error() {
    let app = Carteiro::start().await;
    let port = free_port();
    app.set_global(plain_settings("127.0.0.1", port)).await;

    let output = app.cli(&["test-connection", "--to", "admin@example.com"], None).await;

    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "a failed test is a failed command:\n{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("FAIL") && l.split_whitespace().nth(1) == Some("tcp")), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("hint:") && l.contains(&format!("127.0.0.1:{port}"))), "{stdout}");
}
