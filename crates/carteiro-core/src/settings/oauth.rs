//! XOAUTH2 (Google, Microsoft 365): the bearer token AUTH sends, either given
//! as is or obtained from a token endpoint with a refresh token (Google) or
//! the client's own credentials (Microsoft 365).

use crate::error::{FieldError, FieldErrors};
use crate::secret::Secret;

use super::doc::OAuthDoc;
use super::values::{Kept, bounded, secret_field, text};

pub const ACCESS_TOKEN: &str = "connection.oauth.access_token";
pub const CLIENT_SECRET: &str = "connection.oauth.client_secret";
pub const REFRESH_TOKEN: &str = "connection.oauth.refresh_token";

const GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
const MICROSOFT_SCOPE: &str = "https://outlook.office365.com/.default";

/// How the bearer token is obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OAuth {
    /// A token given as is: it works until it expires.
    Static { access_token: Secret },
    /// A refresh token exchanged at `token_url` (Google's by default).
    Refresh { token_url: String, client_id: String, client_secret: Option<Secret>, refresh_token: Secret },
    /// The client's own credentials (Microsoft 365: `tenant`).
    ClientCredentials { token_url: String, client_id: String, client_secret: Secret, scope: String },
}

impl OAuth {
    /// The secrets it holds.
    pub fn secrets(&self) -> Vec<&Secret> {
        match self {
            Self::Static { access_token } => vec![access_token],
            Self::Refresh { client_secret, refresh_token, .. } => client_secret.iter().chain([refresh_token]).collect(),
            Self::ClientCredentials { client_secret, .. } => vec![client_secret],
        }
    }
}

/// The oauth block as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OAuthBlock {
    pub access_token: Option<Secret>,
    pub token_url: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub refresh_token: Option<Secret>,
    pub tenant: Option<String>,
    pub scope: Option<String>,
}

/// The stored secrets an oauth document may keep by leaving them blank.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeptOAuth<'a> {
    pub access_token: Kept<'a>,
    pub client_secret: Kept<'a>,
    pub refresh_token: Kept<'a>,
}

impl OAuthBlock {
    /// A stored token or client secret is kept only for the same endpoint and client.
    pub fn kept<'a>(doc: &OAuthDoc, stored: Option<&'a OAuthBlock>) -> KeptOAuth<'a> {
        let same = stored.is_some_and(|s| {
            s.token_url.as_deref() == text(&doc.token_url)
                && s.tenant.as_deref() == text(&doc.tenant)
                && s.client_id.as_deref() == text(&doc.client_id)
        });
        let keep = |get: fn(&OAuthBlock) -> Option<&Secret>| Kept::new(stored.and_then(get), same);
        KeptOAuth {
            access_token: keep(|s| s.access_token.as_ref()),
            client_secret: keep(|s| s.client_secret.as_ref()),
            refresh_token: keep(|s| s.refresh_token.as_ref()),
        }
    }

    pub fn parse(doc: &OAuthDoc, kept: KeptOAuth<'_>, errors: &mut FieldErrors) -> Self {
        let mut plain = |field: &str, value: &Option<String>| {
            text(value).and_then(|v| errors.check(bounded(field, v, 512)).map(|()| v.to_owned()))
        };
        let token_url = plain("connection.oauth.token_url", &doc.token_url);
        let client_id = plain("connection.oauth.client_id", &doc.client_id);
        let tenant = plain("connection.oauth.tenant", &doc.tenant);
        let scope = plain("connection.oauth.scope", &doc.scope);
        if let Some(url) = &token_url {
            errors.check(check_token_url(url));
        }
        if let Some(tenant) = &tenant
            && !tenant.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            errors.push(FieldError::new(
                "connection.oauth.tenant",
                "connection.oauth.tenant must be a tenant id or domain (letters, digits, '-' and '.')",
            ));
        }
        Self {
            access_token: secret_field(ACCESS_TOKEN, doc.access_token.as_ref(), kept.access_token, errors),
            client_secret: secret_field(CLIENT_SECRET, doc.client_secret.as_ref(), kept.client_secret, errors),
            refresh_token: secret_field(REFRESH_TOKEN, doc.refresh_token.as_ref(), kept.refresh_token, errors),
            token_url,
            client_id,
            tenant,
            scope,
        }
    }

    /// How the token is obtained, or what is missing for it.
    pub fn oauth(&self) -> Result<OAuth, FieldError> {
        if let Some(refresh_token) = &self.refresh_token {
            let client_id =
                self.client_id.clone().ok_or_else(|| required("connection.oauth.client_id", "with a refresh token"))?;
            return Ok(OAuth::Refresh {
                token_url: self.token_url.clone().unwrap_or_else(|| GOOGLE_TOKEN_URL.to_owned()),
                client_id,
                client_secret: self.client_secret.clone(),
                refresh_token: refresh_token.clone(),
            });
        }
        if self.tenant.is_some() || (self.client_secret.is_some() && self.token_url.is_some()) {
            let client_id = self
                .client_id
                .clone()
                .ok_or_else(|| required("connection.oauth.client_id", "with client credentials"))?;
            let client_secret = self
                .client_secret
                .clone()
                .ok_or_else(|| required("connection.oauth.client_secret", "with client credentials"))?;
            let token_url = match (&self.token_url, &self.tenant) {
                (Some(url), _) => url.clone(),
                (None, Some(tenant)) => format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"),
                (None, None) => unreachable!("checked above"),
            };
            let scope = self.scope.clone().unwrap_or_else(|| MICROSOFT_SCOPE.to_owned());
            return Ok(OAuth::ClientCredentials { token_url, client_id, client_secret, scope });
        }
        match &self.access_token {
            Some(access_token) => Ok(OAuth::Static { access_token: access_token.clone() }),
            None => Err(FieldError::new(
                "connection.oauth",
                "connection.oauth needs an access_token, or a refresh_token with client_id (and client_secret), or a tenant with client_id and client_secret",
            )),
        }
    }

    pub fn to_doc(&self) -> OAuthDoc {
        OAuthDoc {
            access_token: None,
            access_token_set: Some(self.access_token.is_some()),
            token_url: self.token_url.clone(),
            client_id: self.client_id.clone(),
            client_secret: None,
            client_secret_set: Some(self.client_secret.is_some()),
            refresh_token: None,
            refresh_token_set: Some(self.refresh_token.is_some()),
            tenant: self.tenant.clone(),
            scope: self.scope.clone(),
        }
    }
}

fn required(field: &str, when: &str) -> FieldError {
    FieldError::new(field, format!("{field} is required {when}"))
}

/// Tokens travel over HTTPS; plain HTTP only to this machine (a local endpoint, tests).
fn check_token_url(url: &str) -> Result<(), FieldError> {
    let field = "connection.oauth.token_url";
    let local = url.strip_prefix("http://").is_some_and(|rest| {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host = authority.rsplit_once(':').filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()));
        matches!(host.map_or(authority, |(host, _)| host), "127.0.0.1" | "localhost" | "[::1]")
    });
    let authority =
        url.split_once("://").map_or("", |(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or_default());
    if authority.contains('@') {
        // A password there would be shown wherever the URL is.
        return Err(FieldError::new(
            field,
            format!("{field} must not hold a user name or password: put them in client_id and client_secret"),
        ));
    }
    if url.starts_with("https://") || local {
        Ok(())
    } else {
        Err(FieldError::new(field, format!("{field} must be an https:// URL, got {url:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::check_token_url;

    #[test]
    fn token_urls_are_https_or_this_machine_and_hold_no_login() {
        assert!(check_token_url("https://oauth2.googleapis.com/token").is_ok());
        assert!(check_token_url("http://127.0.0.1:9000/token").is_ok());
        assert!(check_token_url("http://[::1]/token").is_ok());
        assert!(check_token_url("http://oauth.example/token").is_err());
        assert!(check_token_url("http://127.0.0.1.evil.example/token").is_err());
        let refused = check_token_url("https://client:s3cret@oauth.example/token").unwrap_err();
        assert!(
            refused.message.contains("must not hold a user name or password") && !refused.message.contains("s3cret")
        );
    }
}
