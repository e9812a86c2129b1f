//! The connection block: how messages leave carteiro (SMTP, a local
//! sendmail, a pickup directory, or kept for viewing), which server, how to
//! reach it and how to log in. Atomic across levels: a level that turns it on
//! replaces it as a whole.

use crate::error::{FieldError, FieldErrors, check_header_text};
use crate::secret::Secret;

use super::doc::ConnectionDoc;
use super::oauth::{OAuth, OAuthBlock};
use super::proxy::{Proxy, ProxyAt, ProxyBlock};
use super::values::{
    AuthMechanism, Host, Kept, Port, Security, TimeoutSecs, bounded, check_pem, missing_secret, parse_bounded,
    secret_field, text,
};

pub const DEFAULT_PORT: u16 = 25;
pub const DEFAULT_MAX_SESSIONS: u16 = 4;
pub const DEFAULT_SENDMAIL: &str = "/usr/sbin/sendmail -t -i";
pub const PASSWORD: &str = "connection.password";

/// How messages leave carteiro. The legacy desktop protocols of older
/// platforms (MAPI, VIM/Notes) are refused by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TransportKind {
    #[default]
    Smtp,
    /// Piped to a local MTA's `sendmail`.
    Sendmail,
    /// Written as `.eml` files into a directory an MTA watches.
    Pickup,
    /// Kept in carteiro for viewing (development, staging).
    Capture,
}

impl TransportKind {
    pub fn parse(field: &str, input: &str) -> Result<Self, FieldError> {
        match input.trim().to_ascii_lowercase().as_str() {
            "smtp" => Ok(Self::Smtp),
            "sendmail" => Ok(Self::Sendmail),
            "pickup" => Ok(Self::Pickup),
            "capture" => Ok(Self::Capture),
            legacy @ ("mapi" | "vim" | "notes") => Err(FieldError::new(
                field,
                format!(
                    "{field} {legacy:?} is no longer supported: it ran on the user's workstation; use \"smtp\" with your mail server instead"
                ),
            )),
            _ => Err(FieldError::new(
                field,
                format!("{field} must be one of smtp, sendmail, pickup, capture, got {input:?}"),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Smtp => "smtp",
            Self::Sendmail => "sendmail",
            Self::Pickup => "pickup",
            Self::Capture => "capture",
        }
    }
}

/// What AUTH presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// PLAIN or LOGIN (`Auto`: whichever the server offers, PLAIN first).
    Password { password: Secret, mechanism: PasswordMechanism },
    /// XOAUTH2 with a bearer token.
    OAuth(OAuth),
}

/// The mechanisms that present a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordMechanism {
    /// Whichever the server offers, PLAIN first.
    Auto,
    Plain,
    Login,
}

/// A user name and what proves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub username: String,
    pub credential: Credential,
}

impl Login {
    pub fn password(&self) -> Option<&Secret> {
        match &self.credential {
            Credential::Password { password, .. } => Some(password),
            Credential::OAuth(_) => None,
        }
    }
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
    pub proxy: Option<Proxy>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    Smtp(SmtpServer),
    /// The program and its arguments (no shell).
    Sendmail {
        command: Vec<String>,
    },
    Pickup {
        dir: String,
    },
    Capture,
}

/// A usable connection: what the delivery worker and Test connection work from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub transport: Transport,
    pub timeout: TimeoutSecs,
    pub limits: LaneLimits,
}

impl Connection {
    pub fn smtp(&self) -> Option<&SmtpServer> {
        match &self.transport {
            Transport::Smtp(server) => Some(server),
            _ => None,
        }
    }

    /// The account it logs in with, if any.
    pub fn login_username(&self) -> Option<&str> {
        self.smtp().and_then(|s| s.login.as_ref()).map(|l| l.username.as_str())
    }

    /// Every secret it uses (passwords, tokens): what tells two connections
    /// apart beside the fields their `Debug` shows.
    pub fn secrets(&self) -> Vec<&Secret> {
        let Some(server) = self.smtp() else { return Vec::new() };
        let mut secrets = match server.login.as_ref().map(|l| &l.credential) {
            Some(Credential::Password { password, .. }) => vec![password],
            Some(Credential::OAuth(oauth)) => oauth.secrets(),
            None => Vec::new(),
        };
        if let Some(Proxy { at: ProxyAt::Address { login: Some((_, password)), .. }, .. }) = &server.proxy {
            secrets.push(password);
        }
        secrets
    }

    /// How attempts name where messages went: `host:port`, or the transport.
    pub fn destination(&self) -> String {
        match &self.transport {
            Transport::Smtp(s) => format!("{}:{}", s.host, s.port.get()),
            Transport::Sendmail { command } => format!("sendmail:{}", command.first().map_or("", String::as_str)),
            Transport::Pickup { dir } => format!("pickup:{dir}"),
            Transport::Capture => "capture".to_owned(),
        }
    }
}

/// How hard carteiro may press one server: the lane's parallel sessions and rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LaneLimits {
    pub max_sessions: u16,
    pub rate_per_minute: Option<u32>,
}

/// One value of a connection block that acts on the carteiro host itself
/// (see [`ConnectionBlock::host_reach`]): `why` completes "only a platform
/// administrator may …".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostReach {
    pub field: &'static str,
    pub value: String,
    pub why: &'static str,
}

/// The stored secrets a connection document may keep by leaving them blank.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeptSecrets<'a> {
    pub password: Kept<'a>,
    pub proxy_password: Kept<'a>,
    pub oauth: super::oauth::KeptOAuth<'a>,
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
    pub oauth: Option<OAuthBlock>,
    pub timeout: Option<TimeoutSecs>,
    pub max_sessions: Option<u16>,
    pub rate_per_minute: Option<u32>,
    pub tls_verify: Option<bool>,
    pub tls_ca_pem: Option<String>,
    pub proxy: Option<ProxyBlock>,
    pub sendmail_command: Option<String>,
    pub pickup_dir: Option<String>,
}

impl ConnectionBlock {
    /// Parses a document that replaces `stored`. A blank or absent secret
    /// keeps the stored one, but only for the same account: a password typed
    /// for one server (or proxy, or token endpoint) is never sent to another.
    pub fn parse(doc: &ConnectionDoc, stored: Option<&ConnectionBlock>) -> Result<Self, FieldErrors> {
        let same_account = stored.is_some_and(|s| {
            s.host.as_ref().map(Host::as_str) == text(&doc.host).map(str::to_ascii_lowercase).as_deref()
                && s.username.as_deref() == text(&doc.username)
        });
        let kept = KeptSecrets {
            password: Kept::new(stored.and_then(|s| s.password.as_ref()), same_account),
            proxy_password: ProxyBlock::kept(
                &doc.proxy.clone().unwrap_or_default(),
                stored.and_then(|s| s.proxy.as_ref()),
            ),
            oauth: OAuthBlock::kept(&doc.oauth.clone().unwrap_or_default(), stored.and_then(|s| s.oauth.as_ref())),
        };
        Self::parse_with(doc, kept)
    }

    /// Checks every field, returning every error; an enabled block must also be complete.
    pub fn parse_with(doc: &ConnectionDoc, kept: KeptSecrets<'_>) -> Result<Self, FieldErrors> {
        let mut errors = FieldErrors::default();
        let transport = match &doc.transport {
            Some(t) => errors.check(TransportKind::parse("connection.transport", t)).unwrap_or_default(),
            None => TransportKind::Smtp,
        };
        let host = text(&doc.host).and_then(|h| errors.check(Host::parse("connection.host", h)));
        let port = doc.port.and_then(|p| errors.check(Port::parse("connection.port", p)));
        let security = doc.security.as_deref().and_then(|s| errors.check(Security::parse("connection.security", s)));
        let auth_mechanism = doc
            .auth_mechanism
            .as_deref()
            .and_then(|m| errors.check(AuthMechanism::parse("connection.auth_mechanism", m)));
        let username = text(&doc.username).and_then(|u| {
            errors
                .check(
                    check_header_text("connection.username", u).and_then(|()| bounded("connection.username", u, 256)),
                )
                .map(|()| u.to_owned())
        });
        let password = secret_field(PASSWORD, doc.password.as_ref(), kept.password, &mut errors);
        let oauth = doc.oauth.as_ref().map(|o| OAuthBlock::parse(o, kept.oauth, &mut errors));
        let timeout = doc.timeout_s.and_then(|t| errors.check(TimeoutSecs::parse("connection.timeout_s", t)));
        let max_sessions = doc
            .max_sessions
            .and_then(|n| errors.check(parse_bounded("connection.max_sessions", n, 1, 100)))
            .map(|n| n as u16);
        let rate_per_minute = doc
            .rate_per_minute
            .and_then(|n| errors.check(parse_bounded("connection.rate_per_minute", n, 1, 1_000_000)))
            .map(|n| n as u32);
        let tls_ca_pem = text(&doc.tls_ca_pem)
            .and_then(|p| errors.check(check_pem("connection.tls_ca_pem", p)).map(|()| p.to_owned()));
        let proxy = doc.proxy.as_ref().map(|p| ProxyBlock::parse(p, kept.proxy_password, &mut errors));
        let sendmail_command = text(&doc.sendmail_command)
            .and_then(|c| errors.check(check_header_text("connection.sendmail_command", c)).map(|()| c.to_owned()));
        let pickup_dir = text(&doc.pickup_dir)
            .and_then(|d| errors.check(check_dir("connection.pickup_dir", d)).map(|()| d.to_owned()));

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
            oauth,
            timeout,
            max_sessions,
            rate_per_minute,
            tls_verify: doc.tls_verify,
            tls_ca_pem,
            proxy,
            sendmail_command,
            pickup_dir,
        };
        if block.enabled && errors.is_empty() {
            block.check_complete(kept.password, &mut errors);
        }
        errors.into_result(|| block)
    }

    /// An enabled block must say everything its transport needs.
    fn check_complete(&self, kept_password: Kept<'_>, errors: &mut FieldErrors) {
        match self.transport {
            TransportKind::Smtp => {
                if self.host.is_none() {
                    errors.push(FieldError::new(
                        "connection.host",
                        "connection.host is required when specific e-mail sending is enabled",
                    ));
                }
                if !self.auth_enabled {
                    return;
                }
                if self.username.is_none() {
                    errors.push(FieldError::new(
                        "connection.username",
                        "connection.username is required when authentication is enabled",
                    ));
                }
                if self.auth_mechanism == Some(AuthMechanism::XOAuth2) {
                    let oauth = self.oauth.clone().unwrap_or_default();
                    errors.check(oauth.oauth());
                } else if self.password.is_none() {
                    errors.push(missing_secret(PASSWORD, "when authentication is enabled", kept_password));
                }
            }
            TransportKind::Pickup if self.pickup_dir.is_none() => errors.push(FieldError::new(
                "connection.pickup_dir",
                "connection.pickup_dir is required with the pickup transport",
            )),
            _ => {}
        }
    }

    /// The usable connection, when this block is switched on.
    pub fn connection(&self) -> Option<Connection> {
        if !self.enabled {
            return None;
        }
        let transport = match self.transport {
            TransportKind::Smtp => Transport::Smtp(self.smtp_server()?),
            TransportKind::Sendmail => Transport::Sendmail {
                command: self
                    .sendmail_command
                    .as_deref()
                    .unwrap_or(DEFAULT_SENDMAIL)
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect(),
            },
            TransportKind::Pickup => Transport::Pickup { dir: self.pickup_dir.clone()? },
            TransportKind::Capture => Transport::Capture,
        };
        Some(Connection {
            transport,
            timeout: self.timeout.unwrap_or_default(),
            limits: LaneLimits {
                max_sessions: self.max_sessions.unwrap_or(DEFAULT_MAX_SESSIONS),
                rate_per_minute: self.rate_per_minute,
            },
        })
    }

    fn smtp_server(&self) -> Option<SmtpServer> {
        let login = match (self.auth_enabled, &self.username) {
            (true, Some(username)) => {
                let password = |mechanism| Some(Credential::Password { password: self.password.clone()?, mechanism });
                let credential = match self.auth_mechanism.unwrap_or_default() {
                    AuthMechanism::XOAuth2 => Credential::OAuth(self.oauth.as_ref()?.oauth().ok()?),
                    AuthMechanism::Auto => password(PasswordMechanism::Auto)?,
                    AuthMechanism::Plain => password(PasswordMechanism::Plain)?,
                    AuthMechanism::Login => password(PasswordMechanism::Login)?,
                };
                Some(Login { username: username.clone(), credential })
            }
            _ => None,
        };
        Some(SmtpServer {
            host: self.host.clone()?,
            port: self.port.unwrap_or(Port::SMTP),
            security: self.security.unwrap_or_default(),
            login,
            tls_verify: self.tls_verify.unwrap_or(true),
            tls_ca_pem: self.tls_ca_pem.clone(),
            proxy: self.proxy.as_ref().and_then(ProxyBlock::proxy),
        })
    }

    /// The values that make carteiro act on its own host rather than only
    /// reach a mail server: a program it runs, a directory it writes into, a
    /// token endpoint over plain http (which only loopback may be). Listed
    /// whether the block is switched on or off: switching on needs no new value.
    pub fn host_reach(&self) -> Vec<HostReach> {
        let mut reach = Vec::new();
        if matches!(self.transport, TransportKind::Sendmail | TransportKind::Pickup) {
            reach.push(HostReach {
                field: "connection.transport",
                value: self.transport.as_str().to_owned(),
                why: "choose the sendmail or pickup transport: they run a program or write files on the carteiro host",
            });
        }
        if let Some(command) = &self.sendmail_command {
            reach.push(HostReach {
                field: "connection.sendmail_command",
                value: command.clone(),
                why: "set connection.sendmail_command: it is a program carteiro runs on its host",
            });
        }
        if let Some(dir) = &self.pickup_dir {
            reach.push(HostReach {
                field: "connection.pickup_dir",
                value: dir.clone(),
                why: "set connection.pickup_dir: carteiro writes files into that directory on its host",
            });
        }
        let token_url = self.oauth.as_ref().and_then(|o| o.token_url.as_deref());
        if let Some(url) = token_url.filter(|url| !url.starts_with("https://")) {
            reach.push(HostReach {
                field: "connection.oauth.token_url",
                value: url.to_owned(),
                why: "set a connection.oauth.token_url that is not https://: plain http reaches ports on the carteiro host",
            });
        }
        reach
    }

    /// Every secret of the block, by its path in the document.
    pub fn secrets(&self) -> Vec<(&'static str, &Secret)> {
        let oauth = self.oauth.as_ref();
        [
            (PASSWORD, self.password.as_ref()),
            (super::proxy::PASSWORD, self.proxy.as_ref().and_then(|p| p.password.as_ref())),
            (super::oauth::ACCESS_TOKEN, oauth.and_then(|o| o.access_token.as_ref())),
            (super::oauth::CLIENT_SECRET, oauth.and_then(|o| o.client_secret.as_ref())),
            (super::oauth::REFRESH_TOKEN, oauth.and_then(|o| o.refresh_token.as_ref())),
        ]
        .into_iter()
        .filter_map(|(path, secret)| secret.map(|s| (path, s)))
        .collect()
    }

    /// The document as read back: secrets never, only whether each is stored.
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
            proxy: self.proxy.as_ref().map(ProxyBlock::to_doc),
            oauth: self.oauth.as_ref().map(OAuthBlock::to_doc),
            sendmail_command: self.sendmail_command.clone(),
            pickup_dir: self.pickup_dir.clone(),
        }
    }
}

/// Kept secrets from a stored block's own secrets: the stored document is
/// always the same account as its secrets.
pub fn stored_secrets<'a>(lookup: &'a impl Fn(&str) -> Option<&'a Secret>) -> KeptSecrets<'a> {
    KeptSecrets {
        password: Kept::stored(lookup(PASSWORD)),
        proxy_password: Kept::stored(lookup(super::proxy::PASSWORD)),
        oauth: super::oauth::KeptOAuth {
            access_token: Kept::stored(lookup(super::oauth::ACCESS_TOKEN)),
            client_secret: Kept::stored(lookup(super::oauth::CLIENT_SECRET)),
            refresh_token: Kept::stored(lookup(super::oauth::REFRESH_TOKEN)),
        },
    }
}

/// A pickup directory: an absolute path.
fn check_dir(field: &str, value: &str) -> Result<(), FieldError> {
    check_header_text(field, value)?;
    if !value.starts_with('/') {
        return Err(FieldError::new(field, format!("{field} must be an absolute path, got {value:?}")));
    }
    bounded(field, value, 1024)
}
