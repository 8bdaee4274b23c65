//! The core's side of in-kernel forwarding, through a simulated clock: which directions of a room
//! a kernel rule may carry (`Room::kernel_paths`), and user space taking a stream back from the
//! kernel (`Room::kernel_sync`) with no gap and no restart.

mod sim;

use sim::*;
use std::time::{Duration, Instant};
use switchboard::core::KernelPath;

/// Joins fake plain-RTP participant `n` (PCMU both ways) that offers itself to the kernel.
fn join_kernel_leg(r: &mut Room, now: Instant, net: &mut SimNet, n: u16) -> ParticipantId {
    let mut driver = FakeDriver::new(n, &[Codec::Pcmu], &[Codec::Pcmu]);
    driver.kernel = true;
    let joining = joining(n, driver, AudioPreference::Auto);
    let id = joining.id;
    r.join(now, joining, Some("v=0"), net).unwrap();
    id
}

fn paths(r: &Room) -> Vec<KernelPath> {
    let mut out = Vec::new();
    r.kernel_paths(&mut out);
    out
}

/// Participant `n` sends packet `seq` (its ts 160 a packet) at `t0 + seq * 20 ms`.
fn send(r: &mut Room, net: &mut SimNet, t0: Instant, id: ParticipantId, n: u16, seq: u64) -> Instant {
    let at = t0 + Duration::from_millis(20 * seq);
    r.handle_receive(at, id, src(n), dst(n), &encode(0, seq, 160 * seq as u32, &[n as u8; 160]), net);
    at
}

#[test]
fn a_two_party_call_is_offered_to_the_kernel_once_both_sides_forwarded_a_packet() {
    let t0 = Instant::now();
    let mut net = SimNet::default();
    let mut r = room(t0);
    let a = join_kernel_leg(&mut r, t0, &mut net, 1);
    let b = join_kernel_leg(&mut r, t0, &mut net, 2);
    assert!(paths(&r).is_empty(), "nothing forwarded yet: no numbering for the kernel to continue");
    send(&mut r, &mut net, t0, a, 1, 65_530);
    let p = paths(&r);
    assert_eq!(p.len(), 1, "only alice's direction has a mapping: {p:?}");
    assert_eq!((p[0].from, p[0].to, p[0].last_in_seq, p[0].in_ssrc), (a, b, 65_530, Ssrc(1)));
    send(&mut r, &mut net, t0, b, 2, 7);
    let p = paths(&r);
    assert_eq!(p.len(), 2, "{p:?}");
    let ab = p.iter().find(|x| x.from == a).unwrap();
    // Alice's packet as it arrives, and as it leaves toward bob's peer from bob's leg.
    let (fa, fb) = (FakeDriver::new(1, &[], &[]), FakeDriver::new(2, &[], &[]));
    assert_eq!((ab.peer, ab.local, ab.new_src, ab.new_dst), (fa.remote, fa.local, fb.local, fb.remote));
    assert_eq!((ab.out_ssrc, ab.out_pt, ab.in_pt), (Ssrc(1002), Pt(102), Pt(101)));
    // The first source passes through: the kernel adds nothing.
    assert_eq!((ab.seq_offset, ab.ts_offset), (0, 0));
}

#[test]
fn a_third_participant_or_a_leg_that_cannot_takes_the_call_back_to_user_space() {
    let t0 = Instant::now();
    let mut net = SimNet::default();
    let mut r = room(t0);
    let a = join_kernel_leg(&mut r, t0, &mut net, 1);
    let b = join_kernel_leg(&mut r, t0, &mut net, 2);
    send(&mut r, &mut net, t0, a, 1, 100);
    send(&mut r, &mut net, t0, b, 2, 100);
    assert_eq!(paths(&r).len(), 2);
    let c = join_kernel_leg(&mut r, t0, &mut net, 3);
    assert!(paths(&r).is_empty(), "three parties: no kernel rule");
    r.leave(t0, c, LeaveReason::Requested, &mut net);
    send(&mut r, &mut net, t0, a, 1, 101);
    send(&mut r, &mut net, t0, b, 2, 101);
    assert_eq!(paths(&r).len(), 2, "two parties again");
    // A leg that does not offer itself (SRTP, WebRTC) keeps its room in user space.
    let mut r2 = room(t0);
    let x = join_kernel_leg(&mut r2, t0, &mut net, 4);
    let y = join(&mut r2, t0, &mut net, 5, &[Codec::Pcmu], &[Codec::Pcmu], AudioPreference::Auto);
    send(&mut r2, &mut net, t0, x, 4, 1);
    send(&mut r2, &mut net, t0, y, 5, 1);
    assert!(paths(&r2).is_empty());
}

/// 5,000 packets (100 s) in the kernel, then user space again: bob's stream goes on at the next
/// number, though the jump from the last packet user space saw is past the restart limit.
#[test]
fn user_space_continues_the_stream_after_what_the_kernel_forwarded() {
    let t0 = Instant::now();
    let mut net = SimNet::default();
    let mut r = room(t0);
    let a = join_kernel_leg(&mut r, t0, &mut net, 1);
    let b = join_kernel_leg(&mut r, t0, &mut net, 2);
    for seq in 65_500..65_510 {
        send(&mut r, &mut net, t0, a, 1, seq);
    }
    send(&mut r, &mut net, t0, b, 2, 1);
    let ab = *paths(&r).iter().find(|p| p.from == a).unwrap();
    let bob = FakeDriver::new(2, &[], &[]).remote;
    let before = net.received[&bob].clone();
    let last = before.last().unwrap().clone();

    let newest = 65_509 + 5_000u64;
    let at = t0 + Duration::from_millis(20 * newest);
    let counts = KernelCounts {
        packets: 5_000,
        bytes: 5_000 * 172,
        ssrc: Ssrc(1),
        seq: newest as u16,
        ts: 160 * newest as u32,
        at,
    };
    r.kernel_sync(&ab, &counts);
    send(&mut r, &mut net, t0, a, 1, newest + 1);
    let next = net.received[&bob].last().unwrap().clone();
    assert_eq!(next.0, last.0 + 5_001, "no gap, no restart: {last:?} then {next:?}");
    assert_eq!(next.1, last.1.wrapping_add(5_001 * 160));
    assert_eq!(
        next.0 as u16,
        (newest as u16).wrapping_add(ab.seq_offset).wrapping_add(1),
        "the kernel's numbering, +1"
    );
    // The room's counters and alice's liveness include the kernel's packets.
    let stats = r.take_stats();
    assert!(stats.received.rtp.packets >= 5_000 && stats.sent.rtp.packets >= 5_000, "{stats:?}");
}
