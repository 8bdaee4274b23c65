//! Cascaded rooms: when a room's owner is full, a join is served by a part of the room on another
//! node, linked to the owner by a trunk. The trunk is one SDES-SRTP (or, on a trusted network,
//! plain RTP) leg on each side, set up through the owner's own API as a late-offer leg: the owner
//! offers, this node answers. Each side's room treats the trunk as a phone leg, so each sends the
//! other its own participants' mix minus the trunk: everyone hears everyone, nobody hears
//! themselves (docs/cluster.md says what this costs).

use super::proxy::FORWARDED;
use super::{Cluster, ClusterError};
use crate::api::ApiError;
use crate::auth::{Grant, RoomScope};
use axum::http::StatusCode;
use serde_json::{json, Value};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use switchboard_driver::RoomId;
use tracing::{info, warn};

/// Set on a join passed to the node that is to hold a part of the room: the owner's id.
pub const PART_OF: &str = "x-switchboard-part-of";
/// A part younger than this is kept even with only its trunk in it: its first join is on the way.
const PART_GRACE: Duration = Duration::from_secs(5);

/// A part of a room held here.
pub(super) struct Part {
    owner_url: String,
    /// The trunk's participant on the owner, and here.
    remote_trunk: String,
    local_trunk: String,
    made: Instant,
}

impl Cluster {
    /// An admin token for `room`, from the first key, for the calls between nodes.
    fn node_token(&self, room: &RoomId) -> Option<String> {
        let kid = self.keyring.names().next()?.to_owned();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
        let scope = RoomScope::parse(room.as_str())?;
        self.keyring.mint(&kid, &format!("node:{}", self.id), &scope, &[Grant::Admin], now, 300).ok()
    }

    async fn node_call(
        &self,
        url: String,
        method: reqwest::Method,
        room: &RoomId,
        body: Option<Value>,
    ) -> Result<(u16, Value), ClusterError> {
        let mut req =
            self.http.request(method, url).header(FORWARDED, self.id.as_str()).timeout(Duration::from_secs(5));
        if let Some(t) = self.node_token(room) {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        let resp = req.send().await.map_err(|e| ClusterError::Data(format!("node call: {}", e.without_url())))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| ClusterError::Data(format!("node call: {}", e.without_url())))?;
        Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }

    /// Makes sure this node holds a part of `room` linked to its owner by a trunk.
    pub async fn ensure_part(&self, room: &RoomId, owner: &str, owner_url: &str) -> Result<(), ApiError> {
        let _one_at_a_time = self.part_lock.lock().await;
        if self.parts.lock().is_ok_and(|p| p.contains_key(room.as_str())) {
            return Ok(());
        }
        let trunk_failed = |what: String| ApiError::new(StatusCode::BAD_GATEWAY, "trunk_failed", what);
        let kind = if self.cfg.trunk_srtp { "srtp" } else { "rtp" };
        let base = format!("/v1/rooms/{room}/participants");
        let (s, offer) = self
            .node_call(
                format!("{owner_url}{base}"),
                reqwest::Method::POST,
                room,
                Some(json!({ "kind": kind, "display_name": format!("trunk to {}", self.id) })),
            )
            .await?;
        let (Some(remote), Some(sdp)) = (offer["id"].as_str(), offer["sdp"].as_str()) else {
            return Err(trunk_failed(format!("the owner {owner} refused the trunk: {s} {offer}")));
        };
        let remote = remote.to_owned();
        let undo_remote = async {
            let _ = self.node_call(format!("{owner_url}{base}/{remote}"), reqwest::Method::DELETE, room, None).await;
        };
        let (s, made) = self
            .node_call(
                format!("{}/v1/rooms", self.api_url),
                reqwest::Method::POST,
                room,
                Some(json!({ "id": room.as_str() })),
            )
            .await?;
        if s != 201 && s != 409 {
            undo_remote.await;
            return Err(trunk_failed(format!("the part could not be made here: {s} {made}")));
        }
        let join = json!({ "sdp": opus_first(sdp), "display_name": format!("trunk to {owner}") });
        let (s, answer) =
            self.node_call(format!("{}{base}", self.api_url), reqwest::Method::POST, room, Some(join)).await?;
        let (Some(local), Some(answer_sdp)) = (answer["id"].as_str(), answer["sdp"].as_str()) else {
            undo_remote.await;
            return Err(trunk_failed(format!("this node could not answer the trunk: {s} {answer}")));
        };
        let patch = json!({ "sdp": answer_sdp });
        let (s, done) =
            self.node_call(format!("{owner_url}{base}/{remote}"), reqwest::Method::PATCH, room, Some(patch)).await?;
        if s != 200 {
            undo_remote.await;
            return Err(trunk_failed(format!("the owner did not take the trunk's answer: {s} {done}")));
        }
        self.registry.add_part(room.as_str(), &self.id).await?;
        info!(room = %room, owner, kind, "part of the room held here, trunked to its owner");
        let part = Part {
            owner_url: owner_url.to_owned(),
            remote_trunk: remote.clone(),
            local_trunk: local.to_owned(),
            made: Instant::now(),
        };
        if let Ok(mut p) = self.parts.lock() {
            p.insert(room.as_str().to_owned(), part);
        }
        Ok(())
    }

    /// At each heartbeat: a part left with only its trunk goes, trunk and all, on both sides.
    pub(super) async fn prune_parts(&self, counts: &std::collections::HashMap<String, usize>) {
        let done: Vec<(String, Part)> = match self.parts.lock() {
            Ok(mut p) => {
                let gone: Vec<String> = p
                    .iter()
                    .filter(|(room, part)| {
                        part.made.elapsed() > PART_GRACE && counts.get(*room).copied().unwrap_or(0) <= 1
                    })
                    .map(|(r, _)| r.clone())
                    .collect();
                gone.into_iter().filter_map(|r| p.remove(&r).map(|part| (r, part))).collect()
            }
            Err(_) => Vec::new(),
        };
        for (room, part) in done {
            let Some(id) = RoomId::new(&room) else { continue };
            let base = format!("/v1/rooms/{room}");
            let _ = self
                .node_call(
                    format!("{}{base}/participants/{}", part.owner_url, part.remote_trunk),
                    reqwest::Method::DELETE,
                    &id,
                    None,
                )
                .await;
            let _ = self
                .node_call(
                    format!("{}{base}/participants/{}", self.api_url, part.local_trunk),
                    reqwest::Method::DELETE,
                    &id,
                    None,
                )
                .await;
            let _ = self.node_call(format!("{}{base}", self.api_url), reqwest::Method::DELETE, &id, None).await;
            if let Err(e) = self.registry.remove_part(&room, &self.id).await {
                warn!(error = %e, room, "could not unlist the part");
            }
            info!(room, "part of the room closed: only its trunk was left");
        }
    }
}

/// The owner's offer with Opus moved to the front of the m-line, so the trunk carries wideband
/// audio when both sides have Opus (the answerer takes the first format it can).
fn opus_first(sdp: &str) -> String {
    let opus_pt = sdp
        .lines()
        .find_map(|l| l.strip_prefix("a=rtpmap:").filter(|r| r.to_ascii_lowercase().contains(" opus/48000")))
        .and_then(|r| r.split_whitespace().next())
        .map(str::to_owned);
    let Some(pt) = opus_pt else { return sdp.to_owned() };
    sdp.split("\r\n")
        .map(|l| match l.strip_prefix("m=audio ") {
            Some(rest) => {
                let mut f: Vec<&str> = rest.split(' ').collect();
                // port, proto, then the formats
                if let Some(i) = f.iter().skip(2).position(|x| *x == pt) {
                    let p = f.remove(i + 2);
                    f.insert(2, p);
                }
                format!("m=audio {}", f.join(" "))
            }
            None => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

#[cfg(test)]
mod tests {
    use super::opus_first;

    #[test]
    fn opus_goes_first_and_nothing_else_changes() {
        let sdp = "v=0\r\nm=audio 19102 RTP/SAVP 0 8 9 111 101\r\na=rtpmap:111 opus/48000/2\r\n";
        assert_eq!(opus_first(sdp), "v=0\r\nm=audio 19102 RTP/SAVP 111 0 8 9 101\r\na=rtpmap:111 opus/48000/2\r\n");
        let no_opus = "v=0\r\nm=audio 1 RTP/AVP 0\r\n";
        assert_eq!(opus_first(no_opus), no_opus);
    }
}
