//! Turns str0m's session state into the driver contract's [`Negotiated`] view.
//!
//! Directions are the client's: a track is an m-line the client sends on (str0m receives), a slot
//! one it receives on (str0m sends).

use str0m::format::{Codec as S0Codec, PayloadParams};
use str0m::media::{MediaKind as S0Kind, Mid};
use str0m::Rtc;
use switchboard_driver::{Codec, CodecSpec, MediaKind, Negotiated, Pt, SlotInfo, SlotKey, Ssrc, TrackInfo, TrackKey};

use crate::offer::{MLine, OfferScan};

/// A telephone-event format the client may send digits with on one of its tracks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TeleFormat {
    pub track: TrackKey,
    pub pt: Pt,
    pub clock_rate: u32,
}

/// Rebuilds the view from the session after an offer was accepted or str0m reported a media
/// change. `prev` carries slots across a hold, so their keys and SSRCs stay put. Also returns the
/// telephone-event formats of the client's tracks: those packets are digits, never media.
pub(crate) fn build(rtc: &mut Rtc, scan: &OfferScan, prev: &Negotiated) -> (Negotiated, Vec<TeleFormat>) {
    let mut view = Negotiated { tracks: Vec::new(), slots: Vec::new() };
    let mut tele = Vec::new();

    for (index, line) in scan.lines.iter().enumerate() {
        let (Some(mid), true) = (line.mid, line.is_media()) else {
            continue;
        };
        let Ok(index) = u16::try_from(index) else {
            break;
        };
        let Some(media) = rtc.media(mid) else {
            continue;
        };
        if media.disabled() {
            continue;
        }
        let kind = match media.kind() {
            S0Kind::Audio => MediaKind::Audio,
            S0Kind::Video => MediaKind::Video,
        };
        let dir = media.direction();
        let (events, codecs): (Vec<CodecSpec>, Vec<CodecSpec>) = media
            .remote_pts()
            .iter()
            .filter_map(|pt| rtc.codec_config().params().iter().find(|p| p.pt() == *pt))
            .filter_map(|p| codec_spec(p, line))
            .partition(|c| c.codec == Codec::TelephoneEvent);
        let label = mid.to_string();

        if dir.is_receiving() {
            if let Some(first) = codecs.first() {
                let key = TrackKey(index);
                view.tracks.push(TrackInfo { key, kind, codec: first.clone(), label: label.clone() });
                tele.extend(events.iter().map(|e| TeleFormat { track: key, pt: e.pt, clock_rate: e.clock_rate }));
            }
        }

        let key = SlotKey(index);
        let was_slot = prev.slots.iter().any(|s| s.key == key && s.label == label);
        if !dir.is_sending() && !was_slot {
            continue;
        }
        // accept_offer creates the send stream for every sending mid, and keeps it across
        // renegotiation; declaring our own would put a second sender on the mid.
        let Some(ssrc) = rtc.direct_api().stream_tx_by_mid(mid, None).map(|s| *s.ssrc()) else {
            tracing::warn!(mid = %mid, "slot without a send stream; skipped");
            continue;
        };
        view.slots.push(SlotInfo {
            key,
            kind,
            label,
            codecs,
            ssrc: Ssrc(ssrc),
            // Digits are received, never sent: a browser has no API to hear them, so the room
            // passes a phone's digits to WebRTC participants as nothing but the `dtmf` event.
            telephone_event: None,
            active: dir.is_sending(),
            ptime_ms: None,
        });
    }
    (view, tele)
}

/// Whether str0m kept any audio or video m-line of the offer (it disables those whose formats it
/// cannot match).
pub(crate) fn any_media_enabled(rtc: &Rtc, scan: &OfferScan) -> bool {
    scan.lines
        .iter()
        .filter(|l| l.is_media())
        .filter_map(|l| l.mid.and_then(|mid| rtc.media(mid)))
        .any(|m| !m.disabled())
}

/// The mid at m-line `index`, if that line is a media line.
pub(crate) fn mid_at(scan: &OfferScan, index: u16) -> Option<Mid> {
    scan.lines.get(usize::from(index)).filter(|l| l.is_media()).and_then(|l| l.mid)
}

fn codec_spec(p: &PayloadParams, line: &MLine) -> Option<CodecSpec> {
    let spec = p.spec();
    let codec = match spec.codec {
        S0Codec::Opus => Codec::Opus,
        S0Codec::PCMU => Codec::Pcmu,
        S0Codec::PCMA => Codec::Pcma,
        S0Codec::G722 => Codec::G722,
        S0Codec::Vp8 => Codec::Vp8,
        S0Codec::Vp9 => Codec::Vp9,
        S0Codec::H264 => Codec::H264,
        S0Codec::Av1 => Codec::Av1,
        S0Codec::Tele => Codec::TelephoneEvent,
        _ => return None,
    };
    let pt = *p.pt();
    let fmtp = match line.fmtp_for(pt, codec) {
        Some(offered) => offered.to_owned(),
        // The offer numbered it differently or gave no fmtp; str0m's own reading is the truth.
        None => spec.format.to_string(),
    };
    Some(CodecSpec {
        codec,
        pt: Pt(pt),
        // str0m reports G.722 at its 16 kHz sampling rate; the bridge wants the RTP clock.
        clock_rate: if codec == Codec::G722 { codec.clock_rate() } else { spec.clock_rate.get() },
        channels: spec.channels.unwrap_or(1),
        fmtp,
    })
}
