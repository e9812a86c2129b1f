//! Building carteiro from its configuration, and running it until stopped.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{DeliveryConfig, ServeArgs, StoreArgs};
use crate::crypto::MasterKey;
use crate::service::auth;
use crate::service::config_file::{self, OnStart};
use crate::smtp_listener::SmtpListener;
use crate::state::AppState;
use crate::worker::Worker;
use crate::worker::webhooks::Dispatcher;

/// The state every command works with: store, master key, delivery settings.
pub async fn app_state(
    args: &StoreArgs,
    master_key: Option<&str>,
    delivery: DeliveryConfig,
) -> anyhow::Result<AppState> {
    let store = crate::store::open(args).await?;
    // The master key's file lives in the data directory, whichever the database.
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create the data directory {}", args.data_dir.display()))?;
    let may_create_key = !store.has_sealed_secrets().await.map_err(anyhow::Error::from)?;
    let keys = MasterKey::load_or_create(master_key, &args.data_dir, may_create_key)?;
    if master_key.is_none() && args.database_url.is_some() {
        // The key file is this instance's own; other instances would seal with theirs.
        tracing::warn!(
            "the master key comes from {}: every instance on this database must use the same key (set CARTEIRO_MASTER_KEY on each)",
            args.data_dir.display()
        );
    }
    Ok(AppState::new(store, keys, delivery))
}

/// A built server, listening, not yet serving.
pub struct App {
    pub state: AppState,
    listener: TcpListener,
    /// The SMTP submission listener, when `--smtp-listen` asks for one.
    smtp: Option<SmtpListener>,
    /// Sends the delivery webhooks' events.
    webhooks: Dispatcher,
    grace: Duration,
    /// The first administrator's password when carteiro generated it: to show once.
    pub generated_admin_password: Option<String>,
}

impl App {
    pub async fn build(
        args: &ServeArgs,
        master_key: Option<&str>,
        admin_password: Option<&str>,
    ) -> anyhow::Result<Self> {
        let delivery = crate::config::delivery_config(&args.messages, &args.worker)?;
        let webhooks = crate::config::webhook_config(&args.webhooks, args.worker.poll_ms)?;
        let mut state = app_state(&args.store, master_key, delivery).await?;
        state.metrics = Some(crate::metrics::install().context("cannot start the metrics")?);
        let generated_admin_password =
            auth::ensure_first_admin(&state, admin_password).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        if let Some(path) = &args.config {
            apply_config_file(&state, path).await?;
        }
        let listener =
            TcpListener::bind(args.listen).await.with_context(|| format!("cannot listen on {}", args.listen))?;
        anyhow::ensure!(
            args.shutdown_grace_s.is_finite() && args.shutdown_grace_s >= 0.0,
            "--shutdown-grace-s must not be negative"
        );
        let smtp = match args.smtp.smtp_listen {
            Some(address) => Some(SmtpListener::bind(&args.smtp, address, &args.store.data_dir, state.clone()).await?),
            None => None,
        };
        let webhooks = Dispatcher::new(state.clone(), webhooks)?;
        Ok(Self {
            state,
            listener,
            smtp,
            webhooks,
            grace: Duration::from_secs_f64(args.shutdown_grace_s),
            generated_admin_password,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    pub fn smtp_addr(&self) -> Option<SocketAddr> {
        self.smtp.as_ref().map(SmtpListener::local_addr)
    }

    /// Serves the API and runs the worker until `shutdown` fires; then stops
    /// accepting, lets sends finish or gives them back, and returns.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let worker = tokio::spawn(Worker::new(self.state.clone()).run(shutdown.clone(), self.grace));
        // Its own task: a slow or dead endpoint never holds mail delivery.
        let webhooks = tokio::spawn(self.webhooks.run(shutdown.clone(), self.grace));
        // Other instances on the same database ring this worker's bell (PostgreSQL's NOTIFY).
        let (store, wake, stop) = (self.state.store.clone(), self.state.wake.clone(), shutdown.clone());
        let wakeups = tokio::spawn(async move { store.relay_wakeups(wake, stop).await });
        let smtp = self.smtp.map(|smtp| tokio::spawn(smtp.run(shutdown.clone())));
        let router = crate::api::router(self.state.clone()).layer(tower_http::trace::TraceLayer::new_for_http());
        tracing::info!(address = %self.listener.local_addr().expect("bound"), "carteiro is listening");
        axum::serve(self.listener, router)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .await
            .context("the HTTP server failed")?;
        if let Some(smtp) = smtp {
            smtp.await.context("the SMTP listener panicked")?;
        }
        worker.await.context("the worker panicked")?;
        webhooks.await.context("the webhook dispatcher panicked")?;
        wakeups.await.context("the wake-up listener panicked")?;
        tracing::info!("carteiro stopped");
        Ok(())
    }
}

/// `serve --config`: applies the file unless it is the one applied last time.
async fn apply_config_file(state: &AppState, path: &std::path::Path) -> anyhow::Result<()> {
    match config_file::apply_on_start(state, path).await? {
        OnStart::Unchanged => tracing::info!(
            file = %path.display(),
            "the configuration file is the one applied before: the settings as they are now are kept"
        ),
        OnStart::Applied { changes, summary } => {
            tracing::info!(file = %path.display(), changes, "applied the configuration file ({summary} changed)")
        }
    }
    Ok(())
}

/// Fires on SIGINT or SIGTERM.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let fire = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        tracing::info!("stopping: finishing the messages being sent");
        fire.cancel();
    });
    token
}
