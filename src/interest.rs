//! Interest management: which part of the world each client sees.
//!
//! The world is cut into square cells. Every tick the room sorts entities
//! into cells once ([`CellIndex`]); a client's view is the set of cells its
//! view square touches, so per client the work is choosing cells. Encoders
//! build one piece per cell per tick and give each client the pieces of its
//! cells: shared work stays per tick, not per client.
//!
//! A client sees every entity in the cells its view square touches: a
//! superset of the square (cells are half a view wide, so at most a square of
//! twice the view). When the world fits in one view, there is one cell and
//! everybody sees everything, as in the seed.

use crate::replicate::World;

/// Index of a cell: `row * cols + col`.
pub type CellId = u32;

/// Most cells per axis; a larger world gets larger cells. Keeps the per-tick
/// per-cell arrays small whatever the settings.
pub const MAX_CELLS_PER_AXIS: u32 = 256;

/// The square grid over a world.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grid {
    /// Side of the world (px): positions are expected in `[0, world)`;
    /// others are counted in the nearest edge cell.
    pub world: f64,
    /// Side of the square each client sees, centred on its entity (px).
    pub view: f64,
    /// Side of a cell (px).
    pub cell: f64,
    /// Cells per axis.
    pub cols: u32,
}

impl Grid {
    /// A grid whose cells are half a view wide. A view at least as large as
    /// the world gives one cell: everyone sees everything.
    pub fn new(world: f64, view: f64) -> Self {
        let world = if world.is_finite() && world > 0.0 {
            world
        } else {
            1.0
        };
        let view = if view.is_finite() && view > 0.0 {
            view
        } else {
            world
        };
        if view >= world {
            return Grid {
                world,
                view,
                cell: world,
                cols: 1,
            };
        }
        let mut cell = view / 2.0;
        let mut cols = (world / cell).ceil() as u32;
        if cols > MAX_CELLS_PER_AXIS {
            cols = MAX_CELLS_PER_AXIS;
            cell = world / f64::from(cols);
        }
        Grid {
            world,
            view,
            cell,
            cols: cols.max(1),
        }
    }

    /// Whether every client sees the whole world.
    pub fn sees_all(&self) -> bool {
        self.cols == 1
    }

    pub fn cells(&self) -> usize {
        (self.cols as usize) * (self.cols as usize)
    }

    fn axis(&self, v: f64) -> u32 {
        if v.is_nan() || v <= 0.0 {
            return 0;
        }
        ((v / self.cell) as u32).min(self.cols - 1)
    }

    /// The cell a position falls in.
    pub fn cell_of(&self, x: f64, y: f64) -> CellId {
        self.axis(y) * self.cols + self.axis(x)
    }

    /// The cells a view square centred on `(x, y)` touches, ascending.
    pub fn view_cells(&self, x: f64, y: f64, out: &mut Vec<CellId>) {
        let h = self.view / 2.0;
        self.rect_cells((x - h, y - h), (x + h, y + h), out);
    }

    /// The cells the rectangle from `min` to `max` touches, ascending.
    pub fn rect_cells(&self, min: (f64, f64), max: (f64, f64), out: &mut Vec<CellId>) {
        out.clear();
        let (c0, c1) = (self.axis(min.0), self.axis(max.0));
        let (r0, r1) = (self.axis(min.1), self.axis(max.1));
        for r in r0..=r1 {
            for c in c0..=c1 {
                out.push(r * self.cols + c);
            }
        }
    }

    /// Every cell, ascending (what a client without an entity sees).
    pub fn all_cells(&self, out: &mut Vec<CellId>) {
        out.clear();
        out.extend(0..self.cells() as CellId);
    }
}

/// Entities of one world sorted into cells: built once per tick.
#[derive(Debug, Clone, Default)]
pub struct CellIndex {
    /// Cell of each entity, by entity index.
    cell: Vec<CellId>,
    /// Entity indices grouped by cell; ascending (so in id order) within one.
    order: Vec<u32>,
    /// `order[start[c]..start[c + 1]]` are the entities in cell `c`.
    start: Vec<u32>,
}

impl CellIndex {
    /// Counting sort of the world's entities into the grid's cells: linear.
    pub fn build(grid: &Grid, world: &World) -> Self {
        let cells = grid.cells();
        let cell: Vec<CellId> = world
            .entities()
            .iter()
            .map(|e| grid.cell_of(e.x, e.y))
            .collect();
        let mut start = vec![0u32; cells + 1];
        for &c in &cell {
            start[c as usize + 1] += 1;
        }
        for i in 0..cells {
            start[i + 1] += start[i];
        }
        let mut fill = start.clone();
        let mut order = vec![0u32; cell.len()];
        for (i, &c) in cell.iter().enumerate() {
            let slot = &mut fill[c as usize];
            order[*slot as usize] = i as u32;
            *slot += 1;
        }
        CellIndex { cell, order, start }
    }

    /// The cell of the entity at `index`.
    pub fn cell_of(&self, index: usize) -> Option<CellId> {
        self.cell.get(index).copied()
    }

    /// Indices of the entities in `cell`, in id order.
    pub fn in_cell(&self, cell: CellId) -> &[u32] {
        let c = cell as usize;
        match (self.start.get(c), self.start.get(c + 1)) {
            (Some(&a), Some(&b)) => self.order.get(a as usize..b as usize).unwrap_or(&[]),
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replicate::{Entity, Schema};

    static EMPTY: Schema = Schema {
        collection: "e",
        fields: &[],
    };

    #[test]
    fn a_view_as_large_as_the_world_is_one_cell() {
        let g = Grid::new(500.0, 500.0);
        assert!(g.sees_all());
        let mut v = Vec::new();
        g.view_cells(10.0, 490.0, &mut v);
        assert_eq!(v, [0]);
    }

    #[test]
    fn views_touch_three_by_three_cells_clamped_at_edges() {
        let g = Grid::new(2000.0, 500.0);
        assert_eq!((g.cell, g.cols), (250.0, 8));
        let mut v = Vec::new();
        g.view_cells(1000.0, 1000.0, &mut v);
        assert_eq!(v.len(), 9);
        // Just inside a cell border the view reaches one cell further.
        g.view_cells(249.9, 10.0, &mut v);
        assert_eq!(v, [0, 1, 8, 9]);
        g.view_cells(250.0, 10.0, &mut v);
        assert_eq!(v, [0, 1, 2, 8, 9, 10]);
        // Outside the world counts as the edge.
        assert_eq!(g.cell_of(-5.0, f64::NAN), 0);
        assert_eq!(g.cell_of(1e9, 1e9), 63);
    }

    #[test]
    fn huge_worlds_cap_the_cell_count() {
        let g = Grid::new(1_000_000.0, 100.0);
        assert_eq!(g.cols, MAX_CELLS_PER_AXIS);
        assert!(g.cell > 50.0);
    }

    #[test]
    fn index_groups_entities_by_cell_in_id_order() {
        let g = Grid::new(1000.0, 500.0);
        let mut w = World::new(&EMPTY);
        for (id, x, y) in [
            (1, 600.0, 10.0),
            (2, 10.0, 10.0),
            (3, 700.0, 20.0),
            (4, 999.0, 999.0),
        ] {
            w.push(Entity { id, x, y }, []);
        }
        let idx = CellIndex::build(&g, &w);
        assert_eq!(idx.in_cell(2), [0, 2]);
        assert_eq!(idx.in_cell(0), [1]);
        assert_eq!(idx.in_cell(15), [3]);
        assert_eq!(idx.in_cell(1), [] as [u32; 0]);
        assert_eq!(idx.in_cell(999), [] as [u32; 0]);
        assert_eq!(idx.cell_of(3), Some(15));
    }
}
