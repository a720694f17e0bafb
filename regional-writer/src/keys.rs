//! The writer's Ed25519 keys, kept in its data dir.
//!
//! - `keys/writer.key` signs what the writer publishes (log envelopes,
//!   snapshots, invalidations); replicas verify with its public half, served
//!   at `/v1/keys`.
//! - `keys/issuer.key` signs access tokens for `tidemark-writer token`, the
//!   built-in issuer for development and single-team deployments. A
//!   deployment with its own identity provider passes that provider's public
//!   key instead (`--token-public-key`) and the issuer key is never used.
//!
//! Keys are created on first start from the operating system's entropy and
//! stored as 64 hex characters (the 32-byte seed), readable by the owner only.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};
use ed25519_dalek::{SigningKey, VerifyingKey};

pub struct Keys {
    pub writer: SigningKey,
    pub issuer: SigningKey,
}

impl Keys {
    /// Loads the keys under `data_dir/keys`, creating missing ones.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Self> {
        let dir = data_dir.join("keys");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self {
            writer: load_or_create(&dir.join("writer.key"))?,
            issuer: load_or_create(&dir.join("issuer.key"))?,
        })
    }
}

fn load_or_create(path: &Path) -> anyhow::Result<SigningKey> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            parse_seed(text.trim()).with_context(|| format!("reading key {}", path.display()))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed)
                .map_err(|e| anyhow::anyhow!("no entropy for a new key: {e}"))?;
            write_private(path, &hex(&seed))?;
            tracing::info!(path = %path.display(), "created a new Ed25519 key");
            Ok(SigningKey::from_bytes(&seed))
        }
        Err(err) => Err(err).with_context(|| format!("reading key {}", path.display())),
    }
}

/// Writes a new key file readable by its owner only, refusing to overwrite.
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating key {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

pub fn parse_seed(text: &str) -> anyhow::Result<SigningKey> {
    let bytes = unhex(text)?;
    let seed: [u8; 32] = bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("a key is 32 bytes (64 hex digits)"))?;
    Ok(SigningKey::from_bytes(&seed))
}

pub fn parse_public(text: &str) -> anyhow::Result<VerifyingKey> {
    let bytes: [u8; 32] = unhex(text)?
        .try_into()
        .map_err(|_| anyhow::anyhow!("a public key is 32 bytes (64 hex digits)"))?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| anyhow::anyhow!("not an Ed25519 public key: {e}"))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> anyhow::Result<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("not a hex string");
    }
    (0..text.len())
        .step_by(2)
        .map(|i| Ok(u8::from_str_radix(&text[i..i + 2], 16)?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_created_once_and_reloaded() {
        let dir = std::env::temp_dir().join(format!("tidemark-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = Keys::load_or_create(&dir).unwrap();
        let again = Keys::load_or_create(&dir).unwrap();
        assert_eq!(first.writer.to_bytes(), again.writer.to_bytes());
        assert_ne!(first.writer.to_bytes(), first.issuer.to_bytes());
        let mode = std::fs::metadata(dir.join("keys/writer.key")).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
            0o600
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn hex_round_trips_and_rejects_garbage() {
        let key = parse_seed(&hex(&[7u8; 32])).unwrap();
        assert_eq!(key.to_bytes(), [7u8; 32]);
        assert!(parse_seed("abc").is_err());
        assert!(parse_seed(&"zz".repeat(32)).is_err());
        assert!(parse_public(&hex(&key.verifying_key().to_bytes())).is_ok());
    }
}
