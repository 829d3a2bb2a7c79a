//! Replicated state: what a game shows its clients, in a typed form the
//! framework can encode, diff and filter without knowing the game.
//!
//! A game describes its entities once with a [`Schema`] (the fields it
//! replicates, by name and kind) and, after every tick, writes each entity
//! into a [`World`]: an id, a position and one [`Value`] per field. From
//! that alone the framework builds every encoding (seed JSON, native JSON,
//! binary deltas), diffs one tick against the last with [`diff`], and (with a
//! spatial index over the positions) filters what each client sees. A new
//! game gets all of that without writing any codec code.
//!
//! The binary protocol sends positions on a grid of [`QUANTUM`] px, as whole
//! grid units, except each client's own entity (the one whose id is its
//! player id), which it sends exactly so client prediction stays
//! bit-identical with the server. Games keep full `f64` precision.

use std::sync::Arc;

use serde::Serialize;

/// Identifies an entity within a room; games usually use the player id.
pub type EntityId = u64;

/// Grid spacing of replicated positions, in px (1/8 px).
pub const QUANTUM: f64 = 0.125;
/// Grid units per px.
pub const UNITS_PER_PX: f64 = 8.0;

/// Snaps a coordinate to the position grid: `floor(v * 8 + 0.5) / 8`, what a
/// client decodes for a position the binary protocol sent.
///
/// Every step is exact in IEEE-754 doubles (scaling by a power of two, adding
/// 0.5, `floor`), so JavaScript's `Math.floor(v * 8 + 0.5) / 8` gives the
/// same results. Non-finite values snap to 0.
pub fn quantize(v: f64) -> f64 {
    if v.is_finite() {
        (v * UNITS_PER_PX + 0.5).floor() / UNITS_PER_PX
    } else {
        0.0
    }
}

/// A coordinate in whole grid units (saturating at the `i64` range).
pub fn to_units(v: f64) -> i64 {
    if v.is_finite() {
        // `as` saturates for out-of-range floats.
        (v * UNITS_PER_PX + 0.5).floor() as i64
    } else {
        0
    }
}

/// Grid units back to px.
pub fn from_units(u: i64) -> f64 {
    u as f64 / UNITS_PER_PX
}

/// The type of a replicated field; it decides its wire encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldKind {
    Bool,
    /// A signed integer (zigzag varint on the binary wire).
    Int,
    /// A 32-bit float.
    Float,
    /// A UTF-8 string.
    Str,
}

/// One replicated field of a game's entities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Field {
    pub name: &'static str,
    pub kind: FieldKind,
}

/// What a game replicates: the name its JSON uses for the entity list, and
/// the fields every entity carries besides its id and position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Schema {
    /// Key of the entity list in JSON state (the dot game: `players`).
    pub collection: &'static str,
    pub fields: &'static [Field],
}

/// Most fields an entity may have (bit 0 of a change mask is the position).
pub const MAX_FIELDS: usize = 63;

impl Schema {
    /// Checks what the encoders rely on: at most [`MAX_FIELDS`] fields, and
    /// no field named `id`, `x` or `y` (those are the entity's own).
    pub fn validate(&self) -> Result<(), SchemaError> {
        if self.fields.len() > MAX_FIELDS {
            return Err(SchemaError::TooManyFields(self.fields.len()));
        }
        if let Some(f) = self
            .fields
            .iter()
            .find(|f| matches!(f.name, "id" | "x" | "y"))
        {
            return Err(SchemaError::ReservedName(f.name));
        }
        Ok(())
    }
}

/// A schema the framework cannot replicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaError {
    TooManyFields(usize),
    ReservedName(&'static str),
}

impl std::fmt::Display for SchemaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SchemaError::TooManyFields(n) => {
                write!(f, "schema has {n} fields; at most {MAX_FIELDS} are allowed")
            }
            SchemaError::ReservedName(n) => write!(
                f,
                "schema field `{n}` collides with the entity's own id/x/y; rename it"
            ),
        }
    }
}

impl std::error::Error for SchemaError {}

/// One field's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Float(f32),
    /// Shared, so a game can hand out the same string every tick without copying it.
    Str(Arc<str>),
}

impl Value {
    /// The zero value of a kind.
    pub fn zero(kind: FieldKind) -> Value {
        match kind {
            FieldKind::Bool => Value::Bool(false),
            FieldKind::Int => Value::Int(0),
            FieldKind::Float => Value::Float(0.0),
            FieldKind::Str => Value::Str(Arc::from("")),
        }
    }

    pub fn kind(&self) -> FieldKind {
        match self {
            Value::Bool(_) => FieldKind::Bool,
            Value::Int(_) => FieldKind::Int,
            Value::Float(_) => FieldKind::Float,
            Value::Str(_) => FieldKind::Str,
        }
    }

    /// Equality as the wire sees it: floats compare by bits, so a NaN that
    /// stays NaN is not a change every tick.
    pub fn same(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Float(a), Value::Float(b)) => a.to_bits() == b.to_bits(),
            (Value::Str(a), Value::Str(b)) => Arc::ptr_eq(a, b) || a == b,
            (a, b) => a == b,
        }
    }
}

/// One entity as a game writes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Entity {
    pub id: EntityId,
    pub x: f64,
    pub y: f64,
}

/// A value a game wrote that does not match its schema. The framework
/// repairs it (zero value, or dropped) so clients always decode; the room
/// logs it once so the game's author hears about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorldError {
    WrongKind {
        entity: EntityId,
        field: &'static str,
        expected: FieldKind,
        got: FieldKind,
    },
    WrongCount {
        entity: EntityId,
        expected: usize,
        got: usize,
    },
    DuplicateId(EntityId),
}

impl std::fmt::Display for WorldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorldError::WrongKind {
                entity,
                field,
                expected,
                got,
            } => write!(
                f,
                "entity {entity}: field `{field}` is {expected:?} in the schema but {got:?} was written (sent as zero)"
            ),
            WorldError::WrongCount {
                entity,
                expected,
                got,
            } => write!(
                f,
                "entity {entity}: {got} field values written, the schema has {expected} (missing ones sent as zero, extra ones dropped)"
            ),
            WorldError::DuplicateId(id) => {
                write!(f, "entity {id} written twice in one tick (the last one is kept)")
            }
        }
    }
}

impl std::error::Error for WorldError {}

/// Every replicated entity of a room after one tick, sorted by id.
///
/// Entities and their field values sit in two flat vectors (`values` holds
/// `schema.fields.len()` values per entity), so building one per tick is a
/// couple of allocations, and diffing two is a linear merge.
#[derive(Debug, Clone)]
pub struct World {
    schema: &'static Schema,
    entities: Vec<Entity>,
    values: Vec<Value>,
    /// The first problem seen while building, if any.
    error: Option<WorldError>,
}

impl World {
    pub fn new(schema: &'static Schema) -> Self {
        World::with_capacity(schema, 0)
    }

    pub fn with_capacity(schema: &'static Schema, entities: usize) -> Self {
        World {
            schema,
            entities: Vec::with_capacity(entities),
            values: Vec::with_capacity(entities * schema.fields.len()),
            error: None,
        }
    }

    pub fn schema(&self) -> &'static Schema {
        self.schema
    }

    /// Adds an entity with its field values in schema order. Values that do
    /// not fit the schema are repaired and recorded (see [`World::error`]).
    pub fn push(&mut self, entity: Entity, fields: impl IntoIterator<Item = Value>) {
        let schema = self.schema.fields;
        let mut n = 0;
        for value in fields {
            let Some(field) = schema.get(n) else {
                n += 1;
                continue;
            };
            if value.kind() == field.kind {
                self.values.push(value);
            } else {
                self.note(WorldError::WrongKind {
                    entity: entity.id,
                    field: field.name,
                    expected: field.kind,
                    got: value.kind(),
                });
                self.values.push(Value::zero(field.kind));
            }
            n += 1;
        }
        if n != schema.len() {
            self.note(WorldError::WrongCount {
                entity: entity.id,
                expected: schema.len(),
                got: n,
            });
            for field in schema.iter().skip(n) {
                self.values.push(Value::zero(field.kind));
            }
        }
        self.entities.push(entity);
    }

    fn note(&mut self, e: WorldError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    /// Sorts by id and removes duplicate ids (keeping the last written).
    /// Games that write in id order (a `BTreeMap`) pay one linear check.
    pub fn finish(&mut self) {
        let sorted_unique = self.entities.windows(2).all(|w| w[0].id < w[1].id);
        if sorted_unique {
            return;
        }
        let nf = self.schema.fields.len();
        let mut order: Vec<usize> = (0..self.entities.len()).collect();
        // Stable, so among duplicates the last written stays last.
        order.sort_by_key(|&i| self.entities[i].id);
        let mut entities = Vec::with_capacity(order.len());
        let mut values = Vec::with_capacity(self.values.len());
        for (k, &i) in order.iter().enumerate() {
            let id = self.entities[i].id;
            if order.get(k + 1).is_some_and(|&j| self.entities[j].id == id) {
                self.note(WorldError::DuplicateId(id));
                continue;
            }
            entities.push(self.entities[i]);
            values.extend_from_slice(&self.values[i * nf..(i + 1) * nf]);
        }
        self.entities = entities;
        self.values = values;
    }

    /// The first schema violation seen while building this world.
    pub fn error(&self) -> Option<&WorldError> {
        self.error.as_ref()
    }

    pub fn len(&self) -> usize {
        self.entities.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entities.is_empty()
    }

    pub fn entities(&self) -> &[Entity] {
        &self.entities
    }

    /// The field values of the entity at `index` (in id order).
    pub fn fields(&self, index: usize) -> &[Value] {
        let nf = self.schema.fields.len();
        self.values.get(index * nf..(index + 1) * nf).unwrap_or(&[])
    }

    /// Index of an entity by id.
    pub fn index_of(&self, id: EntityId) -> Option<usize> {
        self.entities.binary_search_by_key(&id, |e| e.id).ok()
    }
}

/// What happened to one entity between two worlds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// New in `cur` at this index.
    Spawn { index: usize },
    /// Gone from `cur`.
    Despawn { id: EntityId },
    /// In both; `mask` bit 0 is the position (on the grid), bit `i + 1` is field `i`.
    Update {
        index: usize,
        prev_index: usize,
        mask: u64,
    },
}

/// Bit of a change mask that stands for the position.
pub const POSITION_BIT: u64 = 1;

/// Bit of a change mask that stands for field `k` (0 past the 63rd field,
/// which a validated schema never has, rather than an overflow).
pub fn field_bit(k: usize) -> u64 {
    u32::try_from(k + 1)
        .ok()
        .and_then(|s| 1u64.checked_shl(s))
        .unwrap_or(0)
}

/// What changed of one entity from `prev[p]` to `cur[c]`: bit 0 the
/// position (on the grid), bit `i + 1` field `i`.
pub fn change_mask(prev: &World, p: usize, cur: &World, c: usize) -> u64 {
    let (Some(a), Some(b)) = (prev.entities().get(p), cur.entities().get(c)) else {
        return 0;
    };
    let mut mask = 0;
    if to_units(a.x) != to_units(b.x) || to_units(a.y) != to_units(b.y) {
        mask |= POSITION_BIT;
    }
    for (k, (pv, cv)) in prev.fields(p).iter().zip(cur.fields(c)).enumerate() {
        if !pv.same(cv) {
            mask |= field_bit(k);
        }
    }
    mask
}

/// Lists what changed from `prev` to `cur`, in id order: one linear merge of
/// the two sorted entity lists. Unchanged entities are left out. Positions
/// are compared on the grid, as the binary protocol sends them.
pub fn diff(prev: &World, cur: &World, out: &mut Vec<Change>) {
    out.clear();
    let (a, b) = (prev.entities(), cur.entities());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(p), Some(c)) if p.id == c.id => {
                let mask = change_mask(prev, i, cur, j);
                if mask != 0 {
                    out.push(Change::Update {
                        index: j,
                        prev_index: i,
                        mask,
                    });
                }
                i += 1;
                j += 1;
            }
            (Some(p), Some(c)) if p.id < c.id => {
                out.push(Change::Despawn { id: p.id });
                i += 1;
            }
            (Some(p), None) => {
                out.push(Change::Despawn { id: p.id });
                i += 1;
            }
            (_, Some(_)) => {
                out.push(Change::Spawn { index: j });
                j += 1;
            }
            (None, None) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    static SCHEMA: Schema = Schema {
        collection: "things",
        fields: &[
            Field {
                name: "color",
                kind: FieldKind::Str,
            },
            Field {
                name: "hp",
                kind: FieldKind::Int,
            },
        ],
    };

    fn world(items: &[(EntityId, f64, f64, i64)]) -> World {
        let mut w = World::new(&SCHEMA);
        for &(id, x, y, hp) in items {
            w.push(
                Entity { id, x, y },
                [Value::Str(Arc::from("#fff")), Value::Int(hp)],
            );
        }
        w.finish();
        w
    }

    #[test]
    fn quantize_is_the_documented_formula() {
        assert_eq!(quantize(10.0), 10.0);
        assert_eq!(quantize(7.071_067_811_865_475), 7.125);
        assert_eq!(quantize(7.05), 7.0);
        assert_eq!(quantize(0.0625), 0.125, "halves round up");
        assert_eq!(quantize(-0.0625), 0.0, "also below zero");
        assert_eq!(quantize(f64::NAN), 0.0);
        assert_eq!(to_units(490.0), 3920);
        assert_eq!(from_units(3920), 490.0);
    }

    #[test]
    fn schema_checks() {
        assert!(SCHEMA.validate().is_ok());
        static BAD: Schema = Schema {
            collection: "c",
            fields: &[Field {
                name: "x",
                kind: FieldKind::Int,
            }],
        };
        assert_eq!(BAD.validate(), Err(SchemaError::ReservedName("x")));
    }

    #[test]
    fn repairs_values_that_do_not_fit_the_schema() {
        let mut w = World::new(&SCHEMA);
        w.push(
            Entity {
                id: 1,
                x: 0.0,
                y: 0.0,
            },
            [Value::Int(3)],
        );
        assert!(matches!(w.error(), Some(WorldError::WrongKind { .. })));
        assert_eq!(w.fields(0), &[Value::Str(Arc::from("")), Value::Int(0)]);
        let mut w = World::new(&SCHEMA);
        w.push(
            Entity {
                id: 1,
                x: 0.0,
                y: 0.0,
            },
            [Value::Str(Arc::from("a")), Value::Int(1), Value::Bool(true)],
        );
        assert_eq!(w.fields(0).len(), 2);
        assert!(matches!(w.error(), Some(WorldError::WrongCount { .. })));
    }

    #[test]
    fn finish_sorts_and_dedups() {
        let w = world(&[(3, 0.0, 0.0, 1), (1, 0.0, 0.0, 2), (3, 0.0, 0.0, 5)]);
        let ids: Vec<_> = w.entities().iter().map(|e| e.id).collect();
        assert_eq!(ids, [1, 3]);
        assert_eq!(w.fields(1)[1], Value::Int(5), "last write wins");
        assert_eq!(w.error(), Some(&WorldError::DuplicateId(3)));
    }

    #[test]
    fn diff_lists_spawns_despawns_and_changed_fields_in_id_order() {
        let a = world(&[(1, 10.0, 10.0, 5), (2, 20.0, 20.0, 5), (4, 0.0, 0.0, 1)]);
        let b = world(&[(2, 20.01, 20.0, 5), (3, 0.0, 0.0, 1), (4, 1.0, 0.0, 2)]);
        let mut out = Vec::new();
        diff(&a, &b, &mut out);
        assert_eq!(
            out,
            [
                Change::Despawn { id: 1 },
                // 20.01 is on the same grid point as 20.0: no change.
                Change::Spawn { index: 1 },
                Change::Update {
                    index: 2,
                    prev_index: 2,
                    mask: POSITION_BIT | 0b100
                },
            ]
        );
    }

    proptest! {
        /// Applying a diff to the old id set gives the new one.
        #[test]
        fn diff_accounts_for_every_id(
            a in proptest::collection::btree_set(1u64..60, 0..30),
            b in proptest::collection::btree_set(1u64..60, 0..30),
        ) {
            let wa = world(&a.iter().map(|&i| (i, 1.0, 1.0, 0)).collect::<Vec<_>>());
            let wb = world(&b.iter().map(|&i| (i, 2.0, 1.0, 0)).collect::<Vec<_>>());
            let mut out = Vec::new();
            diff(&wa, &wb, &mut out);
            let mut ids = a.clone();
            for c in &out {
                match *c {
                    Change::Despawn { id } => prop_assert!(ids.remove(&id)),
                    Change::Spawn { index } => prop_assert!(ids.insert(wb.entities()[index].id)),
                    Change::Update { index, mask, .. } => {
                        prop_assert!(ids.contains(&wb.entities()[index].id));
                        prop_assert_eq!(mask, POSITION_BIT);
                    }
                }
            }
            prop_assert_eq!(ids, b);
        }
    }
}
