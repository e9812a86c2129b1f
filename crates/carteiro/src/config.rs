//! Process configuration: flags, each with its `CARTEIRO_…` environment
//! variable (a flag wins), checked at start with a sentence that says what to do.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, ensure};
use carteiro_core::message::Limits;
use carteiro_core::retry::RetryPolicy;

/// Where carteiro keeps its state.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// Data directory: the SQLite database and the master key file live here.
    #[arg(long, env = "CARTEIRO_DATA_DIR", default_value = "./carteiro-data")]
    pub data_dir: PathBuf,

    /// Database URL: `postgres://user:password@host:port/database` to share one PostgreSQL
    /// database between several instances. Default: the SQLite file `carteiro.db` in the data directory.
    #[arg(long, env = "CARTEIRO_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Most connections this instance opens to PostgreSQL (besides one that listens for wake-ups).
    #[arg(long, env = "CARTEIRO_DATABASE_MAX_CONNECTIONS", default_value_t = 16)]
    pub database_max_connections: u32,

    /// Longest a PostgreSQL statement may run before the server cancels it, in milliseconds; 0 for no limit.
    #[arg(long, env = "CARTEIRO_DATABASE_STATEMENT_TIMEOUT_MS", default_value_t = 30_000)]
    pub database_statement_timeout_ms: u64,
}

/// What a message may be, and how carteiro names itself in it.
#[derive(Debug, Clone, clap::Args)]
pub struct MessageArgs {
    /// Largest message accepted, in bytes, once built (attachments included).
    #[arg(long, env = "CARTEIRO_MAX_MESSAGE_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub max_message_bytes: usize,

    /// Most recipients (to, cc and bcc together) of one message.
    #[arg(long, env = "CARTEIRO_MAX_RECIPIENTS", default_value_t = 100)]
    pub max_recipients: usize,

    /// Name carteiro gives itself in EHLO and in Message-IDs. Default: this machine's host name.
    #[arg(long, env = "CARTEIRO_HOSTNAME")]
    pub hostname: Option<String>,
}

/// Timings and limits of the delivery worker.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// Delay before the first retry of a temporary failure, in seconds; it doubles after each failure.
    #[arg(long, env = "CARTEIRO_RETRY_FIRST_DELAY_S", default_value_t = 60.0)]
    pub retry_first_delay_s: f64,

    /// Longest delay between two retries, in seconds.
    #[arg(long, env = "CARTEIRO_RETRY_MAX_DELAY_S", default_value_t = 3600.0)]
    pub retry_max_delay_s: f64,

    /// A message not delivered this long after it became due fails, in seconds (default 5 days).
    #[arg(long, env = "CARTEIRO_MAX_QUEUE_LIFETIME_S", default_value_t = 432_000.0)]
    pub max_queue_lifetime_s: f64,

    /// How long a worker holds a message before another may take it over, in seconds.
    /// Renewed while the worker lives; a crashed worker's messages return after it.
    #[arg(long, env = "CARTEIRO_LEASE_S", default_value_t = 60.0)]
    pub lease_s: f64,

    /// How often the queue is checked for messages submitted by another process, in milliseconds.
    #[arg(long, env = "CARTEIRO_POLL_MS", default_value_t = 1000)]
    pub poll_ms: u64,

    /// Most SMTP sessions open at once, over all servers (each server's own limit is its
    /// connection's `max_sessions`).
    #[arg(long, env = "CARTEIRO_MAX_IN_FLIGHT", default_value_t = 64)]
    pub max_in_flight: usize,

    /// Most due messages of one company taken from the queue at a time, waiting in memory for a
    /// session: one company's backlog cannot crowd out the others.
    #[arg(long, env = "CARTEIRO_COMPANY_BACKLOG", default_value_t = 2000)]
    pub company_backlog: usize,

    /// Most due messages taken from the queue at a time, over all companies (memory stays bounded
    /// whatever the queue's length: bodies are read only when sent).
    #[arg(long, env = "CARTEIRO_MAX_BACKLOG", default_value_t = 20000)]
    pub max_backlog: usize,
}

/// Delivery webhooks: how their events are POSTed and retried.
#[derive(Debug, Clone, clap::Args)]
pub struct WebhookArgs {
    /// Delay before the first retry of a webhook delivery the endpoint did not accept, in seconds;
    /// it doubles after each failure.
    #[arg(long, env = "CARTEIRO_WEBHOOK_RETRY_FIRST_DELAY_S", default_value_t = 10.0)]
    pub webhook_retry_first_delay_s: f64,

    /// Longest delay between two retries of a webhook delivery, in seconds.
    #[arg(long, env = "CARTEIRO_WEBHOOK_RETRY_MAX_DELAY_S", default_value_t = 3600.0)]
    pub webhook_retry_max_delay_s: f64,

    /// A webhook event not accepted this long after it happened is given up, in seconds (default 24 hours).
    #[arg(long, env = "CARTEIRO_WEBHOOK_MAX_AGE_S", default_value_t = 86_400.0)]
    pub webhook_max_age_s: f64,

    /// Longest a webhook endpoint may take to answer, in seconds.
    #[arg(long, env = "CARTEIRO_WEBHOOK_TIMEOUT_S", default_value_t = 10.0)]
    pub webhook_timeout_s: f64,

    /// Most webhook requests in flight at once (they never take a delivery session's place).
    #[arg(long, env = "CARTEIRO_WEBHOOK_CONCURRENCY", default_value_t = 16)]
    pub webhook_concurrency: usize,
}

/// The webhook dispatcher's settings, checked.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub retry: RetryPolicy,
    pub timeout: Duration,
    pub concurrency: usize,
    /// How often the outbox is looked at for due events.
    pub poll: Duration,
}

/// Checks the webhook flags; `poll_ms` is the worker's `--poll-ms`, which the dispatcher shares.
pub fn webhook_config(args: &WebhookArgs, poll_ms: u64) -> anyhow::Result<WebhookConfig> {
    ensure!(
        (1..=1024).contains(&args.webhook_concurrency),
        "--webhook-concurrency must be between 1 and 1024, got {}",
        args.webhook_concurrency
    );
    let retry = RetryPolicy {
        first_delay: seconds("webhook-retry-first-delay-s", args.webhook_retry_first_delay_s, 0.01)?,
        max_delay: seconds("webhook-retry-max-delay-s", args.webhook_retry_max_delay_s, 0.01)?,
        max_lifetime: seconds("webhook-max-age-s", args.webhook_max_age_s, 1.0)?,
    };
    ensure!(
        retry.max_delay >= retry.first_delay,
        "--webhook-retry-max-delay-s must not be below --webhook-retry-first-delay-s"
    );
    let timeout = seconds("webhook-timeout-s", args.webhook_timeout_s, 0.1)?;
    ensure!(timeout <= Duration::from_secs(300), "--webhook-timeout-s must be at most 300 seconds");
    Ok(WebhookConfig {
        retry,
        timeout,
        concurrency: args.webhook_concurrency,
        poll: Duration::from_millis(poll_ms.max(10)),
    })
}

impl Default for WorkerArgs {
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            args: WorkerArgs,
        }
        <Only as clap::Parser>::parse_from(["carteiro"]).args
    }
}

impl Default for MessageArgs {
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Only {
            #[command(flatten)]
            args: MessageArgs,
        }
        <Only as clap::Parser>::parse_from(["carteiro"]).args
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,

    /// Address of the HTTP API and console.
    #[arg(long, env = "CARTEIRO_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub messages: MessageArgs,

    #[command(flatten)]
    pub worker: WorkerArgs,

    #[command(flatten)]
    pub webhooks: WebhookArgs,

    /// A TOML file of settings levels (as `config export` writes it) applied on start, unless it
    /// is the same file as last time: values changed since in the console or the API are then kept.
    #[arg(long, env = "CARTEIRO_CONFIG")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub smtp: crate::smtp_listener::SmtpArgs,

    /// On SIGINT/SIGTERM, how long to let messages being sent finish before giving them back to the queue, in seconds.
    #[arg(long, env = "CARTEIRO_SHUTDOWN_GRACE_S", default_value_t = 10.0)]
    pub shutdown_grace_s: f64,
}

/// Delivery settings, checked.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    pub max_message_bytes: usize,
    pub limits: Limits,
    pub retry: RetryPolicy,
    pub lease: Duration,
    pub poll: Duration,
    pub max_in_flight: usize,
    pub company_backlog: usize,
    pub max_backlog: usize,
    pub hostname: String,
}

fn seconds(name: &str, value: f64, min: f64) -> anyhow::Result<Duration> {
    ensure!(value.is_finite() && value >= min, "--{name} must be at least {min} seconds, got {value}");
    Ok(Duration::from_secs_f64(value))
}

/// Checks the flags of message limits and of the worker together.
pub fn delivery_config(messages: &MessageArgs, worker: &WorkerArgs) -> anyhow::Result<DeliveryConfig> {
    ensure!(
        messages.max_message_bytes >= 1024,
        "--max-message-bytes must be at least 1024, got {}",
        messages.max_message_bytes
    );
    ensure!(
        (1..=10_000).contains(&messages.max_recipients),
        "--max-recipients must be between 1 and 10000, got {}",
        messages.max_recipients
    );
    ensure!(worker.max_in_flight >= 1, "--max-in-flight must be at least 1, got 0");
    ensure!(worker.company_backlog >= 1, "--company-backlog must be at least 1, got 0");
    ensure!(worker.max_backlog >= 1, "--max-backlog must be at least 1, got 0");
    ensure!(worker.poll_ms >= 10, "--poll-ms must be at least 10, got {}", worker.poll_ms);
    let retry = RetryPolicy {
        first_delay: seconds("retry-first-delay-s", worker.retry_first_delay_s, 0.01)?,
        max_delay: seconds("retry-max-delay-s", worker.retry_max_delay_s, 0.01)?,
        max_lifetime: seconds("max-queue-lifetime-s", worker.max_queue_lifetime_s, 0.01)?,
    };
    ensure!(retry.max_delay >= retry.first_delay, "--retry-max-delay-s must not be below --retry-first-delay-s");
    let hostname = match &messages.hostname {
        Some(h) => h.clone(),
        None => gethostname::gethostname().to_string_lossy().into_owned(),
    };
    if carteiro_core::settings::Host::parse("hostname", &hostname).is_err() {
        bail!("this machine's host name {hostname:?} cannot be used in EHLO; set --hostname");
    }
    Ok(DeliveryConfig {
        max_message_bytes: messages.max_message_bytes,
        limits: Limits { max_recipients: messages.max_recipients },
        retry,
        lease: seconds("lease-s", worker.lease_s, 1.0)?,
        poll: Duration::from_millis(worker.poll_ms),
        max_in_flight: worker.max_in_flight,
        company_backlog: worker.company_backlog,
        max_backlog: worker.max_backlog,
        hostname,
    })
}
