//! What every use case works with: the store, the master key, the delivery
//! settings and the worker's wake-up bell. Built once; cloned cheaply.

use std::sync::Arc;

use tokio::sync::Notify;

use crate::config::DeliveryConfig;
use crate::crypto::MasterKey;
use crate::delivery::tls::TlsConfigs;
use crate::store::{FinishAttempts, Grouped, InsertMessages, StartSending, Store};

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    /// Stores submissions, sharing transactions between concurrent callers.
    pub submissions: Grouped<InsertMessages>,
    /// Marks messages as being sent, sharing transactions between sessions.
    pub starts: Grouped<StartSending>,
    /// Records delivery attempts, sharing transactions between sessions.
    pub attempts: Grouped<FinishAttempts>,
    /// Bumped by every settings change, so that cached settings are read again.
    pub settings_version: Arc<std::sync::atomic::AtomicU64>,
    pub keys: Arc<MasterKey>,
    pub delivery: Arc<DeliveryConfig>,
    pub tls: Arc<TlsConfigs>,
    /// Rung after a submission, so the worker does not wait for its next poll.
    pub wake: Arc<Notify>,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, keys: MasterKey, delivery: DeliveryConfig) -> Self {
        Self {
            submissions: Grouped::start(InsertMessages(store.clone())),
            starts: Grouped::start(StartSending(store.clone())),
            attempts: Grouped::start(FinishAttempts(store.clone())),
            settings_version: Arc::default(),
            store,
            keys: Arc::new(keys),
            delivery: Arc::new(delivery),
            tls: Arc::new(TlsConfigs::default()),
            wake: Arc::new(Notify::new()),
        }
    }
}

/// Milliseconds since the Unix epoch: how times are stored.
pub fn now_ms() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos().div_euclid(1_000_000) as i64
}

/// RFC 3339 text of a stored time.
pub fn rfc3339(ms: i64) -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}
