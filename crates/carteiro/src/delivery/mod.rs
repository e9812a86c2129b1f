//! Getting messages out: MIME building, then a carrier that takes them: an
//! SMTP session (directly or through a proxy, logging in with a password or
//! an XOAUTH2 token) or a local transport.

pub mod connect;
pub mod dkim;
pub mod local;
pub mod mime;
pub mod oauth;
pub mod proxy;
pub mod smtp;
pub mod tls;
pub mod transcript;

use std::time::Duration;

use carteiro_core::delivery::{Failure, Stage, Transaction};
use carteiro_core::settings::{Connection, Transport};

use self::local::Local;
use self::oauth::Tokens;
use self::smtp::Session;
use self::tls::TlsConfigs;
use self::transcript::Transcript;

/// What opening a carrier needs beside the settings.
pub struct Means<'a> {
    pub tls: &'a TlsConfigs,
    pub tokens: &'a Tokens,
    /// The name carteiro gives itself in EHLO.
    pub hostname: &'a str,
}

/// A message to send: its id, envelope and bytes.
pub struct Outgoing<'a> {
    pub id: &'a str,
    pub envelope_from: &'a str,
    pub to: Vec<&'a str>,
    pub raw: &'a [u8],
}

/// Asks sessions to stop: `soft`, start no new transaction; `hard`, abandon
/// the one in progress now (its message then counts as in doubt).
#[derive(Clone, Default)]
pub struct Stop {
    pub soft: tokio_util::sync::CancellationToken,
    pub hard: tokio_util::sync::CancellationToken,
}

fn stopping(stage: Stage) -> Failure {
    Failure::Network { stage, detail: "carteiro was stopping".to_owned() }
}

/// Time for `size` bytes to travel at a pessimistic 64 KiB/s, on top of `timeout_s`.
fn transfer_time(size: usize) -> Duration {
    Duration::from_secs((size / (64 * 1024)) as u64)
}

/// What takes messages over one connection: an SMTP session, or a local transport.
pub enum Carrier {
    Smtp(Session),
    Local { local: Local, timeout: Duration },
}

impl Carrier {
    /// Opens a carrier as `connection` says, recording each step in `log`.
    pub async fn open(connection: &Connection, means: &Means<'_>, log: &mut Transcript) -> Result<Self, Failure> {
        let timeout = Duration::from_secs(u64::from(connection.timeout.get()));
        let local = match &connection.transport {
            Transport::Smtp(server) => return Ok(Self::Smtp(Session::open(server, timeout, means, log).await?)),
            Transport::Sendmail { command } => Local::Sendmail { command: command.clone() },
            Transport::Pickup { dir } => Local::Pickup { dir: dir.into() },
            Transport::Capture => Local::Capture,
        };
        Ok(Self::Local { local, timeout })
    }

    /// Sends one message, recording each step in `log`.
    pub async fn send(&mut self, o: &Outgoing<'_>, log: &mut Transcript) -> Result<Transaction, Failure> {
        match self {
            Self::Smtp(session) => session.send(o.envelope_from, &o.to, o.raw, log).await,
            Self::Local { local, timeout } => local.send(o, *timeout, log).await,
        }
    }

    /// Sends several messages, as [`Session::send_all`] says.
    pub async fn send_all(&mut self, outgoing: &[Outgoing<'_>], stop: &Stop) -> Vec<Result<Transaction, Failure>> {
        let (local, timeout) = match self {
            Self::Smtp(session) => return session.send_all(outgoing, stop).await,
            Self::Local { local, timeout } => (local, *timeout),
        };
        let mut results = Vec::with_capacity(outgoing.len());
        for (i, o) in outgoing.iter().enumerate() {
            if i > 0 && stop.soft.is_cancelled() {
                break;
            }
            let mut log = Transcript::default();
            results.push(tokio::select! {
                result = local.send(o, timeout, &mut log) => result,
                () = stop.hard.cancelled() => Err(stopping(Stage::Handoff)),
            });
        }
        results
    }

    /// Whether it can carry another message (a local transport always can).
    pub fn is_usable(&self) -> bool {
        match self {
            Self::Smtp(session) => session.is_usable(),
            Self::Local { .. } => true,
        }
    }

    /// Ends the session.
    pub async fn close(self) {
        if let Self::Smtp(session) = self {
            session.close().await;
        }
    }
}
