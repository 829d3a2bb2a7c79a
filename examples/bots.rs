//! A minimal load generator: N seed-protocol players in one room, each
//! sending a `move` 20 times a second (turning about once a second) and
//! reading every `state_update`. Prints updates/s per client, update gaps and
//! message sizes. Bounded in time; loopback or any address you give it.
//!
//! ```sh
//! cargo run --release --example bots -- ws://127.0.0.1:8765/ 200 10
//! ```
//! Arguments: URL, players (default 100), seconds (default 10).
//!
//! It speaks the seed protocol so the same bots can measure the seed's
//! Python server side by side.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

#[derive(Default)]
struct Stats {
    updates: u64,
    bytes: u64,
    gaps_us: Vec<u64>,
    failed: bool,
}

async fn bot(url: String, n: usize, run_for: Duration, start_at: Instant) -> Stats {
    let mut stats = Stats::default();
    let Ok(Ok((ws, _))) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(&url),
    )
    .await
    else {
        stats.failed = true;
        return stats;
    };
    let (mut tx, mut rx) = ws.split();
    let dirs = ["UP", "RIGHT", "DOWN", "LEFT"];
    let mut dir = n % 4;
    let mut pace = tokio::time::interval(Duration::from_millis(50));
    let end = start_at + run_for;
    let mut last: Option<Instant> = None;
    let mut sent = 0u64;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(end.into()) => break,
            _ = pace.tick() => {
                sent += 1;
                if sent % 20 == (n as u64 % 20) {
                    dir = (dir + 1) % 4;
                }
                let msg = format!(r#"{{"type":"move","direction":"{}"}}"#, dirs[dir]);
                if tx.send(Message::text(msg)).await.is_err() {
                    stats.failed = true;
                    break;
                }
            }
            msg = rx.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    // `contains`: the Python seed writes `"type": "state_update"` with a space.
                    if t.as_str().contains("state_update") {
                        let now = Instant::now();
                        // Measure only after everyone has connected.
                        if now >= start_at {
                            stats.updates += 1;
                            stats.bytes += t.len() as u64;
                            if let Some(prev) = last {
                                stats.gaps_us.push((now - prev).as_micros() as u64);
                            }
                        }
                        last = Some(now);
                    }
                }
                Some(Ok(_)) => {}
                _ => { stats.failed = true; break; }
            }
        }
    }
    stats
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0) as f64 / 1000.0
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "ws://127.0.0.1:8765/".into());
    let players: usize = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100)
        .min(20_000);
    let secs: u64 = args
        .get(3)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
        .min(600);
    // Connect everyone during a ramp, then measure for `secs`.
    let ramp = Duration::from_millis(2000 + players as u64 * 2);
    let start_at = Instant::now() + ramp;
    let mut tasks = Vec::new();
    for n in 0..players {
        tasks.push(tokio::spawn(bot(
            url.clone(),
            n,
            Duration::from_secs(secs),
            start_at,
        )));
        if n % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mut all_gaps = Vec::new();
    let (mut updates, mut bytes, mut failed) = (0u64, 0u64, 0usize);
    for t in tasks {
        if let Ok(s) = t.await {
            updates += s.updates;
            bytes += s.bytes;
            failed += usize::from(s.failed);
            all_gaps.extend(s.gaps_us);
        }
    }
    all_gaps.sort_unstable();
    let ok = players - failed;
    let per_client = updates as f64 / ok.max(1) as f64 / secs as f64;
    println!("| players | failed | updates/s per client | gap p50 ms | gap p99 ms | gap max ms | bytes/update |");
    println!(
        "| {players} | {failed} | {per_client:.2} | {:.1} | {:.1} | {:.1} | {:.0} |",
        pct(&all_gaps, 0.5),
        pct(&all_gaps, 0.99),
        pct(&all_gaps, 1.0),
        bytes as f64 / updates.max(1) as f64
    );
}
