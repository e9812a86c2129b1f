//! The small value types of the settings, each valid by construction, and
//! the checks their parsers share.

use std::fmt;

use crate::error::{FieldError, FieldErrors};
use crate::secret::Secret;

use super::doc::WriteOnly;

pub const DEFAULT_TIMEOUT_S: u16 = 180;

/// A host name or IP address to connect to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Host(String);

impl Host {
    pub fn parse(field: &str, input: &str) -> Result<Self, FieldError> {
        let value = input.trim();
        let value = value.strip_prefix('[').and_then(|v| v.strip_suffix(']')).unwrap_or(value);
        if value.is_empty() {
            return Err(FieldError::new(field, format!("{field} must not be empty")));
        }
        if value.parse::<std::net::IpAddr>().is_ok() {
            return Ok(Self(value.to_owned()));
        }
        let labels_ok = value.len() <= 253
            && value.trim_end_matches('.').split('.').all(|label| {
                (1..=63).contains(&label.len())
                    && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if labels_ok {
            Ok(Self(value.to_ascii_lowercase()))
        } else {
            Err(FieldError::new(field, format!("{field} must be a host name or an IP address, got {input:?}")))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A TCP port, 1..=65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Port(u16);

impl Port {
    /// 25, SMTP's own.
    pub const SMTP: Port = Port(25);

    pub fn parse(field: &str, input: i64) -> Result<Self, FieldError> {
        match u16::try_from(input) {
            Ok(p) if p >= 1 => Ok(Self(p)),
            _ => Err(FieldError::new(field, format!("{field} must be between 1 and 65535, got {input}"))),
        }
    }

    pub fn get(self) -> u16 {
        self.0
    }
}

/// `timeout_s`: bounds the connect and every SMTP command, 10..=180 seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeoutSecs(u16);

impl TimeoutSecs {
    pub fn parse(field: &str, input: i64) -> Result<Self, FieldError> {
        if (10..=180).contains(&input) {
            Ok(Self(input as u16))
        } else {
            Err(FieldError::new(field, format!("{field} must be between 10 and 180, got {input}")))
        }
    }

    pub fn get(self) -> u16 {
        self.0
    }
}

impl Default for TimeoutSecs {
    fn default() -> Self {
        Self(DEFAULT_TIMEOUT_S)
    }
}

/// Parses one of a fixed set of lowercase words, naming them all when the value is none of them.
pub(crate) fn parse_choice<T: Copy>(field: &str, input: &str, choices: &[(&str, T)]) -> Result<T, FieldError> {
    let value = input.trim().to_ascii_lowercase();
    choices.iter().find(|(name, _)| *name == value).map(|(_, v)| *v).ok_or_else(|| {
        let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
        FieldError::new(field, format!("{field} must be one of {}, got {input:?}", names.join(", ")))
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Security {
    /// Plain text (port 25 inside a trusted network).
    #[default]
    None,
    /// Plain connect, then `STARTTLS` (usually 587).
    StartTls,
    /// TLS from the first byte (usually 465).
    Tls,
}

impl Security {
    const CHOICES: &[(&str, Security)] = &[("none", Self::None), ("starttls", Self::StartTls), ("tls", Self::Tls)];

    pub fn parse(field: &str, input: &str) -> Result<Self, FieldError> {
        parse_choice(field, input, Self::CHOICES)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::StartTls => "starttls",
            Self::Tls => "tls",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AuthMechanism {
    /// The strongest of PLAIN and LOGIN that the server offers.
    #[default]
    Auto,
    Plain,
    Login,
    /// A bearer token instead of a password (Google, Microsoft 365): see the `oauth` block.
    XOAuth2,
}

impl AuthMechanism {
    const CHOICES: &[(&str, AuthMechanism)] =
        &[("auto", Self::Auto), ("plain", Self::Plain), ("login", Self::Login), ("xoauth2", Self::XOAuth2)];

    pub fn parse(field: &str, input: &str) -> Result<Self, FieldError> {
        parse_choice(field, input, Self::CHOICES)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Plain => "plain",
            Self::Login => "login",
            Self::XOAuth2 => "xoauth2",
        }
    }
}

pub(crate) fn bounded(field: &str, value: &str, max: usize) -> Result<(), FieldError> {
    if value.chars().count() > max {
        return Err(FieldError::new(field, format!("{field} must be at most {max} characters")));
    }
    Ok(())
}

pub(crate) fn parse_bounded(field: &str, input: i64, min: i64, max: i64) -> Result<i64, FieldError> {
    if (min..=max).contains(&input) {
        Ok(input)
    } else {
        Err(FieldError::new(field, format!("{field} must be between {min} and {max}, got {input}")))
    }
}

/// A secret goes into a protocol line: no line breaks, bounded. The message
/// never repeats the value.
fn check_secret(field: &str, value: &str) -> Result<(), FieldError> {
    if value.contains(['\r', '\n', '\0']) {
        return Err(FieldError::new(field, format!("{field} must not contain line breaks or NUL characters")));
    }
    bounded(field, value, 4096)
}

/// A stored secret that a new document may keep by leaving the field blank:
/// only while it still serves the same account (`same`), so that a secret
/// typed for one server is never sent to another.
#[derive(Debug, Clone, Copy, Default)]
pub struct Kept<'a> {
    pub secret: Option<&'a Secret>,
    /// A secret is stored but belongs to another account now.
    pub withheld: bool,
}

impl<'a> Kept<'a> {
    pub fn new(stored: Option<&'a Secret>, same: bool) -> Self {
        if same { Self { secret: stored, withheld: false } } else { Self { secret: None, withheld: stored.is_some() } }
    }

    /// What a stored document's own secret is: kept, for the same account by definition.
    pub fn stored(secret: Option<&'a Secret>) -> Self {
        Self { secret, withheld: false }
    }
}

/// A secret field: the value typed, else the one kept, else none.
pub(crate) fn secret_field(
    field: &str,
    typed: Option<&WriteOnly>,
    kept: Kept<'_>,
    errors: &mut FieldErrors,
) -> Option<Secret> {
    match typed.map(|t| t.0.as_str()).filter(|t| !t.is_empty()) {
        Some(value) => errors.check(check_secret(field, value)).map(|()| Secret::new(value)),
        None => kept.secret.cloned(),
    }
}

/// The sentence for a secret that is required and missing.
pub(crate) fn missing_secret(field: &str, why: &str, kept: Kept<'_>) -> FieldError {
    let message = if kept.withheld {
        format!("{field} is required: the server or user name changed, so the stored one is not used for it")
    } else {
        format!("{field} is required {why} and none is stored")
    };
    FieldError::new(field, message)
}

pub(crate) fn check_pem(field: &str, value: &str) -> Result<(), FieldError> {
    let begins = value.matches("-----BEGIN CERTIFICATE-----").count();
    let ends = value.matches("-----END CERTIFICATE-----").count();
    if begins == 0 || begins != ends {
        return Err(FieldError::new(
            field,
            format!(
                "{field} must hold one or more PEM certificates (-----BEGIN CERTIFICATE----- … -----END CERTIFICATE-----)"
            ),
        ));
    }
    bounded(field, value, 64 * 1024)
}

/// An optional text field, trimmed; blank is absent.
pub(crate) fn text(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}
