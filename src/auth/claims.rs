//! What a token says: who (`sub`), which room (`room`, or `*`), what it may do (`grants`), and
//! when it is valid (`exp`, `nbf`).

use serde::{Deserialize, Serialize};
use switchboard_driver::RoomId;

/// One thing a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Grant {
    /// What the participant sends is routed to others.
    Publish,
    /// The participant receives the room's media.
    Subscribe,
    /// Everything in the token's rooms: create, list, delete, join, kick, mute, DTMF, events.
    Admin,
}

impl Grant {
    pub fn parse(s: &str) -> Option<Grant> {
        match s.trim() {
            "publish" => Some(Grant::Publish),
            "subscribe" => Some(Grant::Subscribe),
            "admin" => Some(Grant::Admin),
            _ => None,
        }
    }
}

/// The rooms a token reaches: one, or every room (`*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomScope {
    Any,
    One(RoomId),
}

impl RoomScope {
    pub fn parse(s: &str) -> Option<RoomScope> {
        if s == "*" {
            Some(RoomScope::Any)
        } else {
            RoomId::new(s).map(RoomScope::One)
        }
    }

    pub fn covers(&self, room: &RoomId) -> bool {
        match self {
            RoomScope::Any => true,
            RoomScope::One(r) => r == room,
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            RoomScope::Any => "*",
            RoomScope::One(r) => r.as_str(),
        }
    }
}

/// The claims as they travel in the token's payload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireClaims {
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    pub room: String,
    #[serde(default)]
    pub grants: Vec<Grant>,
}

/// A verified token, as the API checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The identity: the participant's name in the room, or the server's (a gateway's) name.
    pub sub: String,
    pub room: RoomScope,
    pub publish: bool,
    pub subscribe: bool,
    pub admin: bool,
    /// The key that signed it (the header's `kid`), for request logs.
    pub kid: String,
}

impl Claims {
    pub fn has(&self, g: Grant) -> bool {
        match g {
            Grant::Publish => self.publish,
            Grant::Subscribe => self.subscribe,
            Grant::Admin => self.admin,
        }
    }
}
