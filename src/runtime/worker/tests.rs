//! The worker's receive path under a stranger's flood, on real loopback sockets: every datagram
//! it drops (unknown sources on the shared WebRTC port; garbage, strangers' RTP and forged RTCP
//! on a leg's ports) is read, handed on, refused and counted without one heap allocation
//! (issue 19, item 1).

use super::*;
use crate::core::{AudioPreference, MediaGrants, VideoPreference};
use crate::runtime::command::JoinRequest;
use std::net::UdpSocket as StdSocket;
use switchboard_driver::alloc_count as counting;
use switchboard_driver::DropReason;

fn worker() -> Worker {
    let mut cfg = Config::default();
    cfg.webrtc.listen = "127.0.0.1:0".parse().unwrap();
    // A range of its own, away from the integration tests' blocks (20000 to 31520).
    cfg.rtp.port_min = 46_000;
    cfg.rtp.port_max = 46_999;
    let metrics = Arc::new(Metrics::new());
    let hooks = Webhooks::none(metrics.clone());
    let (_tx, commands) = std::sync::mpsc::sync_channel(4);
    let webrtc = UdpSocket::bind(cfg.webrtc.listen).unwrap();
    let addr = local_webrtc(&cfg, webrtc.local_addr().unwrap());
    let shared = Arc::new(crate::runtime::workers::Shared {
        status: vec![crate::runtime::status::WorkerStatus::new(Instant::now())],
        placement: crate::runtime::placement::Placement::new(1),
        webrtc: vec![addr],
    });
    let leg_ports = (cfg.rtp.port_min, cfg.rtp.port_max);
    Worker::new(Setup {
        index: 0,
        cfg,
        poll: Poll::new().unwrap(),
        webrtc,
        leg_ports,
        commands,
        shared,
        metrics,
        hooks,
        kernel: None,
    })
    .unwrap()
}

/// Joins a plain PCMU leg whose peer is `phone` to room `flood`; returns the leg's RTP address
/// and token.
fn join_leg(w: &mut Worker, phone: &StdSocket) -> (SocketAddr, Token) {
    let port = phone.local_addr().unwrap().port();
    let offer = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n\
         a=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    );
    let (reply, mut answer) = tokio::sync::oneshot::channel();
    let request = JoinRequest {
        kind: None,
        sdp: Some(offer),
        display_name: None,
        identity: None,
        media: MediaGrants::default(),
        audio: AudioPreference::Auto,
        video: VideoPreference::Auto,
    };
    w.handle_command(Command::Join { room: RoomId::new("flood").unwrap(), request, reply });
    let joined = answer.try_recv().expect("answered at once").expect("joined");
    let leg_port: u16 = joined
        .sdp
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|l| l.split(' ').next())
        .and_then(|p| p.parse().ok())
        .expect("the answer names the leg's port");
    let (&token, leg) = w.legs.iter().find(|(_, l)| l.rtp && l.local.port() == leg_port).expect("the leg's socket");
    (leg.local, token)
}

fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0xff; 160]);
    p
}

/// A STUN binding request naming a ufrag nobody has.
fn stun(n: u8) -> Vec<u8> {
    let mut d = vec![0x00, 0x01, 0x00, 0x0c, 0x21, 0x12, 0xa4, 0x42];
    d.extend_from_slice(&[n; 12]);
    d.extend_from_slice(&[0x00, 0x06, 0x00, 0x07]);
    d.extend_from_slice(b"nobody:x\0");
    d.truncate(32);
    d
}

/// Reads what is queued on every socket, as the loop would: each socket until it is drained.
fn read_all(w: &mut Worker, leg: Token) {
    for _ in 0..64 {
        w.read_webrtc();
        w.read_leg(leg, false);
        if !w.webrtc_backlog && w.leg_backlog.is_empty() {
            return;
        }
        w.webrtc_backlog = false;
        w.leg_backlog.clear();
    }
}

#[test]
fn dropping_a_strangers_datagrams_allocates_nothing() {
    let mut w = worker();
    let phone = StdSocket::bind("127.0.0.1:0").unwrap();
    let (leg, token) = join_leg(&mut w, &phone);
    // The peer's first packet latches the leg.
    phone.send_to(&rtp(1, 0x5eed), leg).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    read_all(&mut w, token);

    // 127.0.0.2 is loopback too, but not the host the peer is on.
    let stranger = StdSocket::bind("127.0.0.2:0").unwrap();
    let shared = w.webrtc_local;
    let rtcp = SocketAddr::new(leg.ip(), leg.port() + 1);
    let flood = |n: u16| {
        for i in 0..n {
            let b = i as u8;
            stranger.send_to(&[b; 48], leg).unwrap();
            stranger.send_to(&rtp(i, 0x1000 + u32::from(i)), leg).unwrap();
            stranger.send_to(&rtp(i, 0x5eed), leg).unwrap();
            stranger.send_to(&[0x81, 201, 0, 1, 0, 0, b, b], rtcp).unwrap();
            stranger.send_to(&stun(b), shared).unwrap();
            stranger.send_to(&rtp(i, 0x5eed), shared).unwrap();
            stranger.send_to(&[b; 100], shared).unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Warm-up: the receive batches, queues and backlogs reach their size once.
    flood(300);
    read_all(&mut w, token);
    let rtcp_token = *w.legs.iter().find(|(_, l)| !l.rtp).map(|(t, _)| t).unwrap();
    w.read_leg(rtcp_token, false);

    let before_unknown = w.unknown_source;
    let mut read = 0;
    for _ in 0..5 {
        flood(200);
        let at = counting::count();
        read_all(&mut w, token);
        w.read_leg(rtcp_token, false);
        read += counting::count() - at;
    }
    assert_eq!(read, 0, "heap allocations while reading and dropping 7,000 strangers' datagrams");
    let at = counting::count();
    drop(std::hint::black_box(vec![0u8; 16]));
    assert_eq!(counting::count() - at, 1, "the counter counts this thread's allocations");
    assert_eq!(w.unknown_source - before_unknown, 3 * 1000, "the shared port's strangers were counted");
    // The room counted the leg's drops (unknown source, malformed) and its peer is still there.
    let Some(entry) = w.rooms.iter_mut().flatten().next() else { panic!("the room is gone") };
    let stats = entry.room.take_stats();
    assert!(stats.dropped[DropReason::UnknownSource] + stats.dropped[DropReason::Malformed] >= 4000, "{stats:?}");
    assert_eq!(entry.room.len(), 1);
}

#[test]
fn a_flooded_mixer_leg_is_read_on_arrival_until_it_is_quiet_again() {
    let mut w = worker();
    let phones: Vec<StdSocket> = (0..3).map(|_| StdSocket::bind("127.0.0.1:0").unwrap()).collect();
    let legs: Vec<(SocketAddr, Token)> = phones.iter().map(|p| join_leg(&mut w, p)).collect();
    for (seq, (phone, (leg, _))) in phones.iter().zip(&legs).enumerate() {
        phone.send_to(&rtp(seq as u16, 0x5eed + seq as u32), leg).unwrap();
    }
    std::thread::sleep(Duration::from_millis(20));
    let tick = |w: &mut Worker| {
        let now = Instant::now() + Duration::from_secs(1);
        w.fire_room_timeouts(now);
        // A second scan: the first one's calls restate what changed, the next carries it out.
        w.fire_room_timeouts(now);
    };
    tick(&mut w);
    let paced = |w: &Worker| legs.iter().map(|(_, t)| w.legs[t].is_paced()).collect::<Vec<_>>();
    assert_eq!(paced(&w), [true; 3], "three legs heard only by the mixer are read at its ticks");

    // A stranger floods the first leg's port: 300 datagrams wait for the next tick.
    let stranger = StdSocket::bind("127.0.0.2:0").unwrap();
    for i in 0..300u16 {
        stranger.send_to(&rtp(i, 0xbad), legs[0].0).unwrap();
    }
    std::thread::sleep(Duration::from_millis(20));
    tick(&mut w);
    assert_eq!(paced(&w), [false, true, true], "the flooded leg is read on arrival");
    // Still flooded at the next housekeeping turn (it read 300 since the last), quiet at the one
    // after: paced again.
    w.review_floods();
    tick(&mut w);
    assert_eq!(paced(&w), [false, true, true]);
    w.review_floods();
    tick(&mut w);
    assert_eq!(paced(&w), [true; 3], "quiet again, the leg is read at the ticks");
}
