//! What applying a file changes, field by field, as an operator reads it:
//! `~ companies.acme.connection.port: 587 → 465`. Secrets show only that they
//! change, never a value.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use carteiro_core::settings::Level;
use toml::Value;

use super::file::join;

/// Values longer than this are shortened in the listing (a CA certificate, say).
const SHOWN_CHARS: usize = 60;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    Added(String),
    Removed(String),
    Changed { before: String, after: String },
    SecretAdded,
    SecretRemoved,
    SecretChanged,
}

/// One field that changes, by its path in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub path: String,
    pub kind: ChangeKind,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = &self.path;
        match &self.kind {
            ChangeKind::Added(value) => write!(f, "+ {path}: {value}"),
            ChangeKind::Removed(value) => write!(f, "- {path}: {value}"),
            ChangeKind::Changed { before, after } => write!(f, "~ {path}: {before} → {after}"),
            ChangeKind::SecretAdded => write!(f, "+ {path}: (set)"),
            ChangeKind::SecretRemoved => write!(f, "- {path}: (removed)"),
            ChangeKind::SecretChanged => write!(f, "~ {path}: (changed)"),
        }
    }
}

/// A value as the listing shows it: as TOML writes it, shortened when long.
fn shown(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= SHOWN_CHARS {
        return text;
    }
    let head: String = text.chars().take(SHOWN_CHARS - 20).collect();
    format!("{head}… ({} characters)", text.chars().count())
}

/// The change of one field, if any (`None` on a side: absent).
pub fn field_change(path: &str, before: Option<&Value>, after: Option<&Value>) -> Option<Change> {
    let kind = match (before, after) {
        (None, Some(after)) => ChangeKind::Added(shown(after)),
        (Some(before), None) => ChangeKind::Removed(shown(before)),
        (Some(before), Some(after)) if before != after => {
            ChangeKind::Changed { before: shown(before), after: shown(after) }
        }
        _ => return None,
    };
    Some(Change { path: path.to_owned(), kind })
}

/// Every field set in a level's document, by its dotted path, in document
/// order; read-only markers (`password_set`) are left out, secrets are compared apart.
fn fields(level: Option<&Level>) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    if let Some(value) = level.and_then(|l| Value::try_from(l.to_doc()).ok()) {
        flatten("", &value, &mut out);
    }
    out
}

fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Table(table) => {
            for (key, value) in table.iter().filter(|(key, _)| !key.ends_with("_set")) {
                flatten(&join(prefix, key), value, out);
            }
        }
        other => out.push((prefix.to_owned(), other.clone())),
    }
}

/// What replacing `before` (absent: no level stored) with `after` changes, in the level at `level_path`.
pub fn level_changes(level_path: &str, before: Option<&Level>, after: &Level) -> Vec<Change> {
    let (then, now) = (fields(before), fields(Some(after)));
    let (then_map, now_map): (BTreeMap<_, _>, BTreeMap<_, _>) =
        (then.iter().map(|(p, v)| (p, v)).collect(), now.iter().map(|(p, v)| (p, v)).collect());
    // Fields of the new document in its order, then those it no longer has.
    let gone = then.iter().filter(|(p, _)| !now_map.contains_key(p));
    let mut changes: Vec<Change> = now
        .iter()
        .chain(gone)
        .filter_map(|(p, _)| field_change(&join(level_path, p), then_map.get(p).copied(), now_map.get(p).copied()))
        .collect();
    let (then, now): (BTreeMap<_, _>, BTreeMap<_, _>) =
        (before.map(Level::secrets).unwrap_or_default().into_iter().collect(), after.secrets().into_iter().collect());
    for path in then.keys().chain(now.keys()).collect::<BTreeSet<_>>() {
        let kind = match (then.get(path), now.get(path)) {
            (None, Some(_)) => ChangeKind::SecretAdded,
            (Some(_), None) => ChangeKind::SecretRemoved,
            (Some(a), Some(b)) if a != b => ChangeKind::SecretChanged,
            _ => continue,
        };
        changes.push(Change { path: join(level_path, path), kind });
    }
    changes
}

#[cfg(test)]
mod tests {
    use carteiro_core::settings::{ConnectionDoc, PolicyDoc, SettingsDoc, WriteOnly};

    use super::*;

    fn level(port: i64, password: &str, name: Option<&str>) -> Level {
        let doc = SettingsDoc {
            connection: Some(ConnectionDoc {
                host: Some("smtp.acme.example".into()),
                port: Some(port),
                auth_enabled: Some(true),
                username: Some("relay".into()),
                password: Some(WriteOnly(password.into())),
                ..Default::default()
            }),
            policy: Some(PolicyDoc { default_sender_name: name.map(str::to_owned), ..Default::default() }),
        };
        Level::parse(&doc, None).unwrap()
    }

    fn lines(changes: &[Change]) -> Vec<String> {
        changes.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn names_each_changed_field_with_both_values() {
        let changes = level_changes("companies.acme", Some(&level(587, "a", Some("ACME"))), &level(465, "a", None));
        assert_eq!(
            lines(&changes),
            ["~ companies.acme.connection.port: 587 → 465", "- companies.acme.policy.default_sender_name: \"ACME\""]
        );
    }

    #[test]
    fn a_new_level_adds_every_field_and_a_secret_only_as_set() {
        let changes = level_changes("global", None, &level(587, "hunter2", Some("ACME")));
        let said = lines(&changes);
        assert!(said.contains(&"+ global.connection.port: 587".to_owned()), "{said:?}");
        assert!(said.contains(&"+ global.policy.default_sender_name: \"ACME\"".to_owned()), "{said:?}");
        assert_eq!(said.last().unwrap(), "+ global.connection.password: (set)");
        assert!(said.iter().all(|l| !l.contains("hunter2") && !l.contains("_set")), "{said:?}");
    }

    #[test]
    fn a_changed_secret_shows_no_value_and_an_unchanged_level_shows_nothing() {
        let changes = level_changes("global", Some(&level(587, "old-secret", None)), &level(587, "new-secret", None));
        assert_eq!(lines(&changes), ["~ global.connection.password: (changed)"]);
        assert_eq!(level_changes("global", Some(&level(587, "s", None)), &level(587, "s", None)), []);
    }

    #[test]
    fn long_values_are_shortened() {
        let pem = Value::String("x".repeat(500));
        let change = field_change("global.connection.tls_ca_pem", None, Some(&pem)).unwrap();
        let said = change.to_string();
        assert!(said.ends_with("… (502 characters)"), "{said}");
        assert!(said.len() < 120, "{said}");
    }
}
