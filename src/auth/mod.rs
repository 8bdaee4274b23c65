//! Access tokens: named HS256 keys from config, claims, and the rules for the shipped dev key.
//! The HTTP side (which route needs which grant) is `api::access`.

mod claims;
mod token;

pub use claims::{Claims, Grant, RoomScope, WireClaims};
pub use token::{AuthError, AuthFailure, Keyring, MintError, Secret, LEEWAY_SECS, MAX_TOKEN_BYTES};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::net::SocketAddr;

/// The secret `config/switchboard.toml` ships with. Anyone can read it, so a daemon that
/// listens beyond loopback refuses to start while any key still has it.
pub const DEV_SECRET: &str = "switchboard-dev-secret-change-me-before-listening-beyond-loopback";

/// A secret needs this many bytes: HS256 with a short secret falls to an offline guess.
pub const MIN_SECRET_BYTES: usize = 16;

/// `[auth]`: whether tokens are required, and the keys that sign them (`[auth.keys]`, name =
/// secret; `SWITCHBOARD_AUTH__KEYS__<NAME>` sets one from the environment).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Off only for a loopback listen (benchmarks, a developer's machine).
    pub enabled: bool,
    pub keys: BTreeMap<String, ConfigSecret>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig { enabled: true, keys: BTreeMap::new() }
    }
}

impl AuthConfig {
    pub fn keyring(&self) -> Keyring {
        Keyring::new(self.keys.iter().map(|(k, v)| (k.clone(), v.0.clone())))
    }

    /// Refuses what would leave the API open: no key while auth is on, a short secret, and the
    /// dev secret (or auth off) on an address other machines can reach. Returns the message
    /// naming the key to change.
    pub fn check(&self, http_listen: SocketAddr) -> Result<(), String> {
        let loopback = http_listen.ip().is_loopback();
        if !self.enabled {
            if !loopback {
                return Err(format!(
                    "auth.enabled = false is allowed only on a loopback http.listen (this one is {http_listen})"
                ));
            }
            return Ok(());
        }
        if self.keys.is_empty() {
            return Err("auth is on and [auth.keys] is empty: add a key (name = \"secret\")".into());
        }
        for (name, secret) in &self.keys {
            if name.is_empty() || name.len() > 64 {
                return Err(format!("key name {name:?} must be 1 to 64 bytes"));
            }
            if secret.0.expose() == DEV_SECRET && !loopback {
                return Err(format!(
                    "auth.keys.{name} is the shipped development secret and http.listen ({http_listen}) is not \
                     loopback: give auth.keys.{name} a secret of your own (e.g. SWITCHBOARD_AUTH__KEYS__{}=...)",
                    name.to_ascii_uppercase()
                ));
            }
            if secret.0.expose().len() < MIN_SECRET_BYTES {
                return Err(format!("auth.keys.{name}: the secret must be at least {MIN_SECRET_BYTES} bytes"));
            }
        }
        Ok(())
    }
}

/// A secret as config holds it: read like a string, never printed by Debug.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSecret(pub Secret);

impl Serialize for ConfigSecret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.expose())
    }
}

impl<'de> Deserialize<'de> for ConfigSecret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| ConfigSecret(Secret::new(s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: &str, secret: &str) -> AuthConfig {
        AuthConfig { enabled: true, keys: [(name.to_string(), ConfigSecret(Secret::new(secret)))].into() }
    }

    #[test]
    fn dev_secret_is_refused_beyond_loopback_and_the_key_is_named() {
        let c = with("devkey", DEV_SECRET);
        assert!(c.check("127.0.0.1:8080".parse().unwrap()).is_ok());
        let e = c.check("0.0.0.0:8080".parse().unwrap()).unwrap_err();
        assert!(e.contains("auth.keys.devkey"), "{e}");
        assert!(!e.contains(DEV_SECRET), "{e}");
    }

    #[test]
    fn auth_off_and_empty_keys_and_short_secrets_are_refused() {
        let off = AuthConfig { enabled: false, keys: BTreeMap::new() };
        assert!(off.check("127.0.0.1:1".parse().unwrap()).is_ok());
        assert!(off.check("[::]:1".parse().unwrap()).is_err());
        assert!(AuthConfig::default().check("127.0.0.1:1".parse().unwrap()).is_err());
        assert!(with("k", "short").check("127.0.0.1:1".parse().unwrap()).is_err());
    }
}
