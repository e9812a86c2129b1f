//! The transports beside SMTP (SPEC §4): `sendmail` through Postfix's real
//! `sendmail` into a Postfix instance that relays to a peer, `pickup` files
//! that Python's `email` package reads without a defect, `capture` kept and
//! readable through the API; legacy transports refused in words.

use std::path::Path;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::peers::python;
use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(30);

fn policy() -> Value {
    json!({"default_sender_enabled": true, "default_sender_name": "Plataforma", "default_sender_address": "noreply@plataforma.example"})
}

fn message() -> Value {
    json!({
        "kind": "user", "to": ["ana@cliente.example"], "cc": ["caio@cliente.example"], "bcc": ["auditoria@acme.example"],
        "subject": "Aprovação pendente: contrato nº 17", "text": "Olá, Ana.\n.\nUma linha só com ponto acima.",
        "actor": {"id": "42", "name": "João Araújo", "address": "joao@acme.example"}
    })
}

async fn with_connection(connection: Value) -> (Carteiro, Company) {
    let app = Carteiro::start().await;
    app.set_global(json!({"connection": connection, "policy": policy()})).await;
    let company = app.create_company("acme").await;
    (app, company)
}

#[tokio::test]
async fn sendmail_hands_messages_to_a_real_postfix_that_relays_them() {
    let mut peer = SmtpPeer::plain().await;
    let postfix = Postfix::start(peer.port).await;
    let (app, company) =
        with_connection(json!({"transport": "sendmail", "sendmail_command": postfix.sendmail_command()})).await;

    let id = app.send(&company, message()).await;
    let sent = app.wait_for_status(&company, &id, "sent", WAIT).await;
    let reply = sent["attempts"][0]["reply"].as_str().unwrap();
    assert_eq!(reply, "/usr/sbin/sendmail took the message (exit status 0)", "{sent:#}");
    assert_eq!(sent["attempts"][0]["server"], "sendmail:/usr/sbin/sendmail");

    let arrived = peer.next_message(WAIT).await;
    let mut to = arrived.rcpt_tos.clone();
    to.sort();
    assert_eq!(to, ["ana@cliente.example", "auditoria@acme.example", "caio@cliente.example"], "{}", postfix.log());
    assert_eq!(arrived.mail_from, sent["envelope_from"].as_str().unwrap());
    let text = arrived.text();
    assert!(text.contains("by postfix.carteiro.test (Postfix"), "Postfix carried it:\n{text}");
    assert!(
        text.contains("\r\n.\r\nUma linha") || text.contains("\r\n..\r\nUma linha"),
        "the lone dot survived:\n{text}"
    );
    assert!(arrived.header("Bcc").is_none(), "{text}");
}

/// A stand-in `sendmail` that says `words` on standard error and exits with `status`.
fn failing_sendmail(dir: &Path, status: i32, words: &str) -> String {
    let path = dir.join(format!("sendmail-{status}"));
    std::fs::write(&path, format!("#!/bin/sh\ncat >/dev/null\necho '{words}' >&2\nexit {status}\n")).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn a_sendmail_refusal_is_recorded_with_its_status_and_words() {
    let dir = tempfile::tempdir().unwrap();
    let unknown = failing_sendmail(dir.path(), 67, "ana@cliente.example... User unknown");
    let busy = failing_sendmail(dir.path(), 75, "queue file write error");
    let (app, company) = with_connection(json!({"transport": "sendmail", "sendmail_command": unknown})).await;

    let id = app.send(&company, message()).await;
    let failed = app.wait_for_status(&company, &id, "failed", WAIT).await;
    let reply = failed["attempts"][0]["reply"].as_str().unwrap();
    assert_eq!(reply, format!("{unknown} exited with status 67: ana@cliente.example... User unknown"));

    app.set_global(json!({"connection": {"transport": "sendmail", "sendmail_command": busy}, "policy": policy()}))
        .await;
    let id = app.send(&company, message()).await;
    let deferred = app.wait_for_status(&company, &id, "deferred", WAIT).await;
    assert_eq!(deferred["attempts"][0]["reply"], format!("{busy} exited with status 75: queue file write error"));
}

#[tokio::test]
async fn pickup_writes_one_whole_eml_per_message_that_python_reads_without_defects() {
    let dir = tempfile::tempdir().unwrap();
    let pickup = dir.path().join("pickup");
    std::fs::create_dir(&pickup).unwrap();
    let (app, company) = with_connection(json!({"transport": "pickup", "pickup_dir": pickup})).await;

    let ids = [app.send(&company, message()).await, app.send(&company, message()).await];
    for id in &ids {
        let sent = app.wait_for_status(&company, id, "sent", WAIT).await;
        assert_eq!(sent["attempts"][0]["server"], format!("pickup:{}", pickup.display()));
    }
    let mut names: Vec<String> =
        std::fs::read_dir(&pickup).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    let mut expected: Vec<String> = ids.iter().map(|id| format!("{id}.eml")).collect();
    expected.sort();
    assert_eq!(names, expected, "one file per message, no temporary file left");

    let read = r#"
import json, sys
from email import policy
from email.parser import BytesParser
with open(sys.argv[1], "rb") as f:
    m = BytesParser(policy=policy.default).parse(f)
print(json.dumps({
    "defects": [str(d) for d in m.defects] + [str(d) for p in m.walk() for d in p.defects],
    "sender": m["X-Sender"], "receivers": m.get_all("X-Receiver"),
    "subject": str(m["Subject"]), "from": str(m["From"]), "to": str(m["To"]), "cc": str(m["Cc"]), "bcc": m["Bcc"],
    "body": m.get_body(("plain",)).get_content(),
}))
"#;
    let output =
        std::process::Command::new(python()).args(["-c", read]).arg(pickup.join(&expected[0])).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let parsed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(parsed["defects"], json!([]), "{parsed:#}");
    assert_eq!(parsed["receivers"], json!(["ana@cliente.example", "caio@cliente.example", "auditoria@acme.example"]));
    assert!(parsed["sender"].as_str().unwrap().contains('@'), "{parsed:#}");
    assert_eq!(parsed["subject"], "Aprovação pendente: contrato nº 17");
    assert_eq!(parsed["to"], "ana@cliente.example");
    assert_eq!(parsed["bcc"], Value::Null, "Bcc recipients only in the envelope lines");
    assert!(parsed["from"].as_str().unwrap().contains("João Araújo"), "{parsed:#}");
    assert!(parsed["body"].as_str().unwrap().contains("Uma linha só com ponto acima."), "{parsed:#}");
}

#[tokio::test]
async fn a_pickup_directory_that_is_missing_defers_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("not-there");
    let (app, company) = with_connection(json!({"transport": "pickup", "pickup_dir": missing})).await;
    let id = app.send(&company, message()).await;
    let deferred = app.wait_for_status(&company, &id, "deferred", WAIT).await;
    let reply = deferred["attempts"][0]["reply"].as_str().unwrap();
    assert!(reply.starts_with("cannot write ") && reply.contains("No such file or directory"), "{reply}");
    std::fs::create_dir(&missing).unwrap();
    app.wait_for_status(&company, &id, "sent", WAIT).await;
    assert!(missing.join(format!("{id}.eml")).exists());
}

#[tokio::test]
async fn capture_keeps_the_message_readable_through_the_api() {
    let (app, company) = with_connection(json!({"transport": "capture"})).await;
    let id = app.send(&company, message()).await;
    let sent = app.wait_for_status(&company, &id, "sent", WAIT).await;
    assert_eq!(sent["attempts"][0]["server"], "capture");
    assert_eq!(sent["attempts"][0]["reply"], "kept in carteiro (capture): nothing leaves", "{sent:#}");

    for (path, key) in [
        (format!("/api/v1/messages/{id}/raw"), company.key.clone()),
        (format!("/api/v1/companies/acme/messages/{id}/raw"), app_token(&app).await),
    ] {
        let response = app.http.get(app.url(&path)).bearer_auth(key).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.headers()["content-type"], "message/rfc822");
        let raw = response.text().await.unwrap();
        assert!(
            raw.contains("\r\nTo: <ana@cliente.example>\r\n") && raw.contains("\r\nCc: <caio@cliente.example>\r\n"),
            "{raw}"
        );
        assert!(!raw.contains("auditoria@acme.example"), "Bcc recipients are not in the message: {raw}");
    }
    let other = app.create_company("beta").await;
    let response =
        app.http.get(app.url(&format!("/api/v1/messages/{id}/raw"))).bearer_auth(&other.key).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND, "another company's message is not there");
}

async fn app_token(app: &Carteiro) -> String {
    app.login("admin", crate::helpers::app::ADMIN_PASSWORD).await.unwrap()
}

#[tokio::test]
async fn legacy_desktop_transports_are_refused_in_words() {
    let app = Carteiro::start().await;
    for legacy in ["mapi", "vim", "notes"] {
        let doc = json!({"connection": {"transport": legacy, "host": "smtp.acme.example"}});
        let (status, body) = app.admin(Method::PUT, "/api/v1/settings/global", Some(doc)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["field"], "connection.transport", "{body}");
        let words = body["error"]["message"].as_str().unwrap();
        assert!(words.contains("no longer supported") && words.contains("smtp"), "{words}");
    }
}
