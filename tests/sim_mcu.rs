//! Simulation tests of a room with its MCU: routes through a fake mixer and back, mix-minus,
//! loss reports and composites, through a simulated clock.

mod sim;

use sim::*;
use std::time::{Duration, Instant};

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
