//! DKIM: keys made by carteiro or imported, the DNS records it shows, every
//! signed message verified by dkimpy (a receiver's library) against exactly
//! those records, unsigned mail from domains without a key, and rotation.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::app::user_message;
use crate::helpers::peers::{PeerMessage, SmtpPeer, python};
use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(20);

/// What dkimpy says of a message, given the records the API shows.
async fn verify(message: &PeerMessage, records: &[Value]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("message.eml");
    std::fs::write(&file, &message.data).unwrap();
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/dkim_verify.py");
    let args: Vec<String> = records
        .iter()
        .map(|r| format!("{}={}", r["dns_name"].as_str().unwrap(), r["dns_txt"].as_str().unwrap()))
        .collect();
    let output = tokio::process::Command::new(python()).arg(script).arg(&file).args(&args).output().await.unwrap();
    assert!(output.status.success(), "dkim_verify: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

async fn keys(app: &Carteiro, company: &str) -> Vec<Value> {
    let (status, body) = app.admin(Method::GET, &format!("/api/v1/companies/{company}/dkim-keys"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_array().unwrap().clone()
}

async fn create_key(app: &Carteiro, company: &str, key: Value) -> (StatusCode, Value) {
    app.admin(Method::POST, &format!("/api/v1/companies/{company}/dkim-keys"), Some(key)).await
}

fn from(name: &str, address: &str) -> Value {
    let mut message = user_message(&["cliente@example.com"]);
    message["actor"] = json!({"id": "7", "name": name, "address": address});
    message["subject"] = json!("Aprovação nº 17: contrato de manutenção");
    message["html"] = json!("<p>Olá, <b>João</b>! O contrato está aprovado.</p>");
    message["attachments"] =
        json!([{"filename": "relatório.pdf", "content_type": "application/pdf", "content_base64": "JVBERi0xLjQK"}]);
    message
}

#[tokio::test]
async fn signed_messages_verify_with_the_published_records_and_other_domains_go_unsigned() {
    let app = Carteiro::start().await;
    let mut peer = SmtpPeer::plain().await;
    app.use_server(peer.port).await;
    let acme = app.create_company("acme").await;
    let (status, ed) = create_key(&app, "acme", json!({"selector": "s1", "domain": "acme.example"})).await;
    assert_eq!(status, StatusCode::CREATED, "{ed}");
    assert_eq!(ed["algorithm"], "ed25519", "Ed25519 unless asked otherwise");
    assert_eq!(ed["dns_name"], "s1._domainkey.acme.example");
    assert!(ed["dns_txt"].as_str().unwrap().starts_with("v=DKIM1; k=ed25519; p="), "{ed}");
    let (status, rsa) =
        create_key(&app, "acme", json!({"selector": "legacy", "domain": "Filial.Acme.Example", "algorithm": "rsa"}))
            .await;
    assert_eq!(status, StatusCode::CREATED, "{rsa}");
    assert_eq!(rsa["dns_name"], "legacy._domainkey.filial.acme.example");
    let records = keys(&app, "acme").await;
    assert!(!records.iter().any(|k| k.to_string().contains("PRIVATE")), "no private key in the API: {records:?}");

    for (address, selector, algorithm) in
        [("ana@acme.example", "s1", "ed25519-sha256"), ("joao@filial.acme.example", "legacy", "rsa-sha256")]
    {
        app.send(&acme, from("João da Silva", address)).await;
        let arrived = peer.next_message(WAIT).await;
        let verdict = verify(&arrived, &records).await;
        assert_eq!(
            verdict,
            json!({"signed": true, "verified": true, "selector": selector,
            "domain": address.split('@').nth(1).unwrap(), "algorithm": algorithm}),
            "{}",
            arrived.text()
        );
        // The same message altered in transit no longer verifies.
        let mut forged = arrived.clone();
        forged.data = arrived.text().replacen("contrato", "c0ntrato", 1).into_bytes();
        assert_eq!(verify(&forged, &records).await["verified"], false);
    }
    app.send(&acme, from("Bia", "bia@outro.example")).await;
    let unsigned = peer.next_message(WAIT).await;
    assert_eq!(verify(&unsigned, &records).await["signed"], false, "{}", unsigned.text());
}

#[tokio::test]
async fn a_new_selector_takes_over_and_the_old_one_stays_until_removed() {
    let app = Carteiro::start().await;
    let mut peer = SmtpPeer::plain().await;
    app.use_server(peer.port).await;
    let acme = app.create_company("acme").await;
    create_key(&app, "acme", json!({"selector": "2026a", "domain": "acme.example"})).await;
    // An imported key, as openssl makes it.
    let dir = tempfile::tempdir().unwrap();
    let pem_path = dir.path().join("key.pem");
    let made = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "ED25519", "-out"])
        .arg(&pem_path)
        .status()
        .unwrap();
    assert!(made.success());
    let pem = std::fs::read_to_string(&pem_path).unwrap();
    let (status, new) =
        create_key(&app, "acme", json!({"selector": "2026b", "domain": "acme.example", "private_key_pem": pem})).await;
    assert_eq!(status, StatusCode::CREATED, "{new}");
    assert!(!new.to_string().contains(pem.lines().nth(1).unwrap()), "the private key never comes back");
    let records = keys(&app, "acme").await;
    let signing: Vec<(&str, bool)> =
        records.iter().map(|k| (k["selector"].as_str().unwrap(), k["signing"] == true)).collect();
    assert_eq!(signing, [("2026b", true), ("2026a", false)]);

    app.send(&acme, from("Ana", "ana@acme.example")).await;
    let verdict = verify(&peer.next_message(WAIT).await, &records).await;
    assert_eq!((verdict["selector"].as_str(), verdict["verified"].as_bool()), (Some("2026b"), Some(true)));

    let (status, _) = app.admin(Method::DELETE, "/api/v1/companies/acme/dkim-keys/2026a", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = app.admin(Method::DELETE, "/api/v1/companies/acme/dkim-keys/2026a", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(keys(&app, "acme").await.len(), 1);
    // The CLI shows the same record to publish.
    let listed = app.cli(&["dkim", "list", "--company", "acme"], None).await;
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(
        text.contains(&format!("2026b._domainkey.acme.example TXT \"{}\"", records[0]["dns_txt"].as_str().unwrap())),
        "{text}"
    );
    let audit = app.admin(Method::GET, "/api/v1/audit?company=acme", None).await.1.to_string();
    assert!(audit.contains("dkim.create") && audit.contains("dkim.remove"), "{audit}");
}

#[tokio::test]
async fn bad_keys_are_refused_naming_the_field_and_nothing_is_stored() {
    let app = Carteiro::start().await;
    app.create_company("acme").await;
    app.create_company("beta").await;
    for (key, field) in [
        (json!({"selector": "bad selector", "domain": "acme.example"}), "selector"),
        (json!({"selector": "s1", "domain": "localhost"}), "domain"),
        (json!({"selector": "s1", "domain": "acme.example", "algorithm": "dsa"}), "algorithm"),
        (
            json!({"selector": "s1", "domain": "acme.example", "private_key_pem": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"}),
            "private_key_pem",
        ),
    ] {
        let (status, body) = create_key(&app, "acme", key).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["field"], field, "{body}");
    }
    assert!(keys(&app, "acme").await.is_empty());
    create_key(&app, "acme", json!({"selector": "s1", "domain": "acme.example"})).await;
    let (status, _) = create_key(&app, "acme", json!({"selector": "s1", "domain": "acme.example"})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    // A company administrator of beta neither sees nor removes acme's keys.
    app.admin(
        Method::POST,
        "/api/v1/companies/beta/admins",
        Some(json!({"username": "beta-admin", "password": "beta-password-1"})),
    )
    .await;
    let token = app.login("beta-admin", "beta-password-1").await.unwrap();
    let (status, _) = app.call(Method::GET, "/api/v1/companies/acme/dkim-keys", Some(&token), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.call(Method::DELETE, "/api/v1/companies/acme/dkim-keys/s1", Some(&token), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(keys(&app, "acme").await.len(), 1);
}
