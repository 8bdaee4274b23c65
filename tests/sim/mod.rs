//! The simulation harness of the sans-IO core: fake drivers that speak a tiny packet format, a
//! fake MCU, a simulated network and room builders. Minutes of media run in milliseconds.

// Each test binary compiles this module and uses a part of it, re-exports included.
#![allow(dead_code, unused_imports)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
pub use switchboard::core::{
    AudioPreference, Joining, LeaveReason, MixerSettings, Network, Room, RoomConfig, RoomEvent, Route, VideoPreference,
};
pub use switchboard_driver::*;

/// Wire format of the fake: track key (u16), extended seq (u64), timestamp (u32), payload.
pub fn encode(track: u16, seq: u64, ts: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&track.to_be_bytes());
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&ts.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// Like `encode`, sent from SSRC `ssrc` (plain `encode` packets come from SSRC 1), for a
/// sender that restarts its stream.
pub fn encode_from(ssrc: u32, track: u16, seq: u64, ts: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = b"SSRC".to_vec();
    v.extend_from_slice(&ssrc.to_be_bytes());
    v.extend_from_slice(&encode(track, seq, ts, payload));
    v
}

pub fn decode(d: &[u8]) -> Option<(u16, u64, u32, &[u8])> {
    if d.len() < 14 {
        return None;
    }
    let track = u16::from_be_bytes(d[0..2].try_into().ok()?);
    let seq = u64::from_be_bytes(d[2..10].try_into().ok()?);
    let ts = u32::from_be_bytes(d[10..14].try_into().ok()?);
    Some((track, seq, ts, &d[14..]))
}

pub struct FakeDriver {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub negotiated: Negotiated,
    pub inbox: Vec<(TrackKey, RtpMeta, Vec<u8>)>,
    pub outbox: Vec<Vec<u8>>,
    pub keyframe_requests: Vec<TrackKey>,
    pub closing: bool,
    /// Simulates a driver bug.
    pub panic_on_write: bool,
    /// Datagrams it could not decode, reported as drops at the next poll.
    pub garbage: u32,
    /// A receiver report's loss on slot 0, reported at the next poll (a datagram `LOSS<percent>`).
    pub loss: Option<f32>,
    /// A PLI on slot 0, reported at the next poll (a datagram `PLI`).
    pub pli: bool,
    /// Whether it offers itself for in-kernel forwarding (`Driver::kernel_leg`), and the newest
    /// (SSRC, sequence number) it took.
    pub kernel: bool,
    pub last_in: Option<(u32, u64)>,
    /// What the kernel forwarded to and from it, as the room handed it over.
    pub kernel_received: u64,
    pub kernel_sent: Vec<(u64, u16, u32)>,
}

impl FakeDriver {
    pub fn new(n: u16, tracks: &[Codec], slots: &[Codec]) -> FakeDriver {
        let spec = |c: Codec| CodecSpec {
            codec: c,
            pt: Pt(100 + n as u8),
            clock_rate: c.clock_rate(),
            channels: 1,
            fmtp: String::new(),
        };
        FakeDriver {
            local: format!("127.0.0.1:{}", 10_000 + n).parse().unwrap(),
            remote: format!("127.0.0.2:{}", 20_000 + n).parse().unwrap(),
            negotiated: Negotiated {
                tracks: tracks
                    .iter()
                    .enumerate()
                    .map(|(i, c)| TrackInfo {
                        key: TrackKey(i as u16),
                        kind: c.kind(),
                        codec: spec(*c),
                        label: i.to_string(),
                    })
                    .collect(),
                slots: slots
                    .iter()
                    .enumerate()
                    .map(|(i, c)| SlotInfo {
                        key: SlotKey(i as u16),
                        kind: c.kind(),
                        label: i.to_string(),
                        codecs: vec![spec(*c)],
                        ssrc: Ssrc(1000 + n as u32),
                        telephone_event: None,
                        active: true,
                        ptime_ms: None,
                    })
                    .collect(),
            },
            inbox: Vec::new(),
            outbox: Vec::new(),
            keyframe_requests: Vec::new(),
            closing: false,
            panic_on_write: false,
            garbage: 0,
            loss: None,
            pli: false,
            kernel: false,
            last_in: None,
            kernel_received: 0,
            kernel_sent: Vec::new(),
        }
    }
}

impl Driver for FakeDriver {
    fn kind(&self) -> ParticipantKind {
        ParticipantKind::Rtp
    }
    fn negotiate(&mut self, _: Instant, sdp: SdpInput<'_>) -> Result<Option<String>, NegotiationError> {
        // Simulates a parser bug in a driver's library.
        assert!(!matches!(sdp, SdpInput::Offer(s) if s.contains("panic")), "simulated parser bug");
        Ok(Some("v=0 fake answer".into()))
    }
    fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }
    fn handle_receive(&mut self, _: Instant, _: SocketAddr, _: SocketAddr, data: &[u8]) {
        if data == b"PLI" {
            self.pli = true;
        } else if let Some(percent) = data.strip_prefix(b"LOSS") {
            self.loss = Some(f32::from(percent[0]) / 100.0);
        } else if let Some((ssrc, (track, seq, ts, payload))) = data
            .strip_prefix(b"SSRC")
            .and_then(|d| Some((u32::from_be_bytes(d.get(..4)?.try_into().ok()?), decode(&d[4..])?)))
            .or_else(|| Some((1, decode(data)?)))
        {
            let meta = RtpMeta {
                pt: Pt(1),
                seq: SeqNo(seq),
                timestamp: ts,
                marker: false,
                ssrc: Ssrc(ssrc),
                audio_level: None,
            };
            self.last_in = Some((ssrc, seq));
            self.inbox.push((TrackKey(track), meta, payload.to_vec()));
        } else {
            self.garbage += 1;
        }
    }
    fn handle_timeout(&mut self, _: Instant) {}
    fn write_media(&mut self, _: Instant, slot: SlotKey, meta: &RtpMeta, payload: &[u8]) -> Result<(), WriteError> {
        assert!(!self.panic_on_write, "simulated driver bug");
        self.outbox.push(encode(slot.0, meta.seq.0, meta.timestamp, payload));
        Ok(())
    }
    fn request_keyframe(&mut self, track: TrackKey, _: KeyframeKind) {
        self.keyframe_requests.push(track);
    }
    fn poll(&mut self, now: Instant, out: &mut dyn Output) -> Instant {
        for (k, m, p) in self.inbox.drain(..) {
            out.media(k, &m, &p);
        }
        for d in self.outbox.drain(..) {
            out.transmit(self.local, self.remote, &d);
        }
        for _ in 0..std::mem::take(&mut self.garbage) {
            out.event(DriverEvent::Dropped { reason: DropReason::Malformed });
        }
        if std::mem::take(&mut self.pli) {
            out.event(DriverEvent::KeyframeRequest { slot: SlotKey(0), kind: KeyframeKind::Pli });
        }
        if let Some(fraction) = self.loss.take() {
            let report = switchboard_driver::ReceptionReport { loss: Some(fraction), jitter: None, rtt: None };
            out.event(DriverEvent::ReceiverReport { slot: SlotKey(0), report });
        }
        // Like str0m, a closing driver reports that its transport went away.
        if std::mem::take(&mut self.closing) {
            out.event(DriverEvent::Disconnected { reason: DisconnectReason::Closed });
        }
        now + Duration::from_millis(100)
    }
    fn close(&mut self, _: Instant) {
        self.closing = true;
    }
    fn kernel_leg(&self) -> Option<KernelLeg> {
        self.kernel.then(|| KernelLeg {
            local: self.local,
            latched: Some(self.remote),
            dest: Some(self.remote),
            in_pt: self.negotiated.tracks[0].codec.pt,
            in_stream: self.last_in.map(|(s, q)| (Ssrc(s), q as u16)),
            out_ssrc: self.negotiated.slots[0].ssrc,
            out_seq_offset: Some(0),
        })
    }
    fn kernel_received(&mut self, counts: &KernelCounts) {
        self.kernel_received += counts.packets;
    }
    fn kernel_sent(&mut self, counts: &KernelCounts, seq: u16, ts: u32) {
        self.kernel_sent.push((counts.packets, seq, ts));
    }
}

/// Collects what the room sends, per destination. Drops every `loss_every`-th datagram.
#[derive(Default)]
pub struct SimNet {
    pub received: HashMap<SocketAddr, Vec<(u64, u32, Vec<u8>)>>,
    pub loss_every: usize,
    pub sent: HashMap<SocketAddr, usize>,
}

impl Network for SimNet {
    fn send(&mut self, _from: SocketAddr, to: SocketAddr, data: &[u8]) {
        let n = self.sent.entry(to).or_default();
        *n += 1;
        if self.loss_every > 0 && (*n).is_multiple_of(self.loss_every) {
            return;
        }
        if let Some((_, seq, ts, payload)) = decode(data) {
            self.received.entry(to).or_default().push((seq, ts, payload.to_vec()));
        }
    }
}

pub fn room(now: Instant) -> Room {
    let cfg = RoomConfig {
        max_participants: 10,
        inactivity_timeout: Duration::from_secs(30),
        empty_timeout: Duration::from_secs(60),
        mixer: MixerSettings {
            factory: None,
            speakers: 3,
            jitter_buffer_ms: 40,
            jitter_buffer_max_ms: 200,
            video: VideoSettings::default(),
        },
    };
    Room::new(RoomId::new("sim").unwrap(), cfg, now)
}

pub fn join(
    room: &mut Room,
    now: Instant,
    net: &mut SimNet,
    n: u16,
    tracks: &[Codec],
    slots: &[Codec],
    audio: AudioPreference,
) -> ParticipantId {
    let joining = joining(n, FakeDriver::new(n, tracks, slots), audio);
    let id = joining.id;
    room.join(now, joining, Some("v=0"), net).unwrap();
    id
}

pub fn joining(n: u16, driver: FakeDriver, audio: AudioPreference) -> Joining {
    Joining {
        id: ParticipantId(n as u64),
        kind: ParticipantKind::Rtp,
        display_name: None,
        identity: None,
        media: switchboard::core::MediaGrants::default(),
        audio,
        video: VideoPreference::Auto,
        driver: Box::new(driver),
    }
}

/// A room where participants 1 and 2 each send and receive PCMU, its join events drained.
pub fn pcmu_pair(t0: Instant) -> (Room, SimNet, ParticipantId, ParticipantId) {
    let mut net = SimNet::default();
    let mut r = room(t0);
    let a = join(&mut r, t0, &mut net, 1, &[Codec::Pcmu], &[Codec::Pcmu], AudioPreference::Auto);
    let b = join(&mut r, t0, &mut net, 2, &[Codec::Pcmu], &[Codec::Pcmu], AudioPreference::Auto);
    r.take_events().for_each(drop);
    (r, net, a, b)
}

/// The left events drained from the room.
pub fn left(r: &mut Room) -> Vec<RoomEvent> {
    r.take_events().filter(|e| matches!(e, RoomEvent::ParticipantLeft { .. })).collect()
}

pub fn src(n: u16) -> SocketAddr {
    format!("127.0.0.2:{}", 20_000 + n).parse().unwrap()
}

pub fn dst(n: u16) -> SocketAddr {
    format!("127.0.0.1:{}", 10_000 + n).parse().unwrap()
}

/// A mixer that emits one packet per output every 20 ms, so routing through it can be checked
/// without GStreamer.
#[derive(Default)]
pub struct FakeMixer {
    pub plan: MixPlan,
    pub seq: HashMap<TrackKey, u64>,
    pub due: bool,
    /// Absolute, like a real driver's deadline: polls between ticks must not push it back.
    pub next_tick: Option<Instant>,
    /// The receivers' loss reports the room passed on, by output.
    pub loss: HashMap<TrackKey, f32>,
    /// Outputs asked for a keyframe, answered with a `K` packet on the next tick.
    pub keyframes: Vec<TrackKey>,
}

impl Mcu for FakeMixer {
    fn configure(&mut self, _: Instant, plan: &MixPlan) {
        self.plan = plan.clone();
    }
    fn take_stats(&mut self) -> MixerStats {
        // As the real mixer would: an output whose receiver loses packets gets an FEC encoder.
        MixerStats { fec_encoders: self.loss.values().filter(|f| **f > 0.0).count() as u64, ..Default::default() }
    }
    fn receiver_loss(&mut self, _: Instant, track: TrackKey, fraction: f32) {
        assert!(self.plan.outputs.iter().any(|o| o.track == track), "loss passed on for a track that is no output");
        self.loss.insert(track, fraction);
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.due = true;
        self.next_tick = Some(now + Duration::from_millis(20));
    }
    fn write_media(&mut self, _: Instant, _: SlotKey, _: &RtpMeta, _: &[u8]) -> Result<(), WriteError> {
        Ok(())
    }
    fn request_keyframe(&mut self, track: TrackKey, _: KeyframeKind) {
        self.keyframes.push(track);
    }
    fn poll(&mut self, now: Instant, out: &mut dyn Output) -> Instant {
        if std::mem::take(&mut self.due) {
            for o in &self.plan.outputs {
                let seq = self.seq.entry(o.track).or_insert(500);
                *seq += 1;
                let meta = RtpMeta {
                    pt: o.codec.pt,
                    seq: SeqNo(*seq),
                    timestamp: *seq as u32 * 160,
                    marker: false,
                    ssrc: Ssrc(9),
                    audio_level: None,
                };
                let minus = match o.kind {
                    MixOutputKind::Mix { minus: Some(s) } => s.0 as u8,
                    _ => 0,
                };
                let kind = if self.keyframes.contains(&o.track) { b'K' } else { b'm' };
                out.media(o.track, &meta, &[kind, minus]);
            }
            self.keyframes.clear();
        }
        *self.next_tick.get_or_insert(now)
    }
    fn close(&mut self, _: Instant) {}
}

/// A room whose MCU is the real mixer (G.711 needs no GStreamer).
pub fn real_mixing_room(now: Instant) -> Room {
    let cfg = RoomConfig {
        max_participants: 10,
        inactivity_timeout: Duration::from_secs(30),
        empty_timeout: Duration::from_secs(60),
        mixer: MixerSettings {
            factory: Some(std::sync::Arc::new(|now| Box::new(switchboard_mixer::Mixer::new(now)) as Box<dyn Mcu>)),
            speakers: 3,
            jitter_buffer_ms: 40,
            jitter_buffer_max_ms: 200,
            video: VideoSettings::default(),
        },
    };
    Room::new(RoomId::new("mixer").unwrap(), cfg, now)
}

pub fn mixing_room(now: Instant) -> Room {
    let cfg = RoomConfig {
        max_participants: 10,
        inactivity_timeout: Duration::from_secs(30),
        empty_timeout: Duration::from_secs(60),
        mixer: MixerSettings {
            factory: Some(std::sync::Arc::new(|_| Box::new(FakeMixer::default()) as Box<dyn Mcu>)),
            speakers: 3,
            jitter_buffer_ms: 40,
            jitter_buffer_max_ms: 200,
            video: VideoSettings::default(),
        },
    };
    Room::new(RoomId::new("mix").unwrap(), cfg, now)
}
