use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A participant, unique in the process. Shown as 16 hex digits so it is hard to guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParticipantId(pub u64);

impl fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl FromStr for ParticipantId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u64::from_str_radix(s, 16).map(ParticipantId)
    }
}

impl Serialize for ParticipantId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A published track, unique in the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrackId(pub u64);

impl fmt::Display for TrackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}", self.0)
    }
}

impl Serialize for TrackId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A room's name, chosen by the client or generated. Restricted to `[A-Za-z0-9_.-]{1,64}` so it
/// is safe in URLs and logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RoomId(String);

impl RoomId {
    pub fn new(s: &str) -> Option<RoomId> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
        ok.then(|| RoomId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A driver's own key for one of its published tracks (for WebRTC, the m-line index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrackKey(pub u16);

/// A driver's own key for one of its receive slots (for WebRTC, the m-line index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlotKey(pub u16);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParticipantKind {
    Webrtc,
    Rtp,
    Srtp,
}

impl ParticipantKind {
    pub const ALL: [ParticipantKind; 3] = [ParticipantKind::Webrtc, ParticipantKind::Rtp, ParticipantKind::Srtp];

    pub fn as_str(self) -> &'static str {
        match self {
            ParticipantKind::Webrtc => "webrtc",
            ParticipantKind::Rtp => "rtp",
            ParticipantKind::Srtp => "srtp",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn participant_id_round_trips_through_text() {
        let id = ParticipantId(0xdead_beef_0000_0001);
        assert_eq!(id.to_string().parse::<ParticipantId>().unwrap(), id);
    }

    #[test]
    fn room_id_rejects_unsafe_names() {
        assert!(RoomId::new("standup-1").is_some());
        assert!(RoomId::new("").is_none());
        assert!(RoomId::new("a/b").is_none());
        assert!(RoomId::new(&"x".repeat(65)).is_none());
    }
}
