//! Binary snapshots built from shared per-cell pieces.
//!
//! Once per tick (by the first binary session that needs it), [`Pieces`]
//! walks every grid cell once and encodes, per cell, the records every client
//! that saw the cell last tick and still sees it needs: changes of entities
//! that stayed in the cell, spawns of new entities, despawns of entities that
//! left the game. Entities that crossed a cell border are listed, not
//! encoded: whether a client gets a move or a spawn (or a despawn) depends on
//! which cells it saw, so that small part is per client. A cell a client has
//! just started to see comes as a full piece (spawns of all its entities),
//! also encoded once per cell per tick, when first asked for.
//!
//! Per client, [`assemble`] only chooses cells, copies their pieces, and
//! encodes the few border crossings and leaves of its own view. With one
//! cell (the default: everyone sees everything) a message is exactly the
//! shared delta plus a small header.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;

use crate::interest::{CellId, CellIndex};
use crate::replicate::{EntityId, World};

use super::bin;

const NONE: u32 = u32::MAX;

/// An entity that crossed a cell border this tick.
#[derive(Debug, Clone, Copy)]
struct Migrant {
    id: EntityId,
    /// Index in the current world.
    cur: u32,
    /// Index in the previous world.
    prev: u32,
    /// The cell it was in.
    from: CellId,
}

/// What every binary client of a room shares for one tick.
#[derive(Debug, Default)]
pub struct Pieces {
    /// Delta pieces of every cell, back to back: cell `c` is
    /// `delta[delta_at[c]..delta_at[c + 1]]`.
    delta: Bytes,
    delta_at: Vec<u32>,
    /// Border crossings grouped by the cell entered (`arrivals_at` like `delta_at`).
    arrivals: Vec<Migrant>,
    arrivals_at: Vec<u32>,
    /// Border crossings grouped by the cell left: `(id, cell entered)`.
    leavers: Vec<(EntityId, CellId)>,
    leavers_at: Vec<u32>,
    /// Previous-world index -> current-world index (or `NONE`: gone).
    prev_to_cur: Vec<u32>,
    /// Full pieces, built per cell when a client first needs one.
    full: Mutex<HashMap<CellId, Bytes>>,
    /// Whether there is a previous world (else only full pieces exist).
    has_delta: bool,
}

/// Index ranges of a grouped list; empty when out of range.
fn group<'a, T>(items: &'a [T], at: &[u32], cell: CellId) -> &'a [T] {
    let c = cell as usize;
    match (at.get(c), at.get(c + 1)) {
        (Some(&a), Some(&b)) => items.get(a as usize..b as usize).unwrap_or(&[]),
        _ => &[],
    }
}

impl Pieces {
    /// Walks every cell once: linear in entities plus cells.
    pub fn build(
        cur: &World,
        cur_cells: &CellIndex,
        prev: Option<(&World, &CellIndex)>,
        cells: usize,
    ) -> Self {
        let Some((prev, prev_cells)) = prev else {
            return Pieces::default();
        };
        // Both worlds are sorted by id: one merge maps indices across them.
        let mut cur_to_prev = vec![NONE; cur.len()];
        let mut prev_to_cur = vec![NONE; prev.len()];
        let (a, b) = (prev.entities(), cur.entities());
        let (mut i, mut j) = (0, 0);
        while let (Some(p), Some(c)) = (a.get(i), b.get(j)) {
            if p.id == c.id {
                cur_to_prev[j] = i as u32;
                prev_to_cur[i] = j as u32;
                i += 1;
                j += 1;
            } else if p.id < c.id {
                i += 1;
            } else {
                j += 1;
            }
        }

        let mut delta = Vec::new();
        let mut delta_at = Vec::with_capacity(cells + 1);
        let mut arrivals = Vec::new();
        let mut arrivals_at = Vec::with_capacity(cells + 1);
        let mut leavers = Vec::new();
        let mut leavers_at = Vec::with_capacity(cells + 1);
        for cell in 0..cells as CellId {
            delta_at.push(delta.len() as u32);
            arrivals_at.push(arrivals.len() as u32);
            leavers_at.push(leavers.len() as u32);
            let (was, now) = (prev_cells.in_cell(cell), cur_cells.in_cell(cell));
            let mut next = 0;
            let (mut i, mut j) = (0, 0);
            // Merge the cell's old and new members by id.
            loop {
                let p = was
                    .get(i)
                    .and_then(|&p| Some((p as usize, a.get(p as usize)?.id)));
                let c = now
                    .get(j)
                    .and_then(|&c| Some((c as usize, b.get(c as usize)?.id)));
                match (p, c) {
                    (Some((pi, pid)), Some((ci, cid))) if pid == cid => {
                        bin::put_update(&mut delta, &mut next, prev, pi, cur, ci);
                        i += 1;
                        j += 1;
                    }
                    (Some((pi, pid)), c) if c.is_none_or(|(_, cid)| pid < cid) => {
                        match prev_to_cur.get(pi).copied().unwrap_or(NONE) {
                            NONE => bin::put_despawn(&mut delta, &mut next, pid),
                            to => leavers.push((pid, cur_cells.cell_of(to as usize).unwrap_or(0))),
                        }
                        i += 1;
                    }
                    (_, Some((ci, cid))) => {
                        match cur_to_prev.get(ci).copied().unwrap_or(NONE) {
                            NONE => bin::put_spawn(&mut delta, &mut next, cur, ci),
                            from => arrivals.push(Migrant {
                                id: cid,
                                cur: ci as u32,
                                prev: from,
                                from: prev_cells.cell_of(from as usize).unwrap_or(0),
                            }),
                        }
                        j += 1;
                    }
                    _ => break,
                }
            }
        }
        delta_at.push(delta.len() as u32);
        arrivals_at.push(arrivals.len() as u32);
        leavers_at.push(leavers.len() as u32);
        Pieces {
            delta: Bytes::from(delta),
            delta_at,
            arrivals,
            arrivals_at,
            leavers,
            leavers_at,
            prev_to_cur,
            full: Mutex::new(HashMap::new()),
            has_delta: true,
        }
    }

    /// Whether deltas can be built (the snapshot has a previous world).
    pub fn has_delta(&self) -> bool {
        self.has_delta
    }

    fn delta_piece(&self, cell: CellId) -> &[u8] {
        let c = cell as usize;
        match (self.delta_at.get(c), self.delta_at.get(c + 1)) {
            (Some(&a), Some(&b)) => self.delta.get(a as usize..b as usize).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// Spawn records for every entity in `cell`, encoded once per tick.
    fn full_piece(&self, cell: CellId, cur: &World, cur_cells: &CellIndex) -> Bytes {
        let mut full = self.full.lock().unwrap_or_else(|e| e.into_inner());
        full.entry(cell)
            .or_insert_with(|| {
                let mut out = Vec::new();
                let mut next = 0;
                for &i in cur_cells.in_cell(cell) {
                    bin::put_spawn(&mut out, &mut next, cur, i as usize);
                }
                Bytes::from(out)
            })
            .clone()
    }
}

/// One client's view of a tick: what it sees now and what it saw.
pub struct View<'a> {
    /// Cells seen now, ascending.
    pub now: &'a [CellId],
    /// Cells seen in the snapshot this delta builds on, ascending; `None`
    /// for a full snapshot.
    pub before: Option<&'a [CellId]>,
}

/// A per-client record.
enum Own {
    Update { prev: u32, cur: u32 },
    Spawn { cur: u32 },
    Despawn,
}

/// Appends the records of one client's snapshot to `out` (after its header).
#[allow(clippy::too_many_arguments)]
pub fn assemble(
    out: &mut Vec<u8>,
    pieces: &Pieces,
    view: &View<'_>,
    cur: &World,
    cur_cells: &CellIndex,
    prev: Option<(&World, &CellIndex)>,
) {
    let mut runs = 0usize;
    let mut push_run = |out: &mut Vec<u8>, piece: &[u8]| {
        if piece.is_empty() {
            return;
        }
        if runs > 0 {
            bin::put_reset(out);
        }
        runs += 1;
        out.extend_from_slice(piece);
    };
    let (Some(before), Some((prev, prev_cells)), true) = (view.before, prev, pieces.has_delta())
    else {
        for &cell in view.now {
            push_run(out, &pieces.full_piece(cell, cur, cur_cells));
        }
        return;
    };
    let sees = |cells: &[CellId], c: CellId| cells.binary_search(&c).is_ok();
    let mut own: Vec<(EntityId, Own)> = Vec::new();
    for &cell in view.now {
        if !sees(before, cell) {
            push_run(out, &pieces.full_piece(cell, cur, cur_cells));
            continue;
        }
        push_run(out, pieces.delta_piece(cell));
        for m in group(&pieces.arrivals, &pieces.arrivals_at, cell) {
            let rec = if sees(before, m.from) {
                Own::Update {
                    prev: m.prev,
                    cur: m.cur,
                }
            } else {
                Own::Spawn { cur: m.cur }
            };
            own.push((m.id, rec));
        }
    }
    for &cell in before {
        if sees(view.now, cell) {
            for &(id, to) in group(&pieces.leavers, &pieces.leavers_at, cell) {
                if !sees(view.now, to) {
                    own.push((id, Own::Despawn));
                }
            }
        } else {
            // A cell this client no longer sees: drop what it had there,
            // unless the entity moved into a cell it still sees.
            for &p in prev_cells.in_cell(cell) {
                let id = prev.entities().get(p as usize).map_or(0, |e| e.id);
                let still_seen = match pieces.prev_to_cur.get(p as usize).copied() {
                    Some(NONE) | None => false,
                    Some(c) => cur_cells
                        .cell_of(c as usize)
                        .is_some_and(|c| sees(view.now, c)),
                };
                if !still_seen {
                    own.push((id, Own::Despawn));
                }
            }
        }
    }
    if own.is_empty() {
        return;
    }
    own.sort_unstable_by_key(|&(id, _)| id);
    let mut run = Vec::with_capacity(own.len() * 4);
    let mut next = 0;
    for (id, rec) in own {
        match rec {
            Own::Update { prev: p, cur: c } => {
                bin::put_update(&mut run, &mut next, prev, p as usize, cur, c as usize)
            }
            Own::Spawn { cur: c } => bin::put_spawn(&mut run, &mut next, cur, c as usize),
            Own::Despawn => bin::put_despawn(&mut run, &mut next, id),
        }
    }
    push_run(out, &run);
}
