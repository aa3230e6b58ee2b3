//! Accounts of the web administration and the REST API: roles and what each may do,
//! valid names, the password rule, Argon2id hashing, and how logins are slowed and then
//! locked after failures. There is no built-in account: the first is made with
//! `phonetrust user add`.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// Shortest password accepted.
pub const MIN_PASSWORD: usize = 12;
/// Longest password accepted (Argon2 takes more, but nothing longer is typed).
pub const MAX_PASSWORD: usize = 256;
/// Failed logins of an account before it is locked.
pub const FAILURES_BEFORE_LOCK: u32 = 5;
/// First lock, doubled with each further failure, at most [`MAX_LOCK_SECS`].
pub const FIRST_LOCK_SECS: i64 = 60;
/// Longest lock.
pub const MAX_LOCK_SECS: i64 = 3_600;

/// What an account may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Read everything.
    ReadOnly,
    /// Read, and work on phones: add, change, delete, CAPF operations, imports, bulk.
    Operator,
    /// Everything: certificates, trust stores, parameters, cluster, mixed mode, accounts.
    Admin,
}

impl Role {
    /// As stored and given on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadOnly => "read-only",
            Self::Operator => "operator",
            Self::Admin => "admin",
        }
    }

    /// Parse `admin`, `operator`, `read-only`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "admin" => Ok(Self::Admin),
            "operator" => Ok(Self::Operator),
            "read-only" | "readonly" => Ok(Self::ReadOnly),
            _ => Err(format!("'{s}' is not a role: admin, operator or read-only")),
        }
    }

    /// Whether this role may do what `needed` may.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }

    /// What a request of this role that needs `needed` is told (web pages and API alike).
    pub fn refusal(self, needed: Role) -> String {
        format!(
            "the {} role may not do this: it needs {} (an administrator can change the role)",
            self.as_str(),
            needed.as_str()
        )
    }
}

/// Check an account name: 1 to 64 of `a-z 0-9 . _ -`, starting with a letter or digit.
pub fn check_name(name: &str) -> Result<String, String> {
    let n = name.trim();
    let ok = !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && n.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(n.to_string())
    } else {
        Err(format!(
            "'{name}' is not an account name: 1 to 64 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit"
        ))
    }
}

/// Check a new password for account `name`.
pub fn check_password(name: &str, password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_PASSWORD {
        return Err(format!(
            "the password is too short: at least {MIN_PASSWORD} characters"
        ));
    }
    if password.len() > MAX_PASSWORD {
        return Err(format!(
            "the password is too long: at most {MAX_PASSWORD} bytes"
        ));
    }
    if password
        .to_ascii_lowercase()
        .contains(&name.to_ascii_lowercase())
    {
        return Err("the password may not contain the account name".into());
    }
    if password
        .chars()
        .collect::<std::collections::HashSet<_>>()
        .len()
        < 5
    {
        return Err(
            "the password repeats too few characters: use at least 5 different ones".into(),
        );
    }
    Ok(())
}

fn hasher() -> Argon2<'static> {
    // OWASP's Argon2id recommendation: 19 MiB, 2 passes, 1 lane.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The Argon2id PHC string of `password`, with a random salt from OpenSSL.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    openssl::rand::rand_bytes(&mut salt).map_err(|e| e.to_string())?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches the stored PHC string (any Argon2 parameters it names).
pub fn verify_password(password: &str, phc: &str) -> bool {
    if password.len() > MAX_PASSWORD {
        return false;
    }
    match PasswordHash::new(phc) {
        Ok(h) => Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// After a failed login that made `failures` in a row: locked until when (0: not).
pub fn lock_after(failures: u32, now: i64) -> i64 {
    if failures < FAILURES_BEFORE_LOCK {
        return 0;
    }
    let extra = (failures - FAILURES_BEFORE_LOCK).min(16);
    now + (FIRST_LOCK_SECS << extra).min(MAX_LOCK_SECS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_order_and_parse() {
        assert!(Role::Admin.allows(Role::Operator));
        assert!(Role::Operator.allows(Role::ReadOnly));
        assert!(!Role::ReadOnly.allows(Role::Operator));
        assert!(!Role::Operator.allows(Role::Admin));
        assert_eq!(Role::parse("read-only").unwrap(), Role::ReadOnly);
        assert!(
            Role::parse("root")
                .unwrap_err()
                .contains("admin, operator or read-only")
        );
    }

    #[test]
    fn names_and_passwords() {
        assert_eq!(check_name(" alice.b-1 ").unwrap(), "alice.b-1");
        for bad in ["", "Alice", "-x", "a b", &"a".repeat(65), "<script>"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert!(check_password("alice", "correct horse battery").is_ok());
        assert!(
            check_password("alice", "short")
                .unwrap_err()
                .contains("at least 12")
        );
        assert!(
            check_password("alice", "xxAlice-secret-1")
                .unwrap_err()
                .contains("account name")
        );
        assert!(
            check_password("bob", "aaaaaaaaaaaaaaaa")
                .unwrap_err()
                .contains("different")
        );
    }

    #[test]
    fn hashes_verify_and_differ() {
        let a = hash_password("correct horse battery").unwrap();
        let b = hash_password("correct horse battery").unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "salted");
        assert!(verify_password("correct horse battery", &a));
        assert!(!verify_password("correct horse batterz", &a));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn locks_grow_then_cap() {
        assert_eq!(lock_after(4, 100), 0);
        assert_eq!(lock_after(5, 100), 160);
        assert_eq!(lock_after(6, 100), 220);
        assert_eq!(lock_after(30, 100), 100 + MAX_LOCK_SECS);
    }
}

/// Why a login was refused. The message never tells an unknown name from a wrong
/// password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoginRefused {
    /// Unknown name or wrong password.
    #[error("wrong account name or password")]
    Wrong,
    /// Too many failures: locked until then.
    #[error("too many failed logins: try again after {}", phonetrust_store::model::format_time(*.0))]
    Locked(i64),
    /// The account is disabled.
    #[error(
        "this account is disabled: an administrator can enable it (`phonetrust user enable NAME`)"
    )]
    Disabled,
    /// The store failed.
    #[error("{0}")]
    Store(String),
}

/// A dummy hash compared against for unknown names, so that they take as long as wrong
/// passwords.
fn dummy_hash() -> &'static str {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| hash_password("phonetrust-dummy-password").unwrap_or_default())
}

/// Check `name` and `password` at `now`; the failure count and lock are kept in the store.
/// On success: the account's role.
pub async fn login(
    db: &phonetrust_store::Db,
    name: &str,
    password: &str,
    now: i64,
) -> Result<Role, LoginRefused> {
    let st = |e: phonetrust_store::StoreError| LoginRefused::Store(e.to_string());
    let Some(a) = db.account(name.trim()).await.map_err(st)? else {
        let _ = verify_password(password, dummy_hash());
        return Err(LoginRefused::Wrong);
    };
    if a.locked_until > now {
        return Err(LoginRefused::Locked(a.locked_until));
    }
    if !verify_password(password, &a.password_hash) {
        let failures = a.failures.saturating_add(1);
        let until = lock_after(failures, now);
        db.record_login(&a.name, failures, until, None)
            .await
            .map_err(st)?;
        return Err(if until > now {
            LoginRefused::Locked(until)
        } else {
            LoginRefused::Wrong
        });
    }
    if a.disabled {
        return Err(LoginRefused::Disabled);
    }
    db.record_login(&a.name, 0, 0, Some(now))
        .await
        .map_err(st)?;
    Role::parse(&a.role).map_err(LoginRefused::Store)
}

/// A new API token: (id, the token to show once, its SHA-256 to store).
pub fn new_token() -> Result<(String, String, String), String> {
    let mut id = [0u8; 4];
    let mut secret = [0u8; 32];
    openssl::rand::rand_bytes(&mut id).map_err(|e| e.to_string())?;
    openssl::rand::rand_bytes(&mut secret).map_err(|e| e.to_string())?;
    let id = phonetrust_proto::codec::hex(&id);
    let token = format!("pt_{id}_{}", phonetrust_proto::codec::hex(&secret));
    let sha = token_sha256(&token);
    Ok((id, token, sha))
}

/// What is stored of a token.
pub fn token_sha256(token: &str) -> String {
    phonetrust_proto::codec::hex(&openssl::sha::sha256(token.as_bytes()))
}

/// The account and role of a bearer token at `now`: the account must exist and be
/// enabled; its current role counts.
pub async fn token_account(
    db: &phonetrust_store::Db,
    token: &str,
    now: i64,
) -> Result<(String, Role), LoginRefused> {
    let st = |e: phonetrust_store::StoreError| LoginRefused::Store(e.to_string());
    if token.len() > 128 {
        return Err(LoginRefused::Wrong);
    }
    let Some(name) = db
        .api_token_account(&token_sha256(token), now)
        .await
        .map_err(st)?
    else {
        return Err(LoginRefused::Wrong);
    };
    match db.account(&name).await.map_err(st)? {
        Some(a) if !a.disabled => Ok((name, Role::parse(&a.role).map_err(LoginRefused::Store)?)),
        Some(_) => Err(LoginRefused::Disabled),
        None => Err(LoginRefused::Wrong),
    }
}
