//! Messages reach real SMTP servers with the right sender, are retried on
//! temporary failures, and fail on permanent ones with the reply kept.

use std::time::Duration;

use serde_json::json;

use crate::helpers::app::{system_message, user_message};
use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_user_message_reaches_the_server_from_the_acting_user() {
    let mut peer = SmtpPeer::plain().await;
    let app = Carteiro::start().await;
    app.use_server(peer.port).await;
    let acme = app.create_company("acme").await;

    let id = app.send(&acme, user_message(&["cliente@example.com"])).await;

    let received = peer.next_message(WAIT).await;
    assert_eq!(received.rcpt_tos, ["cliente@example.com"]);
    assert_eq!(received.mail_from, "noreply@plataforma.example", "the envelope is the default sender, never the user");
    assert_eq!(received.header("From").unwrap(), "\"Ana Souza\" <ana@acme.example>");
    let message = app.wait_for_status(&acme, &id, "sent", WAIT).await;
    assert_eq!(message["attempts"][0]["code"], 250);
    assert_eq!(message["recipients"][0]["state"], "sent");
}

#[tokio::test]
async fn starttls_with_authentication_uses_the_account_as_envelope_sender() {
    let certs = TestCertificates::for_localhost();
    let mut peer = SmtpPeer::starttls(&certs, "relay@acme.example:s3nha-do-relay").await;
    let app = Carteiro::start().await;
    let acme = app.create_company("acme").await;
    app.set_company_settings(&acme, json!({"connection": {
        "enabled": true, "host": "localhost", "port": peer.port, "security": "starttls", "auth_enabled": true,
        "username": "relay@acme.example", "password": "s3nha-do-relay", "timeout_s": 10, "tls_ca_pem": certs.ca_pem
    }}))
    .await;

    let id = app.send(&acme, system_message(&["cliente@example.com"])).await;

    let received = peer.next_message(WAIT).await;
    assert!(received.tls, "the session was encrypted");
    assert_eq!(received.auth_user.as_deref(), Some("relay@acme.example"));
    assert_eq!(received.mail_from, "relay@acme.example");
    assert_eq!(received.header("From").unwrap(), "\"acme Ltda\" <contato@acme.example>", "system messages without a default sender use the company's address");
    app.wait_for_status(&acme, &id, "sent", WAIT).await;
}
