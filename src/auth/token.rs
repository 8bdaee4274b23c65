//! Verifying and minting access tokens: JWT, HS256 only, the key named by the header's `kid`.
//!
//! Time is an input (`now`, seconds since the Unix epoch), so expiry is tested without a clock.
//! No error message carries the token or a secret: they reach clients and logs.

use super::claims::{Claims, Grant, RoomScope, WireClaims};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use std::collections::BTreeMap;
use std::fmt;

/// A token longer than this is refused before any parsing: a real one is a few hundred bytes.
pub const MAX_TOKEN_BYTES: usize = 8192;

/// Clock skew tolerated on `exp` and `nbf` between the minting server and this one.
pub const LEEWAY_SECS: u64 = 10;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no Authorization: Bearer token")]
    Missing,
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("token algorithm is not HS256")]
    Algorithm,
    #[error("token header names no key (kid)")]
    NoKey,
    #[error("token is signed with a key this bridge does not know")]
    UnknownKey,
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet (nbf)")]
    NotYetValid,
}

/// An [`AuthError`] as a metric label (`switchboard_auth_failures_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    Missing,
    Malformed,
    Algorithm,
    UnknownKey,
    BadSignature,
    Expired,
    NotYetValid,
}

impl AuthFailure {
    pub const ALL: [AuthFailure; 7] = [
        AuthFailure::Missing,
        AuthFailure::Malformed,
        AuthFailure::Algorithm,
        AuthFailure::UnknownKey,
        AuthFailure::BadSignature,
        AuthFailure::Expired,
        AuthFailure::NotYetValid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Malformed => "malformed",
            AuthFailure::Algorithm => "algorithm",
            AuthFailure::UnknownKey => "unknown_key",
            AuthFailure::BadSignature => "bad_signature",
            AuthFailure::Expired => "expired",
            AuthFailure::NotYetValid => "not_yet_valid",
        }
    }
}

impl AuthError {
    pub fn reason(&self) -> AuthFailure {
        match self {
            AuthError::Missing => AuthFailure::Missing,
            AuthError::Malformed(_) => AuthFailure::Malformed,
            AuthError::Algorithm => AuthFailure::Algorithm,
            AuthError::NoKey | AuthError::UnknownKey => AuthFailure::UnknownKey,
            AuthError::BadSignature => AuthFailure::BadSignature,
            AuthError::Expired => AuthFailure::Expired,
            AuthError::NotYetValid => AuthFailure::NotYetValid,
        }
    }
}

/// A key's secret. Its Debug output is redacted, so a config dump or a panic never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The named keys tokens may be signed with, each with its verifier made once: a join's answer
/// time is a benchmark figure, and the token check sits in front of every request.
#[derive(Clone)]
pub struct Keyring {
    keys: BTreeMap<String, Secret>,
    decoding: BTreeMap<String, DecodingKey>,
    validation: Validation,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring").field("keys", &self.keys).finish_non_exhaustive()
    }
}

impl Default for Keyring {
    fn default() -> Self {
        Keyring::new([])
    }
}

impl Keyring {
    pub fn new(keys: impl IntoIterator<Item = (String, Secret)>) -> Keyring {
        let keys: BTreeMap<String, Secret> = keys.into_iter().collect();
        let decoding = keys.iter().map(|(k, s)| (k.clone(), DecodingKey::from_secret(s.expose().as_bytes()))).collect();
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is checked against the caller's `now`; `exp` itself is required by the claims' type.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.required_spec_claims.clear();
        Keyring { keys, decoding, validation }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn get(&self, kid: &str) -> Option<&Secret> {
        self.keys.get(kid)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// Checks a bearer token at time `now` (Unix seconds).
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed("longer than 8192 bytes"));
        }
        if token.bytes().filter(|&b| b == b'.').count() != 2 {
            return Err(AuthError::Malformed("a JWT has three dot-separated parts"));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed("unreadable header"))?;
        if header.alg != Algorithm::HS256 {
            return Err(AuthError::Algorithm);
        }
        let kid = header.kid.ok_or(AuthError::NoKey)?;
        let key = self.decoding.get(&kid).ok_or(AuthError::UnknownKey)?;
        let data = jsonwebtoken::decode::<WireClaims>(token, key, &self.validation).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => AuthError::BadSignature,
            jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => AuthError::Algorithm,
            jsonwebtoken::errors::ErrorKind::Json(_) => {
                AuthError::Malformed("claims need sub, exp (a number), room and grants")
            }
            _ => AuthError::Malformed("undecodable"),
        })?;
        let c = data.claims;
        if now > c.exp.saturating_add(LEEWAY_SECS) {
            return Err(AuthError::Expired);
        }
        if c.nbf.is_some_and(|nbf| now + LEEWAY_SECS < nbf) {
            return Err(AuthError::NotYetValid);
        }
        if c.sub.is_empty() || c.sub.len() > 256 {
            return Err(AuthError::Malformed("sub must be 1 to 256 bytes"));
        }
        let room = RoomScope::parse(&c.room).ok_or(AuthError::Malformed("room must be a room id or *"))?;
        Ok(Claims {
            sub: c.sub,
            room,
            publish: c.grants.contains(&Grant::Publish),
            subscribe: c.grants.contains(&Grant::Subscribe),
            admin: c.grants.contains(&Grant::Admin),
            kid,
        })
    }

    /// Signs a token with key `kid`, valid from `now` for `ttl_secs`.
    pub fn mint(
        &self,
        kid: &str,
        sub: &str,
        room: &RoomScope,
        grants: &[Grant],
        now: u64,
        ttl_secs: u64,
    ) -> Result<String, MintError> {
        let secret = self.keys.get(kid).ok_or_else(|| MintError::UnknownKey(kid.to_string()))?;
        let claims = WireClaims {
            sub: sub.to_string(),
            exp: now + ttl_secs,
            nbf: None,
            iat: Some(now),
            room: room.as_str().to_string(),
            grants: grants.to_vec(),
        };
        let header = Header { kid: Some(kid.to_string()), ..Header::new(Algorithm::HS256) };
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret.expose().as_bytes()))
            .map_err(|e| MintError::Sign(e.to_string()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("no key named {0:?} in [auth.keys]")]
    UnknownKey(String),
    #[error("signing failed: {0}")]
    Sign(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_driver::RoomId;

    const NOW: u64 = 1_800_000_000;

    fn ring() -> Keyring {
        Keyring::new([("k1".to_string(), Secret::new("s3cret-one")), ("k2".to_string(), Secret::new("s3cret-two"))])
    }

    fn room(s: &str) -> RoomScope {
        RoomScope::One(RoomId::new(s).unwrap())
    }

    #[test]
    fn minted_token_verifies_with_its_claims() {
        let t = ring().mint("k2", "alice", &room("demo"), &[Grant::Publish], NOW, 60).unwrap();
        let c = ring().verify(&t, NOW + 30).unwrap();
        assert_eq!(c.sub, "alice");
        assert_eq!(c.room, room("demo"));
        assert!(c.publish && !c.subscribe && !c.admin);
        assert_eq!(c.kid, "k2");
    }

    #[test]
    fn expiry_and_not_before_use_the_given_clock() {
        let t = ring().mint("k1", "a", &RoomScope::Any, &[Grant::Admin], NOW, 60).unwrap();
        assert!(ring().verify(&t, NOW + 60 + LEEWAY_SECS).is_ok());
        assert_eq!(ring().verify(&t, NOW + 61 + LEEWAY_SECS), Err(AuthError::Expired));
    }

    #[test]
    fn a_token_signed_with_another_secret_under_a_known_kid_fails() {
        let other = Keyring::new([("k1".to_string(), Secret::new("not-the-secret"))]);
        let t = other.mint("k1", "a", &RoomScope::Any, &[Grant::Admin], NOW, 60).unwrap();
        assert_eq!(ring().verify(&t, NOW), Err(AuthError::BadSignature));
    }

    #[test]
    fn unknown_kid_and_garbage_are_refused() {
        let other = Keyring::new([("k9".to_string(), Secret::new("x"))]);
        let t = other.mint("k9", "a", &RoomScope::Any, &[Grant::Admin], NOW, 60).unwrap();
        assert_eq!(ring().verify(&t, NOW), Err(AuthError::UnknownKey));
        assert!(matches!(ring().verify("a.b.c", NOW), Err(AuthError::Malformed(_))));
        assert!(matches!(ring().verify("!!!", NOW), Err(AuthError::Malformed(_))));
        assert!(matches!(ring().verify(&"x".repeat(100_000), NOW), Err(AuthError::Malformed(_))));
    }

    #[test]
    fn errors_never_echo_the_secret() {
        for e in [AuthError::BadSignature, AuthError::UnknownKey, AuthError::Malformed("x")] {
            assert!(!e.to_string().contains("s3cret"));
        }
        assert!(!format!("{:?}", ring()).contains("s3cret"));
    }
}
