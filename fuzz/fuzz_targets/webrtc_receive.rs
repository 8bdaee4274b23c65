//! Datagrams into a WebRTC session, from its peer's address and from a stranger's, before and
//! after ICE and DTLS connect: each is taken or dropped, never a panic, and the session stays up.
//! A panic here would let anyone who can reach the shared WebRTC port remove a participant.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Input, Output as S0Output, Rtc};
use switchboard_driver::{Driver, DriverEvent, Output, RtpMeta, SdpInput, TrackKey};
use switchboard_webrtc::WebrtcDriver;

const BRIDGE: &str = "127.0.0.1:20000";
const CLIENT: &str = "127.0.0.1:30000";
const STRANGER: &str = "127.0.0.9:40000";

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

/// A str0m client and the driver, offered, answered and connected over a lossless simulated
/// link. `None` if they do not connect in 5 simulated seconds (they always should).
fn connected(now: &mut Instant) -> Option<(Rtc, WebrtcDriver, Sink)> {
    let (bridge, client_addr): (SocketAddr, SocketAddr) = (BRIDGE.parse().ok()?, CLIENT.parse().ok()?);
    let mut client = Rtc::builder().set_rtp_mode(true).build(*now);
    client.add_local_candidate(Candidate::host(client_addr, "udp").ok()?);
    let mut driver = WebrtcDriver::new(*now, &[bridge]);
    let mut api = client.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    api.add_media(MediaKind::Video, Direction::SendRecv, None, None, None);
    let (offer, pending) = api.apply()?;
    let answer = driver.negotiate(*now, SdpInput::Offer(&offer.to_sdp_string())).ok()??;
    client.sdp_api().accept_answer(pending, str0m::change::SdpAnswer::from_sdp_string(&answer).ok()?).ok()?;
    let mut sink = Sink::default();
    let end = *now + Duration::from_secs(5);
    while *now < end {
        loop {
            match client.poll_output().ok()? {
                S0Output::Timeout(_) => break,
                S0Output::Transmit(t) => driver.handle_receive(*now, t.source, t.destination, &t.contents),
                S0Output::Event(_) => {}
            }
        }
        driver.poll(*now, &mut sink);
        for data in std::mem::take(&mut sink.transmits) {
            let recv = Receive::new(Protocol::Udp, bridge, client_addr, &data).ok()?;
            client.handle_input(Input::Receive(*now, recv)).ok()?;
        }
        if sink.connected && client.is_connected() {
            return Some((client, driver, sink));
        }
        *now += Duration::from_millis(5);
        client.handle_input(Input::Timeout(*now)).ok()?;
        driver.handle_timeout(*now);
    }
    None
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else { return };
    let mut now = Instant::now();
    let bridge: SocketAddr = BRIDGE.parse().unwrap();
    let (mut driver, mut sink, live) = if mode & 1 == 1 {
        let Some((client, driver, sink)) = connected(&mut now) else {
            panic!("the client and the driver did not connect");
        };
        drop(client);
        (driver, sink, true)
    } else {
        let mut driver = WebrtcDriver::new(now, &[bridge]);
        let offer = include_str!("../../integration-tests/tests/fixtures/chromium_offer.sdp");
        let _ = driver.negotiate(now, SdpInput::Offer(offer));
        (driver, Sink::default(), false)
    };
    // A datagram: a byte whose low bit picks the source (the peer or a stranger), a 16-bit
    // length, then that many bytes.
    while rest.len() >= 3 {
        let src: SocketAddr = if rest[0] & 1 == 0 { CLIENT } else { STRANGER }.parse().unwrap();
        let len = usize::from(u16::from_le_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        let datagram = &rest[3..3 + len];
        rest = &rest[3 + len..];
        if driver.accepts(src, bridge, datagram) {
            driver.handle_receive(now, src, bridge, datagram);
        }
        driver.poll(now, &mut sink);
    }
    now += Duration::from_millis(50);
    driver.handle_timeout(now);
    driver.poll(now, &mut sink);
    // Junk is dropped; it never ends a session (consent lasts 30 s, and only the peer's own
    // checks renew it).
    assert!(!(live && sink.disconnected), "junk ended a live session");
});
