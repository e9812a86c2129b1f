//! Rotating the master key: every sealed value opened with the current key
//! and sealed with a new one, in one transaction.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;

use super::{Actor, ServiceError, config_file, dkim, settings, webhooks};
use crate::crypto::MasterKey;
use crate::state::{AppState, now_ms};
use crate::store::{AuditRow, SealedPlace};

/// The additional data a value was sealed with, from where it is stored.
fn aad(place: &SealedPlace) -> anyhow::Result<String> {
    Ok(match place {
        SealedPlace::Level { company, user, path } => {
            settings::secret_aad(&config_file::stored_scope(company, user).map_err(|e| anyhow::anyhow!("{e}"))?, path)
        }
        SealedPlace::DkimKey { company, selector } => dkim::aad(company, selector),
        SealedPlace::Webhook { company, id } => webhooks::secret_aad(company, id),
    })
}

/// Why a rotation stopped.
pub enum NotRotated {
    /// A value did not open with the current key: nothing was written.
    Refused(ServiceError),
    /// The store failed, perhaps while committing: the secrets may be sealed with either key.
    Uncertain(ServiceError),
}

/// Seals every stored secret again with `new` (all or none); how many there were.
/// A value the current key does not open stops the rotation, naming where it is.
pub async fn rotate(state: &AppState, actor: &Actor, new: &MasterKey) -> Result<usize, NotRotated> {
    let refused = AtomicBool::new(false);
    let reseal = |place: &SealedPlace, sealed: &str| {
        let aad = aad(place)?;
        let secret =
            state.keys.open(&aad, sealed).with_context(|| format!("{place} does not open")).inspect_err(|_| {
                refused.store(true, Ordering::Relaxed);
            })?;
        Ok(new.seal(&aad, &secret))
    };
    let audit = AuditRow {
        at: now_ms(),
        actor: actor.label(),
        action: "master_key.rotate".to_owned(),
        company: None,
        target: "master key".to_owned(),
        fields: Vec::new(),
    };
    state.store.reseal_all(&reseal, &audit).await.map_err(|e| match refused.load(Ordering::Relaxed) {
        true => NotRotated::Refused(e.into()),
        false => NotRotated::Uncertain(e.into()),
    })
}
