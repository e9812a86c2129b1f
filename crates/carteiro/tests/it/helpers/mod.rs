//! What the tests stand on: a carteiro process, real SMTP peers, certificates.

pub mod app;
pub mod certs;
pub mod peers;

pub use app::{Carteiro, Company};
pub use certs::TestCertificates;
pub use peers::{PeerMessage, SilentServer, SmtpPeer, SmtpSink};

use std::time::{Duration, Instant};

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
