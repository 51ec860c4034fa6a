//! The node's Ethereum account, kept as a V3 keystore (scrypt + AES-128-CTR) that geth and
//! go-livepeer read and write. The key is decrypted only in memory, with a password that comes
//! from a file or the environment — never from the command line — and is never logged.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k256::ecdsa::SigningKey;
use lpe_pm::Address;
use lpe_pm::sig::address_of;

/// The environment variable that may carry the keystore password.
pub const PASSWORD_ENV: &str = "LPE_WALLET_PASSWORD";

#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    #[error("no keystore in {0}; create one with `livepeer-edge wallet new`")]
    Missing(String),
    #[error("{0} already holds a keystore (for {1}); the node uses one account")]
    Exists(String, Address),
    #[error("{0} holds several keystores; keep only the node's")]
    Ambiguous(String),
    #[error("wrong password, or the keystore is damaged")]
    Decrypt,
    #[error("not a V3 keystore: {0}")]
    Format(String),
    #[error("not a secp256k1 private key")]
    BadKey,
    #[error("no password: give --password-file or set {PASSWORD_ENV}")]
    NoPassword,
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WalletError + '_ {
    move |source| WalletError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Reads the password from `file` (first line, without its newline) or the environment.
pub fn password(file: Option<&Path>, env: Option<String>) -> Result<String, WalletError> {
    if let Some(f) = file {
        let text = fs::read_to_string(f).map_err(io(f))?;
        return Ok(text.lines().next().unwrap_or("").to_string());
    }
    env.filter(|p| !p.is_empty()).ok_or(WalletError::NoPassword)
}

/// A directory of keystore files (`<data>/keystore`), private to the node's user.
pub struct Keystore {
    dir: PathBuf,
}

impl Keystore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn ensure_dir(&self) -> Result<(), WalletError> {
        fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700)).map_err(io(&self.dir))
    }

    fn files(&self) -> Result<Vec<PathBuf>, WalletError> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Ok(Vec::new());
        };
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.is_file()
                    && !p
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        files.sort();
        Ok(files)
    }

    /// The single keystore file.
    pub fn file(&self) -> Result<PathBuf, WalletError> {
        let mut files = self.files()?;
        match files.len() {
            0 => Err(WalletError::Missing(self.dir.display().to_string())),
            1 => Ok(files.remove(0)),
            _ => Err(WalletError::Ambiguous(self.dir.display().to_string())),
        }
    }

    /// The account's address, from the keystore's `address` field (no password needed).
    pub fn address(&self) -> Result<Address, WalletError> {
        let path = self.file()?;
        address_field(&path)
    }

    /// Creates a new account with a fresh key.
    pub fn create(&self, password: &str) -> Result<(Address, PathBuf), WalletError> {
        let key = SigningKey::random(&mut rand08::rngs::OsRng);
        self.store(&key, password)
    }

    /// Imports a raw private key (32 bytes).
    pub fn import_key(
        &self,
        secret: &[u8],
        password: &str,
    ) -> Result<(Address, PathBuf), WalletError> {
        if secret.len() != 32 {
            return Err(WalletError::BadKey);
        }
        let key = SigningKey::from_slice(secret).map_err(|_| WalletError::BadKey)?;
        self.store(&key, password)
    }

    /// Imports a keystore file made by geth, go-livepeer or this node, after checking that the
    /// password opens it. The file is re-encrypted under the same password.
    pub fn import_keystore(
        &self,
        src: &Path,
        password: &str,
    ) -> Result<(Address, PathBuf), WalletError> {
        let secret = decrypt(src, password)?;
        self.import_key(&secret, password)
    }

    /// Decrypts the account key.
    pub fn unlock(&self, password: &str) -> Result<SigningKey, WalletError> {
        let secret = decrypt(&self.file()?, password)?;
        SigningKey::from_slice(&secret).map_err(|_| WalletError::BadKey)
    }

    /// The keystore file's JSON (still encrypted), for backup or use by geth/go-livepeer.
    pub fn export(&self) -> Result<String, WalletError> {
        let path = self.file()?;
        fs::read_to_string(&path).map_err(io(&path))
    }

    fn store(&self, key: &SigningKey, password: &str) -> Result<(Address, PathBuf), WalletError> {
        if let Ok(existing) = self.address() {
            return Err(WalletError::Exists(
                self.dir.display().to_string(),
                existing,
            ));
        }
        self.ensure_dir()?;
        let address = address_of(key.verifying_key());
        let name = format!("UTC--{}--{}", utc_stamp(), hex::encode(address.as_slice()));
        // eth-keystore writes the file; write it under a dot-name (ignored by readers), add the
        // `address` field geth indexes accounts by, then move it into place with mode 0600.
        let tmp_name = format!(".{name}.tmp");
        eth_keystore::encrypt_key(
            &self.dir,
            &mut rand08::rngs::OsRng,
            key.to_bytes(),
            password,
            Some(&tmp_name),
        )
        .map_err(|e| WalletError::Format(e.to_string()))?;
        let tmp = self.dir.join(&tmp_name);
        let text = fs::read_to_string(&tmp).map_err(io(&tmp))?;
        let mut json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| WalletError::Format(e.to_string()))?;
        if let Some(obj) = json.as_object_mut() {
            obj.insert("address".into(), hex::encode(address.as_slice()).into());
        }
        let final_path = self.dir.join(&name);
        fs::write(&tmp, json.to_string()).map_err(io(&tmp))?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600)).map_err(io(&tmp))?;
        fs::rename(&tmp, &final_path).map_err(io(&final_path))?;
        Ok((address, final_path))
    }
}

fn decrypt(path: &Path, password: &str) -> Result<Vec<u8>, WalletError> {
    if !path.exists() {
        return Err(WalletError::Missing(path.display().to_string()));
    }
    eth_keystore::decrypt_key(path, password).map_err(|e| match e {
        eth_keystore::KeystoreError::MacMismatch => WalletError::Decrypt,
        other => WalletError::Format(other.to_string()),
    })
}

fn address_field(path: &Path) -> Result<Address, WalletError> {
    let text = fs::read_to_string(path).map_err(io(path))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| WalletError::Format(e.to_string()))?;
    let field = json
        .get("address")
        .and_then(|a| a.as_str())
        .ok_or_else(|| WalletError::Format("no address field".into()))?;
    let digits = field.trim_start_matches("0x");
    let bytes = hex::decode(digits).map_err(|e| WalletError::Format(e.to_string()))?;
    if bytes.len() != 20 {
        return Err(WalletError::Format("address is not 20 bytes".into()));
    }
    Ok(Address::from_slice(&bytes))
}

/// `2026-11-25T04-30-00.000000000Z`, geth's file-name timestamp, from the system clock.
fn utc_stamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}-{m:02}-{s:02}.000000000Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_unlock_export_and_refuse_a_second_account() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ks = Keystore::new(dir.path().join("keystore"));
        assert!(matches!(ks.address(), Err(WalletError::Missing(_))));
        let (addr, path) = ks.create("correct horse").expect("create");
        assert_eq!(ks.address().expect("address"), addr);
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let key = ks.unlock("correct horse").expect("unlock");
        assert_eq!(address_of(key.verifying_key()), addr);
        assert!(matches!(ks.unlock("wrong"), Err(WalletError::Decrypt)));
        assert!(matches!(ks.create("x"), Err(WalletError::Exists(..))));
        let json: serde_json::Value =
            serde_json::from_str(&ks.export().expect("export")).expect("json");
        assert_eq!(json["version"], 3);
        assert_eq!(json["crypto"]["kdf"], "scrypt");
        assert!(
            !ks.export()
                .expect("export")
                .contains(&hex::encode(key.to_bytes()))
        );
    }

    /// The PBKDF2 test vector of the Web3 Secret Storage definition. (Its scrypt vector uses
    /// r = 1 with N = 2^18, outside RFC 7914's bounds, and is refused; geth itself writes
    /// r = 8, which the end-to-end test covers.)
    #[test]
    fn reads_the_web3_secret_storage_pbkdf2_vector() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("vector.json");
        fs::write(&path, r#"{"crypto":{"cipher":"aes-128-ctr","cipherparams":{"iv":"6087dab2f9fdbbfaddc31a909735c1e6"},"ciphertext":"5318b4d5bcd28de64ee5559e671353e16f075ecae9f99c7a79a38af5f869aa46","kdf":"pbkdf2","kdfparams":{"c":262144,"dklen":32,"prf":"hmac-sha256","salt":"ae3cd4e7013836a3df6bd7241b12db061dbe2c6785853cce422d148a624ce0bd"},"mac":"517ead924a9d0dc3124507e3393d175ce3ff7c1e96529c6c555ce9e51205e9b2"},"id":"3198bc9c-6672-5ab3-d995-4942343ae5b6","version":3}"#).expect("write");
        let secret = decrypt(&path, "testpassword").expect("decrypt");
        assert_eq!(
            hex::encode(secret),
            "7a28b5ba57c53603b0b07b56bba752f7784bf506fa95edc395f5cf6c7514fe9d"
        );
        let ks = Keystore::new(dir.path().join("keystore"));
        let (addr, _) = ks.import_keystore(&path, "testpassword").expect("import");
        assert_eq!(ks.address().expect("address"), addr);
        assert!(matches!(decrypt(&path, "nope"), Err(WalletError::Decrypt)));
    }

    #[test]
    fn password_sources() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("pw");
        fs::write(&f, "s3cret\nignored\n").expect("write");
        assert_eq!(
            password(Some(&f), Some("env".into())).expect("pw"),
            "s3cret"
        );
        assert_eq!(password(None, Some("env".into())).expect("pw"), "env");
        assert!(matches!(password(None, None), Err(WalletError::NoPassword)));
        assert!(matches!(
            password(None, Some(String::new())),
            Err(WalletError::NoPassword)
        ));
    }

    #[test]
    fn bad_keys_and_files_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ks = Keystore::new(dir.path());
        assert!(matches!(
            ks.import_key(&[0u8; 32], "p"),
            Err(WalletError::BadKey)
        ));
        assert!(matches!(
            ks.import_key(&[1u8; 31], "p"),
            Err(WalletError::BadKey)
        ));
        let junk = dir.path().join("junk.json");
        fs::write(&junk, "{not json").expect("write");
        assert!(matches!(
            ks.import_keystore(&junk, "p"),
            Err(WalletError::Format(_))
        ));
        assert!(utc_stamp().starts_with("20"));
    }
}
