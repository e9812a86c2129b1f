//! Layered e-mail settings (SPEC §1): global → company → user, the most
//! specific enabled level wins. The connection block is atomic; the policy
//! block is inherited field by field. Every resolved value knows its source.

pub mod connection;
pub mod doc;
pub mod oauth;
pub mod policy;
pub mod proxy;
pub mod values;

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

pub use connection::{
    Connection, ConnectionBlock, Credential, HostReach, LaneLimits, Login, PasswordMechanism, SmtpServer, Transport,
    TransportKind,
};
pub use doc::{ConnectionDoc, OAuthDoc, PolicyDoc, ProxyDoc, SettingsDoc, WriteOnly};
pub use oauth::OAuth;
pub use policy::{BundleInterval, Policy, PolicyPatch, SendAsOthers, Source, Sourced};
pub use proxy::{Proxy, ProxyAt, ProxyKind};
pub use values::{AuthMechanism, Host, Port, Security, TimeoutSecs};

use crate::error::FieldErrors;
use crate::id::{CompanySlug, UserRef};
use crate::secret::Secret;

/// Which level a document belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    Global,
    Company(CompanySlug),
    User(CompanySlug, UserRef),
}

impl Scope {
    pub fn source(&self) -> Source {
        match self {
            Self::Global => Source::Global,
            Self::Company(_) => Source::Company,
            Self::User(..) => Source::User,
        }
    }

    /// `global`, `company:acme`, `user:acme:42`: how audit entries and sealed secrets name a level.
    pub fn key(&self) -> String {
        match self {
            Self::Global => "global".to_owned(),
            Self::Company(c) => format!("company:{c}"),
            Self::User(c, u) => format!("user:{c}:{u}"),
        }
    }
}

/// One level's settings, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Level {
    pub connection: Option<ConnectionBlock>,
    pub policy: PolicyPatch,
}

impl Level {
    /// Parses a document that replaces a level. `stored` is the level as it is
    /// now: a blank password keeps the stored one.
    pub fn parse(doc: &SettingsDoc, stored: Option<&Level>) -> Result<Self, FieldErrors> {
        let stored = stored.and_then(|l| l.connection.as_ref());
        Self::with_connection(doc, |c| ConnectionBlock::parse(c, stored))
    }

    /// Parses a stored document, whose secrets are kept apart (sealed), by their path.
    pub fn parse_stored(doc: &SettingsDoc, secrets: &BTreeMap<String, Secret>) -> Result<Self, FieldErrors> {
        let lookup = |path: &str| secrets.get(path);
        Self::with_connection(doc, |c| ConnectionBlock::parse_with(c, connection::stored_secrets(&lookup)))
    }

    fn with_connection(
        doc: &SettingsDoc,
        parse_connection: impl FnOnce(&ConnectionDoc) -> Result<ConnectionBlock, FieldErrors>,
    ) -> Result<Self, FieldErrors> {
        let connection = doc.connection.as_ref().map(parse_connection);
        let policy = PolicyPatch::parse(doc.policy.as_ref().unwrap_or(&PolicyDoc::default()));
        match (connection.transpose(), policy) {
            (Ok(connection), Ok(policy)) => Ok(Self { connection, policy }),
            (connection, policy) => {
                let mut errors = FieldErrors::default();
                errors.0.extend(connection.err().into_iter().flat_map(|e| e.0));
                errors.0.extend(policy.err().into_iter().flat_map(|e| e.0));
                Err(errors)
            }
        }
    }

    pub fn to_doc(&self) -> SettingsDoc {
        SettingsDoc {
            connection: self.connection.as_ref().map(ConnectionBlock::to_doc),
            policy: Some(self.policy.to_doc()),
        }
    }

    /// Every secret of the level, by its path in the document.
    pub fn secrets(&self) -> Vec<(&'static str, &Secret)> {
        self.connection.as_ref().map(ConnectionBlock::secrets).unwrap_or_default()
    }

    pub fn password(&self) -> Option<&Secret> {
        self.connection.as_ref().and_then(|c| c.password.as_ref())
    }

    /// The dotted names of the fields that differ from `before`: what an audit
    /// entry records. A new secret counts as a change; its value never appears.
    pub fn changed_fields(&self, before: Option<&Level>) -> Vec<String> {
        let before = before.cloned().unwrap_or_default();
        let as_json = |level: &Level| serde_json::to_value(level.to_doc()).unwrap_or_default();
        let mut changed = Vec::new();
        diff_json("", &as_json(&before), &as_json(self), &mut changed);
        changed.retain(|field| !field.ends_with("_set"));
        let (now, then): (BTreeMap<_, _>, BTreeMap<_, _>) =
            (self.secrets().into_iter().collect(), before.secrets().into_iter().collect());
        for path in now.keys().chain(then.keys()).collect::<std::collections::BTreeSet<_>>() {
            if now.get(path) != then.get(path) {
                changed.push((*path).to_owned());
            }
        }
        changed
    }
}

/// Collects the dotted paths where two documents differ; a missing object counts as empty.
fn diff_json(prefix: &str, before: &Value, after: &Value, out: &mut Vec<String>) {
    if before.as_object().is_none() && after.as_object().is_none() {
        if before != after {
            out.push(prefix.to_owned());
        }
        return;
    }
    let empty = Map::new();
    let (b, a) = (before.as_object().unwrap_or(&empty), after.as_object().unwrap_or(&empty));
    let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        diff_json(&path, b.get(key).unwrap_or(&Value::Null), a.get(key).unwrap_or(&Value::Null), out);
    }
}

/// The levels that apply to one (company, user) pair, any of them absent.
#[derive(Debug, Clone, Copy, Default)]
pub struct Levels<'a> {
    pub global: Option<&'a Level>,
    pub company: Option<&'a Level>,
    pub user: Option<&'a Level>,
}

/// What is in force for one (company, user): the connection (from one level
/// as a whole) and the policy (field by field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    pub connection: Option<Sourced<ConnectionBlock>>,
    pub policy: Policy,
}

impl Effective {
    pub fn resolve(levels: Levels<'_>) -> Self {
        let ordered = [(Source::Global, levels.global), (Source::Company, levels.company), (Source::User, levels.user)];
        let connection = ordered.iter().rev().find_map(|(source, level)| {
            let block = (*level)?.connection.as_ref().filter(|c| c.enabled)?;
            Some(Sourced { value: block.clone(), source: *source })
        });
        let patches: Vec<(Source, &PolicyPatch)> =
            ordered.iter().filter_map(|(source, level)| level.map(|l| (*source, &l.policy))).collect();
        Self { connection, policy: Policy::resolve(&patches) }
    }

    /// The usable connection in force, if any level provides one.
    pub fn connection(&self) -> Option<Connection> {
        self.connection.as_ref().and_then(|c| c.value.connection())
    }

    /// Every value with the level it came from, for `effective-settings`,
    /// `config explain` and the console. Fields a connection block leaves
    /// unset show their default with source `default`. Secrets never appear:
    /// a password shows only whether it is set.
    pub fn explain(&self) -> Value {
        let connection = match (&self.connection, self.connection()) {
            (Some(block), Some(conn)) => explain_connection(&block.value, block.source, &conn),
            _ => Value::Null,
        };
        let p = &self.policy;
        let entry = |value: Value, source: Source| json!({"value": value, "source": source.as_str()});
        json!({
            "connection": connection,
            "policy": {
                "default_sender_enabled": entry(json!(p.default_sender_enabled.value), p.default_sender_enabled.source),
                "default_sender_name": entry(json!(p.default_sender_name.value.as_ref().map(|n| n.as_str())), p.default_sender_name.source),
                "default_sender_address": entry(json!(p.default_sender_address.value.as_ref().map(|a| a.as_str())), p.default_sender_address.source),
                "force_default_sender": entry(json!(p.force_default_sender.value), p.force_default_sender.source),
                "bundle_enabled": entry(json!(p.bundle_enabled.value), p.bundle_enabled.source),
                "bundle_interval_ms": entry(json!(p.bundle_interval.value.millis()), p.bundle_interval.source),
                "send_as_others": entry(json!(p.send_as_others.value.as_str()), p.send_as_others.source),
            }
        })
    }
}

/// The connection block in force, field by field: unset fields show their
/// default with source `default`; a secret shows only whether it is set.
fn explain_connection(b: &ConnectionBlock, source: Source, conn: &Connection) -> Value {
    let from = |set: bool| if set { source } else { Source::Default };
    let entry = |value: Value, source: Source| json!({"value": value, "source": source.as_str()});
    let mut out = json!({
        "source": source.as_str(),
        "transport": entry(json!(b.transport.as_str()), source),
        "timeout_s": entry(json!(conn.timeout.get()), from(b.timeout.is_some())),
        "max_sessions": entry(json!(conn.limits.max_sessions), from(b.max_sessions.is_some())),
        "rate_per_minute": entry(json!(conn.limits.rate_per_minute), source),
    });
    let fields = match &conn.transport {
        Transport::Smtp(s) => json!({
            "host": entry(json!(s.host.as_str()), source),
            "port": entry(json!(s.port.get()), from(b.port.is_some())),
            "security": entry(json!(s.security.as_str()), from(b.security.is_some())),
            "auth_enabled": entry(json!(b.auth_enabled), source),
            "auth_mechanism": entry(json!(b.auth_mechanism.unwrap_or_default().as_str()), from(b.auth_mechanism.is_some())),
            "username": entry(json!(b.username), source),
            "password": {"value": Value::Null, "set": b.password.is_some(), "source": source.as_str()},
            "tls_verify": entry(json!(s.tls_verify), from(b.tls_verify.is_some())),
            "tls_ca_pem": entry(json!(s.tls_ca_pem), source),
            "proxy": entry(json!(b.to_doc().proxy), source),
            "oauth": entry(json!(b.to_doc().oauth), source),
        }),
        Transport::Sendmail { command } => json!({
            "sendmail_command": entry(json!(command.join(" ")), from(b.sendmail_command.is_some())),
        }),
        Transport::Pickup { dir } => json!({"pickup_dir": entry(json!(dir), source)}),
        Transport::Capture => json!({}),
    };
    if let (Value::Object(out), Value::Object(fields)) = (&mut out, fields) {
        out.extend(fields);
    }
    out
}

#[cfg(test)]
mod tests;
