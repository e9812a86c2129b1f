//! `/metrics` (Prometheus text): the counters move during a run and match
//! what the API says of each message; the queue gauges follow the queue.

use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(30);

async fn scrape(app: &Carteiro) -> String {
    let response = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    response.text().await.unwrap()
}

/// The sum of the samples of `metric` whose labels include every `labels` pair.
fn value(text: &str, metric: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| line.split(['{', ' ']).next() == Some(metric))
        .filter(|line| labels.iter().all(|(k, v)| line.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn the_counters_move_during_a_run_and_match_the_api() {
    const COUNT: usize = 20;
    let mut peer = SmtpPeer::start(&["--data-delay-s", "0.1", "--rcpt-reply", "recusado@example.com=550"]).await;
    let app = Carteiro::start().await;
    app.use_server(peer.port).await;
    let acme = app.create_company("acme").await;

    let mut messages = numbered_messages("metrics", COUNT);
    messages[0].1["to"] = serde_json::json!(["recusado@example.com"]);
    let ids = submit_batch(&app, &acme, &messages).await;

    let early = scrape(&app).await;
    assert_eq!(value(&early, "carteiro_messages_accepted_total", &[("company", "acme"), ("transport", "smtp")]), 20.0);
    let waiting = value(&early, "carteiro_queue_messages", &[]);
    let sent_early = value(&early, "carteiro_attempts_total", &[("status", "sent")]);
    assert!(waiting > 0.0 && sent_early < 19.0, "caught in the middle: {waiting} waiting, {sent_early} sent\n{early}");

    let mut arrivals = Arrivals::default();
    arrivals.wait_for(&mut peer, COUNT - 1, WAIT).await;
    let mut sent = 0;
    let mut failed = 0;
    for id in ids.values() {
        let message = eventually(WAIT, "every message to finish", || async {
            let m = app.message(&acme, id).await;
            (m["status"] == "sent" || m["status"] == "failed").then_some(m)
        })
        .await;
        if message["status"] == "sent" { sent += 1 } else { failed += 1 }
    }
    assert_eq!((sent, failed), (19, 1));

    let late = scrape(&app).await;
    let by_status = |status| {
        value(&late, "carteiro_attempts_total", &[("company", "acme"), ("transport", "smtp"), ("status", status)])
    };
    assert_eq!((by_status("sent"), by_status("failed")), (sent as f64, failed as f64), "{late}");
    assert_eq!(value(&late, "carteiro_smtp_replies_total", &[("class", "2xx")]), sent as f64);
    assert_eq!(value(&late, "carteiro_smtp_replies_total", &[("class", "5xx")]), 1.0);
    assert_eq!(value(&late, "carteiro_attempt_duration_seconds_count", &[("transport", "smtp")]), 20.0, "{late}");
    assert!(value(&late, "carteiro_attempt_duration_seconds_sum", &[]) >= 19.0 * 0.1, "each took the server's 0.1 s");
    assert_eq!(value(&late, "carteiro_bundle_size_sum", &[]), 20.0, "{late}");
    assert_eq!(value(&late, "carteiro_queue_messages", &[]), 0.0, "{late}");
    assert_eq!(value(&late, "carteiro_oldest_due_age_seconds", &[]), 0.0);
}

#[tokio::test]
async fn the_oldest_due_message_ages_while_its_server_is_down() {
    let app = Carteiro::start().await;
    app.use_server(peers::free_port()).await;
    let acme = app.create_company("acme").await;
    app.send(&acme, app::system_message(&["ana@example.com"])).await;
    eventually(WAIT, "the message to wait", || async {
        let text = scrape(&app).await;
        (value(&text, "carteiro_queue_messages", &[("status", "deferred")]) == 1.0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let text = scrape(&app).await;
    let age = value(&text, "carteiro_oldest_due_age_seconds", &[]);
    assert!(age >= 1.5, "the deferred message has waited since it was submitted: {age}\n{text}");
}
