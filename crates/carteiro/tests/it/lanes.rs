//! Lanes: one per (company, server). Bundling carries a lane's messages over
//! one SMTP session per window (pipelined when the server offers it), a broken
//! session gives back what it did not send, and each lane keeps to its own
//! session limit and rate. A claimed message waits in memory, still
//! cancellable, until its session sends it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::helpers::app::{system_message, user_message};
use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// Small helpers of this file.

/// The policy that bundles a lane's messages every `interval_ms`.
fn bundling(interval_ms: u64) -> Value {
    json!({"policy": {"bundle_enabled": true, "bundle_interval_ms": interval_ms}})
}

/// The company's own connection to a plain server on loopback, merged with `extra`,
/// and bundling every `bundle_ms` when given.
fn own_server(port: u16, extra: Value, bundle_ms: Option<u64>) -> Value {
    let mut connection =
        json!({"enabled": true, "host": "127.0.0.1", "port": port, "security": "none", "timeout_s": 10});
    for (k, v) in extra.as_object().expect("extra connection fields are an object") {
        connection[k] = v.clone();
    }
    let mut doc = json!({"connection": connection});
    if let Some(ms) = bundle_ms {
        doc["policy"] = bundling(ms)["policy"].clone();
    }
    doc
}

/// One system message to each address.
fn one_each(addresses: &[String]) -> Vec<Value> {
    addresses.iter().map(|a| system_message(&[a])).collect()
}

/// `prefix-1@example.com` … `prefix-n@example.com`.
fn addresses(prefix: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix}-{i}@example.com")).collect()
}

/// Submits the messages in one batch; their ids, in order.
async fn submit_batch(app: &Carteiro, company: &Company, messages: Vec<Value>) -> Vec<String> {
    let count = messages.len();
    let (status, body) =
        app.call(Method::POST, "/api/v1/messages/batch", Some(&company.key), Some(json!({"messages": messages}))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let ids: Vec<String> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap_or_else(|| panic!("an item was refused: {body}")).to_owned())
        .collect();
    assert_eq!(ids.len(), count, "{body}");
    ids
}

/// The next `n` messages the peer accepts, in the order they arrived.
async fn collect(peer: &mut SmtpPeer, n: usize, limit: Duration) -> Vec<PeerMessage> {
    let deadline = Instant::now() + limit;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        out.push(peer.next_message(left).await);
    }
    out
}

/// The sessions that carried the messages, each once, in order of first use.
fn sessions(received: &[PeerMessage]) -> Vec<u64> {
    let mut seen = Vec::new();
    for m in received {
        if !seen.contains(&m.session) {
            seen.push(m.session);
        }
    }
    seen
}

/// Every recipient address of the messages, sorted.
fn recipients_of(received: &[PeerMessage]) -> Vec<String> {
    let mut all: Vec<String> = received.iter().flat_map(|m| m.rcpt_tos.clone()).collect();
    all.sort();
    all
}

fn sorted(addresses: &[String]) -> Vec<String> {
    let mut all = addresses.to_vec();
    all.sort();
    all
}

/// The message's attempts, in the order carteiro records them.
fn attempts(message: &Value) -> Vec<Value> {
    message["attempts"].as_array().cloned().unwrap_or_default()
}

/// The outcome and code of each attempt: the message's story.
fn story(message: &Value) -> Vec<(Option<String>, Option<i64>)> {
    attempts(message).iter().map(|a| (a["outcome"].as_str().map(str::to_owned), a["code"].as_i64())).collect()
}

fn sent_once() -> Vec<(Option<String>, Option<i64>)> {
    vec![(Some("sent".to_owned()), Some(250))]
}

/// The recipient of that address in the message read back.
fn recipient<'a>(message: &'a Value, address: &str) -> &'a Value {
    message["recipients"]
        .as_array()
        .and_then(|all| all.iter().find(|r| r["address"] == address))
        .unwrap_or_else(|| panic!("{address} is not among the recipients of {message:#}"))
}

async fn cancel(app: &Carteiro, company: &Company, id: &str) -> (StatusCode, Value) {
    app.call(Method::POST, &format!("/api/v1/messages/{id}/cancel"), Some(&company.key), None).await
}

/// Submits `messages` in one batch and waits for `n` of them at the peer: how long that took.
async fn time_batch(app: &Carteiro, company: &Company, peer: &mut SmtpPeer, messages: Vec<Value>) -> Duration {
    let n = messages.len();
    let started = Instant::now();
    submit_batch(app, company, messages).await;
    collect(peer, n, WAIT).await;
    started.elapsed()
}

// ---------------------------------------------------------------------------
// A scripted SMTP server that tells whether the client pipelined its envelope.

/// One transaction as the scripted server saw it.
#[derive(Debug, Clone)]
struct Transaction {
    /// The client's port: the session.
    session: u16,
    /// Commands (MAIL, RCPT…, DATA) the client sent before it had any answer.
    sent_ahead: usize,
    recipients: usize,
    /// The answer after the dot: 250, or 421 when the script closes the session there.
    code: u16,
}

/// An SMTP server that offers PIPELINING or not and, at MAIL FROM, holds its
/// answers back (RFC 2920 lets it) to count how many commands the client
/// sends without waiting: MAIL, every RCPT and DATA when it pipelines, MAIL
/// alone when it waits for each reply. Accepts every message, except that it
/// can answer one (counted over all sessions) with 421 and close the connection,
/// as busy servers do.
struct ScriptedServer {
    port: u16,
    seen: Arc<Mutex<Vec<Transaction>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ScriptedServer {
    async fn start(pipelining: bool) -> Self {
        Self::start_closing_at(pipelining, None).await
    }

    /// Answers the `n`-th message (1-based, over all sessions) with 421 and closes the connection.
    async fn start_closing_at(pipelining: bool, closing_at: Option<usize>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, peer)) = listener.accept().await {
                tokio::spawn(Self::session(socket, peer.port(), pipelining, closing_at, record.clone()));
            }
        });
        Self { port, seen, task }
    }

    async fn session(
        socket: tokio::net::TcpStream,
        session: u16,
        pipelining: bool,
        closing_at: Option<usize>,
        seen: Arc<Mutex<Vec<Transaction>>>,
    ) {
        // How long to wait for a command the client would send without an answer: a
        // pipelining client sends the whole group at once; one that waits would wait
        // for ever, so a short look is enough when PIPELINING is not offered.
        let look_ahead = if pipelining { Duration::from_secs(1) } else { Duration::from_millis(150) };
        let (read, mut write) = socket.into_split();
        let mut reader = BufReader::new(read);
        let _ = write.write_all(b"220 scripted ESMTP\r\n").await;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
            let answer: String = match verb.as_str() {
                "EHLO" => {
                    if pipelining {
                        "250-scripted\r\n250-PIPELINING\r\n250 8BITMIME\r\n".into()
                    } else {
                        "250-scripted\r\n250 8BITMIME\r\n".into()
                    }
                }
                "MAIL" => {
                    // Everything the client sends before we answer MAIL.
                    let mut group = vec![line.clone()];
                    while !group.last().unwrap().to_ascii_uppercase().starts_with("DATA") {
                        let mut next = String::new();
                        match tokio::time::timeout(look_ahead, reader.read_line(&mut next)).await {
                            Ok(Ok(n)) if n > 0 => group.push(next),
                            Ok(_) => return,
                            Err(_) => break, // the client waits for an answer
                        }
                    }
                    let sent_ahead = group.len();
                    let mut answers = String::new();
                    for command in &group {
                        answers.push_str(Self::envelope_answer(command));
                    }
                    // A client that waited gets the rest of the envelope one command at a time.
                    let mut ended = group.last().unwrap().to_ascii_uppercase().starts_with("DATA");
                    let mut recipients = group.iter().filter(|c| c.to_ascii_uppercase().starts_with("RCPT")).count();
                    while !ended {
                        if write.write_all(answers.as_bytes()).await.is_err() {
                            return;
                        }
                        answers.clear();
                        let mut next = String::new();
                        if reader.read_line(&mut next).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let upper = next.to_ascii_uppercase();
                        recipients += usize::from(upper.starts_with("RCPT"));
                        ended = upper.starts_with("DATA");
                        answers.push_str(Self::envelope_answer(&next));
                    }
                    if write.write_all(answers.as_bytes()).await.is_err() {
                        return;
                    }
                    // The message, up to the lone dot.
                    loop {
                        let mut body = String::new();
                        if reader.read_line(&mut body).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if body == ".\r\n" {
                            break;
                        }
                    }
                    let closing = {
                        let mut seen = seen.lock().unwrap();
                        let closing = closing_at == Some(seen.len() + 1);
                        let code = if closing { 421 } else { 250 };
                        seen.push(Transaction { session, sent_ahead, recipients, code });
                        closing
                    };
                    if closing {
                        let _ = write.write_all(b"421 4.7.0 too busy, closing the connection\r\n").await;
                        return;
                    }
                    "250 2.0.0 queued\r\n".into()
                }
                "RSET" | "NOOP" => "250 2.0.0 OK\r\n".into(),
                "QUIT" => {
                    let _ = write.write_all(b"221 2.0.0 bye\r\n").await;
                    return;
                }
                _ => "502 5.5.2 not understood\r\n".into(),
            };
            if write.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
        }
    }

    fn envelope_answer(command: &str) -> &'static str {
        match command.get(..4).unwrap_or_default().to_ascii_uppercase().as_str() {
            "MAIL" | "RCPT" => "250 2.1.0 OK\r\n",
            "DATA" => "354 go ahead\r\n",
            _ => "503 5.5.1 bad sequence\r\n",
        }
    }

    fn transactions(&self) -> Vec<Transaction> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------
// Bundling.

#[tokio::test]
async fn a_bundled_batch_travels_over_one_session_and_an_unbundled_one_over_a_session_each() {
    let mut peer = SmtpPeer::plain().await;
    let app = Carteiro::start().await;
    app.use_server(peer.port).await;
    let junta = app.create_company("junta").await;
    let avulsa = app.create_company("avulsa").await;
    // Only the policy is the company's: the connection comes from the global level.
    app.set_company_settings(&junta, bundling(500)).await;

    let bundled = addresses("junta", 10);
    let ids = submit_batch(&app, &junta, one_each(&bundled)).await;
    let received = collect(&mut peer, 10, WAIT).await;
    assert_eq!(recipients_of(&received), sorted(&bundled), "each message arrived once");
    assert_eq!(sessions(&received).len(), 1, "one session carried the bundle: {:?}", sessions(&received));
    for id in &ids {
        let message = app.wait_for_status(&junta, id, "sent", WAIT).await;
        assert_eq!(story(&message), sent_once(), "{message:#}");
    }

    let unbundled = addresses("avulsa", 10);
    let ids = submit_batch(&app, &avulsa, one_each(&unbundled)).await;
    let received = collect(&mut peer, 10, WAIT).await;
    assert_eq!(recipients_of(&received), sorted(&unbundled));
    assert_eq!(sessions(&received).len(), 10, "each message had its own session: {:?}", sessions(&received));
    for id in &ids {
        app.wait_for_status(&avulsa, id, "sent", WAIT).await;
    }
    assert!(peer.received().is_empty(), "nothing was delivered twice");
}

#[tokio::test]
async fn a_bundle_waits_for_its_window_while_an_unbundled_message_goes_at_once() {
    let mut peer = SmtpPeer::plain().await;
    let app = Carteiro::start().await;
    app.use_server(peer.port).await;
    let junta = app.create_company("junta").await;
    let avulsa = app.create_company("avulsa").await;
    app.set_company_settings(&junta, bundling(1000)).await;

    // Measured from the 202: the window opened no earlier than the submission.
    let id = app.send(&junta, system_message(&["janela@example.com"])).await;
    let accepted = Instant::now();
    let waiting = app.message(&junta, &id).await;
    assert_eq!(waiting["status"], "queued", "a message waiting for its window is still queued: {waiting:#}");
    let received = peer.next_message(WAIT).await;
    let bundled_after = accepted.elapsed();
    assert_eq!(received.rcpt_tos, ["janela@example.com"]);
    assert!(
        bundled_after >= Duration::from_millis(800),
        "the bundled message left {bundled_after:?} after its submission, before its 1000 ms window closed"
    );
    assert!(bundled_after < Duration::from_secs(3), "the window of 1000 ms held the message {bundled_after:?}");
    app.wait_for_status(&junta, &id, "sent", WAIT).await;

    // Measured from before the request: the whole round trip.
    let started = Instant::now();
    let id = app.send(&avulsa, system_message(&["agora@example.com"])).await;
    let received = peer.next_message(WAIT).await;
    let unbundled_after = started.elapsed();
    assert_eq!(received.rcpt_tos, ["agora@example.com"]);
    assert!(unbundled_after < Duration::from_millis(600), "the unbundled message took {unbundled_after:?}");
    app.wait_for_status(&avulsa, &id, "sent", WAIT).await;
    eprintln!("timings: bundled (1000 ms window) {bundled_after:?} after the 202; unbundled {unbundled_after:?}");
}

#[tokio::test]
async fn a_window_opened_by_the_first_message_is_not_pushed_back_by_later_ones() {
    let mut peer = SmtpPeer::plain().await;
    let app = Carteiro::start().await;
    app.use_server(peer.port).await;
    let acme = app.create_company("acme").await;
    app.set_company_settings(&acme, bundling(1000)).await;

    let first = app.send(&acme, system_message(&["primeira@example.com"])).await;
    let opened = Instant::now();
    // The time is the point: the second message joins halfway through the window.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = app.send(&acme, system_message(&["segunda@example.com"])).await;

    let received = collect(&mut peer, 2, WAIT).await;
    let flushed = opened.elapsed();
    eprintln!("timings: a 1000 ms window with a second message at 500 ms flushed {flushed:?} after the first");
    assert_eq!(sessions(&received).len(), 1, "both came in the one window: {received:?}");
    assert!(
        flushed < Duration::from_millis(1400),
        "the window closed {flushed:?} after the first message: the second must not restart it"
    );
    for id in [&first, &second] {
        app.wait_for_status(&acme, id, "sent", WAIT).await;
    }
}

#[tokio::test]
async fn a_pipelined_bundle_keeps_each_messages_own_outcome() {
    // The third DATA of the session is refused; one recipient is refused at RCPT.
    let mut peer =
        SmtpPeer::start(&["--pipelining", "--rcpt-reply", "bad@example.com=550", "--data-replies", "250,250,554"])
            .await;
    let app = Carteiro::start().await;
    app.use_server(peer.port).await;
    let acme = app.create_company("acme").await;
    app.set_company_settings(&acme, bundling(500)).await;

    let ids = submit_batch(
        &app,
        &acme,
        vec![
            system_message(&["um@example.com", "bad@example.com"]),
            system_message(&["dois@example.com"]),
            system_message(&["tres@example.com"]),
            system_message(&["quatro@example.com"]),
            system_message(&["cinco@example.com"]),
        ],
    )
    .await;

    let mut received = Vec::new();
    let mut refused = Vec::new();
    while received.len() + refused.len() < 5 {
        let event = peer.next_event(WAIT).await;
        match event["event"].as_str() {
            Some("message") => received.push(event),
            Some("data_refused") => refused.push(event),
            _ => panic!("unexpected event {event}"),
        }
    }
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["code"], 554);
    assert_eq!(
        refused[0]["rcpt_tos"],
        json!(["tres@example.com"]),
        "the bundle carries the messages in the order they were submitted"
    );
    let sessions: BTreeSet<u64> = received.iter().map(|e| e["session"].as_u64().unwrap()).collect();
    assert_eq!(sessions.len(), 1, "the four accepted messages came over one session: {received:?}");
    let first: Vec<&Value> = received.iter().filter(|e| e["rcpt_tos"] == json!(["um@example.com"])).collect();
    assert_eq!(first.len(), 1, "the refused recipient was left out of the envelope: {received:?}");

    let partly = app.wait_for_status(&acme, &ids[0], "sent", WAIT).await;
    assert_eq!(story(&partly), sent_once(), "{partly:#}");
    let good = recipient(&partly, "um@example.com");
    let bad = recipient(&partly, "bad@example.com");
    assert_eq!((good["state"].as_str(), good["code"].as_i64()), (Some("sent"), Some(250)));
    assert_eq!((bad["state"].as_str(), bad["code"].as_i64()), (Some("failed"), Some(550)), "{partly:#}");
    assert_eq!(partly["attempts"][0]["refusals"][0]["address"], "bad@example.com");

    let failed = app.wait_for_status(&acme, &ids[2], "failed", WAIT).await;
    assert_eq!(story(&failed), [(Some("failed".to_owned()), Some(554))], "{failed:#}");
    assert!(failed["attempts"][0]["reply"].as_str().unwrap().contains("refused (scripted)"), "{failed:#}");
    let rcpt = recipient(&failed, "tres@example.com");
    assert_eq!((rcpt["state"].as_str(), rcpt["code"].as_i64()), (Some("failed"), Some(554)));
    assert!(failed["next_attempt_at"].is_null(), "a 554 is not retried: {failed:#}");

    for id in [&ids[1], &ids[3], &ids[4]] {
        let message = app.wait_for_status(&acme, id, "sent", WAIT).await;
        assert_eq!(story(&message), sent_once(), "{message:#}");
    }
    assert!(peer.received().is_empty(), "nothing was delivered twice");
}

#[tokio::test]
async fn the_envelope_is_pipelined_only_when_the_server_offers_pipelining() {
    let offers = ScriptedServer::start(true).await;
    let does_not = ScriptedServer::start(false).await;
    let app = Carteiro::start().await;
    app.use_server(1).await; // the global level only gives the default sender here
    let rapida = app.create_company("rapida").await;
    let classica = app.create_company("classica").await;
    app.set_company_settings(&rapida, own_server(offers.port, json!({}), Some(300))).await;
    app.set_company_settings(&classica, own_server(does_not.port, json!({}), Some(300))).await;

    let two = |who: &str| system_message(&[&format!("{who}-a@example.com"), &format!("{who}-b@example.com")]);
    let fast = submit_batch(&app, &rapida, vec![two("r1"), two("r2")]).await;
    let slow = submit_batch(&app, &classica, vec![two("c1"), two("c2")]).await;
    for id in &fast {
        app.wait_for_status(&rapida, id, "sent", WAIT).await;
    }
    for id in &slow {
        app.wait_for_status(&classica, id, "sent", WAIT).await;
    }

    let pipelined = offers.transactions();
    assert_eq!(pipelined.len(), 2, "{pipelined:?}");
    assert!(pipelined.iter().all(|t| t.recipients == 2), "{pipelined:?}");
    assert!(
        pipelined.iter().all(|t| t.sent_ahead == 4),
        "MAIL, both RCPT and DATA were sent together to the server that offers PIPELINING: {pipelined:?}"
    );
    assert_eq!(pipelined[0].session, pipelined[1].session, "one session carried the bundle: {pipelined:?}");

    let one_by_one = does_not.transactions();
    assert_eq!(one_by_one.len(), 2, "{one_by_one:?}");
    assert!(one_by_one.iter().all(|t| t.recipients == 2), "{one_by_one:?}");
    assert!(
        one_by_one.iter().all(|t| t.sent_ahead == 1),
        "without PIPELINING the client waits for each answer: {one_by_one:?}"
    );
    assert_eq!(one_by_one[0].session, one_by_one[1].session, "{one_by_one:?}");
}

#[tokio::test]
async fn a_message_whose_recipients_are_all_refused_does_not_spoil_the_next_in_its_session() {
    for pipelining in [false, true] {
        let mut flags = vec!["--rcpt-reply", "ninguem@example.com=550"];
        if pipelining {
            flags.push("--pipelining");
        }
        let mut peer = SmtpPeer::start(&flags).await;
        let app = Carteiro::start().await;
        app.use_server(peer.port).await;
        let acme = app.create_company("acme").await;
        app.set_company_settings(&acme, bundling(300)).await;

        let ids = submit_batch(
            &app,
            &acme,
            vec![
                system_message(&["antes@example.com"]),
                system_message(&["ninguem@example.com"]),
                system_message(&["depois@example.com"]),
            ],
        )
        .await;

        let received = collect(&mut peer, 2, WAIT).await;
        assert_eq!(recipients_of(&received), ["antes@example.com", "depois@example.com"], "pipelining: {pipelining}");
        assert_eq!(sessions(&received).len(), 1, "pipelining: {pipelining}: {received:?}");
        let nobody = app.wait_for_status(&acme, &ids[1], "failed", WAIT).await;
        assert_eq!(recipient(&nobody, "ninguem@example.com")["code"], 550, "{nobody:#}");
        for id in [&ids[0], &ids[2]] {
            let message = app.wait_for_status(&acme, id, "sent", WAIT).await;
            assert_eq!(story(&message), sent_once(), "pipelining: {pipelining}: {message:#}");
        }
    }
}

// ---------------------------------------------------------------------------
// A session that breaks.

#[tokio::test]
async fn a_bundle_cut_short_defers_the_message_in_doubt_and_gives_back_the_rest_untried() {
    bundle_cut_short(&[]).await;
}

#[tokio::test]
async fn a_pipelined_bundle_cut_short_defers_the_message_in_doubt_and_gives_back_the_rest_untried() {
    // With PIPELINING the next envelope travels with each end of data: the
    // same story must hold.
    bundle_cut_short(&["--pipelining"]).await;
}

async fn bundle_cut_short(flags: &[&str]) {
    // The connection drops where the third message's final reply should be.
    let mut peer = SmtpPeer::start(&[&["--drop-on-message", "3"], flags].concat()).await;
    let app = Carteiro::start().await;
    app.use_server(peer.port).await;
    let acme = app.create_company("acme").await;
    app.set_company_settings(&acme, bundling(500)).await;

    let all = addresses("corte", 5);
    let started = Instant::now();
    let ids = submit_batch(&app, &acme, one_each(&all)).await;

    let received = collect(&mut peer, 5, WAIT).await;
    let elapsed = started.elapsed();
    eprintln!("timings: a bundle of 5 cut after 2 (500 ms windows, 0.2 s first retry) all delivered in {elapsed:?}");
    // Given back due now, the untried go in the next window: not after their
    // lease (3 s in tests) runs out, as they would if left where they were.
    assert!(elapsed < Duration::from_millis(2500), "the bundle cut short took {elapsed:?} to be delivered");
    assert_eq!(recipients_of(&received), sorted(&all), "each message arrived once, none twice: {received:?}");
    let first_session = received[0].session;
    let before_the_break: Vec<&str> =
        received.iter().filter(|m| m.session == first_session).map(|m| m.rcpt_tos[0].as_str()).collect();
    assert_eq!(before_the_break, ["corte-1@example.com", "corte-2@example.com"], "{received:?}");
    assert!(
        received[2..].iter().all(|m| m.session != first_session),
        "the rest came over a later session: {received:?}"
    );

    let mut messages = Vec::new();
    for id in &ids {
        messages.push(app.wait_for_status(&acme, id, "sent", WAIT).await);
    }
    for message in [&messages[0], &messages[1]] {
        assert_eq!(story(message), sent_once(), "sent before the break: {message:#}");
    }
    let in_doubt = &messages[2];
    let tries = attempts(in_doubt);
    assert_eq!(story(in_doubt).len(), 2, "a deferred attempt, then the delivery: {in_doubt:#}");
    assert_eq!(tries[0]["outcome"], "deferred", "{in_doubt:#}");
    assert!(tries[0]["code"].is_null(), "no reply was read after the dot: {in_doubt:#}");
    assert!(tries[0]["reply"].as_str().unwrap().contains("data_end"), "{in_doubt:#}");
    assert_eq!((tries[1]["outcome"].as_str(), tries[1]["code"].as_i64()), (Some("sent"), Some(250)));
    for message in [&messages[3], &messages[4]] {
        assert_eq!(story(message), sent_once(), "given back untried, no attempt counted: {message:#}");
    }
    assert!(peer.received().is_empty(), "nothing was delivered twice");
}

#[tokio::test]
async fn a_server_that_answers_421_and_closes_ends_the_session_and_the_rest_go_back_untried() {
    // The second message of the bundle gets "421 … closing the connection", as a busy
    // provider answers; the session cannot carry the third.
    let server = ScriptedServer::start_closing_at(false, Some(2)).await;
    let app = Carteiro::start().await;
    app.use_server(1).await;
    let acme = app.create_company("acme").await;
    app.set_company_settings(&acme, own_server(server.port, json!({}), Some(300))).await;

    let ids = submit_batch(&app, &acme, one_each(&addresses("ocupado", 4))).await;
    let mut messages = Vec::new();
    for id in &ids {
        messages.push(app.wait_for_status(&acme, id, "sent", WAIT).await);
    }

    let seen = server.transactions();
    let codes: Vec<u16> = seen.iter().map(|t| t.code).collect();
    assert_eq!(
        codes,
        [250, 421, 250, 250, 250],
        "each message reached the server's dot once, the second twice: {seen:?}"
    );
    assert_eq!(story(&messages[0]), sent_once(), "{:#}", messages[0]);
    assert_eq!(
        story(&messages[1]),
        [(Some("deferred".to_owned()), Some(421)), (Some("sent".to_owned()), Some(250))],
        "{:#}",
        messages[1]
    );
    for message in &messages[2..] {
        assert_eq!(story(message), sent_once(), "after the 421 nothing more was tried on that session: {message:#}");
    }
}

// ---------------------------------------------------------------------------
// Each lane's session limit and rate.

#[tokio::test]
async fn a_lane_opens_no_more_sessions_than_its_connection_allows() {
    let mut one = SmtpPeer::start(&["--data-delay-s", "0.4"]).await;
    let mut four = SmtpPeer::start(&["--data-delay-s", "0.4"]).await;
    let app = Carteiro::start().await;
    app.use_server(1).await;
    let estreita = app.create_company("estreita").await;
    let larga = app.create_company("larga").await;
    app.set_company_settings(&estreita, own_server(one.port, json!({"max_sessions": 1}), None)).await;
    app.set_company_settings(&larga, own_server(four.port, json!({"max_sessions": 4}), None)).await;

    let serial = time_batch(&app, &estreita, &mut one, one_each(&addresses("estreita", 4))).await;
    let parallel = time_batch(&app, &larga, &mut four, one_each(&addresses("larga", 4))).await;
    eprintln!("timings: 4 messages, 0.4 s each: max_sessions 1 {serial:?}; max_sessions 4 {parallel:?}");
    assert!(serial >= Duration::from_millis(1500), "one session at a time cannot carry 4 × 0.4 s in {serial:?}");
    assert!(parallel < Duration::from_millis(1200), "four sessions at once carried 4 × 0.4 s in {parallel:?}");
}

#[tokio::test]
async fn a_lane_keeps_to_its_rate() {
    let mut limited = SmtpPeer::plain().await;
    let mut free = SmtpPeer::plain().await;
    let app = Carteiro::start().await;
    app.use_server(1).await;
    let contida = app.create_company("contida").await;
    let solta = app.create_company("solta").await;
    // 2 a second, in bursts of up to ten seconds' worth (20): the 26th message cannot leave before 3 s.
    app.set_company_settings(&contida, own_server(limited.port, json!({"rate_per_minute": 120}), None)).await;
    app.set_company_settings(&solta, own_server(free.port, json!({}), None)).await;

    let throttled = time_batch(&app, &contida, &mut limited, one_each(&addresses("contida", 26))).await;
    let unthrottled = time_batch(&app, &solta, &mut free, one_each(&addresses("solta", 26))).await;
    eprintln!("timings: 26 messages: rate_per_minute 120 {throttled:?}; no limit {unthrottled:?}");
    assert!(
        throttled >= Duration::from_millis(2800),
        "26 messages at 2 a second after a burst of 20 took only {throttled:?}"
    );
    assert!(throttled < Duration::from_secs(6), "26 messages at 2 a second after a burst of 20 took {throttled:?}");
    assert!(unthrottled < Duration::from_millis(1500), "26 messages without a rate took {unthrottled:?}");
}

// ---------------------------------------------------------------------------
// Cancelling, and what separates or shares a lane.

#[tokio::test]
async fn a_message_cancelled_while_it_waits_for_its_bundle_never_leaves() {
    let mut peer = SmtpPeer::plain().await;
    let app = Carteiro::start().await;
    app.use_server(peer.port).await;
    let acme = app.create_company("acme").await;
    app.set_company_settings(&acme, bundling(2000)).await;

    let ids = submit_batch(
        &app,
        &acme,
        vec![
            system_message(&["fica-1@example.com"]),
            system_message(&["desiste@example.com"]),
            system_message(&["fica-2@example.com"]),
        ],
    )
    .await;
    // The time is the point: the worker (woken by the submission, polling every
    // 50 ms) has claimed the bundle, which now waits in memory for its window.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for id in &ids {
        assert_eq!(app.message(&acme, id).await["status"], "queued", "waiting in a lane, still queued");
    }
    let (status, body) = cancel(&app, &acme, &ids[1]).await;
    assert_eq!(status, StatusCode::OK, "a message waiting for its bundle can be cancelled: {body}");
    assert_eq!(body["status"], "cancelled");

    let received = collect(&mut peer, 2, WAIT).await;
    assert_eq!(recipients_of(&received), ["fica-1@example.com", "fica-2@example.com"]);
    assert_eq!(sessions(&received).len(), 1, "{received:?}");
    for id in [&ids[0], &ids[2]] {
        app.wait_for_status(&acme, id, "sent", WAIT).await;
    }
    let cancelled = app.message(&acme, &ids[1]).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled:#}");
    assert!(attempts(&cancelled).is_empty(), "{cancelled:#}");
    assert!(peer.received().is_empty(), "the cancelled message never reached the server");
}

#[tokio::test]
async fn two_companies_on_one_server_are_two_lanes_and_never_share_a_session() {
    let mut peer = SmtpPeer::plain().await;
    let app = Carteiro::start().await;
    // Same connection, same policy, bundling on for everyone: only the company tells them apart.
    app.set_global(json!({
        "connection": {"host": "127.0.0.1", "port": peer.port, "timeout_s": 10},
        "policy": {"default_sender_enabled": true, "default_sender_name": "Plataforma",
                   "default_sender_address": "noreply@plataforma.example",
                   "bundle_enabled": true, "bundle_interval_ms": 500}
    }))
    .await;
    let acme = app.create_company("acme").await;
    let beta = app.create_company("beta").await;

    let acme_ids = submit_batch(&app, &acme, one_each(&addresses("acme", 4))).await;
    let beta_ids = submit_batch(&app, &beta, one_each(&addresses("beta", 4))).await;

    let received = collect(&mut peer, 8, WAIT).await;
    let mut by_session: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for m in &received {
        let company = m.rcpt_tos[0].split('-').next().unwrap().to_owned();
        by_session.entry(m.session).or_default().insert(company);
    }
    assert!(by_session.values().all(|c| c.len() == 1), "a session carried two companies' mail: {by_session:?}");
    assert_eq!(by_session.len(), 2, "each company's bundle came over its own session: {by_session:?}");
    for id in &acme_ids {
        app.wait_for_status(&acme, id, "sent", WAIT).await;
    }
    for id in &beta_ids {
        app.wait_for_status(&beta, id, "sent", WAIT).await;
    }
}

/// Ana (user 42 of acme) with a default sender of her own, and a system message
/// of acme, submitted together to one server: one lane. What went out: for each
/// recipient, the MAIL FROM the server saw and the envelope sender read back.
async fn envelopes_in_one_lane(bundle_ms: Option<u64>) -> Vec<(String, String, String)> {
    let mut peer = SmtpPeer::plain().await;
    let app = Carteiro::start().await;
    app.use_server(peer.port).await;
    let acme = app.create_company("acme").await;
    if let Some(ms) = bundle_ms {
        app.set_company_settings(&acme, bundling(ms)).await;
    }
    // A policy of her own; the connection stays the company's.
    let (status, body) = app
        .admin(
            Method::PUT,
            "/api/v1/companies/acme/users/42/settings",
            Some(json!({"policy": {"default_sender_enabled": true, "default_sender_name": "Ana",
                                   "default_sender_address": "ana.relay@acme.example"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let ids = submit_batch(
        &app,
        &acme,
        vec![user_message(&["da-ana@example.com"]), system_message(&["do-sistema@example.com"])],
    )
    .await;
    let received = collect(&mut peer, 2, WAIT).await;
    if bundle_ms.is_some() {
        assert_eq!(sessions(&received).len(), 1, "one lane, one bundle: {received:?}");
    }
    let mut seen = Vec::new();
    for (id, to) in ids.iter().zip(["da-ana@example.com", "do-sistema@example.com"]) {
        let message = app.wait_for_status(&acme, id, "sent", WAIT).await;
        let mail_from = received.iter().find(|m| m.rcpt_tos == [to]).unwrap().mail_from.clone();
        seen.push((to.to_owned(), mail_from, message["envelope_from"].as_str().unwrap_or_default().to_owned()));
    }
    seen
}

#[tokio::test]
async fn messages_of_different_users_in_one_lane_keep_their_own_envelope_sender() {
    let expected = |to: &str, from: &str| (to.to_owned(), from.to_owned(), from.to_owned());
    let want = vec![
        expected("da-ana@example.com", "ana.relay@acme.example"),
        expected("do-sistema@example.com", "noreply@plataforma.example"),
    ];
    let bundled = envelopes_in_one_lane(Some(300)).await;
    let unbundled = envelopes_in_one_lane(None).await;
    assert_eq!(
        (bundled, unbundled),
        (want.clone(), want),
        "(bundled, unbundled): each message goes out, and reads back, with the envelope sender resolved for its own user"
    );
}
