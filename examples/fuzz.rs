//! A bounded random-input runner for every decoder that reads network input:
//! the JSON text decoder (seed and native), the binary client-message decoder,
//! and the binary snapshot decoder (`Replica`, what bots and tests use).
//!
//!     cargo run --release --example fuzz -- [--inputs N] [--seconds S] [--seed K]
//!
//! Inputs are random bytes, random JSON, and mutations (bit flips, cuts,
//! insertions, splices) of valid messages, so most of them get past the
//! first byte. Every call runs under `catch_unwind`: a panic is a failure
//! (exit 1) and is printed with the input. It stops after N inputs or S
//! seconds, whichever comes first, and prints one JSON line of counts.
//!
//! Why not cargo-fuzz: it needs a nightly toolchain, which cannot be
//! installed here. This runs on stable, in CI-sized bounds
//! (`tests/fuzz_smoke.rs` runs it briefly), and for 10M+ inputs by hand.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use playfield::dots::{DotGame, DotInput};
use playfield::protocol::bin::{self, Replica};
use playfield::protocol::{decode, decode_binary, Protocol};
use playfield::replicate::{Entity, FieldKind, Value, World};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

struct Args {
    inputs: u64,
    seconds: f64,
    seed: u64,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        inputs: 1_000_000,
        seconds: 600.0,
        seed: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = || format!("{flag}: `{value}` is not a number");
        match flag.as_str() {
            "--inputs" => a.inputs = value.parse().map_err(|_| bad())?,
            "--seconds" => a.seconds = value.parse().map_err(|_| bad())?,
            "--seed" => a.seed = value.parse().map_err(|_| bad())?,
            _ => {
                return Err(format!(
                    "unknown flag {flag}; use --inputs, --seconds, --seed"
                ))
            }
        }
    }
    Ok(a)
}

/// Valid messages to mutate.
fn corpus() -> (Vec<Vec<u8>>, Vec<String>, Vec<Vec<u8>>) {
    let client_bin = vec![
        bin::encode_input(1, &DotInput::steer(1.0, 0.0)),
        bin::encode_input(u32::MAX, &DotInput::steer(-0.5, 0.25)),
        bin::encode_ping(7),
    ];
    let texts = [
        r#"{"type":"move","direction":"UP"}"#,
        r#"{"type":"input","seq":5,"input":{"x":1,"y":-1}}"#,
        r#"{"type":"ping","id":3}"#,
        r#"{"type":"input","seq":4294967295,"input":{"x":0.5,"y":0}}"#,
    ]
    .map(String::from)
    .to_vec();
    // Real snapshots from the encoder: a full one and deltas.
    let world = |t: f64| {
        let mut w = World::new(&playfield::dots::SCHEMA);
        for id in 1..=12u64 {
            let x = 100.0 + id as f64 * 10.0 + t * (id % 3) as f64;
            w.push(
                Entity { id, x, y: 50.0 + t },
                [Value::Str(Arc::from("#abcdef"))],
            );
        }
        w.finish();
        w
    };
    let mut snaps = Vec::new();
    let (a, b) = (world(0.0), world(7.0));
    let mut full = Vec::new();
    bin::put_header(
        &mut full,
        &bin::Header {
            tick: 1,
            ack: 0,
            base: 0,
            own: Some((100.0, 50.0)),
        },
    );
    bin::encode_full(&a, &mut full);
    let mut delta = Vec::new();
    bin::put_header(
        &mut delta,
        &bin::Header {
            tick: 2,
            ack: 1,
            base: 1,
            own: None,
        },
    );
    bin::encode_delta(&a, &b, &mut delta);
    snaps.push(full);
    snaps.push(delta);
    (client_bin, texts, snaps)
}

fn mutate(rng: &mut SmallRng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        match rng.random_range(0..5) {
            0 if !v.is_empty() => {
                let i = rng.random_range(0..v.len());
                v[i] ^= 1 << rng.random_range(0..8);
            }
            1 if !v.is_empty() => {
                let cut = rng.random_range(0..v.len());
                v.truncate(cut);
            }
            2 => {
                let i = rng.random_range(0..=v.len());
                v.insert(i, rng.random());
            }
            3 if !v.is_empty() => {
                let i = rng.random_range(0..v.len());
                v[i] = [0x00, 0x7f, 0x80, 0xff, b'"', b'{', b'}'][rng.random_range(0..7)];
            }
            _ => {
                let i = rng.random_range(0..=v.len());
                let extra: Vec<u8> = (0..rng.random_range(0..8)).map(|_| rng.random()).collect();
                v.splice(i..i, extra);
            }
        }
    }
    v
}

fn random_json(rng: &mut SmallRng, depth: u32) -> serde_json::Value {
    use serde_json::{json, Value as J};
    match rng.random_range(0..if depth > 2 { 5 } else { 8 }) {
        0 => J::Null,
        1 => J::Bool(rng.random()),
        2 => json!(rng.random::<i64>()),
        3 => json!(rng.random::<f64>() * 1e12 - 5e11),
        4 => {
            J::String(["UP", "input", "move", "ping", "", "é\u{0}"][rng.random_range(0..6)].into())
        }
        5 => J::Array(
            (0..rng.random_range(0..4))
                .map(|_| random_json(rng, depth + 1))
                .collect(),
        ),
        _ => {
            let keys = ["type", "seq", "input", "x", "y", "id", "direction", "extra"];
            let mut m = serde_json::Map::new();
            for _ in 0..rng.random_range(0..5) {
                m.insert(
                    keys[rng.random_range(0..keys.len())].into(),
                    random_json(rng, depth + 1),
                );
            }
            J::Object(m)
        }
    }
}

fn main() -> std::process::ExitCode {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fuzz: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    // Panics are caught and counted; keep the default hook from printing each.
    std::panic::set_hook(Box::new(|_| {}));
    let mut rng = SmallRng::seed_from_u64(a.seed);
    let (client_bin, texts, snaps) = corpus();
    let kinds = [FieldKind::Str];
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let mut panics = 0u64;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(a.seconds);
    let mut n = 0u64;
    while n < a.inputs && (!n.is_multiple_of(4096) || Instant::now() < deadline) {
        n += 1;
        let which = rng.random_range(0..6);
        let input: Vec<u8> = match which {
            0 => (0..rng.random_range(0..48)).map(|_| rng.random()).collect(),
            1 => {
                let i = rng.random_range(0..client_bin.len());
                mutate(&mut rng, &client_bin[i])
            }
            2 => random_json(&mut rng, 0).to_string().into_bytes(),
            3 => {
                let i = rng.random_range(0..texts.len());
                mutate(&mut rng, texts[i].as_bytes())
            }
            _ => {
                let i = rng.random_range(0..snaps.len());
                mutate(&mut rng, &snaps[i])
            }
        };
        let result = catch_unwind(AssertUnwindSafe(|| {
            let mut seen = Vec::new();
            if let Ok(text) = std::str::from_utf8(&input) {
                for p in [Protocol::Seed, Protocol::NativeJson, Protocol::NativeBin] {
                    seen.push(match decode::<DotGame>(p, text) {
                        Ok(_) => "text:ok".to_owned(),
                        Err(e) => format!("text:{}", e.code.as_str()),
                    });
                }
            }
            seen.push(match decode_binary::<DotGame>(&input) {
                Ok(_) => "bin:ok".to_owned(),
                Err(e) => format!("bin:{}", e.code.as_str()),
            });
            let mut replica = Replica::default();
            // Deltas need their base: apply a full snapshot first.
            let _ = replica.apply(&snaps[0], &kinds);
            seen.push(match replica.apply(&input, &kinds) {
                Ok(_) => "snapshot:ok".to_owned(),
                Err(e) => format!("snapshot:{e:?}")
                    .split([' ', '(', '{'])
                    .next()
                    .unwrap_or("")
                    .to_owned(),
            });
            seen
        }));
        match result {
            Ok(seen) => {
                for s in seen {
                    *outcomes.entry(s).or_default() += 1;
                }
            }
            Err(_) => {
                panics += 1;
                if panics <= 5 {
                    eprintln!("PANIC on input {n}: {input:02x?}");
                }
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "inputs": n,
            "seconds": (secs * 10.0).round() / 10.0,
            "inputs_per_s": (n as f64 / secs).round(),
            "seed": a.seed,
            "panics": panics,
            "outcomes": outcomes,
        })
    );
    if panics == 0 {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
