//! The settings form: every field of a settings document (SPEC §7) as an
//! HTML input named by its path (`connection.host`, `policy.bundle_enabled`),
//! shown with its help, the value it inherits and the rule it breaks; and
//! the posted form read back into a document, which the same checks as the
//! API's then judge.

use std::collections::BTreeMap;

use carteiro_core::settings::SettingsDoc;
use carteiro_core::{FieldError, FieldErrors};
use serde_json::{Map, Value};

use super::texts::Texts;
use crate::i18n::Lang;

/// The values of a posted form, by name (the last one wins).
#[derive(Debug, Default, Clone)]
pub struct Posted(BTreeMap<String, String>);

impl Posted {
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Self(pairs.into_iter().collect())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// A value with its blanks trimmed, when not blank.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty())
    }
}

/// Which level a form edits: the global one has no switch of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LevelKind {
    Global,
    Company,
    User,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Text,
    /// Multi-line text.
    Long,
    /// Write-only: never shown, blank keeps the stored one.
    Secret,
    Number,
    /// A checkbox of the connection block (written only when not its default).
    Flag {
        default: bool,
    },
    /// Yes, no, or inherit: a field of the policy block.
    Tri,
    Choice(&'static [(&'static str, Words)]),
}

/// An option's words: the same in every language, or a text of the console.
#[derive(Debug, Clone, Copy)]
enum Words {
    Same(&'static str),
    Text(fn(&Texts) -> &'static str),
}

impl Words {
    fn get(self, t: &Texts) -> &'static str {
        match self {
            Self::Same(words) => words,
            Self::Text(pick) => pick(t),
        }
    }
}

struct Spec {
    path: &'static str,
    kind: Kind,
    label: fn(&Texts) -> &'static str,
    help: fn(&Texts) -> &'static str,
}

const fn spec(
    path: &'static str,
    kind: Kind,
    label: fn(&Texts) -> &'static str,
    help: fn(&Texts) -> &'static str,
) -> Spec {
    Spec { path, kind, label, help }
}

fn none(_: &Texts) -> &'static str {
    ""
}

const INHERIT: (&str, Words) = ("", Words::Text(|t| t.inherit));

const CONNECTION: &[Spec] = &[
    spec(
        "connection.transport",
        Kind::Choice(&[
            ("smtp", Words::Same("SMTP")),
            ("sendmail", Words::Same("sendmail")),
            ("pickup", Words::Same("pickup")),
            ("capture", Words::Same("capture")),
        ]),
        |t| t.transport,
        |t| t.transport_help,
    ),
    spec("connection.host", Kind::Text, |t| t.host, |t| t.host_help),
    spec("connection.port", Kind::Number, |t| t.port, |t| t.port_help),
    spec(
        "connection.security",
        Kind::Choice(&[
            ("none", Words::Text(|t| t.security_none)),
            ("starttls", Words::Same("STARTTLS")),
            ("tls", Words::Same("TLS-SSL")),
        ]),
        |t| t.security,
        |t| t.security_help,
    ),
    spec("connection.auth_enabled", Kind::Flag { default: false }, |t| t.auth_enabled, |t| t.auth_help),
    spec(
        "connection.auth_mechanism",
        Kind::Choice(&[
            ("auto", Words::Text(|t| t.automatic)),
            ("plain", Words::Same("PLAIN")),
            ("login", Words::Same("LOGIN")),
            ("xoauth2", Words::Same("XOAUTH2")),
        ]),
        |t| t.auth_mechanism,
        |t| t.auth_mechanism_help,
    ),
    spec("connection.username", Kind::Text, |t| t.smtp_user, none),
    spec("connection.password", Kind::Secret, |t| t.password, |t| t.secret_help),
    spec("connection.timeout_s", Kind::Number, |t| t.timeout, |t| t.timeout_help),
    spec("connection.tls_verify", Kind::Flag { default: true }, |t| t.tls_verify, |t| t.tls_verify_help),
    spec("connection.tls_ca_pem", Kind::Long, |t| t.tls_ca, |t| t.tls_ca_help),
    spec("connection.max_sessions", Kind::Number, |t| t.max_sessions, |t| t.max_sessions_help),
    spec("connection.rate_per_minute", Kind::Number, |t| t.rate, |t| t.rate_help),
    spec("connection.sendmail_command", Kind::Text, |t| t.sendmail_command, |t| t.sendmail_command_help),
    spec("connection.pickup_dir", Kind::Text, |t| t.pickup_dir, |t| t.pickup_dir_help),
];

const PROXY: &[Spec] = &[
    spec("connection.proxy.enabled", Kind::Flag { default: false }, |t| t.proxy_enabled, |t| t.proxy_enabled_help),
    spec(
        "connection.proxy.kind",
        Kind::Choice(&[("socks5", Words::Same("SOCKS5")), ("http", Words::Same("HTTP CONNECT"))]),
        |t| t.proxy_kind,
        none,
    ),
    spec("connection.proxy.address", Kind::Text, |t| t.proxy_address, |t| t.proxy_address_help),
    spec("connection.proxy.port", Kind::Number, |t| t.proxy_port, none),
    spec("connection.proxy.username", Kind::Text, |t| t.proxy_user, none),
    spec("connection.proxy.password", Kind::Secret, |t| t.proxy_password, |t| t.secret_help),
];

const OAUTH: &[Spec] = &[
    spec("connection.oauth.access_token", Kind::Secret, |t| t.oauth_access_token, |t| t.oauth_access_token_help),
    spec("connection.oauth.token_url", Kind::Text, |t| t.oauth_token_url, |t| t.oauth_token_url_help),
    spec("connection.oauth.client_id", Kind::Text, |t| t.oauth_client_id, none),
    spec("connection.oauth.client_secret", Kind::Secret, |t| t.oauth_client_secret, |t| t.secret_help),
    spec("connection.oauth.refresh_token", Kind::Secret, |t| t.oauth_refresh_token, |t| t.secret_help),
    spec("connection.oauth.tenant", Kind::Text, |t| t.oauth_tenant, none),
    spec("connection.oauth.scope", Kind::Text, |t| t.oauth_scope, none),
];

const POLICY: &[Spec] = &[
    spec("policy.default_sender_enabled", Kind::Tri, |t| t.default_sender_enabled, |t| t.default_sender_enabled_help),
    spec("policy.default_sender_name", Kind::Text, |t| t.default_sender_name, none),
    spec("policy.default_sender_address", Kind::Text, |t| t.default_sender_address, |t| t.default_sender_address_help),
    spec("policy.force_default_sender", Kind::Tri, |t| t.force_default_sender, |t| t.force_default_sender_help),
    spec("policy.bundle_enabled", Kind::Tri, |t| t.bundle_enabled, |t| t.bundle_enabled_help),
    spec("policy.bundle_interval_ms", Kind::Number, |t| t.bundle_interval, |t| t.bundle_interval_help),
    spec(
        "policy.send_as_others",
        Kind::Choice(&[
            INHERIT,
            ("allowed", Words::Text(|t| t.send_as_allowed)),
            ("on_behalf", Words::Text(|t| t.send_as_on_behalf)),
            ("rewrite", Words::Text(|t| t.send_as_rewrite)),
        ]),
        |t| t.send_as_others,
        |t| t.send_as_others_help,
    ),
];

const ENABLED: &str = "connection.enabled";

fn all_specs() -> impl Iterator<Item = &'static Spec> {
    CONNECTION.iter().chain(PROXY).chain(OAUTH).chain(POLICY)
}

/// The form's values from a stored level's document (secrets are never in it).
pub fn values_of(doc: &SettingsDoc) -> BTreeMap<String, String> {
    let mut values = BTreeMap::new();
    if let Ok(value) = serde_json::to_value(doc) {
        flatten("", &value, &mut values);
    }
    if doc.connection.as_ref().is_some_and(|c| c.enabled != Some(false)) {
        values.insert(ENABLED.to_owned(), "true".to_owned());
    }
    values
}

fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, String>) {
    let text = match value {
        Value::Object(map) => {
            for (key, inner) in map {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                flatten(&path, inner, out);
            }
            return;
        }
        Value::Null => return,
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    out.insert(prefix.to_owned(), text);
}

/// The values typed into a posted form (secrets left out: never echoed).
pub fn values_posted(posted: &Posted) -> BTreeMap<String, String> {
    let mut values: BTreeMap<String, String> = all_specs()
        .filter(|s| !matches!(s.kind, Kind::Secret))
        .filter_map(|s| {
            let value = match s.kind {
                Kind::Flag { .. } => {
                    posted.get(s.path).map(|_| "true".to_owned()).unwrap_or_else(|| "false".to_owned())
                }
                _ => posted.get(s.path)?.to_owned(),
            };
            Some((s.path.to_owned(), value))
        })
        .collect();
    if posted.get(ENABLED).is_some() {
        values.insert(ENABLED.to_owned(), "true".to_owned());
    }
    values
}

/// Reads a posted form into a settings document. Only what the form itself
/// can tell is checked here (a number that is not one); the level's rules
/// are the service's, as for the API.
pub fn read(kind: LevelKind, posted: &Posted) -> Result<SettingsDoc, FieldErrors> {
    let mut errors = FieldErrors::default();
    let mut root = Map::new();
    let mut put = |path: &str, value: Value| {
        let mut node = &mut root;
        let mut keys = path.split('.').peekable();
        while let Some(key) = keys.next() {
            if keys.peek().is_none() {
                node.insert(key.to_owned(), value);
                break;
            }
            node = node
                .entry(key.to_owned())
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
                .expect("an object");
        }
    };
    let given = |spec: &Spec| -> Option<Value> {
        match spec.kind {
            Kind::Text | Kind::Long => posted.text(spec.path).map(|v| Value::String(v.to_owned())),
            Kind::Secret => posted.get(spec.path).filter(|v| !v.is_empty()).map(|v| Value::String(v.to_owned())),
            Kind::Number => None,
            Kind::Flag { default } => {
                let on = posted.get(spec.path).is_some();
                (on != default).then_some(Value::Bool(on))
            }
            Kind::Tri => match posted.text(spec.path) {
                Some("true") => Some(Value::Bool(true)),
                Some("false") => Some(Value::Bool(false)),
                _ => None,
            },
            // The first choice is what an unset field means: written only when another is chosen.
            Kind::Choice(options) => posted
                .text(spec.path)
                .filter(|v| options.first().is_none_or(|(default, _)| v != default))
                .map(|v| Value::String(v.to_owned())),
        }
    };
    let number = |spec: &Spec, errors: &mut FieldErrors| -> Option<Value> {
        let raw = posted.text(spec.path)?;
        match raw.parse::<i64>() {
            Ok(n) => Some(Value::from(n)),
            Err(_) => {
                errors.push(FieldError::new(spec.path, format!("{} must be a whole number, got {raw:?}", spec.path)));
                None
            }
        }
    };
    let values_of = |specs: &[Spec], errors: &mut FieldErrors| -> Vec<(&'static str, Value)> {
        specs
            .iter()
            .filter_map(|s| {
                let value = if matches!(s.kind, Kind::Number) { number(s, errors) } else { given(s) };
                value.map(|v| (s.path, v))
            })
            .collect()
    };
    let connection = values_of(CONNECTION, &mut errors);
    let proxy = values_of(PROXY, &mut errors);
    let oauth = values_of(OAUTH, &mut errors);
    let policy = values_of(POLICY, &mut errors);

    // A block is written when something in it is given; the connection of a
    // company or user level also when its switch is on (and then with it).
    let switched_on = posted.get(ENABLED).is_some();
    // Checkboxes alone (certificate verification off, say) do not make a connection.
    let is_flag = |path: &str| all_specs().any(|s| s.path == path && matches!(s.kind, Kind::Flag { .. }));
    let something = connection.iter().chain(&proxy).chain(&oauth).any(|(path, _)| !is_flag(path));
    let write_connection = match kind {
        LevelKind::Global => something,
        LevelKind::Company | LevelKind::User => switched_on || something,
    };
    if write_connection {
        if kind != LevelKind::Global {
            put(ENABLED, Value::Bool(switched_on));
        }
        for (path, value) in connection.into_iter().chain(proxy).chain(oauth) {
            put(path, value);
        }
    }
    for (path, value) in policy {
        put(path, value);
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    serde_json::from_value(Value::Object(root))
        .map_err(|e| FieldError::new("", format!("the form cannot be read: {e}")).into())
}

/// One input of the form, ready to show.
pub struct Field {
    pub path: &'static str,
    /// The element id: the path with dashes.
    pub id: String,
    pub label: &'static str,
    pub help: &'static str,
    /// `text`, `long`, `secret`, `number`, `flag` or `choice`.
    pub widget: &'static str,
    pub value: String,
    pub checked: bool,
    pub choices: Vec<Choice>,
    /// A secret is stored for this field.
    pub stored: bool,
    pub inherited: Option<String>,
    pub error: Option<String>,
}

pub struct Choice {
    pub value: &'static str,
    pub label: String,
    pub selected: bool,
}

pub struct Section {
    pub id: &'static str,
    pub title: &'static str,
    pub fields: Vec<Field>,
}

/// The form of one level, as shown.
pub struct SettingsForm {
    /// The "enable specific e-mail sending" switch (company and user levels).
    pub enabled: Option<Field>,
    /// What the level above has in force, shown beside the switch.
    pub inherited_connection: Option<String>,
    pub sections: Vec<Section>,
    /// Errors that belong to no single field (a whole block, say).
    pub other_errors: Vec<String>,
}

impl SettingsForm {
    /// `above`: what the levels above this one have in force ([`carteiro_core::settings::Effective::explain`]).
    pub fn new(
        lang: Lang,
        t: &Texts,
        kind: LevelKind,
        values: &BTreeMap<String, String>,
        above: &Value,
        errors: &FieldErrors,
    ) -> Self {
        let mut other_errors: Vec<String> = Vec::new();
        let known = |path: &str| all_specs().any(|s| s.path == path) || path == ENABLED;
        for error in &errors.0 {
            if !known(&error.field) {
                other_errors.push(lang.rule(&error.message));
            }
        }
        let field = |spec: &Spec| build_field(lang, t, spec, values, above, errors);
        let section = |id, title, specs: &[Spec]| Section { id, title, fields: specs.iter().map(field).collect() };
        let (enabled, inherited_connection) = match kind {
            LevelKind::Global => (None, None),
            LevelKind::Company | LevelKind::User => {
                let help = if kind == LevelKind::Company {
                    |t: &Texts| t.enabled_help_company
                } else {
                    |t: &Texts| t.enabled_help_user
                };
                let switch = spec(ENABLED, Kind::Flag { default: false }, |t| t.enabled, help);
                (
                    Some(build_field(lang, t, &switch, values, above, errors)),
                    Some(connection_summary(t, &above["connection"])),
                )
            }
        };
        Self {
            enabled,
            inherited_connection,
            sections: vec![
                section("connection", t.section_connection, CONNECTION),
                section("proxy", t.section_proxy, PROXY),
                section("oauth", t.section_oauth, OAUTH),
                section("policy", t.section_policy, POLICY),
            ],
            other_errors,
        }
    }
}

fn build_field(
    lang: Lang,
    t: &Texts,
    spec: &Spec,
    values: &BTreeMap<String, String>,
    above: &Value,
    errors: &FieldErrors,
) -> Field {
    let label = (spec.label)(t);
    let value = values.get(spec.path).cloned().unwrap_or_default();
    let (widget, checked, choices) = match spec.kind {
        Kind::Text => ("text", false, Vec::new()),
        Kind::Long => ("long", false, Vec::new()),
        Kind::Secret => ("secret", false, Vec::new()),
        Kind::Number => ("number", false, Vec::new()),
        Kind::Flag { default } => ("flag", values.get(spec.path).map_or(default, |v| v == "true"), Vec::new()),
        Kind::Tri => {
            let options = [INHERIT, ("true", Words::Text(|t| t.yes)), ("false", Words::Text(|t| t.no))];
            ("choice", false, choices(t, &options, &value))
        }
        Kind::Choice(options) => ("choice", false, choices(t, options, &value)),
    };
    let stored =
        matches!(spec.kind, Kind::Secret) && values.get(&format!("{}_set", spec.path)).is_some_and(|v| v == "true");
    let error = errors.0.iter().find(|e| e.field == spec.path).map(|e| {
        // The label is what the reader sees: it stands for the path the rule begins with.
        let message = lang.rule(&e.message);
        match message.strip_prefix(spec.path) {
            Some(rest) => format!("{label}:{rest}"),
            None => message,
        }
    });
    Field {
        path: spec.path,
        id: spec.path.replace('.', "-"),
        label,
        help: (spec.help)(t),
        widget,
        value,
        checked,
        choices,
        stored,
        inherited: inherited(t, spec, above),
        error,
    }
}

fn choices(t: &Texts, options: &[(&'static str, Words)], value: &str) -> Vec<Choice> {
    options
        .iter()
        .map(|(v, words)| Choice { value: v, label: words.get(t).to_owned(), selected: *v == value })
        .collect()
}

/// "inherits Yes (global)": what a policy field left unset takes from above.
fn inherited(t: &Texts, spec: &Spec, above: &Value) -> Option<String> {
    let key = spec.path.strip_prefix("policy.")?;
    let entry = &above["policy"][key];
    let value = match &entry["value"] {
        Value::Bool(true) => t.yes.to_owned(),
        Value::Bool(false) => t.no.to_owned(),
        Value::Null => t.not_set.to_owned(),
        Value::String(s) => match spec.kind {
            Kind::Choice(options) => {
                options.iter().find(|(v, _)| v == s).map_or_else(|| s.clone(), |(_, w)| w.get(t).to_owned())
            }
            _ => s.clone(),
        },
        other => other.to_string(),
    };
    Some(format!("{} {value} ({})", t.inherits, t.source(entry["source"].as_str().unwrap_or("default"))))
}

/// The connection in force above, in one line: "smtp.example.com:587 STARTTLS (global)".
fn connection_summary(t: &Texts, connection: &Value) -> String {
    if connection.is_null() {
        return t.no_connection.to_owned();
    }
    let source = t.source(connection["source"].as_str().unwrap_or("default"));
    let transport = connection["transport"]["value"].as_str().unwrap_or("smtp");
    let what = if transport == "smtp" {
        let security = match connection["security"]["value"].as_str() {
            Some("starttls") => "STARTTLS",
            Some("tls") => "TLS-SSL",
            _ => t.security_none,
        };
        format!(
            "{}:{} · {} · {}",
            connection["host"]["value"].as_str().unwrap_or("?"),
            connection["port"]["value"],
            security,
            connection["username"]["value"].as_str().unwrap_or("—")
        )
    } else {
        transport.to_owned()
    };
    format!("{what} ({source})")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn posted(pairs: &[(&str, &str)]) -> Posted {
        Posted::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn a_company_form_becomes_the_api_document() {
        let form = posted(&[
            ("connection.enabled", "true"),
            ("connection.transport", "smtp"),
            ("connection.host", " smtp.acme.example "),
            ("connection.port", "587"),
            ("connection.security", "starttls"),
            ("connection.auth_enabled", "true"),
            ("connection.username", "u"),
            ("connection.password", ""),
            ("connection.tls_verify", "true"),
            ("connection.proxy.kind", "socks5"),
            ("policy.default_sender_enabled", "true"),
            ("policy.force_default_sender", ""),
            ("policy.send_as_others", ""),
        ]);
        let doc = serde_json::to_value(read(LevelKind::Company, &form).unwrap()).unwrap();
        let c = &doc["connection"];
        assert_eq!(c["enabled"], true);
        assert_eq!(c["host"], "smtp.acme.example");
        assert_eq!(c["port"], 587);
        assert_eq!(c["auth_enabled"], true);
        assert!(c["password"].is_null(), "a blank password keeps the stored one");
        assert!(c["tls_verify"].is_null(), "verification on is the default");
        assert_eq!(doc["policy"]["default_sender_enabled"], true);
        assert!(doc["policy"]["force_default_sender"].is_null(), "inherit leaves it unset");
    }

    #[test]
    fn a_switched_off_empty_connection_is_no_block_and_numbers_are_checked() {
        let doc =
            read(LevelKind::Company, &posted(&[("connection.transport", "smtp"), ("connection.proxy.kind", "socks5")]))
                .unwrap();
        assert!(doc.connection.is_none());
        let errors = read(LevelKind::Global, &posted(&[("connection.timeout_s", "soon")])).unwrap_err();
        assert_eq!(errors.0[0].field, "connection.timeout_s");
        assert!(errors.0[0].message.contains("must be a whole number"));
    }

    #[test]
    fn stored_values_fill_the_form() {
        let form = posted(&[
            ("connection.host", "smtp.example.com"),
            ("connection.port", "25"),
            ("policy.bundle_enabled", "false"),
            ("policy.bundle_interval_ms", "500"),
        ]);
        let doc = read(LevelKind::Global, &form).unwrap();
        let values = values_of(&doc);
        assert_eq!(values["connection.host"], "smtp.example.com");
        assert_eq!(values["connection.port"], "25");
        assert_eq!(values["policy.bundle_enabled"], "false");
        assert_eq!(values["policy.bundle_interval_ms"], "500");
    }
}
