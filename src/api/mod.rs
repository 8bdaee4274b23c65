//! The HTTP API, version 1. Paths and field names are a contract (see docs/api.md).

pub mod access;
mod access_log;
mod body;
mod cluster;
mod cors;
mod demo;
mod egress;
mod error;
mod events;
mod health;
mod participants;
mod rooms;
pub mod serve;
mod whip;

pub use cors::CorsOrigins;
pub use error::ApiError;

use crate::metrics::{HttpMethod, Metrics};
use crate::runtime::Workers;
pub use access::{Access, Auth};

use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, MethodRouter};
use axum::Extension;
use axum::Router;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;
use switchboard_driver::{ParticipantId, RoomId};

#[derive(Clone)]
pub struct AppState {
    /// The media workers, reached through the room each request is about.
    pub media: Workers,
    pub metrics: Arc<Metrics>,
    /// Set on SIGTERM: joins are refused while participants are closed.
    pub draining: Arc<AtomicBool>,
    pub auth: Arc<Auth>,
    pub limits: Arc<ApiLimits>,
    /// `[cluster]`: set when the node is one of several sharing a Redis.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// The node's recordings (`src/egress/`).
    pub egress: Arc<crate::egress::Egresses>,
}

/// The API's own limits (config `http.*`, `rooms.max_participants_cap`).
#[derive(Debug, Clone)]
pub struct ApiLimits {
    pub max_participants_cap: usize,
    /// A request with no answer by then gets 503 `timeout`.
    pub request_timeout: std::time::Duration,
    /// `http.max_body_bytes`: also what a body read whole to be proxied may hold.
    pub max_body_bytes: usize,
}

/// Whether a route needs a token. Open routes are this short list; everything else passes
/// [`access::require_token`] before its handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    Open,
    Token,
}

/// One route as the router holds it: the route-walking test and `switchboard routes` read the
/// same list the router is built from, so no route can skip the token check unseen.
#[derive(Debug, Clone)]
pub struct RouteInfo {
    pub method: Method,
    pub path: &'static str,
    pub guard: Guard,
}

type Handler = MethodRouter<AppState>;

/// Every route. `stall_hook` adds the test-only `POST /v1/debug/stall` (config `debug.stall_hook`).
fn table(stall_hook: bool) -> Vec<(RouteInfo, Handler)> {
    use Guard::{Open, Token};
    let mut t: Vec<(Method, &'static str, Guard, Handler)> = vec![
        (Method::POST, "/v1/rooms", Token, post(rooms::create)),
        (Method::GET, "/v1/rooms", Token, get(rooms::list)),
        (Method::GET, "/v1/rooms/{room}", Token, get(rooms::get)),
        (Method::DELETE, "/v1/rooms/{room}", Token, delete(rooms::delete)),
        (Method::POST, "/v1/rooms/{room}/participants", Token, post(participants::join)),
        (Method::GET, "/v1/rooms/{room}/participants/{id}", Token, get(participants::get)),
        (Method::PATCH, "/v1/rooms/{room}/participants/{id}", Token, patch(participants::patch)),
        (Method::DELETE, "/v1/rooms/{room}/participants/{id}", Token, delete(participants::delete)),
        (Method::POST, "/v1/rooms/{room}/participants/{id}/dtmf", Token, post(participants::dtmf)),
        (Method::PATCH, "/v1/rooms/{room}/participants/{id}/tracks/{track}", Token, patch(participants::track)),
        (Method::GET, "/v1/rooms/{room}/events", Token, get(events::stream)),
        (Method::POST, "/v1/rooms/{room}/egress", Token, post(egress::start)),
        (Method::GET, "/v1/rooms/{room}/egress", Token, get(egress::list)),
        (Method::GET, "/v1/rooms/{room}/egress/{id}", Token, get(egress::get)),
        (Method::DELETE, "/v1/rooms/{room}/egress/{id}", Token, delete(egress::stop)),
        // WHIP (RFC 9725) and WHEP: the session URL is the participant; DELETE is the API's own.
        (Method::POST, "/whip/{room}", Token, post(whip::publish)),
        (Method::DELETE, "/whip/{room}/{id}", Token, delete(participants::delete)),
        (Method::PATCH, "/whip/{room}/{id}", Token, patch(whip::patch)),
        (Method::POST, "/whep/{room}", Token, post(whip::subscribe)),
        (Method::DELETE, "/whep/{room}/{id}", Token, delete(participants::delete)),
        (Method::PATCH, "/whep/{room}/{id}", Token, patch(whip::patch)),
        (Method::GET, "/v1/nodes", Token, get(cluster::nodes)),
        (Method::GET, "/metrics", Token, get(metrics_with_token)),
        (Method::GET, "/healthz", Open, get(health::healthz)),
        (Method::GET, "/readyz", Open, get(health::readyz)),
        // Static files with no secret in them; the page's calls carry the token it is given.
        (Method::GET, "/demo", Open, get(demo::page)),
        (Method::GET, "/sdk/switchboard.js", Open, get(demo::sdk)),
    ];
    if stall_hook {
        t.push((Method::POST, "/v1/debug/stall", Token, post(health::stall)));
    }
    t.into_iter().map(|(method, path, guard, h)| (RouteInfo { method, path, guard }, h)).collect()
}

/// The routes, for `switchboard routes` and the tests that walk them.
pub fn routes(stall_hook: bool) -> Vec<RouteInfo> {
    table(stall_hook).into_iter().map(|(r, _)| r).collect()
}

/// The API router. `cors` wraps every route (and the fallback) outside the token check, so a
/// preflight never needs a token and even a 401 carries the CORS headers a page needs to read it.
pub fn router(state: AppState, max_body_bytes: usize, stall_hook: bool, cors: &CorsOrigins) -> Router {
    let mut router = Router::new();
    for (info, handler) in table(stall_hook) {
        let handler = match info.guard {
            Guard::Open => handler,
            // The cluster's routing runs after the token check (the inner layer runs last).
            Guard::Token if info.path.starts_with("/v1/rooms") || info.path.starts_with("/wh") => handler
                .route_layer(middleware::from_fn_with_state(state.clone(), cluster::route_room))
                .route_layer(middleware::from_fn_with_state(state.clone(), access::require_token)),
            Guard::Token => handler.route_layer(middleware::from_fn_with_state(state.clone(), access::require_token)),
        };
        // Routes that share a path merge their methods.
        router = router.route(info.path, handler);
    }
    // After every route: the 405 fallback applies to the routes registered before it. axum
    // still adds `Allow` (RFC 9110 §15.5.6) to what it answers.
    router = router.fallback(not_found).method_not_allowed_fallback(method_not_allowed);
    if let Some(layer) = cors.layer() {
        router = router.layer(layer);
    }
    router
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), deadline))
        .layer(middleware::from_fn_with_state(state.clone(), record))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// `/metrics` alone, with no token: for `metrics.listen`, an address on a private scrape network.
pub fn metrics_router(metrics: Arc<Metrics>) -> Router {
    Router::new().route("/metrics", get(move || async move { render_metrics(&metrics) })).fallback(not_found)
}

fn render_metrics(m: &Metrics) -> impl IntoResponse {
    ([("content-type", "text/plain; version=0.0.4")], m.render())
}

/// On the API address the node's metrics need an admin token for every room.
async fn metrics_with_token(State(st): State<AppState>, Extension(access): Extension<Access>) -> Response {
    match access.admin_of_all() {
        Ok(()) => render_metrics(&st.metrics).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such path; see docs/api.md")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this path does not take that method; the Allow header names the ones it takes (docs/api.md)",
    )
}

/// A 201's `Location`: the created resource's path. Ids are `[A-Za-z0-9_.-]` and hex, always a
/// valid header value; were one not, the response would go without the header rather than fail.
pub(crate) fn created_at(location: &str, mut resp: Response) -> Response {
    if let Ok(v) = axum::http::HeaderValue::from_str(location) {
        resp.headers_mut().insert(axum::http::header::LOCATION, v);
    }
    resp
}

/// Answers 503 `timeout` for a request with no response within `http.request_timeout_secs`. An
/// event stream's response starts at once, so only its start is timed.
async fn deadline(State(st): State<AppState>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(st.limits.request_timeout, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            format!("no answer within {} s (http.request_timeout_secs)", st.limits.request_timeout.as_secs()),
        )
        .into_response(),
    }
}

/// Counts and logs every request by method, path template (never the concrete path: it holds
/// ids) and status. The log line is built from those, the latency and the client's address only:
/// no header (the token is in one), no query and no body (SDP holds ICE credentials and keys).
async fn record(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "other".into());
    let method = HttpMethod::from(req.method());
    let client = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let start = Instant::now();
    let resp = next.run(req).await;
    let took = start.elapsed();
    st.metrics.http.record(method, &path, resp.status(), took);
    access_log::request(method, &path, resp.status(), took, client);
    resp
}

pub(crate) fn room_id(s: &str) -> Result<RoomId, ApiError> {
    RoomId::new(s).ok_or_else(|| ApiError::bad_request("room id must be 1 to 64 of A-Z a-z 0-9 _ . -"))
}

pub(crate) fn participant_id(s: &str) -> Result<ParticipantId, ApiError> {
    s.parse().map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "participant_not_found",
            format!("no participant {s:?}: ids are 16 hex digits"),
        )
    })
}
