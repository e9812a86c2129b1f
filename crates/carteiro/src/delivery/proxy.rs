//! Tunnels to the SMTP server through a proxy: SOCKS5 (tokio-socks) or HTTP
//! CONNECT, at the address the settings give or the one the system's proxy
//! variables name (`ALL_PROXY`, `HTTPS_PROXY`, `NO_PROXY`, as curl reads them).
//! Either way the tunnel is a plain `TcpStream` and the SMTP session, TLS
//! included, runs inside it unchanged.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use carteiro_core::Secret;
use carteiro_core::delivery::{Failure, Stage};
use carteiro_core::settings::{Host, Port, Proxy, ProxyAt, ProxyKind};
use hyper_util::client::proxy::matcher::Matcher;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_socks::tcp::Socks5Stream;

use super::connect::{connect_any, lookup};
use super::transcript::{Transcript, within};

/// Where a proxy listens, and how to log in to it.
pub struct Endpoint {
    kind: ProxyKind,
    host: String,
    port: u16,
    login: Option<(String, Secret)>,
    /// Named by the system's proxy variables rather than the settings.
    from_system: bool,
}

impl Endpoint {
    fn describe(&self) -> String {
        let kind = match self.kind {
            ProxyKind::Socks5 => "SOCKS5",
            ProxyKind::Http => "HTTP",
        };
        let source = if self.from_system { " (from the system's proxy variables)" } else { "" };
        format!("{kind} proxy {}{source}", authority(&self.host, self.port))
    }
}

/// The proxy to go through for `host`, if any: the settings' own address, or
/// what the system's variables say (none when unset or when `NO_PROXY` covers
/// the host).
pub fn endpoint(proxy: &Proxy, host: &Host, port: Port) -> Result<Option<Endpoint>, Failure> {
    match &proxy.at {
        ProxyAt::Address { host: at, port: at_port, login } => Ok(Some(Endpoint {
            kind: proxy.kind,
            host: at.as_str().to_owned(),
            port: at_port.get(),
            login: login.clone(),
            from_system: false,
        })),
        ProxyAt::System => from_system(&SystemProxy::from_env(), host, port),
    }
}

/// The system's proxy variables, upper case first, as curl reads them.
#[derive(Debug, Default)]
struct SystemProxy {
    https: Option<String>,
    all: Option<String>,
    no: Option<String>,
}

impl SystemProxy {
    fn from_env() -> Self {
        let var =
            |names: [&str; 2]| names.into_iter().find_map(|n| std::env::var(n).ok().filter(|v| !v.trim().is_empty()));
        Self {
            https: var(["HTTPS_PROXY", "https_proxy"]),
            all: var(["ALL_PROXY", "all_proxy"]),
            no: var(["NO_PROXY", "no_proxy"]),
        }
    }

    fn matcher(&self) -> Matcher {
        let some = |v: &Option<String>| v.clone().unwrap_or_default();
        Matcher::builder().https(some(&self.https)).all(some(&self.all)).no(some(&self.no)).build()
    }

    /// `NO_PROXY` covers `uri`.
    fn bypasses(&self, uri: &http::Uri) -> bool {
        let probe =
            Matcher::builder().all("http://probe.invalid".to_owned()).no(self.no.clone().unwrap_or_default()).build();
        probe.intercept(uri).is_none()
    }
}

/// SMTP is no HTTP, but curl's rules for an `https://` address are the ones
/// an administrator expects: `HTTPS_PROXY`, else `ALL_PROXY`, minus `NO_PROXY`.
/// A variable that is set but cannot be read is said, not silently skipped.
fn from_system(system: &SystemProxy, host: &Host, port: Port) -> Result<Option<Endpoint>, Failure> {
    let target = format!("https://{}", authority(host.as_str(), port.get()));
    let uri: http::Uri = target.parse().map_err(|e| Failure::Settings {
        detail: format!("{} cannot be named as a proxy target: {e}", host.as_str()),
    })?;
    let Some(intercept) = system.matcher().intercept(&uri) else {
        if (system.https.is_some() || system.all.is_some()) && !system.bypasses(&uri) {
            return Err(Failure::Settings {
                detail: "the system's HTTPS_PROXY or ALL_PROXY is set but is not a proxy address carteiro can read (scheme://[user:password@]host:port, special characters percent-encoded)".to_owned(),
            });
        }
        return Ok(None);
    };
    let proxy = intercept.uri();
    let unusable =
        |why: &str| Failure::Settings { detail: format!("the system's proxy variables name {proxy}: {why}") };
    let kind = match proxy.scheme_str() {
        Some("socks5" | "socks5h") => ProxyKind::Socks5,
        Some("http") => ProxyKind::Http,
        _ => return Err(unusable("carteiro goes through socks5:// or http:// proxies")),
    };
    let Some(proxy_host) = proxy.host() else { return Err(unusable("it has no host")) };
    let default_port = if kind == ProxyKind::Socks5 { 1080 } else { 80 };
    let login = match kind {
        ProxyKind::Socks5 => intercept.raw_auth().map(|(user, password)| (user.to_owned(), Secret::new(password))),
        ProxyKind::Http => intercept.basic_auth().and_then(|value| basic_login(value.as_bytes())),
    };
    Ok(Some(Endpoint {
        kind,
        host: proxy_host.trim_start_matches('[').trim_end_matches(']').to_owned(),
        port: proxy.port_u16().unwrap_or(default_port),
        login,
        from_system: true,
    }))
}

/// The user name and password of a `Basic …` header value.
fn basic_login(value: &[u8]) -> Option<(String, Secret)> {
    let encoded = value.strip_prefix(b"Basic ")?;
    let decoded = String::from_utf8(BASE64.decode(encoded).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), Secret::new(password)))
}

/// Reaches the proxy (step `proxy`), then logs in and opens the tunnel to
/// `host:port` (step `tunnel`).
pub async fn tunnel(
    endpoint: &Endpoint,
    host: &Host,
    port: Port,
    timeout: Duration,
    log: &mut Transcript,
) -> Result<TcpStream, Failure> {
    let started = Instant::now();
    let reached = within(timeout, Stage::Proxy, async {
        let addresses = lookup(&endpoint.host, endpoint.port, Stage::Proxy).await?;
        connect_any(&addresses, timeout, Stage::Proxy).await
    })
    .await;
    log.record(Stage::Proxy, started, &reached, |(_, addr)| {
        format!("connected to the {} at {addr}", endpoint.describe())
    });
    let (tcp, _) = reached?;

    let started = Instant::now();
    let target = authority(host.as_str(), port.get());
    let opened = within(timeout, Stage::Tunnel, async {
        match endpoint.kind {
            ProxyKind::Socks5 => socks5(tcp, endpoint, host.as_str(), port.get()).await,
            ProxyKind::Http => http_connect(tcp, endpoint, &target).await,
        }
    })
    .await;
    log.record(Stage::Tunnel, started, &opened, |_| match &endpoint.login {
        Some((user, _)) => format!("logged in to the proxy as {user}; tunnel open to {target}"),
        None => format!("tunnel open to {target}"),
    });
    opened
}

async fn socks5(tcp: TcpStream, endpoint: &Endpoint, host: &str, port: u16) -> Result<TcpStream, Failure> {
    use tokio_socks::Error as E;
    let target = authority(host, port);
    let opened = match &endpoint.login {
        Some((user, password)) => {
            Socks5Stream::connect_with_password_and_socket(tcp, (host, port), user, password.expose()).await
        }
        None => Socks5Stream::connect_with_socket(tcp, (host, port)).await,
    };
    let refused = |detail: String| Failure::Refused { stage: Stage::Tunnel, detail };
    match opened {
        Ok(stream) => Ok(stream.into_inner()),
        Err(E::PasswordAuthFailure(_)) => {
            Err(refused("the SOCKS5 proxy refused the user name and password".to_owned()))
        }
        Err(E::NoAcceptableAuthMethods) if endpoint.login.is_none() => {
            Err(refused("the SOCKS5 proxy requires a user name and password".to_owned()))
        }
        Err(E::NoAcceptableAuthMethods) => {
            Err(refused("the SOCKS5 proxy accepts no user name and password login".to_owned()))
        }
        Err(E::ConnectionNotAllowedByRuleset) => {
            Err(refused(format!("the SOCKS5 proxy does not allow connections to {target}")))
        }
        Err(e @ (E::HostUnreachable | E::NetworkUnreachable | E::ConnectionRefused | E::TtlExpired)) => {
            Err(refused(format!("the SOCKS5 proxy cannot reach {target}: {e}")))
        }
        Err(E::Io(e)) => Err(Failure::Network { stage: Stage::Tunnel, detail: format!("the SOCKS5 proxy: {e}") }),
        Err(e) => Err(refused(format!("the SOCKS5 proxy failed: {e}"))),
    }
}

/// The longest proxy answer read before giving up on it.
const MAX_CONNECT_HEAD: usize = 16 * 1024;

/// HTTP CONNECT, written here: the crates that do it read the proxy's answer
/// through a buffer, which swallows the SMTP server's greeting that follows
/// it. This reads one byte at a time up to the blank line, so everything
/// after it stays in the socket for the SMTP session.
async fn http_connect(mut tcp: TcpStream, endpoint: &Endpoint, target: &str) -> Result<TcpStream, Failure> {
    let network = |e: std::io::Error| Failure::Network { stage: Stage::Tunnel, detail: format!("the HTTP proxy: {e}") };
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some((user, password)) = &endpoint.login {
        let credentials = BASE64.encode(format!("{user}:{}", password.expose()));
        request.push_str(&format!("Proxy-Authorization: Basic {credentials}\r\n"));
    }
    request.push_str("\r\n");
    tcp.write_all(request.as_bytes()).await.map_err(network)?;

    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_CONNECT_HEAD {
            return Err(Failure::Network {
                stage: Stage::Tunnel,
                detail: "the HTTP proxy's answer never ended".into(),
            });
        }
        match tcp.read_u8().await {
            Ok(byte) => head.push(byte),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                let detail = "the HTTP proxy closed the connection without answering".to_owned();
                return Err(Failure::Network { stage: Stage::Tunnel, detail });
            }
            Err(e) => return Err(network(e)),
        }
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let (code, reason) = match response.parse(&head) {
        Ok(httparse::Status::Complete(_)) => (response.code.unwrap_or(0), response.reason.unwrap_or("").to_owned()),
        _ => {
            let detail = "the HTTP proxy answered something that is not HTTP".to_owned();
            return Err(Failure::Network { stage: Stage::Tunnel, detail });
        }
    };
    let status = format!("{code} {reason}");
    let refused = |detail: String| Err(Failure::Refused { stage: Stage::Tunnel, detail });
    match code {
        200..=299 => Ok(tcp),
        // tinyproxy answers 401 to wrong credentials, others 407.
        401 | 407 if endpoint.login.is_some() => {
            refused(format!("the HTTP proxy refused the user name and password ({status})"))
        }
        401 | 407 => refused(format!("the HTTP proxy requires a user name and password ({status})")),
        _ => refused(format!("the HTTP proxy would not open a tunnel to {target}: {status}")),
    }
}

/// `host:port`, an IPv6 address in brackets.
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(host: &str) -> (Host, Port) {
        (Host::parse("host", host).unwrap(), Port::parse("port", 587).unwrap())
    }

    fn system(all: &str, no: &str, host: &str) -> Option<Endpoint> {
        let system = SystemProxy {
            all: Some(all.to_owned()).filter(|a| !a.is_empty()),
            no: Some(no.to_owned()),
            ..SystemProxy::default()
        };
        let (host, port) = target(host);
        from_system(&system, &host, port).unwrap()
    }

    #[test]
    fn system_variables_name_the_proxy_and_its_login() {
        let socks = system("socks5h://ana:s3cret@proxy.acme.example:1081", "", "smtp.example.com").unwrap();
        assert_eq!((socks.kind, socks.host.as_str(), socks.port), (ProxyKind::Socks5, "proxy.acme.example", 1081));
        let (user, password) = socks.login.unwrap();
        assert_eq!((user.as_str(), password.expose()), ("ana", "s3cret"));

        let http = system("http://ana:s3cret@127.0.0.1:3128", "", "smtp.example.com").unwrap();
        assert_eq!((http.kind, http.host.as_str(), http.port), (ProxyKind::Http, "127.0.0.1", 3128));
        let (user, password) = http.login.unwrap();
        assert_eq!((user.as_str(), password.expose()), ("ana", "s3cret"));

        let bare = system("socks5://[::1]", "", "smtp.example.com").unwrap();
        assert_eq!((bare.host.as_str(), bare.port, bare.login.is_none()), ("::1", 1080, true));
    }

    #[test]
    fn no_proxy_covers_hosts_domains_and_networks() {
        let all = "socks5://127.0.0.1:1080";
        assert!(system(all, "smtp.acme.example", "smtp.acme.example").is_none());
        assert!(system(all, ".acme.example", "smtp.acme.example").is_none());
        assert!(system(all, "10.0.0.0/8", "10.1.2.3").is_none());
        assert!(system(all, "*", "smtp.example.com").is_none());
        assert!(system(all, "acme.example", "smtp.example.com").is_some());
        assert!(system("", "", "smtp.example.com").is_none(), "no variable, no proxy");
    }

    #[test]
    fn a_system_proxy_of_another_kind_is_refused_in_words() {
        let system = SystemProxy { all: Some("https://proxy.acme.example:443".into()), ..SystemProxy::default() };
        let (host, port) = target("smtp.example.com");
        let refused = from_system(&system, &host, port).err().unwrap();
        assert!(refused.to_string().contains("socks5:// or http://"), "{refused}");
    }

    #[test]
    fn a_system_proxy_that_cannot_be_read_is_said_unless_no_proxy_covers_the_host() {
        let (host, port) = target("smtp.example.com");
        let unreadable = SystemProxy { all: Some("socks://proxy.acme.example:1080".into()), ..SystemProxy::default() };
        let refused = from_system(&unreadable, &host, port).err().unwrap();
        assert!(refused.to_string().contains("not a proxy address carteiro can read"), "{refused}");
        let covered = SystemProxy { no: Some("example.com".into()), ..unreadable };
        assert!(from_system(&covered, &host, port).unwrap().is_none());
        let https_first = SystemProxy { https: Some("http://127.0.0.1:3128".into()), ..covered };
        assert!(from_system(&https_first, &target("smtp.acme.example").0, port).unwrap().is_some());
    }
}
