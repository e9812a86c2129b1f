//! Delivery webhooks: a receiver written here, on 127.0.0.1, checks every
//! signature with the secret carteiro showed once and records each event.
//! It gets one event per state change, exactly once; while it fails, mail
//! still flows and the events wait; and a wrong secret really fails.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use hmac::{Hmac, KeyInit, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::helpers::app::system_message;
use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(30);

/// Webhook retries in a fraction of a second, as the mail's are in tests.
const FAST_WEBHOOKS: &[&str] = &["--webhook-retry-first-delay-s", "0.2", "--webhook-retry-max-delay-s", "0.5"];

// ---------------------------------------------------------------- the receiver

/// One event the receiver accepted: its signature checked.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    id: String,
    pub(crate) kind: String,
    body: Value,
    raw: String,
    signature: String,
}

#[derive(Default)]
struct Inbox {
    /// The secret signatures are checked with; none: every request is refused as unsigned.
    secret: Option<String>,
    /// Answer 500 to everything (an outage).
    failing: bool,
    accepted: Vec<Received>,
    /// Requests answered 500 during an outage.
    refused: usize,
    /// Requests whose signature did not verify (answered 400), with why.
    rejected: Vec<String>,
}

pub(crate) struct Receiver {
    pub(crate) url: String,
    inbox: Arc<Mutex<Inbox>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub(crate) async fn start() -> Self {
        let inbox = Arc::new(Mutex::new(Inbox::default()));
        let router = axum::Router::new().route("/hooks", axum::routing::post(receive)).with_state(inbox.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        let task = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self { url, inbox, task }
    }

    pub(crate) fn set_secret(&self, secret: &str) {
        self.inbox.lock().unwrap().secret = Some(secret.to_owned());
    }

    fn set_failing(&self, failing: bool) {
        self.inbox.lock().unwrap().failing = failing;
    }

    fn accepted(&self) -> Vec<Received> {
        self.inbox.lock().unwrap().accepted.clone()
    }

    fn refused(&self) -> usize {
        self.inbox.lock().unwrap().refused
    }

    fn rejected(&self) -> Vec<String> {
        self.inbox.lock().unwrap().rejected.clone()
    }

    /// Waits until `n` events have been accepted.
    pub(crate) async fn wait_for_events(&self, n: usize) -> Vec<Received> {
        eventually(WAIT, &format!("{n} webhook events"), || async move {
            let accepted = self.accepted();
            (accepted.len() >= n).then_some(accepted)
        })
        .await
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(State(inbox): State<Arc<Mutex<Inbox>>>, headers: HeaderMap, body: Bytes) -> AxumStatus {
    let mut inbox = inbox.lock().unwrap();
    if inbox.failing {
        inbox.refused += 1;
        return AxumStatus::INTERNAL_SERVER_ERROR;
    }
    let verified = match &inbox.secret {
        Some(secret) => verify(secret, &headers, &body),
        None => Err("no secret to check with".to_owned()),
    };
    match verified {
        Ok(received) => {
            inbox.accepted.push(received);
            AxumStatus::NO_CONTENT
        }
        Err(why) => {
            inbox.rejected.push(why);
            AxumStatus::BAD_REQUEST
        }
    }
}

/// What a receiver must check: the signature over "<t>.<raw body>" with its
/// secret, a recent timestamp, and headers that agree with the body.
fn verify(secret: &str, headers: &HeaderMap, body: &[u8]) -> Result<Received, String> {
    let header = |name: &str| {
        headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned).ok_or(format!("no {name} header"))
    };
    let signature = header("carteiro-signature")?;
    let (t, v1) = parse_signature(&signature).ok_or(format!("malformed signature {signature:?}"))?;
    let now = OffsetDateTime::now_utc().unix_timestamp();
    if (now - t).abs() > 300 {
        return Err(format!("timestamp {t} is not recent"));
    }
    if !signature_matches(secret, t, body, &v1) {
        return Err("the signature does not match".to_owned());
    }
    if header("content-type")? != "application/json" {
        return Err("not JSON".to_owned());
    }
    let parsed: Value = serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let (id, kind) = (parsed["id"].as_str().unwrap_or_default(), parsed["type"].as_str().unwrap_or_default());
    if header("carteiro-delivery")? != id || header("carteiro-event")? != kind {
        return Err(format!("the headers do not match the body {parsed}"));
    }
    Ok(Received {
        id: id.to_owned(),
        kind: kind.to_owned(),
        raw: String::from_utf8(body.to_vec()).unwrap(),
        body: parsed,
        signature,
    })
}

/// `t=<unix seconds>,v1=<hex>` → (t, the signature's bytes).
fn parse_signature(header: &str) -> Option<(i64, Vec<u8>)> {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=')? {
            ("t", value) => t = value.parse().ok(),
            ("v1", value) => v1 = hex::decode(value).ok(),
            _ => {}
        }
    }
    Some((t?, v1?))
}

fn signature_matches(secret: &str, t: i64, body: &[u8], v1: &[u8]) -> bool {
    let mut mac = Hmac::<sha2_011::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    mac.verify_slice(v1).is_ok()
}

// ---------------------------------------------------------------- helpers

/// Creates a webhook for `slug` as the platform administrator; its id and secret.
pub(crate) async fn create_webhook(app: &Carteiro, slug: &str, body: Value) -> (String, String) {
    let (status, created) = app.admin(Method::POST, &format!("/api/v1/companies/{slug}/webhooks"), Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created:#}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_") && secret.len() > 40, "{created:#}");
    (created["id"].as_str().unwrap().to_owned(), secret)
}

async fn deliveries(app: &Carteiro, slug: &str, webhook: &str) -> Vec<Value> {
    let (status, body) =
        app.admin(Method::GET, &format!("/api/v1/companies/{slug}/webhooks/{webhook}/deliveries"), None).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    body.as_array().unwrap().clone()
}

/// A scheduled message, an hour from now.
fn scheduled(to: &str) -> Value {
    let later = (OffsetDateTime::now_utc() + Duration::from_secs(3600)).format(&Rfc3339).unwrap();
    let mut message = system_message(&[to]);
    message["send_at"] = json!(later);
    message
}

fn instant(text: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(text.as_str().unwrap_or_default(), &Rfc3339)
        .unwrap_or_else(|_| panic!("not RFC 3339: {text}"))
}

/// Each event id accepted once; the events by message, in the order they happened.
fn by_message(events: &[Received]) -> BTreeMap<String, Vec<Received>> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for event in events {
        *seen.entry(&event.id).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "events accepted more than once: {twice:?}");
    let mut out: BTreeMap<String, Vec<Received>> = BTreeMap::new();
    for event in events {
        out.entry(event.body["message"]["id"].as_str().unwrap().to_owned()).or_default().push(event.clone());
    }
    for list in out.values_mut() {
        list.sort_by_key(|e| instant(&e.body["created_at"]));
    }
    out
}

fn kinds(events: &[Received]) -> Vec<&str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

// ---------------------------------------------------------------- scenarios

#[tokio::test]
async fn every_state_change_reaches_the_receiver_once_signed() {
    let peer = SmtpPeer::start(&["--data-replies", "451", "--rcpt-reply", "recusado@example.com=550"]).await;
    let app = Carteiro::start_with(FAST_WEBHOOKS, &[]).await;
    app.use_server(peer.port).await;
    let acme = app.create_company("acme").await;
    let beta = app.create_company("beta").await;
    let receiver = Receiver::start().await;
    let (webhook, secret) = create_webhook(&app, "acme", json!({"url": receiver.url})).await;
    receiver.set_secret(&secret);

    // The peer's first DATA gets a 451: this message is deferred once, then sent.
    let later = app.send(&acme, system_message(&["cliente@example.com"])).await;
    app.wait_for_status(&acme, &later, "sent", WAIT).await;
    let sent = app.send(&acme, system_message(&["outro@example.com"])).await;
    let failed = app.send(&acme, system_message(&["recusado@example.com"])).await;
    let cancelled = app.send(&acme, scheduled("agendado@example.com")).await;
    let (status, body) =
        app.call(Method::POST, &format!("/api/v1/messages/{cancelled}/cancel"), Some(&acme.key), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Another company's mail is not acme's to hear of.
    let other = app.send(&beta, system_message(&["cliente@example.com"])).await;
    app.wait_for_status(&acme, &sent, "sent", WAIT).await;
    app.wait_for_status(&acme, &failed, "failed", WAIT).await;
    app.wait_for_status(&beta, &other, "sent", WAIT).await;

    let events = by_message(&receiver.wait_for_events(5).await);
    let story: BTreeMap<&str, Vec<&str>> = events.iter().map(|(id, list)| (id.as_str(), kinds(list))).collect();
    let expected: BTreeMap<&str, Vec<&str>> = [
        (later.as_str(), vec!["message.deferred", "message.sent"]),
        (sent.as_str(), vec!["message.sent"]),
        (failed.as_str(), vec!["message.failed"]),
        (cancelled.as_str(), vec!["message.cancelled"]),
    ]
    .into();
    assert_eq!(story, expected);
    assert!(receiver.rejected().is_empty(), "every signature verified: {:?}", receiver.rejected());

    // Each event tells of one recorded attempt, as the API shows it.
    for id in [&later, &sent, &failed] {
        let message = app.message(&acme, id).await;
        let attempts = message["attempts"].as_array().unwrap();
        let told = &events[id.as_str()];
        assert_eq!(told.len(), attempts.len(), "one event per attempt of {id}: {message:#}");
        for (event, attempt) in told.iter().zip(attempts) {
            let body = &event.body;
            assert_eq!(body["company"], "acme");
            assert_eq!(body["message"]["id"], json!(id));
            assert_eq!(body["message"]["subject"], message["subject"]);
            assert_eq!(body["message"]["status"], attempt["outcome"], "{body:#}");
            assert_eq!(body["message"]["attempt"]["code"], attempt["code"], "{body:#}");
            assert_eq!(body["message"]["attempt"]["reply"], attempt["reply"], "{body:#}");
            assert_eq!(instant(&body["message"]["attempt"]["at"]), instant(&attempt["at"]));
        }
    }
    let codes: Vec<Value> = [&events[&later][0], &events[&later][1], &events[&failed][0]]
        .iter()
        .map(|e| e.body["message"]["attempt"]["code"].clone())
        .collect();
    assert_eq!(codes, [json!(451), json!(250), json!(550)]);
    let cancel = &events[&cancelled][0].body;
    assert_eq!((&cancel["message"]["status"], &cancel["message"]["attempt"]), (&json!("cancelled"), &Value::Null));
    for event in receiver.accepted() {
        let keys: Vec<&String> = event.body.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 5, "id, type, created_at, company, message: {:#}", event.body);
        assert!(!event.raw.contains(&secret) && !event.raw.contains(&acme.key), "no secret in {}", event.raw);
    }

    // Delivered at the first try, each once: nothing is left to arrive again.
    let listed = deliveries(&app, "acme", &webhook).await;
    assert_eq!(listed.len(), 5, "{listed:#?}");
    for delivery in &listed {
        assert_eq!((&delivery["status"], &delivery["attempts"]), (&json!("delivered"), &json!(1)), "{delivery:#}");
        assert_eq!(delivery["last_code"], 204);
        assert!(delivery["delivered_at"].is_string() && delivery["next_attempt_at"].is_null(), "{delivery:#}");
    }
    assert_eq!(receiver.accepted().len(), 5);
}

#[tokio::test]
async fn mail_flows_while_the_receiver_fails_and_the_events_arrive_once_it_recovers() {
    let peer = SmtpPeer::plain().await;
    let app = Carteiro::start_with(FAST_WEBHOOKS, &[]).await;
    app.use_server(peer.port).await;
    let acme = app.create_company("acme").await;
    let receiver = Receiver::start().await;
    let (webhook, secret) =
        create_webhook(&app, "acme", json!({"url": receiver.url, "events": ["message.sent"]})).await;
    receiver.set_secret(&secret);
    receiver.set_failing(true);
    let (app_ref, hook) = (&app, webhook.as_str());

    let first: Vec<String> = {
        let mut ids = Vec::new();
        for n in 0..3 {
            ids.push(app.send(&acme, system_message(&[&format!("cliente{n}@example.com")])).await);
        }
        ids
    };
    for id in &first {
        app.wait_for_status(&acme, id, "sent", WAIT).await;
    }
    // The endpoint has refused; its deliveries wait, each tried with the 500 kept.
    let tried = eventually(WAIT, "a delivery refused with 500", || async move {
        let listed = deliveries(app_ref, "acme", hook).await;
        let refused = listed.iter().filter(|d| d["last_code"] == 500).count();
        (listed.len() == 3 && refused >= 1).then_some(listed)
    })
    .await;
    for delivery in &tried {
        assert_eq!(delivery["status"], "pending", "{delivery:#}");
        if delivery["last_code"] == 500 {
            assert!(delivery["attempts"].as_i64().unwrap() >= 1, "{delivery:#}");
            assert!(delivery["last_error"].as_str().unwrap().contains("HTTP 500"), "{delivery:#}");
        }
    }
    // Mail submitted during the outage is still delivered at once.
    let during = app.send(&acme, system_message(&["durante@example.com"])).await;
    app.wait_for_status(&acme, &during, "sent", Duration::from_secs(5)).await;
    assert!(receiver.refused() >= 1 && receiver.accepted().is_empty(), "the receiver was still failing");

    receiver.set_failing(false);

    let events = by_message(&receiver.wait_for_events(4).await);
    let expected: Vec<&String> = first.iter().chain([&during]).collect();
    let mut heard: Vec<&String> = events.keys().collect();
    heard.sort();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    assert_eq!(heard, expected_sorted);
    assert!(events.values().all(|list| kinds(list) == ["message.sent"]), "{events:#?}");
    let listed = eventually(WAIT, "every delivery recorded as delivered", || async move {
        let listed = deliveries(app_ref, "acme", hook).await;
        listed.iter().all(|d| d["status"] == "delivered").then_some(listed)
    })
    .await;
    assert_eq!(listed.len(), 4, "{listed:#?}");
    assert!(
        listed.iter().any(|d| d["attempts"].as_i64().unwrap() >= 2),
        "some were tried during the outage: {listed:#?}"
    );
    assert_eq!(receiver.accepted().len(), 4, "each event accepted once");
}

#[tokio::test]
async fn a_receiver_with_the_wrong_secret_refuses_the_events_until_it_has_the_right_one() {
    let peer = SmtpPeer::plain().await;
    let app = Carteiro::start_with(FAST_WEBHOOKS, &[]).await;
    app.use_server(peer.port).await;
    let acme = app.create_company("acme").await;
    let receiver = Receiver::start().await;
    let (webhook, secret) = create_webhook(&app, "acme", json!({"url": receiver.url})).await;
    receiver.set_secret("whsec_not-the-secret-carteiro-showed");

    let id = app.send(&acme, system_message(&["cliente@example.com"])).await;
    app.wait_for_status(&acme, &id, "sent", WAIT).await;
    let (app_ref, hook) = (&app, webhook.as_str());
    let refused = eventually(WAIT, "a delivery refused for its signature", || async move {
        let listed = deliveries(app_ref, "acme", hook).await;
        listed.into_iter().find(|d| d["last_code"] == 400)
    })
    .await;
    assert_eq!(refused["status"], "pending", "{refused:#}");
    assert!(receiver.accepted().is_empty());
    assert!(receiver.rejected().iter().all(|why| why == "the signature does not match"), "{:?}", receiver.rejected());

    receiver.set_secret(&secret);
    let event = receiver.wait_for_events(1).await.remove(0);
    assert_eq!((event.kind.as_str(), &event.body["message"]["id"]), ("message.sent", &json!(id)));

    // The verifier really checks: one byte changed, or another secret, and it fails.
    let (t, v1) = parse_signature(&event.signature).unwrap();
    assert!(signature_matches(&secret, t, event.raw.as_bytes(), &v1));
    assert!(!signature_matches(&secret, t, event.raw.replacen("acme", "acmf", 1).as_bytes(), &v1));
    assert!(!signature_matches(&secret, t + 1, event.raw.as_bytes(), &v1));
    assert!(!signature_matches("whsec_not-the-secret-carteiro-showed", t, event.raw.as_bytes(), &v1));

    // The README's shell recipe computes the same signature.
    let recipe = std::process::Command::new("sh")
        .args(["-c", r#"printf '%s.%s' "$T" "$BODY" | openssl dgst -sha256 -hmac "$SECRET" | sed 's/^.*= //'"#])
        .env("T", t.to_string())
        .env("BODY", &event.raw)
        .env("SECRET", &secret)
        .output()
        .expect("openssl runs");
    assert!(recipe.status.success(), "{}", String::from_utf8_lossy(&recipe.stderr));
    assert_eq!(String::from_utf8_lossy(&recipe.stdout).trim(), hex::encode(&v1));

    // The secret is sealed in the store: nowhere in clear.
    let stored = store::contents(&app.data_dir());
    assert!(!stored.iter().any(|(_, bytes)| bytes.windows(secret.len()).any(|w| w == secret.as_bytes())));
    assert!(!app.logs().contains(&secret), "nor in the log");
}

#[tokio::test]
async fn webhooks_are_validated_audited_and_each_company_s_own() {
    let app = Carteiro::start().await;
    app.create_company("acme").await;
    app.create_company("beta").await;
    let base = "/api/v1/companies/acme/webhooks";

    let refusals = [
        (json!({"url": "ftp://hooks.example.com/in"}), "url"),
        (json!({"url": "hooks.example.com/in"}), "url"),
        (json!({"url": "https://user:password@hooks.example.com/in"}), "url"),
        (json!({"url": "https://hooks.example.com/in", "events": ["message.bounced"]}), "events[0]"),
        (json!({"url": "https://hooks.example.com/in", "events": ["message.sent", "sent"]}), "events[1]"),
        (json!({"url": "https://hooks.example.com/in", "events": []}), "events"),
    ];
    for (body, field) in refusals {
        let (status, answer) = app.admin(Method::POST, base, Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer:#}");
        assert_eq!(answer["error"]["field"], field, "{body}: {answer:#}");
        assert!(answer["error"]["message"].as_str().unwrap().starts_with(field), "{answer:#}");
    }
    let (status, answer) =
        app.admin(Method::POST, base, Some(json!({"url": "https://a.example", "secret": "x"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "unknown fields are refused: {answer:#}");
    let (status, _) =
        app.admin(Method::POST, "/api/v1/companies/nada/webhooks", Some(json!({"url": "https://a.example"}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (id, secret) =
        create_webhook(&app, "acme", json!({"url": "https://hooks.acme.example/in", "events": ["message.failed"]}))
            .await;
    let (status, listed) = app.admin(Method::GET, base, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        listed,
        json!([{"id": id, "url": "https://hooks.acme.example/in", "events": ["message.failed"],
                                "created_at": listed[0]["created_at"]}])
    );
    assert!(!listed.to_string().contains(&secret), "the secret is shown once only");

    // A company administrator: their own company only, and https only.
    for (slug, user) in [("acme", "gerente.acme"), ("beta", "gerente.beta")] {
        let (status, body) = app
            .admin(
                Method::POST,
                &format!("/api/v1/companies/{slug}/admins"),
                Some(json!({"username": user, "password": "senha-do-gerente-1"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let beta = app.login("gerente.beta", "senha-do-gerente-1").await.unwrap();
    let calls = [
        (Method::GET, base.to_owned(), None),
        (Method::POST, base.to_owned(), Some(json!({"url": "https://hooks.beta.example/in"}))),
        (Method::DELETE, format!("{base}/{id}"), None),
        (Method::GET, format!("{base}/{id}/deliveries"), None),
    ];
    for (method, path, body) in calls {
        let (status, answer) = app.call(method.clone(), &path, Some(&beta), body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {answer:#}");
    }
    let acme_admin = app.login("gerente.acme", "senha-do-gerente-1").await.unwrap();
    let (status, answer) =
        app.call(Method::POST, base, Some(&acme_admin), Some(json!({"url": "http://127.0.0.1:8080/x"}))).await;
    assert_eq!((status, &answer["error"]["field"]), (StatusCode::FORBIDDEN, &json!("url")), "{answer:#}");
    let (status, own) =
        app.call(Method::POST, base, Some(&acme_admin), Some(json!({"url": "https://hooks.acme.example/2"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{own:#}");
    assert_eq!(own["events"], json!(["message.sent", "message.deferred", "message.failed", "message.cancelled"]));
    let (status, listed) = app.call(Method::GET, &format!("{base}/{id}/deliveries"), Some(&acme_admin), None).await;
    assert_eq!((status, listed), (StatusCode::OK, json!([])));

    let (status, _) = app.call(Method::DELETE, &format!("{base}/{id}"), Some(&acme_admin), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app.admin(Method::DELETE, &format!("{base}/{id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "deleted once");
    let (status, _) = app.admin(Method::GET, &format!("{base}/{id}/deliveries"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, audit) = app.admin(Method::GET, "/api/v1/audit?company=acme", None).await;
    assert_eq!(status, StatusCode::OK);
    let actions: Vec<(&str, &str)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("webhook."))
        .map(|e| (e["action"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        [
            ("webhook.delete", "admin:gerente.acme"),
            ("webhook.create", "admin:gerente.acme"),
            ("webhook.create", "admin:admin")
        ]
    );
    assert!(!audit.to_string().contains(&secret));
}
