//! The video composite through the mixer, with real GStreamer on both sides: two live
//! VP8 senders (a red and a blue picture) go in as the room would hand them over, and what comes
//! out is decoded and looked at. The compositor runs on GStreamer's clock, so this test runs in
//! real time (a few seconds).

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use std::time::{Duration, Instant};
use switchboard_driver::testing::Collector;
use switchboard_driver::*;
use switchboard_mixer::{spec, Mixer};
use switchboard_rtp::{write_packet, RtpHeader};

/// A live VP8 RTP sender of a solid `argb` picture.
struct Sender {
    pipeline: gst::Pipeline,
    sink: gst_app::AppSink,
}

impl Sender {
    fn new(argb: u32, width: u32, height: u32) -> Sender {
        let desc = format!(
            "videotestsrc is-live=true pattern=solid-color foreground-color={argb} ! \
             video/x-raw,width={width},height={height},framerate=15/1 ! vp8enc deadline=1 keyframe-max-dist=10 ! \
             rtpvp8pay pt=96 mtu=1200 ! appsink name=out sync=false"
        );
        let pipeline = gst::parse::launch(&desc).unwrap().downcast::<gst::Pipeline>().unwrap();
        let sink = pipeline.by_name("out").unwrap().downcast::<gst_app::AppSink>().unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        Sender { pipeline, sink }
    }

    /// The packets made since the last call, as (meta, payload).
    fn packets(&self) -> Vec<(RtpMeta, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(sample) = self.sink.try_pull_sample(gst::ClockTime::ZERO) {
            let map = sample.buffer().unwrap().map_readable().unwrap();
            let h = RtpHeader::parse(&map).unwrap();
            let meta = RtpMeta {
                pt: Pt(h.pt),
                seq: SeqNo(h.seq.into()),
                timestamp: h.timestamp,
                marker: h.marker,
                ssrc: Ssrc(1),
                audio_level: None,
            };
            out.push((meta, map[h.header_len..h.payload_end].to_vec()));
        }
        out
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// The input slots the mixer asked keyframes for, in order.
fn keyframe_requests(out: &Collector) -> Vec<SlotKey> {
    out.events
        .iter()
        .filter_map(|e| match e {
            DriverEvent::KeyframeRequest { slot, .. } => Some(*slot),
            _ => None,
        })
        .collect()
}

/// Decodes `packets` (RTP payloads with their metas, in `codec`) and returns the last picture as
/// RGB, with its width and height.
fn last_picture(codec: Codec, packets: &[(RtpMeta, Vec<u8>)]) -> (u32, u32, Vec<u8>) {
    let (name, decode) = match codec {
        Codec::Vp8 => ("VP8", "rtpvp8depay ! vp8dec"),
        Codec::H264 => ("H264", "rtph264depay ! avdec_h264"),
        other => panic!("no decoder for {other:?} here"),
    };
    let pt = packets.first().map_or(0, |(m, _)| m.pt.0);
    let desc = format!(
        "appsrc name=in format=time caps=\"application/x-rtp,media=video,clock-rate=90000,\
         encoding-name={name},payload={pt}\" ! {decode} ! videoconvert ! video/x-raw,format=RGB ! \
         appsink name=out sync=false"
    );
    let pipeline = gst::parse::launch(&desc).unwrap().downcast::<gst::Pipeline>().unwrap();
    let src = pipeline.by_name("in").unwrap().downcast::<gst_app::AppSrc>().unwrap();
    let sink = pipeline.by_name("out").unwrap().downcast::<gst_app::AppSink>().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    for (i, (meta, payload)) in packets.iter().enumerate() {
        let mut data = Vec::new();
        write_packet(&mut data, meta.marker, meta.pt.0, meta.seq.wire(), meta.timestamp, 7, payload);
        let mut buffer = gst::Buffer::from_mut_slice(data);
        buffer.get_mut().unwrap().set_pts(gst::ClockTime::from_mseconds(i as u64));
        src.push_buffer(buffer).unwrap();
    }
    src.end_of_stream().unwrap();
    let mut last = None;
    while let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(2)) {
        last = Some(sample);
    }
    pipeline.set_state(gst::State::Null).unwrap();
    let sample = last.expect("no picture decoded from the composite");
    let s = sample.caps().unwrap().structure(0).unwrap();
    let (w, h) = (s.get::<i32>("width").unwrap() as u32, s.get::<i32>("height").unwrap() as u32);
    let map = sample.buffer().unwrap().map_readable().unwrap();
    (w, h, map.to_vec())
}

/// Whether a VP8 RTP payload (RFC 7741) starts a keyframe.
fn is_vp8_keyframe(p: &[u8]) -> bool {
    let Some(&first) = p.first() else { return false };
    // Only the first packet of a frame (S set, partition 0) carries the frame header.
    if first & 0x10 == 0 || first & 0x07 != 0 {
        return false;
    }
    let mut i = 1;
    if first & 0x80 != 0 {
        let x = p.get(1).copied().unwrap_or(0);
        i += 1;
        if x & 0x80 != 0 {
            i += if p.get(i).is_some_and(|b| b & 0x80 != 0) { 2 } else { 1 };
        }
        i += usize::from(x & 0x40 != 0) + usize::from(x & 0x30 != 0);
    }
    p.get(i).is_some_and(|b| b & 0x01 == 0)
}

fn pixel(rgb: &[u8], width: u32, x: u32, y: u32) -> (u8, u8, u8) {
    // videoconvert pads RGB rows to 4 bytes.
    let stride = (width * 3).div_ceil(4) * 4;
    let i = (y * stride + x * 3) as usize;
    (rgb[i], rgb[i + 1], rgb[i + 2])
}

/// A mixer configured with `inputs` VP8 inputs (slots 1, 2, ..., publishers alike) and one
/// video output.
fn video_mixer(t0: Instant, inputs: u16, output: MixOutput, video: VideoSettings) -> Mixer {
    switchboard_mixer::gst_codec::init().unwrap();
    let mut mixer = Mixer::new(t0);
    let plan = MixPlan {
        inputs: (1..=inputs)
            .map(|i| MixInput { slot: SlotKey(i), codec: spec(Codec::Vp8, 96), publisher: ParticipantId(i.into()) })
            .collect(),
        outputs: vec![output],
        speakers: 3,
        jitter_buffer_ms: 40,
        jitter_buffer_max_ms: 200,
        video,
    };
    mixer.configure(t0, &plan);
    mixer
}

fn video_output(track: u16, codec: Codec, pt: u8, kind: MixOutputKind) -> MixOutput {
    MixOutput { track: TrackKey(track), codec: spec(codec, pt), ptime_ms: 20, kind }
}

/// Runs `mixer` in real time until `until`, as the room would: every 5 ms `feed` writes what
/// arrived, then a timeout and a poll into `out`.
fn run(
    mixer: &mut Mixer,
    out: &mut Collector,
    until: Instant,
    mut feed: impl FnMut(&mut Mixer, &mut Collector, Instant),
) {
    let mut now = Instant::now();
    while now < until {
        feed(mixer, out, now);
        mixer.handle_timeout(now);
        mixer.poll(now, out);
        std::thread::sleep(Duration::from_millis(5));
        now = Instant::now();
    }
}

/// Writes what `sender` made since the last call into `slot`.
fn forward(mixer: &mut Mixer, now: Instant, slot: u16, sender: &Sender) {
    for (meta, payload) in sender.packets() {
        mixer.write_media(now, SlotKey(slot), &meta, &payload).unwrap();
    }
}

#[test]
fn two_pictures_are_tiled_side_by_side() {
    let t0 = Instant::now();
    let video = VideoSettings { width: 640, height: 360, fps: 15, kbps: 600 };
    let output = video_output(10, Codec::Vp8, 100, MixOutputKind::Composite);
    // The room publishes the MCU's outputs as the plan states them (it no longer asks the mixer
    // for a `negotiated()`): the composite goes out as a video track.
    assert_eq!(output.codec.codec.kind(), MediaKind::Video);
    let mut mixer = video_mixer(t0, 2, output, video);

    let red = Sender::new(0xffff0000, 320, 240);
    let blue = Sender::new(0xff0000ff, 320, 240);
    let mut out = Collector::default();
    // Packets collected when a subscriber asked for a keyframe, and half a second later.
    let (mut asked_at, mut answered_by) = (None, None);
    run(&mut mixer, &mut out, t0 + Duration::from_secs(3), |mixer, out, now| {
        forward(mixer, now, 1, &red);
        forward(mixer, now, 2, &blue);
        if asked_at.is_none() && now > t0 + Duration::from_millis(1500) {
            // A subscriber that lost its picture: a keyframe follows at once, not at the next
            // periodic one (3 s apart).
            asked_at = Some(out.media.len());
            mixer.request_keyframe(TrackKey(10), KeyframeKind::Pli);
        }
        if answered_by.is_none() && now > t0 + Duration::from_millis(2000) {
            answered_by = Some(out.media.len());
        }
    });
    let stats = mixer.take_stats();
    assert_eq!(stats.video_encoders, 1, "{stats:?}");
    assert_eq!(stats.errors, 0, "{stats:?}");
    let mut asked_for: Vec<SlotKey> = keyframe_requests(&out);
    asked_for.sort();
    asked_for.dedup();
    assert_eq!(asked_for, [SlotKey(1), SlotKey(2)], "each new decoder asks its publisher for a keyframe");

    let packets: Vec<(RtpMeta, Vec<u8>)> =
        out.media.iter().filter(|(t, _, _)| *t == TrackKey(10)).map(|(_, m, p)| (*m, p.clone())).collect();
    // 15 frames a second for about 3 s, each at least one packet.
    assert!(packets.len() >= 25, "only {} composite packets", packets.len());
    for pair in packets.windows(2) {
        assert_eq!(pair[1].0.seq.0, pair[0].0.seq.0 + 1, "one continuous sequence");
        assert_eq!(pair[1].0.pt, Pt(100), "the subscriber's payload type");
    }
    let keyframes: Vec<usize> = (0..out.media.len()).filter(|i| is_vp8_keyframe(&out.media[*i].2)).collect();
    let (asked_at, answered_by) = (asked_at.unwrap(), answered_by.unwrap());
    assert!(
        keyframes.iter().any(|k| (asked_at..answered_by).contains(k)),
        "no keyframe within 0.5 s of the request (keyframes at packets {keyframes:?}, asked at {asked_at})"
    );
    let (w, h, rgb) = last_picture(Codec::Vp8, &packets);
    assert_eq!((w, h), (640, 360), "the composite's size");
    // 320×240 inputs in 320×360 tiles keep their aspect: centred, black above and below.
    let (left, right, top) = (pixel(&rgb, w, 160, 180), pixel(&rgb, w, 480, 180), pixel(&rgb, w, 160, 10));
    assert!(left.0 > 200 && left.1 < 60 && left.2 < 60, "left tile is the red input: {left:?}");
    assert!(right.2 > 200 && right.0 < 60 && right.1 < 60, "right tile is the blue input: {right:?}");
    assert!(top.0 < 40 && top.1 < 40 && top.2 < 40, "letterbox above the left tile is black: {top:?}");
}

#[test]
fn a_transcode_keeps_its_input_size_in_the_new_codec() {
    let t0 = Instant::now();
    let output = video_output(20, Codec::H264, 102, MixOutputKind::Transcode { input: SlotKey(1) });
    let mut mixer = video_mixer(t0, 1, output, VideoSettings::default());
    let red = Sender::new(0xffff0000, 320, 240);
    let mut out = Collector::default();
    run(&mut mixer, &mut out, t0 + Duration::from_secs(2), |mixer, _, now| forward(mixer, now, 1, &red));
    let packets: Vec<(RtpMeta, Vec<u8>)> = out.media.iter().map(|(_, m, p)| (*m, p.clone())).collect();
    assert!(packets.len() >= 10, "only {} H.264 packets", packets.len());
    assert!(packets.iter().all(|(m, _)| m.pt == Pt(102)), "the subscriber's payload type");
    let (w, h, rgb) = last_picture(Codec::H264, &packets);
    assert_eq!((w, h), (320, 240), "a transcode keeps the publisher's size");
    let centre = pixel(&rgb, w, 160, 120);
    assert!(centre.0 > 200 && centre.1 < 60 && centre.2 < 60, "the red input: {centre:?}");
}

/// One input sends `garbage_per_tick` random VP8 payloads every 5 ms (0: it sends nothing,
/// like a publisher whose video never starts); the other a red picture.
fn composite_beside_a_bad_input(garbage_per_tick: usize) {
    let t0 = Instant::now();
    let output = video_output(10, Codec::Vp8, 100, MixOutputKind::Composite);
    let mut mixer = video_mixer(t0, 2, output, VideoSettings::default());
    let red = Sender::new(0xffff0000, 320, 240);
    let mut out = Collector::default();
    let (mut seq, mut seed) = (0u64, 0x2545_F491u32);
    run(&mut mixer, &mut out, t0 + Duration::from_secs(3), |mixer, _, now| {
        forward(mixer, now, 1, &red);
        // Valid RTP headers, random VP8 payloads, a frame's worth every few packets.
        for _ in 0..garbage_per_tick {
            seq += 1;
            let garbage: Vec<u8> = (0..200 + seq as usize % 900)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    seed as u8
                })
                .collect();
            let meta = RtpMeta {
                pt: Pt(96),
                seq: SeqNo(seq),
                timestamp: (seq / 3 * 6000) as u32,
                marker: seq % 3 == 0,
                ssrc: Ssrc(2),
                audio_level: None,
            };
            mixer.write_media(now, SlotKey(2), &meta, &garbage).unwrap();
        }
    });
    let stats = mixer.take_stats();
    assert_eq!(stats.errors, 0, "no pipeline failed and none was rebuilt: {stats:?}");
    let packets: Vec<(RtpMeta, Vec<u8>)> = out.media.iter().map(|(_, m, p)| (*m, p.clone())).collect();
    // 15 pictures a second for 3 s, each one packet (a plain picture compresses well).
    assert!(packets.len() >= 25, "the composite kept its pace: only {} packets", packets.len());
    let (w, h, rgb) = last_picture(Codec::Vp8, &packets);
    assert_eq!((w, h), (640, 360));
    let left = pixel(&rgb, w, 160, 180);
    assert!(left.0 > 200 && left.1 < 60 && left.2 < 60, "the good input's tile is intact: {left:?}");
}

#[test]
fn a_publisher_whose_video_never_comes_does_not_stall_the_composite() {
    composite_beside_a_bad_input(0);
}

#[test]
fn a_garbage_input_costs_only_its_own_tile() {
    composite_beside_a_bad_input(3);
}
