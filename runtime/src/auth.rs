//! Bearer tokens: HS256 JWTs whose `sub` is the user and whose `scope` may hold `admin`.
//!
//! A [`Verifier`] checks the signature (HS256 only), `exp` (required), `nbf` (when
//! present), a non-empty `sub`, and `aud` / `iss` when the api is configured with them
//! (`AUTH_JWT_AUDIENCE`, `AUTH_JWT_ISSUER`). It refuses secrets shorter than
//! [`MIN_SECRET_BYTES`]: a short HMAC key can be brute-forced from one captured token.
//!
//! A client sends the same token with every request, so a verifier remembers the tokens
//! it verified ([`VERIFIED_CAPACITY`] at most, by their whole text): a token seen before
//! costs a lookup and its `exp` check, not the signature, the base64 and the JSON again.
//! Only tokens that passed every check are kept, and `exp` is checked on every use, so
//! the answer for any token is the same as without the cache.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The shortest signing key accepted (RFC 7518 §3.2: at least the hash size, 256 bits).
pub const MIN_SECRET_BYTES: usize = 32;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 5;

/// Verified tokens a [`Verifier`] remembers (about 300 bytes each: 20 MiB at most).
pub const VERIFIED_CAPACITY: usize = 65_536;

/// The claims the api reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// Expiry, seconds since the epoch; required.
    pub exp: u64,
    /// Space-separated scopes; `admin` opens the admin routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl Claims {
    /// Whether `scope` lists `admin`.
    pub fn is_admin(&self) -> bool {
        self.scope.as_deref().is_some_and(|s| s.split(' ').any(|x| x == "admin"))
    }
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Bad signature, algorithm, expiry, `nbf`, audience, issuer or shape.
    #[error("invalid bearer token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    /// `sub` is empty (or blank): a token must name its user.
    #[error("invalid bearer token: empty sub")]
    EmptySubject,
}

/// A signing key shorter than [`MIN_SECRET_BYTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "AUTH_JWT_SECRET is {0} bytes; at least {MIN_SECRET_BYTES} are required \
     (e.g. `head -c 32 /dev/urandom | base64`)"
)]
pub struct WeakSecret(pub usize);

/// Checks tokens against one key and the configured audience and issuer; built once at start.
/// Clones share the tokens verified so far.
#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    verified: Arc<quick_cache::sync::Cache<Box<str>, Claims>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("audience", &self.validation.aud)
            .field("issuer", &self.validation.iss)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier for `secret` (at least [`MIN_SECRET_BYTES`]); `audience` and `issuer`,
    /// when given, must then appear in every token (`aud` may be a string or a list).
    pub fn new(secret: &[u8], audience: Option<&str>, issuer: Option<&str>) -> Result<Self, WeakSecret> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(WeakSecret(secret.len()));
        }
        Ok(Self::unchecked(secret, audience, issuer))
    }

    /// Like [`Verifier::new`] without the length check (tests and offline tools only).
    pub fn unchecked(secret: &[u8], audience: Option<&str>, issuer: Option<&str>) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        let mut required = vec!["exp", "sub"];
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        match audience.filter(|a| !a.is_empty()) {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            // Without a configured audience, an `aud` in the token is not ours to judge.
            None => validation.validate_aud = false,
        }
        if let Some(iss) = issuer.filter(|i| !i.is_empty()) {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        let verified = Arc::new(quick_cache::sync::Cache::new(VERIFIED_CAPACITY));
        Self { key: DecodingKey::from_secret(secret), validation, verified }
    }

    /// The claims of `token`, or why it is refused.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        if let Some(claims) = self.verified.get(token) {
            // Everything but `exp` was checked when it was kept, and cannot change since.
            if claims.exp.saturating_add(LEEWAY_SECS) >= unix_now() {
                return Ok(claims);
            }
            self.verified.remove(token);
            return Err(TokenError::Invalid(jsonwebtoken::errors::ErrorKind::ExpiredSignature.into()));
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)?.claims;
        if claims.sub.trim().is_empty() {
            return Err(TokenError::EmptySubject);
        }
        self.verified.insert(token.into(), claims.clone());
        Ok(claims)
    }

    /// How many verified tokens are remembered.
    pub fn remembered(&self) -> usize {
        self.verified.len()
    }
}

/// Seconds since the epoch, as `jsonwebtoken` reads the clock.
fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Verifies with no audience or issuer and no key-length check (tools and tests).
pub fn verify(secret: &[u8], token: &str) -> Result<Claims, TokenError> {
    Verifier::unchecked(secret, None, None).verify(token)
}

/// What [`mint_with`] puts in a token beyond `sub`, `exp` and `scope`.
#[derive(Debug, Clone, Default)]
pub struct MintOptions<'a> {
    /// `aud`.
    pub audience: Option<&'a str>,
    /// `iss`.
    pub issuer: Option<&'a str>,
}

#[derive(Serialize)]
struct Minted<'a> {
    sub: &'a str,
    exp: u64,
    iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
}

/// Signs a token for `sub` valid for `ttl_secs`, with `admin` in its scope when asked.
pub fn mint(secret: &[u8], sub: &str, admin: bool, ttl_secs: u64) -> String {
    mint_with(secret, sub, admin, ttl_secs, &MintOptions::default())
}

/// [`mint`] with an audience and an issuer.
pub fn mint_with(secret: &[u8], sub: &str, admin: bool, ttl_secs: u64, options: &MintOptions<'_>) -> String {
    let now = unix_now();
    let claims = Minted {
        sub,
        exp: now + ttl_secs,
        iat: now,
        scope: admin.then_some("admin"),
        aud: options.audience.filter(|a| !a.is_empty()),
        iss: options.issuer.filter(|i| !i.is_empty()),
    };
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret))
        .expect("HS256 signing cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn now() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
    }

    fn signed(claims: serde_json::Value) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(KEY)).unwrap()
    }

    #[test]
    fn minted_tokens_verify_and_carry_scope() {
        let t = mint(b"k", "alice", true, 60);
        let c = verify(b"k", &t).unwrap();
        assert_eq!(c.sub, "alice");
        assert!(c.is_admin());
        assert!(!verify(b"k", &mint(b"k", "bob", false, 60)).unwrap().is_admin());
    }

    #[test]
    fn wrong_key_expired_and_wrong_algorithm_are_refused() {
        assert!(verify(b"other", &mint(b"k", "a", false, 60)).is_err());
        let expired = Claims { sub: "a".into(), exp: 1, scope: None };
        let t =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &expired, &EncodingKey::from_secret(b"k"))
                .unwrap();
        assert!(verify(b"k", &t).is_err());
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &Claims { sub: "a".into(), exp: u64::MAX / 2, scope: None },
            &EncodingKey::from_secret(b"k"),
        )
        .unwrap();
        assert!(verify(b"k", &hs512).is_err());
        // An unsigned token ("alg":"none") must never pass.
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhIiwiZXhwIjo5OTk5OTk5OTk5fQ.";
        assert!(verify(b"k", none).is_err());
    }

    #[test]
    fn a_remembered_token_answers_as_before_and_still_expires() {
        let v = Verifier::new(KEY, None, None).unwrap();
        let token = signed(json!({"sub": "alice", "exp": now() + 3600, "scope": "admin"}));
        let first = v.verify(&token).unwrap();
        assert_eq!(v.remembered(), 1);
        // Clones share what was verified; the second use answers the same claims from memory.
        let clone = v.clone();
        assert_eq!(clone.verify(&token).unwrap(), first);
        assert_eq!(v.remembered(), 1);

        // The same header and payload under another signature is not the remembered token.
        let (signed_part, signature) = token.rsplit_once('.').unwrap();
        let flipped = if signature.starts_with('A') { "B" } else { "A" };
        let forged = format!("{signed_part}.{flipped}{}", &signature[1..]);
        assert!(v.verify(&forged).is_err());
        assert_eq!(v.remembered(), 1, "a refused token is not remembered");

        // `exp` is checked on every use: a remembered token past it (and the leeway) is refused
        // and forgotten.
        let lapsed = signed(json!({"sub": "bob", "exp": now() - LEEWAY_SECS - 10}));
        v.verified.insert(
            lapsed.as_str().into(),
            Claims { sub: "bob".into(), exp: now() - LEEWAY_SECS - 10, scope: None },
        );
        assert!(matches!(v.verify(&lapsed), Err(TokenError::Invalid(_))));
        assert_eq!(v.remembered(), 1);
        // Within the leeway it is still good, as jsonwebtoken has it.
        let edge = signed(json!({"sub": "carol", "exp": now() - 1}));
        v.verify(&edge).unwrap();
        assert_eq!(v.verify(&edge).unwrap().sub, "carol");
    }

    #[test]
    fn short_secrets_are_refused() {
        assert_eq!(Verifier::new(b"short", None, None).unwrap_err(), WeakSecret(5));
        assert!(Verifier::new(&KEY[..31], None, None).is_err());
        assert!(Verifier::new(KEY, None, None).is_ok());
    }

    #[test]
    fn not_yet_valid_and_empty_subjects_are_refused() {
        let v = Verifier::new(KEY, None, None).unwrap();
        let exp = now() + 3600;
        assert!(v.verify(&signed(json!({"sub": "a", "exp": exp, "nbf": now() + 600}))).is_err());
        assert!(v.verify(&signed(json!({"sub": "a", "exp": exp, "nbf": now() - 1}))).is_ok());
        assert!(matches!(v.verify(&signed(json!({"sub": "", "exp": exp}))), Err(TokenError::EmptySubject)));
        assert!(matches!(v.verify(&signed(json!({"sub": "  ", "exp": exp}))), Err(TokenError::EmptySubject)));
        // Without a configured audience, a token's own `aud` is ignored.
        assert!(v.verify(&signed(json!({"sub": "a", "exp": exp, "aud": "elsewhere"}))).is_ok());
    }

    #[test]
    fn audience_and_issuer_are_enforced_when_set() {
        let v = Verifier::new(KEY, Some("tps"), Some("https://id.example")).unwrap();
        let exp = now() + 3600;
        let good = json!({"sub": "a", "exp": exp, "aud": "tps", "iss": "https://id.example"});
        assert!(v.verify(&signed(good.clone())).is_ok());
        let mut listed = good.clone();
        listed["aud"] = json!(["other", "tps"]);
        assert!(v.verify(&signed(listed)).is_ok(), "aud may be a list");
        for (field, value) in [("aud", json!("other")), ("iss", json!("https://evil.example"))] {
            let mut bad = good.clone();
            bad[field] = value;
            assert!(v.verify(&signed(bad)).is_err(), "wrong {field}");
        }
        for field in ["aud", "iss"] {
            let mut missing = good.clone();
            missing.as_object_mut().unwrap().remove(field);
            assert!(v.verify(&signed(missing)).is_err(), "missing {field}");
        }
        let minted = mint_with(
            KEY,
            "a",
            false,
            60,
            &MintOptions { audience: Some("tps"), issuer: Some("https://id.example") },
        );
        assert_eq!(v.verify(&minted).unwrap().sub, "a");
    }
}
