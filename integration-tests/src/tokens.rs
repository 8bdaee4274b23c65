//! Access tokens for the daemons the tests start. Every test daemon has the key [`TEST_KID`],
//! and every call the harness makes carries an admin token for every room unless a test asks for
//! another: the tests that are about access pass their own.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::sync::OnceLock;

use crate::clock::unix_now;

pub const TEST_KID: &str = "it";
pub const TEST_SECRET: &str = "integration-test-secret-0123456789abcdef";

/// The environment variable that hands a peer script the token to call the API with.
pub const TOKEN_ENV: &str = "SB_API_TOKEN";

/// Signs `claims` with the test key, HS256, `kid` set.
pub fn sign(claims: &Value) -> String {
    let header = Header { kid: Some(TEST_KID.to_string()), ..Header::new(Algorithm::HS256) };
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(TEST_SECRET.as_bytes())).expect("sign a token")
}

/// A token for `room` (`*` for all) with `grants`, valid for an hour.
pub fn token(room: &str, identity: &str, grants: &[&str]) -> String {
    let now = unix_now() as u64;
    sign(&json!({"sub": identity, "room": room, "grants": grants, "exp": now + 3600, "iat": now}))
}

/// The harness's own token: admin of every room, made once per test process.
pub fn admin_token() -> &'static str {
    static T: OnceLock<String> = OnceLock::new();
    T.get_or_init(|| {
        let now = unix_now() as u64;
        sign(&json!({"sub": "harness", "room": "*", "grants": ["admin"], "exp": now + 86_400, "iat": now}))
    })
}
