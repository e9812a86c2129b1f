//! Where a message goes: the connection in force for its (company, user),
//! the lane that connection makes, the envelope sender and the bundling
//! policy. Resolved once per (company, user) and cached briefly: a settings
//! change in this process is seen at once, one made elsewhere (the CLI,
//! another instance) within `TTL`.

use std::sync::Arc;
use std::time::Duration;

use carteiro_core::delivery::Failure;
use carteiro_core::id::{CompanySlug, UserRef};
use carteiro_core::sender::{self, SenderContext};
use carteiro_core::settings::Connection;

use crate::cache::Cache;
use crate::service::{ServiceError, settings};
use crate::state::AppState;

const TTL: Duration = Duration::from_secs(1);

/// A lane: one company's messages to one server, with their own sessions,
/// rate and bundling. Two levels share a lane only when their whole
/// connection block is the same; the key never holds a secret in clear.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LaneKey(String);

#[derive(Debug)]
pub struct Route {
    pub lane: LaneKey,
    /// Names the lane's rate in the store, shared by every instance: its
    /// company, destination and account, no secret (nor a digest of one).
    pub rate_bucket: String,
    pub connection: Connection,
    /// MAIL FROM for this (company, user), when the settings name one.
    pub envelope_from: Option<String>,
    /// Bundling: how long the lane collects messages before one session carries them.
    pub bundle: Option<Duration>,
    /// The configuration version this route was worked out from.
    pub version: u64,
}

/// The route of a (company, user), or why there is none (a settings problem,
/// recorded on the message as a deferred attempt).
pub type Routing = Result<Arc<Route>, Failure>;

/// Routes already worked out, for as long as the settings they come from.
pub struct Routes(Cache<(String, Option<String>), Routing>);

impl Default for Routes {
    fn default() -> Self {
        Self(Cache::new(TTL))
    }
}

impl Routes {
    /// The route for (company, user); fails only when the store cannot be read.
    pub async fn route(&self, state: &AppState, company: &str, user: Option<&str>) -> anyhow::Result<Routing> {
        let key = (company.to_owned(), user.map(str::to_owned));
        if let Some(routing) = self.0.get(&key, &state.config_version) {
            return Ok(routing);
        }
        let version = state.config_version();
        let routing = resolve(state, company, user).await?;
        self.0.put(key, version, routing.clone());
        Ok(routing)
    }
}

async fn resolve(state: &AppState, company: &str, user: Option<&str>) -> anyhow::Result<Routing> {
    let version = state.config_version();
    let slug = CompanySlug::parse("company", company)?;
    let user = user.map(|u| UserRef::parse("actor_id", u)).transpose()?;
    let resolved = match settings::resolved(state, &slug, user.as_ref()).await {
        Ok(resolved) => resolved,
        Err(ServiceError::Unavailable(why) | ServiceError::Full(why)) => {
            anyhow::bail!("the database is unavailable: {why}")
        }
        // Not a message's fault (a stored password the master key does not open,
        // settings that no longer validate): recorded, retried until it is fixed.
        Err(e) => return Ok(Err(Failure::Settings { detail: format!("{:#}", anyhow::Error::from(e)) })),
    };
    let effective = &resolved.effective;
    let Some(connection) = effective.connection() else {
        return Ok(Err(Failure::Settings {
            detail: "no connection is configured for this company any more".to_owned(),
        }));
    };
    let mailbox = resolved.company.mailbox();
    let envelope_from = sender::envelope_from(SenderContext {
        policy: &effective.policy,
        company: mailbox.as_ref(),
        login_username: connection.login_username(),
    })
    .map(|a| a.as_str().to_owned());
    let bundle = effective
        .policy
        .bundle_enabled
        .value
        .then(|| Duration::from_millis(u64::from(effective.policy.bundle_interval.value.millis())));
    let lane = LaneKey(format!("{company}|{}|{bundle:?}", fingerprint(&connection)));
    let rate_bucket = format!("{company}|{}|{}", connection.destination(), connection.login_username().unwrap_or(""));
    Ok(Ok(Arc::new(Route { lane, rate_bucket, connection, envelope_from, bundle, version })))
}

/// A digest of every field of a connection, its secrets included.
fn fingerprint(connection: &Connection) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    // `Debug` shows every field but the secrets, which follow it.
    hash.update(format!("{connection:?}").as_bytes());
    for secret in connection.secrets() {
        hash.update((secret.expose().len() as u64).to_be_bytes());
        hash.update(secret.expose().as_bytes());
    }
    hex::encode(&hash.finalize()[..16])
}
