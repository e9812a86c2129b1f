//! Rotating the master key (`carteiro admin rotate-key`): every sealed secret
//! (an SMTP password, a DKIM key, a webhook's secret) is sealed again with a
//! new key, carteiro uses each of them after the restart, the old key opens
//! nothing any more, and a rotation that cannot finish changes nothing.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::app::system_message;
use crate::helpers::*;
use crate::webhooks::{Receiver, create_webhook};

const WAIT: Duration = Duration::from_secs(20);
const ACCOUNT: &str = "relay@plataforma.example";
const PASSWORD: &str = "SMTP-ROTATED-SECRET-3141";

fn key(byte: u8) -> String {
    B64.encode([byte; 32])
}

fn printed(output: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// A running carteiro whose global level logs in to `peer` with a password.
async fn with_a_password(peer: &SmtpPeer, certs: &TestCertificates, env: &[(&str, &str)]) -> (Carteiro, Company) {
    let app = Carteiro::start_with(&[], env).await;
    app.set_global(json!({
        "connection": {
            "enabled": true, "host": "localhost", "port": peer.port, "security": "starttls", "auth_enabled": true,
            "username": ACCOUNT, "password": PASSWORD, "timeout_s": 10, "tls_ca_pem": certs.ca_pem
        },
        "policy": {"default_sender_enabled": true, "default_sender_address": "noreply@plataforma.example"}
    }))
    .await;
    let beta = app.create_company("beta").await;
    (app, beta)
}

/// `config explain` opens the stored password (to say whether it is set): it works with the right key only.
async fn explains_with(app: &Carteiro, master_key: Option<&str>) -> std::process::Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_carteiro"));
    command.args(["config", "explain", "--company", "beta", "--data-dir"]).arg(app.data_dir());
    command.args(crate::helpers::store::args(&app.data_dir()));
    command.env_remove("CARTEIRO_MASTER_KEY");
    if let Some(key) = master_key {
        command.env("CARTEIRO_MASTER_KEY", key);
    }
    command.output().await.unwrap()
}

#[tokio::test]
async fn rotating_the_key_file_reseals_every_secret_and_carteiro_uses_each_after_a_restart() {
    let certs = TestCertificates::for_localhost();
    let mut peer = SmtpPeer::starttls(&certs, &format!("{ACCOUNT}:{PASSWORD}")).await;
    let (mut app, beta) = with_a_password(&peer, &certs, &[]).await;
    let (status, dkim) = app
        .admin(
            Method::POST,
            "/api/v1/companies/beta/dkim-keys",
            Some(json!({"selector": "s1", "domain": "plataforma.example"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{dkim}");
    let receiver = Receiver::start().await;
    let (_, webhook_secret) =
        create_webhook(&app, "beta", json!({"url": receiver.url, "events": ["message.sent"]})).await;
    receiver.set_secret(&webhook_secret);
    let old_key = std::fs::read_to_string(app.data_dir().join("master.key")).unwrap();
    app.kill().await;

    let output = app.cli(&["admin", "rotate-key"], None).await;

    assert!(output.status.success(), "{}", printed(&output));
    assert!(
        printed(&output).contains("sealed 3 secrets"),
        "the password, the DKIM key and the webhook's secret: {}",
        printed(&output)
    );
    assert!(!printed(&output).contains(PASSWORD) && !printed(&output).contains(&webhook_secret));
    let new_key = std::fs::read_to_string(app.data_dir().join("master.key")).unwrap();
    assert_ne!(new_key.trim(), old_key.trim(), "the key file holds a new key");
    assert!(!app.data_dir().join("master.key.new").exists(), "no staged key is left behind");

    app.restart().await;
    let id = app.send(&beta, system_message(&["cliente@example.com"])).await;
    let arrived = peer.next_message(WAIT).await;
    assert_eq!(arrived.auth_user.as_deref(), Some(ACCOUNT), "the password opened with the new key");
    assert!(
        String::from_utf8_lossy(&arrived.data).contains("DKIM-Signature:"),
        "the DKIM key opened with the new key and signed the message"
    );
    app.wait_for_status(&beta, &id, "sent", WAIT).await;
    let events = receiver.wait_for_events(1).await;
    assert_eq!(events[0].kind, "message.sent", "the webhook's secret opened with the new key and signed the event");

    let with_old = explains_with(&app, Some(old_key.trim())).await;
    assert!(!with_old.status.success(), "the old key opens nothing any more: {}", printed(&with_old));
    assert!(printed(&with_old).contains("master key"), "{}", printed(&with_old));
    let (_, audit) = app.admin(Method::GET, "/api/v1/audit", None).await;
    assert!(
        audit["entries"].as_array().unwrap().iter().any(|e| e["action"] == "master_key.rotate" && e["actor"] == "cli"),
        "the rotation is audited: {audit:#}"
    );
}

#[tokio::test]
async fn with_the_key_in_the_environment_the_new_key_is_the_operators_and_a_failed_rotation_changes_nothing() {
    let certs = TestCertificates::for_localhost();
    let mut peer = SmtpPeer::starttls(&certs, &format!("{ACCOUNT}:{PASSWORD}")).await;
    let (mut app, beta) = with_a_password(&peer, &certs, &[("CARTEIRO_MASTER_KEY", &key(0x11))]).await;
    app.kill().await;

    let without_new = app.cli(&["admin", "rotate-key"], None).await;
    assert!(!without_new.status.success());
    assert!(printed(&without_new).contains("CARTEIRO_NEW_MASTER_KEY"), "{}", printed(&without_new));

    app.set_env("CARTEIRO_NEW_MASTER_KEY", "c2hvcnQ=");
    let short = app.cli(&["admin", "rotate-key"], None).await;
    assert!(!short.status.success());
    assert!(printed(&short).contains("CARTEIRO_NEW_MASTER_KEY must be"), "{}", printed(&short));

    app.set_env("CARTEIRO_NEW_MASTER_KEY", &key(0x22));
    app.set_env("CARTEIRO_MASTER_KEY", &key(0x33));
    let wrong_current = app.cli(&["admin", "rotate-key"], None).await;
    assert!(!wrong_current.status.success(), "a key that opens nothing cannot be rotated away");
    let said = printed(&wrong_current);
    assert!(said.contains("was not rotated") && said.contains("connection.password of the global level"), "{said}");
    assert!(
        explains_with(&app, Some(&key(0x11))).await.status.success(),
        "nothing changed: the first key still opens the password"
    );
    assert!(!app.data_dir().join("master.key").exists() && !app.data_dir().join("master.key.new").exists());

    app.set_env("CARTEIRO_MASTER_KEY", &key(0x11));
    let rotated = app.cli(&["admin", "rotate-key"], None).await;
    assert!(rotated.status.success(), "{}", printed(&rotated));
    assert!(printed(&rotated).contains("sealed 1 secret "), "{}", printed(&rotated));
    assert!(!app.data_dir().join("master.key").exists(), "the key stays the operator's: no key file is written");

    app.set_env("CARTEIRO_MASTER_KEY", &key(0x22));
    app.restart().await;
    let id = app.send(&beta, system_message(&["cliente@example.com"])).await;
    assert_eq!(peer.next_message(WAIT).await.auth_user.as_deref(), Some(ACCOUNT));
    app.wait_for_status(&beta, &id, "sent", WAIT).await;
    let with_old = explains_with(&app, Some(&key(0x11))).await;
    assert!(!with_old.status.success() && printed(&with_old).contains("master key"), "{}", printed(&with_old));
}

#[tokio::test]
async fn a_new_key_left_by_an_unfinished_rotation_is_never_thrown_away() {
    let certs = TestCertificates::for_localhost();
    let peer = SmtpPeer::starttls(&certs, &format!("{ACCOUNT}:{PASSWORD}")).await;
    let (mut app, _beta) = with_a_password(&peer, &certs, &[]).await;
    app.kill().await;
    let (key_file, staged) = (app.data_dir().join("master.key"), app.data_dir().join("master.key.new"));
    let before = std::fs::read_to_string(&key_file).unwrap();
    std::fs::write(&staged, key(0x44)).unwrap();

    let output = app.cli(&["admin", "rotate-key"], None).await;

    assert!(!output.status.success(), "{}", printed(&output));
    assert!(printed(&output).contains("did not finish"), "it says what to do: {}", printed(&output));
    assert_eq!(std::fs::read_to_string(&staged).unwrap(), key(0x44), "the left key is kept as it was");
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), before, "and so is the key file");
    assert!(explains_with(&app, None).await.status.success(), "the secrets still open with the key file");
}
