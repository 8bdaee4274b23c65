//! WHIP (RFC 9725) and WHEP (draft-ietf-wish-whep): thin adapters over the one join path.
//!
//! `POST /whip/{room}` and `POST /whep/{room}` take an `application/sdp` offer and answer 201
//! with the SDP answer and `Location: /whip/{room}/{participant}` (or `/whep/...`), the session
//! URL. The participant is an ordinary `webrtc` participant whose identity is the token's `sub`;
//! the adapter only narrows its media to the protocol's one direction. Leaving is the API's own
//! participant DELETE, routed on the session URL too; a PATCH is refused, as this bridge does
//! neither trickle ICE nor ICE restarts.

use super::access::Access;
use super::body::SdpBody;
use super::error::ApiError;
use super::participants::admit;
use super::{access, room_id, AppState};
use crate::core::{AudioPreference, MediaGrants, VideoPreference};
use crate::runtime::{CommandError, JoinRequest};
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use switchboard_driver::ParticipantKind;

/// Which protocol a session came in on: the grant it needs, the way its media flows and the
/// path its session URL lives under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    /// Ingest: the client publishes and is served nothing.
    Whip,
    /// Egress: the client subscribes and publishes nothing.
    Whep,
}

impl Protocol {
    fn prefix(self) -> &'static str {
        match self {
            Protocol::Whip => "/whip",
            Protocol::Whep => "/whep",
        }
    }

    fn media(self) -> MediaGrants {
        MediaGrants { publish: self == Protocol::Whip, subscribe: self == Protocol::Whep }
    }
}

/// `POST /whip/{room}`: needs the `publish` grant (or `admin`) for the room.
pub async fn publish(
    State(st): State<AppState>,
    Extension(access): Extension<Access>,
    Path(room): Path<String>,
    SdpBody(offer): SdpBody,
) -> Result<Response, ApiError> {
    session(&st, &access, &room, offer, Protocol::Whip).await
}

/// `POST /whep/{room}`: needs the `subscribe` grant (or `admin`) for the room. The offer's
/// receive-only m-lines are slots like any subscriber's, filled by the routing policy.
pub async fn subscribe(
    State(st): State<AppState>,
    Extension(access): Extension<Access>,
    Path(room): Path<String>,
    SdpBody(offer): SdpBody,
) -> Result<Response, ApiError> {
    session(&st, &access, &room, offer, Protocol::Whep).await
}

async fn session(st: &AppState, access: &Access, room: &str, offer: String, p: Protocol) -> Result<Response, ApiError> {
    let room = room_id(room)?;
    let grants = access.join(&room)?;
    match p {
        Protocol::Whip if !grants.publish => return Err(access::forbidden("WHIP needs the publish grant")),
        Protocol::Whep if !grants.subscribe => return Err(access::forbidden("WHEP needs the subscribe grant")),
        _ => {}
    }
    let request = JoinRequest {
        kind: Some(ParticipantKind::Webrtc),
        sdp: Some(offer),
        display_name: None,
        identity: Some(grants.identity),
        media: p.media(),
        audio: AudioPreference::default(),
        video: VideoPreference::default(),
    };
    let location = format!("{}/{room}", p.prefix());
    let joined = admit(st, room, request).await.map_err(|e| webrtc_only(e, p))?;
    let location = format!("{location}/{}", joined.participant.id);
    let mut resp = (StatusCode::CREATED, joined.sdp).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/sdp"));
    Ok(super::created_at(&location, resp))
}

/// An offer that is not WebRTC (plain RTP, SDES) is a bad offer here, not a kind mismatch: a
/// WHIP or WHEP client names no kind.
fn webrtc_only(e: ApiError, p: Protocol) -> ApiError {
    if e.code != "kind_mismatch" {
        return e;
    }
    let name = if p == Protocol::Whip { "WHIP" } else { "WHEP" };
    let message = format!("{name} takes a WebRTC offer (UDP/TLS/RTP/SAVPF): {}", e.message);
    ApiError::from(CommandError::BadSdp(message))
}

/// `PATCH /whip/{room}/{id}` and `/whep/{room}/{id}`: trickle ICE and ICE restarts are not
/// supported (the answer carries every bridge candidate, and clients send complete offers).
/// RFC 9725 §4.3.1: a session that supports neither MUST answer a PATCH with 405 (Method Not
/// Allowed); RFC 9110 §15.5.6 makes a 405 carry `Allow`, the methods the session URL takes.
/// A session's PATCH: refused like every other route to a token that does not reach the room,
/// and answered 405 to one that does.
pub async fn patch(
    Extension(access): Extension<Access>,
    Path((room, _session)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    access.member(&super::room_id(&room)?)?;
    Ok(no_trickle())
}

fn no_trickle() -> Response {
    let mut resp = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this bridge supports neither trickle ICE nor ICE restarts: send an offer with every candidate \
         (wait for ICE gathering to complete), and DELETE the session to end it",
    )
    .into_response();
    resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("DELETE"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_protocol_flows_one_way() {
        assert_eq!(Protocol::Whip.media(), MediaGrants { publish: true, subscribe: false });
        assert_eq!(Protocol::Whep.media(), MediaGrants { publish: false, subscribe: true });
    }

    #[test]
    fn a_non_webrtc_offer_is_bad_sdp_and_other_errors_pass() {
        let mismatch = ApiError::from(CommandError::KindMismatch("kind is webrtc but the offer is rtp's".into()));
        let e = webrtc_only(mismatch, Protocol::Whep);
        assert_eq!((e.status, e.code), (StatusCode::BAD_REQUEST, "bad_sdp"));
        assert!(e.message.starts_with("WHEP takes a WebRTC offer") && e.message.contains("rtp's"), "{}", e.message);
        let full = webrtc_only(ApiError::from(CommandError::RoomFull(2)), Protocol::Whip);
        assert_eq!(full.code, "room_full");
    }

    #[test]
    fn patch_is_405_naming_delete() {
        let resp = no_trickle();
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(resp.headers().get(header::ALLOW).and_then(|v| v.to_str().ok()), Some("DELETE"));
    }
}
