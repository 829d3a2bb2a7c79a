//! What a soak run reads from the server while it plays: `GET /rooms` and
//! `GET /metrics` on the host of `--url`, over plain HTTP/1.1 with short
//! timeouts (a missing answer is reported, never fatal).

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest a scrape may take.
const TIMEOUT: Duration = Duration::from_secs(2);
/// Largest answer read.
const MAX_BODY: u64 = 4 << 20;

/// The server's numbers that tell whether it holds up over time.
pub(super) async fn scrape(ws_url: &str) -> Value {
    let Some(host) = host_of(ws_url) else {
        return json!({"error": "only ws:// URLs can be scraped"});
    };
    let rooms = get(&host, "/rooms").await;
    let metrics = get(&host, "/metrics").await;
    let mut out = json!({});
    match rooms.and_then(|b| serde_json::from_str::<Value>(&b).map_err(|e| e.to_string())) {
        Ok(v) => {
            out["players"] = v["players"].clone();
            out["rooms"] = json!(v["rooms"].as_array().map_or(0, Vec::len));
            if let Some(r) = v["rooms"].get(0) {
                out["tick_p99_ms"] = r["tick"]["p99_ms"].clone();
                out["ticks_over_budget"] = r["tick"]["over_budget"].clone();
                out["fanout_p99_ms"] = r["fanout"]["p99_ms"].clone();
            }
        }
        Err(e) => out["rooms_error"] = json!(e),
    }
    match metrics {
        Ok(text) => {
            for (key, name) in [
                ("ticks_overrun", "playfield_ticks_overrun_total"),
                ("snapshots_skipped", "playfield_snapshots_skipped_total"),
                ("inputs_dropped", "playfield_inputs_dropped_total"),
                ("rss_bytes", "playfield_resident_memory_bytes"),
                ("open_fds", "playfield_open_fds"),
                ("connections_open", "playfield_connections_open"),
                ("players_suspended", "playfield_players_suspended"),
            ] {
                if let Some(v) = sample(&text, name) {
                    out[key] = json!(v);
                }
            }
        }
        Err(e) => out["metrics_error"] = json!(e),
    }
    out
}

/// `host:port` of a `ws://` URL.
fn host_of(url: &str) -> Option<String> {
    let rest = url.strip_prefix("ws://")?;
    let host = rest.split(['/', '?']).next()?;
    Some(if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:80")
    })
}

/// The value of an unlabelled sample in the text exposition format.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

async fn get(host: &str, path: &str) -> Result<String, String> {
    let work = async {
        let mut s = TcpStream::connect(host).await.map_err(|e| e.to_string())?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        s.take(MAX_BODY)
            .read_to_end(&mut buf)
            .await
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        match text.split_once("\r\n\r\n") {
            Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_owned()),
            Some((head, _)) => Err(head.lines().next().unwrap_or("").to_owned()),
            None => Err("no HTTP answer".to_owned()),
        }
    };
    tokio::time::timeout(TIMEOUT, work)
        .await
        .map_err(|_| format!("GET {path} timed out"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_hosts_and_samples() {
        assert_eq!(
            host_of("ws://127.0.0.1:9/ws?room=a").as_deref(),
            Some("127.0.0.1:9")
        );
        assert_eq!(
            host_of("ws://example.com/").as_deref(),
            Some("example.com:80")
        );
        assert_eq!(host_of("wss://x/"), None);
        let text = "# TYPE x counter\nplayfield_open_fds 12\nplayfield_open_fds_extra 3\n";
        assert_eq!(sample(text, "playfield_open_fds"), Some(12.0));
        assert_eq!(sample(text, "nope"), None);
    }
}
