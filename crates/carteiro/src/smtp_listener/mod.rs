//! The SMTP submission listener (`--smtp-listen`, SPEC §5): applications that
//! can only speak SMTP hand their mail to carteiro, logging in with a
//! company's API key. Each message goes through the same submit path as the
//! API's (`service::submit`): same sender rules, same queue, same idempotency.

mod message;
mod session;
mod tls;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::state::AppState;

#[derive(Debug, Clone, clap::Args)]
pub struct SmtpArgs {
    /// Address of the SMTP submission listener (off unless given), e.g. 0.0.0.0:587.
    #[arg(long, env = "CARTEIRO_SMTP_LISTEN")]
    pub smtp_listen: Option<SocketAddr>,
    /// The listener's TLS certificate chain (PEM); without it carteiro makes a self-signed one in the data directory.
    #[arg(long, env = "CARTEIRO_SMTP_TLS_CERT", requires = "smtp_tls_key")]
    pub smtp_tls_cert: Option<PathBuf>,
    /// The private key of --smtp-tls-cert (PEM).
    #[arg(long, env = "CARTEIRO_SMTP_TLS_KEY", requires = "smtp_tls_cert")]
    pub smtp_tls_key: Option<PathBuf>,
    /// Allow AUTH without TLS for clients on the loopback interface (never from elsewhere).
    #[arg(long, env = "CARTEIRO_SMTP_ALLOW_PLAIN_AUTH_ON_LOOPBACK")]
    pub smtp_allow_plain_auth_on_loopback: bool,
    /// Most sessions open at once from one IP address; more are told to come back later (421).
    #[arg(long, env = "CARTEIRO_SMTP_MAX_CONNECTIONS_PER_IP", default_value_t = 50)]
    pub smtp_max_connections_per_ip: usize,
    /// Most sessions open at once in all.
    #[arg(long, env = "CARTEIRO_SMTP_MAX_CONNECTIONS", default_value_t = 500)]
    pub smtp_max_connections: usize,
    /// Most commands in one session before it is closed.
    #[arg(long, env = "CARTEIRO_SMTP_MAX_COMMANDS", default_value_t = 1000)]
    pub smtp_max_commands: usize,
    /// A session that sends nothing for this long is closed, in seconds.
    #[arg(long, env = "CARTEIRO_SMTP_IDLE_TIMEOUT_S", default_value_t = 300)]
    pub smtp_idle_timeout_s: u64,
}

/// What every session of the listener shares.
pub struct Shared {
    pub state: AppState,
    pub tls: TlsAcceptor,
    pub allow_plain_auth_on_loopback: bool,
    pub max_commands: usize,
    pub idle: Duration,
    open: Mutex<Open>,
    max_per_ip: usize,
    max_total: usize,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

/// A session's place among the open ones, given back when it ends.
struct Slot {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.shared.open.lock().expect("smtp sessions");
        open.total -= 1;
        if let Some(n) = open.by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.by_ip.remove(&self.ip);
            }
        }
    }
}

impl Shared {
    /// A place for a session from `ip`, or the reply that turns it away.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, &'static str> {
        let mut open = self.open.lock().expect("smtp sessions");
        if open.total >= self.max_total {
            return Err("421 4.3.2 carteiro has too many sessions open; try again later\r\n");
        }
        let from_ip = open.by_ip.entry(ip).or_default();
        if *from_ip >= self.max_per_ip {
            return Err("421 4.7.0 too many sessions from your address; try again later\r\n");
        }
        *from_ip += 1;
        open.total += 1;
        Ok(Slot { shared: self.clone(), ip })
    }
}

pub struct SmtpListener {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl SmtpListener {
    pub async fn bind(args: &SmtpArgs, address: SocketAddr, data_dir: &Path, state: AppState) -> anyhow::Result<Self> {
        let config = tls::server_config(args, data_dir, &state.delivery.hostname)?;
        let listener =
            TcpListener::bind(address).await.with_context(|| format!("cannot listen for SMTP on {address}"))?;
        let shared = Arc::new(Shared {
            state,
            tls: TlsAcceptor::from(Arc::new(config)),
            allow_plain_auth_on_loopback: args.smtp_allow_plain_auth_on_loopback,
            max_commands: args.smtp_max_commands.max(10),
            idle: Duration::from_secs(args.smtp_idle_timeout_s.max(1)),
            open: Mutex::default(),
            max_per_ip: args.smtp_max_connections_per_ip.max(1),
            max_total: args.smtp_max_connections.max(1),
        });
        Ok(Self { listener, shared })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Accepts sessions until `shutdown`; then lets the open ones finish their
    /// current exchange (a message being received is still queued).
    pub async fn run(self, shutdown: CancellationToken) {
        let sessions = TaskTracker::new();
        loop {
            let (stream, peer) = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = self.listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot accept an SMTP connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let shared = self.shared.clone();
            let stop = shutdown.clone();
            sessions.spawn(async move { serve(shared, stream, peer, stop).await });
        }
        sessions.close();
        sessions.wait().await;
    }
}

async fn serve(shared: Arc<Shared>, mut stream: TcpStream, peer: SocketAddr, shutdown: CancellationToken) {
    let slot = match shared.admit(peer.ip()) {
        Ok(slot) => slot,
        Err(reply) => {
            let _ = stream.write_all(reply.as_bytes()).await;
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    session::Session::new(&shared, peer).run(stream, shutdown).await;
    drop(slot);
}
