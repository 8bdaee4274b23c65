//! Plain counters the core bumps on the packet path. No atomics, no labels: the runtime takes them
//! now and then and `metrics.rs` turns them into Prometheus records.
//!
//! Per-label counts live in small structs with one field per label value (`ByKind`, `ByRoute`,
//! `ByDrop`), indexed by the label's own enum. Bumping one is a field access, and a new variant of
//! the enum fails to compile here until it has a counter, where an array and an index function
//! would have counted it under a neighbour's slot.

use super::routing::Route;
use std::ops::{AddAssign, Index, IndexMut};
use switchboard_driver::{Codec, DropReason, MixerStats, ParticipantKind, ReceptionReport};

/// Defines a struct holding one `T` per value of a label enum, indexed by that enum.
macro_rules! by_label {
    ($(#[$doc:meta])* $name:ident, $label:ident { $($variant:ident => $field:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        pub struct $name<T> {
            $(pub $field: T,)+
        }

        impl<T> Index<$label> for $name<T> {
            type Output = T;
            fn index(&self, at: $label) -> &T {
                match at {
                    $($label::$variant => &self.$field,)+
                }
            }
        }

        impl<T> IndexMut<$label> for $name<T> {
            fn index_mut(&mut self, at: $label) -> &mut T {
                match at {
                    $($label::$variant => &mut self.$field,)+
                }
            }
        }

        impl<T> $name<T> {
            /// Every label value with its entry.
            pub fn iter(&self) -> impl Iterator<Item = ($label, &T)> {
                [$(($label::$variant, &self.$field)),+].into_iter()
            }
        }

        impl<T: AddAssign + Copy> AddAssign<&$name<T>> for $name<T> {
            fn add_assign(&mut self, o: &$name<T>) {
                $(self.$field += o.$field;)+
            }
        }
    };
}

by_label!(
    /// One entry per participant kind.
    ByKind,
    ParticipantKind { Webrtc => webrtc, Rtp => rtp, Srtp => srtp }
);

by_label!(
    /// One entry per subscription route.
    ByRoute,
    Route { Forward => forward, Transcode => transcode, Mix => mix, Composite => composite }
);

by_label!(
    /// One entry per reason a driver or the core drops a packet.
    ByDrop,
    DropReason {
        Malformed => malformed,
        UnknownSource => unknown_source,
        SrtpAuth => srtp_auth,
        Replay => replay,
        UnknownPayloadType => unknown_payload_type,
        NoRoute => no_route,
        Send => send,
    }
);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub packets: u64,
    pub bytes: u64,
}

impl Flow {
    pub fn add(&mut self, bytes: usize) {
        self.packets += 1;
        self.bytes += bytes as u64;
    }

    /// Adds what the kernel forwarded, counted there (`core::room::kernel`).
    pub fn add_many(&mut self, packets: u64, bytes: u64) {
        self.packets += packets;
        self.bytes += bytes;
    }
}

/// Receiver reports a room keeps between two harvests. Each slot reports about once a second and
/// the harvest runs every 500 ms, so this holds every report of a room of up to about 2,000
/// slots; a bigger room's histograms get a sample of its reports (the first ones each harvest).
pub const MAX_RECEPTION_REPORTS: usize = 1024;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct RoomStats {
    pub received: ByKind<Flow>,
    pub sent: ByKind<Flow>,
    pub dropped: ByDrop<u64>,
    pub route_switches: u64,
    pub keyframe_requests: u64,
    pub dtmf_events: u64,
    pub mixer: MixerStats,
    /// Transcode outputs started, by (from, to) codec.
    pub transcodes: Vec<(Codec, Codec)>,
    /// Receivers' reports on what the bridge sends them, by the receiver's kind: the quality
    /// histograms' samples. At most [`MAX_RECEPTION_REPORTS`].
    pub reception: Vec<(ParticipantKind, ReceptionReport)>,
}

impl RoomStats {
    pub fn drop(&mut self, reason: DropReason) {
        self.dropped[reason] += 1;
    }

    pub fn reception(&mut self, kind: ParticipantKind, report: ReceptionReport) {
        if self.reception.len() < MAX_RECEPTION_REPORTS {
            self.reception.push((kind, report));
        }
    }
}

/// Gauges a room reports about itself.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RoomGauges {
    pub participants: ByKind<u64>,
    pub tracks: u64,
    pub subscriptions: ByRoute<u64>,
    pub mixers: u64,
    pub mixes: u64,
    pub encoders: u64,
    pub decoders: u64,
    /// The largest jitter-buffer target of the room's mixer inputs, in ms (a maximum, not a sum).
    pub jitter_target_ms: u64,
    /// Mixer encoders adding in-band FEC for receivers that report loss.
    pub fec_encoders: u64,
    /// Video encoders of composites and video transcodes.
    pub video_encoders: u64,
}

impl RoomGauges {
    /// Folds another room's gauges into these, for the totals over all rooms.
    pub fn add(&mut self, o: &RoomGauges) {
        self.participants += &o.participants;
        self.tracks += o.tracks;
        self.mixers += o.mixers;
        self.mixes += o.mixes;
        self.encoders += o.encoders;
        self.decoders += o.decoders;
        self.jitter_target_ms = self.jitter_target_ms.max(o.jitter_target_ms);
        self.fec_encoders += o.fec_encoders;
        self.video_encoders += o.video_encoders;
        self.subscriptions += &o.subscriptions;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_label_value_has_its_own_entry() {
        let mut s = RoomStats::default();
        for (n, reason) in DropReason::ALL.into_iter().enumerate() {
            for _ in 0..=n {
                s.drop(reason);
            }
        }
        for (n, reason) in DropReason::ALL.into_iter().enumerate() {
            assert_eq!(s.dropped[reason], n as u64 + 1, "{reason:?}");
        }
        assert_eq!(s.dropped.iter().count(), DropReason::ALL.len());

        let mut g = RoomGauges::default();
        for (n, kind) in ParticipantKind::ALL.into_iter().enumerate() {
            g.participants[kind] = 10 + n as u64;
        }
        for (n, route) in Route::ALL.into_iter().enumerate() {
            g.subscriptions[route] = 20 + n as u64;
        }
        let got: Vec<_> = g.participants.iter().map(|(k, n)| (k, *n)).collect();
        assert_eq!(got, vec![(ParticipantKind::Webrtc, 10), (ParticipantKind::Rtp, 11), (ParticipantKind::Srtp, 12)]);
        let got: Vec<_> = g.subscriptions.iter().map(|(r, n)| (r, *n)).collect();
        assert_eq!(got, Route::ALL.into_iter().zip(20..).collect::<Vec<_>>());
    }

    #[test]
    fn reception_reports_are_kept_up_to_the_bound() {
        let mut s = RoomStats::default();
        let r = ReceptionReport { loss: Some(0.1), jitter: None, rtt: Some(0.05) };
        for _ in 0..MAX_RECEPTION_REPORTS + 10 {
            s.reception(ParticipantKind::Srtp, r);
        }
        assert_eq!(s.reception.len(), MAX_RECEPTION_REPORTS);
        assert_eq!(s.reception[0], (ParticipantKind::Srtp, r));
    }

    #[test]
    fn gauges_sum_over_rooms_but_the_jitter_target_is_a_maximum() {
        let mut a = RoomGauges { jitter_target_ms: 60, tracks: 2, ..RoomGauges::default() };
        a.participants[ParticipantKind::Rtp] = 1;
        a.subscriptions[Route::Mix] = 3;
        let mut b = RoomGauges { jitter_target_ms: 40, tracks: 5, ..RoomGauges::default() };
        b.participants[ParticipantKind::Rtp] = 2;
        b.subscriptions[Route::Mix] = 4;
        b.subscriptions[Route::Forward] = 1;
        a.add(&b);
        assert_eq!(a.jitter_target_ms, 60);
        assert_eq!(a.tracks, 7);
        assert_eq!(a.participants[ParticipantKind::Rtp], 3);
        assert_eq!(a.subscriptions[Route::Mix], 7);
        assert_eq!(a.subscriptions[Route::Forward], 1);
    }
}
