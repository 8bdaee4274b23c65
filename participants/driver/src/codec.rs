use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    Audio,
    Video,
}

impl MediaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
        }
    }
}

/// The codecs the bridge knows by name. Anything else is not negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    Opus,
    Pcmu,
    Pcma,
    G722,
    Vp8,
    Vp9,
    H264,
    Av1,
    #[serde(rename = "telephone-event")]
    TelephoneEvent,
}

impl Codec {
    pub fn kind(self) -> MediaKind {
        match self {
            Codec::Opus | Codec::Pcmu | Codec::Pcma | Codec::G722 | Codec::TelephoneEvent => MediaKind::Audio,
            Codec::Vp8 | Codec::Vp9 | Codec::H264 | Codec::Av1 => MediaKind::Video,
        }
    }

    /// RTP clock rate. G.722 is 8000 by RFC 3551's historical error, though it samples at 16 kHz.
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Opus => 48_000,
            Codec::Pcmu | Codec::Pcma | Codec::G722 | Codec::TelephoneEvent => 8_000,
            Codec::Vp8 | Codec::Vp9 | Codec::H264 | Codec::Av1 => 90_000,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Codec::Opus => "opus",
            Codec::Pcmu => "pcmu",
            Codec::Pcma => "pcma",
            Codec::G722 => "g722",
            Codec::Vp8 => "vp8",
            Codec::Vp9 => "vp9",
            Codec::H264 => "h264",
            Codec::Av1 => "av1",
            Codec::TelephoneEvent => "telephone-event",
        }
    }

    /// From an `a=rtpmap` encoding name, case-insensitively.
    pub fn from_encoding_name(name: &str) -> Option<Codec> {
        const NAMES: [(&str, Codec); 9] = [
            ("opus", Codec::Opus),
            ("pcmu", Codec::Pcmu),
            ("pcma", Codec::Pcma),
            ("g722", Codec::G722),
            ("vp8", Codec::Vp8),
            ("vp9", Codec::Vp9),
            ("h264", Codec::H264),
            ("av1", Codec::Av1),
            ("telephone-event", Codec::TelephoneEvent),
        ];
        NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, c)| *c)
    }
}

/// A codec as one side negotiated it: with that side's payload type number.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CodecSpec {
    pub codec: Codec,
    pub pt: crate::Pt,
    pub clock_rate: u32,
    pub channels: u8,
    /// `a=fmtp` parameters as offered, for the answer and for the mixer's caps.
    pub fmtp: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_names_are_case_insensitive() {
        assert_eq!(Codec::from_encoding_name("PCMU"), Some(Codec::Pcmu));
        assert_eq!(Codec::from_encoding_name("Opus"), Some(Codec::Opus));
        assert_eq!(Codec::from_encoding_name("G729"), None);
    }
}
