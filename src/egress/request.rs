//! `POST /v1/rooms/{room}/egress`: the body, and what of it this build can do. Everything a
//! client can get wrong is a 400 naming the field, before anything starts.

use serde::Deserialize;
use switchboard_egress::{Container, Layout};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressRequest {
    pub kind: String,
    pub outputs: Vec<OutputRequest>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputRequest {
    #[serde(rename = "type")]
    pub kind: String,
    /// `file` only: `mp4` (the default) or `webm` for a composite.
    pub format: Option<String>,
    pub url: Option<String>,
    pub bucket: Option<String>,
}

/// The output types the API names; the ones not yet built are refused by name.
const KNOWN_OUTPUTS: [&str; 5] = ["file", "rtmp", "hls", "s3", "whip"];

/// A request this build can carry out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub layout: Layout,
}

impl Plan {
    pub fn kind(&self) -> &'static str {
        match self.layout {
            Layout::Tracks => "tracks",
            Layout::Composite(_) => "composite",
        }
    }
}

pub fn plan(req: &EgressRequest) -> Result<Plan, String> {
    let [out] = req.outputs.as_slice() else {
        return Err(if req.outputs.is_empty() {
            "outputs must name at least one output".into()
        } else {
            "this build writes one output per egress: start one egress per output".into()
        });
    };
    if !KNOWN_OUTPUTS.contains(&out.kind.as_str()) {
        return Err(format!("unknown output type {:?}: one of file, rtmp, hls, s3, whip", out.kind));
    }
    if out.kind != "file" {
        return Err(format!("output type {:?} is not built yet: only \"file\" is (docs/egress.md)", out.kind));
    }
    if out.url.is_some() || out.bucket.is_some() {
        return Err("a file output takes no url or bucket".into());
    }
    let layout = match req.kind.as_str() {
        "tracks" => {
            if out.format.is_some() {
                return Err("per-track files take the container of their codec: give no format".into());
            }
            Layout::Tracks
        }
        "composite" => Layout::Composite(match out.format.as_deref() {
            None | Some("mp4") => Container::Mp4,
            Some("webm") => Container::Webm,
            Some(f) => return Err(format!("composite format {f:?}: mp4 or webm")),
        }),
        "participant" => return Err("kind \"participant\" is not built yet: tracks or composite".into()),
        k => return Err(format!("unknown kind {k:?}: tracks or composite")),
    };
    Ok(Plan { layout })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(kind: &str, out: serde_json::Value) -> EgressRequest {
        serde_json::from_value(serde_json::json!({"kind": kind, "outputs": [out]})).unwrap()
    }

    #[test]
    fn files_are_planned_by_kind_and_format() {
        assert_eq!(plan(&req("tracks", serde_json::json!({"type": "file"}))).unwrap().layout, Layout::Tracks);
        let mp4 = plan(&req("composite", serde_json::json!({"type": "file"}))).unwrap();
        assert_eq!(mp4.layout, Layout::Composite(Container::Mp4));
        let webm = plan(&req("composite", serde_json::json!({"type": "file", "format": "webm"}))).unwrap();
        assert_eq!(webm.layout, Layout::Composite(Container::Webm));
    }

    #[test]
    fn what_cannot_be_done_is_refused_by_name() {
        let e = plan(&req("tracks", serde_json::json!({"type": "ftp"}))).unwrap_err();
        assert!(e.contains("unknown output type \"ftp\""), "{e}");
        let e = plan(&req("composite", serde_json::json!({"type": "rtmp", "url": "rtmp://x/y"}))).unwrap_err();
        assert!(e.contains("not built yet"), "{e}");
        let e = plan(&req("everything", serde_json::json!({"type": "file"}))).unwrap_err();
        assert!(e.contains("unknown kind"), "{e}");
        let e = plan(&req("composite", serde_json::json!({"type": "file", "format": "avi"}))).unwrap_err();
        assert!(e.contains("mp4 or webm"), "{e}");
        let none: EgressRequest = serde_json::from_value(serde_json::json!({"kind": "tracks", "outputs": []})).unwrap();
        assert!(plan(&none).unwrap_err().contains("at least one"));
    }
}
