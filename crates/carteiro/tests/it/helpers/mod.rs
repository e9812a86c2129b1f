//! What the tests stand on: a carteiro process, real SMTP peers, certificates.

pub mod app;
pub mod arrivals;
pub mod certs;
pub mod console;
pub mod oauth;
pub mod peers;
pub mod postfix;
pub mod postgres;
pub mod proxies;
pub mod store;

pub use app::{Carteiro, Company, Database};
pub use arrivals::{Arrivals, numbered_messages, submit_batch};
pub use certs::TestCertificates;
pub use oauth::{TokenEndpoint, TokenOptions};
pub use peers::{PeerMessage, SilentServer, SmtpPeer, SmtpSink};
pub use postfix::Postfix;
pub use proxies::{HttpProxy, SocksProxy};

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;

/// An HTTP client for the tests. carteiro's HTTP client brings its own TLS
/// settings, so the process has no default TLS provider until one is chosen here.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// Waits for `check` to return `Some`, trying every few milliseconds, up to `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(started.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs Test connection as the platform administrator and expects an answer (200).
pub async fn test_connection(app: &Carteiro, request: Value) -> Value {
    let (status, body) = app.admin(Method::POST, "/api/v1/test-connection", Some(request)).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
    body
}

pub fn step_names(report: &Value) -> Vec<&str> {
    report["steps"]
        .as_array()
        .expect("steps is a list")
        .iter()
        .map(|s| s["step"].as_str().expect("each step has a name"))
        .collect()
}

/// The step of that name; the last one when it happens twice (EHLO before and after STARTTLS).
pub fn step<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|s| s["step"] == name)
        .unwrap_or_else(|| panic!("no {name} step in the report: {report:#}"))
}
