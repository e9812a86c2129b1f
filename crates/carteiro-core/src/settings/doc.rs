//! The settings document as it travels: JSON in the API, TOML in exports,
//! form fields in the console. Every field optional; absent means inherit.
//! Numbers and choices stay loose here so that [`super::Level::parse`] can
//! name the rule a value breaks instead of a deserializer's type error.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A password as typed into a document: turned into a [`crate::Secret`] when
/// parsed, never printed (`Debug` shows `***`), never read back.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(format = Password, description = "A secret as typed: blank or absent keeps the stored one; never read back")]
pub struct WriteOnly(pub String);

impl fmt::Debug for WriteOnly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "connection": {"enabled": true, "transport": "smtp", "host": "smtp.example.com", "port": 587,
                   "security": "starttls", "auth_enabled": true, "username": "u", "password": "secret", "timeout_s": 60},
    "policy": {"default_sender_enabled": true, "default_sender_name": "ACME",
               "default_sender_address": "noreply@acme.example", "send_as_others": "allowed"}
}))]
pub struct SettingsDoc {
    #[serde(default)]
    pub connection: Option<ConnectionDoc>,
    #[serde(default)]
    pub policy: Option<PolicyDoc>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionDoc {
    /// "Enable specific e-mail sending": a block that is given is on unless it says `false`.
    pub enabled: Option<bool>,
    pub transport: Option<String>,
    pub host: Option<String>,
    pub port: Option<i64>,
    pub security: Option<String>,
    pub auth_enabled: Option<bool>,
    pub auth_mechanism: Option<String>,
    pub username: Option<String>,
    /// Write-only: blank or absent keeps the stored password; never read back.
    pub password: Option<WriteOnly>,
    /// Read-only: whether a password is stored. Ignored on input.
    pub password_set: Option<bool>,
    pub timeout_s: Option<i64>,
    /// Most SMTP sessions open at once to this server (default 4).
    pub max_sessions: Option<i64>,
    /// Most messages per minute sent to this server; absent: no limit.
    pub rate_per_minute: Option<i64>,
    pub tls_verify: Option<bool>,
    pub tls_ca_pem: Option<String>,
    pub proxy: Option<ProxyDoc>,
    /// For `auth_mechanism` `xoauth2`.
    pub oauth: Option<OAuthDoc>,
    /// For the `sendmail` transport: the program and its arguments (default `/usr/sbin/sendmail -t -i`).
    pub sendmail_command: Option<String>,
    /// For the `pickup` transport: the directory an MTA watches.
    pub pickup_dir: Option<String>,
}

/// XOAUTH2: a static access token, or a refresh token with the client (Google), or the
/// client's credentials with a tenant (Microsoft 365). Secrets are write-only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct OAuthDoc {
    pub access_token: Option<WriteOnly>,
    pub access_token_set: Option<bool>,
    pub token_url: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<WriteOnly>,
    pub client_secret_set: Option<bool>,
    pub refresh_token: Option<WriteOnly>,
    pub refresh_token_set: Option<bool>,
    pub tenant: Option<String>,
    pub scope: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyDoc {
    pub enabled: Option<bool>,
    pub kind: Option<String>,
    pub address: Option<String>,
    pub port: Option<i64>,
    pub username: Option<String>,
    pub password: Option<WriteOnly>,
    pub password_set: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyDoc {
    pub default_sender_enabled: Option<bool>,
    pub default_sender_name: Option<String>,
    pub default_sender_address: Option<String>,
    pub force_default_sender: Option<bool>,
    pub bundle_enabled: Option<bool>,
    pub bundle_interval_ms: Option<i64>,
    pub send_as_others: Option<String>,
}
