//! The sparse lattice across MPI ranks (feature `mpi`): a simulation built
//! on every rank of a communicator from one [`SimulationBuilder`], stepped
//! together ([`DistributedSparse`], from the crate `atheria-distributed`).
//!
//! ```no_run
//! use atheria::distributed::mpi::traits::Communicator;
//! use atheria::{InitKind, Simulation};
//!
//! let universe = atheria::distributed::mpi::initialize().expect("MPI initialised once");
//! let world = universe.world();
//! let mut sim = Simulation::builder()
//!     .init(InitKind::Random, 7, 256)
//!     .build_distributed(world, &mut ())?;
//! for _ in 0..50 {
//!     sim.step()?;
//! }
//! if let Some(state) = sim.gather()? {
//!     // Rank 0 holds the whole lattice: the same as a single-process run.
//!     atheria::state_file::write_state(&state, "out.safetensors".as_ref())?;
//! }
//! # Ok::<(), atheria::Error>(())
//! ```

use atheria_distributed::mpi::traits::Communicator;
pub use atheria_distributed::*;

use crate::{EngineKind, Error, InitKind, InitialState, Result, SimulationBuilder, StageObserver};

impl SimulationBuilder {
    /// Builds the sparse engine on every rank of `comm` (the engine is
    /// always sparse) and spreads rank 0's initial state over the ranks:
    /// only rank 0 reads the state file or generates the field. Every rank
    /// loads the law on its own backend. A build that fails on any rank
    /// fails on all, each with the error of the first rank that failed, so
    /// no rank waits for another that gave up. Call it on every rank with
    /// the same options.
    pub fn build_distributed<C: Communicator>(
        mut self,
        comm: C,
        observer: &mut dyn StageObserver,
    ) -> Result<DistributedSparse<C>> {
        self = self.engine(EngineKind::Sparse);
        if !self.atomic_steps {
            // Every rank refuses alike, so none waits for another.
            return Err(Error::InvalidArgument(
                "atomic steps off cannot be used with a distributed run: a step shared across \
                 ranks writes nothing until every rank has agreed that it succeeded"
                    .into(),
            ));
        }
        if comm.rank() != 0 {
            // Two cells: the sparse disc of a field this small holds no
            // matter, and the seed (which keys the vacuum) stays the same.
            let seed = self.seed();
            self = self.initial(InitialState::Generated {
                kind: InitKind::Zeros,
                seed,
                size: 2,
            });
        }
        let built = self.build_observed(observer);
        // The failing rank keeps its own error; the others get its text.
        let verdict = agree(&comm, built.as_ref().err());
        let engine = built?;
        verdict?;
        let engine = engine.into_sparse().ok_or_else(|| {
            Error::InvalidArgument("a distributed simulation runs the sparse engine".into())
        })?;
        DistributedSparse::new(comm, engine)
    }
}
