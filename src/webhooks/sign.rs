//! The signature on each webhook POST: `Authorization: Bearer <JWT>`, HS256 with a key from
//! `[auth.keys]` (`kid` names it), whose `sha256` claim is the digest of the exact body bytes.
//! A receiver that knows the key checks the token, then hashes what it received and compares:
//! a token lifted from one POST does not vouch for another body.

use crate::auth::Secret;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `iss` of every webhook token.
pub const ISSUER: &str = "switchboard";

/// How long a signature stays valid: long enough for clock skew and a slow receiver, short
/// enough that a recorded POST cannot be replayed for long. Each attempt is signed afresh.
pub const SIGNATURE_TTL_SECS: u64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookClaims {
    pub iss: String,
    pub iat: u64,
    pub exp: u64,
    /// Base64 (standard alphabet, padded) of the SHA-256 of the body.
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
#[error("signing a webhook failed: {0}")]
pub struct SignError(String);

/// Signs bodies with one key. Holds the key material, so it has no Debug.
pub struct Signer {
    kid: String,
    key: EncodingKey,
}

impl Signer {
    pub fn new(kid: &str, secret: &Secret) -> Signer {
        Signer { kid: kid.to_string(), key: EncodingKey::from_secret(secret.expose().as_bytes()) }
    }

    /// The token for `body`, issued at `now` (Unix seconds).
    pub fn sign(&self, body: &[u8], now: u64) -> Result<String, SignError> {
        let claims =
            HookClaims { iss: ISSUER.to_string(), iat: now, exp: now + SIGNATURE_TTL_SECS, sha256: body_digest(body) };
        let header = Header { kid: Some(self.kid.clone()), ..Header::new(Algorithm::HS256) };
        jsonwebtoken::encode(&header, &claims, &self.key).map_err(|e| SignError(e.to_string()))
    }
}

/// The `sha256` claim for `body`.
pub fn body_digest(body: &[u8]) -> String {
    STANDARD.encode(Sha256::digest(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    const NOW: u64 = 1_800_000_000;
    const SECRET: &str = "the-receivers-shared-secret";

    /// What a receiver does: check the token with the key its `kid` names, then the body.
    fn receive(token: &str, body: &[u8], secret: &str) -> Result<HookClaims, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
        assert_eq!(header.kid.as_deref(), Some("hooks"));
        assert_eq!(header.alg, Algorithm::HS256);
        let mut v = Validation::new(Algorithm::HS256);
        v.set_issuer(&[ISSUER]);
        // The token was made at NOW, not at the test's wall-clock time.
        v.validate_exp = false;
        let data = jsonwebtoken::decode::<HookClaims>(token, &DecodingKey::from_secret(secret.as_bytes()), &v)
            .map_err(|e| e.to_string())?;
        if data.claims.sha256 != body_digest(body) {
            return Err("body does not match its signature".into());
        }
        Ok(data.claims)
    }

    #[test]
    fn a_receiver_with_the_key_verifies_the_token_and_the_body() {
        let body = br#"{"event":"room_started","room":"demo"}"#;
        let token = Signer::new("hooks", &Secret::new(SECRET)).sign(body, NOW).unwrap();
        let c = receive(&token, body, SECRET).unwrap();
        assert_eq!((c.iss.as_str(), c.iat, c.exp), (ISSUER, NOW, NOW + SIGNATURE_TTL_SECS));
    }

    #[test]
    fn another_body_or_another_key_fails() {
        let body = br#"{"event":"room_started","room":"demo"}"#;
        let token = Signer::new("hooks", &Secret::new(SECRET)).sign(body, NOW).unwrap();
        let err = receive(&token, br#"{"event":"room_started","room":"demo2"}"#, SECRET).unwrap_err();
        assert!(err.contains("does not match"), "{err}");
        assert!(receive(&token, body, "someone-elses-secret-entirely").is_err());
    }

    #[test]
    fn the_digest_is_standard_padded_base64_of_sha256() {
        // SHA-256 of the empty string, as `printf '' | openssl dgst -sha256 -binary | base64` prints it.
        assert_eq!(body_digest(b""), "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
    }
}
