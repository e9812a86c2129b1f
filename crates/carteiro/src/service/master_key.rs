//! Rotating the master key: every sealed value opened with the current key
//! and sealed with a new one, in one transaction.

use anyhow::Context;

use super::{Actor, ServiceResult, config_file, dkim, settings, webhooks};
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

/// Seals every stored secret again with `new` (all or none); how many there were.
/// A value the current key does not open stops the rotation, naming where it is.
pub async fn rotate(state: &AppState, actor: &Actor, new: &MasterKey) -> ServiceResult<usize> {
    let reseal = |place: &SealedPlace, sealed: &str| {
        let aad = aad(place)?;
        let secret = state.keys.open(&aad, sealed).with_context(|| format!("{place} does not open"))?;
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
    Ok(state.store.reseal_all(&reseal, &audit).await?)
}
