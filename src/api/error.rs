//! Every API error is a proper status with `{"error": {"code", "message"}}`.

use crate::runtime::CommandError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The request body's field the error is about (`kind`, `tracks[0].muted`), when one is.
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), field: None }
    }

    pub fn with_field(mut self, field: String) -> ApiError {
        self.field = Some(field);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(field) = self.field {
            error["field"] = json!(field);
        }
        let body = json!({ "error": error });
        (self.status, Json(body)).into_response()
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> ApiError {
        let message = e.to_string();
        let (status, code) = match e {
            CommandError::RoomNotFound(_) => (StatusCode::NOT_FOUND, "room_not_found"),
            CommandError::RoomExists(_) => (StatusCode::CONFLICT, "room_exists"),
            CommandError::ParticipantNotFound => (StatusCode::NOT_FOUND, "participant_not_found"),
            CommandError::TrackNotFound => (StatusCode::NOT_FOUND, "track_not_found"),
            CommandError::BadSdp(_) => (StatusCode::BAD_REQUEST, "bad_sdp"),
            CommandError::KindMismatch(_) => (StatusCode::BAD_REQUEST, "kind_mismatch"),
            CommandError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            CommandError::RoomFull(_) => (StatusCode::CONFLICT, "room_full"),
            CommandError::NoPorts => (StatusCode::SERVICE_UNAVAILABLE, "no_ports"),
            CommandError::Unsupported(_) => (StatusCode::BAD_REQUEST, "unsupported"),
            CommandError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            CommandError::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            CommandError::NodeFull(_) => (StatusCode::SERVICE_UNAVAILABLE, "node_full"),
            CommandError::TooManyListeners(_) => (StatusCode::TOO_MANY_REQUESTS, "too_many_listeners"),
            CommandError::NoResources => (StatusCode::SERVICE_UNAVAILABLE, "no_resources"),
            CommandError::DtmfQueueFull(_) => (StatusCode::TOO_MANY_REQUESTS, "dtmf_queue_full"),
        };
        ApiError::new(status, code, message)
    }
}
