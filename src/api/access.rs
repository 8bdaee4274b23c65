//! Who may call what. Every route but the open ones (health, the demo page) passes
//! `require_token`, which verifies the Bearer token and hands the handler an [`Access`]; the
//! handler then asks it for the room and grant it needs. 401 for a token that is missing or
//! bad, 403 for a good token without the room or the grant.

use super::error::ApiError;
use super::AppState;
use crate::auth::{AuthError, Claims, Keyring, RoomScope};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::{SystemTime, UNIX_EPOCH};
use switchboard_driver::RoomId;

/// The verifier the API shares: the keyring, or nothing when `auth.enabled = false`.
#[derive(Debug, Clone)]
pub struct Auth {
    keyring: Option<Keyring>,
}

impl Auth {
    pub fn new(keyring: Keyring) -> Auth {
        Auth { keyring: Some(keyring) }
    }

    /// Every request may do everything: allowed on a loopback listen only (config checks it).
    pub fn disabled() -> Auth {
        Auth { keyring: None }
    }

    fn check(&self, authorization: Option<&[u8]>) -> Result<Access, AuthError> {
        let Some(ring) = &self.keyring else {
            return Ok(Access::unrestricted());
        };
        let value = authorization.ok_or(AuthError::Missing)?;
        let token = value
            .strip_prefix(b"Bearer ")
            .or_else(|| value.strip_prefix(b"bearer "))
            .ok_or(AuthError::Malformed("the Authorization scheme must be Bearer"))?;
        let token = std::str::from_utf8(token).map_err(|_| AuthError::Malformed("not ASCII"))?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        ring.verify(token.trim(), now).map(Access)
    }
}

/// What the request's token allows, put in the request's extensions by [`require_token`].
#[derive(Debug, Clone)]
pub struct Access(pub Claims);

impl Access {
    fn unrestricted() -> Access {
        Access(Claims {
            sub: "anonymous".into(),
            room: RoomScope::Any,
            publish: true,
            subscribe: true,
            admin: true,
            kid: String::new(),
        })
    }

    pub fn identity(&self) -> &str {
        &self.0.sub
    }

    pub fn is_admin_of(&self, room: &RoomId) -> bool {
        self.0.admin && self.0.room.covers(room)
    }

    /// Any grant for `room`: reading it, its participants and its events.
    pub fn member(&self, room: &RoomId) -> Result<(), ApiError> {
        if self.0.room.covers(room) && (self.0.admin || self.0.publish || self.0.subscribe) {
            Ok(())
        } else {
            Err(forbidden(format!("the token does not reach room {room}")))
        }
    }

    /// `admin` for `room`.
    pub fn admin(&self, room: &RoomId) -> Result<(), ApiError> {
        self.member(room)?;
        if self.0.admin {
            Ok(())
        } else {
            Err(forbidden("this needs the admin grant"))
        }
    }

    /// `admin` for every room (`room: "*"`): listing all rooms, creating one with a drawn id,
    /// the node's metrics.
    pub fn admin_of_all(&self) -> Result<(), ApiError> {
        if self.0.admin && self.0.room == RoomScope::Any {
            Ok(())
        } else {
            Err(forbidden("this needs the admin grant for every room (room \"*\")"))
        }
    }

    /// Joining `room`: `publish` or `subscribe` (or `admin`) for it.
    pub fn join(&self, room: &RoomId) -> Result<JoinGrants, ApiError> {
        self.member(room)?;
        let c = &self.0;
        Ok(JoinGrants { identity: c.sub.clone(), publish: c.admin || c.publish, subscribe: c.admin || c.subscribe })
    }

    /// Acting on a participant (PATCH, DELETE, DTMF): an admin of the room, or the identity
    /// that joined it.
    pub fn owner(&self, room: &RoomId, identity: Option<&str>) -> Result<(), ApiError> {
        self.member(room)?;
        if self.0.admin || identity == Some(self.0.sub.as_str()) {
            Ok(())
        } else {
            Err(forbidden("the token may act only on participants that joined with its identity"))
        }
    }
}

/// What a join is allowed: its identity and whether its media is routed each way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGrants {
    pub identity: String,
    pub publish: bool,
    pub subscribe: bool,
}

pub fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
}

/// The middleware on every route that is not open: 401 unless the Bearer token verifies.
pub async fn require_token(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let header = req.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes());
    match st.auth.check(header) {
        Ok(access) => {
            req.extensions_mut().insert(access);
            next.run(req).await
        }
        Err(e) => {
            st.metrics.auth_failures.with(e.reason()).inc();
            let mut resp = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", e.to_string()).into_response();
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
            resp
        }
    }
}
