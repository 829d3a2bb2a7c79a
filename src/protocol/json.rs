//! World state as JSON: the native protocol's `state` and the seed's
//! `state_update`, both built from the typed [`World`] for any game.

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

use crate::replicate::{Value, World};

/// `{"<collection>": [{"id": 7, "x": 120.0, "y": 340.0, <fields>}]}`: the
/// native protocol's `state`.
pub struct NativeState<'a> {
    pub world: &'a World,
    /// Only these entities (indices into `world`); `None`: all of them.
    pub only: Option<&'a [u32]>,
}

/// `{"type": "state_update", "players": [{"id": "7", "x": 120, ...}]}`: the
/// seed's message. Ids are strings and whole coordinates are integers, as the
/// seed's Python sent them.
pub struct SeedState<'a> {
    pub world: &'a World,
    /// Only these entities; `None`: all of them.
    pub only: Option<&'a [u32]>,
    /// Subtracted from every position: the corner of the window a seed
    /// client is shown of a world larger than its 500 px canvas.
    pub origin: (f64, f64),
}

struct Entities<'a> {
    world: &'a World,
    only: Option<&'a [u32]>,
    seed: Option<(f64, f64)>,
}

struct EntityJson<'a> {
    world: &'a World,
    index: usize,
    /// Seed format, with this origin.
    seed: Option<(f64, f64)>,
}

struct Whole(f64);

struct Field<'a>(&'a Value);

impl Serialize for NativeState<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(
            self.world.schema().collection,
            &Entities {
                world: self.world,
                only: self.only,
                seed: None,
            },
        )?;
        m.end()
    }
}

impl Serialize for SeedState<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("type", "state_update")?;
        m.serialize_entry(
            "players",
            &Entities {
                world: self.world,
                only: self.only,
                seed: Some(self.origin),
            },
        )?;
        m.end()
    }
}

impl Serialize for Entities<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let element = |index: usize| EntityJson {
            world: self.world,
            index,
            seed: self.seed,
        };
        match self.only {
            Some(only) => {
                let mut seq = s.serialize_seq(Some(only.len()))?;
                for &i in only {
                    seq.serialize_element(&element(i as usize))?;
                }
                seq.end()
            }
            None => {
                let mut seq = s.serialize_seq(Some(self.world.len()))?;
                for i in 0..self.world.len() {
                    seq.serialize_element(&element(i))?;
                }
                seq.end()
            }
        }
    }
}

impl Serialize for EntityJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Some(e) = self.world.entities().get(self.index) else {
            return s.serialize_unit();
        };
        let fields = self.world.schema().fields;
        let mut m = s.serialize_map(Some(3 + fields.len()))?;
        if let Some((ox, oy)) = self.seed {
            m.serialize_entry("id", &e.id.to_string())?;
            m.serialize_entry("x", &Whole(e.x - ox))?;
            m.serialize_entry("y", &Whole(e.y - oy))?;
        } else {
            m.serialize_entry("id", &e.id)?;
            m.serialize_entry("x", &e.x)?;
            m.serialize_entry("y", &e.y)?;
        }
        for (f, v) in fields.iter().zip(self.world.fields(self.index)) {
            m.serialize_entry(f.name, &Field(v))?;
        }
        m.end()
    }
}

impl Serialize for Whole {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Below 2^53 every whole f64 converts to i64 exactly.
        if self.0.fract() == 0.0 && self.0.abs() < 9.0e15 {
            s.serialize_i64(self.0 as i64)
        } else {
            s.serialize_f64(self.0)
        }
    }
}

impl Serialize for Field<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Float(f) => s.serialize_f32(*f),
            Value::Str(v) => s.serialize_str(v),
        }
    }
}
