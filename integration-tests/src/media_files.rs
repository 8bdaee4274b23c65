//! Reading back what an egress wrote: ffprobe for durations, streams and frame counts, ffmpeg
//! for decoded audio. Each is the tool a person would check a recording with.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Panics with a clear message unless ffprobe and ffmpeg can run here.
pub fn require_ffprobe() {
    for tool in ["ffprobe", "ffmpeg"] {
        let ok = Command::new(tool).arg("-version").output().is_ok_and(|o| o.status.success());
        assert!(ok, "{tool} is needed to read recordings back; install: ffmpeg (scripts/install-deps.sh --test)");
    }
}

/// ffprobe's `-show_format -show_streams` of `path` (a file or a URL), as JSON; panics with
/// ffprobe's own words when it cannot read it.
pub fn ffprobe(path: &str) -> Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-print_format", "json", "-show_format", "-show_streams", path])
        .output()
        .expect("running ffprobe");
    assert!(out.status.success(), "ffprobe cannot read {path}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("ffprobe's JSON")
}

/// The duration ffprobe reads for `path`, in seconds: the container's, or else its longest stream's.
pub fn media_duration(path: &Path) -> f64 {
    let v = ffprobe(path.to_str().expect("a UTF-8 path"));
    let secs = |x: &Value| x["duration"].as_str().and_then(|s| s.parse::<f64>().ok());
    secs(&v["format"])
        .or_else(|| v["streams"].as_array()?.iter().filter_map(secs).reduce(f64::max))
        .unwrap_or_else(|| panic!("ffprobe finds no duration in {}: {v}", path.display()))
}

/// The audio of `path` (the first audio stream, or the one `stream` names, e.g. `a:0`) decoded by
/// ffmpeg to mono 16-bit samples at `rate`.
pub fn decoded_audio(path: &Path, rate: u32) -> Vec<i16> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-map", "0:a:0", "-ac", "1", "-ar", &rate.to_string(), "-f", "s16le", "-"])
        .output()
        .expect("running ffmpeg");
    assert!(out.status.success(), "ffmpeg cannot decode {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    out.stdout.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect()
}

/// How many frames of the first video stream of `path` ffprobe decodes, and their size.
pub fn decoded_video(path: &Path) -> (u64, u64, u64) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0", "-print_format", "json"])
        .args(["-show_entries", "stream=nb_read_frames,width,height"])
        .arg(path)
        .output()
        .expect("running ffprobe");
    assert!(out.status.success(), "ffprobe cannot decode {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("ffprobe's JSON");
    let s = &v["streams"][0];
    let frames = s["nb_read_frames"].as_str().and_then(|n| n.parse().ok()).unwrap_or(0);
    (frames, s["width"].as_u64().unwrap_or(0), s["height"].as_u64().unwrap_or(0))
}
