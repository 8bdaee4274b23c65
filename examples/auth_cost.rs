//! What checking one access token costs: the median time of `Keyring::verify` over many runs,
//! the figure behind the S5 auth row of docs/benchmarks.md (a join's answer time with auth on).
//!
//! `cargo run --release --example auth_cost`

use std::time::{Instant, SystemTime, UNIX_EPOCH};
use switchboard::auth::{Grant, Keyring, RoomScope, Secret};

#[allow(clippy::print_stdout)]
fn main() {
    let ring = Keyring::new([("bench".to_string(), Secret::new("bench-only-secret-0123456789abcdef"))]);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let room = RoomScope::parse("demo").expect("a room id");
    let token = ring.mint("bench", "alice", &room, &[Grant::Publish, Grant::Subscribe], now, 3600).expect("mint");
    let mut per_round = Vec::new();
    for _ in 0..31 {
        let n = 20_000;
        let start = Instant::now();
        for _ in 0..n {
            std::hint::black_box(ring.verify(std::hint::black_box(&token), now).is_ok());
        }
        per_round.push(start.elapsed().as_nanos() as f64 / f64::from(n) / 1000.0);
    }
    per_round.sort_by(f64::total_cmp);
    println!(
        "token of {} bytes: verify median {:.2} us, min {:.2} us, max {:.2} us (31 rounds of 20,000)",
        token.len(),
        per_round[15],
        per_round[0],
        per_round[30]
    );
}
