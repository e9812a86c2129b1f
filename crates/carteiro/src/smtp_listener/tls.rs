//! The listener's TLS: the operator's certificate, or a self-signed one made
//! on the first start (kept in the data directory) for testing.

use std::path::Path;

use anyhow::Context;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::SmtpArgs;

const SELF_SIGNED_CERT: &str = "smtp-tls-cert.pem";
const SELF_SIGNED_KEY: &str = "smtp-tls-key.pem";

pub fn server_config(args: &SmtpArgs, data_dir: &Path, hostname: &str) -> anyhow::Result<ServerConfig> {
    let (cert, key) = match (&args.smtp_tls_cert, &args.smtp_tls_key) {
        (Some(cert), Some(key)) => (cert.clone(), key.clone()),
        _ => self_signed(data_dir, hostname)?,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
        .with_context(|| format!("cannot read the SMTP certificate {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("{} holds no PEM certificate", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "{} holds no certificate", cert.display());
    let key = PrivateKeyDer::from_pem_file(&key)
        .with_context(|| format!("cannot read the SMTP private key {}", key.display()))?;
    ServerConfig::builder_with_provider(rustls::crypto::ring::default_provider().into())
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the SMTP certificate and key do not go together")
}

/// The self-signed certificate of this data directory, made the first time.
fn self_signed(data_dir: &Path, hostname: &str) -> anyhow::Result<(std::path::PathBuf, std::path::PathBuf)> {
    let (cert, key) = (data_dir.join(SELF_SIGNED_CERT), data_dir.join(SELF_SIGNED_KEY));
    if !cert.exists() || !key.exists() {
        let names = vec![hostname.to_owned(), "localhost".to_owned(), "127.0.0.1".to_owned()];
        let made = rcgen::generate_simple_self_signed(names).context("cannot make a self-signed certificate")?;
        std::fs::create_dir_all(data_dir)?;
        write_private(&key, made.signing_key.serialize_pem().as_bytes())?;
        std::fs::write(&cert, made.cert.pem())?;
    }
    tracing::warn!(
        certificate = %cert.display(),
        "the SMTP listener uses a self-signed certificate: fine for testing; give --smtp-tls-cert and --smtp-tls-key in production"
    );
    Ok((cert, key))
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.write_all(bytes)?;
    Ok(())
}
