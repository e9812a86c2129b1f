//! A company's DKIM keys: made here or imported, their private half sealed
//! with the master key, their DNS records shown to publish, the newest key
//! of each domain signing. Rotation: add a key with a new selector (it signs
//! from then on), and remove the old one once nothing in flight needs it.

use std::sync::Arc;

use carteiro_core::FieldErrors;
use carteiro_core::error::FieldError;
use carteiro_core::id::CompanySlug;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Actor, ServiceError, ServiceResult, tenants};
use crate::delivery::dkim::{self, Algorithm, KeyPair, Signer};
use crate::state::{AppState, now_ms, rfc3339};
use crate::store::{AuditRow, DkimKeyRow};
use carteiro_core::Secret;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DkimKeyIn {
    #[schema(example = "s2026")]
    pub selector: String,
    #[schema(example = "acme.example")]
    pub domain: String,
    /// `ed25519` (the default) or `rsa` (2048 bits); ignored when a key is imported.
    pub algorithm: Option<String>,
    /// A private key to import instead of making one (PEM).
    pub private_key_pem: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DkimKeyOut {
    pub selector: String,
    pub domain: String,
    pub algorithm: String,
    pub created_at: String,
    /// Where to publish the record: `{selector}._domainkey.{domain}`.
    pub dns_name: String,
    /// The TXT record's value.
    pub dns_txt: String,
    /// Whether it signs: the newest key of its domain does; older ones stay published until removed.
    pub signing: bool,
}

/// A key that signs the messages whose From is in its domain.
pub struct DomainSigner {
    pub domain: String,
    pub signer: Signer,
}

pub(crate) fn aad(company: &str, selector: &str) -> String {
    format!("dkim:{company}:{selector}")
}

/// DNS labels: letters, digits and '-' (not at either end), 1 to 63 characters, joined by dots.
fn dns_name(field: &str, input: &str, min_labels: usize) -> Result<String, FieldError> {
    let name = input.trim().trim_end_matches('.').to_ascii_lowercase();
    let ok = name.len() <= 253
        && name.split('.').count() >= min_labels
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if ok {
        Ok(name)
    } else {
        let what = if min_labels > 1 { "a domain name such as acme.example" } else { "DNS labels of a-z, 0-9 and '-'" };
        Err(FieldError::new(field, format!("{field} must be {what}, got {input:?}")))
    }
}

pub async fn create(
    state: &AppState,
    actor: &Actor,
    company: &CompanySlug,
    input: &DkimKeyIn,
) -> ServiceResult<DkimKeyOut> {
    tenants::company(state, company).await?;
    let mut errors = FieldErrors::default();
    let selector = errors.check(dns_name("selector", &input.selector, 1));
    let domain = errors.check(dns_name("domain", &input.domain, 2));
    let algorithm = match input.algorithm.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
        None => Some(Algorithm::Ed25519),
        Some(a) => errors.check(Algorithm::parse(a).ok_or_else(|| {
            FieldError::new(
                "algorithm",
                format!("algorithm must be one of {}, got {a:?}", Algorithm::CHOICES.join(", ")),
            )
        })),
    };
    let pem = input.private_key_pem.as_deref().filter(|p| !p.trim().is_empty()).map(str::to_owned);
    let (Some(selector), Some(domain), Some(algorithm)) = (selector, domain, algorithm) else {
        return Err(errors.into());
    };
    if !errors.is_empty() {
        return Err(errors.into());
    }
    // Making an RSA key takes a while: off the async threads.
    let pair = tokio::task::spawn_blocking(move || match pem {
        Some(pem) => KeyPair::import_pem(&pem)
            .map_err(|why| FieldError::new("private_key_pem", format!("private_key_pem cannot be used: {why}"))),
        None => KeyPair::generate(algorithm).map_err(|why| FieldError::new("algorithm", why)),
    })
    .await
    .map_err(anyhow::Error::from)??;
    let private = Secret::new(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &pair.private_der));
    let row = DkimKeyRow {
        company: company.as_str().to_owned(),
        selector: selector.clone(),
        domain,
        algorithm: pair.algorithm.as_str().to_owned(),
        public_key: pair.public_base64,
        sealed_private_key: state.keys.seal(&aad(company.as_str(), &selector), &private),
        created_at: now_ms(),
    };
    state.store.create_dkim_key(&row).await.map_err(|e| match ServiceError::from(e) {
        ServiceError::Conflict(_) => {
            ServiceError::Conflict(format!("company {company} already has a DKIM key with selector {selector}"))
        }
        other => other,
    })?;
    audit(state, actor, company, "dkim.create", &row.selector).await?;
    state.configuration_changed();
    Ok(list(state, company).await?.into_iter().find(|k| k.selector == row.selector).expect("the key just stored"))
}

pub async fn list(state: &AppState, company: &CompanySlug) -> ServiceResult<Vec<DkimKeyOut>> {
    tenants::company(state, company).await?;
    let rows = state.store.dkim_keys(company.as_str()).await?;
    let mut signing_domains = std::collections::HashSet::new();
    Ok(rows
        .into_iter()
        .map(|row| {
            let algorithm = Algorithm::parse(&row.algorithm).unwrap_or(Algorithm::Ed25519);
            DkimKeyOut {
                dns_name: format!("{}._domainkey.{}", row.selector, row.domain),
                dns_txt: dkim::dns_record(algorithm, &row.public_key),
                // Newest first: the first key seen for a domain signs.
                signing: signing_domains.insert(row.domain.clone()),
                created_at: rfc3339(row.created_at),
                selector: row.selector,
                domain: row.domain,
                algorithm: row.algorithm,
            }
        })
        .collect())
}

pub async fn remove(state: &AppState, actor: &Actor, company: &CompanySlug, selector: &str) -> ServiceResult<()> {
    tenants::company(state, company).await?;
    if !state.store.remove_dkim_key(company.as_str(), selector).await? {
        return Err(ServiceError::NotFound(format!("company {company} has no DKIM key with selector {selector}")));
    }
    audit(state, actor, company, "dkim.remove", selector).await?;
    state.configuration_changed();
    Ok(())
}

async fn audit(
    state: &AppState,
    actor: &Actor,
    company: &CompanySlug,
    action: &str,
    selector: &str,
) -> ServiceResult<()> {
    let entry = AuditRow {
        at: now_ms(),
        actor: actor.label(),
        action: action.to_owned(),
        company: Some(company.as_str().to_owned()),
        target: format!("dkim:{company}:{selector}"),
        fields: vec!["selector".into(), "domain".into(), "algorithm".into()],
    };
    Ok(state.store.record_audit(&entry).await?)
}

/// The keys that sign a company's messages: the newest of each domain.
pub async fn signers(state: &AppState, company: &CompanySlug) -> ServiceResult<Vec<Arc<DomainSigner>>> {
    let mut seen = std::collections::HashSet::new();
    let mut signers = Vec::new();
    for row in state.store.dkim_keys(company.as_str()).await? {
        if !seen.insert(row.domain.clone()) {
            continue;
        }
        let private = state.keys.open(&aad(company.as_str(), &row.selector), &row.sealed_private_key)?;
        let der = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, private.expose())
            .map_err(|e| anyhow::anyhow!("the DKIM key {} of {company} is damaged: {e}", row.selector))?;
        let algorithm = Algorithm::parse(&row.algorithm).unwrap_or(Algorithm::Ed25519);
        let signer = Signer::new(algorithm, &der, &row.domain, &row.selector)
            .map_err(|why| anyhow::anyhow!("the DKIM key {} of {company}: {why}", row.selector))?;
        signers.push(Arc::new(DomainSigner { domain: row.domain, signer }));
    }
    Ok(signers)
}
