//! Bearer tokens: HS256 JWTs whose `sub` is the user and whose `scope` may hold `admin`.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

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
#[error("invalid bearer token: {0}")]
pub struct TokenError(#[from] jsonwebtoken::errors::Error);

/// Verifies signature, algorithm (HS256 only) and expiry.
pub fn verify(secret: &[u8], token: &str) -> Result<Claims, TokenError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "sub"]);
    validation.leeway = 5;
    Ok(jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(secret), &validation)?.claims)
}

/// Signs a token for `sub` valid for `ttl_secs`, with `admin` in its scope when asked.
pub fn mint(secret: &[u8], sub: &str, admin: bool, ttl_secs: u64) -> String {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let claims =
        Claims { sub: sub.to_owned(), exp: now + ttl_secs, scope: admin.then(|| "admin".to_owned()) };
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret))
        .expect("HS256 signing cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
