//! The driver against a str0m client, end to end: offer/answer, ICE + DTLS, RTP both ways,
//! keyframe requests, NACK, renegotiation and close.

mod common;

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::{add, sdp_ssrcs, Pair};
use str0m::change::SdpAnswer;
use str0m::format::{Codec as S0Codec, FormatParams};
use str0m::media::{Direction, Frequency, KeyframeRequestKind, MediaKind as S0Kind, Mid};
use str0m::rtp::RtpWrite;
use switchboard_driver::{
    Codec, DisconnectReason, Driver, DriverEvent, KeyframeKind, MediaKind, NegotiationError, Pt, RtpMeta, SdpInput,
    SeqNo, SlotKey, Ssrc, TrackKey, WriteError,
};

/// A client that sends and receives audio (m-line 0) and video (m-line 1), connected.
fn connected_av() -> (Pair, String, [Mid; 2]) {
    let mut pair = Pair::new();
    let (answer, mids) = pair
        .negotiate(|api| [add(api, S0Kind::Audio, Direction::SendRecv), add(api, S0Kind::Video, Direction::SendRecv)]);
    pair.connect();
    (pair, answer, mids)
}

fn meta(pt: Pt, seq: u64, timestamp: u32) -> RtpMeta {
    RtpMeta { pt, seq: SeqNo(seq), timestamp, marker: true, ssrc: Ssrc(1), audio_level: None }
}

#[test]
fn sendrecv_offer_connects_and_lists_tracks_and_slots() {
    let (pair, answer, _) = connected_av();
    let n = pair.driver.negotiated();

    assert_eq!(n.tracks.len(), 2);
    assert_eq!((n.tracks[0].key, n.tracks[0].kind), (TrackKey(0), MediaKind::Audio));
    assert_eq!((n.tracks[1].key, n.tracks[1].kind), (TrackKey(1), MediaKind::Video));
    assert_eq!(n.tracks[0].codec.codec, Codec::Opus);
    assert_eq!(n.tracks[0].codec.pt.0, *pair.client_pt(S0Codec::Opus));
    assert_eq!((n.tracks[0].codec.clock_rate, n.tracks[0].codec.channels), (48_000, 2));
    assert_eq!(n.tracks[1].codec.codec, Codec::Vp8);

    assert_eq!(n.slots.len(), 2);
    let (a, v) = (&n.slots[0], &n.slots[1]);
    assert_eq!((a.key, a.kind, a.active), (SlotKey(0), MediaKind::Audio, true));
    assert_eq!((v.key, v.kind, v.active), (SlotKey(1), MediaKind::Video, true));
    // Only what the bridge enabled, with the client's numbers.
    assert!(a.codecs.iter().all(|c| matches!(c.codec, Codec::Opus | Codec::Pcmu | Codec::Pcma)));
    assert!(v.codecs.iter().all(|c| matches!(c.codec, Codec::Vp8 | Codec::H264)));
    assert_eq!(v.pt_for(Codec::Vp8).map(|p| p.0), Some(*pair.client_pt(S0Codec::Vp8)));
    assert!(v.pt_for(Codec::H264).is_some());
    assert_eq!(a.telephone_event, None);

    assert_ne!(a.ssrc.0, 0);
    assert_ne!(v.ssrc.0, 0);
    assert_ne!(a.ssrc, v.ssrc);
    let declared = sdp_ssrcs(&answer);
    assert!(declared.contains(&a.ssrc.0), "audio SSRC {} not in answer", a.ssrc.0);
    assert!(declared.contains(&v.ssrc.0), "video SSRC {} not in answer", v.ssrc.0);
    assert_eq!(pair.sink.events.iter().filter(|e| **e == DriverEvent::Connected).count(), 1);
}

#[test]
fn client_audio_reaches_the_room_on_its_track() {
    let (mut pair, _, mids) = connected_av();
    let pt = pair.client_pt(S0Codec::Opus);
    let now = pair.now;
    for i in 0..3u16 {
        let mid = mids[0];
        let payload = vec![0xA0, i as u8, 0x55];
        pair.client_write(mid, RtpWrite::new(pt, u64::from(100 + i).into(), 960 * u32::from(i), now, payload));
        pair.step(Duration::from_millis(20));
    }
    pair.run_until(Duration::from_millis(200), |p| p.sink.media.len() >= 3);

    assert_eq!(pair.sink.media.len(), 3, "media seen: {:?}", pair.sink.media);
    for (i, (track, meta, payload)) in pair.sink.media.iter().enumerate() {
        assert_eq!(*track, TrackKey(0));
        assert_eq!(meta.pt.0, *pt);
        assert_eq!(meta.seq.wire(), 100 + i as u16);
        assert_eq!(meta.timestamp, 960 * i as u32);
        assert_eq!(payload, &vec![0xA0, i as u8, 0x55]);
    }
}

#[test]
fn written_media_reaches_the_client_with_the_slot_ssrc() {
    let (mut pair, _, _) = connected_av();
    let slot = pair.driver.negotiated().slots[0].clone();
    let pt = slot.pt_for(Codec::Opus).expect("opus on the audio slot");
    let now = pair.now;

    let mut m = meta(pt, 5000, 123_456);
    m.audio_level = Some(40);
    pair.driver.write_media(now, slot.key, &m, &[1, 2, 3, 4]).expect("write");
    pair.run_until(Duration::from_millis(200), |p| !p.client_rtp.is_empty());

    let p = pair.client_rtp.first().expect("client got the packet");
    assert_eq!(*p.header.ssrc, slot.ssrc.0);
    assert_eq!(*p.header.payload_type, pt.0);
    assert_eq!(p.header.sequence_number, 5000);
    assert_eq!(p.header.timestamp, 123_456);
    assert!(p.header.marker);
    assert_eq!(p.header.ext_vals.audio_level, Some(-40));
    assert_eq!(&p.payload[..], &[1, 2, 3, 4]);

    assert_eq!(pair.driver.write_media(now, SlotKey(9), &m, &[0]), Err(WriteError::NoSuchSlot));
    assert_eq!(pair.driver.write_media(now, slot.key, &meta(Pt(13), 1, 1), &[0]), Err(WriteError::PayloadType(13)));

    // The driver remembers the last write's slot and type; each write is still checked against
    // its own slot's codecs, whichever slot came before.
    let video = pair.driver.negotiated().slots[1].clone();
    let vp8 = video.pt_for(Codec::Vp8).expect("vp8 on the video slot");
    pair.driver.write_media(now, slot.key, &meta(pt, 5001, 124_416), &[5]).expect("audio write");
    assert_eq!(pair.driver.write_media(now, video.key, &meta(pt, 1, 0), &[0]), Err(WriteError::PayloadType(pt.0)));
    pair.driver.write_media(now, video.key, &meta(vp8, 1, 0), &[0x10]).expect("video write");
    assert_eq!(pair.driver.write_media(now, slot.key, &meta(vp8, 5002, 0), &[0]), Err(WriteError::PayloadType(vp8.0)));
    pair.driver.write_media(now, slot.key, &meta(pt, 5002, 125_376), &[6]).expect("audio write again");
    assert!(pair.run_until(Duration::from_millis(200), |p| p
        .client_rtp
        .iter()
        .any(|r| *r.header.ssrc == slot.ssrc.0 && r.header.sequence_number == 5002)));
}

/// Loses the first copy of the 3rd of ten video packets on the way to the client, moving time
/// with `step`, and returns the order in which sequence numbers reached it (within 2 s).
fn video_with_a_loss(step: fn(&mut Pair, Duration)) -> (Vec<u16>, Rc<Cell<u32>>) {
    let (mut pair, _, _) = connected_av();
    let slot = pair.driver.negotiated().slots[1].clone();
    let pt = slot.pt_for(Codec::Vp8).expect("vp8 on the video slot");

    // SRTP leaves the RTP header in clear, so the PT is readable.
    let sent = Rc::new(Cell::new(0));
    let counter = sent.clone();
    pair.drop_to_client = Some(Box::new(move |data: &[u8]| {
        if data.len() > 12 && data[0] >> 6 == 2 && data[1] & 0x7f == pt.0 {
            counter.set(counter.get() + 1);
            return counter.get() == 3;
        }
        false
    }));
    for i in 0..10u64 {
        let now = pair.now;
        pair.driver.write_media(now, slot.key, &meta(pt, 1 + i, 3000 * i as u32), &[0x10, i as u8]).expect("write");
        step(&mut pair, Duration::from_millis(33));
    }
    let end = pair.now + Duration::from_secs(2);
    while pair.now < end
        && !pair.client_rtp.iter().any(|r| *r.header.ssrc == slot.ssrc.0 && r.header.sequence_number == 3)
    {
        step(&mut pair, Duration::from_millis(5));
    }
    (pair.client_rtp.iter().map(|r| r.header.sequence_number).collect(), sent)
}

/// Seq 3, lost once, reached the client after seq 4: as a resend.
fn assert_resent_late(order: &[u16]) {
    assert!(order.contains(&3), "seq 3 never arrived; got {order:?}");
    let pos = |seq| order.iter().position(|s| *s == seq);
    assert!(pos(3) > pos(4), "seq 3 should arrive late, as a resend: {order:?}");
}

#[test]
fn lost_video_is_resent_on_nack() {
    let (order, sent) = video_with_a_loss(Pair::step);
    assert!(sent.get() >= 10, "the drop filter saw {} packets", sent.get());
    assert_resent_late(&order);
}

/// str0m's pacer asks for a timeout the moment it has sent a packet; the driver folds that into its
/// next poll instead, so that a fan-out does not run a second timeout for every subscriber and
/// packet. The session must still be woken soon, and a resend that a NACK asks for must still go
/// out when the driver gets time only at its deadlines, as in the room.
#[test]
fn a_sent_packet_asks_for_no_timeout_at_once_and_resends_still_go_out() {
    let (mut pair, _, _) = connected_av();
    let slot = pair.driver.negotiated().slots[0].clone();
    let pt = slot.pt_for(Codec::Opus).expect("opus on the audio slot");
    pair.step(Duration::from_millis(5));
    let now = pair.now;
    pair.driver.write_media(now, slot.key, &meta(pt, 1, 0), &[0xfc, 1, 2]).expect("write");
    let mut sink = switchboard_driver::testing::Collector::default();
    let deadline = pair.driver.poll(now, &mut sink);
    assert_eq!(sink.transmits.len(), 1, "the packet goes out on the poll after the write");
    assert!(deadline > now, "the driver asks to be woken at once after a send");
    assert!(deadline <= now + Duration::from_millis(50), "woken {:?} after a send", deadline - now);

    let (order, _) = video_with_a_loss(Pair::step_to_deadline);
    assert_resent_late(&order);
}

#[test]
fn client_keyframe_request_surfaces_on_the_slot() {
    let (mut pair, _, mids) = connected_av();
    let slot = pair.driver.negotiated().slots[1].clone();
    let pt = slot.pt_for(Codec::Vp8).expect("vp8");
    // Some media first, so the client knows the stream it asks about.
    let now = pair.now;
    pair.driver.write_media(now, slot.key, &meta(pt, 1, 0), &[0x10, 0]).expect("write");
    pair.run_until(Duration::from_millis(200), |p| !p.client_rtp.is_empty());

    let mid = mids[1];
    pair.client
        .direct_api()
        .stream_rx_by_mid(mid, None)
        .expect("client video rx")
        .request_keyframe(KeyframeRequestKind::Pli);
    let ok = pair.run_until(Duration::from_secs(1), |p| {
        p.sink.events.iter().any(|e| matches!(e, DriverEvent::KeyframeRequest { .. }))
    });
    assert!(ok, "no keyframe request; events {:?}", pair.sink.events);
    let req = pair.sink.events.iter().find(|e| matches!(e, DriverEvent::KeyframeRequest { .. }));
    assert_eq!(req, Some(&DriverEvent::KeyframeRequest { slot: SlotKey(1), kind: KeyframeKind::Pli }));
}

#[test]
fn bridge_keyframe_request_reaches_the_publisher() {
    let (mut pair, _, mids) = connected_av();
    let pt = pair.client_pt(S0Codec::Vp8);
    let mid = mids[1];
    let now = pair.now;
    pair.client_write(mid, RtpWrite::new(pt, 1u64.into(), 0, now, vec![0x10, 0, 0]));
    pair.run_until(Duration::from_millis(200), |p| !p.sink.media.is_empty());
    assert_eq!(pair.sink.media[0].0, TrackKey(1));

    pair.driver.request_keyframe(TrackKey(1), KeyframeKind::Pli);
    pair.driver.request_keyframe(TrackKey(7), KeyframeKind::Fir);
    // Sent on the poll that follows the request, not at the session's next timeout.
    let asked = pair.now;
    while !pair.client_events.iter().any(|e| matches!(e, str0m::Event::KeyframeRequest(_))) {
        assert!(pair.now - asked < Duration::from_millis(5), "client saw no keyframe request");
        pair.step_to_deadline(Duration::from_millis(1));
    }
}

#[test]
fn recvonly_subscriber_gets_slots_and_keeps_them_on_reoffer() {
    let mut pair = Pair::new();
    let (answer, _) = pair.negotiate(|api| add(api, S0Kind::Audio, Direction::RecvOnly));
    let first = pair.driver.negotiated().clone();
    assert!(first.tracks.is_empty());
    assert_eq!(first.slots.len(), 1);
    assert!(sdp_ssrcs(&answer).contains(&first.slots[0].ssrc.0));
    let pt = first.slots[0].pt_for(Codec::Opus).expect("opus");
    let early = pair.driver.write_media(pair.now, SlotKey(0), &meta(pt, 1, 0), &[0]);
    assert!(matches!(early, Err(WriteError::Refused(_))), "{early:?}");
    pair.connect();

    let (answer, _) = pair.negotiate(|api| add(api, S0Kind::Video, Direction::RecvOnly));
    let second = pair.driver.negotiated().clone();
    assert!(second.tracks.is_empty());
    assert_eq!(second.slots.len(), 2);
    assert_eq!(second.slots[0].key, first.slots[0].key);
    assert_eq!(second.slots[0].ssrc, first.slots[0].ssrc);
    assert_eq!((second.slots[1].key, second.slots[1].kind), (SlotKey(1), MediaKind::Video));
    assert!(sdp_ssrcs(&answer).contains(&second.slots[1].ssrc.0));

    // The old slot still delivers on the live session.
    let slot = &second.slots[0];
    let pt = slot.pt_for(Codec::Opus).expect("opus");
    let (key, ssrc) = (slot.key, slot.ssrc);
    let now = pair.now;
    pair.driver.write_media(now, key, &meta(pt, 1, 0), &[9]).expect("write");
    assert!(pair.run_until(Duration::from_millis(200), |p| p.client_rtp.iter().any(|r| *r.header.ssrc == ssrc.0)));
}

#[test]
fn hold_keeps_the_slot_inactive() {
    let (mut pair, _, mids) = connected_av();
    let before = pair.driver.negotiated().slots[0].clone();
    let mid = mids[0];
    let mut api = pair.client.sdp_api();
    api.set_direction(mid, Direction::SendOnly);
    let (offer, pending) = api.apply().expect("direction change needs negotiation");
    let now = pair.now;
    let answer = pair.driver.negotiate(now, SdpInput::Offer(&offer.to_sdp_string())).unwrap().unwrap();
    pair.client.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap()).unwrap();

    let after = pair.driver.negotiated();
    let held = after.slots.iter().find(|s| s.key == before.key).expect("slot kept");
    assert!(!held.active);
    assert_eq!(held.ssrc, before.ssrc);
    assert!(after.tracks.iter().any(|t| t.key == TrackKey(0)), "client still sends audio");
}

#[test]
fn close_reports_once_and_tells_the_peer() {
    let (mut pair, _, _) = connected_av();
    let now = pair.now;
    pair.driver.close(now);
    pair.run_until(Duration::from_millis(500), |p| p.client_events.iter().any(|e| matches!(e, str0m::Event::Closed)));
    pair.step(Duration::from_secs(1));
    let ends: Vec<_> = pair.sink.events.iter().filter(|e| matches!(e, DriverEvent::Disconnected { .. })).collect();
    assert_eq!(ends, [&DriverEvent::Disconnected { reason: DisconnectReason::Closed }]);
    assert!(pair.client_events.iter().any(|e| matches!(e, str0m::Event::Closed)), "peer not told");
}

#[test]
fn keys_are_mline_indices_around_a_data_channel() {
    let mut pair = Pair::new();
    let mut offer_text = String::new();
    let mut api = pair.client.sdp_api();
    add(&mut api, S0Kind::Audio, Direction::SendRecv);
    api.add_channel("chat".into());
    add(&mut api, S0Kind::Video, Direction::RecvOnly);
    let (offer, pending) = api.apply().expect("offer");
    offer_text.push_str(&offer.to_sdp_string());
    let now = pair.now;
    let answer = pair.driver.negotiate(now, SdpInput::Offer(&offer_text)).expect("answer").expect("answer");
    pair.client.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap()).unwrap();

    let kinds: Vec<&str> = offer_text.lines().filter_map(|l| l.strip_prefix("m=")?.split(' ').next()).collect();
    let at = |kind: &str| kinds.iter().position(|k| *k == kind).expect("m-line") as u16;
    let n = pair.driver.negotiated();
    assert_eq!(n.tracks.iter().map(|t| t.key).collect::<Vec<_>>(), [TrackKey(at("audio"))]);
    let mut slot_keys: Vec<_> = n.slots.iter().map(|s| s.key).collect();
    slot_keys.sort();
    let mut want = vec![SlotKey(at("audio")), SlotKey(at("video"))];
    want.sort();
    assert_eq!(slot_keys, want);
    pair.connect();
}

#[test]
fn a_silent_peer_is_reported_once_as_ice_failure() {
    let (mut pair, _, _) = connected_av();
    pair.partitioned = true;
    let ok = pair.run_until(Duration::from_secs(60), |p| {
        p.sink.events.iter().any(|e| matches!(e, DriverEvent::Disconnected { .. }))
    });
    assert!(ok, "no disconnect after a minute of silence");
    pair.step(Duration::from_secs(5));
    let ends: Vec<_> = pair.sink.events.iter().filter(|e| matches!(e, DriverEvent::Disconnected { .. })).collect();
    assert_eq!(ends, [&DriverEvent::Disconnected { reason: DisconnectReason::IceFailed }]);
}

/// A client that offers telephone-event beside Opus, as a browser does, connected with audio only.
fn connected_with_telephone_event() -> (Pair, String, Mid) {
    let mut pair = Pair::with_client(|mut c| {
        c.codec_config().add_config(
            110.into(),
            None,
            S0Codec::Tele,
            Frequency::FORTY_EIGHT_KHZ,
            None,
            FormatParams::default(),
        );
        c
    });
    let (answer, mid) = pair.negotiate(|api| add(api, S0Kind::Audio, Direction::SendRecv));
    pair.connect();
    (pair, answer, mid)
}

/// One RFC 4733 packet written at the pair's simulated `now`: event `code`, `duration` ticks, end bit.
fn tele(now: Instant, pt: str0m::media::Pt, seq: u64, ts: u32, code: u8, end: bool, duration: u16) -> RtpWrite {
    let d = duration.to_be_bytes();
    let payload = vec![code, if end { 0x80 | 10 } else { 10 }, d[0], d[1]];
    RtpWrite::new(pt, seq.into(), ts, now, payload).marker(seq == 1)
}

fn digits(events: &[DriverEvent]) -> Vec<(char, u32)> {
    events
        .iter()
        .filter_map(|e| match e {
            DriverEvent::Dtmf { digit, duration_ms } => Some((*digit, *duration_ms)),
            _ => None,
        })
        .collect()
}

#[test]
fn telephone_events_from_the_client_become_digits_and_never_media() {
    let (mut pair, answer, mid) = connected_with_telephone_event();
    assert!(answer.contains("telephone-event/48000"), "the answer takes telephone-event: {answer}");
    let n = pair.driver.negotiated();
    assert_eq!(n.tracks[0].codec.codec, Codec::Opus, "telephone-event is not the track's codec");
    assert!(n.slots[0].codecs.iter().all(|c| c.codec != Codec::TelephoneEvent), "{:?}", n.slots[0].codecs);
    assert_eq!(n.slots[0].telephone_event, None, "digits are received, not sent");
    let pt = pair.client_pt(S0Codec::Tele);

    // Digit 5 for 120 ms at 48 kHz: three updates, then the end packet three times.
    for (i, (end, dur)) in
        [(false, 1920), (false, 3840), (false, 5760), (true, 5760), (true, 5760), (true, 5760)].into_iter().enumerate()
    {
        let now = pair.now;
        pair.client_write(mid, tele(now, pt, 1 + i as u64, 48_000, 5, end, dur));
        pair.step(Duration::from_millis(20));
    }
    pair.run_until(Duration::from_millis(200), |p| !digits(&p.sink.events).is_empty());
    // Long enough for a duplicate report (the receiver gives up on an event after 1 s).
    pair.run_until(Duration::from_millis(1500), |_| false);

    assert_eq!(digits(&pair.sink.events), [('5', 120)], "events: {:?}", pair.sink.events);
    assert!(pair.sink.media.is_empty(), "telephone-event handed on as media: {:?}", pair.sink.media);
}

#[test]
fn a_digit_whose_end_packets_are_lost_is_reported_after_a_second() {
    let (mut pair, _, mid) = connected_with_telephone_event();
    let pt = pair.client_pt(S0Codec::Tele);
    let now = pair.now;
    pair.client_write(mid, tele(now, pt, 1, 96_000, 11, false, 960));
    pair.client_write(mid, tele(now, pt, 2, 96_000, 11, false, 2880));
    pair.step(Duration::from_millis(20));
    pair.run_until(Duration::from_millis(800), |_| false);
    assert!(digits(&pair.sink.events).is_empty(), "reported before its timeout: {:?}", pair.sink.events);
    pair.run_until(Duration::from_millis(500), |p| !digits(&p.sink.events).is_empty());
    assert_eq!(digits(&pair.sink.events), [('#', 60)], "events: {:?}", pair.sink.events);
}

/// Puts static PCMU (0) in place of every format of the audio m-line.
fn audio_pcmu_only(offer: &str) -> String {
    let mut in_audio = false;
    let mut out = String::new();
    for line in offer.lines() {
        if line.starts_with("m=") {
            in_audio = line.starts_with("m=audio");
            if in_audio {
                let head: Vec<&str> = line.split(' ').take(3).collect();
                out.push_str(&format!("{} 0\r\n", head.join(" ")));
                continue;
            }
        }
        let pt_attr = ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"].iter().find_map(|p| line.strip_prefix(p));
        if in_audio && pt_attr.is_some() {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
        if in_audio && line.starts_with("a=mid:") {
            out.push_str("a=rtpmap:0 PCMU/8000\r\n");
        }
    }
    out
}

#[test]
fn a_reoffer_that_drops_a_negotiated_codec_is_refused_and_changes_nothing() {
    let (mut pair, _, mids) = connected_av();
    let before = pair.driver.negotiated().clone();
    let mut api = pair.client.sdp_api();
    api.set_direction(mids[1], Direction::SendOnly);
    let (offer, _) = api.apply().expect("direction change needs negotiation");
    let reoffer = audio_pcmu_only(&offer.to_sdp_string());
    assert!(reoffer.contains("m=audio 9 UDP/TLS/RTP/SAVPF 0\r\n"), "{reoffer}");

    let now = pair.now;
    let refused = pair.driver.negotiate(now, SdpInput::Offer(&reoffer));
    let opus = *pair.client_pt(S0Codec::Opus);
    match refused {
        Err(NegotiationError::BadSdp(why)) => {
            assert!(why.contains(&format!("drops payload type {opus} (opus)")), "{why}");
        }
        other => panic!("reoffer taken: {other:?}"),
    }
    assert_eq!(pair.driver.negotiated(), &before);

    // The session goes on with what it had: the bridge's Opus still reaches the client.
    let ssrc = before.slots[0].ssrc;
    pair.driver.write_media(now, SlotKey(0), &meta(Pt(opus), 1, 0), &[1]).expect("write");
    assert!(pair.run_until(Duration::from_millis(200), |p| p.client_rtp.iter().any(|r| *r.header.ssrc == ssrc.0)));
}
