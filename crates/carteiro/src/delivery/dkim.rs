//! DKIM (RFC 6376, Ed25519 per RFC 8463): signing keys made here or
//! imported, the DNS record that publishes each, and the signature prepended
//! to a built message. The cryptography is mail-auth's.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use mail_auth::common::crypto::{DkimKey, Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::generate::DkimKeyPair;
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer};

/// The headers a signature covers: those a forger would change.
const SIGNED_HEADERS: [&str; 10] =
    ["From", "Sender", "Reply-To", "To", "Cc", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Ed25519,
    Rsa,
}

impl Algorithm {
    pub const CHOICES: [&str; 2] = ["ed25519", "rsa"];

    pub fn parse(input: &str) -> Option<Self> {
        match input {
            "ed25519" => Some(Self::Ed25519),
            "rsa" => Some(Self::Rsa),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ed25519 => "ed25519",
            Self::Rsa => "rsa",
        }
    }
}

/// A private key (DER: PKCS#8 for Ed25519, PKCS#1 or PKCS#8 for RSA) and its public half as published.
pub struct KeyPair {
    pub algorithm: Algorithm,
    pub private_der: Vec<u8>,
    /// The `p=` of the DNS record: the raw key for Ed25519, SubjectPublicKeyInfo for RSA.
    pub public_base64: String,
}

/// The private key is never printed.
impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyPair").field("algorithm", &self.algorithm).field("public", &self.public_base64).finish()
    }
}

impl KeyPair {
    /// A new key: Ed25519, or RSA with 2048 bits (slow: run it off the async threads).
    pub fn generate(algorithm: Algorithm) -> Result<Self, String> {
        let pair = match algorithm {
            Algorithm::Ed25519 => DkimKeyPair::generate_ed25519(),
            Algorithm::Rsa => DkimKeyPair::generate_rsa(2048),
        }
        .map_err(|e| format!("cannot make a key: {e}"))?;
        let (private_der, _) = pair.into_inner();
        Self::from_der(algorithm, private_der)
    }

    /// A private key in PEM (`PRIVATE KEY` or `RSA PRIVATE KEY`); its algorithm is found from it.
    pub fn import_pem(pem: &str) -> Result<Self, String> {
        let der = PrivateKeyDer::from_pem_slice(pem.trim().as_bytes())
            .map_err(|_| "it is not a private key in PEM (-----BEGIN PRIVATE KEY----- …)".to_owned())?;
        match der {
            PrivateKeyDer::Pkcs1(der) => Self::from_der(Algorithm::Rsa, der.secret_pkcs1_der().to_vec()),
            PrivateKeyDer::Pkcs8(der) => {
                let der = der.secret_pkcs8_der().to_vec();
                if Ed25519Key::from_pkcs8_der(&der).is_ok() {
                    Self::from_der(Algorithm::Ed25519, der)
                } else {
                    Self::from_der(Algorithm::Rsa, der)
                }
            }
            _ => Err("only Ed25519 and RSA keys can sign DKIM".to_owned()),
        }
    }

    /// Checks a stored or imported private key and derives what DNS publishes.
    pub fn from_der(algorithm: Algorithm, private_der: Vec<u8>) -> Result<Self, String> {
        let public = match private_key(algorithm, &private_der)? {
            DkimKey::Ed25519(key) => key.public_key(),
            DkimKey::Rsa(key) => {
                use rsa::pkcs1::DecodeRsaPublicKey;
                use rsa::pkcs8::EncodePublicKey;
                use rsa::traits::PublicKeyParts;
                let public = rsa::RsaPublicKey::from_pkcs1_der(&key.public_key()).map_err(|e| e.to_string())?;
                if public.size() * 8 < 1024 {
                    return Err("an RSA key must have at least 1024 bits (2048 are recommended)".to_owned());
                }
                public.to_public_key_der().map_err(|e| e.to_string())?.as_bytes().to_vec()
            }
        };
        Ok(Self { algorithm, private_der, public_base64: STANDARD.encode(public) })
    }
}

/// The TXT record to publish at `{selector}._domainkey.{domain}`.
pub fn dns_record(algorithm: Algorithm, public_base64: &str) -> String {
    format!("v=DKIM1; k={}; p={public_base64}", algorithm.as_str())
}

fn private_key(algorithm: Algorithm, private_der: &[u8]) -> Result<DkimKey, String> {
    let unreadable = |e: mail_auth::Error| format!("the {} key cannot be read: {e}", algorithm.as_str());
    Ok(match algorithm {
        Algorithm::Ed25519 => DkimKey::Ed25519(Ed25519Key::from_pkcs8_der(private_der).map_err(unreadable)?),
        Algorithm::Rsa => {
            let pkcs1 = PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(private_der.to_vec()));
            let key = match RsaKey::<Sha256>::from_key_der(pkcs1) {
                Ok(key) => key,
                Err(_) => RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs8(private_der.to_vec().into()))
                    .map_err(unreadable)?,
            };
            DkimKey::Rsa(key)
        }
    })
}

/// A key ready to sign for one domain and selector.
pub struct Signer(DkimSigner<DkimKey, Done>);

impl Signer {
    pub fn new(algorithm: Algorithm, private_der: &[u8], domain: &str, selector: &str) -> Result<Self, String> {
        let signer = DkimSigner::from_key(private_key(algorithm, private_der)?)
            .domain(domain)
            .selector(selector)
            .headers(SIGNED_HEADERS)
            .header_canonicalization(Canonicalization::Relaxed)
            .body_canonicalization(Canonicalization::Relaxed);
        Ok(Self(signer))
    }

    /// The message with a `DKIM-Signature` header in front (relaxed/relaxed).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        let signature = self.0.sign(message).map_err(|e| format!("cannot sign: {e}"))?;
        let mut signed = signature.to_header().into_bytes();
        signed.extend_from_slice(message);
        Ok(signed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &[u8] = b"From: Ana <ana@acme.example>\r\nTo: b@example.com\r\nSubject: Ol\xc3\xa1\r\nDate: Wed, 25 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@carteiro>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nCorpo.\r\n";

    #[test]
    fn made_keys_sign_and_publish_what_verifies_them() {
        for algorithm in [Algorithm::Ed25519, Algorithm::Rsa] {
            let pair = KeyPair::generate(algorithm).unwrap();
            let record = dns_record(algorithm, &pair.public_base64);
            assert!(record.starts_with(&format!("v=DKIM1; k={}; p=", algorithm.as_str())));
            let signed =
                Signer::new(algorithm, &pair.private_der, "acme.example", "s1").unwrap().sign(MESSAGE).unwrap();
            let text = String::from_utf8_lossy(&signed);
            assert!(text.starts_with("DKIM-Signature: v=1; a="), "{text}");
            assert!(text.contains("d=acme.example") && text.contains("s=s1"));
            assert!(signed.ends_with(MESSAGE));
            // Read back from its DER, the same key.
            assert_eq!(
                KeyPair::from_der(algorithm, pair.private_der.clone()).unwrap().public_base64,
                pair.public_base64
            );
        }
    }

    #[test]
    fn only_private_keys_in_pem_are_imported() {
        assert!(KeyPair::import_pem("not a key").unwrap_err().contains("PEM"));
        let pair = KeyPair::generate(Algorithm::Ed25519).unwrap();
        let pem =
            format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", STANDARD.encode(&pair.private_der));
        let imported = KeyPair::import_pem(&pem).unwrap();
        assert_eq!(imported.algorithm, Algorithm::Ed25519);
        assert_eq!(imported.public_base64, pair.public_base64);
    }
}
