//! Simulation tests of the sans-IO core: whole rooms driven through a simulated clock and a
//! lossy fake network, with fake drivers that speak a tiny packet format. Minutes of media run in
//! milliseconds.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use switchboard::core::{
    AudioPreference, Joining, LeaveReason, MixerSettings, Network, Room, RoomConfig, RoomError, RoomEvent, Route,
    VideoPreference,
};
use switchboard_driver::*;

/// Wire format of the fake: track key (u16), extended seq (u64), timestamp (u32), payload.
fn encode(track: u16, seq: u64, ts: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&track.to_be_bytes());
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&ts.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

fn decode(d: &[u8]) -> Option<(u16, u64, u32, &[u8])> {
    if d.len() < 14 {
        return None;
    }
    let track = u16::from_be_bytes(d[0..2].try_into().ok()?);
    let seq = u64::from_be_bytes(d[2..10].try_into().ok()?);
    let ts = u32::from_be_bytes(d[10..14].try_into().ok()?);
    Some((track, seq, ts, &d[14..]))
}

struct FakeDriver {
    local: SocketAddr,
    remote: SocketAddr,
    negotiated: Negotiated,
    inbox: Vec<(TrackKey, RtpMeta, Vec<u8>)>,
    outbox: Vec<Vec<u8>>,
    keyframe_requests: Vec<TrackKey>,
    closing: bool,
    /// Simulates a driver bug.
    panic_on_write: bool,
    /// Datagrams it could not decode, reported as drops at the next poll.
    garbage: u32,
    /// A receiver report's loss on slot 0, reported at the next poll (a datagram `LOSS<percent>`).
    loss: Option<f32>,
    /// A PLI on slot 0, reported at the next poll (a datagram `PLI`).
    pli: bool,
}

impl FakeDriver {
    fn new(n: u16, tracks: &[Codec], slots: &[Codec]) -> FakeDriver {
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
        } else if let Some((track, seq, ts, payload)) = decode(data) {
            let meta =
                RtpMeta { pt: Pt(1), seq: SeqNo(seq), timestamp: ts, marker: false, ssrc: Ssrc(1), audio_level: None };
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
            out.event(DriverEvent::ReceiverLoss { slot: SlotKey(0), fraction });
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
}

/// Collects what the room sends, per destination. Drops every `loss_every`-th datagram.
#[derive(Default)]
struct SimNet {
    received: HashMap<SocketAddr, Vec<(u64, u32, Vec<u8>)>>,
    loss_every: usize,
    sent: HashMap<SocketAddr, usize>,
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

fn room(now: Instant) -> Room {
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

fn join(
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

fn joining(n: u16, driver: FakeDriver, audio: AudioPreference) -> Joining {
    Joining {
        id: ParticipantId(n as u64),
        kind: ParticipantKind::Rtp,
        display_name: None,
        audio,
        video: VideoPreference::Auto,
        driver: Box::new(driver),
    }
}

/// A room where participants 1 and 2 each send and receive PCMU, its join events drained.
fn pcmu_pair(t0: Instant) -> (Room, SimNet, ParticipantId, ParticipantId) {
    let mut net = SimNet::default();
    let mut r = room(t0);
    let a = join(&mut r, t0, &mut net, 1, &[Codec::Pcmu], &[Codec::Pcmu], AudioPreference::Auto);
    let b = join(&mut r, t0, &mut net, 2, &[Codec::Pcmu], &[Codec::Pcmu], AudioPreference::Auto);
    r.take_events().for_each(drop);
    (r, net, a, b)
}

/// The left events drained from the room.
fn left(r: &mut Room) -> Vec<RoomEvent> {
    r.take_events().filter(|e| matches!(e, RoomEvent::ParticipantLeft { .. })).collect()
}

fn src(n: u16) -> SocketAddr {
    format!("127.0.0.2:{}", 20_000 + n).parse().unwrap()
}

fn dst(n: u16) -> SocketAddr {
    format!("127.0.0.1:{}", 10_000 + n).parse().unwrap()
}

#[test]
fn forwards_a_publisher_to_a_subscriber_with_its_numbers() {
    let t0 = Instant::now();
    let mut net = SimNet::default();
    let mut r = room(t0);
    let a = join(&mut r, t0, &mut net, 1, &[Codec::Pcmu], &[Codec::Pcmu], AudioPreference::Auto);
    join(&mut r, t0, &mut net, 2, &[Codec::Pcmu], &[Codec::Pcmu], AudioPreference::Auto);
    for i in 0..50u64 {
        let now = t0 + Duration::from_millis(20 * i);
        r.handle_receive(now, a, src(1), dst(1), &encode(0, 1000 + i, 160 * i as u32, b"voice"), &mut net);
    }
    let got = &net.received[&src(2)];
    assert_eq!(got.len(), 50);
    assert!(got.windows(2).all(|w| w[1].0 == w[0].0 + 1), "sequence continuous");
    assert_eq!(got[0], (1000, 0, b"voice".to_vec()));
    assert!(!net.received.contains_key(&src(1)), "a publisher never hears itself");
    let view = r.participant_view(ParticipantId(2)).unwrap();
    assert_eq!(view.subscriptions[0].route, Some(Route::Forward));
    assert_eq!(view.subscriptions[0].publisher_id, Some(a));
}

#[test]
fn slot_stays_one_stream_across_a_source_change() {
    let t0 = Instant::now();
    let mut net = SimNet::default();
    let mut r = room(t0);
    // The subscriber has one slot and insists on forwarding, so the slot follows whoever is there.
    join(&mut r, t0, &mut net, 9, &[], &[Codec::Opus], AudioPreference::Forward);
    let a = join(&mut r, t0, &mut net, 1, &[Codec::Opus], &[], AudioPreference::Auto);
    let b = join(&mut r, t0, &mut net, 2, &[Codec::Opus], &[], AudioPreference::Auto);
    let mut now = t0;
    for i in 0..100u64 {
        now = t0 + Duration::from_millis(20 * i);
        r.handle_receive(now, a, src(1), dst(1), &encode(0, 5 + i, 960 * i as u32, b"a"), &mut net);
        r.handle_receive(now, b, src(2), dst(2), &encode(0, 60_000 + i, 7_777_777 + 960 * i as u32, b"b"), &mut net);
    }
    let before = net.received[&src(9)].len();
    assert_eq!(before, 100, "only the first publisher fills the single slot");
    r.leave(now, a, LeaveReason::Requested, &mut net);
    let switch_at = now + Duration::from_millis(500);
    for i in 0..10u64 {
        let t = switch_at + Duration::from_millis(20 * i);
        r.handle_receive(
            t,
            b,
            src(2),
            dst(2),
            &encode(0, 60_100 + i, 7_777_777 + 960 * (100 + i) as u32, b"b"),
            &mut net,
        );
    }
    let got = &net.received[&src(9)];
    assert_eq!(got.len(), 110);
    assert!(got.windows(2).all(|w| w[1].0 == w[0].0 + 1), "sequence steps by exactly one across the switch");
    let (last_a, first_b) = (&got[99], &got[100]);
    let gap = first_b.1.wrapping_sub(last_a.1);
    // 520 ms of wall clock at 48 kHz, give or take a packet.
    assert!((24_000..=26_000).contains(&gap), "timestamp bridged by wall clock, got {gap}");
    assert_eq!(first_b.2, b"b");
    let events: Vec<RoomEvent> = r.take_events().collect();
    assert!(events.iter().any(
        |e| matches!(e, RoomEvent::RouteChanged { participant_id, track_id: Some(_), .. } if participant_id.0 == 9)
    ));
}

#[test]
fn silent_participant_times_out_and_the_rest_carry_on() {
    let t0 = Instant::now();
    let mut net = SimNet::default();
    let mut r = room(t0);
    let a = join(&mut r, t0, &mut net, 1, &[Codec::Pcmu], &[Codec::Pcmu], AudioPreference::Auto);
    let b = join(&mut r, t0, &mut net, 2, &[Codec::Pcmu], &[Codec::Pcmu], AudioPreference::Auto);
    let mut now = t0;
    // b talks for 40 simulated seconds; a says nothing at all, though a stranger sprays a's port
    // with datagrams a's driver cannot use: they must not keep a open.
    for i in 0..2000u64 {
        now = t0 + Duration::from_millis(20 * i);
        r.handle_receive(now, b, src(2), dst(2), &encode(0, i, 160 * i as u32, b"x"), &mut net);
        if i % 10 == 0 {
            r.handle_receive(now, a, src(9), dst(1), b"junk", &mut net);
        }
        if now >= r.poll_timeout() {
            r.handle_timeout(now, &mut net);
        }
    }
    assert!(r.participant_view(a).is_none(), "a was closed for inactivity");
    assert!(r.participant_view(b).is_some(), "b is still there");
    let events: Vec<RoomEvent> = r.take_events().collect();
    assert!(events.contains(&RoomEvent::ParticipantLeft { participant_id: a, reason: LeaveReason::Inactive }));
    // a left at ~30 s and received b's audio until then: about 1500 packets, none after.
    let to_a = net.received[&src(1)].len();
    assert!((1490..=1510).contains(&to_a), "{to_a}");
    assert!(now > t0 + Duration::from_secs(39));
}

#[test]
fn ten_minute_call_over_a_lossy_network_runs_fast_and_stays_ordered() {
    let t0 = Instant::now();
    let started = std::time::Instant::now();
    let mut net = SimNet { loss_every: 20, ..Default::default() };
    let mut r = room(t0);
    let a = join(&mut r, t0, &mut net, 1, &[Codec::Opus], &[Codec::Opus], AudioPreference::Auto);
    let b = join(&mut r, t0, &mut net, 2, &[Codec::Opus], &[Codec::Opus], AudioPreference::Auto);
    let packets = 10 * 60 * 50u64;
    for i in 0..packets {
        let now = t0 + Duration::from_millis(20 * i);
        r.handle_receive(now, a, src(1), dst(1), &encode(0, i, 960 * i as u32, b"a"), &mut net);
        r.handle_receive(now, b, src(2), dst(2), &encode(0, i, 960 * i as u32, b"b"), &mut net);
        if now >= r.poll_timeout() {
            r.handle_timeout(now, &mut net);
        }
    }
    for who in [src(1), src(2)] {
        let got = &net.received[&who];
        let expect = packets as usize * 19 / 20;
        assert!(got.len().abs_diff(expect) < 100, "about 5 % lost: {} of {packets}", got.len());
        assert!(got.windows(2).all(|w| w[1].0 > w[0].0), "never out of order");
    }
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}

#[test]
fn mix_is_reported_honestly_when_slots_are_short() {
    let t0 = Instant::now();
    let mut net = SimNet::default();
    let mut r = room(t0);
    let phone = join(&mut r, t0, &mut net, 1, &[Codec::Pcmu], &[Codec::Pcmu], AudioPreference::Auto);
    join(&mut r, t0, &mut net, 2, &[Codec::Pcmu], &[Codec::Pcmu], AudioPreference::Auto);
    assert_eq!(r.participant_view(phone).unwrap().subscriptions[0].route, Some(Route::Forward));
    join(&mut r, t0, &mut net, 3, &[Codec::Pcmu], &[Codec::Pcmu], AudioPreference::Auto);
    let v = r.participant_view(phone).unwrap();
    assert_eq!(v.subscriptions[0].route, Some(Route::Mix));
    assert_eq!(v.subscriptions[0].track_id, None);
}

#[test]
fn a_requested_leave_is_reported_once_as_requested() {
    let t0 = Instant::now();
    let (mut r, mut net, a, b) = pcmu_pair(t0);
    assert!(r.leave(t0, a, LeaveReason::Requested, &mut net));
    assert!(!r.leave(t0, a, LeaveReason::Requested, &mut net), "second leave finds nobody");
    assert_eq!(left(&mut r), vec![RoomEvent::ParticipantLeft { participant_id: a, reason: LeaveReason::Requested }]);
    let v = r.participant_view(b).unwrap();
    assert_eq!(v.subscriptions[0].route, None, "b's slot is idle once its only publisher left");
}

/// A mixer that emits one packet per output every 20 ms, so routing through it can be checked
/// without GStreamer.
#[derive(Default)]
struct FakeMixer {
    plan: MixPlan,
    negotiated: Negotiated,
    seq: HashMap<TrackKey, u64>,
    due: bool,
    /// Absolute, like a real driver's deadline: polls between ticks must not push it back.
    next_tick: Option<Instant>,
    /// The receivers' loss reports the room passed on, by output.
    loss: HashMap<TrackKey, f32>,
    /// Outputs asked for a keyframe, answered with a `K` packet on the next tick.
    keyframes: Vec<TrackKey>,
}

impl MixerControl for FakeMixer {
    fn configure(&mut self, _: Instant, plan: &MixPlan) {
        self.plan = plan.clone();
        self.negotiated = Negotiated {
            tracks: plan
                .outputs
                .iter()
                .map(|o| TrackInfo {
                    key: o.track,
                    kind: o.codec.codec.kind(),
                    codec: o.codec.clone(),
                    label: "mix".into(),
                })
                .collect(),
            slots: plan
                .inputs
                .iter()
                .map(|i| SlotInfo {
                    key: i.slot,
                    kind: i.codec.codec.kind(),
                    label: "in".into(),
                    codecs: vec![i.codec.clone()],
                    ssrc: Ssrc(0),
                    telephone_event: None,
                    active: true,
                    ptime_ms: None,
                })
                .collect(),
        };
    }
    fn take_stats(&mut self) -> MixerStats {
        // As the real mixer would: an output whose receiver loses packets gets an FEC encoder.
        MixerStats { fec_encoders: self.loss.values().filter(|f| **f > 0.0).count() as u64, ..Default::default() }
    }
    fn receiver_loss(&mut self, _: Instant, track: TrackKey, fraction: f32) {
        assert!(self.plan.outputs.iter().any(|o| o.track == track), "loss passed on for a track that is no output");
        self.loss.insert(track, fraction);
    }
}

impl Driver for FakeMixer {
    fn kind(&self) -> ParticipantKind {
        ParticipantKind::Rtp
    }
    fn negotiate(&mut self, _: Instant, _: SdpInput<'_>) -> Result<Option<String>, NegotiationError> {
        Ok(None)
    }
    fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }
    fn handle_receive(&mut self, _: Instant, _: SocketAddr, _: SocketAddr, _: &[u8]) {}
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
    fn as_mixer(&mut self) -> Option<&mut dyn MixerControl> {
        Some(self)
    }
}

fn mixing_room(now: Instant) -> Room {
    let cfg = RoomConfig {
        max_participants: 10,
        inactivity_timeout: Duration::from_secs(30),
        empty_timeout: Duration::from_secs(60),
        mixer: MixerSettings {
            factory: Some(std::sync::Arc::new(|_| Box::new(FakeMixer::default()) as Box<dyn Driver>)),
            speakers: 3,
            jitter_buffer_ms: 40,
            jitter_buffer_max_ms: 200,
            video: VideoSettings::default(),
        },
    };
    Room::new(RoomId::new("mix").unwrap(), cfg, now)
}

#[test]
fn relay_to_mix_and_back_keeps_each_leg_one_stream() {
    let t0 = Instant::now();
    let mut net = SimNet::default();
    let mut r = mixing_room(t0);
    let pcmu = [Codec::Pcmu];
    let a = join(&mut r, t0, &mut net, 1, &pcmu, &pcmu, AudioPreference::Auto);
    let b = join(&mut r, t0, &mut net, 2, &pcmu, &pcmu, AudioPreference::Auto);
    let mut now = t0;
    let step = |r: &mut Room, net: &mut SimNet, now: &mut Instant, n: u64, extra: Option<ParticipantId>| {
        for i in 0..n {
            *now += Duration::from_millis(20);
            r.handle_receive(*now, a, src(1), dst(1), &encode(0, 1000 + i, 160 * i as u32, b"A"), net);
            r.handle_receive(*now, b, src(2), dst(2), &encode(0, 2000 + i, 160 * i as u32, b"B"), net);
            if let Some(c) = extra {
                r.handle_receive(*now, c, src(3), dst(3), &encode(0, 3000 + i, 160 * i as u32, b"C"), net);
            }
            r.handle_timeout(*now, net);
        }
    };
    step(&mut r, &mut net, &mut now, 50, None);
    assert_eq!(r.participant_view(a).unwrap().subscriptions[0].route, Some(Route::Forward));
    assert!(net.received[&src(1)].iter().all(|p| p.2 == b"B"), "relay: a hears b's packets as they are");
    // A relayed stream's loss is its sender's business (its own receiver reports), not a mixer's.
    r.handle_receive(now, a, src(1), dst(1), b"LOSS\x0a", &mut net);
    r.take_stats();
    assert_eq!(r.gauges().fec_encoders, 0);
    assert!(!r.is_mixer_paced(a) && !r.is_mixer_paced(b), "relayed packets must go out as they arrive");
    let relay_epoch = r.pacing_epoch();

    let c = join(&mut r, now, &mut net, 3, &pcmu, &pcmu, AudioPreference::Auto);
    step(&mut r, &mut net, &mut now, 50, Some(c));
    for who in [a, b, c] {
        assert_eq!(r.participant_view(who).unwrap().subscriptions[0].route, Some(Route::Mix));
        assert!(r.is_mixer_paced(who), "everything {who} sends goes only to the mixer");
    }
    let mix_epoch = r.pacing_epoch();
    assert_ne!(mix_epoch, relay_epoch);
    let mixed_for_a: Vec<_> = net.received[&src(1)].iter().filter(|p| p.2[0] == b'm').collect();
    assert!(mixed_for_a.len() >= 45, "a gets the mixer's output: {}", mixed_for_a.len());
    let minus: std::collections::HashSet<u8> = mixed_for_a.iter().map(|p| p.2[1]).collect();
    assert_eq!(minus.len(), 1, "a's mix always leaves out the same input (its own)");
    assert_ne!(mixed_for_a[0].2[1], 0, "a's mix is a mix-minus");
    // Mixed, a's loss reaches the mixer, on a's own output.
    r.handle_receive(now, a, src(1), dst(1), b"LOSS\x0a", &mut net);
    r.take_stats();
    assert_eq!(r.gauges().fec_encoders, 1, "a's loss report reached the mixer");

    r.leave(now, c, LeaveReason::Requested, &mut net);
    step(&mut r, &mut net, &mut now, 50, None);
    assert_eq!(r.participant_view(a).unwrap().subscriptions[0].route, Some(Route::Forward));
    assert!(!r.is_mixer_paced(a) && !r.is_mixer_paced(b), "back to the relay, back to reading on arrival");
    assert_ne!(r.pacing_epoch(), mix_epoch);
    for who in [src(1), src(2)] {
        let got = &net.received[&who];
        assert!(got.windows(2).all(|w| w[1].0 == w[0].0 + 1), "seq steps by exactly one through relay, mix, relay");
        assert!(got.len() >= 145, "{}", got.len());
    }
    assert_eq!(net.received[&src(1)].last().unwrap().2, b"B", "back to the relay");
    let events: Vec<RoomEvent> = r.take_events().collect();
    let mixes = events.iter().filter(|e| matches!(e, RoomEvent::RouteChanged { route: Some(Route::Mix), .. })).count();
    assert_eq!(mixes, 3, "one route_changed to mix per leg");
}

#[test]
fn a_panicking_subscriber_is_removed_and_the_others_carry_on() {
    let t0 = Instant::now();
    let mut net = SimNet::default();
    let mut r = room(t0);
    let a = join(&mut r, t0, &mut net, 1, &[Codec::Pcmu], &[], AudioPreference::Auto);
    let good = join(&mut r, t0, &mut net, 2, &[], &[Codec::Pcmu], AudioPreference::Auto);
    let mut broken = FakeDriver::new(3, &[], &[Codec::Pcmu]);
    broken.panic_on_write = true;
    let bad = ParticipantId(3);
    r.join(t0, joining(3, broken, AudioPreference::Auto), Some("v=0"), &mut net).unwrap();
    for i in 0..20u64 {
        let now = t0 + Duration::from_millis(20 * i);
        r.handle_receive(now, a, src(1), dst(1), &encode(0, i, 160 * i as u32, b"x"), &mut net);
    }
    assert!(r.participant_view(bad).is_none(), "the broken subscriber was removed");
    assert!(r.participant_view(a).is_some() && r.participant_view(good).is_some());
    assert_eq!(net.received[&src(2)].len(), 20, "the healthy subscriber got every packet");
    assert_eq!(
        left(&mut r),
        vec![RoomEvent::ParticipantLeft { participant_id: bad, reason: LeaveReason::TransportFailed }]
    );
}

#[test]
fn sdp_that_panics_a_driver_is_bad_sdp_and_touches_no_one_else() {
    let t0 = Instant::now();
    let (mut r, mut net, a, b) = pcmu_pair(t0);

    let third = joining(3, FakeDriver::new(3, &[Codec::Pcmu], &[]), AudioPreference::Auto);
    match r.join(t0, third, Some("v=0 panic"), &mut net) {
        Err(RoomError::Negotiation(NegotiationError::BadSdp(why))) => {
            assert_eq!(why, "the SDP could not be processed (simulated parser bug)");
        }
        other => panic!("join taken: {:?}", other.map(|_| ())),
    }
    assert_eq!(r.len(), 2);
    assert_eq!(r.take_events().count(), 0, "a refused join is no event");

    // On a re-offer the driver's state may be half changed, so the participant goes, and says so.
    match r.renegotiate(t0, a, "v=0 panic", &mut net) {
        Err(RoomError::Negotiation(NegotiationError::BadSdp(why))) => assert!(why.contains("removed"), "{why}"),
        other => panic!("re-offer taken: {other:?}"),
    }
    assert!(r.participant_view(a).is_none());
    assert!(r.participant_view(b).is_some());
    assert_eq!(
        left(&mut r),
        vec![RoomEvent::ParticipantLeft { participant_id: a, reason: LeaveReason::TransportFailed }]
    );
}

#[test]
fn an_empty_room_expires_after_its_timeout_and_not_before() {
    let t0 = Instant::now();
    let mut net = SimNet::default();
    let mut r = room(t0);
    let a = join(&mut r, t0, &mut net, 1, &[Codec::Pcmu], &[], AudioPreference::Auto);
    assert!(!r.is_expired(t0 + Duration::from_secs(120)), "occupied rooms never expire");
    let left_at = t0 + Duration::from_secs(5);
    r.leave(left_at, a, LeaveReason::Requested, &mut net);
    assert!(!r.is_expired(left_at + Duration::from_secs(59)));
    assert!(r.is_expired(left_at + Duration::from_secs(60)));
}

#[test]
fn a_viewer_without_the_publishers_codec_gets_the_composite_and_its_keyframes() {
    let t0 = Instant::now();
    let mut net = SimNet::default();
    let mut r = mixing_room(t0);
    let a = join(&mut r, t0, &mut net, 1, &[Codec::Vp8], &[], AudioPreference::Auto);
    let b = join(&mut r, t0, &mut net, 2, &[Codec::Vp8], &[], AudioPreference::Auto);
    // Only H.264: no publisher's codec, so the composite, in H.264.
    let viewer = join(&mut r, t0, &mut net, 3, &[], &[Codec::H264], AudioPreference::Auto);
    let sub = &r.participant_view(viewer).unwrap().subscriptions[0];
    assert_eq!((sub.route, sub.codec, sub.publisher_id), (Some(Route::Composite), Some(Codec::H264), None));
    let mut now = t0;
    let step = |r: &mut Room, net: &mut SimNet, now: &mut Instant, n: u64| {
        for i in 0..n {
            *now += Duration::from_millis(20);
            r.handle_receive(*now, a, src(1), dst(1), &encode(0, 1000 + i, 3000 * i as u32, b"A"), net);
            r.handle_receive(*now, b, src(2), dst(2), &encode(0, 2000 + i, 3000 * i as u32, b"B"), net);
            r.handle_timeout(*now, net);
        }
    };
    step(&mut r, &mut net, &mut now, 10);
    let got = net.received[&src(3)].clone();
    assert!(got.len() >= 9, "the viewer gets the mixer's picture: {}", got.len());
    assert!(got.iter().all(|p| p.2[0] == b'K' || p.2[0] == b'm'), "only the composite, never a publisher's packet");
    assert_eq!(got[0].2[0], b'K', "the composite starts on the keyframe the route change asked for");
    assert!(got[1..].iter().all(|p| p.2[0] == b'm'), "and asks once");
    // The viewer's own PLI reaches the compositor's encoder, not a publisher.
    r.handle_receive(now, viewer, src(3), dst(3), b"PLI", &mut net);
    step(&mut r, &mut net, &mut now, 3);
    let got = &net.received[&src(3)];
    assert_eq!(got.iter().filter(|p| p.2[0] == b'K').count(), 2, "the PLI was answered by the composite's encoder");
    assert!(got.windows(2).all(|w| w[1].0 == w[0].0 + 1), "one stream");
    assert!(!net.received.contains_key(&src(1)) && !net.received.contains_key(&src(2)), "publishers get nothing");
    r.take_stats();
    let g = r.gauges();
    assert_eq!(g.subscriptions[Route::Composite], 1);
}
