//! Datagrams into a WebRTC session, from its peer's address and from a stranger's, before and
//! after ICE and DTLS connect, and RTP the connected client protects with its real SRTP keys
//! (any payload type, sequence number, timestamp, audio level and payload, telephone-event
//! included): each is taken or dropped, never a panic, and the session stays up. A panic here
//! would let anyone who reaches the shared WebRTC port remove a participant.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use str0m::format::{Codec, FormatParams};
use str0m::media::{Direction, Frequency, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpWrite};
use str0m::{Candidate, Input, Output as S0Output, Rtc};
use switchboard_driver::{Driver, DriverEvent, Output, RtpMeta, SdpInput, TrackKey};
use switchboard_webrtc::WebrtcDriver;

const BRIDGE: &str = "127.0.0.1:20000";
const CLIENT: &str = "127.0.0.1:30000";
const STRANGER: &str = "127.0.0.9:40000";
/// The client's telephone-event type, as Chromium numbers it.
const TELE: u8 = 110;

#[derive(Default)]
struct Sink {
    transmits: Vec<Vec<u8>>,
    connected: bool,
    disconnected: bool,
}

impl Output for Sink {
    fn transmit(&mut self, _: SocketAddr, _: SocketAddr, data: &[u8]) {
        self.transmits.push(data.to_vec());
    }
    fn media(&mut self, _: TrackKey, _: &RtpMeta, _: &[u8]) {}
    fn event(&mut self, event: DriverEvent) {
        match event {
            DriverEvent::Connected => self.connected = true,
            DriverEvent::Disconnected { .. } => self.disconnected = true,
            _ => {}
        }
    }
}

/// A str0m client (audio with telephone-event, and video) and the driver, over a lossless
/// simulated link.
struct Pair {
    now: Instant,
    client: Rtc,
    driver: WebrtcDriver,
    sink: Sink,
    mids: [Mid; 2],
}

impl Pair {
    /// Offered, answered and connected; `None` if not within 5 simulated seconds (it always
    /// should).
    fn connected(now: Instant) -> Option<Pair> {
        let mut config = Rtc::builder().set_rtp_mode(true);
        let tele = FormatParams::default();
        config.codec_config().add_config(TELE.into(), None, Codec::Tele, Frequency::FORTY_EIGHT_KHZ, None, tele);
        let mut client = config.build(now);
        client.add_local_candidate(Candidate::host(CLIENT.parse().ok()?, "udp").ok()?);
        let driver = WebrtcDriver::new(now, &[BRIDGE.parse().ok()?]);
        let mut api = client.sdp_api();
        let audio = api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let video = api.add_media(MediaKind::Video, Direction::SendRecv, None, None, None);
        let (offer, pending) = api.apply()?;
        let mut pair = Pair { now, client, driver, sink: Sink::default(), mids: [audio, video] };
        let answer = pair.driver.negotiate(now, SdpInput::Offer(&offer.to_sdp_string())).ok()??;
        let answer = str0m::change::SdpAnswer::from_sdp_string(&answer).ok()?;
        pair.client.sdp_api().accept_answer(pending, answer).ok()?;
        for _ in 0..1000 {
            pair.exchange()?;
            if pair.sink.connected && pair.client.is_connected() {
                return Some(pair);
            }
            pair.tick(Duration::from_millis(5))?;
        }
        None
    }

    /// Drains the client into the driver and the driver back into the client.
    fn exchange(&mut self) -> Option<()> {
        let (bridge, client) = (BRIDGE.parse().ok()?, CLIENT.parse().ok()?);
        for _ in 0..8 {
            let mut moved = false;
            loop {
                match self.client.poll_output().ok()? {
                    S0Output::Timeout(_) => break,
                    S0Output::Transmit(t) => {
                        moved = true;
                        self.driver.handle_receive(self.now, t.source, t.destination, &t.contents);
                    }
                    S0Output::Event(_) => {}
                }
            }
            self.driver.poll(self.now, &mut self.sink);
            for data in std::mem::take(&mut self.sink.transmits) {
                moved = true;
                let recv = Receive::new(Protocol::Udp, bridge, client, &data).ok()?;
                self.client.handle_input(Input::Receive(self.now, recv)).ok()?;
            }
            if !moved {
                break;
            }
        }
        Some(())
    }

    fn tick(&mut self, step: Duration) -> Option<()> {
        self.now += step;
        self.client.handle_input(Input::Timeout(self.now)).ok()?;
        self.driver.handle_timeout(self.now);
        self.exchange()
    }

    /// The client sends one RTP packet on the audio (or video) m-line, protected with its keys.
    fn client_rtp(&mut self, video: bool, pt: u8, seq: u16, ts: u32, level: Option<i8>, payload: &[u8]) {
        let ext_vals = ExtensionValues { audio_level: level, ..ExtensionValues::default() };
        let write = RtpWrite::new(pt.into(), u64::from(seq).into(), ts, self.now, payload.to_vec()).ext_vals(ext_vals);
        let mid = self.mids[usize::from(video)];
        if let Some(tx) = self.client.direct_api().stream_tx_by_mid(mid, None) {
            tx.write_rtp(write);
        }
        let _ = self.exchange();
    }
}

/// The next `n` bytes of `rest`, or `None` when the input is used up.
fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let (head, tail) = rest.split_at_checked(n)?;
    *rest = tail;
    Some(head)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else { return };
    let now = Instant::now();
    let bridge: SocketAddr = BRIDGE.parse().unwrap();
    let mut pair = None;
    let mut fresh = None;
    if mode & 1 == 1 {
        pair = Some(Pair::connected(now).expect("the client and the driver connect"));
    } else {
        let mut driver = WebrtcDriver::new(now, &[bridge]);
        let offer = include_str!("../../integration-tests/tests/fixtures/chromium_offer.sdp");
        let _ = driver.negotiate(now, SdpInput::Offer(offer));
        fresh = Some((driver, Sink::default()));
    }
    // A record starts with an op byte. 0x00-0x7f: a raw datagram (bit 0x40: from a stranger),
    // then a 16-bit length and that many bytes. 0x80-0xbf: client RTP (bit 0x01 video, bits
    // 0x06 the payload type: Opus, telephone-event, VP8 or the next byte), then sequence number,
    // timestamp, a level byte (bit 0x80: present) and a length byte and the payload. 0xc0-0xff:
    // time passes, the low bits in ms.
    while let Some(op) = take(&mut rest, 1).map(|b| b[0]) {
        match op {
            0x00..=0x7f => {
                let Some(len) = take(&mut rest, 2) else { break };
                let len = usize::from(u16::from_le_bytes([len[0], len[1]])).min(rest.len());
                let datagram = take(&mut rest, len).unwrap_or_default();
                let src: SocketAddr = if op & 0x40 == 0 { CLIENT } else { STRANGER }.parse().unwrap();
                let (driver, sink, at) = match (&mut pair, &mut fresh) {
                    (Some(p), _) => (&mut p.driver, &mut p.sink, p.now),
                    (None, Some((d, s))) => (d, s, now),
                    (None, None) => return,
                };
                if driver.accepts(src, bridge, datagram) {
                    driver.handle_receive(at, src, bridge, datagram);
                }
                driver.poll(at, sink);
            }
            0x80..=0xbf => {
                let Some(p) = pair.as_mut() else { continue };
                let pt = match (op >> 1) & 3 {
                    0 => 111,
                    1 => TELE,
                    2 => 96,
                    _ => take(&mut rest, 1).map_or(0, |b| b[0] & 0x7f),
                };
                let Some(h) = take(&mut rest, 8) else { break };
                let level = (h[6] & 0x80 != 0).then_some(-((h[6] & 0x7f) as i8));
                let len = usize::from(h[7]).min(rest.len());
                let payload = take(&mut rest, len).unwrap_or_default();
                let (seq, ts) = (u16::from_le_bytes([h[0], h[1]]), u32::from_le_bytes([h[2], h[3], h[4], h[5]]));
                p.client_rtp(op & 1 == 1, pt, seq, ts, level, payload);
            }
            0xc0..=0xff => {
                let step = Duration::from_millis(u64::from(op & 0x3f));
                match (&mut pair, &mut fresh) {
                    (Some(p), _) => {
                        let _ = p.tick(step);
                    }
                    (None, Some((d, _))) => d.handle_timeout(now + step),
                    (None, None) => return,
                }
            }
        }
    }
    if let Some(p) = pair.as_mut() {
        let _ = p.tick(Duration::from_millis(50));
        // Junk is dropped; it never ends a live session.
        assert!(!p.sink.disconnected, "junk ended a live session");
    }
});
