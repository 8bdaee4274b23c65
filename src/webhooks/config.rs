//! `[[webhooks]]`: where room events are POSTed, which key signs them, and how hard to try.

use crate::auth::{AuthConfig, DEV_SECRET, MIN_SECRET_BYTES};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// One receiver of room events.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://` or `https://`; events are POSTed here.
    pub url: String,
    /// The name of the key in `[auth.keys]` that signs each POST (the JWT's `kid`).
    pub key: String,
    /// Send `dtmf` events too. Off by default: digits can be PINs.
    #[serde(default)]
    pub dtmf: bool,
    /// Attempts after the first before an event is given up.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// Events that may wait for delivery; what does not fit is dropped and counted.
    #[serde(default = "default_queue")]
    pub queue: usize,
}

fn default_max_retries() -> u32 {
    5
}

fn default_queue() -> usize {
    1024
}

/// The most retries a hook may ask for: with the backoff capped at 30 s, 20 keep one event's
/// turn at the head of the queue under ten minutes.
pub const MAX_RETRIES_LIMIT: u32 = 20;
/// The largest queue a hook may ask for; each waiting event holds a few hundred bytes.
pub const MAX_QUEUE: usize = 1 << 20;

impl WebhookConfig {
    /// The URL without path, query or credentials, for logs: a receiver's URL may carry a token.
    pub fn redacted_url(&self) -> String {
        let Ok(u) = reqwest::Url::parse(&self.url) else { return "<invalid url>".into() };
        let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
        format!("{}://{}{port}", u.scheme(), u.host_str().unwrap_or_default())
    }

    fn is_loopback(&self) -> bool {
        let Ok(u) = reqwest::Url::parse(&self.url) else { return false };
        // An IPv6 host comes bracketed, as in the URL.
        let host = u.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
        host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

/// Checks every hook against the keys it names. The message starts with the hook's place in
/// the list (`webhooks[1].key`) and never holds a secret or the URL's path.
pub fn check(hooks: &[WebhookConfig], auth: &AuthConfig) -> Result<(), String> {
    for (i, h) in hooks.iter().enumerate() {
        let url = reqwest::Url::parse(&h.url).map_err(|e| format!("webhooks[{i}].url: not a URL ({e})"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!("webhooks[{i}].url: must be an http:// or https:// URL with a host"));
        }
        let Some(secret) = auth.keys.get(&h.key) else {
            let known: Vec<&str> = auth.keys.keys().map(String::as_str).collect();
            return Err(format!(
                "webhooks[{i}].key: no key named {:?} in [auth.keys] (known: {})",
                h.key,
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            ));
        };
        if secret.0.expose().len() < MIN_SECRET_BYTES {
            return Err(format!(
                "webhooks[{i}].key: auth.keys.{} is shorter than {MIN_SECRET_BYTES} bytes, too weak to sign with",
                h.key
            ));
        }
        // Everyone can read the shipped secret, so anyone could forge what a remote receiver
        // takes for the bridge's word.
        if secret.0.expose() == DEV_SECRET && !h.is_loopback() {
            return Err(format!(
                "webhooks[{i}].key: auth.keys.{} is the shipped development secret and the receiver ({}) is not \
                 on loopback: sign with a key of your own",
                h.key,
                h.redacted_url()
            ));
        }
        if h.max_retries > MAX_RETRIES_LIMIT {
            return Err(format!("webhooks[{i}].max_retries: at most {MAX_RETRIES_LIMIT}"));
        }
        if h.queue == 0 || h.queue > MAX_QUEUE {
            return Err(format!("webhooks[{i}].queue: 1 to {MAX_QUEUE}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{ConfigSecret, Secret};

    fn auth() -> AuthConfig {
        let keys = [
            ("ours".to_string(), ConfigSecret(Secret::new("a-long-enough-secret-of-ours"))),
            ("dev".to_string(), ConfigSecret(Secret::new(DEV_SECRET))),
            ("tiny".to_string(), ConfigSecret(Secret::new("short"))),
        ];
        AuthConfig { enabled: true, keys: keys.into() }
    }

    fn hook(url: &str, key: &str) -> WebhookConfig {
        WebhookConfig { url: url.into(), key: key.into(), dtmf: false, max_retries: 5, queue: 1024 }
    }

    #[test]
    fn defaults_apply_to_a_hook_with_url_and_key_only() {
        let h: WebhookConfig = serde_json::from_str(r#"{"url": "https://example.com/hook", "key": "ours"}"#).unwrap();
        assert_eq!(h, hook("https://example.com/hook", "ours"));
    }

    #[test]
    fn a_hook_is_refused_with_the_reason_named() {
        let cases = [
            (hook("https://example.com/h", "missing"), "no key named \"missing\""),
            (hook("ftp://example.com/h", "ours"), "webhooks[0].url"),
            (hook("not a url", "ours"), "webhooks[0].url"),
            (hook("https://example.com/h", "tiny"), "shorter than"),
            (hook("https://example.com/h", "dev"), "development secret"),
            (WebhookConfig { queue: 0, ..hook("http://127.0.0.1:9/h", "ours") }, "webhooks[0].queue"),
            (WebhookConfig { max_retries: 99, ..hook("http://127.0.0.1:9/h", "ours") }, "webhooks[0].max_retries"),
        ];
        for (h, want) in cases {
            let err = check(std::slice::from_ref(&h), &auth()).unwrap_err();
            assert!(err.contains(want), "{h:?}: {err}");
            assert!(!err.contains("a-long-enough") && !err.contains(DEV_SECRET), "a secret in {err}");
        }
    }

    #[test]
    fn the_dev_key_signs_for_loopback_receivers_only() {
        assert!(check(&[hook("http://127.0.0.1:9000/h", "dev")], &auth()).is_ok());
        assert!(check(&[hook("http://localhost:9000/h", "dev")], &auth()).is_ok());
        assert!(check(&[hook("http://[::1]:9000/h", "dev")], &auth()).is_ok());
        assert!(check(&[hook("https://hooks.example.com/h", "ours")], &auth()).is_ok());
    }

    #[test]
    fn logs_see_no_path_query_or_credentials() {
        let h = hook("https://user:pw@hooks.example.com:8443/in/s3cr3t?token=abc", "ours");
        assert_eq!(h.redacted_url(), "https://hooks.example.com:8443");
    }
}
