//! The sending API as an application sees it: bad input is refused naming the
//! field and queues nothing, limits say which and how much, idempotency keys
//! and batches behave, companies never see each other's mail, and a message
//! reads back with its sender, recipients and every attempt.

use std::time::Duration;

use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::helpers::app::{system_message, user_message};
use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------- helpers

/// `message` with one top-level field replaced (or added).
fn with(message: &Value, field: &str, value: Value) -> Value {
    let mut out = message.clone();
    out[field] = value;
    out
}

/// `message` without one top-level field.
fn without(message: &Value, field: &str) -> Value {
    let mut out = message.clone();
    out.as_object_mut().unwrap().remove(field);
    out
}

/// A request whose body is sent as is (not necessarily JSON).
async fn raw_call(app: &Carteiro, method: Method, path: &str, bearer: Option<&str>, body: &str) -> (StatusCode, Value) {
    let mut request =
        app.http.request(method, app.url(path)).header("content-type", "application/json").body(body.to_owned());
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("carteiro answers");
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// Every message the company's API key can list.
async fn listed(app: &Carteiro, company: &Company) -> Vec<Value> {
    let (status, body) = app.call(Method::GET, "/api/v1/messages", Some(&company.key), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_array().expect("the list is a JSON array").clone()
}

async fn batch(app: &Carteiro, company: &Company, messages: Vec<Value>) -> (StatusCode, Value) {
    app.call(Method::POST, "/api/v1/messages/batch", Some(&company.key), Some(json!({"messages": messages}))).await
}

/// What is wrong with a refusal, if anything: it must be `status` with
/// `{"error": {"code", "message", "field"}}` naming `field`; `in_words` also
/// wants the sentence itself to say which field it is about.
fn refusal_problem(
    case: &str,
    answer: &(StatusCode, Value),
    status: StatusCode,
    field: &str,
    in_words: bool,
) -> Option<String> {
    let (got, body) = answer;
    let error = &body["error"];
    let message = error["message"].as_str().unwrap_or_default();
    let root = field.split(['.', '[']).next().unwrap();
    if *got != status {
        Some(format!("{case}: expected {status}, got {got} with {body}"))
    } else if !error["code"].as_str().is_some_and(|c| !c.is_empty()) || message.is_empty() {
        Some(format!("{case}: the error needs a code and a message: {body}"))
    } else if error["field"] != field {
        Some(format!("{case}: the error must name the field {field:?}, got {}: {body}", error["field"]))
    } else if in_words && !message.contains(root) {
        Some(format!("{case}: the message must say which field is wrong ({root}): {message:?}"))
    } else {
        None
    }
}

#[track_caller]
fn assert_refused(case: &str, answer: &(StatusCode, Value), status: StatusCode, field: &str) {
    if let Some(problem) = refusal_problem(case, answer, status, field, false) {
        panic!("{problem}");
    }
}

/// A batch item's error names `field`.
#[track_caller]
fn assert_error_names(case: &str, error: &Value, field: &str) {
    assert_refused(
        case,
        &(StatusCode::UNPROCESSABLE_ENTITY, json!({"error": error})),
        StatusCode::UNPROCESSABLE_ENTITY,
        field,
    );
}

/// Submits one more message and waits for it at the peer: whatever a refused
/// submission might have queued before it would have been delivered first.
/// Then the peer must have received the marker and nothing else, and the
/// company's list must hold exactly `expected_listed` messages.
async fn only_the_marker_gets_through(app: &Carteiro, company: &Company, peer: &mut SmtpPeer, expected_listed: usize) {
    let marker = with(&system_message(&["marcador@example.com"]), "subject", json!("marcador"));
    let id = app.send(company, marker).await;
    app.wait_for_status(company, &id, "sent", WAIT).await;
    let first = peer.next_message(WAIT).await;
    assert_eq!(
        first.header("Subject").as_deref(),
        Some("marcador"),
        "a refused message reached the server: {}",
        first.text()
    );
    let more = peer.received();
    assert!(
        more.is_empty(),
        "refused messages reached the server: {:?}",
        more.iter().map(|m| m.header("Subject")).collect::<Vec<_>>()
    );
    let list = listed(app, company).await;
    assert_eq!(list.len(), expected_listed, "refused messages were stored: {list:#?}");
}

fn in_one_day() -> String {
    (OffsetDateTime::now_utc() + time::Duration::days(1)).format(&Rfc3339).unwrap()
}

fn base64_of(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Bytes that do not compress or fold into anything shorter.
fn noise(len: usize) -> Vec<u8> {
    let mut state: u32 = 0x2545_f491;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}

fn attachment(len: usize) -> Value {
    json!([{"filename": "relatorio.pdf", "content_type": "application/pdf", "content_base64": base64_of(&noise(len))}])
}

async fn started_with_a_peer() -> (SmtpPeer, Carteiro, Company) {
    let peer = SmtpPeer::plain().await;
    let app = Carteiro::start().await;
    app.use_server(peer.port).await;
    let acme = app.create_company("acme").await;
    (peer, app, acme)
}

// ---------------------------------------------------------------- bad input

#[tokio::test]
async fn each_invalid_field_is_refused_by_name_and_nothing_is_queued() {
    let (mut peer, app, acme) = started_with_a_peer().await;
    let system = system_message(&["cliente@example.com"]);
    let user = user_message(&["cliente@example.com"]);
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;

    let cases: Vec<(&str, Value, &str)> = vec![
        ("an unknown kind", with(&system, "kind", json!("robot")), "kind"),
        ("no kind", without(&system, "kind"), "kind"),
        ("an invalid to address", with(&system, "to", json!(["not-an-address"])), "to[0]"),
        (
            "the second to address invalid",
            with(&system, "to", json!(["ok@example.com", "Ana <ana@example.com"])),
            "to[1]",
        ),
        ("no recipients at all", with(&system, "to", json!([])), "to"),
        ("an invalid cc address", with(&system, "cc", json!(["x@@example.com"])), "cc[0]"),
        (
            "a bcc address smuggling an SMTP command",
            with(&system, "bcc", json!(["b@example.com\r\nRCPT TO:<evil@example.com>"])),
            "bcc[0]",
        ),
        ("a subject with CR/LF", with(&system, "subject", json!("Oi\r\nBcc: evil@example.com")), "subject"),
        ("a subject with a bare LF", with(&system, "subject", json!("Oi\nBcc: evil@example.com")), "subject"),
        (
            "a custom header with CR/LF",
            with(&system, "headers", json!({"X-Workflow": "17\r\nBcc: evil@example.com"})),
            "headers.X-Workflow",
        ),
        ("a reserved Bcc header", with(&system, "headers", json!({"Bcc": "evil@example.com"})), "headers.Bcc"),
        ("a reserved From header", with(&system, "headers", json!({"From": "boss@example.com"})), "headers.From"),
        ("a header name with a space", with(&system, "headers", json!({"X Workflow": "17"})), "headers.X Workflow"),
        ("a header name with a colon", with(&system, "headers", json!({"X-A:B": "17"})), "headers.X-A:B"),
        ("send_at unparseable", with(&system, "send_at", json!("amanhã às 10h")), "send_at"),
        ("send_at without a time zone", with(&system, "send_at", json!("2026-11-25 13:00")), "send_at"),
        ("reply_to not an address", with(&system, "reply_to", json!("responder para mim")), "reply_to"),
        ("reply_to with CR/LF", with(&system, "reply_to", json!("Ana\r\n <ana@example.com>")), "reply_to"),
        (
            "an attachment filename with CR/LF",
            with(
                &system,
                "attachments",
                json!([{"filename": "a\r\nContent-Type: text/html.pdf", "content_base64": "JVBERi0="}]),
            ),
            "attachments[0].filename",
        ),
        (
            "an attachment that is not base64",
            with(&system, "attachments", json!([{"filename": "a.pdf", "content_base64": "%%% não é base64 %%%"}])),
            "attachments[0].content_base64",
        ),
        (
            "an attachment with a bad content_type",
            with(
                &system,
                "attachments",
                json!([{"filename": "a.pdf", "content_type": "pdf", "content_base64": "JVBERi0="}]),
            ),
            "attachments[0].content_type",
        ),
        ("an empty idempotency_key", with(&system, "idempotency_key", json!("")), "idempotency_key"),
        ("a user message without actor", without(&user, "actor"), "actor"),
        (
            "a user message whose actor has a bad address",
            with(&user, "actor", json!({"id": "42", "address": "ana"})),
            "actor.address",
        ),
        ("a system message with from", with(&system, "from", json!("chefe@acme.example")), "from"),
        (
            "a system message with an actor",
            with(&system, "actor", json!({"id": "42", "address": "ana@acme.example"})),
            "actor",
        ),
        ("no text and no html", without(&system, "text"), "text"),
        ("to as a string instead of a list", with(&system, "to", json!("cliente@example.com")), "to"),
        ("subject as a number", with(&system, "subject", json!(17)), "subject"),
        (
            "attachments as an object",
            with(&system, "attachments", json!({"filename": "a.pdf", "content_base64": ""})),
            "attachments",
        ),
    ];
    let mut problems = Vec::new();
    for (case, message, field) in &cases {
        let answer = app.submit(&acme, message.clone()).await;
        problems.extend(refusal_problem(case, &answer, unprocessable, field, true));
    }

    for (case, body) in [("malformed JSON", r#"{"kind": "system", "to": ["a@example.com"],"#), ("an empty body", "")] {
        let (status, answer) = raw_call(&app, Method::POST, "/api/v1/messages", Some(&acme.key), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{case}: {answer}");
        let error = &answer["error"];
        assert!(error["code"].as_str().is_some_and(|c| !c.is_empty()), "{case}: {answer}");
        assert!(
            error["message"].as_str().is_some_and(|m| m.contains("JSON")),
            "{case}: the message says the body is not JSON: {answer}"
        );
    }

    assert!(listed(&app, &acme).await.is_empty(), "a refused message was stored");
    only_the_marker_gets_through(&app, &acme, &mut peer, 1).await;
    assert!(problems.is_empty(), "refusals that do not name the field:\n{}", problems.join("\n"));
}

#[tokio::test]
async fn an_unknown_field_is_refused_naming_that_field() {
    let (mut peer, app, acme) = started_with_a_peer().await;
    let system = system_message(&["cliente@example.com"]);
    let user = user_message(&["cliente@example.com"]);
    let cases = [
        ("an unknown top-level field", with(&system, "priority", json!("high")), "priority"),
        (
            "an unknown field of the actor",
            with(&user, "actor", json!({"id": "42", "address": "ana@acme.example", "apelido": "Aninha"})),
            "actor.apelido",
        ),
        (
            "an unknown field of an attachment",
            with(&system, "attachments", json!([{"filename": "a.pdf", "content_base64": "JVBERi0=", "size": 5}])),
            "attachments[0].size",
        ),
    ];

    let mut problems = Vec::new();
    for (case, message, field) in &cases {
        let answer = app.submit(&acme, message.clone()).await;
        problems.extend(refusal_problem(case, &answer, StatusCode::UNPROCESSABLE_ENTITY, field, true));
    }

    only_the_marker_gets_through(&app, &acme, &mut peer, 1).await;
    assert!(problems.is_empty(), "refusals that do not name the field:\n{}", problems.join("\n"));
}

#[tokio::test]
async fn a_message_with_several_bad_fields_names_the_first_and_lists_them_all() {
    let (_peer, app, acme) = started_with_a_peer().await;
    let message = json!({"kind": "system", "to": ["x"], "subject": "a\nb", "send_at": "logo"});

    let answer = app.submit(&acme, message).await;

    assert_refused("several bad fields", &answer, StatusCode::UNPROCESSABLE_ENTITY, "to[0]");
    let details = answer.1["error"]["details"].as_array().expect("details of every field");
    let fields: Vec<&str> = details.iter().map(|d| d["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["to[0]", "subject", "text", "send_at"]);
}

// ---------------------------------------------------------------- limits

#[tokio::test]
async fn a_message_over_the_size_limit_is_refused_naming_the_attachments_and_the_limit() {
    let mut peer = SmtpPeer::plain().await;
    let app = Carteiro::start_with(&["--max-message-bytes", "20000"], &[]).await;
    app.use_server(peer.port).await;
    let acme = app.create_company("acme").await;

    let answer =
        app.submit(&acme, with(&system_message(&["cliente@example.com"]), "attachments", attachment(30_000))).await;

    assert_refused("30 000 bytes of attachment", &answer, StatusCode::UNPROCESSABLE_ENTITY, "attachments");
    assert!(
        answer.1["error"]["message"].as_str().unwrap().contains("20000"),
        "the message states the limit: {}",
        answer.1
    );

    let small =
        app.send(&acme, with(&system_message(&["cliente@example.com"]), "attachments", attachment(10_000))).await;
    app.wait_for_status(&acme, &small, "sent", WAIT).await;
    peer.next_message(WAIT).await;
    only_the_marker_gets_through(&app, &acme, &mut peer, 2).await;
}

#[tokio::test]
async fn a_message_far_over_the_size_limit_still_gets_an_error_naming_the_field_and_the_limit() {
    let (mut peer, app, acme) = {
        let peer = SmtpPeer::plain().await;
        let app = Carteiro::start_with(&["--max-message-bytes", "20000"], &[]).await;
        app.use_server(peer.port).await;
        let acme = app.create_company("acme").await;
        (peer, app, acme)
    };

    // Two megabytes against a limit of 20 000 bytes: too big even to read whole.
    let answer =
        app.submit(&acme, with(&system_message(&["cliente@example.com"]), "attachments", attachment(2_000_000))).await;

    assert!(
        [StatusCode::PAYLOAD_TOO_LARGE, StatusCode::UNPROCESSABLE_ENTITY].contains(&answer.0),
        "expected 413 or 422, got {} with {}",
        answer.0,
        answer.1
    );
    // Too big to read whole, so no field can be singled out; the sentence states the limit.
    if answer.0 == StatusCode::UNPROCESSABLE_ENTITY {
        assert_error_names("two megabytes of attachment", &answer.1["error"], "attachments");
    }
    assert!(
        answer.1["error"]["message"].as_str().unwrap().contains("20000"),
        "the message states the limit: {}",
        answer.1
    );
    only_the_marker_gets_through(&app, &acme, &mut peer, 1).await;
}

#[tokio::test]
async fn more_recipients_than_max_recipients_are_refused_naming_to() {
    let mut peer = SmtpPeer::plain().await;
    let app = Carteiro::start_with(&["--max-recipients", "3"], &[]).await;
    app.use_server(peer.port).await;
    let acme = app.create_company("acme").await;
    let four = json!({"kind": "system", "to": ["a@example.com", "b@example.com"], "cc": ["c@example.com"], "bcc": ["d@example.com"],
                      "subject": "quatro", "text": "t"});

    let answer = app.submit(&acme, four.clone()).await;

    assert_refused("four recipients over to, cc and bcc", &answer, StatusCode::UNPROCESSABLE_ENTITY, "to");
    let message = answer.1["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("at most 3") && message.contains("got 4"),
        "the message states the limit and the count: {message}"
    );

    let three = without(&four, "bcc");
    let id = app.send(&acme, three).await;
    app.wait_for_status(&acme, &id, "sent", WAIT).await;
    let received = peer.next_message(WAIT).await;
    assert_eq!(received.rcpt_tos, ["a@example.com", "b@example.com", "c@example.com"]);
    only_the_marker_gets_through(&app, &acme, &mut peer, 2).await;
}

#[tokio::test]
async fn by_default_a_message_takes_100_recipients_and_refuses_101() {
    let (_peer, app, acme) = started_with_a_peer().await;
    let addresses: Vec<String> = (0..101).map(|i| format!("r{i}@example.com")).collect();
    let to = |n: usize| addresses[..n].iter().map(String::as_str).collect::<Vec<_>>();

    let answer = app.submit(&acme, system_message(&to(101))).await;
    assert_refused("101 recipients", &answer, StatusCode::UNPROCESSABLE_ENTITY, "to");
    assert!(answer.1["error"]["message"].as_str().unwrap().contains("at most 100"), "{}", answer.1);
    assert!(listed(&app, &acme).await.is_empty());

    let (status, body) = app.submit(&acme, system_message(&to(100))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "100 recipients are within the limit: {body}");
}

// ---------------------------------------------------------------- no server

#[tokio::test]
async fn without_any_smtp_server_a_message_is_refused_with_no_connection_and_nothing_is_queued() {
    let app = Carteiro::start().await;
    let acme = app.create_company("acme").await;

    for (case, message) in
        [("system", system_message(&["cliente@example.com"])), ("user", user_message(&["cliente@example.com"]))]
    {
        let (status, body) = app.submit(&acme, message).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{case}: {body}");
        assert_eq!(body["error"]["code"], "no_connection", "{case}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("acme"),
            "{case}: the message names the company: {body}"
        );
    }

    // A company block that is switched off does not count either.
    app.set_company_settings(&acme, json!({"connection": {"enabled": false, "host": "smtp.acme.example"}})).await;
    let (status, body) = app.submit(&acme, system_message(&["cliente@example.com"])).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("no_connection")),
        "{body}"
    );

    let (status, body) = batch(&app, &acme, vec![system_message(&["cliente@example.com"])]).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["results"][0]["error"]["code"], "no_connection", "{body}");

    assert!(listed(&app, &acme).await.is_empty(), "nothing may be queued without a server");
}

// ---------------------------------------------------------------- idempotency

#[tokio::test]
async fn the_same_idempotency_key_returns_the_first_message_and_queues_nothing_new() {
    let (mut peer, app, acme) = started_with_a_peer().await;
    let beta = app.create_company("beta").await;
    let first = with(&user_message(&["cliente@example.com"]), "idempotency_key", json!("wf-17-move-3"));
    let retry = with(&first, "subject", json!("Tarefa 17 movida (de novo)"));

    let (status, original) = app.submit(&acme, first.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{original}");
    let id = original["id"].as_str().unwrap().to_owned();
    let (status, repeated) = app.submit(&acme, retry).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{repeated}");
    assert_eq!(repeated["id"], id.as_str(), "the repeated key answers with the first message's id");

    let other_company = app.send(&beta, first.clone()).await;
    assert_ne!(other_company, id, "the same key in another company is another message");

    app.wait_for_status(&acme, &id, "sent", WAIT).await;
    app.wait_for_status(&beta, &other_company, "sent", WAIT).await;
    let subjects: Vec<String> = [peer.next_message(WAIT).await, peer.next_message(WAIT).await]
        .iter()
        .map(|m| m.header("Subject").unwrap())
        .collect();
    assert_eq!(subjects, ["Tarefa 17 movida", "Tarefa 17 movida"], "the repeat was not sent");

    // After delivery the key still answers with the first id, and still sends nothing.
    let (status, late) = app.submit(&acme, first).await;
    assert_eq!((status, late["id"].as_str()), (StatusCode::ACCEPTED, Some(id.as_str())), "{late}");
    only_the_marker_gets_through(&app, &acme, &mut peer, 2).await;
    assert_eq!(listed(&app, &beta).await.len(), 1);
}

#[tokio::test]
async fn concurrent_submissions_with_one_idempotency_key_make_one_message() {
    let (mut peer, app, acme) = started_with_a_peer().await;
    let message = with(&system_message(&["cliente@example.com"]), "idempotency_key", json!("nf-2024-0001"));

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let request = app.http.post(app.url("/api/v1/messages")).bearer_auth(&acme.key).json(&message);
        tasks.spawn(async move {
            let response = request.send().await.expect("carteiro answers");
            assert_eq!(response.status(), StatusCode::ACCEPTED);
            response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
        });
    }
    let ids: Vec<String> = tasks.join_all().await;

    assert!(ids.iter().all(|id| *id == ids[0]), "every submission got the same id: {ids:?}");
    app.wait_for_status(&acme, &ids[0], "sent", WAIT).await;
    peer.next_message(WAIT).await;
    only_the_marker_gets_through(&app, &acme, &mut peer, 2).await;
}

// ---------------------------------------------------------------- batch

#[tokio::test]
async fn a_batch_judges_each_item_alone_and_answers_in_order() {
    let (mut peer, app, acme) = started_with_a_peer().await;
    let valid = |subject: &str| with(&system_message(&["cliente@example.com"]), "subject", json!(subject));
    let items = vec![
        valid("um"),
        with(&valid("inválido"), "to", json!(["not-an-address"])),
        with(&valid("forma errada"), "to", json!("cliente@example.com")),
        with(&valid("dois"), "idempotency_key", json!("lote-2")),
        json!(42),
        with(&valid("dois de novo"), "idempotency_key", json!("lote-2")),
        with(&valid("campo desconhecido"), "prioridade", json!("alta")),
        with(&user_message(&["cliente@example.com"]), "subject", json!("tres")),
    ];

    let (status, body) = batch(&app, &acme, items).await;

    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let results = body["results"].as_array().expect("results");
    assert_eq!(results.len(), 8, "one result per item, in order: {body:#}");
    for accepted in [0, 3, 5, 7] {
        assert!(results[accepted]["id"].is_string(), "item {accepted} is accepted: {}", results[accepted]);
        assert!(results[accepted].get("error").is_none(), "item {accepted}");
    }
    for new in [0, 3, 7] {
        assert_eq!(results[new]["status"], "queued", "item {new}");
    }
    // The repeated key answers with the first message's status as it is by then: the worker may have taken it.
    let repeated = results[5]["status"].as_str().unwrap();
    assert!(["queued", "sending", "sent"].contains(&repeated), "item 5: {repeated}");
    assert_eq!(results[5]["id"], results[3]["id"], "a key repeated within the batch answers with the first id");
    assert_error_names("item 1", &results[1]["error"], "to[0]");
    assert_error_names("item 2", &results[2]["error"], "to");
    // Checked last, so that the rest of the batch is judged whatever this says.
    let item_6 = (StatusCode::UNPROCESSABLE_ENTITY, json!({"error": results[6]["error"]}));
    let unknown_field = refusal_problem("item 6", &item_6, StatusCode::UNPROCESSABLE_ENTITY, "prioridade", false);
    assert!(
        results[4]["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
        "item 4 is not an object: {}",
        results[4]
    );
    for refused in [1, 2, 4, 6] {
        assert!(results[refused].get("id").is_none(), "item {refused} has no id: {}", results[refused]);
    }

    let ids: Vec<&str> = [0, 3, 7].iter().map(|i| results[*i]["id"].as_str().unwrap()).collect();
    for id in &ids {
        app.wait_for_status(&acme, id, "sent", WAIT).await;
    }
    let mut subjects: Vec<String> = Vec::new();
    for _ in 0..3 {
        subjects.push(peer.next_message(WAIT).await.header("Subject").unwrap());
    }
    subjects.sort();
    assert_eq!(subjects, ["dois", "tres", "um"]);
    only_the_marker_gets_through(&app, &acme, &mut peer, 4).await;
    assert!(unknown_field.is_none(), "{}", unknown_field.unwrap_or_default());
}

#[tokio::test]
async fn a_batch_takes_1_to_1000_messages_and_refuses_0_or_1001_naming_messages() {
    let (_peer, app, acme) = started_with_a_peer().await;
    let scheduled = with(&system_message(&["cliente@example.com"]), "send_at", json!(in_one_day()));

    for count in [0, 1001] {
        let answer = batch(&app, &acme, vec![scheduled.clone(); count]).await;
        assert_refused(&format!("a batch of {count}"), &answer, StatusCode::UNPROCESSABLE_ENTITY, "messages");
        let message = answer.1["error"]["message"].as_str().unwrap();
        assert!(message.contains("1000") && message.contains(&format!("got {count}")), "{message}");
    }
    assert!(listed(&app, &acme).await.is_empty(), "a refused batch stores nothing");

    let answer = app
        .call(Method::POST, "/api/v1/messages/batch", Some(&acme.key), Some(json!({"messages": "not a list"})))
        .await;
    assert_refused("messages as a string", &answer, StatusCode::UNPROCESSABLE_ENTITY, "messages");

    let (status, body) = batch(&app, &acme, vec![scheduled; 1000]).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 1000);
    assert!(results.iter().all(|r| r["status"] == "scheduled"), "every item is scheduled");
}

#[tokio::test]
async fn a_batch_without_messages_is_refused_naming_messages() {
    let (_peer, app, acme) = started_with_a_peer().await;

    let answer = app.call(Method::POST, "/api/v1/messages/batch", Some(&acme.key), Some(json!({}))).await;

    assert_refused("a batch document without messages", &answer, StatusCode::UNPROCESSABLE_ENTITY, "messages");
}

// ---------------------------------------------------------------- tenants and keys

#[tokio::test]
async fn a_company_never_reads_or_cancels_another_companys_message() {
    let (_peer, app, acme) = started_with_a_peer().await;
    let beta = app.create_company("beta").await;
    let id = app.send(&acme, with(&system_message(&["cliente@example.com"]), "send_at", json!(in_one_day()))).await;

    let (status, body) = app.call(Method::GET, &format!("/api/v1/messages/{id}"), Some(&beta.key), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(!body.to_string().contains("cliente@example.com"), "nothing of the message leaks: {body}");
    let (status, body) = app.call(Method::POST, &format!("/api/v1/messages/{id}/cancel"), Some(&beta.key), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(listed(&app, &beta).await.is_empty(), "beta's list does not show acme's message");

    // Not through the admin routes under the wrong company either.
    let (status, _) = app.admin(Method::GET, &format!("/api/v1/companies/beta/messages/{id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    assert_eq!(app.message(&acme, &id).await["status"], "scheduled", "beta's attempt changed nothing");
}

#[tokio::test]
async fn a_revoked_key_stops_working_at_once_and_the_others_keep_working() {
    let (_peer, app, acme) = started_with_a_peer().await;
    let (status, created) =
        app.admin(Method::POST, "/api/v1/companies/acme/api-keys", Some(json!({"name": "erp"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let erp = Company { slug: "acme".into(), key: created["key"].as_str().unwrap().to_owned() };
    let id = app.send(&erp, with(&system_message(&["cliente@example.com"]), "send_at", json!(in_one_day()))).await;
    app.message(&erp, &id).await;

    let (status, body) = app
        .admin(Method::DELETE, &format!("/api/v1/companies/acme/api-keys/{}", created["id"].as_str().unwrap()), None)
        .await;
    assert!(status.is_success(), "{status} {body}");

    let (status, body) = app.call(Method::GET, &format!("/api/v1/messages/{id}"), Some(&erp.key), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, _) = app.submit(&erp, system_message(&["cliente@example.com"])).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = app.call(Method::POST, &format!("/api/v1/messages/{id}/cancel"), Some(&erp.key), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    assert_eq!(
        app.message(&acme, &id).await["status"],
        "scheduled",
        "the company's other key still reads its messages"
    );
    assert_eq!(listed(&app, &acme).await.len(), 1, "the revoked key submitted nothing");
}

#[tokio::test]
async fn the_sending_api_wants_a_valid_api_key() {
    let (_peer, app, _acme) = started_with_a_peer().await;
    let message = system_message(&["cliente@example.com"]);

    for (case, bearer) in [
        ("no key", None),
        ("a garbage key", Some("garbage")),
        ("an unknown key of the right shape", Some("ck_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")),
        ("an administrator token", Some(app.token.as_str())),
    ] {
        let (status, body) = app.call(Method::POST, "/api/v1/messages", bearer, Some(message.clone())).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized", "{case}: {body}");
        let (status, _) = app.call(Method::GET, "/api/v1/messages", bearer, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}");
    }
    let (status, _) =
        app.call(Method::POST, "/api/v1/messages/batch", None, Some(json!({"messages": [message]}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

// ---------------------------------------------------------------- cancel

#[tokio::test]
async fn a_scheduled_message_cancels_once_and_is_never_sent() {
    let (mut peer, app, acme) = started_with_a_peer().await;
    let send_at = in_one_day();
    let id = app.send(&acme, with(&system_message(&["cliente@example.com"]), "send_at", json!(send_at))).await;
    let scheduled = app.message(&acme, &id).await;
    assert_eq!(scheduled["status"], "scheduled");
    assert_eq!(
        OffsetDateTime::parse(scheduled["send_at"].as_str().unwrap(), &Rfc3339).unwrap().unix_timestamp(),
        OffsetDateTime::parse(&send_at, &Rfc3339).unwrap().unix_timestamp(),
        "send_at reads back"
    );

    let (status, cancelled) =
        app.call(Method::POST, &format!("/api/v1/messages/{id}/cancel"), Some(&acme.key), None).await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(app.message(&acme, &id).await["status"], "cancelled");

    let (status, again) = app.call(Method::POST, &format!("/api/v1/messages/{id}/cancel"), Some(&acme.key), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");
    assert!(again["error"]["message"].as_str().unwrap().contains("cancelled"), "the message says why: {again}");

    only_the_marker_gets_through(&app, &acme, &mut peer, 2).await;
}

#[tokio::test]
async fn a_sent_message_can_no_longer_be_cancelled_and_an_unknown_one_is_not_found() {
    let (_peer, app, acme) = started_with_a_peer().await;
    let id = app.send(&acme, system_message(&["cliente@example.com"])).await;
    app.wait_for_status(&acme, &id, "sent", WAIT).await;

    let (status, body) = app.call(Method::POST, &format!("/api/v1/messages/{id}/cancel"), Some(&acme.key), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("sent"), "{body}");
    assert_eq!(app.message(&acme, &id).await["status"], "sent");

    let unknown = "0190f0f0-0000-7000-8000-000000000000";
    let (status, _) =
        app.call(Method::POST, &format!("/api/v1/messages/{unknown}/cancel"), Some(&acme.key), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.call(Method::GET, &format!("/api/v1/messages/{unknown}"), Some(&acme.key), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

// ---------------------------------------------------------------- reading back

#[tokio::test]
async fn a_message_reads_back_with_status_sender_envelope_recipients_and_attempts() {
    let (mut peer, app, acme) = started_with_a_peer().await;
    let message = json!({
        "kind": "user", "to": ["Cliente <cliente@example.com>"], "cc": ["copia@example.com"], "bcc": ["oculto@example.com"],
        "subject": "Tarefa 17 movida", "text": "A tarefa 17 foi movida.", "tags": ["workflow"],
        "actor": {"id": "42", "name": "Ana Souza", "address": "ana@acme.example"}
    });
    let (status, accepted) = app.submit(&acme, message).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    assert_eq!(accepted["status"], "queued");
    let id = accepted["id"].as_str().unwrap();

    peer.next_message(WAIT).await;
    let read = app.wait_for_status(&acme, id, "sent", WAIT).await;

    assert_eq!(read["id"], id);
    assert_eq!(read["kind"], "user");
    assert_eq!(read["actor_id"], "42");
    assert_eq!(read["subject"], "Tarefa 17 movida");
    assert_eq!(read["from"], "Ana Souza <ana@acme.example>");
    assert_eq!(read["envelope_from"], "noreply@plataforma.example");
    assert_eq!(read["tags"], json!(["workflow"]));
    let recipients: Vec<(String, String, String)> = read["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap().into(),
                r["address"].as_str().unwrap().into(),
                r["state"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        recipients,
        [
            ("to".into(), "cliente@example.com".into(), "sent".into()),
            ("cc".into(), "copia@example.com".into(), "sent".into()),
            ("bcc".into(), "oculto@example.com".into(), "sent".into())
        ]
    );
    let attempts = read["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{read:#}");
    assert_attempt(&attempts[0], 250);
    assert!(attempts[0]["reply"].as_str().unwrap().contains("OK"), "the server's own words: {}", attempts[0]);
}

#[tokio::test]
async fn every_attempt_is_kept_with_the_servers_reply_in_order() {
    let mut peer = SmtpPeer::start(&["--data-replies", "451,250"]).await;
    let app = Carteiro::start().await;
    app.use_server(peer.port).await;
    let acme = app.create_company("acme").await;

    let id = app.send(&acme, system_message(&["cliente@example.com"])).await;

    peer.next_message(WAIT).await;
    let read = app.wait_for_status(&acme, &id, "sent", WAIT).await;
    let attempts = read["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{read:#}");
    assert_attempt(&attempts[0], 451);
    assert!(attempts[0]["reply"].as_str().unwrap().contains("try again later"), "{}", attempts[0]);
    assert_attempt(&attempts[1], 250);
    assert!(attempts[0]["at"].as_str() <= attempts[1]["at"].as_str(), "attempts are in order: {attempts:?}");
    assert_eq!(read["attempt_count"], 2);
}

#[tokio::test]
async fn a_permanent_refusal_reads_back_as_failed_with_the_reply() {
    let peer = SmtpPeer::start(&["--data-replies", "554"]).await;
    let app = Carteiro::start().await;
    app.use_server(peer.port).await;
    let acme = app.create_company("acme").await;

    let id = app.send(&acme, system_message(&["cliente@example.com"])).await;

    let read = app.wait_for_status(&acme, &id, "failed", WAIT).await;
    let attempts = read["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{read:#}");
    assert_attempt(&attempts[0], 554);
    assert!(attempts[0]["reply"].as_str().unwrap().contains("refused (scripted)"), "{}", attempts[0]);
}

#[track_caller]
fn assert_attempt(attempt: &Value, code: i64) {
    assert_eq!(attempt["code"], code, "{attempt}");
    let at = attempt["at"].as_str().unwrap_or_else(|| panic!("attempt without at: {attempt}"));
    OffsetDateTime::parse(at, &Rfc3339).unwrap_or_else(|e| panic!("attempt at {at:?} is not RFC 3339: {e}"));
    assert!(attempt["ms"].as_i64().is_some_and(|ms| ms >= 0), "attempt without ms: {attempt}");
    assert!(
        attempt["reply"].as_str().is_some_and(|r| !r.is_empty()),
        "the attempt keeps the server's reply: {attempt}"
    );
}
