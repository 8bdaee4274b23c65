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
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
    }
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
