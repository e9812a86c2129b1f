//! The connection block: which server, how to reach it, how to log in.
//! Atomic across levels: a level that turns it on replaces it as a whole.

use std::fmt;

use crate::error::{FieldError, FieldErrors, check_header_text};
use crate::secret::Secret;

use super::doc::{ConnectionDoc, ProxyDoc};

pub const DEFAULT_PORT: u16 = 25;
pub const DEFAULT_MAX_SESSIONS: u16 = 4;
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
fn parse_choice<T: Copy>(field: &str, input: &str, choices: &[(&str, T)]) -> Result<T, FieldError> {
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
}

impl AuthMechanism {
    const CHOICES: &[(&str, AuthMechanism)] = &[("auto", Self::Auto), ("plain", Self::Plain), ("login", Self::Login)];

    pub fn parse(field: &str, input: &str) -> Result<Self, FieldError> {
        parse_choice(field, input, Self::CHOICES)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Plain => "plain",
            Self::Login => "login",
        }
    }
}

/// How messages leave carteiro. SMTP is the one transport of this version;
/// the legacy desktop protocols of older platforms are refused by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TransportKind {
    #[default]
    Smtp,
}

impl TransportKind {
    pub fn parse(field: &str, input: &str) -> Result<Self, FieldError> {
        match input.trim().to_ascii_lowercase().as_str() {
            "smtp" => Ok(Self::Smtp),
            legacy @ ("mapi" | "vim" | "notes") => Err(FieldError::new(
                field,
                format!(
                    "{field} {legacy:?} is no longer supported: it ran on the user's workstation; use \"smtp\" with your mail server instead"
                ),
            )),
            _ => Err(FieldError::new(field, format!("{field} must be \"smtp\", got {input:?}"))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Smtp => "smtp",
        }
    }
}

/// A user name and password for AUTH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub username: String,
    pub password: Secret,
    pub mechanism: AuthMechanism,
}

/// Everything needed to open an SMTP session. Exists only complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpServer {
    pub host: Host,
    pub port: Port,
    pub security: Security,
    pub login: Option<Login>,
    pub tls_verify: bool,
    /// An extra certificate authority (PEM) trusted beside the public roots.
    pub tls_ca_pem: Option<String>,
}

/// A usable connection: what the delivery worker and Test connection work from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub server: SmtpServer,
    pub timeout: TimeoutSecs,
    pub limits: LaneLimits,
}

/// How hard carteiro may press one server: the lane's parallel sessions and rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LaneLimits {
    pub max_sessions: u16,
    pub rate_per_minute: Option<u32>,
}

fn parse_bounded(field: &str, input: i64, min: i64, max: i64) -> Result<i64, FieldError> {
    if (min..=max).contains(&input) {
        Ok(input)
    } else {
        Err(FieldError::new(field, format!("{field} must be between {min} and {max}, got {input}")))
    }
}

/// A proxy block as stored. Tunnelling arrives with the proxy transport;
/// until then a block may be kept but not switched on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyBlock {
    pub kind: Option<String>,
    pub address: Option<Host>,
    pub port: Option<Port>,
    pub username: Option<String>,
}

/// The connection block of one level, as stored: possibly switched off (its
/// values kept for when it is switched on again). When `enabled`, it is
/// complete: [`ConnectionBlock::connection`] always returns a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionBlock {
    pub enabled: bool,
    pub transport: TransportKind,
    pub host: Option<Host>,
    pub port: Option<Port>,
    pub security: Option<Security>,
    pub auth_enabled: bool,
    pub auth_mechanism: Option<AuthMechanism>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub timeout: Option<TimeoutSecs>,
    pub max_sessions: Option<u16>,
    pub rate_per_minute: Option<u32>,
    pub tls_verify: Option<bool>,
    pub tls_ca_pem: Option<String>,
    pub proxy: Option<ProxyBlock>,
}

impl ConnectionBlock {
    /// Parses a document that replaces `stored`. A blank or absent password
    /// keeps the stored one, but only for the same server and user name: a
    /// password typed for one server is never sent to another.
    pub fn parse(doc: &ConnectionDoc, stored: Option<&ConnectionBlock>) -> Result<Self, FieldErrors> {
        let same_account = |s: &&ConnectionBlock| {
            let host = doc.host.as_deref().and_then(|h| Host::parse("host", h).ok());
            let username = doc.username.as_deref().map(str::trim).filter(|u| !u.is_empty());
            s.host == host && s.username.as_deref() == username
        };
        let carried = stored.filter(same_account).and_then(|s| s.password.as_ref());
        let withheld = carried.is_none() && stored.is_some_and(|s| s.password.is_some());
        Self::parse_inner(doc, carried, withheld)
    }

    /// Parses a stored document, whose password is kept apart (sealed).
    pub fn from_stored(doc: &ConnectionDoc, password: Option<&Secret>) -> Result<Self, FieldErrors> {
        Self::parse_inner(doc, password, false)
    }

    /// Checks every field, returning every error; an enabled block must also
    /// be complete. `withheld`: a stored password exists but was not carried over.
    fn parse_inner(doc: &ConnectionDoc, stored_password: Option<&Secret>, withheld: bool) -> Result<Self, FieldErrors> {
        let mut errors = FieldErrors::default();
        let transport = match &doc.transport {
            Some(t) => errors.check(TransportKind::parse("connection.transport", t)).unwrap_or_default(),
            None => TransportKind::Smtp,
        };
        let host = doc
            .host
            .as_deref()
            .filter(|h| !h.trim().is_empty())
            .and_then(|h| errors.check(Host::parse("connection.host", h)));
        let port = doc.port.and_then(|p| errors.check(Port::parse("connection.port", p)));
        let security = doc.security.as_deref().and_then(|s| errors.check(Security::parse("connection.security", s)));
        let auth_mechanism = doc
            .auth_mechanism
            .as_deref()
            .and_then(|m| errors.check(AuthMechanism::parse("connection.auth_mechanism", m)));
        let username = doc.username.as_deref().map(str::trim).filter(|u| !u.is_empty()).and_then(|u| {
            errors
                .check(
                    check_header_text("connection.username", u).and_then(|()| bounded("connection.username", u, 256)),
                )
                .map(|()| u.to_owned())
        });
        let password = match doc.password.as_ref().map(|p| p.0.as_str()).filter(|p| !p.is_empty()) {
            Some(p) => errors.check(check_secret("connection.password", p)).map(|()| Secret::new(p)),
            None => stored_password.cloned(),
        };
        let timeout = doc.timeout_s.and_then(|t| errors.check(TimeoutSecs::parse("connection.timeout_s", t)));
        let max_sessions = doc
            .max_sessions
            .and_then(|n| errors.check(parse_bounded("connection.max_sessions", n, 1, 100)))
            .map(|n| n as u16);
        let rate_per_minute = doc
            .rate_per_minute
            .and_then(|n| errors.check(parse_bounded("connection.rate_per_minute", n, 1, 1_000_000)))
            .map(|n| n as u32);
        let tls_ca_pem = doc
            .tls_ca_pem
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .and_then(|p| errors.check(check_pem("connection.tls_ca_pem", p)).map(|()| p.to_owned()));
        let proxy = doc.proxy.as_ref().and_then(|p| errors.check(parse_proxy(p)));

        let block = Self {
            enabled: doc.enabled.unwrap_or(true),
            transport,
            host,
            port,
            security,
            auth_enabled: doc.auth_enabled.unwrap_or(false),
            auth_mechanism,
            username,
            password,
            timeout,
            max_sessions,
            rate_per_minute,
            tls_verify: doc.tls_verify,
            tls_ca_pem,
            proxy,
        };
        if block.enabled && errors.is_empty() {
            if block.host.is_none() {
                errors.push(FieldError::new(
                    "connection.host",
                    "connection.host is required when specific e-mail sending is enabled",
                ));
            }
            if block.auth_enabled && block.username.is_none() {
                errors.push(FieldError::new(
                    "connection.username",
                    "connection.username is required when authentication is enabled",
                ));
            }
            if block.auth_enabled && block.password.is_none() {
                errors.push(FieldError::new(
                    "connection.password",
                    if withheld {
                        "connection.password is required: the server or user name changed, so the stored password is not used for it"
                    } else {
                        "connection.password is required when authentication is enabled and none is stored"
                    },
                ));
            }
        }
        errors.into_result(|| block)
    }

    /// The usable connection, when this block is switched on.
    pub fn connection(&self) -> Option<Connection> {
        if !self.enabled {
            return None;
        }
        let login = match (self.auth_enabled, &self.username, &self.password) {
            (true, Some(username), Some(password)) => Some(Login {
                username: username.clone(),
                password: password.clone(),
                mechanism: self.auth_mechanism.unwrap_or_default(),
            }),
            _ => None,
        };
        Some(Connection {
            server: SmtpServer {
                host: self.host.clone()?,
                port: self.port.unwrap_or(Port(DEFAULT_PORT)),
                security: self.security.unwrap_or_default(),
                login,
                tls_verify: self.tls_verify.unwrap_or(true),
                tls_ca_pem: self.tls_ca_pem.clone(),
            },
            timeout: self.timeout.unwrap_or_default(),
            limits: LaneLimits {
                max_sessions: self.max_sessions.unwrap_or(DEFAULT_MAX_SESSIONS),
                rate_per_minute: self.rate_per_minute,
            },
        })
    }

    /// The document as read back: the password never, only whether one is stored.
    pub fn to_doc(&self) -> ConnectionDoc {
        ConnectionDoc {
            enabled: Some(self.enabled),
            transport: Some(self.transport.as_str().to_owned()),
            host: self.host.as_ref().map(|h| h.as_str().to_owned()),
            port: self.port.map(|p| i64::from(p.get())),
            security: self.security.map(|s| s.as_str().to_owned()),
            auth_enabled: Some(self.auth_enabled),
            auth_mechanism: self.auth_mechanism.map(|m| m.as_str().to_owned()),
            username: self.username.clone(),
            password: None,
            password_set: Some(self.password.is_some()),
            timeout_s: self.timeout.map(|t| i64::from(t.get())),
            max_sessions: self.max_sessions.map(i64::from),
            rate_per_minute: self.rate_per_minute.map(i64::from),
            tls_verify: self.tls_verify,
            tls_ca_pem: self.tls_ca_pem.clone(),
            proxy: self.proxy.as_ref().map(|p| ProxyDoc {
                enabled: Some(false),
                kind: p.kind.clone(),
                address: p.address.as_ref().map(|a| a.as_str().to_owned()),
                port: p.port.map(|p| i64::from(p.get())),
                username: p.username.clone(),
                password: None,
                password_set: Some(false),
            }),
        }
    }
}

fn bounded(field: &str, value: &str, max: usize) -> Result<(), FieldError> {
    if value.chars().count() > max {
        return Err(FieldError::new(field, format!("{field} must be at most {max} characters")));
    }
    Ok(())
}

/// A secret goes into an SMTP command line: no line breaks, bounded. The
/// message never repeats the value.
fn check_secret(field: &str, value: &str) -> Result<(), FieldError> {
    if value.contains(['\r', '\n', '\0']) {
        return Err(FieldError::new(field, format!("{field} must not contain line breaks or NUL characters")));
    }
    bounded(field, value, 1024)
}

fn check_pem(field: &str, value: &str) -> Result<(), FieldError> {
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

fn parse_proxy(doc: &ProxyDoc) -> Result<ProxyBlock, FieldError> {
    if doc.enabled == Some(true) {
        return Err(FieldError::new(
            "connection.proxy.enabled",
            "connection.proxy.enabled cannot be switched on in this version: carteiro connects to the server directly",
        ));
    }
    let kind = match doc.kind.as_deref().map(|k| k.trim().to_ascii_lowercase()) {
        None => None,
        Some(k) if k == "socks5" || k == "http" => Some(k),
        Some(k) => {
            return Err(FieldError::new(
                "connection.proxy.kind",
                format!("connection.proxy.kind must be one of socks5, http, got {k:?}"),
            ));
        }
    };
    Ok(ProxyBlock {
        kind,
        address: doc
            .address
            .as_deref()
            .filter(|a| !a.trim().is_empty())
            .map(|a| Host::parse("connection.proxy.address", a))
            .transpose()?,
        port: doc.port.map(|p| Port::parse("connection.proxy.port", p)).transpose()?,
        username: doc.username.clone().filter(|u| !u.is_empty()),
    })
}
