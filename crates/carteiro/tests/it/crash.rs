//! A message accepted is never lost (SPEC §2, §5): not when carteiro is
//! killed in the middle of a run, not when it is asked to stop while
//! sending, not when it dies right after answering 202.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::app::system_message;
use crate::helpers::peers::free_port;
use crate::helpers::*;

/// The harness's `--lease-s`, `--shutdown-grace-s` and the default `max_sessions` of a connection
/// (one message per session without bundling).
const LEASE: Duration = Duration::from_secs(3);
const GRACE: Duration = Duration::from_secs(5);
const SESSIONS: usize = 4;

/// The company's messages in `status`, by id, with their subjects.
async fn messages_in(app: &Carteiro, company: &Company, status: &str) -> HashMap<String, String> {
    app.messages(company, &format!("status={status}&limit=1000"))
        .await
        .iter()
        .map(|m| (m["id"].as_str().unwrap().to_owned(), m["subject"].as_str().unwrap().to_owned()))
        .collect()
}

/// Waits until at least `count` of the company's messages are being sent; their subjects.
async fn wait_until_sending(app: &Carteiro, company: &Company, count: usize) -> HashSet<String> {
    eventually(Duration::from_secs(20), &format!("{count} messages to be sending"), || async move {
        let sending = messages_in(app, company, "sending").await;
        (sending.len() >= count).then(|| sending.into_values().collect())
    })
    .await
}

/// Expects every message to read `sent`.
async fn expect_all_sent(app: &Carteiro, company: &Company, ids: &HashMap<String, String>) {
    for id in ids.values() {
        app.wait_for_status(company, id, "sent", Duration::from_secs(10)).await;
    }
}

/// The log without its colours, to match `key=value` fields.
fn plain_logs(app: &Carteiro) -> String {
    let (logs, mut out) = (app.logs(), String::new());
    let mut chars = logs.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Expects the peer to receive nothing more for a little while.
async fn expect_nothing_more(peer: &mut SmtpPeer) {
    if let Ok(message) =
        tokio::time::timeout(Duration::from_millis(700), peer.next_message(Duration::from_secs(3600))).await
    {
        panic!("a message arrived after every message was sent: {:?}", message.header("Subject"));
    }
}

#[tokio::test]
async fn killed_in_the_middle_of_a_run_carteiro_delivers_every_message_after_restart_with_few_duplicates() {
    const COUNT: usize = 300;
    let mut peer = SmtpPeer::start(&["--data-delay-s", "0.08"]).await;
    let mut app = Carteiro::start().await;
    app.use_server(peer.port).await;
    let acme = app.create_company("acme").await;
    let ids = submit_batch(&app, &acme, &numbered_messages("crash test", COUNT)).await;

    let mut arrivals = Arrivals::default();
    arrivals.wait_for(&mut peer, 40, Duration::from_secs(30)).await;
    let in_flight_when_killed = messages_in(&app, &acme, "sending").await.len();
    app.kill().await;
    let before_the_crash = arrivals.distinct();
    assert!(before_the_crash < COUNT, "the run had already finished when carteiro was killed: make the server slower");

    app.restart().await;
    arrivals.wait_for(&mut peer, COUNT, Duration::from_secs(60)).await;
    expect_all_sent(&app, &acme, &ids).await;
    // Messages in flight at the crash may arrive again while the others finish: counted, then
    // nothing more once every message reads `sent`.
    arrivals.take(&mut peer);
    expect_nothing_more(&mut peer).await;

    eprintln!(
        "crash test: {before_the_crash} of {COUNT} delivered before SIGKILL, {in_flight_when_killed} being sent just before, \
         {} duplicates in {} deliveries",
        arrivals.duplicates(),
        arrivals.total()
    );
    assert_eq!(arrivals.distinct(), COUNT, "every message arrived");
    assert_eq!(arrivals.message_ids.len(), COUNT, "a message delivered again keeps its Message-ID");
    assert!(
        arrivals.duplicates() <= SESSIONS,
        "at most the {SESSIONS} messages in flight at the crash may arrive twice, but {} did",
        arrivals.duplicates()
    );
    assert!(
        app.logs().contains("took back messages whose worker stopped answering"),
        "the messages of the killed process came back when their lease ran out"
    );
}

/// Whether any of the company's messages is in `status`.
async fn any_in(app: &Carteiro, company: &Company, status: &str) -> bool {
    !app.messages(company, &format!("status={status}&limit=1")).await.is_empty()
}

/// The statuses of the given messages, read one by one (eight readers at a time).
async fn statuses(app: &Carteiro, company: &Company, ids: &[String]) -> HashMap<String, usize> {
    let mut readers = tokio::task::JoinSet::new();
    for chunk in ids.chunks(ids.len().div_ceil(8)) {
        let (http, base, key, chunk) = (app.http.clone(), app.base.clone(), company.key.clone(), chunk.to_vec());
        readers.spawn(async move {
            let mut seen = Vec::new();
            for id in chunk {
                let read: serde_json::Value = http
                    .get(format!("{base}/api/v1/messages/{id}"))
                    .bearer_auth(&key)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                seen.push(read["status"].as_str().unwrap_or("missing").to_owned());
            }
            seen
        });
    }
    let mut counts = HashMap::new();
    while let Some(seen) = readers.join_next().await {
        for status in seen.unwrap() {
            *counts.entry(status).or_default() += 1;
        }
    }
    counts
}

#[tokio::test]
async fn killed_ten_times_during_a_5000_message_run_carteiro_loses_nothing() {
    const ROUNDS: usize = 10;
    const PER_ROUND: usize = 500;
    let sink = SmtpSink::start().await;
    let mut app = Carteiro::start().await;
    app.use_server(sink.port).await;
    let acme = app.create_company("acme").await;

    let mut accepted = Vec::new();
    for round in 0..ROUNDS {
        let ids = submit_batch(&app, &acme, &numbered_messages(&format!("round {round}"), PER_ROUND)).await;
        accepted.extend(ids.into_values());
        // Delivery runs for a different while each round, then carteiro dies without warning.
        tokio::time::sleep(Duration::from_millis(100 + 60 * round as u64)).await;
        app.kill().await;
        app.restart().await;
    }
    let delivered_during_the_kills = sink.counted();

    eventually(Duration::from_secs(240), "every message to be finished", || async {
        for status in ["scheduled", "queued", "deferred", "sending"] {
            if any_in(&app, &acme, status).await {
                return None;
            }
        }
        Some(())
    })
    .await;
    let counts = statuses(&app, &acme, &accepted).await;
    assert_eq!(counts, HashMap::from([("sent".to_owned(), ROUNDS * PER_ROUND)]), "every accepted message was sent");
    assert!(sink.counted() >= ROUNDS * PER_ROUND, "the server counted {} messages", sink.counted());
    let duplicates = sink.counted() - ROUNDS * PER_ROUND;
    eprintln!(
        "kill loop: {delivered_during_the_kills} of {} delivered during the {ROUNDS} kills; {duplicates} delivered twice",
        ROUNDS * PER_ROUND
    );
    assert!(
        duplicates <= ROUNDS * SESSIONS,
        "at most the messages in flight at each kill may arrive twice, but {duplicates} did"
    );
}

#[tokio::test]
async fn on_sigterm_carteiro_finishes_the_messages_being_sent_and_exits_cleanly() {
    let mut peer = SmtpPeer::start(&["--data-delay-s", "1"]).await;
    let mut app = Carteiro::start().await;
    app.use_server(peer.port).await;
    let acme = app.create_company("acme").await;
    let ids = submit_batch(&app, &acme, &numbered_messages("graceful", 12)).await;
    let being_sent = wait_until_sending(&app, &acme, SESSIONS).await;

    let asked_to_stop = Instant::now();
    let status = app.terminate().await;
    let took = asked_to_stop.elapsed();

    assert!(status.success(), "carteiro exits with status 0 on SIGTERM, got {status}; its log:\n{}", app.logs());
    assert!(took < GRACE, "carteiro stopped in {took:?}, more than the grace period of {GRACE:?}");
    let mut arrivals = Arrivals::default();
    let finished = tokio::time::timeout(Duration::from_secs(5), async {
        for subject in &being_sent {
            while !arrivals.has(subject) {
                arrivals.take_next(&mut peer, Duration::from_secs(3600)).await;
            }
        }
    })
    .await;
    assert!(finished.is_ok(), "every message being sent at SIGTERM reached the server before the exit: {being_sent:?}");
    assert!(arrivals.distinct() < ids.len(), "some messages were still waiting at SIGTERM");
    assert!(app.logs().contains("worker stopping"), "{}", app.logs());
    assert!(
        !app.logs().contains("gave unfinished messages back"),
        "every send finished within the grace period:\n{}",
        app.logs()
    );

    app.restart().await;
    arrivals.wait_for(&mut peer, ids.len(), Duration::from_secs(30)).await;
    expect_all_sent(&app, &acme, &ids).await;
    expect_nothing_more(&mut peer).await;
    arrivals.take(&mut peer);
    assert_eq!(arrivals.duplicates(), 0, "a message finished before the exit is not sent again");
}

#[tokio::test]
async fn on_sigterm_the_sends_that_outlast_the_grace_period_are_in_doubt_and_retried() {
    let slow = SmtpPeer::start(&["--data-delay-s", "60"]).await;
    let mut app = Carteiro::start().await;
    app.use_server(slow.port).await;
    let acme = app.create_company("acme").await;
    let ids = submit_batch(&app, &acme, &numbered_messages("released", 3)).await;
    wait_until_sending(&app, &acme, 3).await;

    let asked_to_stop = Instant::now();
    let status = app.terminate().await;
    let took = asked_to_stop.elapsed();

    assert!(status.success(), "carteiro exits with status 0 on SIGTERM, got {status}; its log:\n{}", app.logs());
    assert!(
        took < GRACE + Duration::from_secs(2),
        "carteiro stopped in {took:?}, well beyond the grace period of {GRACE:?}"
    );
    // Their data went out and no answer came: the server may hold them. They are
    // recorded as deferred (in doubt), not silently put back as if never sent.
    let logs = plain_logs(&app);
    assert_eq!(
        logs.matches("status=deferred reply=network error at data_end: carteiro was stopping").count(),
        3,
        "{logs}"
    );

    // The slow server is gone; the next one, on the same port, answers at once.
    let port = slow.port.to_string();
    drop(slow);
    let mut peer = SmtpPeer::start(&["--port", &port]).await;
    app.restart().await;
    let mut arrivals = Arrivals::default();
    arrivals.wait_for(&mut peer, ids.len(), Duration::from_secs(20)).await;
    expect_all_sent(&app, &acme, &ids).await;
    assert!(
        !app.logs().contains("took back messages whose worker stopped answering"),
        "deferred messages are retried on their schedule, not recovered when a lease runs out:\n{}",
        app.logs()
    );
    for id in &ids {
        let attempts = app.message(&acme, id.1).await["attempts"].as_array().unwrap().len();
        assert_eq!(attempts, 2, "the attempt in doubt, then the delivery");
    }
}

#[tokio::test]
async fn a_message_answered_202_survives_a_kill_right_after() {
    let mut app = Carteiro::start().await;
    app.use_server(free_port()).await; // nothing listens there: nothing can be delivered
    let acme = app.create_company("acme").await;
    let mut ids = Vec::new();
    for i in 0..10 {
        let mut message = system_message(&[&format!("cliente{i}@example.com")]);
        message["subject"] = json!(format!("accepted {i}"));
        ids.push(app.send(&acme, message).await);
    }
    app.kill().await;

    app.restart().await;
    for (i, id) in ids.iter().enumerate() {
        let message = app.message(&acme, id).await;
        assert_eq!(message["subject"], format!("accepted {i}"));
        assert_eq!(message["recipients"][0]["address"], format!("cliente{i}@example.com"));
        let status = message["status"].as_str().unwrap();
        assert!(
            ["queued", "sending", "deferred"].contains(&status),
            "message {id} is {status}, not waiting for delivery"
        );
    }

    let mut peer = SmtpPeer::plain().await;
    app.use_server(peer.port).await;
    let mut arrivals = Arrivals::default();
    arrivals.wait_for(&mut peer, ids.len(), LEASE + Duration::from_secs(15)).await;
    for id in &ids {
        app.wait_for_status(&acme, id, "sent", Duration::from_secs(10)).await;
    }
}
