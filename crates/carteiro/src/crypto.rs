//! Secrets at rest: XChaCha20-Poly1305 under a master key. The additional
//! data names what a secret belongs to (`settings:company:acme:connection.password`),
//! so a sealed value copied onto another row does not open.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use carteiro_core::Secret;
use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};

/// A sealed secret does not open: carteiro runs with another master key than
/// the one the secret was saved with. Said in these words wherever it surfaces.
#[derive(Debug, thiserror::Error)]
#[error(
    "a stored password cannot be opened with this master key: start carteiro with the key it was saved with (CARTEIRO_MASTER_KEY, or master.key in the data directory)"
)]
pub struct WrongMasterKey;

/// Format tag of sealed values, so that a later scheme can sit beside this one.
const SEALED_PREFIX: &str = "v1:";
const KEY_FILE: &str = "master.key";
/// The new key during a rotation, until the secrets are sealed with it.
const STAGED_KEY_FILE: &str = "master.key.new";

pub struct MasterKey {
    cipher: XChaCha20Poly1305,
}

impl MasterKey {
    /// Uses `CARTEIRO_MASTER_KEY` (base64 of 32 bytes) when given; else the key
    /// file in the data directory, created with mode 0600 on first run. A new
    /// key is made only when `may_create`: a store that already holds sealed
    /// secrets needs the key they were sealed with, not a fresh one.
    pub fn load_or_create(from_env: Option<&str>, data_dir: &Path, may_create: bool) -> anyhow::Result<Self> {
        if let Some(encoded) = from_env {
            return Self::from_base64(encoded)
                .context("CARTEIRO_MASTER_KEY must be the base64 of 32 random bytes (try: openssl rand -base64 32)");
        }
        let path = data_dir.join(KEY_FILE);
        let staged = data_dir.join(STAGED_KEY_FILE);
        if staged.exists() {
            tracing::warn!("{}", interrupted_rotation(&staged));
        }
        match std::fs::read_to_string(&path) {
            Ok(encoded) => {
                Self::from_base64(&encoded).with_context(|| format!("the key file {} is damaged", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !may_create => bail!(
                "the master key is missing: {} does not exist and CARTEIRO_MASTER_KEY is not set, but the database holds passwords sealed with a key; restore the key file or set CARTEIRO_MASTER_KEY",
                path.display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Key::generate();
                match write_private(&path, B64.encode(key.as_slice()).as_bytes()) {
                    // Another carteiro process made it first: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        return Self::load_or_create(None, data_dir, false);
                    }
                    other => other.with_context(|| format!("cannot create the key file {}", path.display()))?,
                }
                tracing::info!(path = %path.display(), "created a new master key; keep a copy of it: without it stored passwords cannot be read");
                Ok(Self { cipher: XChaCha20Poly1305::new(&key) })
            }
            Err(e) => Err(e).with_context(|| format!("cannot read the key file {}", path.display())),
        }
    }

    /// A new random key, and its base64 as the key file and `CARTEIRO_MASTER_KEY` hold it.
    pub fn generate() -> (Self, String) {
        let key = Key::generate();
        (Self { cipher: XChaCha20Poly1305::new(&key) }, B64.encode(key.as_slice()))
    }

    pub fn from_base64(encoded: &str) -> anyhow::Result<Self> {
        let bytes = B64.decode(encoded.trim()).context("not valid base64")?;
        if bytes.len() != 32 {
            bail!("the key is {} bytes long; it must be 32", bytes.len());
        }
        let key = Key::try_from(bytes.as_slice()).context("key length")?;
        Ok(Self { cipher: XChaCha20Poly1305::new(&key) })
    }

    /// Seals a secret for the place `aad` names.
    pub fn seal(&self, aad: &str, secret: &Secret) -> String {
        let nonce = XNonce::generate();
        let sealed = self
            .cipher
            .encrypt(&nonce, Payload { msg: secret.expose().as_bytes(), aad: aad.as_bytes() })
            .expect("encryption with a valid key cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{SEALED_PREFIX}{}", B64.encode(out))
    }

    /// Opens a value sealed for `aad`; fails on another key, another place or tampering.
    pub fn open(&self, aad: &str, sealed: &str) -> anyhow::Result<Secret> {
        let encoded = sealed.strip_prefix(SEALED_PREFIX).context("unknown sealed-secret format")?;
        let bytes = B64.decode(encoded).context("sealed secret is not base64")?;
        if bytes.len() < 24 {
            bail!("sealed secret is too short");
        }
        let (nonce, ciphertext) = bytes.split_at(24);
        let nonce = XNonce::try_from(nonce).context("nonce length")?;
        let plain = self
            .cipher
            .decrypt(&nonce, Payload { msg: ciphertext, aad: aad.as_bytes() })
            .map_err(|_| WrongMasterKey)?;
        Ok(Secret::new(String::from_utf8(plain).context("sealed secret is not UTF-8")?))
    }
}

/// A new key written beside the key file, to replace it once the secrets are
/// sealed with it: a crash in between leaves both keys on disk.
pub struct StagedKeyFile {
    staged: PathBuf,
    path: PathBuf,
}

impl StagedKeyFile {
    /// Refuses when an earlier rotation left its new key: that key may be the one
    /// the secrets are sealed with now, and only the operator can tell.
    pub fn write(data_dir: &Path, encoded: &str) -> anyhow::Result<Self> {
        let (staged, path) = (data_dir.join(STAGED_KEY_FILE), data_dir.join(KEY_FILE));
        if staged.exists() {
            bail!("{}", interrupted_rotation(&staged));
        }
        write_private(&staged, encoded.as_bytes())
            .with_context(|| format!("cannot write the new key to {}", staged.display()))?;
        sync_dir(data_dir).context("cannot sync the data directory")?;
        Ok(Self { staged, path })
    }

    /// Puts the new key in the key file's place (one rename, made durable).
    pub fn install(self) -> anyhow::Result<()> {
        let renamed = std::fs::rename(&self.staged, &self.path)
            .and_then(|()| sync_dir(self.path.parent().unwrap_or(Path::new("."))));
        renamed.with_context(|| {
            format!(
                "the secrets are sealed with the new key, but it could not replace the key file: rename {} to {} before starting carteiro",
                self.staged.display(),
                self.path.display()
            )
        })
    }

    pub fn staged_path(&self) -> &Path {
        &self.staged
    }

    /// Forgets the new key: nothing was sealed with it.
    pub fn discard(self) {
        let _ = std::fs::remove_file(&self.staged);
    }
}

/// What to do about a new key left by a rotation that did not finish.
pub fn interrupted_rotation(staged: &Path) -> String {
    format!(
        "a rotation of the master key did not finish: {} holds its new key, and the secrets may be sealed with either key. Find which one opens them (`carteiro config explain` with CARTEIRO_MASTER_KEY set to each), keep that one as master.key and remove the other file",
        staged.display()
    )
}

/// Makes a directory's entries (a file created or renamed in it) durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Creates a file readable by its owner only, failing if it exists.
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_for_the_same_place_only() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::load_or_create(None, dir.path(), true).unwrap();
        let sealed = key.seal("settings:global:connection.password", &Secret::new("hunter2"));
        assert!(!sealed.contains("hunter2"));
        assert_eq!(key.open("settings:global:connection.password", &sealed).unwrap().expose(), "hunter2");
        assert!(key.open("settings:company:acme:connection.password", &sealed).is_err());

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = MasterKey::load_or_create(None, dir.path(), false).unwrap();
        assert_eq!(again.open("settings:global:connection.password", &sealed).unwrap().expose(), "hunter2");
        let other = MasterKey::from_base64(&B64.encode([7u8; 32])).unwrap();
        assert!(other.open("settings:global:connection.password", &sealed).is_err());
    }

    #[test]
    fn never_replaces_a_missing_key_that_secrets_need() {
        let dir = tempfile::tempdir().unwrap();
        let e = MasterKey::load_or_create(None, dir.path(), false).err().unwrap();
        assert!(e.to_string().contains("the master key is missing"), "{e}");
        assert!(!dir.path().join(KEY_FILE).exists());
    }

    #[test]
    fn refuses_a_short_key() {
        assert!(MasterKey::from_base64(&B64.encode([1u8; 16])).is_err());
    }
}
