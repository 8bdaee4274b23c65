//! The metrics against their documentation, and the typed recorders against the series they fill.

use super::*;
use std::collections::BTreeSet;
use switchboard_driver::DropReason;

/// A fresh registry in which every vector shows every series it can have: the typed ones each
/// label value, the HTTP ones one request.
fn every_series() -> Metrics {
    let m = Metrics::new();
    m.participants_left.init_all();
    m.transcodes.init_all();
    m.set_worker_gauges(0, WorkerGauges::default());
    m.worker_cpu.with(WorkerLabel(0)).inc_by(0.0);
    for method in HttpMethod::ALL {
        m.http.record(*method, "/healthz", StatusCode::OK, Duration::ZERO);
    }
    m
}

/// The metric names a scrape shows, from its `# TYPE` lines.
fn scraped(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Every metric name in code spans of docs/metrics.md, prose included, so a renamed metric
/// cannot live on in an explanation.
fn documented() -> BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md");
    let doc = std::fs::read_to_string(path).expect("docs/metrics.md is part of the repository");
    let mut names = BTreeSet::new();
    for span in doc.split('`').skip(1).step_by(2) {
        for prefix in ["switchboard_", "process_"] {
            for (at, _) in span.match_indices(prefix) {
                let starts_a_word =
                    span[..at].chars().next_back().is_none_or(|c| !c.is_ascii_alphanumeric() && c != '_');
                let name: String = span[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                // The bare prefix names no metric.
                if starts_a_word && name != prefix {
                    names.insert(name);
                }
            }
        }
    }
    names
}

#[test]
fn docs_name_every_metric_and_only_those() {
    let served = scraped(&every_series().render());
    let documented = documented();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let missing: Vec<_> = documented.difference(&served).collect();
    assert!(undocumented.is_empty(), "in /metrics but not in docs/metrics.md: {undocumented:?}");
    assert!(missing.is_empty(), "in docs/metrics.md but not in /metrics: {missing:?}");
}

#[test]
fn a_fresh_scrape_shows_build_info_and_process_metrics() {
    let text = Metrics::new().render();
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        text.lines().any(|l| l.starts_with("switchboard_build_info{")
            && l.contains(&format!("version=\"{version}\""))
            && l.ends_with(" 1")),
        "{text}"
    );
    for name in ["process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds"] {
        assert!(scraped(&text).contains(name), "{name} missing");
    }
}

#[test]
fn known_label_values_show_zeros_from_the_start() {
    let text = Metrics::new().render();
    for line in [
        "switchboard_participants{kind=\"srtp\"} 0",
        "switchboard_subscriptions{route=\"composite\"} 0",
        "switchboard_packets_total{direction=\"out\",kind=\"webrtc\"} 0",
        "switchboard_packets_dropped_total{reason=\"oversize\"} 0",
        "switchboard_packets_dropped_total{reason=\"srtp_auth\"} 0",
        "switchboard_mixer_jitter_packets_total{event=\"concealed\"} 0",
        "switchboard_mixer_stages{stage=\"video_encoders\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
    }
    assert!(!text.contains("switchboard_participants_left_total{"), "departures appear on first use");
}

#[test]
fn room_counts_land_in_their_typed_series() {
    let m = Metrics::new();
    let mut s = RoomStats::default();
    s.received[ParticipantKind::Rtp].add(100);
    s.received[ParticipantKind::Rtp].add(60);
    s.sent[ParticipantKind::Webrtc].add(1200);
    s.drop(DropReason::NoRoute);
    s.drop(DropReason::NoRoute);
    s.mixer.concealed = 3;
    s.transcodes.push((Codec::Opus, Codec::Pcmu));
    m.add_room_stats(&s);
    let mut g = RoomGauges { jitter_target_ms: 60, ..RoomGauges::default() };
    g.participants[ParticipantKind::Srtp] = 4;
    g.subscriptions[Route::Transcode] = 2;
    m.set_worker_gauges(0, WorkerGauges { rooms: 1, paced: 0, gauges: g, ..Default::default() });

    assert_eq!(m.packets.with((ParticipantKind::Rtp, Direction::In)).get(), 2);
    assert_eq!(m.bytes.with((ParticipantKind::Rtp, Direction::In)).get(), 160);
    assert_eq!(m.packets.with((ParticipantKind::Rtp, Direction::Out)).get(), 0);
    assert_eq!(m.bytes.with((ParticipantKind::Webrtc, Direction::Out)).get(), 1200);
    assert_eq!(m.dropped.with(DropReason::NoRoute).get(), 2);
    assert_eq!(m.dropped.with(DropLabel::Oversize).get(), 0);
    assert_eq!(m.mixer_packets.with(JitterEvent::Concealed).get(), 3);
    assert_eq!(m.transcodes.with((Codec::Opus, Codec::Pcmu)).get(), 1);
    assert_eq!(m.participants.with(ParticipantKind::Srtp).get(), 4);
    assert_eq!(m.participants.with(ParticipantKind::Webrtc).get(), 0);
    assert_eq!(m.subscriptions.with(Route::Transcode).get(), 2);
    assert_eq!(m.mixer_jitter_target.get(), 0.06);
    let text = m.render();
    assert!(text.contains("switchboard_transcodes_total{from=\"opus\",to=\"pcmu\"} 1"), "{text}");
    assert!(text.contains("switchboard_mixer_jitter_target_seconds 0.06"), "{text}");
}

#[test]
fn the_gauges_sum_what_every_worker_reported_last() {
    let m = Metrics::new();
    let mut a = RoomGauges { jitter_target_ms: 60, tracks: 2, ..RoomGauges::default() };
    a.participants[ParticipantKind::Rtp] = 3;
    let mut b = RoomGauges { jitter_target_ms: 40, tracks: 5, mixers: 1, ..RoomGauges::default() };
    b.participants[ParticipantKind::Rtp] = 2;
    b.participants[ParticipantKind::Webrtc] = 1;
    m.set_worker_gauges(0, WorkerGauges { rooms: 2, paced: 1, gauges: a, ..Default::default() });
    m.set_worker_gauges(1, WorkerGauges { rooms: 1, paced: 0, gauges: b, ..Default::default() });
    // Worker 0 reports again: its new figures replace its old ones, and worker 1's stay.
    a.tracks = 1;
    m.set_worker_gauges(0, WorkerGauges { rooms: 2, paced: 2, gauges: a, ..Default::default() });
    assert_eq!(m.rooms.get(), 3);
    assert_eq!(m.tracks.get(), 6);
    assert_eq!(m.mixers.get(), 1);
    assert_eq!(m.participants.with(ParticipantKind::Rtp).get(), 5);
    assert_eq!(m.participants.with(ParticipantKind::Webrtc).get(), 1);
    assert_eq!(m.mixer_paced_legs.get(), 2);
    assert_eq!(m.mixer_jitter_target.get(), 0.06, "the largest, not a sum");
    assert_eq!(m.worker_rooms.with(WorkerLabel(1)).get(), 1);
    assert_eq!(m.worker_participants.with(WorkerLabel(0)).get(), 3);
    assert_eq!(m.worker_participants.with(WorkerLabel(1)).get(), 3);
    let text = m.render();
    assert!(text.contains("switchboard_worker_rooms{worker=\"0\"} 2"), "{text}");
}

#[test]
fn a_made_up_http_method_cannot_grow_the_series() {
    let m = Metrics::new();
    for token in ["BREW", "PROPFIND", "X-ANYTHING"] {
        let method = axum::http::Method::from_bytes(token.as_bytes()).unwrap();
        m.http.record(HttpMethod::from(&method), "other", StatusCode::NOT_FOUND, Duration::ZERO);
    }
    m.http.record(HttpMethod::from(&axum::http::Method::GET), "/healthz", StatusCode::OK, Duration::ZERO);
    let text = m.render();
    let lines: Vec<_> = text.lines().filter(|l| l.starts_with("switchboard_http_requests_total{")).collect();
    assert_eq!(
        lines,
        [
            "switchboard_http_requests_total{method=\"GET\",path=\"/healthz\",status=\"200\"} 1",
            "switchboard_http_requests_total{method=\"other\",path=\"other\",status=\"404\"} 3",
        ],
        "{text}"
    );
}

#[test]
fn the_media_loop_age_is_read_at_the_scrape() {
    let m = Metrics::new();
    assert!(m.render().contains("switchboard_media_loop_age_seconds 0\n"), "no heartbeat yet: 0");
    let age = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(250));
    let a = age.clone();
    m.watch_media(move || Duration::from_millis(a.load(std::sync::atomic::Ordering::Relaxed)));
    assert!(m.render().contains("switchboard_media_loop_age_seconds 0.25\n"));
    age.store(3_000, std::sync::atomic::Ordering::Relaxed);
    assert!(m.render().contains("switchboard_media_loop_age_seconds 3\n"), "a stall shows without a harvest");
}

#[test]
fn receiver_reports_fill_the_quality_histograms_by_kind() {
    use switchboard_driver::ReceptionReport;
    let m = Metrics::new();
    let mut s = RoomStats::default();
    s.reception(ParticipantKind::Rtp, ReceptionReport { loss: Some(0.1), jitter: Some(0.003), rtt: Some(0.04) });
    s.reception(ParticipantKind::Rtp, ReceptionReport { loss: Some(0.0), jitter: Some(0.001), rtt: None });
    s.reception(ParticipantKind::Webrtc, ReceptionReport { loss: None, jitter: None, rtt: Some(f32::NAN) });
    m.add_room_stats(&s);
    let text = m.render();
    let count = |name: &str, kind: &str| sample(&text, &format!("{name}_count{{kind=\"{kind}\"}}")).unwrap_or(-1.0);
    assert_eq!(count("switchboard_receiver_loss_ratio", "rtp"), 2.0);
    assert_eq!(count("switchboard_receiver_jitter_seconds", "rtp"), 2.0);
    assert_eq!(count("switchboard_rtt_seconds", "rtp"), 1.0, "a report without a round trip adds none");
    assert_eq!(count("switchboard_rtt_seconds", "webrtc"), 0.0, "NaN is no sample");
    assert_eq!(count("switchboard_receiver_loss_ratio", "srtp"), 0.0, "every kind from the start");
    let le = sample(&text, "switchboard_receiver_loss_ratio_bucket{kind=\"rtp\",le=\"0.05\"}");
    assert_eq!(le, Some(1.0), "one report of no loss, one of 10 %");
}

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}
