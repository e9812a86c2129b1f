//! What every use case works with: the store, the master key, the delivery
//! settings and the worker's wake-up bell. Built once; cloned cheaply.

use std::sync::Arc;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use carteiro_core::id::CompanySlug;
use tokio::sync::Notify;

use crate::cache::Cache;
use crate::service::settings::Resolved;

/// How long another process's configuration change may take to be seen here.
const CACHE_TTL: Duration = Duration::from_secs(1);

use crate::config::DeliveryConfig;
use crate::crypto::MasterKey;
use crate::delivery::Means;
use crate::delivery::oauth::Tokens;
use crate::delivery::tls::TlsConfigs;
use crate::service::throttle::LoginThrottle;
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
    /// Bumped by every configuration change (settings, API keys), so that cached copies are read again.
    pub config_version: Arc<AtomicU64>,
    /// Resolved settings of (company, user), read on every submission and delivery.
    pub resolved: Arc<Cache<(String, Option<String>), Arc<Resolved>>>,
    /// API key (hashed) → company.
    pub api_keys: Arc<Cache<String, CompanySlug>>,
    pub keys: Arc<MasterKey>,
    pub delivery: Arc<DeliveryConfig>,
    pub tls: Arc<TlsConfigs>,
    /// XOAUTH2 tokens obtained from token endpoints, shared by every session.
    pub tokens: Arc<Tokens>,
    /// Rung after a submission, so the worker does not wait for its next poll.
    pub wake: Arc<Notify>,
    /// Wrong passwords lately, by user name.
    pub login_throttle: Arc<LoginThrottle>,
    /// Renders `/metrics`; only `serve` records metrics.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, keys: MasterKey, delivery: DeliveryConfig) -> Self {
        Self {
            submissions: Grouped::start(InsertMessages(store.clone())),
            starts: Grouped::start(StartSending(store.clone())),
            attempts: Grouped::start(FinishAttempts(store.clone())),
            config_version: Arc::default(),
            resolved: Arc::new(Cache::new(CACHE_TTL)),
            api_keys: Arc::new(Cache::new(CACHE_TTL)),
            store,
            keys: Arc::new(keys),
            delivery: Arc::new(delivery),
            tls: Arc::new(TlsConfigs::default()),
            tokens: Arc::new(Tokens::default()),
            wake: Arc::new(Notify::new()),
            login_throttle: Arc::default(),
            metrics: None,
        }
    }
}

impl AppState {
    /// Says that the configuration changed: cached copies are read again.
    pub fn configuration_changed(&self) {
        self.config_version.fetch_add(1, Ordering::Release);
    }

    pub fn config_version(&self) -> u64 {
        self.config_version.load(Ordering::Acquire)
    }

    /// What delivery needs beside the settings.
    pub fn means(&self) -> Means<'_> {
        Means { tls: &self.tls, tokens: &self.tokens, hostname: &self.delivery.hostname }
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
