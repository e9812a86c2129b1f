//! Companies (tenants) and their API keys.

use carteiro_core::address::{DisplayName, EmailAddress, Mailbox};
use carteiro_core::error::{FieldError, FieldErrors};
use carteiro_core::id::CompanySlug;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{API_KEY_PREFIX, random_token, token_hash};
use super::{Actor, ServiceError, ServiceResult};
use crate::state::{AppState, now_ms, rfc3339};
use crate::store::{ApiKeyRow, AuditRow, CompanyRow, ConfigWrite};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompanyIn {
    /// 2 to 63 characters of a-z, 0-9 and '-', starting with a letter or digit.
    #[schema(pattern = "^[a-z0-9][a-z0-9-]{1,62}$", example = "acme")]
    pub slug: String,
    pub name: String,
    pub email: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CompanyOut {
    pub slug: String,
    pub name: String,
    pub email: Option<String>,
    pub created_at: String,
}

impl From<CompanyRow> for CompanyOut {
    fn from(row: CompanyRow) -> Self {
        Self { slug: row.slug, name: row.name, email: row.email, created_at: rfc3339(row.created_at) }
    }
}

/// A company as the sender rules see it: its name and own address.
pub struct Company {
    pub slug: CompanySlug,
    pub name: String,
    pub email: Option<EmailAddress>,
}

impl Company {
    pub fn mailbox(&self) -> Option<Mailbox> {
        let name = DisplayName::parse("name", &self.name).ok().flatten();
        self.email.clone().map(|address| Mailbox::new(name, address))
    }
}

/// A company's name and own address, checked as `POST /companies` checks them.
pub struct Identity {
    pub name: DisplayName,
    pub email: Option<EmailAddress>,
}

impl Identity {
    /// A blank e-mail address is none; the name is required.
    pub fn parse(name: &str, email: Option<&str>) -> Result<Self, FieldErrors> {
        let mut errors = FieldErrors::default();
        let name = match DisplayName::parse("name", name) {
            Ok(Some(name)) => Some(name),
            Ok(None) => {
                errors.push(FieldError::new("name", "name must not be empty"));
                None
            }
            Err(e) => {
                errors.push(e);
                None
            }
        };
        let email = email.filter(|e| !e.trim().is_empty()).and_then(|e| errors.check(EmailAddress::parse("email", e)));
        match name {
            Some(name) if errors.is_empty() => Ok(Self { name, email }),
            _ => Err(errors),
        }
    }
}

pub async fn create_company(state: &AppState, actor: &Actor, input: &CompanyIn) -> ServiceResult<CompanyOut> {
    let mut errors = FieldErrors::default();
    let slug = errors.check(CompanySlug::parse("slug", input.slug.trim()));
    let identity = Identity::parse(&input.name, input.email.as_deref()).map_err(|e| errors.0.extend(e.0)).ok();
    let (Some(slug), Some(Identity { name, email })) = (slug, identity) else {
        return Err(errors.into());
    };
    let row = CompanyRow {
        slug: slug.as_str().to_owned(),
        name: name.as_str().to_owned(),
        email: email.map(|e| e.as_str().to_owned()),
        created_at: now_ms(),
    };
    state.store.create_company(&row).await.map_err(|e| match ServiceError::from(e) {
        ServiceError::Conflict(_) => ServiceError::Conflict(format!("a company with slug {slug} already exists")),
        other => other,
    })?;
    state
        .store
        .record_audit(&AuditRow {
            at: row.created_at,
            actor: actor.label(),
            action: "company.create".to_owned(),
            company: Some(row.slug.clone()),
            target: format!("company:{slug}"),
            fields: vec!["slug".into(), "name".into(), "email".into()],
        })
        .await?;
    Ok(row.into())
}

/// Replaces a company's name and own e-mail address (its slug never changes).
pub async fn update_company(
    state: &AppState,
    actor: &Actor,
    slug: &CompanySlug,
    name: &str,
    email: Option<&str>,
) -> ServiceResult<CompanyOut> {
    let stored = state
        .store
        .company(slug.as_str())
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("there is no company {slug}")))?;
    let Identity { name, email } = Identity::parse(name, email)?;
    let row =
        CompanyRow { name: name.as_str().to_owned(), email: email.map(|e| e.as_str().to_owned()), ..stored.clone() };
    let fields: Vec<String> = [("name", row.name != stored.name), ("email", row.email != stored.email)]
        .into_iter()
        .filter_map(|(field, changed)| changed.then(|| field.to_owned()))
        .collect();
    if fields.is_empty() {
        return Ok(row.into());
    }
    let now = now_ms();
    let audit = AuditRow {
        at: now,
        actor: actor.label(),
        action: "company.update".to_owned(),
        company: Some(row.slug.clone()),
        target: format!("company:{slug}"),
        fields,
    };
    // The same upsert as a configuration import, in one transaction with its audit entry.
    let write = ConfigWrite {
        at: now,
        actor: actor.label(),
        companies: vec![row.clone()],
        audit: vec![audit],
        ..Default::default()
    };
    state.store.apply_config(&write).await?;
    state.configuration_changed();
    Ok(row.into())
}

/// The company, or a 404 that does not say whether it exists elsewhere.
pub async fn company(state: &AppState, slug: &CompanySlug) -> ServiceResult<Company> {
    let row = state
        .store
        .company(slug.as_str())
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("there is no company {slug}")))?;
    Ok(Company {
        slug: slug.clone(),
        email: row.email.as_deref().and_then(|e| EmailAddress::parse("email", e).ok()),
        name: row.name,
    })
}

pub async fn company_out(state: &AppState, slug: &CompanySlug) -> ServiceResult<CompanyOut> {
    let row = state
        .store
        .company(slug.as_str())
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("there is no company {slug}")))?;
    Ok(row.into())
}

pub async fn companies(state: &AppState) -> ServiceResult<Vec<CompanyOut>> {
    Ok(state.store.companies().await?.into_iter().map(CompanyOut::from).collect())
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ApiKeyIn {
    pub name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyOut {
    pub id: String,
    pub name: String,
    /// The first characters, to recognise a key in a list.
    pub prefix: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

impl From<ApiKeyRow> for ApiKeyOut {
    fn from(row: ApiKeyRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            prefix: row.prefix,
            created_at: rfc3339(row.created_at),
            revoked_at: row.revoked_at.map(rfc3339),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NewApiKey {
    #[serde(flatten)]
    pub info: ApiKeyOut,
    /// The key itself: shown this once, stored only as a hash.
    pub key: String,
}

pub async fn create_api_key(
    state: &AppState,
    actor: &Actor,
    company: &CompanySlug,
    input: &ApiKeyIn,
) -> ServiceResult<NewApiKey> {
    self::company(state, company).await?;
    let name = input.name.as_deref().map(str::trim).filter(|n| !n.is_empty()).unwrap_or("default");
    carteiro_core::error::check_header_text("name", name)?;
    let key = random_token(API_KEY_PREFIX);
    let row = ApiKeyRow {
        id: uuid::Uuid::now_v7().to_string(),
        company: company.as_str().to_owned(),
        prefix: key[..API_KEY_PREFIX.len() + 6].to_owned(),
        name: name.to_owned(),
        created_at: now_ms(),
        revoked_at: None,
    };
    state.store.create_api_key(&row, &token_hash(&key)).await?;
    state
        .store
        .record_audit(&AuditRow {
            at: row.created_at,
            actor: actor.label(),
            action: "api_key.create".to_owned(),
            company: Some(row.company.clone()),
            target: format!("api_key:{}", row.id),
            fields: vec!["name".into()],
        })
        .await?;
    Ok(NewApiKey { info: row.into(), key })
}

pub async fn api_keys(state: &AppState, company: &CompanySlug) -> ServiceResult<Vec<ApiKeyOut>> {
    self::company(state, company).await?;
    Ok(state.store.api_keys(company.as_str()).await?.into_iter().map(ApiKeyOut::from).collect())
}

pub async fn revoke_api_key(state: &AppState, actor: &Actor, company: &CompanySlug, id: &str) -> ServiceResult<()> {
    let now = now_ms();
    let revoked = state.store.revoke_api_key(company.as_str(), id, now).await?;
    // A revoked key stops working at once: no cached copy may still let it in.
    state.configuration_changed();
    if !revoked {
        return Err(ServiceError::NotFound(format!("there is no active API key {id} in company {company}")));
    }
    state
        .store
        .record_audit(&AuditRow {
            at: now,
            actor: actor.label(),
            action: "api_key.revoke".to_owned(),
            company: Some(company.as_str().to_owned()),
            target: format!("api_key:{id}"),
            fields: vec!["revoked_at".into()],
        })
        .await?;
    Ok(())
}
