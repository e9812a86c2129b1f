//! Administrators, their passwords (argon2id) and their bearer tokens;
//! company API keys. Tokens and keys are random, shown once, stored hashed.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use carteiro_core::FieldError;
use carteiro_core::id::CompanySlug;
use sha2::{Digest, Sha256};

use super::{ServiceError, ServiceResult};
use crate::state::{AppState, now_ms};
use crate::store::AdminRow;

pub const FIRST_ADMIN: &str = "admin";
const TOKEN_LIFETIME_MS: i64 = 12 * 3600 * 1000;
const ADMIN_TOKEN_PREFIX: &str = "ct_";
pub const API_KEY_PREFIX: &str = "ck_";

/// What an administrator may manage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminScope {
    Platform,
    Company(CompanySlug),
}

#[derive(Debug, Clone)]
pub struct Admin {
    pub id: String,
    pub username: String,
    pub scope: AdminScope,
}

impl Admin {
    pub fn is_platform(&self) -> bool {
        self.scope == AdminScope::Platform
    }

    pub fn manages(&self, company: &CompanySlug) -> bool {
        match &self.scope {
            AdminScope::Platform => true,
            AdminScope::Company(own) => own == company,
        }
    }
}

impl TryFrom<AdminRow> for Admin {
    type Error = ServiceError;

    fn try_from(row: AdminRow) -> ServiceResult<Self> {
        let scope = match row.company {
            None => AdminScope::Platform,
            Some(c) => AdminScope::Company(CompanySlug::parse("company", &c).map_err(|e| anyhow::anyhow!(e))?),
        };
        Ok(Self { id: row.id, username: row.username, scope })
    }
}

/// A random token: `prefix` + 32 random bytes in URL-safe base64.
pub fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Tokens and keys are long random values: one SHA-256 suffices to store them
/// safely (a slow hash protects guessable passwords, not these).
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Hashes with argon2id on a blocking thread: it is slow (and memory-hard) on purpose.
pub async fn hash_password(password: &str) -> anyhow::Result<String> {
    let password = password.to_owned();
    let _permit = ARGON2_PERMITS.acquire().await?;
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))
    })
    .await?
}

/// Verifies on a blocking thread; an unknown user is checked against a fixed
/// hash, so that timing does not tell which user names exist.
async fn verify_password(password: &str, hash: Option<String>) -> anyhow::Result<bool> {
    let password = password.to_owned();
    let _permit = ARGON2_PERMITS.acquire().await?;
    Ok(tokio::task::spawn_blocking(move || {
        let hash = hash.as_deref().unwrap_or(&DUMMY_HASH);
        PasswordHash::new(hash)
            .is_ok_and(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
    })
    .await?)
}

/// Each argon2 run takes ~19 MiB and a core for a while: a flood of logins
/// waits here instead of exhausting memory.
static ARGON2_PERMITS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    Argon2::default().hash_password(b"not anyone's password").map(|h| h.to_string()).unwrap_or_default()
});

fn check_username(username: &str) -> Result<(), FieldError> {
    let ok = (1..=64).contains(&username.len())
        && username.bytes().all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            "username",
            "username must be 1 to 64 characters of letters, digits, '.', '_', '@' and '-'",
        ))
    }
}

pub fn check_password(password: &str) -> Result<(), FieldError> {
    if password.chars().count() < 10 {
        return Err(FieldError::new("password", "password must be at least 10 characters long"));
    }
    if password.len() > 1024 {
        return Err(FieldError::new("password", "password must be at most 1024 bytes"));
    }
    Ok(())
}

/// Creates the first platform administrator, `admin`, when the store has
/// none. Returns the password when it was generated, to be shown once.
pub async fn ensure_first_admin(state: &AppState, password: Option<&str>) -> ServiceResult<Option<String>> {
    if state.store.admin_count().await? > 0 {
        return Ok(None);
    }
    let generated = password.is_none().then(|| random_token(""));
    let password = password.or(generated.as_deref()).unwrap_or_default();
    check_password(password)
        .map_err(|e| ServiceError::Internal(anyhow::anyhow!("CARTEIRO_ADMIN_PASSWORD is too weak: {}", e.message)))?;
    create_admin(state, &super::Actor::System, FIRST_ADMIN, password, None).await?;
    Ok(generated)
}

/// Creates an administrator (of one company, or of the platform), recorded in the audit log.
pub async fn create_admin(
    state: &AppState,
    actor: &super::Actor,
    username: &str,
    password: &str,
    company: Option<&CompanySlug>,
) -> ServiceResult<Admin> {
    check_username(username)?;
    check_password(password)?;
    if let Some(c) = company
        && state.store.company(c.as_str()).await?.is_none()
    {
        return Err(ServiceError::NotFound(format!("there is no company {c}")));
    }
    let row = AdminRow {
        id: uuid::Uuid::now_v7().to_string(),
        username: username.to_owned(),
        password_hash: hash_password(password).await?,
        company: company.map(|c| c.as_str().to_owned()),
    };
    state.store.create_admin(&row, now_ms()).await.map_err(|e| match ServiceError::from(e) {
        ServiceError::Conflict(_) => ServiceError::Conflict(format!("the user name {username} is taken")),
        other => other,
    })?;
    audit(state, actor, "admin.create", &row.username, row.company.clone(), vec!["username".into(), "password".into()])
        .await?;
    row.try_into()
}

/// The administrators bound to one company.
pub async fn company_admins(state: &AppState, company: &CompanySlug) -> ServiceResult<Vec<Admin>> {
    state.store.company_admins(company.as_str()).await?.into_iter().map(Admin::try_from).collect()
}

pub async fn reset_password(
    state: &AppState,
    actor: &super::Actor,
    username: &str,
    password: &str,
) -> ServiceResult<()> {
    check_password(password)?;
    if !state.store.set_admin_password(username, &hash_password(password).await?).await? {
        return Err(ServiceError::NotFound(format!("there is no administrator {username}")));
    }
    let company = state.store.admin_by_username(username).await?.and_then(|a| a.company);
    audit(state, actor, "admin.reset_password", username, company, vec!["password".into()]).await
}

/// An audit entry about an administrator (never their password, only that it was set).
async fn audit(
    state: &AppState,
    actor: &super::Actor,
    action: &str,
    username: &str,
    company: Option<String>,
    fields: Vec<String>,
) -> ServiceResult<()> {
    let entry = crate::store::AuditRow {
        at: now_ms(),
        actor: actor.label(),
        action: action.to_owned(),
        company,
        target: format!("admin:{username}"),
        fields,
    };
    Ok(state.store.record_audit(&entry).await?)
}

/// Checks a user name and password; returns a bearer token valid for 12 hours
/// (the API's, and the console's session). Repeated failures for one user
/// name make the next tries wait ([`super::throttle`]).
pub async fn login(state: &AppState, username: &str, password: &str) -> ServiceResult<String> {
    state.login_throttle.attempt(username, now_ms()).map_err(|seconds| ServiceError::Throttled { seconds })?;
    let row = state.store.admin_by_username(username).await?;
    let ok = verify_password(password, row.as_ref().map(|r| r.password_hash.clone())).await?;
    let Some(row) = row.filter(|_| ok) else {
        return Err(ServiceError::BadCredentials);
    };
    state.login_throttle.succeeded(username);
    let token = random_token(ADMIN_TOKEN_PREFIX);
    let now = now_ms();
    state.store.create_admin_token(&token_hash(&token), &row.id, now, now + TOKEN_LIFETIME_MS).await?;
    Ok(token)
}

/// Ends the session of a token at once.
pub async fn logout(state: &AppState, token: &str) -> ServiceResult<()> {
    Ok(state.store.revoke_admin_token(&token_hash(token)).await?)
}

pub async fn admin_by_token(state: &AppState, token: &str) -> ServiceResult<Option<Admin>> {
    if !token.starts_with(ADMIN_TOKEN_PREFIX) {
        return Ok(None);
    }
    state.store.admin_by_token(&token_hash(token), now_ms()).await?.map(Admin::try_from).transpose()
}

/// The company an API key belongs to, unless the key is unknown or revoked.
pub async fn company_by_api_key(state: &AppState, key: &str) -> ServiceResult<Option<CompanySlug>> {
    if !key.starts_with(API_KEY_PREFIX) {
        return Ok(None);
    }
    let hash = token_hash(key);
    if let Some(company) = state.api_keys.get(&hash, &state.config_version) {
        return Ok(Some(company));
    }
    let version = state.config_version();
    let Some(company) = state.store.api_key_company(&hash).await? else { return Ok(None) };
    let company = CompanySlug::parse("company", &company).map_err(|e| ServiceError::Internal(anyhow::anyhow!(e)))?;
    state.api_keys.put(hash, version, company.clone());
    Ok(Some(company))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passwords_hash_with_argon2id_and_verify() {
        let hash = hash_password("correct horse battery").await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", Some(hash.clone())).await.unwrap());
        assert!(!verify_password("wrong horse battery", Some(hash)).await.unwrap());
        assert!(!verify_password("correct horse battery", None).await.unwrap(), "an unknown user never logs in");
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, b) = (random_token(API_KEY_PREFIX), random_token(API_KEY_PREFIX));
        assert_ne!(a, b);
        assert!(a.starts_with("ck_") && a.len() == 3 + 43);
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), a);
    }
}
