//! Phone legs: the plain RTP / SDES-SRTP peer (`peers/rtp_leg.py`) sending tones, and reading
//! back what it heard from its saved audio and packet log.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::audio::{dominant_frequency, tone_level_db};
use crate::daemon::Daemon;
use crate::peers::{require_python, PeerHandle, PeerOutput};

/// Panics with a clear message unless the plain RTP / SDES-SRTP phone leg (peers/rtp_leg.py)
/// can run here: GStreamer's G.711/G.722/Opus coders and payloaders, srtpenc, rtpdtmfsrc, and
/// Python's `cryptography` (the leg checks received SRTP itself).
pub fn require_rtp_leg() {
    require_python(
        "the phone leg (peers/rtp_leg.py)",
        "import gi\ngi.require_version('Gst','1.0')\nfrom gi.repository import Gst\nimport numpy, cryptography\n",
        &[
            "audiotestsrc",
            "mulawenc",
            "mulawdec",
            "alawenc",
            "alawdec",
            "rtppcmupay",
            "rtppcmudepay",
            "rtppcmapay",
            "rtppcmadepay",
            "avenc_g722",
            "avdec_g722",
            "rtpg722pay",
            "rtpg722depay",
            "opusenc",
            "opusdec",
            "rtpopuspay",
            "rtpopusdepay",
            "srtpenc",
            "rtpdtmfsrc",
            "appsrc",
            "appsink",
        ],
        "python3-gi python3-numpy python3-cryptography gstreamer1.0-plugins-{base,good,bad,ugly} gstreamer1.0-libav",
    );
}

/// The phone leg's script.
pub const RTP_LEG: &str = "rtp_leg.py";

/// The leg's arguments to send a sine of `hz` at `amplitude` for `seconds`, log every packet
/// it receives and save what it hears to `file`: what [`leg_audio_between`] reads.
pub fn tone_leg_args(hz: f32, amplitude: f32, seconds: f64, file: &Path) -> Vec<String> {
    let path = file.to_str().expect("a UTF-8 path");
    let (hz, amplitude, seconds) = (hz.to_string(), amplitude.to_string(), seconds.to_string());
    ["--tone", &hz, "--amplitude", &amplitude, "--duration", &seconds, "--packet-log", "--save-audio", path]
        .map(String::from)
        .to_vec()
}

/// Starts a leg per `(name, hz)` in `room`, each sending its tone at `amplitude` for
/// `seconds` and saving what it hears to `<dir>/<name>.s16le` (see [`tone_leg_args`]).
/// Returns the files and the legs, in the order of `legs`.
pub fn spawn_tone_legs(
    d: &Daemon,
    room: &str,
    legs: &[(&str, f32)],
    amplitude: f32,
    seconds: f64,
    dir: &Path,
    timeout: Duration,
) -> (Vec<PathBuf>, Vec<Option<PeerHandle>>) {
    let files: Vec<PathBuf> = legs.iter().map(|(name, _)| dir.join(format!("{name}.s16le"))).collect();
    let handles = legs
        .iter()
        .zip(&files)
        .map(|((name, hz), file)| {
            Some(d.join_peer(RTP_LEG, room, name, &tone_leg_args(*hz, amplitude, seconds, file), timeout))
        })
        .collect();
    (files, handles)
}

/// When (unix seconds) the leg joined, from its timeline.
pub fn leg_joined_at(out: &PeerOutput) -> f64 {
    let t0 = out.json["t0_unix"].as_f64().unwrap_or_else(|| panic!("no t0_unix: {}", out.describe()));
    let joined = out.json["timeline"]
        .as_array()
        .and_then(|t| t.iter().find(|e| e[1].as_str().is_some_and(|s| s.starts_with("joined"))))
        .and_then(|e| e[0].as_f64())
        .unwrap_or_else(|| panic!("no join in the leg's timeline: {}", out.describe()));
    t0 + joined
}

/// The stretch (unix seconds) when every leg of `outs`, each sending for `duration_s`, was in
/// the room: from 2 s after the last join (the mix settles) to 0.5 s before the first stop.
#[track_caller]
pub fn legs_together(outs: &[PeerOutput], duration_s: f64) -> (f64, f64) {
    let from = outs.iter().map(leg_joined_at).fold(f64::MIN, f64::max) + 2.0;
    let to = outs.iter().map(|o| o.json["t0_unix"].as_f64().unwrap() + duration_s).fold(f64::MAX, f64::min) - 0.5;
    assert!(to - from >= 4.0, "the legs were together for only {:.1} s (load?); from {from} to {to}", to - from);
    (from, to)
}

/// What the leg `out` heard from `from` to `to`, as [`leg_audio_between`] gives it, asserting
/// it heard all of it.
#[track_caller]
pub fn leg_heard_all(out: &PeerOutput, path: &Path, (from, to): (f64, f64)) -> (Vec<i16>, u32) {
    let (heard, rate) = leg_audio_between(out, path, from, to);
    assert!(heard.len() as f64 >= (to - from - 0.2) * rate as f64, "the leg heard too little: {}", out.describe());
    (heard, rate)
}

/// The leg received one stream from the bridge (one SSRC) without sequence gaps.
#[track_caller]
pub fn assert_one_stream(who: &str, out: &PeerOutput) {
    let r = &out.json["received"];
    assert_eq!(r["ssrcs"].as_array().map(Vec::len), Some(1), "{who}: {r}");
    assert_eq!(r["seq_steps_not_1"], 0, "{who}: sequence gaps: {}", r["seq_step_examples"]);
}

/// Raw signed 16-bit little-endian samples, as `rtp_leg.py --save-audio` writes them.
pub fn read_s16le(path: &Path) -> Vec<i16> {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    bytes.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect()
}

/// What a leg (run with --packet-log and --save-audio) heard between two unix times, and its
/// sample rate. The saved file is the decoded audio of its audio packets in arrival order, each
/// worth (payload bytes × rate / 8000) samples (G.711: a sample a byte; G.722: two at 16 kHz;
/// Opus: what its TOC says, logged by the leg; 20 ms when the leg could not read it, as for
/// SRTP), so the packet log places the times in the file exactly, whatever the decoder's lag.
pub fn leg_audio_between(out: &PeerOutput, path: &Path, from: f64, to: f64) -> (Vec<i16>, u32) {
    let j = &out.json;
    let rate = j["audio"]["rate"].as_u64().unwrap_or(8000) as u32;
    let per_byte = (rate / 8000) as usize;
    let opus = j["codec"] == "opus";
    let t0 = j["t0_unix"].as_f64().unwrap_or_else(|| panic!("no t0_unix: {}", out.describe()));
    let log =
        j["packet_log"].as_array().unwrap_or_else(|| panic!("the leg ran without --packet-log: {}", out.describe()));
    // Packets that overtook the answer to the join were logged but not decoded (PT unknown yet).
    let mut skip = j["received"]["unknown_pt"].as_u64().unwrap_or(0);
    let all = read_s16le(path);
    let (mut pos, mut start, mut end) = (0usize, None, None);
    for e in log.iter().filter(|e| e[1] == j["audio_pt"]) {
        if skip > 0 {
            skip -= 1;
            continue;
        }
        let t = t0 + e[0].as_f64().unwrap_or(0.0);
        if start.is_none() && t >= from {
            start = Some(pos);
        }
        if t > to {
            end = Some(pos);
            break;
        }
        // Field 6 is the payload length; G.711 and G.722 carry 8,000 bytes a second. An Opus
        // packet's length says nothing of its duration: field 7 is its TOC's, at 48 kHz.
        pos += match e[7].as_u64() {
            Some(at_48k) if opus => at_48k as usize * rate as usize / 48_000,
            _ if opus => rate as usize / 50,
            _ => e[6].as_u64().unwrap_or(0) as usize * per_byte,
        };
    }
    let a = start.unwrap_or(pos).min(all.len());
    let b = end.unwrap_or(pos).min(all.len());
    (all[a..b.max(a)].to_vec(), rate)
}

/// The last `seconds` of what a leg saved with --save-audio, and its sample rate.
pub fn received_tail(out: &PeerOutput, path: &Path, seconds: f32) -> (Vec<i16>, u32) {
    let rate = out.json["audio"]["rate"].as_u64().unwrap_or(8000) as u32;
    let all = if path.exists() { read_s16le(path) } else { Vec::new() };
    let n = ((rate as f32 * seconds) as usize).min(all.len());
    (all[all.len() - n..].to_vec(), rate)
}

/// The leg heard `want_hz` over its last 2 s of received audio, at a real level.
#[track_caller]
pub fn assert_leg_heard(name: &str, out: &PeerOutput, audio: &Path, want_hz: f32) {
    out.expect_ok();
    let (tail, rate) = received_tail(out, audio, 2.0);
    assert!(tail.len() as f32 >= rate as f32 * 1.9, "{name}: only {} samples: {}", tail.len(), out.describe());
    let hz = dominant_frequency(&tail, rate);
    assert!((hz - want_hz).abs() <= 10.0, "{name}: heard {hz:.1} Hz, expected {want_hz} ± 10: {}", out.describe());
    assert!(tone_level_db(&tail, rate, want_hz) > -25.0, "{name}: {want_hz} Hz too quiet: {}", out.describe());
}
