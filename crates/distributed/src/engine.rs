//! [`DistributedSparse`]: one sparse lattice stepped by every rank of a
//! communicator, each rank stepping the tiles it owns with the sparse
//! engine's own step ([`SparseEngine::step_shared`]).

use std::time::{Duration, Instant};

use engine_api::{Error, Result};
use mpi::collective::SystemOperation;
use mpi::datatype::PartitionMut;
use mpi::traits::{Communicator, CommunicatorCollectives, Root};
use sparse_grid::sparse::{CellBox, SharedStep};
use sparse_grid::{DenseState, SparseEngine, StepStats};
use tracing::info;

use crate::exchange::Exchange;
use crate::ownership::{morton, Ownership};

/// How far above the mean the largest rank's tile count may go before the
/// ranks rebalance, by default: 25%.
pub const DEFAULT_REBALANCE: f64 = 0.25;

/// What the ranks did in the last step and over the run, for the summary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommStats {
    /// Bytes of halo this rank sent in the last step.
    pub halo_bytes: u64,
    /// Halo bytes this rank sent over the run.
    pub halo_bytes_total: u64,
    /// Time in the halo exchange over the run (counts, messages, waits).
    pub exchange_time: Duration,
    /// Time in the agreement and the load census over the run.
    pub agree_time: Duration,
    /// Tiles each rank holds after the last step (or balance).
    pub loads: Vec<u64>,
    /// Rebalances so far.
    pub rebalances: u64,
    /// Bytes of tiles this rank sent moving them to new owners, over the run.
    pub moved_bytes: u64,
}

/// One sparse lattice across the ranks of a communicator.
///
/// Every rank holds a [`SparseEngine`] with the tiles it owns (by
/// [`Ownership`]: the Morton order of tile coordinates cut into balanced
/// ranges). A step: each rank sends the cells of its tiles that lie within
/// the receptive radius r of another rank's tiles (the halo strips of its
/// boundary tiles) to that rank; every rank inserts what it received,
/// stages the step of its own tiles (new tiles are created by their owner),
/// and the ranks agree before anyone commits: a step that fails on one
/// rank fails on all, with that rank's error, and no state changes. Then
/// the halo is dropped and, when the largest rank holds more than
/// `rebalance` above the mean, the ranks recut the curve and move tiles.
///
/// Every method is collective: every rank calls it, in the same order.
pub struct DistributedSparse<C: Communicator> {
    comm: C,
    engine: SparseEngine,
    own: Ownership,
    exchange: Exchange,
    rebalance: f64,
    stats: CommStats,
    /// Morton codes of every rank's tiles, reused by each balance.
    codes: Vec<u64>,
    all_codes: Vec<u64>,
    radius: usize,
}

impl<C: Communicator> DistributedSparse<C> {
    /// Spreads `engine`'s lattice from rank 0 over the ranks of `comm`:
    /// rank 0's engine holds the initial state (other ranks' engines are
    /// emptied: their lattice is ignored), its step counter is broadcast,
    /// and its tiles go to their owners. Every rank passes an engine of the
    /// same law and options. Global laws are refused: their window needs
    /// the whole lattice in one process.
    pub fn new(comm: C, mut engine: SparseEngine) -> Result<Self> {
        let spec = engine.backend().spec();
        let Some(radius) = spec.receptive_radius else {
            return Err(Error::InvalidArgument(format!(
                "model `{}` is global (receptive_radius null: a U-Net or a recurrent law sees \
                 the whole window), so it cannot be split across MPI ranks; run it without \
                 --distributed",
                spec.name
            )));
        };
        let t = engine.options().tile;
        if radius > t {
            return Err(Error::InvalidArgument(format!(
                "model `{}` has receptive radius {radius}, more than the tile ({t}): a rank's \
                 halo would reach past its neighbours' tiles; use --tile {}",
                spec.name,
                radius.next_power_of_two()
            )));
        }
        let ranks = comm.size() as usize;
        let mut step = engine.step_count();
        comm.process_at_rank(0).broadcast_into(&mut step);
        engine.set_step_count(step);
        if comm.rank() != 0 {
            engine.retain_tiles(|_, _| false);
        }
        let mut this = Self {
            exchange: Exchange::new(ranks),
            own: Ownership::all_on_root(ranks),
            engine,
            comm,
            rebalance: DEFAULT_REBALANCE,
            stats: CommStats::default(),
            codes: Vec::new(),
            all_codes: Vec::new(),
            radius,
        };
        this.census();
        this.balance()?;
        // The scatter is not a rebalance of the run.
        this.reset_stats();
        Ok(this)
    }

    /// Sets the fraction above the mean tile count at which the ranks
    /// rebalance (0.25: when the largest rank holds 25% more than the mean).
    pub fn set_rebalance(&mut self, fraction: f64) -> Result<()> {
        if !(fraction.is_finite() && fraction >= 0.0) {
            return Err(Error::InvalidArgument(format!(
                "rebalance fraction {fraction}: give a finite value of at least 0"
            )));
        }
        self.rebalance = fraction;
        Ok(())
    }

    /// This rank's engine: the tiles it owns.
    pub fn engine(&self) -> &SparseEngine {
        &self.engine
    }

    /// The communicator.
    pub fn comm(&self) -> &C {
        &self.comm
    }

    /// This rank.
    pub fn rank(&self) -> usize {
        self.comm.rank() as usize
    }

    /// Which rank owns which tile.
    pub fn ownership(&self) -> &Ownership {
        &self.own
    }

    /// What the ranks exchanged and how the load lies.
    pub fn stats(&self) -> &CommStats {
        &self.stats
    }

    /// Zeroes the run totals of [`DistributedSparse::stats`] (bytes, times,
    /// rebalances), to measure from here on.
    pub fn reset_stats(&mut self) {
        let loads = std::mem::take(&mut self.stats.loads);
        self.stats = CommStats {
            loads,
            ..CommStats::default()
        };
    }

    /// Steps taken.
    pub fn step_count(&self) -> u64 {
        self.engine.step_count()
    }

    /// Advances one step on every rank, all or nothing across ranks. The
    /// statistics are this rank's, except `occupied_cells` and
    /// `active_tiles`, which are the sums over all ranks.
    pub fn step(&mut self) -> Result<StepStats> {
        let te = Instant::now();
        self.fill_halo();
        let (me, own, comm) = (self.comm.rank() as usize, &self.own, &self.comm);
        // Tiles whose 3 x 3 block is all this rank's need no halo: their
        // forward runs while the halo is in flight.
        let interior = |tx: i32, ty: i32| {
            (-1..=1).all(|dy| {
                (-1..=1).all(|dx| match (tx.checked_add(dx), ty.checked_add(dy)) {
                    (Some(x), Some(y)) => own.owner(x, y) == me,
                    _ => true,
                })
            })
        };
        let engine = &mut self.engine;
        let mut early = Duration::ZERO;
        let exchanged = self.exchange.run(comm, || {
            let t = Instant::now();
            engine.stage_early(&interior);
            early = t.elapsed();
        });
        let received = exchanged.and_then(|sent| {
            for buf in &self.exchange.recv {
                self.engine.insert_encoded(buf)?;
            }
            Ok(sent)
        });
        let sent = match received {
            Ok(sent) => sent,
            Err(e) => {
                // The others are in their step: fail it with them, through
                // the same agreement, rather than leave them waiting.
                let e = Error::step(self.engine.step_count() + 1, e);
                let _ = agree(comm, Some(&e));
                self.engine.retain_tiles(|x, y| own.owner(x, y) == me);
                return Err(e);
            }
        };
        self.stats.halo_bytes = sent;
        self.stats.halo_bytes_total += sent;
        self.stats.exchange_time += te.elapsed() - early;

        let owns = |x: i32, y: i32| own.owner(x, y) == me;
        let mut agree_time = Duration::ZERO;
        let mut agree = |local: Option<&Error>| {
            let ta = Instant::now();
            let verdict = agree(comm, local);
            agree_time += ta.elapsed();
            verdict
        };
        let result = self.engine.step_shared(&mut SharedStep {
            owns: &owns,
            agree: &mut agree,
        });
        // The halo goes whatever the outcome: the state is the owned tiles.
        self.engine.retain_tiles(|x, y| own.owner(x, y) == me);
        self.stats.agree_time += agree_time;
        let step = self.engine.step_count() + 1;
        let mut stats = result.map_err(|e| match e {
            Error::Rank { .. } => Error::step(step, e),
            e => e,
        })?;
        let ta = Instant::now();
        let local = [stats.occupied_cells as u64, stats.active_tiles as u64];
        let mut total = [0u64; 2];
        self.comm
            .all_reduce_into(&local[..], &mut total[..], SystemOperation::sum());
        stats.occupied_cells = total[0] as usize;
        stats.active_tiles = total[1] as usize;
        self.census();
        self.stats.agree_time += ta.elapsed();
        let (max, mean) = self.load_spread();
        if max > mean * (1.0 + self.rebalance) && self.comm.size() > 1 {
            info!(
                step = self.engine.step_count(),
                "rebalancing: the largest rank holds {max} tiles, {:.0}% above the mean {mean:.1}",
                100.0 * (max / mean.max(1e-9) - 1.0)
            );
            self.balance()?;
        }
        Ok(stats)
    }

    /// Recuts the Morton curve into ranges of equal tile counts and moves
    /// every tile to its new owner.
    pub fn balance(&mut self) -> Result<()> {
        let ranks = self.comm.size() as usize;
        self.codes.clear();
        self.codes
            .extend(self.engine.tile_keys().map(|(x, y)| morton(x, y)));
        let counts: Vec<i32> = self.stats.loads.iter().map(|&n| n as i32).collect();
        let displs = displacements(&counts);
        self.all_codes.clear();
        self.all_codes
            .resize(counts.iter().map(|&n| n as usize).sum(), 0);
        {
            let mut part = PartitionMut::new(&mut self.all_codes[..], &counts[..], &displs[..]);
            self.comm
                .all_gather_varcount_into(&self.codes[..], &mut part);
        }
        self.all_codes.sort_unstable();
        let own = Ownership::balanced(&self.all_codes, ranks);
        if own == self.own {
            return Ok(());
        }
        let me = self.rank();
        let t = self.engine.options().tile as i64;
        self.exchange.clear();
        let keys: Vec<(i32, i32)> = self.engine.tile_keys().collect();
        for (x, y) in keys {
            let to = own.owner(x, y);
            if to != me {
                let area = tile_box(x, y, t);
                self.engine.encode_cells(area, &mut self.exchange.send[to]);
            }
        }
        let sent = self.exchange.run(&self.comm, || {})?;
        self.engine.retain_tiles(|x, y| own.owner(x, y) == me);
        for buf in &self.exchange.recv {
            self.engine.insert_encoded(buf)?;
        }
        let before = self.stats.loads.clone();
        self.own = own;
        self.stats.moved_bytes += sent;
        self.stats.rebalances += 1;
        self.census();
        info!(
            "tiles per rank {:?} -> {:?} ({} bytes moved from rank {me})",
            before, self.stats.loads, sent
        );
        Ok(())
    }

    /// The whole lattice as one state on rank 0 (`None` on the others):
    /// what a single-process [`SparseEngine`] exports over the bounding box
    /// of its matter (one vacuum cell at the origin when there is none),
    /// so a saved file is the same as a single-process run's.
    pub fn gather(&mut self) -> Result<Option<DenseState>> {
        let root = self.comm.process_at_rank(0);
        let mut mine = Vec::new();
        let all = CellBox::new(i32::MIN, i32::MIN, i32::MAX, i32::MAX);
        self.engine.encode_cells(all, &mut mine);
        let n = i32::try_from(mine.len()).map_err(|_| {
            Error::InvalidArgument(
                "a rank's lattice exceeds MPI's count limit for one gather; use more ranks"
                    .to_string(),
            )
        })?;
        if self.comm.rank() != 0 {
            root.gather_into(&n);
            root.gather_varcount_into(&mine[..]);
            return Ok(None);
        }
        let mut counts = vec![0i32; self.comm.size() as usize];
        root.gather_into_root(&n, &mut counts[..]);
        let displs = displacements(&counts);
        let mut cells = vec![0f32; counts.iter().map(|&n| n as usize).sum()];
        {
            let mut part = PartitionMut::new(&mut cells[..], &counts[..], &displs[..]);
            root.gather_varcount_into_root(&mine[..], &mut part);
        }
        // Rank 0's own cells come back too; writing them again is a no-op.
        self.engine.insert_encoded(&cells)?;
        let area = self
            .engine
            .bounding_box()
            .unwrap_or_else(|| CellBox::new(0, 0, 0, 0));
        let state = self.engine.export(area);
        let (me, own) = (self.rank(), &self.own);
        self.engine.retain_tiles(|x, y| own.owner(x, y) == me);
        state.map(Some)
    }

    /// What [`DistributedSparse::gather`] returns, with the delta summary
    /// of the last step over the same box (`None` before the first step):
    /// a frame for pictures and readouts on rank 0 (`None` on the others),
    /// as a single-process engine's `export_cells` and `delta_summary` give.
    ///
    /// Each rank writes the summary of the tiles it stepped into the box
    /// and rank 0 sums them: every cell was stepped by exactly one rank and
    /// is zero elsewhere, so the sum is exact.
    pub fn gather_frame(&mut self) -> Result<Option<(DenseState, Option<Vec<f32>>)>> {
        // The box of all matter, agreed before anyone cuts a summary from it.
        // One minimum of (min_x, min_y, -max_x, -max_y), in i64 so that
        // negating i32::MIN cannot overflow.
        let mine = match self.engine.bounding_box() {
            Some(b) => [
                b.min_x as i64,
                b.min_y as i64,
                -(b.max_x as i64),
                -(b.max_y as i64),
            ],
            None => [i64::MAX; 4],
        };
        let mut all = [0i64; 4];
        self.comm
            .all_reduce_into(&mine[..], &mut all[..], SystemOperation::min());
        let area = if all[0] == i64::MAX {
            CellBox::new(0, 0, 0, 0)
        } else {
            let i = |v: i64| v as i32;
            CellBox::new(i(all[0]), i(all[1]), i(-all[2]), i(-all[3]))
        };
        let stepped = self.engine.step_count() > 0;
        let summary = if stepped {
            let mine = match self.engine.delta_summary(area)? {
                Some(s) => s,
                // A rank that stepped no tile (it had none) adds nothing.
                None => vec![0.0; sparse_grid::summary::PLANES * area.width() * area.height()],
            };
            let root = self.comm.process_at_rank(0);
            if self.rank() == 0 {
                let mut sum = vec![0.0f32; mine.len()];
                root.reduce_into_root(&mine[..], &mut sum[..], SystemOperation::sum());
                Some(sum)
            } else {
                root.reduce_into(&mine[..], SystemOperation::sum());
                None
            }
        } else {
            None
        };
        let Some(state) = self.gather()? else {
            return Ok(None);
        };
        Ok(Some((state, summary)))
    }

    /// Gathers every rank's tile count into `stats.loads`.
    fn census(&mut self) {
        let mine = self.engine.tile_count() as u64;
        self.stats.loads.resize(self.comm.size() as usize, 0);
        self.comm.all_gather_into(&mine, &mut self.stats.loads[..]);
    }

    /// The largest rank's tile count and the mean.
    fn load_spread(&self) -> (f64, f64) {
        let loads = &self.stats.loads;
        let max = loads.iter().copied().max().unwrap_or(0) as f64;
        let mean = loads.iter().sum::<u64>() as f64 / loads.len().max(1) as f64;
        (max, mean)
    }

    /// Fills the send buffers with the halo: for every tile of this rank
    /// next to a tile another rank owns, the cells within r of that tile.
    fn fill_halo(&mut self) {
        self.exchange.clear();
        let (me, t, r) = (
            self.rank(),
            self.engine.options().tile as i64,
            self.radius as i64,
        );
        if r == 0 || self.comm.size() == 1 {
            return;
        }
        let (engine, own, send) = (&self.engine, &self.own, &mut self.exchange.send);
        for (tx, ty) in engine.tile_keys() {
            // Owners of the 3 x 3 block of tiles around this one.
            let mut owners = [me; 9];
            for (k, o) in owners.iter_mut().enumerate() {
                let (dx, dy) = (k as i64 % 3 - 1, k as i64 / 3 - 1);
                let (nx, ny) = (tx as i64 + dx, ty as i64 + dy);
                if let (Ok(nx), Ok(ny)) = (i32::try_from(nx), i32::try_from(ny)) {
                    *o = own.owner(nx, ny);
                }
            }
            if owners.iter().all(|&o| o == me) {
                continue;
            }
            let (ox, oy) = (tx as i64 * t, ty as i64 * t);
            let area = tile_box(tx, ty, t);
            for (k, &o) in owners.iter().enumerate() {
                // Each other rank once, at its first neighbour position.
                if o == me || owners[..k].contains(&o) {
                    continue;
                }
                // The cells within r of any tile of rank `o`.
                let near = |x: i32, y: i32| {
                    let (lx, ly) = (x as i64 - ox, y as i64 - oy);
                    let sides = |l: i64| [l < r, true, l >= t - r];
                    let (sx, sy) = (sides(lx), sides(ly));
                    (0..9).any(|j| j != 4 && owners[j] == o && sx[j % 3] && sy[j / 3])
                };
                engine.encode_cells_where(area, &mut send[o], near);
            }
        }
    }
}

/// Where each rank's part starts in a gathered buffer of parts `counts` long.
fn displacements(counts: &[i32]) -> Vec<i32> {
    counts
        .iter()
        .scan(0, |acc, &n| {
            let d = *acc;
            *acc += n;
            Some(d)
        })
        .collect()
}

/// The cells of tile (tx, ty) of side t.
fn tile_box(tx: i32, ty: i32, t: i64) -> CellBox {
    let (x0, y0) = (tx as i64 * t, ty as i64 * t);
    CellBox::new(
        x0 as i32,
        y0 as i32,
        (x0 + t - 1) as i32,
        (y0 + t - 1) as i32,
    )
}

/// An agreement of every rank of `comm` (collective): each says whether it
/// failed (`local`); the lowest failing rank's error (its cause, as text)
/// comes back to every rank as [`Error::Rank`], `Ok` when no rank failed.
/// A step agrees this way before it commits; a build before the ranks
/// start exchanging.
pub fn agree<C: Communicator>(comm: &C, local: Option<&Error>) -> Result<()> {
    let me = comm.rank();
    let mine = if local.is_some() { me } else { i32::MAX };
    let mut first = i32::MAX;
    comm.all_reduce_into(&mine, &mut first, SystemOperation::min());
    if first == i32::MAX {
        return Ok(());
    }
    let root = comm.process_at_rank(first);
    let mut text = local
        .filter(|_| first == me)
        .map(|e| e.cause().to_string().into_bytes())
        .unwrap_or_default();
    let mut len = text.len() as u64;
    root.broadcast_into(&mut len);
    text.resize(len as usize, 0);
    root.broadcast_into(&mut text[..]);
    Err(Error::Rank {
        rank: first as usize,
        message: String::from_utf8_lossy(&text).into_owned(),
    })
}
