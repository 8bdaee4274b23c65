/// RTP payload type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pt(pub u8);

/// RTP synchronisation source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ssrc(pub u32);

/// An RTP sequence number extended past its 16-bit wrap, so ordering is plain `u64` ordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SeqNo(pub u64);

impl SeqNo {
    /// The 16 bits that go on the wire.
    pub fn wire(self) -> u16 {
        self.0 as u16
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyframeKind {
    Pli,
    Fir,
}

/// The RTP header fields the bridge reads and rewrites. The payload travels beside it as a slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpMeta {
    pub pt: Pt,
    pub seq: SeqNo,
    pub timestamp: u32,
    pub marker: bool,
    pub ssrc: Ssrc,
    /// RFC 6464 level in -dBov (0 loudest, 127 silence), when the sender put it on the packet.
    pub audio_level: Option<i8>,
}
