//! One receiver's delivery task: takes events from its queue in order, POSTs each, and retries a
//! failed one with exponential backoff before it moves on. One event at a time, so a receiver
//! sees every room's events in the order they happened.

use super::event::HookEvent;
use super::sign::{SignError, Signer};
use crate::metrics::{Metrics, WebhookResult};
use reqwest::StatusCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// A response body is read up to this much, so the connection can be reused, and no further.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// The wait before retry `n` (0-based): `first` doubled each time, never above `cap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub cap: Duration,
}

impl Backoff {
    /// 0.5 s, 1 s, 2 s, 4 s, 8 s… up to 30 s.
    pub const DEFAULT: Backoff = Backoff { first: Duration::from_millis(500), cap: Duration::from_secs(30) };

    pub fn delay(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry).unwrap_or(u32::MAX);
        self.first.saturating_mul(factor).min(self.cap)
    }
}

#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error(transparent)]
    Sign(#[from] SignError),
    /// Connecting, sending or the timeout; the text has no URL in it (see `describe`).
    #[error("{0}")]
    Send(String),
    #[error("the receiver answered {0}")]
    Status(StatusCode),
}

/// Everything one receiver's task needs.
pub struct Delivery {
    pub client: reqwest::Client,
    pub url: reqwest::Url,
    /// The URL as logs may show it (`WebhookConfig::redacted_url`).
    pub shown: String,
    pub signer: Signer,
    pub max_retries: u32,
    pub backoff: Backoff,
    pub metrics: Arc<Metrics>,
}

impl Delivery {
    /// Delivers until the queue's sender is gone and the queue is empty.
    pub async fn run(self, mut queue: mpsc::Receiver<Arc<HookEvent>>) {
        while let Some(ev) = queue.recv().await {
            self.deliver(&ev).await;
        }
    }

    /// Tries `ev` until it is delivered or its retries are spent; true when delivered.
    async fn deliver(&self, ev: &HookEvent) -> bool {
        let body = ev.body();
        let mut retries = 0;
        loop {
            match self.attempt(&body).await {
                Ok(()) => {
                    self.metrics.webhook_deliveries.with(WebhookResult::Delivered).inc();
                    return true;
                }
                Err(e) if retries < self.max_retries => {
                    self.metrics.webhook_deliveries.with(WebhookResult::Retried).inc();
                    let wait = self.backoff.delay(retries);
                    debug!(webhook = %self.shown, event = ev.name(), id = %ev.id_text(), error = %e, ?wait, "webhook retry");
                    tokio::time::sleep(wait).await;
                    retries += 1;
                }
                Err(e) => {
                    self.metrics.webhook_deliveries.with(WebhookResult::Failed).inc();
                    warn!(
                        webhook = %self.shown,
                        room = %ev.room,
                        event = ev.name(),
                        id = %ev.id_text(),
                        attempts = retries + 1,
                        error = %e,
                        "webhook event given up"
                    );
                    return false;
                }
            }
        }
    }

    /// One POST; a 2xx answer is success, anything else (a redirect too) a failure.
    async fn attempt(&self, body: &[u8]) -> Result<(), AttemptError> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let token = self.signer.sign(body, now)?;
        let mut resp = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .bearer_auth(token)
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| AttemptError::Send(describe(e)))?;
        let status = resp.status();
        let mut read = 0;
        while read < MAX_RESPONSE_BYTES {
            match resp.chunk().await {
                Ok(Some(c)) => read += c.len(),
                _ => break,
            }
        }
        if status.is_success() {
            Ok(())
        } else {
            Err(AttemptError::Status(status))
        }
    }
}

/// The error and its causes, without the URL reqwest puts in its own text (the URL may carry a
/// secret of the receiver's).
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
#[path = "deliver_tests.rs"]
mod tests;
