//! Signed checkpoints: the ledger's head (`seq`, `hash`) and the time,
//! signed with an Ed25519 key, so that a history rewritten whole (hashes
//! recomputed) no longer reaches a checkpoint published earlier.
//!
//! A checkpoint is one canonical JSON line (keys in byte order, no
//! whitespace): `{"at":…,"hash":…,"key":…,"seq":…,"signature":…}`. The
//! signature (hex) is over the same line without its `signature` key;
//! `key` is the signer's public key (hex of its 32 bytes). Keys are PEM
//! files: PKCS#8 for the signing key, SubjectPublicKeyInfo for the public
//! key, as OpenSSL writes them.

use ed25519_dalek::pkcs8::spki;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, SignatureError, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The error of writing a file as every command does (a key, a bundle).
pub use crate::outfile::WriteError;

/// A checkpoint; `signature` is `None` only while it is being signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// When it was signed.
    pub at: String,
    /// The hash of the ledger entry `seq`.
    pub hash: String,
    /// The signer's public key, hex.
    pub key: String,
    /// The last ledger entry it covers.
    pub seq: i64,
    /// Ed25519 signature (hex) over the line without this key.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub signature: Option<String>,
}

/// Why a key could not be read, made, written or used. The errors of
/// [`AuditKey::load`] speak of the file as "it": the caller names it.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The signing key's file could not be read.
    #[error("cannot read it: {0}")]
    Unreadable(#[source] std::io::Error),
    /// Group or others may read the signing key's file (its mode bits).
    #[error("group or others can read it (mode {0:04o}); run chmod 600 on it")]
    Exposed(u32),
    /// The file holds no signing key.
    #[error(
        "not an Ed25519 private key in PEM (PKCS#8); `invite-rotator audit keygen --output FILE` writes one"
    )]
    NotAPrivateKey(#[source] ed25519_dalek::pkcs8::Error),
    /// No random seed for a new key.
    #[error("no randomness: {0}")]
    NoRandomness(#[source] getrandom::Error),
    /// The signing key could not be encoded as PEM.
    #[error("cannot encode the key: {0}")]
    Encode(#[source] ed25519_dalek::pkcs8::Error),
    /// The public key could not be encoded as PEM.
    #[error("cannot encode the public key: {0}")]
    EncodePublic(#[source] spki::Error),
    /// The key's file could not be written.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// A checkpoint could not be encoded.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// A public key's file could not be read.
    #[error("cannot read {path}: {source}")]
    PublicUnreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A public key's file holds no public key.
    #[error("{path}: not an Ed25519 public key in PEM")]
    NotAPublicKey {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        source: spki::Error,
    },
}

/// Why a checkpoint line does not hold.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Not a checkpoint's JSON.
    #[error("not a checkpoint: {0}")]
    NotACheckpoint(#[source] serde_json::Error),
    /// A checkpoint, written otherwise than its one canonical line.
    #[error("not in the canonical encoding")]
    NotCanonical,
    /// Signed by another key than the trusted one.
    #[error("signed by another key ({signer}) than the public key given ({trusted})")]
    OtherKey {
        /// The key the line names, hex.
        signer: String,
        /// The trusted key, hex.
        trusted: String,
    },
    /// The key the line names is not a public key.
    #[error("its key is not an Ed25519 public key")]
    NotAKey(#[source] Option<SignatureError>),
    /// No signature, or not 64 bytes of hex.
    #[error("its signature is missing or not 64 bytes of hex")]
    NoSignature,
    /// Hex in upper case somewhere.
    #[error("its key or signature is not in lower-case hex")]
    NotLowerHex,
    /// The line could not be encoded again.
    #[error(transparent)]
    Json(serde_json::Error),
    /// The signature does not verify.
    #[error("its signature does not verify")]
    DoesNotVerify(#[source] SignatureError),
}

/// The key that signs checkpoints, loaded from `[audit] signing_key_file`.
/// `Debug` shows the public half only.
pub struct AuditKey {
    key: SigningKey,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuditKey(public {})", self.public_hex())
    }
}

impl AuditKey {
    /// Reads a PKCS#8 PEM Ed25519 key. Refused when group or others may
    /// read the file: it signs the history's checkpoints.
    pub fn load(path: &Path) -> Result<AuditKey, KeyError> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).map_err(KeyError::Unreadable)?;
        if meta.mode() & 0o077 != 0 {
            return Err(KeyError::Exposed(meta.mode() & 0o7777));
        }
        let pem = std::fs::read_to_string(path).map_err(KeyError::Unreadable)?;
        let key = SigningKey::from_pkcs8_pem(&pem).map_err(KeyError::NotAPrivateKey)?;
        Ok(AuditKey { key })
    }

    /// A new random key.
    pub fn generate() -> Result<AuditKey, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(KeyError::NoRandomness)?;
        Ok(AuditKey {
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// Writes the key to a new file `path`, mode 0600 (an existing file is
    /// never overwritten: it may be the key that signed a history).
    pub fn write_new(&self, path: &Path) -> Result<(), KeyError> {
        use crate::outfile::{PRIVATE, Replace};
        let pem = self
            .key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(KeyError::Encode)?;
        Ok(crate::outfile::write(
            path,
            pem.as_bytes(),
            PRIVATE,
            Replace::Never,
        )?)
    }

    /// The public key as PEM (what `--public-key FILE` reads).
    pub fn public_pem(&self) -> Result<String, KeyError> {
        self.key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(KeyError::EncodePublic)
    }

    /// The public half, to verify with.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.key.verifying_key())
    }

    /// The public key as hex (a checkpoint's `key`).
    pub fn public_hex(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }

    /// Signs the head `(seq, hash)` at `at`; returns the checkpoint's line.
    pub fn sign(&self, seq: i64, hash: &str, at: &str) -> Result<String, KeyError> {
        let mut cp = Checkpoint {
            at: at.to_owned(),
            hash: hash.to_owned(),
            key: self.public_hex(),
            seq,
            signature: None,
        };
        let message = serde_json::to_string(&cp)?;
        cp.signature = Some(hex::encode(self.key.sign(message.as_bytes()).to_bytes()));
        Ok(serde_json::to_string(&cp)?)
    }
}

/// A public key, read from `--public-key FILE`.
#[derive(Debug, Clone)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Reads a PEM public key (as `audit keygen` prints it).
    pub fn load(path: &Path) -> Result<PublicKey, KeyError> {
        let pem = std::fs::read_to_string(path).map_err(|source| KeyError::PublicUnreadable {
            path: path.to_owned(),
            source,
        })?;
        VerifyingKey::from_public_key_pem(pem.trim())
            .map(PublicKey)
            .map_err(|source| KeyError::NotAPublicKey {
                path: path.to_owned(),
                source,
            })
    }

    /// Hex of its 32 bytes.
    pub fn hex(&self) -> String {
        hex::encode(self.0.as_bytes())
    }
}

impl Checkpoint {
    /// Parses a checkpoint line and checks its signature: against `trusted`
    /// when given (and the line must name that key), else against the key
    /// the line names (which shows only that the line is whole).
    pub fn verify(line: &str, trusted: Option<&PublicKey>) -> Result<Checkpoint, CheckpointError> {
        let cp: Checkpoint = serde_json::from_str(line).map_err(CheckpointError::NotACheckpoint)?;
        if serde_json::to_string(&cp).ok().as_deref() != Some(line) {
            return Err(CheckpointError::NotCanonical);
        }
        let key = match trusted {
            Some(k) if k.hex() != cp.key => {
                return Err(CheckpointError::OtherKey {
                    signer: cp.key,
                    trusted: k.hex(),
                });
            }
            Some(k) => k.0,
            None => {
                let bytes: [u8; 32] = hex::decode(&cp.key)
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .ok_or(CheckpointError::NotAKey(None))?;
                VerifyingKey::from_bytes(&bytes).map_err(|e| CheckpointError::NotAKey(Some(e)))?
            }
        };
        let signature: [u8; 64] = cp
            .signature
            .as_deref()
            .and_then(|s| hex::decode(s).ok())
            .and_then(|b| b.try_into().ok())
            .ok_or(CheckpointError::NoSignature)?;
        // Lower-case hex only: one line, one spelling (a bundle changed in
        // a single byte must fail).
        if cp.signature.as_deref() != Some(hex::encode(signature).as_str())
            || cp.key != cp.key.to_ascii_lowercase()
        {
            return Err(CheckpointError::NotLowerHex);
        }
        let unsigned = Checkpoint {
            signature: None,
            ..cp.clone()
        };
        let message = serde_json::to_string(&unsigned).map_err(CheckpointError::Json)?;
        key.verify(message.as_bytes(), &Signature::from_bytes(&signature))
            .map_err(CheckpointError::DoesNotVerify)?;
        Ok(cp)
    }

    /// The checkpoint lines in a text (a file of them, or journal lines
    /// that carry one each after other words): each line's part from its
    /// first `{"at":` to its last `}`.
    pub fn lines_in(text: &str) -> Vec<&str> {
        text.lines()
            .filter_map(|l| {
                let start = l.find("{\"at\":")?;
                let end = l.rfind('}')?;
                (end > start).then(|| &l[start..=end])
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_checkpoint_verifies_and_any_change_breaks_it() {
        let key = AuditKey::generate().unwrap();
        let line = key
            .sign(5, &"ab".repeat(32), "2026-12-01T00:00:00.000Z")
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let public = dir.path().join("pub.pem");
        std::fs::write(&public, key.public_pem().unwrap()).unwrap();
        let trusted = PublicKey::load(&public).unwrap();
        let cp = Checkpoint::verify(&line, Some(&trusted)).unwrap();
        assert_eq!((cp.seq, cp.hash.as_str()), (5, "ab".repeat(32).as_str()));
        assert!(Checkpoint::verify(&line.replace("\"seq\":5", "\"seq\":6"), None).is_err());
        let other = AuditKey::generate().unwrap();
        let forged = other
            .sign(5, &"ab".repeat(32), "2026-12-01T00:00:00.000Z")
            .unwrap();
        assert!(Checkpoint::verify(&forged, None).is_ok());
        assert!(Checkpoint::verify(&forged, Some(&trusted)).is_err());
        let journal = format!("Dec 01 invite-rotator[1]: audit checkpoint {line}\nother\n");
        assert_eq!(Checkpoint::lines_in(&journal), vec![line.as_str()]);
    }

    #[test]
    fn keys_round_trip_through_files_and_are_written_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        let key = AuditKey::generate().unwrap();
        key.write_new(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(key.write_new(&path).is_err(), "never overwritten");
        let loaded = AuditKey::load(&path).unwrap();
        assert_eq!(loaded.public_hex(), key.public_hex());
        assert!(!format!("{loaded:?}").contains("PRIVATE"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(
            AuditKey::load(&path)
                .unwrap_err()
                .to_string()
                .contains("chmod 600")
        );
    }
}
