//! The `playfield` binary as a user runs it: settings from flags and the
//! environment, the printed address, and shutdown on SIGTERM / SIGINT.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

struct Running {
    child: Child,
    addr: String,
    stdout: BufReader<std::process::ChildStdout>,
}

// `Running` reaps the child in `Drop`, which the lint cannot see.
#[allow(clippy::zombie_processes)]
fn start(args: &[&str], env: &[(&str, &str)]) -> Running {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_playfield"));
    cmd.args(args)
        .env_remove("PORT")
        .env_remove("HOST")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "exited before listening"
        );
        if let Some(rest) = line.split("listening on http://").nth(1) {
            let addr = rest.split('/').next().unwrap().to_owned();
            return Running {
                child,
                addr,
                stdout,
            };
        }
    }
}

impl Drop for Running {
    /// A failed test must not leave a server behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// Waits for the process to exit; returns its status and the rest of stdout.
fn wait_exit(run: &mut Running, within: Duration) -> (std::process::ExitStatus, String) {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = run.child.try_wait().unwrap() {
            let mut rest = String::new();
            use std::io::Read;
            run.stdout.read_to_string(&mut rest).unwrap();
            return (status, rest);
        }
        if Instant::now() > deadline {
            let _ = run.child.kill();
            panic!("process did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn shutdown_by(sig: &str, mut run: Running) {
    let mut seed = connect(&format!("ws://{}/", run.addr), None).await;
    let _ = next_of(&mut seed, "init").await;
    let mut native = connect(
        &format!("ws://{}/ws?room=b", run.addr),
        Some("playfield.v1.json"),
    )
    .await;
    let _ = next_of(&mut native, "welcome").await;
    signal(&run.child, sig);
    for ws in [&mut seed, &mut native] {
        let close = expect_close(ws).await;
        assert_eq!(u16::from(close.code), 1001);
        assert_eq!(close.reason.as_str(), "server shutting down");
    }
    let (status, rest) =
        tokio::task::spawn_blocking(move || wait_exit(&mut run, Duration::from_secs(5)))
            .await
            .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(rest.contains("Player 1 disconnected"), "{rest}");
    assert!(rest.contains("playfield: stopped"), "{rest}");
}

#[tokio::test]
async fn sigterm_closes_clients_with_1001_and_exits() {
    let run = start(&["--host", "127.0.0.1", "--port", "0"], &[]);
    shutdown_by("-TERM", run).await;
}

/// Settings come from the environment too (`PORT`, `HOST`, `PLAYFIELD_*`).
#[tokio::test]
async fn sigint_and_settings_from_the_environment() {
    let run = start(
        &[],
        &[
            ("PORT", "0"),
            ("HOST", "127.0.0.1"),
            ("PLAYFIELD_DEFAULT_ROOM", "arena"),
            ("PLAYFIELD_TICK_RATE", "30"),
            // Resuming off: the dropped player below leaves at once.
            ("PLAYFIELD_RESUME_GRACE", "0"),
        ],
    );
    let mut ws = connect(&format!("ws://{}/ws", run.addr), Some("playfield.v1.json")).await;
    let welcome = next_of(&mut ws, "welcome").await;
    assert_eq!(welcome["room"], "arena");
    assert_eq!(welcome["tick_rate"], 30);
    assert_eq!(welcome.get("resume_token"), None, "resuming is off");
    drop(ws);
    shutdown_by("-INT", run).await;
}

/// A bad setting is refused at start with what is allowed.
#[test]
fn bad_settings_are_explained() {
    for (args, expect) in [
        (vec!["--tick-rate", "0"], "1..=240"),
        (vec!["--default-room", "no spaces"], "may only contain"),
        (vec!["--idle-timeout", "soon"], "number of seconds"),
        (
            vec!["--ping-interval", "10", "--idle-timeout", "15"],
            "at least twice --ping-interval",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_playfield"))
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect), "{args:?}: {err}");
    }
}
