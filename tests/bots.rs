//! `playfield bots` against a real server: every protocol connects, plays
//! and reports sensible numbers. The machine is shared and noisy, so the
//! bounds are loose: these check that the bots measure, not how fast we are.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use playfield::bots::{self, Args, BotProtocol, Report};

const CLIENTS: u32 = 20;

async fn run_bots(protocol: BotProtocol) -> Report {
    let server = TestServer::start().await;
    let mut args = Args::new(server.url("/"), protocol, CLIENTS);
    args.duration = Duration::from_secs(2);
    args.warmup = Duration::from_millis(500);
    // Half decode fully, half read only headers: both paths are exercised.
    args.decode_clients = Some(CLIENTS / 2);
    let report = bots::run(args).await;
    let json = serde_json::to_value(&report).unwrap();
    for key in [
        "clients_requested",
        "clients_connected",
        "updates_per_client_per_s",
        "gap_ms_p50",
        "gap_ms_p99",
        "latency_ms_p50",
        "latency_ms_p99",
        "bytes_per_update",
        "bytes_in_per_s",
        "disconnects",
    ] {
        assert!(json.get(key).is_some(), "report lacks `{key}`: {json}");
    }
    assert_eq!(report.clients_connected, CLIENTS, "{json}");
    assert_eq!(report.clients_open_at_end, CLIENTS, "{json}");
    assert_eq!(report.disconnects, 0, "{json}");
    assert_eq!(report.decode_errors, 0, "{json}");
    assert_eq!(report.server_errors, 0, "{json}");
    // 20 Hz by default: loose bounds, the machine is shared.
    assert!(
        report.updates_per_client_per_s > 10.0 && report.updates_per_client_per_s < 30.0,
        "{json}"
    );
    assert!(report.inputs_per_client_per_s > 10.0, "{json}");
    assert!(report.gap_ms_p50.is_some_and(|g| g > 0.0), "{json}");
    assert!(report.latency_samples > 0, "{json}");
    assert!(report.latency_ms_p50.is_some_and(|l| l > 0.0), "{json}");
    assert!(report.bytes_per_update.is_some_and(|b| b > 0.0), "{json}");
    assert!(report.bytes_in_per_s > 0.0, "{json}");
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bin_bots_play_and_measure() {
    let report = run_bots(BotProtocol::Bin).await;
    // Moving dots cost a few bytes each in a delta.
    let per_entity = report.bytes_per_moving_entity.unwrap();
    assert!(per_entity > 1.0 && per_entity < 20.0, "{report:?}");
    assert!(report.ticks_missed_ratio.is_some(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_bots_play_and_measure() {
    let report = run_bots(BotProtocol::Json).await;
    assert_eq!(report.bytes_per_moving_entity, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_bots_play_and_measure() {
    // Latency on seed comes from the decoding half only.
    run_bots(BotProtocol::Seed).await;
}

/// A port nobody listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// No server: every bot fails, the run still ends with a report (in-process)
/// and, from the binary, the JSON line last on stdout and a failing exit.
#[tokio::test]
async fn nothing_to_connect_to_still_reports() {
    let url = format!("ws://127.0.0.1:{}/", closed_port());
    let mut args = Args::new(url.clone(), BotProtocol::Json, 3);
    args.duration = Duration::from_millis(200);
    let report = tokio::time::timeout(Duration::from_secs(30), bots::run(args))
        .await
        .expect("the run ends by itself");
    assert_eq!(report.clients_connected, 0);
    assert_eq!(report.disconnects, 3);
    assert_eq!(report.connect_failures, 3);

    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_playfield"))
            .args(["bots", "--url", &url, "--clients", "2", "--duration", "0.2"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().expect("a JSON line");
    let v: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(v["clients_requested"], 2);
    assert_eq!(v["clients_connected"], 0);
    assert_eq!(v["disconnects"], 2);
}

/// The window is marked on stderr for scripts that sample the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_marks_the_window_and_prints_json_last() {
    let server = TestServer::start().await;
    let url = server.url("/ws");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_playfield"))
            .args([
                "bots",
                "--url",
                &url,
                "--clients",
                "5",
                "--duration",
                "1",
                "--warmup",
                "0.2",
                "--protocol",
                "bin",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let start = stderr.find("BOTS_WINDOW_START\n").expect(&stderr);
    let end = stderr.find("BOTS_WINDOW_END\n").expect(&stderr);
    assert!(start < end, "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(v["clients_connected"], 5, "{v}");
    assert_eq!(v["protocol"], "bin", "{v}");
}
