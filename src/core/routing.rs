//! RoutingPolicy: the pure function that decides how every subscriber slot is served.
//!
//! It sees only what each side negotiated (tracks, slots, codecs, overrides), the current
//! assignment (so a slot keeps its source while that source is still valid) and the active
//! speaker order. The room applies the result; nothing here touches packets. See
//! `docs/routing.md` for the rules in prose.

use serde::{Deserialize, Serialize};
use switchboard_driver::{Codec, MediaKind, ParticipantId, ParticipantKind, SlotKey, TrackId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    Forward,
    Transcode,
    Mix,
    Composite,
}

impl Route {
    pub const ALL: [Route; 4] = [Route::Forward, Route::Transcode, Route::Mix, Route::Composite];

    pub fn as_str(self) -> &'static str {
        match self {
            Route::Forward => "forward",
            Route::Transcode => "transcode",
            Route::Mix => "mix",
            Route::Composite => "composite",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AudioPreference {
    #[default]
    Auto,
    Forward,
    Mix,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VideoPreference {
    #[default]
    Auto,
    Composite,
}

/// Video codecs the MCU encodes (a composite or a transcode); others are only forwarded.
pub const COMPOSITE_CODECS: [Codec; 3] = [Codec::Vp8, Codec::Vp9, Codec::H264];

/// One published track as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyTrack {
    pub id: TrackId,
    pub publisher: ParticipantId,
    pub kind: MediaKind,
    pub codec: Codec,
}

/// One subscriber slot as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySlot {
    pub key: SlotKey,
    pub kind: MediaKind,
    /// Accepted codecs in the subscriber's order of preference.
    pub codecs: Vec<Codec>,
    /// The track the slot carries now, if any; kept when still valid so sources do not shuffle.
    pub current: Option<TrackId>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySubscriber {
    pub id: ParticipantId,
    pub kind: ParticipantKind,
    pub audio: AudioPreference,
    pub video: VideoPreference,
    pub slots: Vec<PolicySlot>,
}

/// What the policy decided for one slot. Slots without an assignment stay idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assignment {
    pub slot: SlotKey,
    pub route: Route,
    /// The forwarded or transcoded track; `None` for a mix or a composite.
    pub track: Option<TrackId>,
    /// The codec the slot receives.
    pub codec: Codec,
}

/// Decides every slot of `sub`. `tracks` is every track in the room in publication order;
/// `speakers` is the active-speaker order, loudest first (publishers not in it rank after it,
/// in publication order).
pub fn assign(sub: &PolicySubscriber, tracks: &[PolicyTrack], speakers: &[ParticipantId]) -> Vec<Assignment> {
    let mut out = Vec::new();
    assign_audio(sub, tracks, &mut out);
    assign_video(sub, tracks, speakers, &mut out);
    out
}

fn others<'a>(sub: &PolicySubscriber, tracks: &'a [PolicyTrack], kind: MediaKind) -> Vec<&'a PolicyTrack> {
    tracks.iter().filter(|t| t.kind == kind && t.publisher != sub.id).collect()
}

fn slots_of(sub: &PolicySubscriber, kind: MediaKind) -> Vec<&PolicySlot> {
    sub.slots.iter().filter(|s| s.kind == kind && !s.codecs.is_empty()).collect()
}

fn assign_audio(sub: &PolicySubscriber, tracks: &[PolicyTrack], out: &mut Vec<Assignment>) {
    let publishers = others(sub, tracks, MediaKind::Audio);
    let slots = slots_of(sub, MediaKind::Audio);
    if publishers.is_empty() || slots.is_empty() {
        return;
    }
    let fits = publishers.len() <= slots.len();
    let mix = match sub.audio {
        AudioPreference::Mix => true,
        AudioPreference::Forward => false,
        AudioPreference::Auto => !fits,
    };
    if mix {
        // One mix-minus on the first slot; the others stay idle rather than carry a copy.
        out.push(Assignment { slot: slots[0].key, route: Route::Mix, track: None, codec: slots[0].codecs[0] });
        return;
    }
    for (slot, track) in pair_tracks_to_slots(&slots, &publishers) {
        out.push(match slot.codecs.contains(&track.codec) {
            true => Assignment { slot: slot.key, route: Route::Forward, track: Some(track.id), codec: track.codec },
            false => {
                Assignment { slot: slot.key, route: Route::Transcode, track: Some(track.id), codec: slot.codecs[0] }
            }
        });
    }
}

fn assign_video(sub: &PolicySubscriber, tracks: &[PolicyTrack], speakers: &[ParticipantId], out: &mut Vec<Assignment>) {
    let mut publishers = others(sub, tracks, MediaKind::Video);
    let slots = slots_of(sub, MediaKind::Video);
    if publishers.is_empty() || slots.is_empty() {
        return;
    }
    let shares_codec = publishers.iter().any(|t| slots.iter().any(|s| s.codecs.contains(&t.codec)));
    if sub.video == VideoPreference::Composite || !shares_codec {
        out.push(Assignment {
            slot: slots[0].key,
            route: Route::Composite,
            track: None,
            codec: encodable(&slots[0].codecs),
        });
        return;
    }
    if publishers.len() > slots.len() {
        // Follow the talker: rank by active speaker, keep only as many as there are slots.
        let rank = |t: &PolicyTrack| speakers.iter().position(|p| *p == t.publisher).unwrap_or(usize::MAX);
        publishers.sort_by_key(|t| rank(t));
        publishers.truncate(slots.len());
    }
    for (slot, track) in pair_tracks_to_slots(&slots, &publishers) {
        out.push(match slot.codecs.contains(&track.codec) {
            true => Assignment { slot: slot.key, route: Route::Forward, track: Some(track.id), codec: track.codec },
            false => {
                let codec = encodable(&slot.codecs);
                Assignment { slot: slot.key, route: Route::Transcode, track: Some(track.id), codec }
            }
        });
    }
}

/// The subscriber's first choice among the video codecs the MCU encodes, or its first choice.
fn encodable(codecs: &[Codec]) -> Codec {
    codecs.iter().copied().find(|c| COMPOSITE_CODECS.contains(c)).unwrap_or(codecs[0])
}

/// Pairs tracks with slots: a slot keeps its current track if that track is still wanted, and
/// the remaining tracks fill the remaining slots in order. Extra tracks stay unpaired.
fn pair_tracks_to_slots<'s, 't>(
    slots: &[&'s PolicySlot],
    tracks: &[&'t PolicyTrack],
) -> Vec<(&'s PolicySlot, &'t PolicyTrack)> {
    let mut pairs = Vec::with_capacity(slots.len().min(tracks.len()));
    let mut taken = vec![false; tracks.len()];
    let mut free = Vec::new();
    for slot in slots {
        match slot.current.and_then(|c| tracks.iter().position(|t| t.id == c)) {
            Some(i) if !taken[i] => {
                taken[i] = true;
                pairs.push((*slot, tracks[i]));
            }
            _ => free.push(*slot),
        }
    }
    let mut rest = tracks.iter().zip(taken).filter(|(_, t)| !t).map(|(t, _)| *t);
    for slot in free {
        match rest.next() {
            Some(track) => pairs.push((slot, track)),
            None => break,
        }
    }
    pairs.sort_by_key(|(s, _)| s.key);
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: u64) -> ParticipantId {
        ParticipantId(n)
    }
    fn track(id: u64, publisher: u64, codec: Codec) -> PolicyTrack {
        PolicyTrack { id: TrackId(id), publisher: p(publisher), kind: codec.kind(), codec }
    }
    fn slot(key: u16, codecs: &[Codec]) -> PolicySlot {
        PolicySlot { key: SlotKey(key), kind: codecs[0].kind(), codecs: codecs.to_vec(), current: None }
    }
    fn sub(id: u64, kind: ParticipantKind, slots: Vec<PolicySlot>) -> PolicySubscriber {
        PolicySubscriber { id: p(id), kind, audio: AudioPreference::Auto, video: VideoPreference::Auto, slots }
    }
    fn routes(a: &[Assignment]) -> Vec<(u16, Route, Option<u64>, Codec)> {
        a.iter().map(|a| (a.slot.0, a.route, a.track.map(|t| t.0), a.codec)).collect()
    }

    #[test]
    fn table() {
        use Codec::*;
        use ParticipantKind::*;
        use Route::*;
        struct Case {
            name: &'static str,
            sub: PolicySubscriber,
            tracks: Vec<PolicyTrack>,
            want: Vec<(u16, Route, Option<u64>, Codec)>,
        }
        let with_audio = |mut s: PolicySubscriber, a: AudioPreference| {
            s.audio = a;
            s
        };
        let with_video = |mut s: PolicySubscriber, v: VideoPreference| {
            s.video = v;
            s
        };
        let cases = vec![
            Case {
                name: "enough slots and same codec: forward each",
                sub: sub(1, Webrtc, vec![slot(0, &[Opus]), slot(1, &[Opus])]),
                tracks: vec![track(10, 2, Opus), track(11, 3, Opus)],
                want: vec![(0, Forward, Some(10), Opus), (1, Forward, Some(11), Opus)],
            },
            Case {
                name: "own track is never routed back",
                sub: sub(1, Webrtc, vec![slot(0, &[Opus])]),
                tracks: vec![track(10, 1, Opus)],
                want: vec![],
            },
            Case {
                name: "codec differs: transcode to the slot's first codec",
                sub: sub(1, Webrtc, vec![slot(0, &[Opus])]),
                tracks: vec![track(10, 2, Pcmu)],
                want: vec![(0, Transcode, Some(10), Opus)],
            },
            Case {
                name: "two-party: phone leg and one publisher with a common codec relay",
                sub: sub(1, Rtp, vec![slot(0, &[Pcmu, Pcma])]),
                tracks: vec![track(10, 2, Pcma)],
                want: vec![(0, Forward, Some(10), Pcma)],
            },
            Case {
                name: "fewer slots than publishers: mix on the first slot in its codec",
                sub: sub(1, Rtp, vec![slot(0, &[Pcmu])]),
                tracks: vec![track(10, 2, Pcmu), track(11, 3, Pcmu)],
                want: vec![(0, Mix, None, Pcmu)],
            },
            Case {
                name: "override mix with enough slots",
                sub: with_audio(sub(1, Webrtc, vec![slot(0, &[Opus]), slot(1, &[Opus])]), AudioPreference::Mix),
                tracks: vec![track(10, 2, Opus)],
                want: vec![(0, Mix, None, Opus)],
            },
            Case {
                name: "override forward with too few slots fills what it can",
                sub: with_audio(sub(1, Rtp, vec![slot(0, &[Pcmu])]), AudioPreference::Forward),
                tracks: vec![track(10, 2, Pcmu), track(11, 3, Pcmu)],
                want: vec![(0, Forward, Some(10), Pcmu)],
            },
            Case {
                name: "video: enough slots forwards",
                sub: sub(1, Webrtc, vec![slot(0, &[Opus]), slot(1, &[Vp8, H264])]),
                tracks: vec![track(10, 2, Opus), track(11, 2, H264)],
                want: vec![(0, Forward, Some(10), Opus), (1, Forward, Some(11), H264)],
            },
            Case {
                name: "video: no shared codec composites",
                sub: sub(1, Webrtc, vec![slot(1, &[Vp8])]),
                tracks: vec![track(11, 2, H264)],
                want: vec![(1, Composite, None, Vp8)],
            },
            Case {
                name: "video: composite override",
                sub: with_video(sub(1, Webrtc, vec![slot(1, &[Vp8])]), VideoPreference::Composite),
                tracks: vec![track(11, 2, Vp8)],
                want: vec![(1, Composite, None, Vp8)],
            },
            Case {
                name: "video: a composite is in the slot's first codec the compositor encodes",
                sub: sub(1, Webrtc, vec![slot(1, &[Av1, H264, Vp8])]),
                tracks: vec![track(11, 2, Vp9)],
                want: vec![(1, Composite, None, H264)],
            },
            Case {
                name: "video: a slot that takes no publisher's codec transcodes into one the MCU encodes",
                sub: sub(1, Webrtc, vec![slot(1, &[Vp8]), slot(2, &[Av1, H264])]),
                tracks: vec![track(10, 2, Vp8), track(11, 3, Vp9)],
                want: vec![(1, Forward, Some(10), Vp8), (2, Transcode, Some(11), H264)],
            },
            Case {
                name: "no publishers: nothing assigned",
                sub: sub(1, Webrtc, vec![slot(0, &[Opus])]),
                tracks: vec![],
                want: vec![],
            },
        ];
        for c in cases {
            assert_eq!(routes(&assign(&c.sub, &c.tracks, &[])), c.want, "{}", c.name);
        }
    }

    #[test]
    fn video_follows_the_talker_when_slots_are_short() {
        let s = sub(1, ParticipantKind::Webrtc, vec![slot(0, &[Codec::Vp8])]);
        let tracks = vec![track(10, 2, Codec::Vp8), track(11, 3, Codec::Vp8)];
        let got = assign(&s, &tracks, &[p(3), p(2)]);
        assert_eq!(got[0].track, Some(TrackId(11)));
    }

    #[test]
    fn a_slot_keeps_its_source_when_another_publisher_arrives() {
        let mut s = sub(1, ParticipantKind::Webrtc, vec![slot(0, &[Codec::Opus]), slot(1, &[Codec::Opus])]);
        s.slots[1].current = Some(TrackId(10));
        let got = assign(&s, &[track(9, 3, Codec::Opus), track(10, 2, Codec::Opus)], &[]);
        assert_eq!(routes(&got)[1].2, Some(10));
        assert_eq!(routes(&got)[0].2, Some(9));
    }
}
