//! SDES key exchange (RFC 4568): the `a=crypto` attribute, its suites and key material.
//!
//! webrtc-sdp does not model `a=crypto`, so the attribute value is parsed here from the raw line.

use base64::Engine as _;
use std::fmt;

/// The SRTP crypto suites the bridge speaks, in its order of preference when it offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SrtpSuite {
    AesCm128HmacSha1_80,
    AesCm128HmacSha1_32,
    AeadAes128Gcm,
}

impl SrtpSuite {
    pub const ALL: [SrtpSuite; 3] =
        [SrtpSuite::AesCm128HmacSha1_80, SrtpSuite::AesCm128HmacSha1_32, SrtpSuite::AeadAes128Gcm];

    /// The RFC 4568 / RFC 7714 suite name.
    pub fn name(self) -> &'static str {
        match self {
            SrtpSuite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            SrtpSuite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            SrtpSuite::AeadAes128Gcm => "AEAD_AES_128_GCM",
        }
    }

    pub fn from_name(name: &str) -> Option<SrtpSuite> {
        SrtpSuite::ALL.into_iter().find(|s| s.name().eq_ignore_ascii_case(name))
    }

    pub fn key_len(self) -> usize {
        16
    }

    pub fn salt_len(self) -> usize {
        match self {
            SrtpSuite::AesCm128HmacSha1_80 | SrtpSuite::AesCm128HmacSha1_32 => 14,
            SrtpSuite::AeadAes128Gcm => 12,
        }
    }
}

/// A master key and salt for one direction. Never printed: `Debug` hides the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyMaterial {
    pub suite: SrtpSuite,
    /// key || salt, `suite.key_len() + suite.salt_len()` bytes.
    bytes: Vec<u8>,
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyMaterial({}, <hidden>)", self.suite.name())
    }
}

impl KeyMaterial {
    /// A fresh random key and salt from the operating system's generator.
    pub fn random(suite: SrtpSuite) -> Result<KeyMaterial, SdesError> {
        let mut bytes = vec![0; suite.key_len() + suite.salt_len()];
        getrandom::fill(&mut bytes).map_err(|_| SdesError::Random)?;
        Ok(KeyMaterial { suite, bytes })
    }

    pub fn from_bytes(suite: SrtpSuite, bytes: Vec<u8>) -> Result<KeyMaterial, SdesError> {
        if bytes.len() != suite.key_len() + suite.salt_len() {
            return Err(SdesError::KeyLength { suite: suite.name(), got: bytes.len() });
        }
        Ok(KeyMaterial { suite, bytes })
    }

    pub fn key(&self) -> &[u8] {
        &self.bytes[..self.suite.key_len()]
    }

    pub fn salt(&self) -> &[u8] {
        &self.bytes[self.suite.key_len()..]
    }

    /// The `a=crypto` value: `<tag> <suite> inline:<base64 key||salt>`.
    pub fn attribute_value(&self, tag: u32) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(&self.bytes);
        format!("{tag} {} inline:{b64}", self.suite.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdesError {
    #[error("a=crypto needs a tag, a suite and a key parameter")]
    Syntax,
    #[error("unsupported crypto suite {0}")]
    UnsupportedSuite(String),
    #[error("unsupported key parameter (only inline: keys without MKI are supported)")]
    UnsupportedKeyParams,
    #[error("unsupported session parameter {0}")]
    UnsupportedSessionParam(String),
    #[error("key is not valid base64")]
    Base64,
    #[error("{suite} needs a 16-byte key and a salt; got {got} bytes")]
    KeyLength { suite: &'static str, got: usize },
    #[error("the operating system's random generator failed")]
    Random,
}

/// One `a=crypto` line as offered, whether or not the bridge supports its suite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoOffer {
    pub tag: u32,
    /// The suite name as written, for error messages.
    pub suite_name: String,
    /// The parsed key, or why this line cannot be used.
    pub key: Result<KeyMaterial, SdesError>,
}

/// Parses an `a=crypto` attribute value (without `a=crypto:`). `None` if it has no tag and suite
/// at all.
pub fn parse_crypto(value: &str) -> Option<CryptoOffer> {
    let mut parts = value.split_ascii_whitespace();
    let tag = parts.next()?.parse::<u32>().ok()?;
    let suite_name = parts.next()?.to_owned();
    let key = parse_key(&suite_name, parts.next(), parts);
    Some(CryptoOffer { tag, suite_name, key })
}

fn parse_key<'a>(
    suite_name: &str,
    key_params: Option<&str>,
    session_params: impl Iterator<Item = &'a str>,
) -> Result<KeyMaterial, SdesError> {
    let suite = SrtpSuite::from_name(suite_name).ok_or_else(|| SdesError::UnsupportedSuite(suite_name.to_owned()))?;
    let key_params = key_params.ok_or(SdesError::Syntax)?;
    // Several keys (`;`-separated) only make sense with MKI, which is not supported.
    if key_params.contains(';') {
        return Err(SdesError::UnsupportedKeyParams);
    }
    let inline = key_params.strip_prefix("inline:").ok_or(SdesError::UnsupportedKeyParams)?;
    let mut fields = inline.split('|');
    // `split` always yields at least one item.
    let b64 = fields.next().unwrap_or_default();
    for field in fields {
        // A lifetime (`2^31` or a number) is fine; an MKI (`1:4`) is not supported.
        if field.contains(':') {
            return Err(SdesError::UnsupportedKeyParams);
        }
    }
    for param in session_params {
        let upper = param.to_ascii_uppercase();
        let harmless = upper.starts_with("WSH=") || upper.starts_with("FEC_ORDER=") || upper == "KDR=0";
        if !harmless {
            return Err(SdesError::UnsupportedSessionParam(param.to_owned()));
        }
    }
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    let bytes = engine.decode(b64).map_err(|_| SdesError::Base64)?;
    KeyMaterial::from_bytes(suite, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_inline_keys_with_lifetime() {
        let key = KeyMaterial::random(SrtpSuite::AesCm128HmacSha1_80).unwrap();
        let value = format!("{}|2^31", key.attribute_value(1));
        let offer = parse_crypto(&value).unwrap();
        assert_eq!(offer.tag, 1);
        assert_eq!(offer.key, Ok(key));
    }

    #[test]
    fn gcm_keys_are_28_bytes_padded_or_not() {
        let key = KeyMaterial::random(SrtpSuite::AeadAes128Gcm).unwrap();
        let value = key.attribute_value(3);
        assert!(value.ends_with('='), "{value}");
        assert_eq!(parse_crypto(&value).unwrap().key, Ok(key.clone()));
        let unpadded = value.trim_end_matches('=');
        assert_eq!(parse_crypto(unpadded).unwrap().key, Ok(key));
    }

    #[test]
    fn rejects_what_it_cannot_use() {
        let k = "inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
        let unsupported = parse_crypto(&format!("1 AES_256_CM_HMAC_SHA1_80 {k}")).unwrap();
        assert!(matches!(unsupported.key, Err(SdesError::UnsupportedSuite(_))));
        let mki = parse_crypto(&format!("1 AES_CM_128_HMAC_SHA1_80 {k}|2^20|1:4")).unwrap();
        assert_eq!(mki.key, Err(SdesError::UnsupportedKeyParams));
        let unenc = parse_crypto(&format!("1 AES_CM_128_HMAC_SHA1_80 {k} UNENCRYPTED_SRTP")).unwrap();
        assert!(matches!(unenc.key, Err(SdesError::UnsupportedSessionParam(_))));
        let short = parse_crypto("1 AES_CM_128_HMAC_SHA1_80 inline:AAAA").unwrap();
        assert!(matches!(short.key, Err(SdesError::KeyLength { .. })));
        assert_eq!(parse_crypto("x AES_CM_128_HMAC_SHA1_80"), None);
        assert_eq!(parse_crypto("1").map(|o| o.tag), None);
    }

    #[test]
    fn debug_hides_the_key() {
        let key = KeyMaterial::random(SrtpSuite::AesCm128HmacSha1_32).unwrap();
        assert_eq!(format!("{key:?}"), "KeyMaterial(AES_CM_128_HMAC_SHA1_32, <hidden>)");
    }
}
