//! Prometheus metrics at `/metrics`: messages accepted and their outcomes by
//! company and transport, attempt latency, bundle sizes, SMTP reply classes,
//! and, read from the store at each scrape, the queue's depth and the age of
//! its oldest due message. The recorder is process-wide: `serve` installs it;
//! elsewhere (the CLI, unit tests) the counters go nowhere.

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::state::{AppState, now_ms};

/// Seconds: from a quick local hand-off to a slow server at its timeout.
const LATENCY_BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0];
/// Messages a session carried.
const BUNDLE_BUCKETS: [f64; 9] = [1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0];

/// Installs the process-wide recorder; its handle renders the scrape.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full("carteiro_attempt_duration_seconds".into()),
            &LATENCY_BUCKETS,
        )?
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full("carteiro_bundle_size".into()),
            &BUNDLE_BUCKETS,
        )?
        .install_recorder()?;
    describe();
    Ok(handle)
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!("carteiro_messages_accepted_total", "Messages accepted (202), by company and transport.");
    describe_counter!(
        "carteiro_attempts_total",
        "Delivery attempts recorded, by company, transport and resulting status."
    );
    describe_counter!("carteiro_smtp_replies_total", "Final replies of attempts, by class (2xx, 4xx, 5xx, none).");
    describe_histogram!("carteiro_attempt_duration_seconds", "How long an attempt took, by transport.");
    describe_histogram!("carteiro_bundle_size", "Messages carried by one session.");
    describe_gauge!("carteiro_queue_messages", "Messages not finished, by status.");
    describe_gauge!(
        "carteiro_oldest_due_age_seconds",
        "How long the oldest message due and not delivered yet has been waiting, retries included (0 when none)."
    );
}

/// The transport named by an attempt's destination (`host:port`, `sendmail:…`, `pickup:…`, `capture`).
pub fn transport_of(destination: &str) -> &'static str {
    match destination.split(':').next() {
        Some("sendmail") => "sendmail",
        Some("pickup") => "pickup",
        Some("capture") => "capture",
        _ => "smtp",
    }
}

pub fn accepted(company: &str, transport: &'static str, count: usize) {
    counter!("carteiro_messages_accepted_total", "company" => company.to_owned(), "transport" => transport)
        .increment(count as u64);
}

/// One recorded attempt.
pub fn attempt(company: &str, destination: &str, status: &str, code: Option<i64>, ms: i64) {
    let transport = transport_of(destination);
    counter!("carteiro_attempts_total", "company" => company.to_owned(), "transport" => transport, "status" => status.to_owned())
        .increment(1);
    let class = match code {
        Some(200..=299) => "2xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        _ => "none",
    };
    counter!("carteiro_smtp_replies_total", "class" => class).increment(1);
    histogram!("carteiro_attempt_duration_seconds", "transport" => transport).record(ms.max(0) as f64 / 1000.0);
}

pub fn bundle(size: usize) {
    histogram!("carteiro_bundle_size").record(size as f64);
}

/// The scrape: the queue read from the store now, then every metric.
pub async fn render(state: &AppState, handle: &PrometheusHandle) -> anyhow::Result<String> {
    let now = now_ms();
    let stats = state.store.queue_stats(now).await?;
    for status in ["scheduled", "queued", "deferred", "sending"] {
        let count = stats.by_status.iter().find(|(s, _)| s == status).map_or(0, |(_, n)| *n);
        gauge!("carteiro_queue_messages", "status" => status).set(count as f64);
    }
    let age = stats.oldest_due_at.map_or(0, |due| (now - due).max(0));
    gauge!("carteiro_oldest_due_age_seconds").set(age as f64 / 1000.0);
    handle.run_upkeep();
    Ok(handle.render())
}
