//! The dot game: the seed's game, made authoritative.
//!
//! A 500x500 map of coloured dots. Each player steers their dot; it moves at
//! 200 px/s (10 px per tick at the default 20 Hz) and stays inside
//! `[10, 490]` on both axes.

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::game::{Game, PlayerId, SeedDirection, Settings};
use crate::replicate::{Entity, Field, FieldKind, Schema, Value, World};

/// Width and height of the seed's square map, in pixels (the default
/// `--world-size`).
pub const WORLD_SIZE: f64 = 500.0;
/// Smallest coordinate a dot's centre may take (the seed's 10 px margin).
pub const MIN: f64 = 10.0;
/// Largest coordinate a dot's centre may take in the seed's map.
pub const MAX: f64 = 490.0;
/// Distance from the edge inside which dots do not spawn (the seed's 50 px).
const SPAWN_MARGIN: f64 = 50.0;
/// Speed in px/s: the seed's 10 px step, 20 times a second.
pub const SPEED: f64 = 200.0;
/// Dot radius in pixels, for renderers.
pub const RADIUS: f64 = 10.0;

/// Pixels one seed `move` travels, whatever the tick rate.
pub const SEED_STEP: f64 = 10.0;

/// One tick of steering: a direction vector. Components outside `[-1, 1]` are
/// clamped and vectors longer than 1 are normalised, so diagonals are not
/// faster than straight lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DotInput {
    pub x: f64,
    pub y: f64,
    /// A seed `move`: travel [`SEED_STEP`] pixels at full speed, spread over
    /// as many ticks as that takes at the current tick rate (one at 20 Hz).
    /// Never on the wire.
    #[serde(skip)]
    pub seed_step: bool,
}

impl DotInput {
    /// One tick of steering towards `(x, y)`.
    pub const fn steer(x: f64, y: f64) -> Self {
        DotInput {
            x,
            y,
            seed_step: false,
        }
    }

    /// The unit-or-shorter direction this input asks for.
    fn direction(self) -> (f64, f64) {
        let clamp = |v: f64| {
            if v.is_finite() {
                v.clamp(-1.0, 1.0)
            } else {
                0.0
            }
        };
        let (x, y) = (clamp(self.x), clamp(self.y));
        // `hypot`, like the browser client's `Math.hypot`, so both sides
        // compute bit-identical steps.
        let len = x.hypot(y);
        if len > 1.0 {
            (x / len, y / len)
        } else {
            (x, y)
        }
    }
}

#[derive(Debug, Clone)]
struct Dot {
    /// Full f64 precision: clients predict it bit for bit. The binary
    /// protocol sends other players' dots on a 1/8 px grid and each client's
    /// own dot exactly.
    x: f64,
    y: f64,
    color: Arc<str>,
    /// Direction to move this tick; reset after every tick so a player only
    /// moves on ticks where an input was applied.
    steer: (f64, f64),
    /// Where seed moves are taking the dot, and in which direction. Each
    /// `move` pushes the target 10 px on (at most two moves ahead of the dot);
    /// the dot travels at most one tick's worth towards it per tick, so seed
    /// clients move 10 px per `move` at any tick rate and floods gain no speed.
    /// A target, not a distance, so the dot lands on whole pixels exactly.
    travel: Option<((f64, f64), (f64, f64))>,
}

/// What the dot game replicates: each player's dot and its colour.
pub static SCHEMA: Schema = Schema {
    collection: "players",
    fields: &[Field {
        name: "color",
        kind: FieldKind::Str,
    }],
};

/// One dot as clients see it.
#[derive(Debug, Clone, PartialEq)]
pub struct DotView {
    pub id: PlayerId,
    pub x: f64,
    pub y: f64,
    pub color: Arc<str>,
}

/// What a client needs to render and predict the dot game.
#[derive(Debug, Serialize)]
pub struct DotInfo {
    pub width: f64,
    pub height: f64,
    pub speed: f64,
    pub min: f64,
    pub max: f64,
    pub radius: f64,
}

/// The dot game's state: players by id, in id order so snapshots are stable.
#[derive(Debug)]
pub struct DotGame {
    rng: SmallRng,
    /// Pixels per tick at full speed.
    step: f64,
    /// Side of the map.
    size: f64,
    /// Largest coordinate a dot's centre may take: `size - MIN`.
    max: f64,
    dots: BTreeMap<PlayerId, Dot>,
}

impl DotGame {
    /// Position of a player, if present.
    pub fn position(&self, player: PlayerId) -> Option<(f64, f64)> {
        self.dots.get(&player).map(|d| (d.x, d.y))
    }

    /// Puts a player at a given position (clamped); for tests and tools.
    pub fn place(&mut self, player: PlayerId, x: f64, y: f64) {
        if let Some(dot) = self.dots.get_mut(&player) {
            dot.x = x.clamp(MIN, self.max);
            dot.y = y.clamp(MIN, self.max);
        }
    }

    /// Number of players.
    pub fn len(&self) -> usize {
        self.dots.len()
    }

    /// True when nobody is playing.
    pub fn is_empty(&self) -> bool {
        self.dots.is_empty()
    }

    /// Every dot, in id order.
    pub fn views(&self) -> Vec<DotView> {
        self.dots
            .iter()
            .map(|(&id, d)| DotView {
                id,
                x: d.x,
                y: d.y,
                color: Arc::clone(&d.color),
            })
            .collect()
    }
}

/// One step of `step` px along `d`, clamped to `[MIN, max]`.
fn advance(v: f64, d: f64, step: f64, max: f64) -> f64 {
    (v + d * step).clamp(MIN, max)
}

impl Game for DotGame {
    type Input = DotInput;
    type Info = DotInfo;
    const SCHEMA: &'static Schema = &SCHEMA;

    fn new(settings: &Settings) -> Self {
        // A world too small for the margins is treated as the smallest that fits them.
        let size = settings.world_size.max(2.0 * SPAWN_MARGIN);
        DotGame {
            rng: SmallRng::seed_from_u64(settings.seed),
            step: SPEED / f64::from(settings.tick_rate.max(1)),
            size,
            max: size - MIN,
            dots: BTreeMap::new(),
        }
    }

    fn join(&mut self, player: PlayerId) {
        // Whole pixels, uniform in [50, size - 50] like the seed's randint(50, 450).
        let spawn = SPAWN_MARGIN as i64..=(self.size - SPAWN_MARGIN).floor() as i64;
        let x = self.rng.random_range(spawn.clone()) as f64;
        let y = self.rng.random_range(spawn) as f64;
        let color = Arc::from(format!("#{:06x}", self.rng.random_range(0..=0xFF_FFFFu32)));
        self.dots.insert(
            player,
            Dot {
                x,
                y,
                color,
                steer: (0.0, 0.0),
                travel: None,
            },
        );
    }

    fn leave(&mut self, player: PlayerId) {
        self.dots.remove(&player);
    }

    fn input(&mut self, player: PlayerId, input: DotInput) {
        let Some(dot) = self.dots.get_mut(&player) else {
            return;
        };
        let direction = input.direction();
        let max = self.max;
        if input.seed_step {
            let (bx, by) = match dot.travel {
                Some((dir, target)) if dir == direction => target,
                _ => (dot.x, dot.y),
            };
            let (dx, dy) = direction;
            let ahead = |from: f64, to: f64, d: f64| {
                let to = to.clamp(MIN, max);
                // Never more than two moves ahead of the dot.
                if d > 0.0 {
                    to.min(from + 2.0 * SEED_STEP)
                } else if d < 0.0 {
                    to.max(from - 2.0 * SEED_STEP)
                } else {
                    to
                }
            };
            let target = (
                ahead(dot.x, bx + dx * SEED_STEP, dx),
                ahead(dot.y, by + dy * SEED_STEP, dy),
            );
            dot.travel = Some((direction, target));
        } else {
            dot.steer = direction;
        }
    }

    fn tick(&mut self) {
        for dot in self.dots.values_mut() {
            let (dx, dy) = std::mem::take(&mut dot.steer);
            if (dx, dy) != (0.0, 0.0) {
                dot.x = advance(dot.x, dx, self.step, self.max);
                dot.y = advance(dot.y, dy, self.step, self.max);
            } else if let Some(((tx, ty), (gx, gy))) = dot.travel {
                // Seed moves: one tick of travel towards the target, landing
                // on it exactly (within a millipixel counts as there).
                let dist = (gx - dot.x).hypot(gy - dot.y);
                if dist <= self.step + 1e-3 {
                    (dot.x, dot.y) = (gx, gy);
                    dot.travel = None;
                } else {
                    dot.x = advance(dot.x, tx, self.step, self.max);
                    dot.y = advance(dot.y, ty, self.step, self.max);
                }
            }
        }
    }

    fn replicate(&self, world: &mut World) {
        for (&id, d) in &self.dots {
            world.push(
                Entity { id, x: d.x, y: d.y },
                [Value::Str(Arc::clone(&d.color))],
            );
        }
    }

    fn info(&self) -> DotInfo {
        DotInfo {
            width: self.size,
            height: self.size,
            speed: SPEED,
            min: MIN,
            max: self.max,
            radius: RADIUS,
        }
    }

    fn seed_move(direction: SeedDirection) -> Option<DotInput> {
        let (x, y) = match direction {
            SeedDirection::Up => (0.0, -1.0),
            SeedDirection::Down => (0.0, 1.0),
            SeedDirection::Left => (-1.0, 0.0),
            SeedDirection::Right => (1.0, 0.0),
        };
        Some(DotInput {
            x,
            y,
            seed_step: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn game_with(players: &[PlayerId]) -> DotGame {
        let mut g = DotGame::new(&Settings::with_seed(7));
        for &p in players {
            g.join(p);
        }
        g
    }

    #[test]
    fn spawns_on_integer_positions_inside_the_spawn_square() {
        let g = game_with(&(1..=200).collect::<Vec<_>>());
        for v in g.views() {
            assert!((50.0..=450.0).contains(&v.x) && (50.0..=450.0).contains(&v.y));
            assert_eq!(v.x.fract(), 0.0);
            assert_eq!(v.color.len(), 7);
            assert!(v.color.starts_with('#'));
            assert!(u32::from_str_radix(&v.color[1..], 16).is_ok());
        }
    }

    #[test]
    fn same_seed_same_world() {
        let a = game_with(&[1, 2, 3]).views();
        let b = game_with(&[1, 2, 3]).views();
        assert_eq!(a, b);
        let c = {
            let mut g = DotGame::new(&Settings::with_seed(8));
            g.join(1);
            g.views()
        };
        assert_ne!(a[0], c[0]);
    }

    #[test]
    fn one_input_moves_one_step_of_ten_pixels() {
        let mut g = game_with(&[1]);
        g.place(1, 100.0, 100.0);
        g.input(1, DotInput::steer(1.0, 0.0));
        g.tick();
        assert_eq!(g.position(1), Some((110.0, 100.0)));
        // No input on the next tick: the dot stays.
        g.tick();
        assert_eq!(g.position(1), Some((110.0, 100.0)));
    }

    #[test]
    fn seed_directions_match_screen_axes() {
        let mut g = game_with(&[1]);
        for (dir, expect) in [
            (SeedDirection::Up, (100.0, 90.0)),
            (SeedDirection::Down, (100.0, 110.0)),
            (SeedDirection::Left, (90.0, 100.0)),
            (SeedDirection::Right, (110.0, 100.0)),
        ] {
            g.place(1, 100.0, 100.0);
            let input = DotGame::seed_move(dir).unwrap();
            g.input(1, input);
            g.tick();
            assert_eq!(g.position(1), Some(expect), "{dir:?}");
        }
    }

    #[test]
    fn diagonals_are_normalised() {
        let mut g = game_with(&[1]);
        g.place(1, 100.0, 100.0);
        g.input(1, DotInput::steer(1.0, 1.0));
        g.tick();
        let (x, y) = g.position(1).unwrap();
        let dist = ((x - 100.0).powi(2) + (y - 100.0).powi(2)).sqrt();
        assert!((dist - 10.0).abs() < 1e-4, "moved {dist}");
    }

    #[test]
    fn clamps_to_the_margin() {
        let mut g = game_with(&[1]);
        g.place(1, 15.0, 485.0);
        g.input(1, DotInput::steer(-1.0, 1.0));
        g.tick();
        g.input(1, DotInput::steer(-1.0, 1.0));
        g.tick();
        assert_eq!(g.position(1), Some((MIN, MAX)));
    }

    #[test]
    fn speed_follows_tick_rate() {
        let mut g = DotGame::new(&Settings {
            tick_rate: 40,
            ..Settings::with_seed(1)
        });
        g.join(1);
        g.place(1, 100.0, 100.0);
        g.input(1, DotInput::steer(0.0, 1.0));
        g.tick();
        assert_eq!(g.position(1), Some((100.0, 105.0)));
    }

    /// A seed `move` is 10 px at any tick rate: spread over three ticks at
    /// 60 Hz, and a flood (one move every tick) still moves at 200 px/s.
    #[test]
    fn seed_moves_are_ten_pixels_at_any_tick_rate() {
        let mut g = DotGame::new(&Settings {
            tick_rate: 60,
            ..Settings::with_seed(1)
        });
        g.join(1);
        g.place(1, 100.0, 100.0);
        let right = DotGame::seed_move(SeedDirection::Right).unwrap();
        g.input(1, right);
        for _ in 0..5 {
            g.tick();
        }
        assert_eq!(g.position(1), Some((110.0, 100.0)));
        // Held key: 20 moves a second, one every third tick, for one second.
        for t in 0..60 {
            if t % 3 == 0 {
                g.input(1, right);
            }
            g.tick();
        }
        let (x, _) = g.position(1).unwrap();
        assert!((x - 310.0).abs() < 1e-6, "{x}");
        // Flood: a move every tick for one second is still 200 px.
        g.place(1, 100.0, 100.0);
        g.input(1, DotGame::seed_move(SeedDirection::Down).unwrap());
        g.tick();
        let (_, y0) = g.position(1).unwrap();
        for _ in 0..60 {
            g.input(1, DotGame::seed_move(SeedDirection::Down).unwrap());
            g.tick();
        }
        let (_, y1) = g.position(1).unwrap();
        assert!((y1 - y0 - 200.0).abs() < 1e-6, "{}", y1 - y0);
    }

    #[test]
    fn a_large_world_spawns_and_clamps_within_its_size() {
        let mut g = DotGame::new(&Settings {
            world_size: 10_000.0,
            ..Settings::with_seed(3)
        });
        for p in 1..=300 {
            g.join(p);
        }
        let views = g.views();
        assert!(views.iter().all(|v| (50.0..=9950.0).contains(&v.x)));
        assert!(
            views.iter().any(|v| v.x > 5000.0),
            "spawns use the whole map"
        );
        g.place(1, 20_000.0, 9_995.0);
        assert_eq!(g.position(1), Some((9990.0, 9990.0)));
        assert_eq!(g.info().max, 9990.0);
    }

    #[test]
    fn leave_removes_and_ignores_unknown() {
        let mut g = game_with(&[1, 2]);
        g.leave(1);
        g.leave(99);
        g.input(99, DotInput::steer(1.0, 0.0));
        assert_eq!(g.len(), 1);
        assert_eq!(g.views()[0].id, 2);
    }

    proptest! {
        /// Whatever a client sends, a dot moves at most one step per tick and
        /// never leaves the map.
        #[test]
        fn never_faster_than_a_step_nor_outside(
            inputs in proptest::collection::vec((-1e6f64..1e6, -1e6f64..1e6), 1..50),
            start in (0f64..500.0, 0f64..500.0),
        ) {
            let mut g = game_with(&[1]);
            g.place(1, start.0, start.1);
            for (x, y) in inputs {
                let before = g.position(1).unwrap();
                g.input(1, DotInput::steer(x, y));
                g.tick();
                let after = g.position(1).unwrap();
                let d = ((after.0 - before.0).powi(2) + (after.1 - before.1).powi(2)).sqrt();
                prop_assert!(d <= 10.0 + 1e-3);
                prop_assert!((MIN..=MAX).contains(&after.0) && (MIN..=MAX).contains(&after.1));
            }
        }
    }
}
