//! The label values a metric may carry. Each label is an enum with a fixed spelling per value, so
//! a series cannot be misspelt at the place that counts, and no client can make a new one.

use crate::core::events::LeaveReason;
use crate::core::Route;
use axum::http::Method;
use switchboard_driver::{Codec, DropReason, ParticipantKind};

/// One closed set of label values.
pub trait Label: Copy + 'static {
    /// Every value, so a vector can show each of its series at zero before the first count.
    const ALL: &'static [Self];

    fn value(self) -> &'static str;
}

/// The values of every label of one vector, in the order of its label names.
pub trait Labels: Copy + 'static {
    const ARITY: usize;

    fn with_values<R>(self, f: impl FnOnce(&[&str]) -> R) -> R;

    /// Every combination of values.
    fn every() -> Vec<Self>;
}

impl<L: Label> Labels for L {
    const ARITY: usize = 1;

    fn with_values<R>(self, f: impl FnOnce(&[&str]) -> R) -> R {
        f(&[self.value()])
    }

    fn every() -> Vec<Self> {
        L::ALL.to_vec()
    }
}

impl<A: Label, B: Label> Labels for (A, B) {
    const ARITY: usize = 2;

    fn with_values<R>(self, f: impl FnOnce(&[&str]) -> R) -> R {
        f(&[self.0.value(), self.1.value()])
    }

    fn every() -> Vec<Self> {
        A::ALL.iter().flat_map(|a| B::ALL.iter().map(move |b| (*a, *b))).collect()
    }
}

impl Label for ParticipantKind {
    const ALL: &'static [Self] = &ParticipantKind::ALL;

    fn value(self) -> &'static str {
        self.as_str()
    }
}

impl Label for crate::auth::AuthFailure {
    const ALL: &'static [Self] = &crate::auth::AuthFailure::ALL;

    fn value(self) -> &'static str {
        self.as_str()
    }
}

impl Label for Route {
    const ALL: &'static [Self] = &Route::ALL;

    fn value(self) -> &'static str {
        self.as_str()
    }
}

/// Why a packet was dropped: a driver's or the core's reason, or one only the runtime sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropLabel {
    Reason(DropReason),
    /// A datagram larger than the worker's receive slot; the kernel truncated it.
    Oversize,
}

impl From<DropReason> for DropLabel {
    fn from(r: DropReason) -> Self {
        DropLabel::Reason(r)
    }
}

impl Label for DropLabel {
    const ALL: &'static [Self] = &[
        DropLabel::Reason(DropReason::Malformed),
        DropLabel::Reason(DropReason::UnknownSource),
        DropLabel::Reason(DropReason::SrtpAuth),
        DropLabel::Reason(DropReason::Replay),
        DropLabel::Reason(DropReason::UnknownPayloadType),
        DropLabel::Reason(DropReason::NoRoute),
        DropLabel::Reason(DropReason::Send),
        DropLabel::Oversize,
    ];

    fn value(self) -> &'static str {
        match self {
            DropLabel::Reason(r) => r.as_str(),
            DropLabel::Oversize => "oversize",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

impl Label for Direction {
    const ALL: &'static [Self] = &[Direction::In, Direction::Out];

    fn value(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

impl Label for LeaveReason {
    const ALL: &'static [Self] = &[
        LeaveReason::Requested,
        LeaveReason::Inactive,
        LeaveReason::TransportFailed,
        LeaveReason::Shutdown,
        LeaveReason::InternalError,
    ];

    /// The spelling of the `reason` field in the `participant_left` event.
    fn value(self) -> &'static str {
        match self {
            LeaveReason::Requested => "requested",
            LeaveReason::Inactive => "inactive",
            LeaveReason::TransportFailed => "transport_failed",
            LeaveReason::Shutdown => "shutdown",
            LeaveReason::InternalError => "internal_error",
        }
    }
}

/// What a mixer's jitter buffer did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JitterEvent {
    Late,
    Lost,
    Concealed,
}

impl Label for JitterEvent {
    const ALL: &'static [Self] = &[JitterEvent::Late, JitterEvent::Lost, JitterEvent::Concealed];

    fn value(self) -> &'static str {
        match self {
            JitterEvent::Late => "late",
            JitterEvent::Lost => "lost",
            JitterEvent::Concealed => "concealed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MixerStage {
    Mixes,
    Encoders,
    Decoders,
    VideoEncoders,
}

impl Label for MixerStage {
    const ALL: &'static [Self] =
        &[MixerStage::Mixes, MixerStage::Encoders, MixerStage::Decoders, MixerStage::VideoEncoders];

    fn value(self) -> &'static str {
        match self {
            MixerStage::Mixes => "mixes",
            MixerStage::Encoders => "encoders",
            MixerStage::Decoders => "decoders",
            MixerStage::VideoEncoders => "video_encoders",
        }
    }
}

/// What became of a webhook POST (`switchboard_webhook_deliveries_total{result}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookResult {
    /// The receiver answered 2xx: the event is delivered.
    Delivered,
    /// An attempt failed and the event will be tried again.
    Retried,
    /// The last allowed attempt failed: the event is given up.
    Failed,
}

impl Label for WebhookResult {
    const ALL: &'static [Self] = &[WebhookResult::Delivered, WebhookResult::Retried, WebhookResult::Failed];

    fn value(self) -> &'static str {
        match self {
            WebhookResult::Delivered => "delivered",
            WebhookResult::Retried => "retried",
            WebhookResult::Failed => "failed",
        }
    }
}

impl Label for Codec {
    const ALL: &'static [Self] = &[
        Codec::Opus,
        Codec::Pcmu,
        Codec::Pcma,
        Codec::G722,
        Codec::Vp8,
        Codec::Vp9,
        Codec::H264,
        Codec::Av1,
        Codec::TelephoneEvent,
    ];

    fn value(self) -> &'static str {
        self.as_str()
    }
}

/// An HTTP request method. A client may send any token as a method; all but the standard ones
/// share `other`, so they cannot grow the series without bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
    Connect,
    Trace,
    Other,
}

impl From<&Method> for HttpMethod {
    fn from(m: &Method) -> Self {
        match *m {
            Method::GET => HttpMethod::Get,
            Method::HEAD => HttpMethod::Head,
            Method::POST => HttpMethod::Post,
            Method::PUT => HttpMethod::Put,
            Method::PATCH => HttpMethod::Patch,
            Method::DELETE => HttpMethod::Delete,
            Method::OPTIONS => HttpMethod::Options,
            Method::CONNECT => HttpMethod::Connect,
            Method::TRACE => HttpMethod::Trace,
            _ => HttpMethod::Other,
        }
    }
}

impl Label for HttpMethod {
    const ALL: &'static [Self] = &[
        HttpMethod::Get,
        HttpMethod::Head,
        HttpMethod::Post,
        HttpMethod::Put,
        HttpMethod::Patch,
        HttpMethod::Delete,
        HttpMethod::Options,
        HttpMethod::Connect,
        HttpMethod::Trace,
        HttpMethod::Other,
    ];

    /// Known methods keep the spelling they had on the wire, as before they were typed.
    fn value(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Head => "HEAD",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Delete => "DELETE",
            HttpMethod::Options => "OPTIONS",
            HttpMethod::Connect => "CONNECT",
            HttpMethod::Trace => "TRACE",
            HttpMethod::Other => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn distinct<L: Label>() -> bool {
        let values: HashSet<_> = L::ALL.iter().map(|l| l.value()).collect();
        values.len() == L::ALL.len()
    }

    #[test]
    fn every_value_of_a_label_is_spelt_differently() {
        assert!(distinct::<ParticipantKind>());
        assert!(distinct::<Route>());
        assert!(distinct::<DropLabel>());
        assert!(distinct::<Direction>());
        assert!(distinct::<LeaveReason>());
        assert!(distinct::<JitterEvent>());
        assert!(distinct::<MixerStage>());
        assert!(distinct::<Codec>());
        assert!(distinct::<HttpMethod>());
        assert!(distinct::<WebhookResult>());
    }

    #[test]
    fn every_drop_reason_is_a_drop_label() {
        for r in DropReason::ALL {
            assert!(DropLabel::ALL.contains(&DropLabel::from(r)), "{r:?}");
        }
        assert_eq!(DropLabel::ALL.len(), DropReason::ALL.len() + 1);
    }

    #[test]
    fn a_leave_reason_is_spelt_as_in_its_event() {
        for r in LeaveReason::ALL {
            assert_eq!(serde_json::to_value(r).unwrap(), r.value(), "{r:?}");
        }
    }

    #[test]
    fn an_unknown_method_is_other() {
        assert_eq!(HttpMethod::from(&Method::PATCH).value(), "PATCH");
        let made_up = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(HttpMethod::from(&made_up), HttpMethod::Other);
        assert_eq!(HttpMethod::from(&made_up).value(), "other");
    }

    #[test]
    fn pairs_cover_every_combination() {
        let all = <(ParticipantKind, Direction)>::every();
        assert_eq!(all.len(), 6);
        assert!(all.contains(&(ParticipantKind::Srtp, Direction::Out)));
    }
}

/// A media worker, by index: a set as small as the node's `media.workers`, fixed at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerLabel(pub usize);

impl Labels for WorkerLabel {
    const ARITY: usize = 1;

    fn with_values<R>(self, f: impl FnOnce(&[&str]) -> R) -> R {
        f(&[&self.0.to_string()])
    }

    /// Not known in advance: a worker's series appear when it first reports, 500 ms after start.
    fn every() -> Vec<Self> {
        Vec::new()
    }
}
