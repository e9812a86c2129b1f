//! Configuration as code (SPEC §1 "Install-time configuration"): every
//! settings level and the companies, exported to a TOML file and imported
//! back, all or nothing, by `carteiro config export|import` and
//! `carteiro serve --config`.
//!
//! An import checks every level with the rules of the API (a blank secret
//! keeps the stored one only where the API would) and reports every mistake
//! with its path in the file; then it writes everything in one transaction.

pub mod diff;
pub mod file;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use anyhow::Context;
use carteiro_core::id::{CompanySlug, UserRef};
use carteiro_core::settings::{Level, Scope};
use sha2::{Digest, Sha256};

use self::diff::{Change, field_change, level_changes};
use self::file::{CompanyEntry, ConfigFile, FileError, LevelEntry, SEALED_SUFFIX, company_path, join, level_path};
use super::settings::{check_ca_certificates, default_sender_address_in, level_row, load_level, secret_aad, slot};
use super::tenants::Identity;
use super::{ServiceError, ServiceResult};
use crate::state::{AppState, now_ms};
use crate::store::{AuditRow, CompanyRow, ConfigWrite};

/// Who the audit log says made the changes.
pub const ACTOR: &str = "config import";

/// Why a file cannot be applied.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Mistakes in the file, each with its path; nothing was changed.
    #[error("{}", Listed(.0))]
    Invalid(Vec<FileError>),
    #[error(transparent)]
    Service(#[from] ServiceError),
}

struct Listed<'a>(&'a [FileError]);

impl fmt::Display for Listed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(f, "the configuration file has {n} error{}; nothing was changed", if n == 1 { "" } else { "s" })?;
        for error in self.0 {
            write!(f, "\n  {error}")?;
        }
        Ok(())
    }
}

/// A company the file creates, or whose name or address it changes.
#[derive(Debug)]
struct CompanyUpdate {
    row: CompanyRow,
    before: Option<CompanyRow>,
}

/// A level the file replaces.
#[derive(Debug)]
struct LevelUpdate {
    scope: Scope,
    before: Option<Level>,
    after: Level,
}

impl LevelUpdate {
    fn changes(&self) -> Vec<Change> {
        level_changes(&level_path(&self.scope), self.before.as_ref(), &self.after)
    }
}

/// What applying a file does, checked and ready to write.
#[derive(Debug)]
pub struct Plan {
    companies: Vec<CompanyUpdate>,
    levels: Vec<LevelUpdate>,
}

impl Plan {
    /// Every field that changes, level by level; a company's name and address
    /// just before its first level.
    pub fn changes(&self) -> Vec<Change> {
        let mut companies: Vec<Option<&CompanyUpdate>> = self.companies.iter().map(Some).collect();
        let mut changes = Vec::new();
        for level in &self.levels {
            if let Scope::Company(c) | Scope::User(c, _) = &level.scope
                && let Some(company) = companies.iter_mut().find(|u| u.is_some_and(|u| u.row.slug == c.as_str()))
            {
                changes.extend(company.take().map(company_changes).unwrap_or_default());
            }
            changes.extend(level.changes());
        }
        changes.extend(companies.into_iter().flatten().flat_map(company_changes));
        changes
    }

    /// How many levels and companies change: `2 levels and 1 company`.
    pub fn summary(&self) -> String {
        let count =
            |n: usize, one: &str, many: &str| (n > 0).then(|| format!("{n} {}", if n == 1 { one } else { many }));
        let parts: Vec<String> =
            [count(self.levels.len(), "level", "levels"), count(self.companies.len(), "company", "companies")]
                .into_iter()
                .flatten()
                .collect();
        if parts.is_empty() { "nothing".to_owned() } else { parts.join(" and ") }
    }

    pub fn is_empty(&self) -> bool {
        self.companies.is_empty() && self.levels.is_empty()
    }
}

fn company_changes(update: &CompanyUpdate) -> Vec<Change> {
    let path = format!("companies.{}", file::toml_key(&update.row.slug));
    let before = update.before.as_ref();
    let text = |v: Option<&String>| v.map(|s| toml::Value::String(s.clone()));
    [
        field_change(
            &join(&path, "name"),
            text(before.map(|b| &b.name)).as_ref(),
            text(Some(&update.row.name)).as_ref(),
        ),
        field_change(
            &join(&path, "email"),
            text(before.and_then(|b| b.email.as_ref())).as_ref(),
            text(update.row.email.as_ref()).as_ref(),
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The whole configuration as a TOML file: every company, every level. Secrets
/// are left out, or with `with_secrets` sealed with the master key for their level and field.
pub async fn export(state: &AppState, with_secrets: bool) -> ServiceResult<String> {
    let companies: Vec<CompanyEntry> = state
        .store
        .companies()
        .await?
        .into_iter()
        .map(|row| {
            let slug = stored_slug(&row.slug)?;
            Ok(CompanyEntry { slug, name: Some(row.name), email: row.email })
        })
        .collect::<ServiceResult<_>>()?;
    let mut levels = Vec::new();
    for (company, user) in state.store.level_keys().await? {
        let scope = stored_scope(&company, &user)?;
        let Some(level) = load_level(state, &scope).await? else { continue };
        let sealed = match with_secrets {
            true => level.secrets().into_iter().map(|(p, s)| (p, state.keys.seal(&secret_aad(&scope, p), s))).collect(),
            false => BTreeMap::new(),
        };
        levels.push(LevelEntry { doc: level.to_doc(), scope, sealed });
    }
    let text = file::render(&companies, &levels, with_secrets).context("cannot write the configuration as TOML")?;
    Ok(text)
}

fn stored_slug(slug: &str) -> ServiceResult<CompanySlug> {
    CompanySlug::parse("slug", slug).map_err(|e| anyhow::anyhow!("a stored company: {e}").into())
}

/// The scope of a stored level from its key: `("", "")` global, `(slug, "")` a company's.
pub(crate) fn stored_scope(company: &str, user: &str) -> ServiceResult<Scope> {
    if company.is_empty() {
        return Ok(Scope::Global);
    }
    let company = stored_slug(company)?;
    if user.is_empty() {
        return Ok(Scope::Company(company));
    }
    let user = UserRef::parse("user", user).map_err(|e| anyhow::anyhow!("a stored level: {e}"))?;
    Ok(Scope::User(company, user))
}

/// Checks a whole file against the store: every mistake, or what applying it would change.
pub async fn plan(state: &AppState, text: &str) -> Result<Plan, ImportError> {
    let (file, mut errors) = ConfigFile::parse(text);
    let stored: HashMap<String, CompanyRow> =
        state.store.companies().await.map_err(ServiceError::from)?.into_iter().map(|r| (r.slug.clone(), r)).collect();
    let mut companies = Vec::new();
    for entry in &file.companies {
        match company_update(entry, stored.get(entry.slug.as_str())) {
            Ok(update) => companies.extend(update),
            Err(e) => errors.extend(e),
        }
    }
    let mut levels = Vec::new();
    for entry in &file.levels {
        let before = load_level(state, &entry.scope).await?;
        match checked_level(state, entry, before.as_ref()) {
            Ok(after) => levels.push(LevelUpdate { scope: entry.scope.clone(), before, after }),
            Err(e) => errors.extend(e),
        }
    }
    errors.extend(default_senders(state, &levels).await?);
    if !errors.is_empty() {
        return Err(ImportError::Invalid(errors));
    }
    levels.retain(|l| l.before.is_none() || !l.changes().is_empty());
    Ok(Plan { companies, levels })
}

/// A company to create (it needs a name) or whose given name or address differ from the stored ones.
fn company_update(entry: &CompanyEntry, stored: Option<&CompanyRow>) -> Result<Option<CompanyUpdate>, Vec<FileError>> {
    let path = company_path(&entry.slug);
    let name = match (&entry.name, stored) {
        (Some(name), _) => name.clone(),
        (None, Some(row)) => row.name.clone(),
        (None, None) => {
            return Err(vec![FileError::new(
                join(&path, "name"),
                format!("name is required: there is no company {} yet, and the file creates it", entry.slug),
            )]);
        }
    };
    let email = entry.email.clone().or_else(|| stored.and_then(|r| r.email.clone()));
    let identity = Identity::parse(&name, email.as_deref())
        .map_err(|errors| errors.0.iter().map(|e| FileError::at(&path, e)).collect::<Vec<_>>())?;
    let row = CompanyRow {
        slug: entry.slug.as_str().to_owned(),
        name: identity.name.as_str().to_owned(),
        email: identity.email.map(|e| e.as_str().to_owned()),
        created_at: stored.map_or_else(now_ms, |r| r.created_at),
    };
    let unchanged = stored.is_some_and(|s| s.name == row.name && s.email == row.email);
    Ok((!unchanged).then(|| CompanyUpdate { row, before: stored.cloned() }))
}

/// A level of the file with its sealed secrets opened, checked as the API checks a saved level.
fn checked_level(state: &AppState, entry: &LevelEntry, stored: Option<&Level>) -> Result<Level, Vec<FileError>> {
    let path = level_path(&entry.scope);
    let mut doc = entry.doc.clone();
    let mut errors = Vec::new();
    for (secret, sealed) in &entry.sealed {
        match state.keys.open(&secret_aad(&entry.scope, secret), sealed) {
            Ok(opened) => file::set_secret(&mut doc, secret, &opened),
            Err(_) => errors.push(FileError::new(
                join(&path, &format!("{secret}{SEALED_SUFFIX}")),
                "cannot be opened: it was sealed with another master key, or for another level or field; \
                 start carteiro with the master key of the installation that exported it, or give the secret again",
            )),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let level =
        Level::parse(&doc, stored).map_err(|e| e.0.iter().map(|e| FileError::at(&path, e)).collect::<Vec<_>>())?;
    check_ca_certificates(&level).map_err(|e| vec![FileError::at(&path, &e)])?;
    Ok(level)
}

/// A level that switches the default sender on needs an address, its own or
/// inherited, as the levels will be once the file is applied.
async fn default_senders(state: &AppState, levels: &[LevelUpdate]) -> ServiceResult<Vec<FileError>> {
    let planned: HashMap<&Scope, &Level> = levels.iter().map(|l| (&l.scope, &l.after)).collect();
    let mut errors = Vec::new();
    for update in levels.iter().filter(|l| l.after.policy.default_sender_enabled == Some(true)) {
        let mut chain = [None, None, None];
        for scope in scopes_above(&update.scope) {
            chain[slot(&scope)] = match planned.get(&scope) {
                Some(level) => Some((*level).clone()),
                None => load_level(state, &scope).await?,
            };
        }
        if let Err(e) = default_sender_address_in(&chain) {
            errors.push(FileError::at(&level_path(&update.scope), &e));
        }
    }
    Ok(errors)
}

/// The scope and the ones it inherits from, most general first.
fn scopes_above(scope: &Scope) -> Vec<Scope> {
    match scope {
        Scope::Global => vec![Scope::Global],
        Scope::Company(c) => vec![Scope::Global, Scope::Company(c.clone())],
        Scope::User(c, _) => vec![Scope::Global, Scope::Company(c.clone()), scope.clone()],
    }
}

/// Writes a checked plan in one transaction, with its audit entries; with
/// `file_sha256`, remembers the file as the one `serve --config` applied.
pub async fn apply(state: &AppState, plan: &Plan, file_sha256: Option<String>) -> ServiceResult<()> {
    if plan.is_empty() && file_sha256.is_none() {
        return Ok(());
    }
    let at = now_ms();
    let mut write = ConfigWrite { at, actor: ACTOR.to_owned(), file_sha256, ..ConfigWrite::default() };
    for update in &plan.companies {
        let fields = company_changes(update).into_iter().map(|c| c.path.rsplit('.').next().unwrap_or("").to_owned());
        write.audit.push(AuditRow {
            at,
            actor: ACTOR.to_owned(),
            action: if update.before.is_some() { "company.update" } else { "company.create" }.to_owned(),
            company: Some(update.row.slug.clone()),
            target: format!("company:{}", update.row.slug),
            fields: fields.collect(),
        });
        write.companies.push(update.row.clone());
    }
    for update in &plan.levels {
        write.levels.push((update.scope.clone(), level_row(state, &update.scope, &update.after)?));
        write.audit.push(AuditRow {
            at,
            actor: ACTOR.to_owned(),
            action: "settings.update".to_owned(),
            company: match &update.scope {
                Scope::Global => None,
                Scope::Company(c) | Scope::User(c, _) => Some(c.as_str().to_owned()),
            },
            target: update.scope.key(),
            fields: update.after.changed_fields(update.before.as_ref()),
        });
    }
    state.store.apply_config(&write).await?;
    state.configuration_changed();
    Ok(())
}

/// What `serve --config` did with the file.
#[derive(Debug)]
pub enum OnStart {
    /// The same file was applied before: the settings as they are now are kept.
    Unchanged,
    Applied {
        changes: usize,
        summary: String,
    },
}

/// The SHA-256 of a file's bytes, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Applies the file at start, unless it is the very file applied last time
/// (then values changed since in the console or the API are kept).
pub async fn apply_on_start(state: &AppState, path: &Path) -> anyhow::Result<OnStart> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read the configuration file {}", path.display()))?;
    let sha256 = sha256_hex(&bytes);
    if state.store.applied_config_sha256().await.map_err(anyhow::Error::from)?.as_deref() == Some(sha256.as_str()) {
        return Ok(OnStart::Unchanged);
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("the configuration file {} is not UTF-8 text", path.display()))?;
    let plan = plan(state, &text).await.map_err(|e| anyhow::anyhow!("{}: {e:#}", path.display()))?;
    apply(state, &plan, Some(sha256)).await.map_err(|e| anyhow::anyhow!("{e:#}"))?;
    Ok(OnStart::Applied { changes: plan.changes().len(), summary: plan.summary() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_every_error_on_its_own_line() {
        let error = ImportError::Invalid(vec![
            FileError::new("global.connection.port", "port must be between 1 and 65535, got 0"),
            FileError::new("companies.acme.name", "name must not be empty"),
        ]);
        assert_eq!(
            error.to_string(),
            "the configuration file has 2 errors; nothing was changed\n  \
             global.connection.port: port must be between 1 and 65535, got 0\n  \
             companies.acme.name: name must not be empty"
        );
    }

    #[test]
    fn a_company_is_created_with_a_name_and_updated_only_when_it_differs() {
        let slug = CompanySlug::parse("slug", "acme").unwrap();
        let entry = |name: Option<&str>, email: Option<&str>| CompanyEntry {
            slug: slug.clone(),
            name: name.map(str::to_owned),
            email: email.map(str::to_owned),
        };
        let missing = company_update(&entry(None, None), None).unwrap_err();
        assert_eq!(missing[0].path, "companies.acme.name");
        let created = company_update(&entry(Some("ACME"), Some("a@acme.example")), None).unwrap().unwrap();
        assert_eq!(
            company_changes(&created).iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["+ companies.acme.name: \"ACME\"", "+ companies.acme.email: \"a@acme.example\""]
        );
        let stored = created.row.clone();
        assert!(company_update(&entry(None, None), Some(&stored)).unwrap().is_none(), "a slug alone changes nothing");
        assert!(company_update(&entry(Some("ACME"), None), Some(&stored)).unwrap().is_none());
        let renamed = company_update(&entry(Some("ACME Ltda"), None), Some(&stored)).unwrap().unwrap();
        assert_eq!(renamed.row.created_at, stored.created_at);
        assert_eq!(renamed.row.email.as_deref(), Some("a@acme.example"), "an address left out is kept");
        let bad = company_update(&entry(Some("ACME"), Some("not an address")), Some(&stored)).unwrap_err();
        assert_eq!(bad[0].path, "companies.acme.email");
    }

    #[test]
    fn a_level_inherits_from_the_levels_above_it() {
        let acme = CompanySlug::parse("slug", "acme").unwrap();
        let ana = UserRef::parse("user", "ana").unwrap();
        let user = Scope::User(acme.clone(), ana);
        assert_eq!(scopes_above(&user), [Scope::Global, Scope::Company(acme), user.clone()]);
        assert_eq!(scopes_above(&Scope::Global), [Scope::Global]);
    }
}
