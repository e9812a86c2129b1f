//! The command line (SPEC §5, §7): every command explains itself, and each
//! one does on the data directory what the API would do.

use std::process::{Output, Stdio};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::app::ADMIN_PASSWORD;
use crate::helpers::peers::free_port;
use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(20);

/// Runs the carteiro binary with exactly these arguments (no running server, no data directory added).
async fn carteiro(args: &[&str]) -> Output {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_carteiro"))
        .args(args)
        .env("CARTEIRO_HOSTNAME", "carteiro.test")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the carteiro binary starts");
    tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("carteiro finishes by itself")
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Expects a successful exit; its standard output.
fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "expected success, got {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        stdout(output),
        stderr(output)
    );
    stdout(output)
}

/// Expects a failed exit; its standard error.
fn failed(output: &Output) -> String {
    assert!(!output.status.success(), "expected a failure, got success\nstdout:\n{}", stdout(output));
    stderr(output)
}

/// The global level pointed at `port` with a default sender, and a company `acme`.
async fn carteiro_with_acme(port: u16) -> (Carteiro, Company) {
    let app = Carteiro::start().await;
    app.use_server(port).await;
    let acme = app.create_company("acme").await;
    (app, acme)
}

#[tokio::test]
async fn every_command_explains_itself_with_help() {
    let cases: &[(&[&str], &[&str])] = &[
        (&[], &["outbound e-mail gateway", "serve", "migrate", "send", "test-connection", "config", "admin"]),
        (&["serve"], &["Run the HTTP API and the delivery worker", "--data-dir", "--listen", "--database-url"]),
        (&["migrate"], &["Apply the database migrations", "--data-dir"]),
        (&["send"], &["Queue a message", "--company", "--to", "--subject", "--text", "--json"]),
        (&["test-connection"], &["send a test e-mail", "--to", "--company"]),
        (&["config", "explain"], &["effective value", "--company", "--user"]),
        (&["admin", "create"], &["Create an administrator", "--username", "--company", "--password-stdin"]),
        (&["admin", "reset-password"], &["new password", "--username", "--password-stdin"]),
    ];
    for (command, says) in cases {
        let args: Vec<&str> = command.iter().copied().chain(["--help"]).collect();
        let help = succeeded(&carteiro(&args).await);
        for words in *says {
            assert!(help.contains(words), "`carteiro {}` does not say {words:?}:\n{help}", args.join(" "));
        }
    }
}

#[tokio::test]
async fn migrate_on_an_empty_directory_creates_an_up_to_date_database() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    let store = store::args(&data);
    let mut args = vec!["migrate", "--data-dir", data.to_str().unwrap()];
    args.extend(store.iter().map(String::as_str));

    let said = succeeded(&carteiro(&args).await);

    assert!(said.contains("the database is up to date"), "{said}");
    if !store::on_postgres() {
        assert!(data.join("carteiro.db").is_file(), "the SQLite file is in the data directory");
    }
    let again = succeeded(&carteiro(&args).await);
    assert!(again.contains("the database is up to date"), "migrating twice is harmless: {again}");
    store::drop_database(&data);
}

#[tokio::test]
async fn send_queues_a_message_that_the_running_server_delivers() {
    let mut peer = SmtpPeer::plain().await;
    let (app, acme) = carteiro_with_acme(peer.port).await;

    let output = app
        .cli(
            &[
                "send",
                "--company",
                "acme",
                "--to",
                "x@example.com",
                "--subject",
                "Relatório mensal",
                "--text",
                "Segue o resumo do mes.",
            ],
            None,
        )
        .await;

    let accepted: Value =
        serde_json::from_str(succeeded(&output).trim()).expect("send prints the accepted message as JSON");
    assert_eq!(accepted["status"], "queued");
    let received = peer.next_message(WAIT).await;
    assert_eq!(received.rcpt_tos, ["x@example.com"]);
    assert!(received.text().contains("Segue o resumo do mes."), "{}", received.text());
    assert_eq!(
        received.header("From").unwrap(),
        "\"Plataforma\" <noreply@plataforma.example>",
        "a system message comes from the default sender"
    );
    let message = app.wait_for_status(&acme, accepted["id"].as_str().unwrap(), "sent", WAIT).await;
    assert_eq!(message["subject"], "Relatório mensal");
}

#[tokio::test]
async fn send_reads_a_json_message_document_from_standard_input() {
    let mut peer = SmtpPeer::plain().await;
    let (app, acme) = carteiro_with_acme(peer.port).await;
    let document = json!({
        "kind": "user", "to": ["cliente@example.com"], "subject": "Tarefa 18 movida", "text": "A tarefa 18 foi movida.",
        "actor": {"id": "42", "name": "Ana Souza", "address": "ana@acme.example"}
    });

    let output = app.cli(&["send", "--company", "acme", "--json", "-"], Some(&document.to_string())).await;

    let accepted: Value =
        serde_json::from_str(succeeded(&output).trim()).expect("send prints the accepted message as JSON");
    let received = peer.next_message(WAIT).await;
    assert_eq!(received.rcpt_tos, ["cliente@example.com"]);
    assert_eq!(received.header("Subject").unwrap(), "Tarefa 18 movida");
    assert_eq!(
        received.header("From").unwrap(),
        "\"Ana Souza\" <ana@acme.example>",
        "a user message comes from the acting user"
    );
    app.wait_for_status(&acme, accepted["id"].as_str().unwrap(), "sent", WAIT).await;
}

#[tokio::test]
async fn send_refuses_an_invalid_address_naming_the_field_and_queues_nothing() {
    let (app, acme) = carteiro_with_acme(free_port()).await;

    let output =
        app.cli(&["send", "--company", "acme", "--to", "not-an-address", "--subject", "S", "--text", "T"], None).await;

    let error = failed(&output);
    assert!(error.contains("to[0]") && error.contains("not a valid e-mail address"), "{error}");
    let (status, listed) = app.call(Method::GET, "/api/v1/messages", Some(&acme.key), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed, json!([]), "nothing was queued");
}

#[tokio::test]
async fn config_explain_shows_each_value_with_its_level_and_never_the_password() {
    const PASSWORD: &str = "s3nha-global-muito-secreta";
    let app = Carteiro::start().await;
    app.set_global(json!({
        "connection": {"host": "smtp.plataforma.example", "port": 587, "security": "starttls", "auth_enabled": true,
                       "username": "relay@plataforma.example", "password": PASSWORD, "timeout_s": 30},
        "policy": {"default_sender_enabled": true, "default_sender_name": "Plataforma", "default_sender_address": "noreply@plataforma.example"}
    }))
    .await;
    let acme = app.create_company("acme").await;
    app.set_company_settings(&acme, json!({"policy": {"default_sender_name": "ACME"}})).await;
    let (status, body) = app
        .admin(
            Method::PUT,
            "/api/v1/companies/acme/users/42/settings",
            Some(json!({"policy": {"force_default_sender": true}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let output = app.cli(&["config", "explain", "--company", "acme", "--user", "42"], None).await;

    let printed = succeeded(&output);
    assert!(
        !printed.contains(PASSWORD) && !stderr(&output).contains(PASSWORD),
        "the password never appears:\n{printed}"
    );
    let explained: Value = serde_json::from_str(&printed).expect("config explain prints JSON");
    assert_eq!(explained["company"], "acme");
    assert_eq!(explained["user"], "42");
    let connection = &explained["connection"];
    assert_eq!(connection["host"], json!({"value": "smtp.plataforma.example", "source": "global"}));
    assert_eq!(connection["password"]["set"], true);
    assert_eq!(connection["password"]["value"], Value::Null);
    let policy = &explained["policy"];
    assert_eq!(policy["default_sender_address"], json!({"value": "noreply@plataforma.example", "source": "global"}));
    assert_eq!(policy["default_sender_name"], json!({"value": "ACME", "source": "company"}));
    assert_eq!(policy["force_default_sender"], json!({"value": true, "source": "user"}));
    assert_eq!(policy["bundle_interval_ms"], json!({"value": 2000, "source": "default"}));
}

#[tokio::test]
async fn admin_create_makes_a_company_administrator_who_can_log_in() {
    let app = Carteiro::start().await;
    app.create_company("acme").await;

    let output = app
        .cli(
            &["admin", "create", "--username", "ana", "--company", "acme", "--password-stdin"],
            Some("senha-da-ana-123\n"),
        )
        .await;

    succeeded(&output);
    let token =
        app.login("ana", "senha-da-ana-123").await.expect("ana logs in with the password given on standard input");
    let (status, body) = app.call(Method::GET, "/api/v1/companies/acme/settings", Some(&token), None).await;
    assert_eq!(status, StatusCode::OK, "ana manages her company: {body}");
    let (status, body) = app.call(Method::GET, "/api/v1/settings/global", Some(&token), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "ana is not a platform administrator: {body}");
}

#[tokio::test]
async fn admin_reset_password_prints_a_new_password_and_retires_the_old_one() {
    let app = Carteiro::start().await;

    let output = app.cli(&["admin", "reset-password", "--username", "admin"], None).await;

    let said = succeeded(&output);
    let new_password = said
        .split_once("now has the password ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("the generated password is printed: {said}"));
    assert!(app.login("admin", ADMIN_PASSWORD).await.is_none(), "the old password no longer works");
    assert!(app.login("admin", new_password).await.is_some(), "the printed password works");
    let (status, _) = app.admin(Method::GET, "/api/v1/settings/global", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a new password ends the sessions opened with the old one");
}

#[tokio::test]
async fn test_connection_prints_every_step_against_a_working_server() {
    let mut peer = SmtpPeer::plain().await;
    let (app, _) = carteiro_with_acme(peer.port).await;

    let output = app.cli(&["test-connection", "--to", "x@example.com"], None).await;

    let said = succeeded(&output);
    for step in ["tcp", "ehlo", "mail", "rcpt", "data"] {
        assert!(
            said.lines().any(|l| l.starts_with("ok") && l.split_whitespace().nth(1) == Some(step)),
            "no ok line for {step}:\n{said}"
        );
    }
    assert!(!said.contains("FAIL"), "{said}");
    let received = peer.next_message(WAIT).await;
    assert_eq!(received.rcpt_tos, ["x@example.com"], "the test e-mail reached the server");
}

#[tokio::test]
async fn test_connection_fails_with_a_hint_when_nothing_listens() {
    let port = free_port();
    let (app, _) = carteiro_with_acme(port).await;

    let output = app.cli(&["test-connection", "--to", "x@example.com"], None).await;

    failed(&output);
    let said = stdout(&output);
    assert!(
        said.lines().any(|l| l.starts_with("FAIL") && l.contains("tcp")),
        "a FAIL line for the TCP connection:\n{said}"
    );
    let hint = said.lines().find(|l| l.starts_with("hint:")).unwrap_or_else(|| panic!("a hint:\n{said}"));
    assert!(hint.contains(&format!("127.0.0.1:{port}")), "the hint names the address: {hint}");
}

#[tokio::test]
async fn serve_on_an_unreachable_postgresql_stops_with_a_clear_sentence_and_no_password() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let url = format!("postgres://carteiro:pg-s3cr3t-9921@127.0.0.1:{port}/carteiro");

    let output = carteiro(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--database-url",
        &url,
    ])
    .await;

    let error = failed(&output);
    assert!(error.contains("PostgreSQL") && error.contains(&format!("127.0.0.1:{port}")), "{error}");
    assert!(!error.contains("pg-s3cr3t-9921"), "the password stays out of the error: {error}");
}

#[tokio::test]
async fn serve_refuses_an_invalid_flag_value_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();

    let output = carteiro(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--max-recipients",
        "0",
    ])
    .await;

    let error = failed(&output);
    assert!(error.contains("--max-recipients") && error.contains("got 0"), "{error}");
}

#[tokio::test]
async fn a_command_on_a_directory_without_an_installation_says_so_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("carteiro.toml");
    std::fs::write(&file, "[global.policy]\nbundle_enabled = true\n").unwrap();
    let mistyped = dir.path().join("carteiro-dta");

    for args in [
        vec!["config", "import", file.to_str().unwrap(), "--dry-run", "--data-dir", mistyped.to_str().unwrap()],
        vec!["config", "export", "--data-dir", mistyped.to_str().unwrap()],
        vec!["config", "explain", "--company", "acme", "--data-dir", mistyped.to_str().unwrap()],
    ] {
        let error = failed(&carteiro(&args).await);
        assert!(error.contains("there is no carteiro installation in"), "{args:?}: {error}");
    }
    assert!(!mistyped.exists(), "nothing was created in the mistyped directory");
}
