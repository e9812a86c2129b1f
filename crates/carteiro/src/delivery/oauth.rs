//! XOAUTH2 bearer tokens: given as is, or obtained from a token endpoint
//! (RFC 6749 refresh token or client credentials grant) and cached until
//! shortly before they expire, so that sessions of one connection share one
//! token and the endpoint is asked once per lifetime, not once per message.
//! The endpoint is reached the way the SMTP server is: directly, or through
//! the connection's proxy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use carteiro_core::Secret;
use carteiro_core::delivery::{Failure, Stage};
use carteiro_core::settings::{OAuth, Proxy, ProxyAt, ProxyKind};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// A lifetime the endpoint did not state is taken to be an hour (Google's and Microsoft's).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// A token is renewed this long before it expires, at most a tenth of its lifetime.
const RENEW_AHEAD: Duration = Duration::from_secs(60);
/// No token is kept longer, whatever the endpoint says.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

struct Cached {
    token: Secret,
    renew_at: Instant,
}

type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

/// The token to present, and where it came from (for the session's record).
pub struct Bearer {
    pub token: Secret,
    pub source: String,
}

/// The tokens of every connection that uses a token endpoint.
pub struct Tokens {
    /// For connections without a proxy.
    direct: reqwest::Client,
    /// One slot per (endpoint, client, grant): concurrent sessions wait for one request.
    slots: Mutex<HashMap<[u8; 32], Slot>>,
}

impl Default for Tokens {
    fn default() -> Self {
        let direct = client(None).expect("an HTTP client without a proxy builds");
        Self { direct, slots: Mutex::default() }
    }
}

/// An HTTP client for token endpoints: through `proxy` (the system's
/// variables when it has no address), else directly. Redirects are not
/// followed: they would carry the client's secrets elsewhere.
fn client(proxy: Option<&Proxy>) -> Result<reqwest::Client, Failure> {
    let tls = super::tls::client_config(true, None).map_err(|detail| Failure::Tls { detail })?;
    let builder = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("carteiro/", env!("CARGO_PKG_VERSION")));
    let builder = match proxy.map(|p| (p.kind, &p.at)) {
        None => builder.no_proxy(),
        // reqwest reads ALL_PROXY, HTTPS_PROXY and NO_PROXY itself.
        Some((_, ProxyAt::System)) => builder,
        Some((kind, ProxyAt::Address { host, port, login })) => {
            let scheme = match kind {
                ProxyKind::Socks5 => "socks5h",
                ProxyKind::Http => "http",
            };
            let host = host.as_str();
            let authority = if host.contains(':') { format!("[{host}]") } else { host.to_owned() };
            let unusable = |e: reqwest::Error| Failure::Settings { detail: format!("the proxy cannot be used: {e}") };
            let mut proxy = reqwest::Proxy::all(format!("{scheme}://{authority}:{}", port.get())).map_err(unusable)?;
            if let Some((user, password)) = login {
                proxy = proxy.basic_auth(user, password.expose());
            }
            builder.proxy(proxy)
        }
    };
    builder.build().map_err(|e| Failure::Settings { detail: format!("no HTTP client for the token endpoint: {e}") })
}

/// What a token endpoint answers (RFC 6749 §5.1, §5.2).
#[derive(Deserialize)]
struct Granted {
    access_token: String,
    /// Seconds; some endpoints send it as a string.
    expires_in: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Refusal {
    error: String,
    error_description: Option<String>,
}

impl Tokens {
    /// The bearer token to present now, asking the endpoint (through `proxy`,
    /// if any) when none is cached; within `timeout`, waiting included.
    pub async fn token(&self, oauth: &OAuth, proxy: Option<&Proxy>, timeout: Duration) -> Result<Bearer, Failure> {
        tokio::time::timeout(timeout, self.obtain(oauth, proxy))
            .await
            .unwrap_or(Err(Failure::Timeout { stage: Stage::Token }))
    }

    async fn obtain(&self, oauth: &OAuth, proxy: Option<&Proxy>) -> Result<Bearer, Failure> {
        let url = match oauth {
            OAuth::Static { access_token } => {
                return Ok(Bearer { token: access_token.clone(), source: "the access token in the settings".into() });
            }
            OAuth::Refresh { token_url, .. } | OAuth::ClientCredentials { token_url, .. } => token_url,
        };
        let slot = self.slot(oauth);
        let mut cached = slot.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| Instant::now() < c.renew_at) {
            let left = c.renew_at.saturating_duration_since(Instant::now()).as_secs();
            return Ok(Bearer {
                token: c.token.clone(),
                source: format!("a cached token from {url}, renewed in {left} s"),
            });
        }
        let fresh = match proxy {
            None => self.request(&self.direct, oauth).await?,
            Some(_) => self.request(&client(proxy)?, oauth).await?,
        };
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(Bearer { token, source: format!("a new token from {url}") })
    }

    /// Drops `refused` from the cache of `oauth` (unless a newer token took
    /// its place meanwhile): the next session asks for a new one.
    pub async fn forget(&self, oauth: &OAuth, refused: &Secret) {
        let slot = self.slot(oauth);
        let mut cached = slot.lock().await;
        if cached.as_ref().is_some_and(|c| c.token == *refused) {
            *cached = None;
        }
    }

    fn slot(&self, oauth: &OAuth) -> Slot {
        self.slots.lock().expect("token slots lock").entry(key(oauth)).or_default().clone()
    }

    async fn request(&self, http: &reqwest::Client, oauth: &OAuth) -> Result<Cached, Failure> {
        let (url, form): (&str, Vec<(&str, &str)>) = match oauth {
            OAuth::Static { .. } => unreachable!("a static token is never requested"),
            OAuth::Refresh { token_url, client_id, client_secret, refresh_token } => {
                let mut form = vec![
                    ("grant_type", "refresh_token"),
                    ("client_id", client_id.as_str()),
                    ("refresh_token", refresh_token.expose()),
                ];
                if let Some(secret) = client_secret {
                    form.push(("client_secret", secret.expose()));
                }
                (token_url, form)
            }
            OAuth::ClientCredentials { token_url, client_id, client_secret, scope } => (
                token_url,
                vec![
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id.as_str()),
                    ("client_secret", client_secret.expose()),
                    ("scope", scope.as_str()),
                ],
            ),
        };
        let asked = Instant::now();
        // reqwest's errors may carry the URL, never the form: safe to show.
        let network = |e: reqwest::Error| Failure::Network {
            stage: Stage::Token,
            detail: format!("the token endpoint {url} cannot be reached: {}", without_url(e)),
        };
        let response = http.post(url).form(&form).send().await.map_err(network)?;
        let status = response.status();
        let body = response.bytes().await.map_err(network)?;
        if !status.is_success() {
            return Err(refused(url, status, &body));
        }
        let granted: Granted = serde_json::from_slice(&body).map_err(|_| Failure::Refused {
            stage: Stage::Token,
            detail: format!("the token endpoint {url} answered {status} without an access_token"),
        })?;
        let lifetime = granted.expires_in.as_ref().and_then(seconds).unwrap_or(DEFAULT_LIFETIME).min(MAX_LIFETIME);
        let ahead = RENEW_AHEAD.min(lifetime / 10);
        Ok(Cached { token: Secret::new(granted.access_token), renew_at: asked + lifetime - ahead })
    }
}

/// The endpoint's refusal in its own words (`invalid_grant: Token has been expired or revoked.`).
fn refused(url: &str, status: reqwest::StatusCode, body: &[u8]) -> Failure {
    let detail = match serde_json::from_slice::<Refusal>(body) {
        Ok(Refusal { error, error_description: Some(description) }) => {
            format!("the token endpoint refused: {error} ({description})")
        }
        Ok(Refusal { error, error_description: None }) => format!("the token endpoint refused: {error}"),
        Err(_) => format!("the token endpoint {url} answered {status}"),
    };
    // The endpoint's own trouble passes; a refusal stays until the settings change.
    match status.is_server_error() {
        true => Failure::Network { stage: Stage::Token, detail },
        false => Failure::Refused { stage: Stage::Token, detail },
    }
}

fn seconds(value: &serde_json::Value) -> Option<Duration> {
    let secs = match value {
        serde_json::Value::Number(n) => n.as_u64()?,
        serde_json::Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    (secs > 0).then(|| Duration::from_secs(secs))
}

fn without_url(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut words = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        words.push_str(": ");
        words.push_str(&cause.to_string());
        source = cause.source();
    }
    words
}

/// Tells grants apart without keeping their secrets in clear as map keys.
fn key(oauth: &OAuth) -> [u8; 32] {
    let mut hash = Sha256::new();
    let (url, client, extra) = match oauth {
        OAuth::Static { .. } => ("", "", ""),
        OAuth::Refresh { token_url, client_id, .. } => (token_url.as_str(), client_id.as_str(), "refresh"),
        OAuth::ClientCredentials { token_url, client_id, scope, .. } => {
            (token_url.as_str(), client_id.as_str(), scope.as_str())
        }
    };
    for part in [url, client, extra].into_iter().chain(oauth.secrets().into_iter().map(Secret::expose)) {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    hash.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_are_read_as_numbers_or_strings() {
        assert_eq!(seconds(&serde_json::json!(3599)), Some(Duration::from_secs(3599)));
        assert_eq!(seconds(&serde_json::json!("120")), Some(Duration::from_secs(120)));
        assert_eq!(seconds(&serde_json::json!(0)), None);
        assert_eq!(seconds(&serde_json::json!("soon")), None);
    }

    #[test]
    fn refusals_are_told_in_the_endpoints_words() {
        let status = reqwest::StatusCode::BAD_REQUEST;
        let body = br#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#;
        let failure = refused("https://oauth2.example/token", status, body);
        assert_eq!(
            failure.to_string(),
            "the token endpoint refused: invalid_grant (Token has been expired or revoked.)"
        );
        assert_eq!(failure.stage(), Stage::Token);
        let outage = refused("https://oauth2.example/token", reqwest::StatusCode::SERVICE_UNAVAILABLE, b"busy");
        assert!(matches!(outage, Failure::Network { .. }), "an outage is temporary: {outage:?}");
    }

    #[test]
    fn grants_with_other_secrets_have_other_slots() {
        let grant = |refresh: &str| OAuth::Refresh {
            token_url: "https://oauth2.example/token".into(),
            client_id: "client".into(),
            client_secret: None,
            refresh_token: Secret::new(refresh),
        };
        assert_eq!(key(&grant("a")), key(&grant("a")));
        assert_ne!(key(&grant("a")), key(&grant("b")));
    }
}
