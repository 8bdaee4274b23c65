//! Webhooks: room events POSTed, signed, to the receivers `[[webhooks]]` names.
//!
//! The media thread only offers: for each receiver that wants the event, one `try_send` into
//! that receiver's bounded queue. It never waits. An event that does not fit is dropped and
//! counted (`switchboard_webhook_dropped_total`). A tokio task per receiver takes its queue in
//! order and POSTs each event, retrying with backoff (`deliver`), so each receiver gets each
//! room's events in the order they happened, each at most `max_retries + 1` times.
//!
//! The parts: `config` (the `[[webhooks]]` entries and their checks), `event` (which events go
//! and the body), `sign` (the JWT on each POST) and `deliver` (the task).

mod config;
mod deliver;
mod event;
mod sign;

pub use config::{check, WebhookConfig};
pub use deliver::Backoff;
pub use event::{wanted, HookEvent};
pub use sign::{body_digest, HookClaims, Signer, ISSUER, SIGNATURE_TTL_SECS};

use crate::auth::Keyring;
use crate::core::RoomEvent;
use crate::metrics::Metrics;
use deliver::Delivery;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use switchboard_driver::RoomId;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::task::JoinHandle;
use tracing::info;

/// A request that takes longer than this, connecting included, has failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Connecting alone may take this long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhooks[{0}].key names no key in [auth.keys]")]
    UnknownKey(usize),
    #[error("webhooks[{0}].url is not a URL")]
    BadUrl(usize),
    #[error("the webhook HTTP client could not be built: {0}")]
    Client(String),
}

/// One receiver's end of its queue, as the media thread holds it.
#[derive(Clone)]
struct Outlet {
    queue: mpsc::Sender<Arc<HookEvent>>,
    dtmf: bool,
}

/// The media workers' side: offers room events to every receiver's queue, never waiting. Each
/// worker holds a clone; a receiver's queue closes when the last of them is gone.
#[derive(Clone)]
pub struct Webhooks {
    outlets: Vec<Outlet>,
    metrics: Arc<Metrics>,
}

impl Webhooks {
    /// No receivers: `offer` does nothing.
    pub fn none(metrics: Arc<Metrics>) -> Webhooks {
        Webhooks { outlets: Vec::new(), metrics }
    }

    /// Queues `ev` of `room` for every receiver that wants it. Never blocks: a full queue drops
    /// the event for that receiver, and the drop is counted.
    pub fn offer(&self, room: &RoomId, ev: &RoomEvent) {
        let mut made: Option<Arc<HookEvent>> = None;
        for out in self.outlets.iter().filter(|o| wanted(ev, o.dtmf)) {
            let hook = made
                .get_or_insert_with(|| Arc::new(HookEvent::new(room.clone(), ev.clone(), SystemTime::now())))
                .clone();
            match out.queue.try_send(hook) {
                Ok(()) => {}
                // Closed only once the runtime is going away at shutdown: lost like a full one.
                Err(TrySendError::Full(_) | TrySendError::Closed(_)) => self.metrics.webhook_dropped.inc(),
            }
        }
    }
}

/// The delivery tasks, to give them a moment at shutdown.
pub struct Deliveries {
    tasks: Vec<JoinHandle<()>>,
}

impl Deliveries {
    /// Waits until every queue is delivered (each task ends once its queue's sender, held by
    /// the media thread, is gone and the queue is empty) or `within` has passed. What is still
    /// queued then is lost with the process.
    pub async fn drain(self, within: Duration) {
        let all = async {
            for t in self.tasks {
                let _ = t.await;
            }
        };
        if tokio::time::timeout(within, all).await.is_err() {
            info!("webhook events still queued at shutdown were not delivered");
        }
    }
}

/// reqwest is built without a crypto provider of its own (Cargo.toml), so the process needs a
/// default one before a client is built. rustls 0.23.48 deprecates ring's for lacking
/// post-quantum key exchange; aws-lc-rs, which has it, is a second crypto library and a long C
/// build, for TLS whose payload (room events) is signed and short-lived anyway.
#[allow(deprecated)]
pub(crate) fn install_crypto_provider() {
    // An Err means a provider is installed already, which is all that is needed.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Starts a delivery task per receiver on the current tokio runtime.
pub fn start(
    hooks: &[WebhookConfig],
    keys: &Keyring,
    metrics: Arc<Metrics>,
) -> Result<(Webhooks, Deliveries), WebhookError> {
    let mut outlets = Vec::new();
    let mut tasks = Vec::new();
    if hooks.is_empty() {
        return Ok((Webhooks { outlets, metrics }, Deliveries { tasks }));
    }
    install_crypto_provider();
    let client = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        // A redirect is a failure: the signature is for this receiver, and a POST must not turn
        // into a GET elsewhere.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| WebhookError::Client(e.to_string()))?;
    for (i, h) in hooks.iter().enumerate() {
        let secret = keys.get(&h.key).ok_or(WebhookError::UnknownKey(i))?;
        let url = reqwest::Url::parse(&h.url).map_err(|_| WebhookError::BadUrl(i))?;
        let (queue, rx) = mpsc::channel(h.queue);
        let delivery = Delivery {
            client: client.clone(),
            url,
            shown: h.redacted_url(),
            signer: Signer::new(&h.key, secret),
            max_retries: h.max_retries,
            backoff: Backoff::DEFAULT,
            metrics: metrics.clone(),
        };
        info!(webhook = %delivery.shown, key = %h.key, dtmf = h.dtmf, "webhook receiver");
        tasks.push(tokio::spawn(delivery.run(rx)));
        outlets.push(Outlet { queue, dtmf: h.dtmf });
    }
    Ok((Webhooks { outlets, metrics }, Deliveries { tasks }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::events::LeaveReason;
    use switchboard_driver::ParticipantId;

    fn left(n: u64) -> RoomEvent {
        RoomEvent::ParticipantLeft { participant_id: ParticipantId(n), reason: LeaveReason::Requested }
    }

    #[test]
    fn a_full_queue_drops_and_counts_and_keeps_what_fit_in_order() {
        let metrics = Arc::new(Metrics::new());
        let (queue, mut rx) = mpsc::channel(2);
        let hooks = Webhooks { outlets: vec![Outlet { queue, dtmf: false }], metrics: metrics.clone() };
        let room = RoomId::new("busy").unwrap();
        for n in 1..=5 {
            hooks.offer(&room, &left(n));
        }
        assert_eq!(metrics.webhook_dropped.get(), 3, "two fit, three did not");
        let kept: Vec<RoomEvent> = std::iter::from_fn(|| rx.try_recv().ok()).map(|h| h.event.clone()).collect();
        assert_eq!(kept, [left(1), left(2)]);
    }

    #[test]
    fn unwanted_events_take_no_room_and_count_no_drop() {
        let metrics = Arc::new(Metrics::new());
        let (queue, mut rx) = mpsc::channel(1);
        let hooks = Webhooks { outlets: vec![Outlet { queue, dtmf: false }], metrics: metrics.clone() };
        let room = RoomId::new("r").unwrap();
        for _ in 0..3 {
            hooks.offer(&room, &RoomEvent::Dtmf { participant_id: ParticipantId(1), digit: '1', duration_ms: 80 });
            hooks.offer(&room, &RoomEvent::ActiveSpeaker { participant_id: ParticipantId(1) });
        }
        assert_eq!(metrics.webhook_dropped.get(), 0);
        assert!(rx.try_recv().is_err(), "nothing was queued");
    }

    #[test]
    fn every_receiver_gets_the_same_event_and_id() {
        let metrics = Arc::new(Metrics::new());
        let (qa, mut a) = mpsc::channel(4);
        let (qb, mut b) = mpsc::channel(4);
        let outlets = vec![Outlet { queue: qa, dtmf: false }, Outlet { queue: qb, dtmf: true }];
        let hooks = Webhooks { outlets, metrics };
        hooks.offer(&RoomId::new("r").unwrap(), &left(9));
        let (x, y) = (a.try_recv().unwrap(), b.try_recv().unwrap());
        assert_eq!(x.id_text(), y.id_text());
        assert_eq!(x.body(), y.body());
    }
}
