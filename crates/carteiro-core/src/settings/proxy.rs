//! The proxy of a connection (Benner): SOCKS5 or HTTP CONNECT, at an address
//! given, or as the system's `ALL_PROXY` / `HTTPS_PROXY` / `NO_PROXY` say.

use crate::error::{FieldError, FieldErrors, check_header_text};
use crate::secret::Secret;

use super::doc::ProxyDoc;
use super::values::{Host, Kept, Port, bounded, missing_secret, parse_choice, secret_field, text};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ProxyKind {
    #[default]
    Socks5,
    /// HTTP `CONNECT`.
    Http,
}

impl ProxyKind {
    const CHOICES: &[(&str, ProxyKind)] = &[("socks5", Self::Socks5), ("http", Self::Http)];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Socks5 => "socks5",
            Self::Http => "http",
        }
    }
}

/// Where the tunnel starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyAt {
    /// The system's proxy variables, as curl reads them.
    System,
    Address {
        host: Host,
        port: Port,
        login: Option<(String, Secret)>,
    },
}

/// A proxy in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    pub kind: ProxyKind,
    pub at: ProxyAt,
}

/// The proxy block as stored: kept even while switched off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyBlock {
    pub enabled: bool,
    pub kind: Option<ProxyKind>,
    pub address: Option<Host>,
    pub port: Option<Port>,
    pub username: Option<String>,
    pub password: Option<Secret>,
}

pub const PASSWORD: &str = "connection.proxy.password";

impl ProxyBlock {
    /// The stored password is kept only for the same proxy and user name.
    pub fn kept<'a>(doc: &ProxyDoc, stored: Option<&'a ProxyBlock>) -> Kept<'a> {
        let stored = stored.filter(|s| s.password.is_some());
        let same = stored.is_some_and(|s| {
            s.address.as_ref().map(Host::as_str) == text(&doc.address).map(str::to_ascii_lowercase).as_deref()
                && s.username.as_deref() == text(&doc.username)
        });
        Kept::new(stored.and_then(|s| s.password.as_ref()), same)
    }

    pub fn parse(doc: &ProxyDoc, kept: Kept<'_>, errors: &mut FieldErrors) -> Self {
        let kind =
            text(&doc.kind).and_then(|k| errors.check(parse_choice("connection.proxy.kind", k, ProxyKind::CHOICES)));
        let address = text(&doc.address).and_then(|a| errors.check(Host::parse("connection.proxy.address", a)));
        let port = doc.port.and_then(|p| errors.check(Port::parse("connection.proxy.port", p)));
        let username = text(&doc.username).and_then(|u| {
            errors
                .check(
                    check_header_text("connection.proxy.username", u)
                        .and_then(|()| bounded("connection.proxy.username", u, 256)),
                )
                .map(|()| u.to_owned())
        });
        let password = secret_field(PASSWORD, doc.password.as_ref(), kept, errors);
        let block = Self { enabled: doc.enabled.unwrap_or(false), kind, address, port, username, password };
        if block.enabled {
            if block.address.is_some() && block.port.is_none() {
                errors.push(FieldError::new(
                    "connection.proxy.port",
                    "connection.proxy.port is required when the proxy has an address (leave the address blank to use the system's proxy)",
                ));
            }
            if block.username.is_some() && block.password.is_none() {
                errors.push(missing_secret(PASSWORD, "when the proxy has a user name", kept));
            }
        }
        block
    }

    /// The proxy in use, when switched on.
    pub fn proxy(&self) -> Option<Proxy> {
        if !self.enabled {
            return None;
        }
        let at = match (&self.address, self.port) {
            (Some(host), Some(port)) => {
                ProxyAt::Address { host: host.clone(), port, login: self.username.clone().zip(self.password.clone()) }
            }
            _ => ProxyAt::System,
        };
        Some(Proxy { kind: self.kind.unwrap_or_default(), at })
    }

    pub fn to_doc(&self) -> ProxyDoc {
        ProxyDoc {
            enabled: Some(self.enabled),
            kind: self.kind.map(|k| k.as_str().to_owned()),
            address: self.address.as_ref().map(|a| a.as_str().to_owned()),
            port: self.port.map(|p| i64::from(p.get())),
            username: self.username.clone(),
            password: None,
            password_set: Some(self.password.is_some()),
        }
    }
}
