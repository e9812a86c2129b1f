//! Hostile HTTP input: bodies nested beyond reason, bytes that are not UTF-8,
//! line breaks and control characters smuggled into every field that ends up
//! in a header, a thousand recipients. Each gets a 4xx naming the field where
//! one can be named, nothing is queued, and carteiro keeps answering.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::app::{system_message, user_message};
use crate::helpers::*;

async fn started() -> (Carteiro, Company, SmtpSink) {
    let app = Carteiro::start().await;
    let sink = SmtpSink::start().await;
    app.use_server(sink.port).await;
    let acme = app.create_company("acme").await;
    (app, acme, sink)
}

async fn queued(app: &Carteiro, acme: &Company) -> usize {
    app.messages(acme, "limit=1000").await.len()
}

async fn raw(app: &Carteiro, path: &str, bearer: &str, body: Vec<u8>) -> (StatusCode, String) {
    let answer = app
        .http
        .post(app.url(path))
        .bearer_auth(bearer)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    (answer.status(), answer.text().await.unwrap())
}

#[tokio::test]
async fn nested_json_and_bytes_that_are_not_utf8_are_refused_and_carteiro_keeps_answering() {
    let (app, acme, _sink) = started().await;
    let deep = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes();
    let mut inside = br#"{"kind": "system", "to": ["a@example.com"], "text": "x", "subject": "Ol"#.to_vec();
    inside.extend_from_slice(b"\xff\xfe\xc3\x28");
    inside.extend_from_slice(br#""}"#);
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("an array nested 100 000 deep", deep(100_000)),
        ("an array nested 100 000 deep inside an object", [&b"{\"to\": "[..], &deep(100_000), b"}"].concat()),
        ("an object nested 10 000 deep", format!("{}1{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000)).into_bytes()),
        ("invalid UTF-8 inside a string", inside),
        ("a lone invalid byte", vec![0xff]),
        ("nothing at all", Vec::new()),
    ];
    for (what, body) in bodies {
        for (path, bearer) in [
            ("/api/v1/messages", acme.key.as_str()),
            ("/api/v1/messages/batch", acme.key.as_str()),
            ("/api/v1/companies", app.token.as_str()),
            ("/api/v1/login", ""),
        ] {
            let (status, text) = raw(&app, path, bearer, body.clone()).await;
            assert!(matches!(status.as_u16(), 400 | 422), "{what} to {path}: {status} {text}");
            let error: Value =
                serde_json::from_str(&text).unwrap_or_else(|_| panic!("{what} to {path}: not JSON: {text}"));
            assert!(error["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what} to {path}: {text}");
        }
    }
    let (status, answer) = app.call(Method::PUT, "/api/v1/settings/global", Some(&app.token), None).await;
    assert!(status.is_client_error(), "{answer}");
    assert_eq!(queued(&app, &acme).await, 0, "nothing was queued");
    let health = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK, "carteiro still answers");
}

#[tokio::test]
async fn a_line_break_or_control_character_in_any_field_that_becomes_a_header_is_refused_by_name() {
    let (app, acme, _sink) = started().await;
    let mut cases: Vec<(Value, &str)> = Vec::new();
    for smuggled in
        ["Ana\r\nBcc: evil@example.com", "Ana\nBcc: evil@example.com", "Ana\rX", "Ana\u{0}X", "Ana\u{1b}[31m"]
    {
        let named = |field: &str| {
            let mut message = system_message(&["cliente@example.com"]);
            message[field] = json!([{"name": smuggled, "address": "x@example.com"}]);
            message
        };
        cases.push((named("to"), "to[0].name"));
        cases.push((named("cc"), "cc[0].name"));
        cases.push((named("bcc"), "bcc[0].name"));
        let mut subject = system_message(&["cliente@example.com"]);
        subject["subject"] = json!(smuggled);
        cases.push((subject, "subject"));
        let mut reply_to = system_message(&["cliente@example.com"]);
        reply_to["reply_to"] = json!({"name": smuggled, "address": "r@example.com"});
        cases.push((reply_to, "reply_to.name"));
        let mut actor = user_message(&["cliente@example.com"]);
        actor["actor"]["name"] = json!(smuggled);
        cases.push((actor, "actor.name"));
        let mut header = system_message(&["cliente@example.com"]);
        header["headers"] = json!({"X-Pedido": smuggled});
        cases.push((header, "headers.X-Pedido"));
        let mut attachment = system_message(&["cliente@example.com"]);
        attachment["attachments"] = json!([{"filename": format!("{smuggled}.pdf"), "content_base64": "JVBERi0="}]);
        cases.push((attachment, "attachments[0].filename"));
    }
    let mut wrong = Vec::new();
    for (message, field) in &cases {
        let (status, answer) = app.submit(&acme, message.clone()).await;
        let named = answer["error"]["field"] == *field
            || answer["error"]["details"].as_array().is_some_and(|e| e.iter().any(|e| e["field"] == *field));
        if status != StatusCode::UNPROCESSABLE_ENTITY || !named {
            wrong.push(format!("{field}: {status} {answer}"));
        }
    }
    assert!(wrong.is_empty(), "{} of {} not refused by name:\n{}", wrong.len(), cases.len(), wrong.join("\n"));
    assert_eq!(queued(&app, &acme).await, 0, "nothing was queued");

    // The same in what the administrators type.
    for (path, body, field) in [
        (
            "/api/v1/companies/acme/settings",
            json!({"policy": {"default_sender_name": "ACME\r\nBcc: x@y.z"}}),
            "policy.default_sender_name",
        ),
        (
            "/api/v1/companies/acme/settings",
            json!({"connection": {"host": "smtp.example\r\nRCPT", "port": 25}}),
            "connection.host",
        ),
        (
            "/api/v1/companies/acme/settings",
            json!({"connection": {"host": "smtp.example", "port": 25, "auth_enabled": true, "username": "u\r\nRSET", "password": "p"}}),
            "connection.username",
        ),
    ] {
        let (status, answer) = app.admin(Method::PUT, path, Some(body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {answer}");
        assert_eq!(answer["error"]["field"], field, "{answer}");
    }
    let (status, answer) =
        app.admin(Method::POST, "/api/v1/companies", Some(json!({"slug": "evil", "name": "Evil\r\nBcc: x@y.z"}))).await;
    assert_eq!((status, &answer["error"]["field"]), (StatusCode::UNPROCESSABLE_ENTITY, &json!("name")), "{answer}");
}

#[tokio::test]
async fn a_thousand_recipients_are_refused_naming_to_and_the_limit() {
    let (app, acme, _sink) = started().await;
    let to: Vec<String> = (0..1000).map(|n| format!("cliente{n}@example.com")).collect();
    let to: Vec<&str> = to.iter().map(String::as_str).collect();

    let (status, answer) = app.submit(&acme, system_message(&to)).await;

    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(answer["error"]["field"], "to", "{answer}");
    assert!(answer["error"]["message"].as_str().unwrap().contains("100"), "it states the limit: {answer}");
    let batch = json!({"messages": [system_message(&to), system_message(&["ok@example.com"])]});
    let (status, answer) = app.call(Method::POST, "/api/v1/messages/batch", Some(&acme.key), Some(batch)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "a batch judges each message alone: {answer}");
    assert_eq!(answer["results"][0]["error"]["field"], "to", "{answer}");
    assert!(answer["results"][1]["id"].is_string(), "{answer}");
    assert_eq!(queued(&app, &acme).await, 1, "only the valid message was queued");
}
