//! Body extractors whose rejections use the API's error body: 415 `unsupported_media_type` for
//! a body of the wrong type, 413 `body_too_large` past the configured limit, 400 naming what
//! could not be read. [`JsonBody`] for the JSON API, [`SdpBody`] for WHIP and WHEP.

use super::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

pub struct JsonBody<T>(pub T);

/// An SDP offer sent as `application/sdp` (RFC 9725 §4.2): its text, never empty.
pub struct SdpBody(pub String);

/// Whether the request's Content-Type is `essence` (parameters such as `charset` ignored).
fn content_type_is(req: &Request, essence: &str) -> bool {
    req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        let got = v.split(';').next().unwrap_or("").trim();
        got.eq_ignore_ascii_case(essence)
    })
}

fn unsupported(message: &'static str) -> ApiError {
    ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", message)
}

async fn read_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "request body is over the size limit")
        } else {
            ApiError::bad_request(format!("could not read the request body: {e}"))
        }
    })
}

const JSON_ONLY: &str = "the body must be JSON, sent with Content-Type: application/json";

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // A body in any other type is refused even if it parses: a web page can send text/plain
        // cross-origin without a preflight, application/json it cannot.
        let json = content_type_is(&req, "application/json");
        let has_body =
            req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).is_none_or(|v| v.trim() != "0");
        if !json && has_body && req.headers().contains_key(header::CONTENT_TYPE) {
            return Err(unsupported(JSON_ONLY));
        }
        let bytes = read_bytes(req, state).await?;
        if !bytes.is_empty() && !json {
            return Err(unsupported(JSON_ONLY));
        }
        let bytes = if bytes.is_empty() { Bytes::from_static(b"{}") } else { bytes };
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parses a JSON body; an error names the field it is about (`kind`, `tracks[0].muted`) in its
/// message and in the error body's `field`, so a client need not guess which value was wrong.
/// An unknown field is named itself; a body that is not JSON at all has no `field`.
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        // "." is the body itself; "?" where the parser gave up before knowing the field.
        if field == "." || field == "?" {
            ApiError::bad_request(format!("invalid JSON body: {inner}"))
        } else {
            ApiError::bad_request(format!("invalid JSON body: {field}: {inner}")).with_field(field)
        }
    })
}

impl<S: Send + Sync> FromRequest<S> for SdpBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // Checked before the body is read: a wrong type is refused without taking its bytes.
        if !content_type_is(&req, "application/sdp") {
            return Err(unsupported("the body must be an SDP offer, sent with Content-Type: application/sdp"));
        }
        let bytes = read_bytes(req, state).await?;
        let bad_sdp = |m: &str| ApiError::new(StatusCode::BAD_REQUEST, "bad_sdp", m);
        let text = String::from_utf8(bytes.to_vec()).map_err(|_| bad_sdp("the SDP offer is not UTF-8 text"))?;
        if text.trim().is_empty() {
            return Err(bad_sdp("the body is empty: it must be the SDP offer"));
        }
        Ok(SdpBody(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // read only through Debug: the tests look at the errors
    struct Outer {
        name: Option<String>,
        inner: Option<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        muted: bool,
    }

    #[test]
    fn a_wrong_value_names_its_field() {
        let e = parse_json::<Outer>(br#"{"name": 5}"#).unwrap_err();
        assert_eq!((e.status, e.code, e.field.as_deref()), (StatusCode::BAD_REQUEST, "bad_request", Some("name")));
        assert!(e.message.contains("name: invalid type"), "{}", e.message);
        let e = parse_json::<Outer>(br#"{"inner": {"muted": "yes"}}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("inner.muted"), "{}", e.message);
        let e = parse_json::<Outer>(br#"{"inner": {}}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("inner"), "a missing field is named by its parent: {}", e.message);
        assert!(e.message.contains("missing field `muted`"), "{}", e.message);
    }

    #[test]
    fn an_unknown_field_is_the_field_and_bad_json_names_none() {
        let e = parse_json::<Outer>(br#"{"nmae": "x"}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("nmae"));
        assert!(e.message.contains("unknown field `nmae`"), "{}", e.message);
        let e = parse_json::<Outer>(b"{").unwrap_err();
        assert_eq!((e.code, e.field), ("bad_request", None));
        assert!(parse_json::<Outer>(br#"{"name": "x"}"#).is_ok());
    }
}
