//! Offer/answer decisions for one audio leg: which kind, codec, crypto suite and addresses.
//!
//! Codec policy: the answer names ONE audio codec (the offerer's first supported one, with the
//! offerer's PT) plus telephone-event. A SIP gateway then knows exactly what the bridge sends
//! and receives, no codec switches mid-call, and the room transcodes or mixes when the other
//! side differs.

use crate::policy::PeerPolicy;
use crate::sdes::{KeyMaterial, SrtpSuite};
use crate::sdp::{AudioSection, Direction, Format, Profile, RemoteDescription};
use std::net::{IpAddr, SocketAddr};
use switchboard_driver::{Codec, CodecSpec, NegotiationError, ParticipantKind, Pt};

/// What `NoCommonCodec` says the bridge takes.
pub const SUPPORTED: &str = "PCMU, PCMA, G722, opus";

/// The codecs the bridge offers on a late offer, in its order of preference.
pub fn offer_codecs() -> Vec<CodecSpec> {
    let spec = |codec, pt, clock_rate, channels, fmtp: &str| CodecSpec {
        codec,
        pt: Pt(pt),
        clock_rate,
        channels,
        fmtp: fmtp.to_owned(),
    };
    vec![
        spec(Codec::Pcmu, 0, 8000, 1, ""),
        spec(Codec::Pcma, 8, 8000, 1, ""),
        spec(Codec::G722, 9, 8000, 1, ""),
        spec(Codec::Opus, 111, 48000, 2, "minptime=10;useinbandfec=1"),
        spec(Codec::TelephoneEvent, 101, 8000, 1, "0-15"),
    ]
}

/// An offer the bridge made and waits to see answered.
#[derive(Debug, Clone)]
pub struct LocalOffer {
    pub kind: ParticipantKind,
    pub codecs: Vec<CodecSpec>,
    /// One key per offered `a=crypto` tag (srtp only).
    pub keys: Vec<(u32, KeyMaterial)>,
}

/// The outcome of one offer/answer exchange for the audio m-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaPlan {
    pub kind: ParticipantKind,
    /// Position of the audio m-line in the remote SDP.
    pub mline: usize,
    /// The audio codec, with the peer's PT, which both sides send.
    pub audio: CodecSpec,
    pub telephone_event: Option<CodecSpec>,
    /// The peer's direction (what it said in its SDP).
    pub remote_direction: Direction,
    /// `false` when the peer's address is 0.0.0.0 (RFC 2543 hold).
    pub remote_addr_known: bool,
    pub remote_rtp: Option<SocketAddr>,
    pub remote_rtcp: Option<SocketAddr>,
    pub rtcp_mux: bool,
    pub ptime: Option<u16>,
    /// For srtp: the chosen `a=crypto` tag and the peer's key (the bridge's inbound key).
    pub remote_crypto: Option<(u32, KeyMaterial)>,
    /// The header extension id of the peer's RFC 6464 audio levels, when it sends them.
    pub audio_level_ext: Option<u8>,
}

impl MediaPlan {
    /// Does the peer want media from the bridge?
    pub fn remote_receives(&self) -> bool {
        self.remote_direction.receives() && self.remote_addr_known
    }
}

/// Decides the participant kind from the audio m-line's profile and the kind asked for.
fn decide_kind(audio: &AudioSection, hint: Option<ParticipantKind>) -> Result<ParticipantKind, NegotiationError> {
    let kind = match audio.profile {
        Profile::Dtls => {
            return Err(NegotiationError::KindMismatch(
                "the offer uses DTLS-SRTP (UDP/TLS/RTP/SAVPF): join it as a webrtc participant".into(),
            ))
        }
        Profile::Plain => ParticipantKind::Rtp,
        Profile::Secure if !audio.crypto.is_empty() => ParticipantKind::Srtp,
        Profile::Secure if audio.dtls_fingerprint => {
            return Err(NegotiationError::KindMismatch(
                "the offer uses RTP/SAVP(F) with a=fingerprint (DTLS-SRTP): join it as a webrtc participant".into(),
            ))
        }
        Profile::Secure => {
            return Err(NegotiationError::NoCommonCrypto("none (RTP/SAVP without a=crypto)".into()));
        }
    };
    match hint {
        Some(h) if h != kind => Err(NegotiationError::KindMismatch(format!(
            "participant kind {} does not fit this offer, which is {} ({})",
            h.as_str(),
            kind.as_str(),
            if kind == ParticipantKind::Srtp { "RTP/SAVP with a=crypto" } else { "RTP/AVP" },
        ))),
        _ => Ok(kind),
    }
}

/// The bridge's codec for an offered format, if it takes it.
fn supported(f: &Format) -> Option<CodecSpec> {
    let codec = Codec::from_encoding_name(f.name.as_deref()?)?;
    let ok = match codec {
        Codec::Pcmu | Codec::Pcma | Codec::G722 => f.clock_rate == 8000,
        Codec::Opus => f.clock_rate == 48000,
        Codec::TelephoneEvent => matches!(f.clock_rate, 8000 | 16000 | 48000),
        _ => false,
    };
    ok.then(|| CodecSpec {
        codec,
        pt: Pt(f.pt),
        clock_rate: f.clock_rate,
        channels: if codec == Codec::Opus { 2 } else { 1 },
        fmtp: f.fmtp.clone(),
    })
}

fn describe(formats: &[Format]) -> String {
    if formats.is_empty() {
        return "no audio formats".into();
    }
    let names: Vec<String> = formats
        .iter()
        .map(|f| match &f.name {
            Some(n) => format!("{n}/{} ({})", f.clock_rate, f.pt),
            None => format!("unknown ({})", f.pt),
        })
        .collect();
    names.join(", ")
}

/// First supported audio codec in the offerer's order, plus its telephone-event.
fn choose_codecs(formats: &[Format]) -> Result<(CodecSpec, Option<CodecSpec>), NegotiationError> {
    let specs: Vec<CodecSpec> = formats.iter().filter_map(supported).collect();
    let audio =
        specs.iter().find(|c| c.codec != Codec::TelephoneEvent).cloned().ok_or_else(|| {
            NegotiationError::NoCommonCodec { offered: describe(formats), supported: SUPPORTED.into() }
        })?;
    let events = || specs.iter().filter(|c| c.codec == Codec::TelephoneEvent);
    let te = events().find(|c| c.clock_rate == audio.clock_rate).or_else(|| events().next()).cloned();
    Ok((audio, te))
}

fn choose_crypto(audio: &AudioSection) -> Result<(u32, KeyMaterial), NegotiationError> {
    if let Some((tag, key)) = audio.crypto.iter().find_map(|c| c.key.as_ref().ok().map(|k| (c.tag, k.clone()))) {
        return Ok((tag, key));
    }
    let offered: Vec<String> = audio
        .crypto
        .iter()
        .map(|c| match &c.key {
            Err(crate::sdes::SdesError::UnsupportedSuite(_)) | Ok(_) => c.suite_name.clone(),
            Err(e) => format!("{} ({e})", c.suite_name),
        })
        .collect();
    Err(NegotiationError::NoCommonCrypto(offered.join(", ")))
}

fn addresses(audio: &AudioSection) -> (Option<SocketAddr>, Option<SocketAddr>) {
    let Some(ip) = audio.addr else {
        return (None, None);
    };
    let rtp = SocketAddr::new(ip, audio.port);
    if audio.rtcp_mux {
        return (Some(rtp), Some(rtp));
    }
    let rtcp_ip: IpAddr = audio.rtcp_addr.unwrap_or(ip);
    let rtcp_port = audio.rtcp_port.or_else(|| audio.port.checked_add(1));
    (Some(rtp), rtcp_port.map(|p| SocketAddr::new(rtcp_ip, p)))
}

/// The plan for the chosen codecs and keys, with the rest read off the remote audio section.
fn media_plan(
    kind: ParticipantKind,
    mline: usize,
    audio: &AudioSection,
    (codec, te): (CodecSpec, Option<CodecSpec>),
    remote_crypto: Option<(u32, KeyMaterial)>,
) -> MediaPlan {
    let (remote_rtp, remote_rtcp) = addresses(audio);
    MediaPlan {
        kind,
        mline,
        audio: codec,
        telephone_event: te,
        remote_direction: audio.direction,
        remote_addr_known: audio.addr.is_some(),
        remote_rtp,
        remote_rtcp,
        rtcp_mux: audio.rtcp_mux,
        ptime: audio.ptime,
        remote_crypto,
        audio_level_ext: audio.audio_level_ext,
    }
}

fn no_audio(what: &str) -> NegotiationError {
    NegotiationError::NoCommonCodec { offered: what.into(), supported: SUPPORTED.into() }
}

/// Plans the answer to a remote offer.
pub fn plan_offer(desc: &RemoteDescription, hint: Option<ParticipantKind>) -> Result<MediaPlan, NegotiationError> {
    let (mline, audio) = desc.first_audio().ok_or_else(|| no_audio("no audio m-line with a port"))?;
    let kind = decide_kind(audio, hint)?;
    let (codec, te) = choose_codecs(&audio.formats)?;
    let remote_crypto = if kind == ParticipantKind::Srtp { Some(choose_crypto(audio)?) } else { None };
    Ok(media_plan(kind, mline, audio, (codec, te), remote_crypto))
}

/// Plans the session from the remote answer to `offer`.
pub fn plan_answer(desc: &RemoteDescription, offer: &LocalOffer) -> Result<MediaPlan, NegotiationError> {
    let audio = match desc.sections.first() {
        Some(s) if s.media.eq_ignore_ascii_case("audio") && s.port == 0 => {
            return Err(no_audio("the answer rejected audio (port 0)"))
        }
        Some(s) => s.audio.as_ref().ok_or_else(|| no_audio("the answer's first m-line is not RTP audio"))?,
        None => return Err(no_audio("the answer has no m-line")),
    };
    let kind = decide_kind(audio, Some(offer.kind))?;
    // The answer should reuse the offer's PTs; fill in names it left out from the offer.
    let formats: Vec<Format> = audio
        .formats
        .iter()
        .map(|f| match (&f.name, offer.codecs.iter().find(|c| c.pt.0 == f.pt)) {
            (None, Some(c)) => Format {
                name: Some(c.codec.as_str().to_owned()),
                clock_rate: c.clock_rate,
                channels: c.channels,
                ..f.clone()
            },
            _ => f.clone(),
        })
        .collect();
    let (codec, te) = choose_codecs(&formats)?;
    let remote_crypto = match kind {
        ParticipantKind::Srtp => {
            let (tag, key) = choose_crypto(audio)?;
            let ours = offer.keys.iter().find(|(t, k)| *t == tag && k.suite == key.suite);
            if ours.is_none() {
                return Err(NegotiationError::NoCommonCrypto(format!(
                    "the answer's a=crypto tag {tag} ({}) matches no offered suite",
                    key.suite.name()
                )));
            }
            Some((tag, key))
        }
        _ => None,
    };
    Ok(media_plan(kind, 0, audio, (codec, te), remote_crypto))
}

/// Refuses a plan whose peer addresses break `policy`, before anything is applied, so a refused
/// offer, re-offer or answer leaves the leg as it was. A held peer (`c=0.0.0.0`) names no address.
pub fn check_peer(plan: &MediaPlan, policy: &PeerPolicy) -> Result<(), NegotiationError> {
    let named = [("media address (c=)", plan.remote_rtp), ("RTCP address (a=rtcp or c=)", plan.remote_rtcp)];
    for (what, addr) in named {
        if let Some(addr) = addr {
            policy
                .check(addr)
                .map_err(|why| NegotiationError::BadSdp(format!("the peer's {what} is refused: {why}")))?;
        }
    }
    Ok(())
}

/// The suites the bridge offers, one `a=crypto` tag each (1, 2, 3).
pub fn offer_suites() -> impl Iterator<Item = (u32, SrtpSuite)> {
    (1..).zip(SrtpSuite::ALL)
}
