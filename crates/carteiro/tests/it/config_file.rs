//! Configuration as code (SPEC §1 "Install-time configuration"): `config
//! export` writes every level as TOML, `config import` applies such a file all
//! or nothing (naming every mistake by its path), and `serve --config` applies
//! it on start only when the file changed.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(20);

const GLOBAL_ACCOUNT: &str = "relay@plataforma.example";
const GLOBAL_SECRET: &str = "CFG-GLOBAL-SECRET-6120";
const ACME_ACCOUNT: &str = "relay@acme.example";
const ACME_SECRET: &str = "CFG-ACME-SECRET-8841";
const USER_ACCOUNT: &str = "ana@acme.example";
const USER_SECRET: &str = "CFG-USER-SECRET-3397";
const PROXY_SECRET: &str = "CFG-PROXY-SECRET-5502";

/// The same master key for every installation of a test: what makes sealed secrets portable.
fn master_key() -> String {
    B64.encode([42u8; 32])
}

/// Runs the carteiro CLI on a data directory with the shared master key.
async fn carteiro_cli(data_dir: &Path, args: &[&str]) -> Output {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_carteiro"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .args(crate::helpers::store::args(data_dir))
        .env("CARTEIRO_HOSTNAME", "carteiro.test")
        .env("CARTEIRO_MASTER_KEY", master_key())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the carteiro binary starts");
    tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await.expect("the CLI finishes").unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn succeeded(output: &Output) -> String {
    assert!(output.status.success(), "expected success\nstdout:\n{}\nstderr:\n{}", stdout(output), stderr(output));
    stdout(output)
}

fn failed(output: &Output) -> String {
    assert!(!output.status.success(), "expected a failure\nstdout:\n{}\nstderr:\n{}", stdout(output), stderr(output));
    stderr(output)
}

/// A carteiro started with the shared master key (and extra `serve` flags).
async fn start(extra: &[&str]) -> Carteiro {
    let key = master_key();
    Carteiro::start_with(extra, &[("CARTEIRO_MASTER_KEY", key.as_str())]).await
}

async fn put(app: &Carteiro, path: &str, doc: Value) {
    let (status, body) = app.admin(Method::PUT, path, Some(doc)).await;
    assert_eq!(status, StatusCode::OK, "PUT {path}: {body}");
}

async fn create_company(app: &Carteiro, slug: &str, name: &str) {
    let (status, body) = app
        .admin(
            Method::POST,
            "/api/v1/companies",
            Some(json!({"slug": slug, "name": name, "email": format!("contato@{slug}.example")})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// The effective settings of every (company, user) pair, as the API explains them.
async fn effective(app: &Carteiro, pairs: &[(&str, Option<&str>)]) -> Vec<Value> {
    let mut all = Vec::new();
    for (company, user) in pairs {
        let path = match user {
            Some(u) => format!("/api/v1/companies/{company}/effective-settings?user={u}"),
            None => format!("/api/v1/companies/{company}/effective-settings"),
        };
        let (status, body) = app.admin(Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        all.push(body);
    }
    all
}

async fn companies(app: &Carteiro) -> Value {
    let (status, body) = app.admin(Method::GET, "/api/v1/companies", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut names: Vec<Value> =
        body.as_array().unwrap().iter().map(|c| json!([c["slug"], c["name"], c["email"]])).collect();
    names.sort_by_key(|v| v.to_string());
    Value::Array(names)
}

async fn audit_entries(app: &Carteiro) -> Vec<Value> {
    let (status, body) = app.admin(Method::GET, "/api/v1/audit?limit=1000", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["entries"].as_array().unwrap().clone()
}

/// A connection at STARTTLS with AUTH to a peer on localhost.
fn authenticated(certs: &TestCertificates, port: u16, account: &str, password: &str) -> Value {
    json!({
        "enabled": true, "host": "localhost", "port": port, "security": "starttls", "auth_enabled": true,
        "username": account, "password": password, "timeout_s": 10, "tls_ca_pem": certs.ca_pem
    })
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn config_file_commands_explain_themselves_with_help() {
    let dir = tempfile::tempdir().unwrap();
    for (command, says) in [
        (&["config", "export"][..], &["TOML", "--with-secrets", "--out", "--data-dir"][..]),
        (&["config", "import"][..], &["one transaction", "--dry-run", "<FILE>"][..]),
        (&["serve"][..], &["--config", "CARTEIRO_CONFIG"][..]),
    ] {
        let args: Vec<&str> = command.iter().copied().chain(["--help"]).collect();
        let help = succeeded(&carteiro_cli(dir.path(), &args).await);
        for words in says {
            assert!(help.contains(words), "`carteiro {}` does not say {words:?}:\n{help}", args.join(" "));
        }
    }
    store::drop_database(dir.path());
}

/// Every (company, user) the round trip compares.
const PAIRS: &[(&str, Option<&str>)] =
    &[("acme", None), ("acme", Some("42")), ("acme", Some("ana.souza@acme")), ("beta", None), ("beta", Some("42"))];

#[tokio::test]
async fn config_file_export_then_import_on_a_new_installation_reproduces_every_level_with_its_secrets() {
    let certs = TestCertificates::for_localhost();
    let mut global_peer = SmtpPeer::starttls(&certs, &format!("{GLOBAL_ACCOUNT}:{GLOBAL_SECRET}")).await;
    let mut acme_peer = SmtpPeer::starttls(&certs, &format!("{ACME_ACCOUNT}:{ACME_SECRET}")).await;
    let mut user_peer = SmtpPeer::starttls(&certs, &format!("{USER_ACCOUNT}:{USER_SECRET}")).await;

    // An installation with every kind of level: global, two companies (one without a level
    // of its own), a user with a connection of its own and one with a policy only.
    let old = start(&[]).await;
    put(
        &old,
        "/api/v1/settings/global",
        json!({
            "connection": authenticated(&certs, global_peer.port, GLOBAL_ACCOUNT, GLOBAL_SECRET),
            "policy": {"default_sender_enabled": true, "default_sender_name": "Plataforma",
                       "default_sender_address": "noreply@plataforma.example", "bundle_interval_ms": 3000}
        }),
    )
    .await;
    create_company(&old, "acme", "ACME Ltda").await;
    create_company(&old, "beta", "Beta S.A.").await;
    let mut acme_connection = authenticated(&certs, acme_peer.port, ACME_ACCOUNT, ACME_SECRET);
    acme_connection["proxy"] = json!({"enabled": false, "kind": "socks5", "address": "proxy.acme.example",
                                      "port": 1080, "username": "proxy-user", "password": PROXY_SECRET});
    put(
        &old,
        "/api/v1/companies/acme/settings",
        json!({"connection": acme_connection, "policy": {"default_sender_name": "ACME", "send_as_others": "rewrite"}}),
    )
    .await;
    put(
        &old,
        "/api/v1/companies/acme/users/42/settings",
        json!({"connection": authenticated(&certs, user_peer.port, USER_ACCOUNT, USER_SECRET)}),
    )
    .await;
    put(
        &old,
        "/api/v1/companies/acme/users/ana.souza@acme/settings",
        json!({"policy": {"force_default_sender": true}}),
    )
    .await;
    let expected = effective(&old, PAIRS).await;
    let expected_companies = companies(&old).await;

    let dir = tempfile::tempdir().unwrap();
    let sealed = dir.path().join("sealed.toml");
    let plain = dir.path().join("plain.toml");
    succeeded(
        &carteiro_cli(&old.data_dir(), &["config", "export", "--with-secrets", "--out", sealed.to_str().unwrap()])
            .await,
    );
    let printed = succeeded(&carteiro_cli(&old.data_dir(), &["config", "export"]).await);
    std::fs::write(&plain, &printed).unwrap();

    // No secret is written in clear, with or without --with-secrets.
    let sealed_text = std::fs::read_to_string(&sealed).unwrap();
    for secret in [GLOBAL_SECRET, ACME_SECRET, USER_SECRET, PROXY_SECRET] {
        assert!(!printed.contains(secret), "{secret} in the export:\n{printed}");
        assert!(!sealed_text.contains(secret), "{secret} in the export with secrets:\n{sealed_text}");
    }
    assert!(!printed.contains("_sealed"), "without --with-secrets, no sealed secret either:\n{printed}");
    assert!(printed.contains("password_set = true"), "{printed}");
    assert_eq!(sealed_text.matches("password_sealed = \"v1:").count(), 4, "{sealed_text}");
    for table in [
        "[global.connection]",
        "[global.policy]",
        "[companies.acme]",
        "[companies.acme.connection]",
        "[companies.acme.connection.proxy]",
        "[companies.acme.users.42.connection]",
        "[companies.acme.users.\"ana.souza@acme\".policy]",
        "[companies.beta]",
    ] {
        assert!(printed.contains(table), "{table} is missing:\n{printed}");
    }

    // A new installation with the same master key: the file brings back everything.
    let new = start(&[]).await;
    let said = succeeded(&carteiro_cli(&new.data_dir(), &["config", "import", sealed.to_str().unwrap()]).await);
    assert!(said.contains("applied"), "{said}");
    assert!(said.contains("+ global.connection.password: (set)"), "{said}");
    for secret in [GLOBAL_SECRET, ACME_SECRET, USER_SECRET, PROXY_SECRET] {
        assert!(!said.contains(secret), "{said}");
    }

    assert_eq!(companies(&new).await, expected_companies, "the companies are created with their names");
    assert_eq!(effective(&new, PAIRS).await, expected, "the same effective settings for every (company, user)");
    let again = succeeded(&carteiro_cli(&new.data_dir(), &["config", "export"]).await);
    assert_eq!(again, printed, "exporting again gives the same file");

    // The passwords came along: each level logs in to its own server.
    let to = "admin@example.com";
    for (request, peer, account) in [
        (json!({"to": to}), &mut global_peer, GLOBAL_ACCOUNT),
        (json!({"company": "acme", "to": to}), &mut acme_peer, ACME_ACCOUNT),
        (json!({"company": "acme", "user": "42", "to": to}), &mut user_peer, USER_ACCOUNT),
    ] {
        let (status, report) = new.admin(Method::POST, "/api/v1/test-connection", Some(request.clone())).await;
        assert_eq!(status, StatusCode::OK, "{report}");
        assert_eq!(report["ok"], true, "{request}: {report:#}");
        assert_eq!(peer.next_message(WAIT).await.auth_user.as_deref(), Some(account));
    }
}

#[tokio::test]
async fn config_file_import_without_secrets_on_a_new_installation_asks_for_each_password() {
    let old = start(&[]).await;
    put(
        &old,
        "/api/v1/settings/global",
        json!({"connection": {"host": "smtp.plataforma.example", "auth_enabled": true,
                              "username": GLOBAL_ACCOUNT, "password": GLOBAL_SECRET}}),
    )
    .await;
    let printed = succeeded(&carteiro_cli(&old.data_dir(), &["config", "export"]).await);
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "plain.toml", &printed);

    let new = start(&[]).await;
    let error = failed(&carteiro_cli(&new.data_dir(), &["config", "import", file.to_str().unwrap()]).await);

    assert!(
        error.contains(
            "global.connection.password: password is required when authentication is enabled and none is stored"
        ),
        "{error}"
    );
    // On the installation it came from, the stored password is kept: nothing to change.
    let said = succeeded(&carteiro_cli(&old.data_dir(), &["config", "import", file.to_str().unwrap()]).await);
    assert!(said.contains("nothing to change"), "{said}");
}

#[tokio::test]
async fn config_file_import_with_errors_in_three_levels_names_them_all_and_changes_nothing() {
    let app = start(&[]).await;
    put(
        &app,
        "/api/v1/settings/global",
        json!({"connection": {"host": "smtp.plataforma.example", "port": 587, "timeout_s": 60},
               "policy": {"default_sender_enabled": true, "default_sender_address": "noreply@plataforma.example"}}),
    )
    .await;
    create_company(&app, "acme", "ACME Ltda").await;
    put(&app, "/api/v1/companies/acme/settings", json!({"connection": {"host": "smtp.acme.example", "port": 465}}))
        .await;
    put(&app, "/api/v1/companies/acme/users/42/settings", json!({"policy": {"send_as_others": "on_behalf"}})).await;
    let pairs = [("acme", None), ("acme", Some("42"))];
    let before = effective(&app, &pairs).await;
    let audit_before = audit_entries(&app).await.len();
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "bad.toml",
        r#"
[global.connection]
host = "smtp.plataforma.example"
port = 587
timeout_s = 5

[global.policy]
default_sender_name = "A valid change that must not be applied either"

[companies.acme.connection]
host = "smtp.acme.example"
port = 0

[companies.acme.users.42.policy]
send_as_others = "sometimes"

[companies.novo]
name = "Nova Empresa"

[companies.novo.policy]
default_sender_name = "Novo"
"#,
    );

    let output = carteiro_cli(&app.data_dir(), &["config", "import", file.to_str().unwrap()]).await;

    let error = failed(&output);
    assert!(error.contains("the configuration file has 3 errors; nothing was changed"), "{error}");
    for line in [
        "global.connection.timeout_s: timeout_s must be between 10 and 180, got 5",
        "companies.acme.connection.port: port must be between 1 and 65535, got 0",
        "companies.acme.users.42.policy.send_as_others: send_as_others must be one of allowed, on_behalf, rewrite, got \"sometimes\"",
    ] {
        assert!(error.lines().any(|l| l.trim() == line), "missing {line:?} in:\n{error}");
    }
    assert_eq!(effective(&app, &pairs).await, before, "no level changed");
    let (status, _) = app.admin(Method::GET, "/api/v1/companies/novo/settings", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the company of the file was not created");
    assert_eq!(audit_entries(&app).await.len(), audit_before, "nothing was recorded");

    // The same file as a dry run fails the same way.
    let dry = carteiro_cli(&app.data_dir(), &["config", "import", "--dry-run", file.to_str().unwrap()]).await;
    assert!(failed(&dry).contains("3 errors"));
}

#[tokio::test]
async fn config_file_dry_run_lists_each_difference_and_changes_nothing_then_import_applies_them() {
    const OLD_SECRET: &str = "CFG-OLD-SECRET-1111";
    const NEW_SECRET: &str = "CFG-NEW-SECRET-2222";
    let app = start(&[]).await;
    put(
        &app,
        "/api/v1/settings/global",
        json!({"connection": {"host": "smtp.plataforma.example", "port": 587, "security": "starttls",
                              "auth_enabled": true, "username": GLOBAL_ACCOUNT, "password": OLD_SECRET},
               "policy": {"default_sender_enabled": true, "default_sender_name": "Plataforma",
                          "default_sender_address": "noreply@plataforma.example"}}),
    )
    .await;
    create_company(&app, "acme", "ACME Ltda").await;
    put(
        &app,
        "/api/v1/companies/acme/settings",
        json!({"connection": {"host": "smtp.acme.example", "port": 587, "timeout_s": 30},
               "policy": {"default_sender_name": "ACME"}}),
    )
    .await;
    let pairs = [("acme", None), ("beta", None)];
    let before = effective(&app, &pairs[..1]).await;
    let audit_before = audit_entries(&app).await.len();
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "next.toml",
        &format!(
            r#"
[global.connection]
host = "smtp.plataforma.example"
port = 587
security = "starttls"
auth_enabled = true
username = "{GLOBAL_ACCOUNT}"
password = "{NEW_SECRET}"

[global.policy]
default_sender_enabled = true
default_sender_name = "Plataforma"
default_sender_address = "noreply@plataforma.example"

[companies.acme.connection]
host = "smtp.acme.example"
port = 465
security = "tls"

[companies.acme.policy]

[companies.beta]
name = "Beta S.A."

[companies.beta.policy]
force_default_sender = true
"#
        ),
    );

    let output = carteiro_cli(&app.data_dir(), &["config", "import", "--dry-run", file.to_str().unwrap()]).await;

    let said = succeeded(&output);
    let lines: Vec<&str> = said.lines().collect();
    for line in [
        "~ global.connection.password: (changed)",
        "~ companies.acme.connection.port: 587 → 465",
        "+ companies.acme.connection.security: \"tls\"",
        "- companies.acme.connection.timeout_s: 30",
        "- companies.acme.policy.default_sender_name: \"ACME\"",
        "+ companies.beta.name: \"Beta S.A.\"",
        "+ companies.beta.policy.force_default_sender: true",
    ] {
        assert!(lines.contains(&line), "missing {line:?} in:\n{said}");
    }
    assert!(
        !lines.iter().any(|l| l.contains("global.connection.host") || l.contains("global.policy")),
        "unchanged fields are not listed:\n{said}"
    );
    assert!(said.contains("dry run") && said.contains("nothing was changed"), "{said}");
    let all = format!("{said}{}", stderr(&output));
    assert!(!all.contains(NEW_SECRET) && !all.contains(OLD_SECRET), "no secret is shown:\n{all}");
    assert_eq!(effective(&app, &pairs[..1]).await, before, "a dry run changes nothing");
    let (status, _) = app.admin(Method::GET, "/api/v1/companies/beta/settings", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a dry run creates no company");
    assert_eq!(audit_entries(&app).await.len(), audit_before, "a dry run records nothing");

    // Without --dry-run, the same differences are applied and audited as the import's.
    let said = succeeded(&carteiro_cli(&app.data_dir(), &["config", "import", file.to_str().unwrap()]).await);
    assert!(said.contains("~ companies.acme.connection.port: 587 → 465"), "{said}");
    let after = effective(&app, &pairs).await;
    assert_eq!(after[0]["connection"]["port"], json!({"value": 465, "source": "company"}));
    assert_eq!(after[0]["policy"]["default_sender_name"], json!({"value": "Plataforma", "source": "global"}));
    assert_eq!(after[1]["policy"]["force_default_sender"], json!({"value": true, "source": "company"}));
    let audit = audit_entries(&app).await;
    let imported: Vec<&Value> = audit.iter().filter(|e| e["actor"] == "config import").collect();
    let targets: Vec<&str> = imported.iter().map(|e| e["target"].as_str().unwrap()).collect();
    for target in ["global", "company:acme", "company:beta"] {
        assert!(targets.contains(&target), "no audit entry for {target}: {imported:#?}");
    }
    let global = imported.iter().find(|e| e["target"] == "global").unwrap();
    assert_eq!(global["fields"], json!(["connection.password"]), "only the password changed in global");
    assert!(!audit.iter().any(|e| e.to_string().contains(NEW_SECRET)));
}

/// A file with the global level and a company, its default sender name given.
fn install_file(sender_name: &str) -> String {
    format!(
        r#"
[global.connection]
host = "smtp.plataforma.example"
port = 587

[global.policy]
default_sender_enabled = true
default_sender_address = "noreply@plataforma.example"

[companies.acme]
name = "ACME Ltda"
email = "contato@acme.example"

[companies.acme.policy]
default_sender_name = "{sender_name}"
"#
    )
}

async fn sender_name(app: &Carteiro) -> Value {
    effective(app, &[("acme", None)]).await[0]["policy"]["default_sender_name"].clone()
}

#[tokio::test]
async fn config_file_serve_applies_it_once_keeps_later_changes_and_applies_it_again_when_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "carteiro.toml", &install_file("ACME (file v1)"));

    let mut app = start(&["--config", file.to_str().unwrap()]).await;

    assert_eq!(sender_name(&app).await, json!({"value": "ACME (file v1)", "source": "company"}));
    let effective_global = effective(&app, &[("acme", None)]).await[0]["connection"]["host"].clone();
    assert_eq!(effective_global, json!({"value": "smtp.plataforma.example", "source": "global"}));
    assert_eq!(companies(&app).await, json!([["acme", "ACME Ltda", "contato@acme.example"]]));

    // A change in the console or the API outlives a restart with the same file.
    put(&app, "/api/v1/companies/acme/settings", json!({"policy": {"default_sender_name": "ACME (console)"}})).await;
    app.restart().await;
    assert_eq!(sender_name(&app).await, json!({"value": "ACME (console)", "source": "company"}));
    assert!(app.logs().contains("the settings as they are now are kept"), "{}", app.logs());

    // A changed file is applied on the next start.
    std::fs::write(&file, install_file("ACME (file v2)")).unwrap();
    app.restart().await;
    assert_eq!(sender_name(&app).await, json!({"value": "ACME (file v2)", "source": "company"}));
    let audit = audit_entries(&app).await;
    assert_eq!(
        audit
            .iter()
            .filter(|e| e["actor"] == "config import"
                && e["action"] == "settings.update"
                && e["target"] == "company:acme")
            .count(),
        2,
        "each application of the file is audited: {audit:#?}"
    );
}

#[tokio::test]
async fn config_file_given_by_environment_that_is_invalid_stops_serve_with_every_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "carteiro.toml",
        "[global.connection]\nhost = \"smtp.plataforma.example\"\ntimeout_s = 500\n\n[companies.acme.policy]\nbundle_interval_ms = 1\n",
    );
    let data = dir.path().join("data");

    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_carteiro"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()])
        .args(crate::helpers::store::args(&data))
        .env("CARTEIRO_CONFIG", &file)
        .env("CARTEIRO_HOSTNAME", "carteiro.test")
        .env("CARTEIRO_ADMIN_PASSWORD", "admin-password-for-tests")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let output =
        tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await.expect("serve stops").unwrap();

    let error = failed(&output);
    assert!(!stdout(&output).contains("API on"), "it never listens: {}", stdout(&output));
    for line in [
        "global.connection.timeout_s: timeout_s must be between 10 and 180, got 500",
        "companies.acme.name: name is required",
        "companies.acme.policy.bundle_interval_ms: bundle_interval_ms must be between",
    ] {
        assert!(error.contains(line), "missing {line:?} in:\n{error}");
    }
    assert!(error.contains("carteiro.toml"), "the file is named: {error}");
    store::drop_database(&data);
}
