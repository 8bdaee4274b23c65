//! Simulation tests of a room: joining, forwarding, timeouts, leaving and failures, through a
//! simulated clock and a lossy fake network.

mod sim;

use sim::*;
use std::time::{Duration, Instant};
use switchboard::core::RoomError;

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
