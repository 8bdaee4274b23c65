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
#[derive(Clone, PartialEq, Eq)]
pub struct Plan {
    pub layout: Layout,
    /// An RTMP output: the URL (with its stream key: never shown) and what may be shown of it.
    pub rtmp: Option<(String, String)>,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan").field("layout", &self.layout).field("rtmp", &self.rtmp.as_ref().map(|r| &r.1)).finish()
    }
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
    if out.kind == "rtmp" {
        if req.kind != "composite" {
            return Err("an rtmp output takes kind \"composite\"".into());
        }
        if out.format.is_some() || out.bucket.is_some() {
            return Err("an rtmp output takes a url only".into());
        }
        let url = out.url.as_deref().ok_or("an rtmp output needs a url")?;
        let shown = rtmp_shown(url)?;
        return Ok(Plan { layout: Layout::Composite(Container::Flv), rtmp: Some((url.to_string(), shown)) });
    }
    if out.kind == "hls" {
        if req.kind != "composite" {
            return Err("an hls output takes kind \"composite\"".into());
        }
        if out.url.is_some() || out.bucket.is_some() || out.format.is_some() {
            return Err("an hls output is written into egress.dir: give no url, bucket or format".into());
        }
        return Ok(Plan { layout: Layout::Composite(Container::Hls), rtmp: None });
    }
    if out.kind != "file" {
        return Err(format!("output type {:?} is not built yet: file, rtmp and hls are (docs/egress.md)", out.kind));
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
    Ok(Plan { layout, rtmp: None })
}

/// Checks an RTMP URL and returns what may be shown of it: scheme, host and port. Its path
/// holds the application and the stream key, a credential, so it is never shown.
fn rtmp_shown(url: &str) -> Result<String, String> {
    let bad = || "url must be rtmp:// or rtmps://host[:port]/app/stream".to_string();
    if url.len() > 1024 || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    if scheme != "rtmp" && scheme != "rtmps" {
        return Err(bad());
    }
    let (host, path) = rest.split_once('/').ok_or_else(bad)?;
    if host.is_empty() || host.contains('@') || path.is_empty() {
        return Err(bad());
    }
    Ok(format!("{scheme}://{host}/…"))
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
    fn an_rtmp_url_is_shown_without_its_stream_key() {
        let p =
            plan(&req("composite", serde_json::json!({"type": "rtmp", "url": "rtmp://127.0.0.1:1935/live/s3cret"})))
                .unwrap();
        assert_eq!(p.layout, Layout::Composite(Container::Flv));
        let (url, shown) = p.rtmp.clone().unwrap();
        assert_eq!((url.as_str(), shown.as_str()), ("rtmp://127.0.0.1:1935/live/s3cret", "rtmp://127.0.0.1:1935/…"));
        assert!(!format!("{p:?}").contains("s3cret"));
        for bad in ["rtmp://", "rtmp://host", "rtmp://user:pw@host/live/x", "rtmp://h/a b"] {
            assert!(rtmp_shown(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn what_cannot_be_done_is_refused_by_name() {
        let e = plan(&req("tracks", serde_json::json!({"type": "ftp"}))).unwrap_err();
        assert!(e.contains("unknown output type \"ftp\""), "{e}");
        let e = plan(&req("composite", serde_json::json!({"type": "s3", "bucket": "b"}))).unwrap_err();
        assert!(e.contains("not built yet"), "{e}");
        let hls = plan(&req("composite", serde_json::json!({"type": "hls"}))).unwrap();
        assert_eq!(hls.layout, Layout::Composite(Container::Hls));
        let e = plan(&req("composite", serde_json::json!({"type": "rtmp", "url": "http://x/y"}))).unwrap_err();
        assert!(e.contains("rtmp://"), "{e}");
        let e = plan(&req("tracks", serde_json::json!({"type": "rtmp", "url": "rtmp://x/y"}))).unwrap_err();
        assert!(e.contains("composite"), "{e}");
        let e = plan(&req("everything", serde_json::json!({"type": "file"}))).unwrap_err();
        assert!(e.contains("unknown kind"), "{e}");
        let e = plan(&req("composite", serde_json::json!({"type": "file", "format": "avi"}))).unwrap_err();
        assert!(e.contains("mp4 or webm"), "{e}");
        let none: EgressRequest = serde_json::from_value(serde_json::json!({"kind": "tracks", "outputs": []})).unwrap();
        assert!(plan(&none).unwrap_err().contains("at least one"));
    }
}
