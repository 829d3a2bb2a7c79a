//! Micro-benchmarks of the per-tick hot paths: the game tick, sorting
//! entities into cells, the shared binary pieces, one client's message, the
//! JSON encodings, and view queries. `cargo bench --bench hot_paths`.
//!
//! Wall-clock numbers on a shared machine are noisy; compare runs on the
//! same machine, and see BENCHMARKS.md for the end-to-end load runs.

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use playfield::dots::{DotGame, DotInput};
use playfield::game::{Game, Settings};
use playfield::interest::{CellIndex, Grid};
use playfield::protocol::encoder::Encoder;
use playfield::protocol::Protocol;
use playfield::replicate::World;
use playfield::snapshot::{EncodeCache, Snapshot};

/// A game of `n` players in a `size` px world, everyone steering somewhere.
fn game(n: u64, size: f64) -> DotGame {
    let mut g = DotGame::new(&Settings {
        world_size: size,
        ..Settings::with_seed(1)
    });
    for p in 1..=n {
        g.join(p);
    }
    g
}

fn steer(g: &mut DotGame, n: u64, t: u64) {
    const DIRS: [(f64, f64); 8] = [
        (1.0, 0.0),
        (-1.0, 0.0),
        (0.0, 1.0),
        (0.0, -1.0),
        (1.0, 1.0),
        (-1.0, 1.0),
        (1.0, -1.0),
        (-1.0, -1.0),
    ];
    for p in 1..=n {
        let (x, y) = DIRS[((p * 7 + t / 20) % 8) as usize];
        g.input(p, DotInput::steer(x, y));
    }
}

fn world_of(g: &DotGame, n: usize) -> World {
    let mut w = World::with_capacity(DotGame::SCHEMA, n);
    g.replicate(&mut w);
    w.finish();
    w
}

/// Two consecutive snapshots of `n` moving players, as a room publishes them.
fn snapshots(n: u64, size: f64, view: f64) -> (Snapshot, Snapshot) {
    let grid = Grid::new(size, view);
    let mut g = game(n, size);
    let mut publish = |tick: u64, prev: Option<(Arc<World>, Arc<CellIndex>)>| {
        steer(&mut g, n, tick);
        g.tick();
        let w = world_of(&g, n as usize);
        let cells = Arc::new(CellIndex::build(&grid, &w));
        Snapshot {
            tick,
            time: 0.0,
            grid,
            world: Arc::new(w),
            cells,
            prev,
            acks: (1..=n).map(|p| (p, tick as u32)).collect(),
            cache: EncodeCache::default(),
            published: std::time::Instant::now(),
        }
    };
    let a = publish(1, None);
    let prev = Some((Arc::clone(&a.world), Arc::clone(&a.cells)));
    let b = publish(2, prev);
    (a, b)
}

fn tick(c: &mut Criterion) {
    let mut group = c.benchmark_group("tick");
    for &(n, size) in &[(1_000u64, 500.0), (2_000, 500.0), (10_000, 10_000.0)] {
        let grid = Grid::new(size, 500.0);
        let mut g = game(n, size);
        let mut t = 0;
        group.throughput(Throughput::Elements(n));
        group.bench_function(BenchmarkId::new("dots_step_replicate_index", n), |b| {
            b.iter(|| {
                t += 1;
                steer(&mut g, n, t);
                g.tick();
                let w = world_of(&g, n as usize);
                CellIndex::build(&grid, &w)
            })
        });
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for &(n, size) in &[(1_000u64, 500.0), (10_000, 10_000.0)] {
        let (a, b) = snapshots(n, size, 500.0);
        group.throughput(Throughput::Elements(n));
        // The shared per-tick work: every cell's delta piece.
        group.bench_function(BenchmarkId::new("bin_pieces_per_tick", n), |bench| {
            bench.iter(|| {
                let s = Snapshot {
                    cache: EncodeCache::default(),
                    prev: b.prev.clone(),
                    acks: Vec::new(),
                    ..clone_snapshot(&b)
                };
                let mut e = Encoder::new(Protocol::NativeBin);
                e.snapshot(&s, 1).map(|m| m.into_message())
            })
        });
        // One more client's message once the pieces exist: the per-client cost.
        let mut enc: Vec<Encoder> = (1..=64)
            .map(|p| {
                let mut e = Encoder::new(Protocol::NativeBin);
                e.snapshot(&a, p);
                e
            })
            .collect();
        let _ = Encoder::new(Protocol::NativeBin).snapshot(&b, 1);
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::new("bin_one_client", n), |bench| {
            let mut i = 0usize;
            bench.iter(|| {
                i = (i + 1) % enc.len();
                // Rewind the baseline so every call is a delta from tick 1.
                enc[i] = Encoder::new(Protocol::NativeBin);
                enc[i].snapshot(&a, i as u64 + 1);
                // The frame's length: no copy, as the server writes it.
                enc[i].snapshot(&b, i as u64 + 1).map(|m| match m {
                    playfield::protocol::encoder::Outgoing::Framed { frame, .. } => frame.len(),
                    _ => 0,
                })
            })
        });
    }
    let (_, b) = snapshots(800, 500.0, 500.0);
    group.throughput(Throughput::Elements(800));
    group.bench_function("seed_json_800", |bench| {
        bench.iter(|| {
            let s = Snapshot {
                cache: EncodeCache::default(),
                prev: None,
                acks: Vec::new(),
                ..clone_snapshot(&b)
            };
            Encoder::new(Protocol::Seed)
                .snapshot(&s, 1)
                .map(|m| m.into_message())
        })
    });
    group.finish();
}

/// A snapshot's typed parts (the cache is per snapshot, so not cloned).
fn clone_snapshot(s: &Snapshot) -> Snapshot {
    Snapshot {
        tick: s.tick,
        time: s.time,
        grid: s.grid,
        world: Arc::clone(&s.world),
        cells: Arc::clone(&s.cells),
        prev: s.prev.clone(),
        acks: s.acks.clone(),
        cache: EncodeCache::default(),
        published: s.published,
    }
}

/// What a decoding bot (or test) pays per message: the reference decoder.
fn decode(c: &mut Criterion) {
    use playfield::protocol::bin::Replica;
    let (a, b) = snapshots(1_000, 500.0, 500.0);
    let kinds = [playfield::replicate::FieldKind::Str];
    let bytes =
        |m: Option<playfield::protocol::encoder::Outgoing>| match m.map(|m| m.into_message()) {
            Some(playfield::ws::Message::Binary(b)) => b.to_vec(),
            _ => Vec::new(),
        };
    let mut enc = Encoder::new(Protocol::NativeBin);
    let full = bytes(enc.snapshot(&a, 1));
    let delta = bytes(enc.snapshot(&b, 1));
    let mut base = Replica::default();
    let _ = base.apply(&full, &kinds);
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(1_000));
    group.bench_function("replica_delta_1000_moving", |bench| {
        bench.iter_batched(
            || base.clone(),
            |mut r| r.apply(&delta, &kinds).map(|h| h.tick),
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn views(c: &mut Criterion) {
    let grid = Grid::new(10_000.0, 500.0);
    let mut out = Vec::new();
    let mut x = 0.0;
    c.bench_function("view/cells_around_a_player", |b| {
        b.iter(|| {
            x = (x + 37.0) % 10_000.0;
            grid.view_cells(x, 10_000.0 - x, &mut out);
            out.len()
        })
    });
}

criterion_group!(benches, tick, encode, decode, views);
criterion_main!(benches);
