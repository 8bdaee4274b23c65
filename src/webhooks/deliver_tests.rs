//! The delivery task against a real receiver on loopback: retries, giving up, order.

use super::*;
use crate::auth::Secret;
use crate::core::events::LeaveReason;
use crate::core::RoomEvent;
use crate::webhooks::sign::{body_digest, HookClaims};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use std::collections::HashMap;
use switchboard_driver::{ParticipantId, RoomId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SECRET: &str = "deliver-test-secret-0123456789";
const QUICK: Backoff = Backoff { first: Duration::from_millis(1), cap: Duration::from_millis(4) };

/// One POST as the receiver saw it.
struct Received {
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// A receiver that answers its requests with `statuses`, in turn, then 200; what it received
/// comes out of the channel.
async fn receiver(statuses: Vec<u16>) -> (reqwest::Url, mpsc::UnboundedReceiver<Received>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = reqwest::Url::parse(&format!("http://{}/hook?token=t", l.local_addr().unwrap())).unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut statuses = statuses.into_iter();
        while let Ok((mut s, _)) = l.accept().await {
            while let Some(req) = read_request(&mut s).await {
                let status = statuses.next().unwrap_or(200);
                let _ = tx.send(req);
                let head =
                    format!("HTTP/1.1 {status} X\r\nLocation: http://127.0.0.1:9/\r\nContent-Length: 2\r\n\r\nok");
                if s.write_all(head.as_bytes()).await.is_err() {
                    break;
                }
            }
        }
    });
    (url, rx)
}

async fn read_request(s: &mut TcpStream) -> Option<Received> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let headers: HashMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk).await.ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(Received { headers, body: buf[head_end..head_end + len].to_vec() })
}

fn delivery(url: reqwest::Url, max_retries: u32, metrics: &Arc<Metrics>) -> Delivery {
    Delivery {
        client: {
            crate::webhooks::install_crypto_provider();
            reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
        },
        url,
        shown: "test".into(),
        signer: Signer::new("hooks", &Secret::new(SECRET)),
        max_retries,
        backoff: QUICK,
        metrics: metrics.clone(),
    }
}

fn event(n: u64) -> HookEvent {
    let ev = RoomEvent::ParticipantLeft { participant_id: ParticipantId(n), reason: LeaveReason::Requested };
    HookEvent::new(RoomId::new("room").unwrap(), ev, SystemTime::now())
}

fn counts(m: &Metrics) -> [u64; 3] {
    [WebhookResult::Delivered, WebhookResult::Retried, WebhookResult::Failed]
        .map(|r| m.webhook_deliveries.with(r).get())
}

/// What a receiver checks: the Bearer token verifies with the key, and its digest is the body's.
fn verify(r: &Received) -> HookClaims {
    let auth = r.headers.get("authorization").expect("an Authorization header");
    let token = auth.strip_prefix("Bearer ").expect("a Bearer token");
    assert_eq!(jsonwebtoken::decode_header(token).unwrap().kid.as_deref(), Some("hooks"));
    let key = DecodingKey::from_secret(SECRET.as_bytes());
    let claims = jsonwebtoken::decode::<HookClaims>(token, &key, &Validation::new(Algorithm::HS256)).unwrap().claims;
    assert_eq!(claims.sha256, body_digest(&r.body), "the signature is for this body");
    assert_eq!(r.headers.get("content-type").map(String::as_str), Some("application/json"));
    claims
}

#[tokio::test]
async fn a_failing_receiver_gets_the_same_signed_event_until_it_answers_2xx() {
    let metrics = Arc::new(Metrics::new());
    let (url, mut got) = receiver(vec![500, 503]).await;
    let ev = event(1);
    assert!(delivery(url, 5, &metrics).deliver(&ev).await);
    let attempts: Vec<Received> = std::iter::from_fn(|| got.try_recv().ok()).collect();
    assert_eq!(attempts.len(), 3, "two failures, then the delivery");
    for a in &attempts {
        verify(a);
        assert_eq!(a.body, ev.body(), "every attempt carries the same body, id included");
    }
    assert_eq!(counts(&metrics), [1, 2, 0], "delivered, retried, failed");
}

#[tokio::test]
async fn an_event_is_given_up_after_its_retries() {
    let metrics = Arc::new(Metrics::new());
    // A port nobody listens on: every attempt is refused at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let url = reqwest::Url::parse(&format!("http://{closed}/hook")).unwrap();
    assert!(!delivery(url, 2, &metrics).deliver(&event(1)).await);
    assert_eq!(counts(&metrics), [0, 2, 1], "two retries, then given up");
}

#[tokio::test]
async fn a_redirect_is_a_failure_and_not_followed() {
    let metrics = Arc::new(Metrics::new());
    let (url, mut got) = receiver(vec![302]).await;
    assert!(!delivery(url, 0, &metrics).deliver(&event(1)).await);
    assert_eq!(counts(&metrics), [0, 0, 1]);
    assert!(got.try_recv().is_ok() && got.try_recv().is_err(), "one POST, nothing sent to the Location");
}

#[tokio::test]
async fn events_go_out_in_queue_order_and_the_task_ends_with_its_queue() {
    let metrics = Arc::new(Metrics::new());
    // The second event needs a retry; the third still waits for it.
    let (url, mut got) = receiver(vec![200, 500]).await;
    let (tx, rx) = mpsc::channel(8);
    let events: Vec<Arc<HookEvent>> = (1..=3).map(|n| Arc::new(event(n))).collect();
    for e in &events {
        tx.try_send(e.clone()).unwrap();
    }
    drop(tx);
    tokio::time::timeout(Duration::from_secs(10), delivery(url, 3, &metrics).run(rx))
        .await
        .expect("the task ends once its queue is empty and closed");
    let bodies: Vec<Vec<u8>> = std::iter::from_fn(|| got.try_recv().ok()).map(|r| r.body).collect();
    let want: Vec<Vec<u8>> = [0, 1, 1, 2].iter().map(|&i| events[i].body()).collect();
    assert_eq!(bodies, want, "in order, the retried one before the next");
    assert_eq!(counts(&metrics), [3, 1, 0]);
}

#[test]
fn backoff_doubles_from_half_a_second_up_to_its_cap() {
    let b = Backoff::DEFAULT;
    let secs: Vec<f64> = (0..8).map(|n| b.delay(n).as_secs_f64()).collect();
    assert_eq!(secs, [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]);
    assert_eq!(b.delay(u32::MAX), Duration::from_secs(30), "no overflow");
}
