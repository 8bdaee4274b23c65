use super::*;
use crate::sdp::parse_remote_description;
use switchboard_driver::{Codec, NegotiationError};

fn crypto_of(sdp: &str) -> Vec<String> {
    sdp.lines().filter_map(|l| l.strip_prefix("a=crypto:")).map(str::to_owned).collect()
}

#[test]
fn answers_a_gateway_offer_with_its_pts_and_ptime() {
    let now = Instant::now();
    let (d, answer) = answered(now, &gateway_offer());
    assert!(answer.starts_with("v=0\r\no=- "));
    assert!(answer.contains("c=IN IP4 203.0.113.1\r\n"));
    assert!(answer.contains("m=audio 20000 RTP/AVP 0 101\r\n"), "{answer}");
    assert!(answer.contains("a=rtpmap:0 PCMU/8000\r\n"));
    assert!(answer.contains("a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"));
    assert!(answer.contains("a=ptime:20\r\n"));
    assert!(answer.contains("a=sendrecv\r\n"));
    assert!(answer.contains("a=rtcp:20001\r\n"));
    assert!(answer.contains(&format!("a=ssrc:{} cname:", d.ssrc().0)));
    assert_eq!(d.kind(), ParticipantKind::Rtp);
    let n = d.negotiated();
    assert_eq!(n.tracks.len(), 1);
    assert_eq!(n.tracks[0].codec.codec, Codec::Pcmu);
    let slot = &n.slots[0];
    assert_eq!(slot.pt_for(Codec::Pcmu), Some(Pt(0)));
    assert_eq!(slot.telephone_event, Some(Pt(101)));
    assert_eq!((slot.active, slot.ptime_ms, slot.ssrc), (true, Some(20), d.ssrc()));
    parse_remote_description(&answer).expect("the answer is valid SDP");
}

#[test]
fn keeps_a_dynamic_opus_pt_and_matching_telephone_event() {
    let o = offer(
        "RTP/AVP 107 0 110 101",
        "a=rtpmap:107 opus/48000/2\r\na=fmtp:107 useinbandfec=1\r\na=rtpmap:110 telephone-event/48000\r\n\
         a=rtpmap:101 telephone-event/8000\r\n",
    );
    let (d, answer) = answered(Instant::now(), &o);
    assert!(answer.contains("m=audio 20000 RTP/AVP 107 110\r\n"), "{answer}");
    assert!(answer.contains("a=rtpmap:107 opus/48000/2\r\na=fmtp:107 useinbandfec=1\r\n"));
    assert!(!answer.contains("a=ptime"));
    let slot = &d.negotiated().slots[0];
    assert_eq!(slot.codecs[0].clock_rate, 48000);
    assert_eq!((slot.telephone_event, slot.ptime_ms), (Some(Pt(110)), None));
}

#[test]
fn honours_rtcp_mux() {
    let o = offer("RTP/AVP 8", "a=rtcp-mux\r\n");
    let mut clock = Clock::new();
    let (mut d, answer) = answered(clock.0, &o);
    assert!(answer.contains("a=rtcp-mux\r\n") && !answer.contains("a=rtcp:"), "{answer}");
    let now = clock.advance(2500);
    d.handle_timeout(now);
    let sink = drain(&mut d, now);
    assert_eq!(sink.transmits.len(), 1);
    let (from, to, data) = &sink.transmits[0];
    assert_eq!((*from, *to), (addr(LOCAL_RTP), addr(PEER_RTP)));
    assert_eq!(data[1], 201, "an RR");
}

#[test]
fn maps_directions_and_hold() {
    let cases = [
        ("sendonly", "recvonly", true, false),
        ("recvonly", "sendonly", false, true),
        ("inactive", "inactive", false, false),
        ("sendrecv", "sendrecv", true, true),
    ];
    for (ours, theirs, track, active) in cases {
        let (d, answer) = answered(Instant::now(), &offer("RTP/AVP 0", &format!("a={ours}\r\n")));
        assert!(answer.contains(&format!("a={theirs}\r\n")), "{ours}: {answer}");
        assert_eq!(d.negotiated().tracks.len(), usize::from(track), "{ours}");
        assert_eq!(d.negotiated().slots[0].active, active, "{ours}");
    }
    let (d, _) = answered(Instant::now(), &offer("RTP/AVP 0", "").replace("c=IN IP4 192.0.2.10", "c=IN IP4 0.0.0.0"));
    assert!(!d.negotiated().slots[0].active, "c=0.0.0.0 is hold");
}

#[test]
fn answers_each_srtp_suite_with_a_fresh_key() {
    for suite in crate::SrtpSuite::ALL {
        let key = crate::sdes::KeyMaterial::random(suite).unwrap();
        let line = key.attribute_value(7);
        let o = offer(
            "RTP/SAVP 0 101",
            &format!(
                "a=crypto:3 AES_256_CM_HMAC_SHA1_80 inline:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n\
                 a=crypto:{line}\r\na=rtpmap:101 telephone-event/8000\r\n"
            ),
        );
        let (d, answer) = answered(Instant::now(), &o);
        assert_eq!(d.kind(), ParticipantKind::Srtp);
        assert!(answer.contains("m=audio 20000 RTP/SAVP 0 101\r\n"), "{answer}");
        let lines = crypto_of(&answer);
        assert_eq!(lines.len(), 1);
        let (tag_suite, key_param) = lines[0].rsplit_once(' ').unwrap();
        assert_eq!(tag_suite, format!("7 {}", suite.name()));
        let theirs = line.rsplit_once(' ').unwrap().1;
        assert_ne!(key_param, theirs, "the bridge uses its own key");
        assert_eq!(key_param.len(), theirs.len());
    }
}

#[test]
fn unsupported_crypto_only_is_no_common_crypto() {
    let o = offer(
        "RTP/SAVP 0",
        "a=crypto:1 AES_256_CM_HMAC_SHA1_80 inline:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n\
         a=crypto:2 F8_128_HMAC_SHA1_80 inline:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n",
    );
    let err = leg(Instant::now()).negotiate(Instant::now(), SdpInput::Offer(&o)).unwrap_err();
    assert_eq!(err, NegotiationError::NoCommonCrypto("AES_256_CM_HMAC_SHA1_80, F8_128_HMAC_SHA1_80".into()));
    let no_crypto = leg(Instant::now()).negotiate(Instant::now(), SdpInput::Offer(&offer("RTP/SAVP 0", "")));
    assert!(matches!(no_crypto, Err(NegotiationError::NoCommonCrypto(_))));
}

#[test]
fn no_supported_codec_names_what_was_offered() {
    let o = offer("RTP/AVP 18 97 101", "a=rtpmap:97 iLBC/8000\r\na=rtpmap:101 telephone-event/8000\r\n");
    let err = leg(Instant::now()).negotiate(Instant::now(), SdpInput::Offer(&o)).unwrap_err();
    let NegotiationError::NoCommonCodec { offered, supported } = err else { panic!("{err:?}") };
    assert_eq!(offered, "G729/8000 (18), iLBC/8000 (97), telephone-event/8000 (101)");
    assert_eq!(supported, "PCMU, PCMA, G722, opus");
}

#[test]
fn kind_mismatches_are_refused() {
    let now = Instant::now();
    let fp = vec!["AB"; 32].join(":");
    let attrs = format!("a=rtpmap:111 opus/48000/2\r\na=fingerprint:sha-256 {fp}\r\n");
    for proto in ["UDP/TLS/RTP/SAVPF 111", "RTP/SAVPF 111"] {
        let err = leg(now).negotiate(now, SdpInput::Offer(&offer(proto, &attrs))).unwrap_err();
        assert!(matches!(err, NegotiationError::KindMismatch(_)), "{proto}: {err:?}");
    }

    let mut srtp_leg = RtpDriver::new(config(Some(ParticipantKind::Srtp), true), now);
    let err = srtp_leg.negotiate(now, SdpInput::Offer(&gateway_offer())).unwrap_err();
    let NegotiationError::KindMismatch(msg) = err else { panic!("{err:?}") };
    assert!(msg.contains("srtp") && msg.contains("RTP/AVP"), "{msg}");
}

#[test]
fn garbage_is_bad_sdp() {
    let now = Instant::now();
    for text in ["", "not sdp at all", "v=0\r\no=x\r\n", &gateway_offer().replace("m=audio 30000", "m=audio port")] {
        let err = leg(now).negotiate(now, SdpInput::Offer(text)).unwrap_err();
        assert!(matches!(err, NegotiationError::BadSdp(_)), "{text:?}: {err:?}");
    }
    let err = leg(now).negotiate(now, SdpInput::Answer(&gateway_offer())).unwrap_err();
    assert!(matches!(err, NegotiationError::UnexpectedState(_)));
}

#[test]
fn other_m_lines_are_refused_with_port_zero() {
    let o = format!(
        "{}m=video 30002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\nm=image 30004 udptl t38\r\nm=audio 30006 RTP/AVP 8\r\n",
        gateway_offer()
    );
    let (_, answer) = answered(Instant::now(), &o);
    let mlines: Vec<&str> = answer.lines().filter(|l| l.starts_with("m=")).collect();
    assert_eq!(
        mlines,
        ["m=audio 20000 RTP/AVP 0 101", "m=video 0 RTP/AVP 96", "m=image 0 udptl t38", "m=audio 0 RTP/AVP 8"]
    );
}

#[test]
fn late_offer_then_answer() {
    let mut clock = Clock::new();
    let mut d = RtpDriver::new(config(Some(ParticipantKind::Srtp), true), clock.0);
    let my_offer = d.create_offer(clock.0).unwrap();
    assert!(my_offer.contains("m=audio 20000 RTP/SAVP 0 8 9 111 101\r\n"), "{my_offer}");
    assert!(
        my_offer.contains("a=rtpmap:111 opus/48000/2\r\n")
            && my_offer.contains("a=rtpmap:101 telephone-event/8000\r\n")
    );
    assert!(my_offer.contains("a=ptime:20\r\na=rtcp-mux\r\n") && my_offer.contains("a=sendrecv\r\n"));
    let offered = crypto_of(&my_offer);
    let names: Vec<&str> = offered.iter().map(|l| l.split(' ').nth(1).unwrap()).collect();
    assert_eq!(names, ["AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32", "AEAD_AES_128_GCM"]);

    // The peer picks PCMA and suite tag 2, with its own key.
    let peer_key = crate::sdes::KeyMaterial::random(crate::SrtpSuite::AesCm128HmacSha1_32).unwrap();
    let answer = offer(
        "RTP/SAVP 8 101",
        &format!("a=rtpmap:101 telephone-event/8000\r\na=crypto:{}\r\na=sendrecv\r\n", peer_key.attribute_value(2)),
    );
    assert_eq!(d.negotiate(clock.0, SdpInput::Answer(&answer)), Ok(None));
    let slot = &d.negotiated().slots[0];
    assert_eq!((slot.codecs[0].codec, slot.telephone_event), (Codec::Pcma, Some(Pt(101))));

    // Media goes out under the key the bridge offered with tag 2.
    let ours = crate::sdp::parse_remote_description(&my_offer).unwrap().sections[0].audio.clone().unwrap().crypto[1]
        .key
        .clone()
        .unwrap();
    let mut rx = crate::srtp::SrtpInbound::new(ours).unwrap();
    let now = clock.advance(20);
    d.write_media(now, switchboard_driver::SlotKey(0), &meta(8, 1, 160), &[0xd5; 160]).unwrap();
    let sink = drain(&mut d, now);
    let (_, to, packet) = &sink.transmits[0];
    assert_eq!(*to, addr(PEER_RTP));
    let mut plain = Vec::new();
    rx.unprotect_rtp(packet, &mut plain).unwrap();
    assert_eq!(&plain[12..], &[0xd5; 160]);
}

#[test]
fn re_offers_hold_move_change_codec_and_rekey() {
    let now = Instant::now();
    let key1 = crate::sdes::KeyMaterial::random(crate::SrtpSuite::AesCm128HmacSha1_80).unwrap();
    let first = offer("RTP/SAVP 0 8", &format!("a=crypto:{}\r\n", key1.attribute_value(1)));
    let (mut d, answer1) = answered(now, &first);
    let ssrc = d.ssrc();
    let version = |sdp: &str| sdp.lines().nth(1).unwrap().split(' ').nth(2).unwrap().to_owned();

    // The same offer again: same answer, same o= version.
    let again = d.negotiate(now, SdpInput::Offer(&first)).unwrap().unwrap();
    assert_eq!(again, answer1);

    // Hold, new address, PCMA only, new key.
    let key2 = crate::sdes::KeyMaterial::random(crate::SrtpSuite::AesCm128HmacSha1_80).unwrap();
    let held = offer("RTP/SAVP 8", &format!("a=crypto:1 {}\r\na=sendonly\r\n", &key2.attribute_value(1)[2..]))
        .replace("c=IN IP4 192.0.2.10", "c=IN IP4 192.0.2.99");
    let answer2 = d.negotiate(now, SdpInput::Offer(&held)).unwrap().unwrap();
    assert!(answer2.contains("a=recvonly\r\n") && answer2.contains("m=audio 20000 RTP/SAVP 8\r\n"));
    assert_ne!(version(&answer1), version(&answer2));
    // The bridge's key survives a re-key by the peer (same suite).
    assert_eq!(crypto_of(&answer1), crypto_of(&answer2));
    let slot = &d.negotiated().slots[0];
    assert_eq!((slot.active, slot.ssrc, slot.key), (false, ssrc, switchboard_driver::SlotKey(0)));
    assert_eq!(slot.codecs[0].codec, Codec::Pcma);
    assert_eq!(d.negotiated().tracks[0].key, TrackKey(0));

    // Resume.
    let resumed = held.replace("a=sendonly", "a=sendrecv");
    d.negotiate(now, SdpInput::Offer(&resumed)).unwrap();
    assert!(d.negotiated().slots[0].active);
    assert_eq!(d.ssrc(), ssrc);

    // A re-offer may not turn the leg into plain RTP.
    let err = d.negotiate(now, SdpInput::Offer(&gateway_offer())).unwrap_err();
    assert!(matches!(err, NegotiationError::KindMismatch(_)), "{err:?}");
}
