//! A client `Rtc` and a `WebrtcDriver` joined by an in-memory network and a simulated clock: no
//! sockets, no sleeping. Ten simulated seconds run in milliseconds.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpApi};
use str0m::format::Codec as S0Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt as S0Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpPacket, RtpWrite};
use str0m::{Candidate, Event, Input, Output as S0Output, Rtc, RtcConfig};
use switchboard_driver::testing::Collector;
use switchboard_driver::{Driver, DriverEvent, SdpInput};
use switchboard_webrtc::WebrtcDriver;

pub const CLIENT: &str = "1.1.1.1:1000";
pub const BRIDGE: &str = "2.2.2.2:2000";

pub fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test addresses are valid")
}

/// Says whether to lose a datagram on its way to the client.
pub type DropFilter = Box<dyn FnMut(&[u8]) -> bool>;

pub struct Pair {
    pub now: Instant,
    pub client: Rtc,
    pub driver: WebrtcDriver,
    pub sink: Collector,
    /// Everything the client's `Rtc` reported, apart from RTP.
    pub client_events: Vec<Event>,
    pub client_rtp: Vec<RtpPacket>,
    /// Datagrams from the client not yet delivered to the driver.
    to_driver: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    /// Datagrams from the driver that a test decides to lose, by predicate.
    pub drop_to_client: Option<DropFilter>,
    /// Cuts the network both ways.
    pub partitioned: bool,
    /// When the driver's last poll asked to be woken.
    pub deadline: Instant,
}

impl Pair {
    pub fn new() -> Pair {
        Pair::with_client(|c| c)
    }

    /// A pair whose client `Rtc` is configured further by `config` (codecs it offers, say).
    pub fn with_client(config: impl FnOnce(RtcConfig) -> RtcConfig) -> Pair {
        switchboard_webrtc::init();
        let now = Instant::now();
        let mut client = config(Rtc::builder().set_rtp_mode(true)).build(now);
        let cand = Candidate::host(addr(CLIENT), "udp").expect("valid candidate");
        client.add_local_candidate(cand);
        let driver = WebrtcDriver::new(now, &[addr(BRIDGE)]);
        Pair {
            now,
            client,
            driver,
            sink: Collector::default(),
            client_events: Vec::new(),
            client_rtp: Vec::new(),
            to_driver: Vec::new(),
            drop_to_client: None,
            partitioned: false,
            deadline: now,
        }
    }

    /// Makes the client's offer with `change`, has the driver answer it and the client accept the
    /// answer. Returns the answer SDP and what `change` returned.
    pub fn negotiate<T>(&mut self, change: impl FnOnce(&mut SdpApi) -> T) -> (String, T) {
        let mut api = self.client.sdp_api();
        let made = change(&mut api);
        let (offer, pending) = api.apply().expect("the change needs negotiation");
        let answer = self
            .driver
            .negotiate(self.now, SdpInput::Offer(&offer.to_sdp_string()))
            .expect("driver answers")
            .expect("an offer gets an answer");
        let parsed = SdpAnswer::from_sdp_string(&answer).expect("answer parses");
        self.client.sdp_api().accept_answer(pending, parsed).expect("client accepts the answer");
        (answer, made)
    }

    /// One round: both sides drain their output, datagrams cross, then time moves by `step`.
    pub fn step(&mut self, step: Duration) {
        loop {
            let moved = self.exchange();
            if !moved {
                break;
            }
        }
        self.now += step;
        self.client.handle_input(Input::Timeout(self.now)).expect("client timeout");
        self.driver.handle_timeout(self.now);
    }

    /// Drains both sides once and delivers what they sent. Returns whether anything crossed.
    fn exchange(&mut self) -> bool {
        let now = self.now;
        loop {
            match self.client.poll_output().expect("client polls") {
                S0Output::Timeout(_) => break,
                S0Output::Transmit(t) => {
                    self.to_driver.push((t.source, t.destination, t.contents.to_vec()));
                }
                S0Output::Event(Event::RtpPacket(p)) => self.client_rtp.push(p),
                S0Output::Event(e) => self.client_events.push(e),
            }
        }
        let before = self.sink.transmits.len();
        self.deadline = self.driver.poll(now, &mut self.sink);
        let to_client: Vec<_> = self.sink.transmits.drain(before..).collect();
        let to_driver = std::mem::take(&mut self.to_driver);
        let moved = !to_client.is_empty() || !to_driver.is_empty();
        if self.partitioned {
            return false;
        }

        for (src, dst, data) in to_driver {
            assert_eq!(dst, addr(BRIDGE));
            if self.driver.accepts(src, dst, &data) {
                self.driver.handle_receive(now, src, dst, &data);
            }
        }
        for (src, dst, data) in to_client {
            assert_eq!(src, addr(BRIDGE));
            assert_eq!(dst, addr(CLIENT));
            if self.drop_to_client.as_mut().is_some_and(|drop| drop(&data)) {
                continue;
            }
            let recv = Receive::new(Protocol::Udp, src, dst, &data).expect("driver sends valid datagrams");
            self.client.handle_input(Input::Receive(now, recv)).expect("client takes datagram");
        }
        moved
    }

    /// Like [`Pair::step`], but gives the driver its timeout only when the deadline from its
    /// last poll has come, as the room does.
    pub fn step_to_deadline(&mut self, step: Duration) {
        while self.exchange() {}
        self.now += step;
        self.client.handle_input(Input::Timeout(self.now)).expect("client timeout");
        if self.now >= self.deadline {
            self.driver.handle_timeout(self.now);
        }
    }

    /// Steps in 5 ms rounds until `done` holds, for at most `limit` of simulated time.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Pair) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if done(self) {
                return true;
            }
            self.step(Duration::from_millis(5));
        }
        done(self)
    }

    pub fn connect(&mut self) {
        let ok = self.run_until(Duration::from_secs(5), |p| {
            p.client.is_connected() && p.sink.events.contains(&DriverEvent::Connected)
        });
        assert!(ok, "ICE + DTLS did not connect; driver events: {:?}", self.sink.events);
    }

    /// Sends one RTP packet from the client on `mid`.
    pub fn client_write(&mut self, mid: Mid, write: RtpWrite) {
        let mut api = self.client.direct_api();
        api.stream_tx_by_mid(mid, None).expect("client sends on the mid").write_rtp(write);
    }

    /// The client's payload type for `codec`.
    pub fn client_pt(&self, codec: S0Codec) -> S0Pt {
        self.client.codec_config().find(|p| p.spec().codec == codec).expect("client has the codec").pt()
    }
}

pub fn add(api: &mut SdpApi, kind: MediaKind, dir: Direction) -> Mid {
    api.add_media(kind, dir, None, None, None)
}

/// Every `a=ssrc:<n>` value in an SDP.
pub fn sdp_ssrcs(sdp: &str) -> Vec<u32> {
    sdp.lines()
        .filter_map(|l| l.trim_end().strip_prefix("a=ssrc:"))
        .filter_map(|v| v.split(' ').next()?.parse().ok())
        .collect()
}
