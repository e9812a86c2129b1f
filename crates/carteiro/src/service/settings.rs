//! Reading, replacing and explaining the three levels of settings.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use carteiro_core::id::{CompanySlug, UserRef};
use carteiro_core::settings::{Effective, Level, Levels, Scope, SettingsDoc};
use carteiro_core::{FieldError, Secret};
use serde_json::{Value, json};

use super::{Actor, ServiceError, ServiceResult, tenants};
use crate::state::{AppState, now_ms};
use crate::store::{AuditRow, LevelRow};

/// What a sealed secret is bound to: moved to another level or field, it no longer opens.
pub(crate) fn secret_aad(scope: &Scope, path: &str) -> String {
    format!("settings:{}:{path}", scope.key())
}

pub async fn load_level(state: &AppState, scope: &Scope) -> ServiceResult<Option<Level>> {
    let Some(row) = state.store.level(scope).await? else {
        return Ok(None);
    };
    let doc: SettingsDoc =
        serde_json::from_str(&row.document).map_err(|e| anyhow::anyhow!("stored settings of {}: {e}", scope.key()))?;
    let secrets = row
        .sealed_secrets
        .iter()
        .map(|(path, sealed)| {
            let secret = state
                .keys
                .open(&secret_aad(scope, path), sealed)
                .with_context(|| format!("cannot read {path} of the settings of {}", scope.key()))?;
            Ok((path.clone(), secret))
        })
        .collect::<anyhow::Result<BTreeMap<String, Secret>>>()?;
    let level = Level::parse_stored(&doc, &secrets)
        .map_err(|e| anyhow::anyhow!("stored settings of {} no longer validate: {e}", scope.key()))?;
    Ok(Some(level))
}

/// The document of a level as read back: secrets left out.
pub async fn read_level(state: &AppState, scope: &Scope) -> ServiceResult<SettingsDoc> {
    ensure_scope_exists(state, scope).await?;
    Ok(load_level(state, scope).await?.unwrap_or_default().to_doc())
}

async fn ensure_scope_exists(state: &AppState, scope: &Scope) -> ServiceResult<()> {
    match scope {
        Scope::Global => Ok(()),
        Scope::Company(c) | Scope::User(c, _) => tenants::company(state, c).await.map(drop),
    }
}

/// The levels that apply to (company, user), most general first.
pub async fn levels_for(
    state: &AppState,
    company: Option<&CompanySlug>,
    user: Option<&UserRef>,
) -> ServiceResult<[Option<Level>; 3]> {
    let global = load_level(state, &Scope::Global).await?;
    let company_level = match company {
        Some(c) => load_level(state, &Scope::Company(c.clone())).await?,
        None => None,
    };
    let user_level = match (company, user) {
        (Some(c), Some(u)) => load_level(state, &Scope::User(c.clone(), u.clone())).await?,
        _ => None,
    };
    Ok([global, company_level, user_level])
}

pub fn resolve(levels: &[Option<Level>; 3]) -> Effective {
    let [global, company, user] = levels;
    Effective::resolve(Levels { global: global.as_ref(), company: company.as_ref(), user: user.as_ref() })
}

pub async fn effective(
    state: &AppState,
    company: Option<&CompanySlug>,
    user: Option<&UserRef>,
) -> ServiceResult<Effective> {
    Ok(resolve(&levels_for(state, company, user).await?))
}

/// What a (company, user) sends with: the settings in force, the company's
/// own identity and its DKIM keys.
pub struct Resolved {
    pub effective: Effective,
    pub company: tenants::Company,
    pub dkim: Vec<Arc<super::dkim::DomainSigner>>,
}

impl Resolved {
    /// The key that signs messages from `domain`, if the company has one.
    pub fn dkim_for(&self, domain: &str) -> Option<&super::dkim::DomainSigner> {
        self.dkim.iter().find(|s| s.domain.eq_ignore_ascii_case(domain)).map(Arc::as_ref)
    }
}

/// The settings in force for (company, user), from a short-lived cache: read
/// on every submission and delivery, changed rarely.
pub async fn resolved(state: &AppState, company: &CompanySlug, user: Option<&UserRef>) -> ServiceResult<Arc<Resolved>> {
    let key = (company.as_str().to_owned(), user.map(|u| u.as_str().to_owned()));
    if let Some(hit) = state.resolved.get(&key, &state.config_version) {
        return Ok(hit);
    }
    let version = state.config_version();
    let company_row = tenants::company(state, company).await?;
    let resolved = Arc::new(Resolved {
        effective: effective(state, Some(company), user).await?,
        company: company_row,
        dkim: super::dkim::signers(state, company).await?,
    });
    state.resolved.put(key, version, resolved.clone());
    Ok(resolved)
}

/// Replaces one level. A blank password keeps the stored one. Every field is
/// checked; nothing is saved unless all are valid. Records an audit entry.
pub async fn save_level(
    state: &AppState,
    actor: &Actor,
    scope: &Scope,
    doc: &SettingsDoc,
) -> ServiceResult<SettingsDoc> {
    ensure_scope_exists(state, scope).await?;
    let stored = load_level(state, scope).await?;
    let level = Level::parse(doc, stored.as_ref())?;
    check_host_reach(actor, &level, stored.as_ref())?;
    check_ca_certificates(&level)?;
    check_default_sender(state, scope, &level).await?;

    let fields = level.changed_fields(stored.as_ref());
    if fields.is_empty() && stored.is_some() {
        // Nothing changed: nothing to store or to audit.
        return Ok(level.to_doc());
    }
    let row = level_row(state, scope, &level)?;
    let company = match scope {
        Scope::Global => None,
        Scope::Company(c) | Scope::User(c, _) => Some(c.as_str().to_owned()),
    };
    let audit = AuditRow {
        at: now_ms(),
        actor: actor.label(),
        action: "settings.update".to_owned(),
        company,
        target: scope.key(),
        fields,
    };
    state.store.save_level(scope, &row, &audit).await?;
    state.configuration_changed();
    Ok(level.to_doc())
}

/// A level as stored: its document without secrets, each secret sealed for its place.
pub(crate) fn level_row(state: &AppState, scope: &Scope, level: &Level) -> ServiceResult<LevelRow> {
    Ok(LevelRow {
        document: serde_json::to_string(&level.to_doc()).map_err(anyhow::Error::from)?,
        sealed_secrets: level
            .secrets()
            .into_iter()
            .map(|(path, secret)| (path.to_owned(), state.keys.seal(&secret_aad(scope, path), secret)))
            .collect(),
    })
}

/// A level whose connection acts on the carteiro host itself (the sendmail or
/// pickup transport, `sendmail_command`, `pickup_dir`, a token endpoint over
/// plain http) is the operator's and the platform administrators' to choose: a
/// company administrator is a tenant, and would otherwise run programs, write
/// files or call local ports on the host. Checked on save and on Test
/// connection with unsaved settings, before anything is stored or run.
///
/// A value equal to the one already stored at this level is let through: a
/// company administrator can still save the policy of a level whose pickup
/// directory a platform administrator chose, and test it, without being able
/// to change where it points (the stored value is in force at delivery
/// anyway). Any new or changed such value is refused, field by field.
pub(crate) fn check_host_reach(actor: &Actor, level: &Level, stored: Option<&Level>) -> ServiceResult<()> {
    if actor.may_act_on_the_host() {
        return Ok(());
    }
    let reach = |level: Option<&Level>| level.and_then(|l| l.connection.as_ref()).map(|c| c.host_reach());
    let kept = reach(stored).unwrap_or_default();
    let refused: Vec<FieldError> = reach(Some(level))
        .unwrap_or_default()
        .into_iter()
        .filter(|r| !kept.contains(r))
        .map(|r| FieldError::new(r.field, format!("{}: only a platform administrator may {}", r.field, r.why)))
        .collect();
    if refused.is_empty() { Ok(()) } else { Err(ServiceError::Forbidden(carteiro_core::FieldErrors(refused))) }
}

/// The extra certificate authority must be a certificate rustls can load.
pub(crate) fn check_ca_certificates(level: &Level) -> Result<(), FieldError> {
    let Some(pem) = level.connection.as_ref().and_then(|c| c.tls_ca_pem.as_deref()) else {
        return Ok(());
    };
    crate::delivery::tls::roots_with(Some(pem))
        .map(drop)
        .map_err(|why| FieldError::new("connection.tls_ca_pem", format!("connection.tls_ca_pem cannot be read: {why}")))
}

/// A level that switches the default sender on needs an address, its own or inherited.
async fn check_default_sender(state: &AppState, scope: &Scope, level: &Level) -> ServiceResult<()> {
    if level.policy.default_sender_enabled != Some(true) {
        return Ok(());
    }
    let mut levels = match scope {
        Scope::Global => [None, None, None],
        Scope::Company(c) => levels_for(state, Some(c), None).await?,
        Scope::User(c, u) => levels_for(state, Some(c), Some(u)).await?,
    };
    levels[slot(scope)] = Some(level.clone());
    Ok(default_sender_address_in(&levels)?)
}

/// Where a level of this scope sits among the levels of a (company, user), most general first.
pub(crate) fn slot(scope: &Scope) -> usize {
    match scope {
        Scope::Global => 0,
        Scope::Company(_) => 1,
        Scope::User(..) => 2,
    }
}

/// Levels in force that switch the default sender on must give it an address at some level.
pub(crate) fn default_sender_address_in(levels: &[Option<Level>; 3]) -> Result<(), FieldError> {
    if resolve(levels).policy.default_sender_address.value.is_none() {
        return Err(FieldError::new(
            "policy.default_sender_address",
            "policy.default_sender_address is required when the default sender is enabled",
        ));
    }
    Ok(())
}

/// Every effective value of (company, user) with the level it came from.
pub async fn explain(state: &AppState, company: &CompanySlug, user: Option<&UserRef>) -> ServiceResult<Value> {
    tenants::company(state, company).await?;
    let effective = effective(state, Some(company), user).await?;
    let mut out = json!({"company": company.as_str(), "user": user.map(UserRef::as_str)});
    if let (Value::Object(out), Value::Object(explained)) = (&mut out, effective.explain()) {
        out.extend(explained);
    }
    Ok(out)
}
