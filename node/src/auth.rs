//! Operators and credentials: first-boot setup, users with argon2id password hashes, cookie
//! sessions with a CSRF token, bearer API tokens, roles, and login throttling.
//!
//! Every secret is stored only as a hash: passwords and the setup code with argon2id (they are
//! low-entropy), session ids and API tokens with SHA-256 (they are 256-bit random values, so a
//! fast hash loses nothing and keeps each request cheap). Nothing here logs a secret; the setup
//! code is printed once, on purpose, because the operator must read it from the console.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use lpe_core::role::NetworkRole;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use lpe_core::events::now_ms;
use lpe_store::{Store, StoreError, TokenRecord, UserRecord};

/// What a caller may do. `Metrics` is a token that can only scrape `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Viewer,
    Metrics,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Viewer => "viewer",
            Self::Metrics => "metrics",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Self::Admin),
            "viewer" => Some(Self::Viewer),
            "metrics" => Some(Self::Metrics),
            _ => None,
        }
    }
}

/// What a route needs, read from the OpenAPI document's security requirements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    /// Any signed-in user, or a metrics token.
    Metrics,
    Viewer,
    Admin,
}

impl Access {
    pub fn allows(self, role: Role) -> bool {
        match self {
            Self::Public => true,
            Self::Metrics => true,
            Self::Viewer => matches!(role, Role::Viewer | Role::Admin),
            Self::Admin => role == Role::Admin,
        }
    }
}

/// Who is calling, and how they proved it.
#[derive(Debug, Clone)]
pub struct Principal {
    pub name: String,
    /// The user this principal acts for: the signed-in user, or a token's owner.
    pub user: String,
    pub role: Role,
    /// For cookie sessions: the CSRF token unsafe requests must echo in `X-CSRF-Token`.
    pub csrf: Option<String>,
    /// For cookie sessions: the session id's hash (to end it at logout).
    pub session: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    Invalid(String, &'static str),
    #[error("wrong user name or password")]
    BadCredentials,
    #[error("wrong setup code")]
    BadSetupCode,
    #[error("too many failed attempts; try again in {0} s")]
    Throttled(u64),
    #[error("setup is already done")]
    SetupDone,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("storage failed: {0}")]
    Storage(#[from] StoreError),
    #[error("password hashing failed")]
    Hash,
    #[error("too many password checks at once; try again in a second")]
    Busy,
}

pub const SESSION_COOKIE: &str = "lpe_session";
pub const CSRF_HEADER: &str = "x-csrf-token";
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Attempts at one user name from one address within the window.
const MAX_FAILURES: usize = 5;
/// Attempts from one address, whatever the user names, within the window.
const MAX_FAILURES_PER_ADDRESS: usize = 20;
/// After this many failures for one user name from anywhere, every attempt for it waits
/// [`USER_SLOWDOWN`] first: slower guessing, but the right password from another address
/// still gets in.
const USER_SLOWDOWN_AFTER: usize = 5;
const USER_SLOWDOWN: Duration = Duration::from_secs(1);
const FAILURE_WINDOW: Duration = Duration::from_secs(300);
/// Password hashes computed at once (argon2id takes 19 MiB and a core for each); more are
/// refused at once rather than queued.
const CONCURRENT_HASHES: usize = 2;
const META_SETUP_HASH: &str = "setup_code_hash";
const META_DEVICE_NAME: &str = "device_name";
const META_DEVICE_ROLE: &str = "device_role";

/// Attempts per key ("ip:…", "ip-user:…", "user:…") within the window. An attempt counts
/// when it starts, before any hashing, so concurrent guesses cannot all slip past the limit.
#[derive(Default)]
struct Throttle {
    attempts: HashMap<String, Vec<Instant>>,
}

impl Throttle {
    /// Recent attempts for `key`.
    fn count(&mut self, key: &str, now: Instant) -> usize {
        let Some(list) = self.attempts.get_mut(key) else {
            return 0;
        };
        list.retain(|t| now.duration_since(*t) < FAILURE_WINDOW);
        list.len()
    }

    /// Seconds until `key` has fewer than `limit` attempts in the window.
    fn wait(&mut self, key: &str, limit: usize, now: Instant) -> Option<u64> {
        if self.count(key, now) < limit {
            return None;
        }
        let oldest = self.attempts.get(key)?.iter().min().copied()?;
        Some(
            (FAILURE_WINDOW - now.duration_since(oldest))
                .as_secs()
                .max(1),
        )
    }

    /// Counts an attempt on every key, unless one of them has used up its limit.
    fn attempt(&mut self, keys: &[(String, usize)], now: Instant) -> Result<(), u64> {
        if let Some(wait) = keys.iter().filter_map(|(k, l)| self.wait(k, *l, now)).max() {
            return Err(wait);
        }
        // Bound memory under a flood of distinct keys: forget the stalest entries.
        if self.attempts.len() > 10_000 {
            self.attempts
                .retain(|_, v| v.iter().any(|t| now.duration_since(*t) < FAILURE_WINDOW));
        }
        for (k, _) in keys {
            self.attempts.entry(k.clone()).or_default().push(now);
        }
        Ok(())
    }

    /// Takes back the attempt made at `at` on `key` (it succeeded).
    fn forgive(&mut self, key: &str, at: Instant) {
        if let Some(list) = self.attempts.get_mut(key) {
            if let Some(i) = list.iter().position(|t| *t == at) {
                list.swap_remove(i);
            }
            if list.is_empty() {
                self.attempts.remove(key);
            }
        }
    }
}

/// The device identity chosen at setup.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeviceIdentity {
    pub name: String,
    pub role: NetworkRole,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct SetupRequest {
    /// The one-time code from the node's console.
    pub code: String,
    /// The admin's user name (default `admin`).
    #[serde(default)]
    pub username: Option<String>,
    pub password: String,
    pub device_name: String,
    /// `gateway`, `orchestrator`, `both` or `off`.
    pub role: String,
}

/// Changes of credentials, submitted through [`crate::Node::submit`].
#[derive(Debug, Clone)]
pub enum AuthCommand {
    Setup {
        req: SetupRequest,
        ip: Option<IpAddr>,
    },
    Login {
        username: String,
        password: String,
        ip: Option<IpAddr>,
    },
    Logout {
        session: String,
    },
    CreateUser {
        name: String,
        password: String,
        role: String,
    },
    /// An admin sets a user's password.
    SetPassword {
        name: String,
        password: String,
        revoke_tokens: bool,
    },
    /// A user changes their own password, proving they know the current one.
    ChangeOwnPassword {
        name: String,
        current: String,
        password: String,
        revoke_tokens: bool,
        ip: Option<IpAddr>,
    },
    DeleteUser {
        name: String,
    },
    CreateToken {
        name: String,
        role: String,
        /// The user the token acts for.
        owner: String,
    },
    DeleteToken {
        id: String,
    },
}

#[derive(Debug)]
pub enum AuthOutcome {
    /// A new session: the cookie value (the only copy) and its CSRF token.
    Session {
        user: String,
        role: Role,
        session_id: String,
        csrf: String,
        max_age_s: u64,
    },
    /// A new token: the secret is shown once.
    Token {
        record: TokenRecord,
        token: String,
    },
    Done,
}

pub struct Auth {
    throttle: Mutex<Throttle>,
    hashing: Arc<Semaphore>,
}

fn random_b64(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill(&mut buf[..]);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// SHA-256 hex of a high-entropy secret (session ids, API tokens).
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn hash_password(password: &str) -> Result<String, AuthError> {
    let salt =
        SaltString::encode_b64(&rand::rng().random::<[u8; 16]>()).map_err(|_| AuthError::Hash)?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| AuthError::Hash)
}

fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A password's fitness, with the reason when it is not.
fn check_password(password: &str) -> Result<(), AuthError> {
    let n = password.chars().count();
    if n < 8 {
        return Err(AuthError::Invalid(
            "the password needs at least 8 characters".into(),
            "password",
        ));
    }
    if n > 256 {
        return Err(AuthError::Invalid(
            "the password may have at most 256 characters".into(),
            "password",
        ));
    }
    Ok(())
}

fn check_name(name: &str, field: &'static str) -> Result<(), AuthError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c));
    if ok {
        Ok(())
    } else {
        Err(AuthError::Invalid(
            "1 to 64 characters: letters, digits, '-', '_', '.', '@'".into(),
            field,
        ))
    }
}

fn parse_role(role: &str, allowed: &[Role]) -> Result<Role, AuthError> {
    Role::parse(role)
        .filter(|r| allowed.contains(r))
        .ok_or_else(|| {
            let names: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
            AuthError::Invalid(format!("role must be one of {}", names.join(", ")), "role")
        })
}

/// Secrets compared in the clear (CSRF tokens).
pub use lpe_core::secret::same_secret;

impl Auth {
    pub fn new() -> Self {
        Self {
            throttle: Mutex::new(Throttle::default()),
            hashing: Arc::new(Semaphore::new(CONCURRENT_HASHES)),
        }
    }

    /// Whether first-boot setup is still to be done (no admin exists).
    pub fn setup_required(store: &Store) -> Result<bool, StoreError> {
        Ok(store.admin_count()? == 0)
    }

    /// At start, while setup is pending: a fresh one-time code, stored only hashed. Returns the
    /// code so the caller can print it on the console; `None` when setup is done.
    pub async fn issue_setup_code(store: &Store) -> Result<Option<String>, AuthError> {
        if !Self::setup_required(store)? {
            store.write(|w| w.delete_meta(META_SETUP_HASH)).await?;
            return Ok(None);
        }
        let raw = lpe_core::ids::random_string(b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789", 10);
        let code = format!("{}-{}", &raw[..5], &raw[5..]);
        let hash = hash_password(&code)?;
        store
            .write(move |w| w.set_meta(META_SETUP_HASH, &hash))
            .await?;
        Ok(Some(code))
    }

    pub fn device(store: &Store) -> Result<DeviceIdentity, StoreError> {
        Ok(DeviceIdentity {
            name: store
                .get_meta(META_DEVICE_NAME)?
                .unwrap_or_else(|| "livepeer-edge".into()),
            role: store
                .get_meta(META_DEVICE_ROLE)?
                .and_then(|r| r.parse().ok())
                .unwrap_or_default(),
        })
    }

    /// Counts an attempt on `keys` (each with its limit); the time the attempt was counted.
    fn attempt(&self, keys: &[(String, usize)]) -> Result<Instant, AuthError> {
        let now = Instant::now();
        let mut t = self.throttle.lock().map_err(|_| StoreError::Poisoned)?;
        t.attempt(keys, now).map_err(AuthError::Throttled)?;
        Ok(now)
    }

    /// Takes back an attempt that succeeded or was never checked: it does not count against
    /// the address or the name.
    fn take_back(&self, keys: &[(String, usize)], at: Instant) {
        if let Ok(mut t) = self.throttle.lock() {
            for (k, _) in keys {
                t.forgive(k, at);
            }
        }
    }

    /// Whether attempts for this user name are being slowed down.
    fn user_under_attack(&self, user_key: &str) -> bool {
        self.throttle
            .lock()
            .map(|mut t| t.count(user_key, Instant::now()) >= USER_SLOWDOWN_AFTER)
            .unwrap_or(true)
    }

    /// Runs password hashing on the blocking pool, at most [`CONCURRENT_HASHES`] at once.
    async fn hashing<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AuthError> {
        let permit = Arc::clone(&self.hashing)
            .try_acquire_owned()
            .map_err(|_| AuthError::Busy)?;
        tokio::task::spawn_blocking(move || {
            let out = work();
            drop(permit);
            out
        })
        .await
        .map_err(|_| AuthError::Hash)
    }

    /// Verifies `secret` against `phc` for an attempt counted on `keys` at `at`. An attempt
    /// refused as busy was never checked, so it does not count.
    async fn verify_attempt(
        &self,
        keys: &[(String, usize)],
        at: Instant,
        secret: String,
        phc: String,
    ) -> Result<bool, AuthError> {
        let checked = self.hashing(move || verify_password(&secret, &phc)).await;
        if matches!(checked, Err(AuthError::Busy)) {
            self.take_back(keys, at);
        }
        checked
    }

    /// Checks a user's password under the login limits.
    async fn check_login(
        &self,
        store: &Store,
        username: &str,
        password: String,
        ip: Option<IpAddr>,
    ) -> Result<UserRecord, AuthError> {
        let ip = ip.map(|i| i.to_string()).unwrap_or_default();
        let user_key = format!("user:{username}");
        let keys = [
            (format!("ip-user:{ip}/{username}"), MAX_FAILURES),
            (format!("ip:{ip}"), MAX_FAILURES_PER_ADDRESS),
            (user_key.clone(), usize::MAX),
        ];
        let slow = self.user_under_attack(&user_key);
        let at = self.attempt(&keys)?;
        if slow {
            tokio::time::sleep(USER_SLOWDOWN).await;
        }
        let user = store.get_user(username)?;
        // Verify against a real hash even for an unknown user, so timing does not reveal
        // which names exist.
        let phc = user
            .as_ref()
            .map(|u| u.password_hash.clone())
            .unwrap_or_else(|| DUMMY_HASH.to_string());
        let ok = self.verify_attempt(&keys, at, password, phc).await?;
        match user {
            Some(u) if ok => {
                self.take_back(&keys, at);
                Ok(u)
            }
            _ => Err(AuthError::BadCredentials),
        }
    }

    /// Executes one credential change. Hashing runs on the blocking pool.
    pub async fn execute(&self, store: &Store, cmd: AuthCommand) -> Result<AuthOutcome, AuthError> {
        match cmd {
            AuthCommand::Setup { req, ip } => {
                let keys = [(
                    format!("ip:{}", ip.map(|i| i.to_string()).unwrap_or_default()),
                    MAX_FAILURES,
                )];
                if !Self::setup_required(store)? {
                    return Err(AuthError::SetupDone);
                }
                let username = req.username.clone().unwrap_or_else(|| "admin".into());
                check_name(&username, "username")?;
                check_password(&req.password)?;
                let device_name = req.device_name.trim().to_string();
                if device_name.is_empty() || device_name.chars().count() > 64 {
                    return Err(AuthError::Invalid(
                        "the device name needs 1 to 64 characters".into(),
                        "device_name",
                    ));
                }
                let role: NetworkRole = req
                    .role
                    .parse()
                    .map_err(|m: String| AuthError::Invalid(m, "role"))?;
                let at = self.attempt(&keys)?;
                let stored = store.get_meta(META_SETUP_HASH)?.unwrap_or_default();
                let code = req.code.trim().to_ascii_uppercase();
                // The code first: a wrong one costs one check, never a password hash too.
                if !self.verify_attempt(&keys, at, code, stored).await? {
                    return Err(AuthError::BadSetupCode);
                }
                let password = req.password.clone();
                let hash = self.hashing(move || hash_password(&password)).await??;
                let user = UserRecord {
                    name: username.clone(),
                    password_hash: hash,
                    role: Role::Admin.as_str().into(),
                    created_ms: now_ms(),
                };
                store
                    .write(move |w| {
                        w.insert_user(&user)?;
                        w.set_meta(META_DEVICE_NAME, &device_name)?;
                        w.set_meta(META_DEVICE_ROLE, role.as_str())?;
                        w.delete_meta(META_SETUP_HASH)
                    })
                    .await?;
                self.take_back(&keys, at);
                self.new_session(store, &username, Role::Admin).await
            }
            AuthCommand::Login {
                username,
                password,
                ip,
            } => {
                let u = self.check_login(store, &username, password, ip).await?;
                let role = Role::parse(&u.role).unwrap_or(Role::Viewer);
                self.new_session(store, &u.name, role).await
            }
            AuthCommand::ChangeOwnPassword {
                name,
                current,
                password,
                revoke_tokens,
                ip,
            } => {
                check_password(&password)?;
                self.check_login(store, &name, current, ip).await?;
                let hash = self.hashing(move || hash_password(&password)).await??;
                store_password(store, name, hash, revoke_tokens).await?;
                Ok(AuthOutcome::Done)
            }
            AuthCommand::Logout { session } => {
                store.write(move |w| w.delete_session(&session)).await?;
                Ok(AuthOutcome::Done)
            }
            AuthCommand::CreateUser {
                name,
                password,
                role,
            } => {
                check_name(&name, "name")?;
                check_password(&password)?;
                let role = parse_role(&role, &[Role::Admin, Role::Viewer])?;
                let hash = self.hashing(move || hash_password(&password)).await??;
                let user = UserRecord {
                    name: name.clone(),
                    password_hash: hash,
                    role: role.as_str().into(),
                    created_ms: now_ms(),
                };
                let inserted = store.write(move |w| w.insert_user(&user)).await?;
                if !inserted {
                    return Err(AuthError::Conflict(format!("user '{name}' exists")));
                }
                Ok(AuthOutcome::Done)
            }
            AuthCommand::SetPassword {
                name,
                password,
                revoke_tokens,
            } => {
                check_password(&password)?;
                let hash = self.hashing(move || hash_password(&password)).await??;
                store_password(store, name, hash, revoke_tokens).await?;
                Ok(AuthOutcome::Done)
            }
            AuthCommand::DeleteUser { name } => {
                let user = store
                    .get_user(&name)?
                    .ok_or_else(|| AuthError::NotFound(format!("no user '{name}'")))?;
                if user.role == "admin" && store.admin_count()? <= 1 {
                    return Err(AuthError::Conflict(
                        "the last admin cannot be removed".into(),
                    ));
                }
                store.write(move |w| w.delete_user(&name)).await?;
                Ok(AuthOutcome::Done)
            }
            AuthCommand::CreateToken { name, role, owner } => {
                if name.trim().is_empty() || name.chars().count() > 64 {
                    return Err(AuthError::Invalid(
                        "the token name needs 1 to 64 characters".into(),
                        "name",
                    ));
                }
                let role = parse_role(&role, &[Role::Admin, Role::Viewer, Role::Metrics])?;
                let token = format!("lpe_{}", random_b64(32));
                let record = TokenRecord {
                    id: random_b64(9),
                    name: name.trim().to_string(),
                    role: role.as_str().into(),
                    created_ms: now_ms(),
                    last_used_ms: None,
                    owner,
                };
                let (stored, hash) = (record.clone(), secret_hash(&token));
                store.write(move |w| w.insert_token(&stored, &hash)).await?;
                Ok(AuthOutcome::Token { record, token })
            }
            AuthCommand::DeleteToken { id } => {
                let gone = id.clone();
                if !store.write(move |w| w.delete_token(&gone)).await? {
                    return Err(AuthError::NotFound(format!("no token '{id}'")));
                }
                Ok(AuthOutcome::Done)
            }
        }
    }

    async fn new_session(
        &self,
        store: &Store,
        user: &str,
        role: Role,
    ) -> Result<AuthOutcome, AuthError> {
        let session_id = random_b64(32);
        let csrf = random_b64(24);
        let now = now_ms();
        let (hash, owner, token) = (secret_hash(&session_id), user.to_string(), csrf.clone());
        let expires = now + SESSION_TTL.as_millis() as u64;
        store
            .write(move |w| w.insert_session(&hash, &owner, &token, now, expires))
            .await?;
        Ok(AuthOutcome::Session {
            user: user.to_string(),
            role,
            session_id,
            csrf,
            max_age_s: SESSION_TTL.as_secs(),
        })
    }

    /// The caller behind a bearer token or a session cookie, if any.
    pub async fn principal(
        store: &Store,
        bearer: Option<&str>,
        cookie: Option<&str>,
    ) -> Result<Option<Principal>, StoreError> {
        if let Some(token) = bearer {
            let hash = secret_hash(token);
            return Ok(store
                .write(move |w| w.use_token(&hash, now_ms()))
                .await?
                .and_then(|t| {
                    Some(Principal {
                        name: format!("token:{}", t.name),
                        user: t.owner,
                        role: Role::parse(&t.role)?,
                        csrf: None,
                        session: None,
                    })
                }));
        }
        if let Some(id) = cookie {
            let hash = secret_hash(id);
            return Ok(store.get_session(&hash, now_ms())?.and_then(|s| {
                Some(Principal {
                    name: s.user.clone(),
                    user: s.user,
                    role: Role::parse(&s.role)?,
                    csrf: Some(s.csrf),
                    session: Some(hash),
                })
            }));
        }
        Ok(None)
    }
}

impl Default for Auth {
    fn default() -> Self {
        Self::new()
    }
}

/// An argon2id hash of a random string nobody knows, verified against for unknown users.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2wEjXYmuxDmqqbOBRjTAMTm6ECKjsi1sBDn2YjBMyH4";

/// Replaces a user's password hash (and, when asked, ends its tokens).
async fn store_password(
    store: &Store,
    name: String,
    hash: String,
    revoke_tokens: bool,
) -> Result<(), AuthError> {
    let user = name.clone();
    let set = store.write(move |w| w.set_password(&user, &hash, revoke_tokens));
    if !set.await? {
        return Err(AuthError::NotFound(format!("no user '{name}'")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_counts_attempts_before_they_run_and_forgives_successes() {
        let mut t = Throttle::default();
        let now = Instant::now();
        let keys = [
            ("ip-user:a".to_string(), MAX_FAILURES),
            ("ip:x".to_string(), 20),
        ];
        let mut first = None;
        for _ in 0..MAX_FAILURES {
            assert!(t.attempt(&keys, now).is_ok());
            first.get_or_insert(now);
        }
        let wait = t.attempt(&keys, now).expect_err("blocked");
        assert!(wait > 0 && wait <= FAILURE_WINDOW.as_secs());
        // A refused attempt is not counted; another name from the same address still goes.
        assert_eq!(t.count("ip:x", now), MAX_FAILURES);
        assert!(
            t.attempt(&[("ip-user:b".to_string(), MAX_FAILURES)], now)
                .is_ok()
        );
        assert!(t.attempt(&keys, now + FAILURE_WINDOW).is_ok());
        t.forgive("ip-user:a", now + FAILURE_WINDOW);
        assert_eq!(t.count("ip-user:a", now + FAILURE_WINDOW), 0);
    }

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("correct horse").expect("hash");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(!verify_password("x", "not a phc string"));
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
    }
}
