//! Several instances on one PostgreSQL database (SPEC §6): one queue, every
//! message delivered once, an instance that dies has its messages taken
//! over, and a database restart loses nothing. The multi-instance tests need
//! the suite to run on PostgreSQL (`CARTEIRO_TEST_DATABASE_URL`); the restart
//! test runs a PostgreSQL server of its own.

use std::time::Duration;

use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::postgres::PrivatePostgres;
use crate::helpers::*;

/// The default `max_sessions` of a connection: what one instance can have in flight on one lane.
const SESSIONS: usize = 4;

fn master_key() -> String {
    base64::engine::general_purpose::STANDARD.encode([7u8; 32])
}

/// `count` instances of one installation on the suite's PostgreSQL database, or
/// none when the suite runs on SQLite (one process per data directory there).
async fn instances(count: usize) -> Vec<Carteiro> {
    if !store::on_postgres() {
        eprintln!("the suite runs on SQLite: several instances need PostgreSQL (CARTEIRO_TEST_DATABASE_URL)");
        return Vec::new();
    }
    let key = master_key();
    let env = [("CARTEIRO_MASTER_KEY", key.as_str())];
    let first = Carteiro::start_with(&[], &env).await;
    let mut all = vec![];
    for _ in 1..count {
        all.push(Carteiro::start_on(Database::SharedWith(first.data_dir()), &[], &env).await);
    }
    all.insert(0, first);
    all
}

/// Submits `messages` in batches, each batch to the next instance in turn.
async fn submit_across(instances: &[Carteiro], company: &Company, messages: &[(String, serde_json::Value)]) {
    for (i, batch) in messages.chunks(1000).enumerate() {
        submit_batch(&instances[i % instances.len()], company, batch).await;
    }
}

/// How many attempts each instance recorded, from its log.
fn attempts_by_instance(instances: &[Carteiro]) -> Vec<usize> {
    instances.iter().map(|app| app.logs().matches("delivery attempt").count()).collect()
}

#[tokio::test]
async fn three_instances_on_one_database_deliver_ten_thousand_messages_exactly_once() {
    const COUNT: usize = 10_000;
    let instances = instances(3).await;
    let Some(first) = instances.first() else { return };
    let mut peer = SmtpPeer::start(&["--pipelining"]).await;
    first
        .set_global(json!({
            "connection": {"host": "127.0.0.1", "port": peer.port, "timeout_s": 10},
            "policy": {"default_sender_enabled": true, "default_sender_address": "noreply@plataforma.example",
                       "bundle_enabled": true, "bundle_interval_ms": 200}
        }))
        .await;
    let acme = first.create_company("acme").await;

    submit_across(&instances, &acme, &numbered_messages("scale", COUNT)).await;
    let mut arrivals = Arrivals::default();
    arrivals.wait_for(&mut peer, COUNT, Duration::from_secs(240)).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    arrivals.take(&mut peer);

    assert_eq!((arrivals.distinct(), arrivals.duplicates()), (COUNT, 0), "every message exactly once");
    let share = attempts_by_instance(&instances);
    assert!(share.iter().all(|&n| n > 0), "every instance delivered a share: {share:?}");
    // A message sent again after a lease ran out would show as a further attempt, even if late.
    assert_eq!(share.iter().sum::<usize>(), COUNT, "one attempt per message: {share:?}");
}

#[tokio::test]
async fn an_instance_killed_in_the_middle_leaves_only_its_messages_in_flight_to_be_sent_again() {
    const COUNT: usize = 2_000;
    let mut instances = instances(3).await;
    if instances.is_empty() {
        return;
    }
    let mut peer = SmtpPeer::start(&["--data-delay-s", "0.01"]).await;
    instances[0].use_server(peer.port).await;
    let acme = instances[0].create_company("acme").await;

    submit_across(&instances, &acme, &numbered_messages("takeover", COUNT)).await;
    let mut arrivals = Arrivals::default();
    arrivals.wait_for(&mut peer, COUNT / 4, Duration::from_secs(60)).await;
    instances[1].kill().await;

    arrivals.wait_for(&mut peer, COUNT, Duration::from_secs(120)).await;
    let survivors = [&instances[0], &instances[2]];
    let took_back = |app: &&Carteiro| app.logs().contains("took back messages whose worker stopped answering");
    let held =
        eventually(Duration::from_secs(20), "a survivor to take the killed instance's messages back", || async {
            survivors.iter().any(took_back).then_some(())
        });
    held.await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    arrivals.take(&mut peer);
    assert_eq!(arrivals.distinct(), COUNT, "every message delivered");
    assert!(
        arrivals.duplicates() <= SESSIONS,
        "only what the killed instance had in flight (at most {SESSIONS} sessions) went again: {} duplicates",
        arrivals.duplicates()
    );
}

#[tokio::test]
async fn a_database_restart_refuses_submissions_meanwhile_and_loses_nothing_accepted() {
    let postgres = PrivatePostgres::start();
    let mut peer = SmtpPeer::plain().await;
    let app = Carteiro::start_on(Database::Url(postgres.url()), &[], &[]).await;
    app.use_server(peer.port).await;
    let acme = app.create_company("acme").await;
    let mut messages = numbered_messages("restart", 22).into_iter().map(|(_, m)| m);
    let mut accepted = Vec::new();
    for message in messages.by_ref().take(20) {
        accepted.push(app.send(&acme, message).await);
    }

    postgres.stop();
    let (status, body) = app.submit(&acme, messages.next().unwrap()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let said = body["error"]["message"].as_str().unwrap_or_default();
    assert!(said.contains("database"), "the error says what is wrong: {body}");
    let (status, _) = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "not ready without its database");

    postgres.up();
    // No restart of carteiro: it reconnects by itself.
    let last = messages.next().unwrap();
    let after = eventually(Duration::from_secs(30), "submissions to be accepted again", || async {
        let (status, body) = app.submit(&acme, last.clone()).await;
        (status == StatusCode::ACCEPTED).then(|| body["id"].as_str().unwrap().to_owned())
    })
    .await;
    accepted.push(after);
    for id in &accepted {
        app.wait_for_status(&acme, id, "sent", Duration::from_secs(30)).await;
    }
    let mut arrivals = Arrivals::default();
    arrivals.wait_for(&mut peer, accepted.len(), Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    arrivals.take(&mut peer);
    assert_eq!(arrivals.duplicates(), 0);
    assert!(!arrivals.has("restart 020"), "the message refused during the outage was not half stored");
}

#[tokio::test]
async fn a_lanes_rate_holds_across_instances() {
    let mut instances = instances(2).await;
    if instances.is_empty() {
        return;
    }
    let mut peer = SmtpPeer::plain().await;
    instances[0].use_server(peer.port).await;
    let acme = instances[0].create_company("acme").await;
    // 2 a second, in bursts of up to 20.
    instances[0]
        .set_company_settings(
            &acme,
            json!({"connection": {"enabled": true, "host": "127.0.0.1", "port": peer.port, "timeout_s": 10,
                                  "rate_per_minute": 120}}),
        )
        .await;
    let messages = numbered_messages("rate", 30);
    let mut arrivals = Arrivals::default();

    // The second instance alone sends 15: the lane's burst is three-quarters spent.
    instances[0].kill().await;
    submit_batch(&instances[1], &acme, &messages[..15]).await;
    arrivals.wait_for(&mut peer, 15, Duration::from_secs(20)).await;
    let spent = std::time::Instant::now();
    instances[1].kill().await;

    // The first instance, started afresh, finds the same bucket: 5 left, plus 2 a second
    // since, then 2 a second. A bucket of its own would send all 15 at once.
    instances[0].restart().await;
    let started = std::time::Instant::now();
    let left = 5.0 + 2.0 * spent.elapsed().as_secs_f64();
    assert!(left < 13.0, "the restart took too long to tell a shared bucket from its own: {left} tokens");
    submit_batch(&instances[0], &acme, &messages[15..]).await;
    arrivals.wait_for(&mut peer, 30, Duration::from_secs(30)).await;
    let took = started.elapsed();
    let at_least = Duration::from_secs_f64(((15.0 - left) / 2.0 - 0.5).max(0.0));
    eprintln!(
        "the last 15 messages at 120 a minute, after another instance's 15, took {took:?} (at least {at_least:?})"
    );
    assert!(took >= at_least, "the rate was not shared: {took:?}, expected at least {at_least:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(arrivals.duplicates(), 0);
}
