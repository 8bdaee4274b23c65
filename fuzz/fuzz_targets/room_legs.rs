//! A room of three phone legs (PCMU with telephone-event, PCMA, G.722), mixed, fed arbitrary
//! datagrams on each leg's RTP and RTCP ports, from the leg's peer or a stranger, between
//! arbitrary ticks: the core and every driver under it take or drop each datagram, nothing
//! panics, and nobody leaves the room because of what another sent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard::core::{
    AudioPreference, Joining, MixerFactory, MixerSettings, Network, Room, RoomConfig, VideoPreference,
};
use switchboard_driver::{Mcu, ParticipantId, ParticipantKind, RoomId, VideoSettings};
use switchboard_mixer::Mixer;
use switchboard_rtp::{RtpDriver, RtpLegConfig};

const FORMATS: [&str; 3] = ["0 101\r\na=rtpmap:101 telephone-event/8000", "8", "9"];

struct Null;

impl Network for Null {
    fn send(&mut self, _: SocketAddr, _: SocketAddr, _: &[u8]) {}
}

fn local(leg: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 20_000 + 2 * leg))
}

fn peer(leg: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 2], 30_000 + 2 * leg))
}

fn room_of_three(now: Instant) -> Room {
    let factory: MixerFactory = Arc::new(|now| Box::new(Mixer::new(now)) as Box<dyn Mcu>);
    let cfg = RoomConfig {
        max_participants: 8,
        // Long enough that no one leaves for silence within a run.
        inactivity_timeout: Duration::from_secs(3600),
        empty_timeout: Duration::from_secs(3600),
        mixer: MixerSettings {
            factory: Some(factory),
            speakers: 3,
            jitter_buffer_ms: 20,
            jitter_buffer_max_ms: 200,
            video: VideoSettings::default(),
        },
    };
    let mut room = Room::new(RoomId::new("fuzz").expect("valid id"), cfg, now);
    for (leg, formats) in (0u16..).zip(FORMATS) {
        let driver = RtpDriver::new(
            RtpLegConfig {
                kind_hint: Some(ParticipantKind::Rtp),
                rtp_local: local(leg),
                rtcp_local: SocketAddr::from(([127, 0, 0, 1], 20_001 + 2 * leg)),
                advertised_ip: [127, 0, 0, 1].into(),
                symmetric: true,
                peers: switchboard_rtp::PeerPolicy::allow_all(),
            },
            now,
        );
        let offer = format!(
            "v=0\r\no=gw {leg} 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n\
             m=audio {} RTP/AVP {formats}\r\na=ptime:20\r\n",
            peer(leg).port()
        );
        let joining = Joining {
            id: ParticipantId(u64::from(leg) + 1),
            kind: ParticipantKind::Rtp,
            display_name: None,
            audio: AudioPreference::Auto,
            video: VideoPreference::Auto,
            driver: Box::new(driver),
        };
        room.join(now, joining, Some(&offer), &mut Null).expect("a plain offer joins");
    }
    room
}

fuzz_target!(|data: &[u8]| {
    static GST: std::sync::Once = std::sync::Once::new();
    GST.call_once(|| switchboard_mixer::gst_codec::init().expect("GStreamer starts"));
    let mut now = Instant::now();
    let mut room = room_of_three(now);
    let members = room.len();
    let mut rest = data;
    // A record: an op byte, and for a datagram a 16-bit length and that many bytes. Op bits:
    // 0x80 a datagram (else a tick of the low 6 bits in ms), 0x03 the leg, 0x04 RTCP port,
    // 0x08 from a stranger.
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        if op & 0x80 == 0 {
            now += Duration::from_millis(u64::from(op & 0x3f));
            room.handle_timeout(now, &mut Null);
            room.take_events().for_each(drop);
            continue;
        }
        let Some((len, tail)) = rest.split_first_chunk::<2>() else { break };
        let len = usize::from(u16::from_le_bytes(*len)).min(tail.len());
        let (datagram, tail) = tail.split_at(len);
        rest = tail;
        let leg = u16::from(op & 0x03) % 3;
        let dst = if op & 0x04 == 0 { local(leg) } else { SocketAddr::from(([127, 0, 0, 1], 20_001 + 2 * leg)) };
        let src = if op & 0x08 == 0 { peer(leg) } else { SocketAddr::from(([127, 0, 0, 9], 40_000)) };
        room.handle_receive(now, ParticipantId(u64::from(leg) + 1), src, dst, datagram, &mut Null);
    }
    for _ in 0..10 {
        now += Duration::from_millis(20);
        room.handle_timeout(now, &mut Null);
    }
    assert_eq!(room.take_closed().count(), 0, "a datagram removed a participant");
    assert_eq!(room.len(), members, "the room lost or gained a member");
});
