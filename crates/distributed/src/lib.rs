//! The sparse lattice across MPI ranks (rsmpi over the system's MPI): one
//! job, spreading [`sparse_grid::SparseEngine`]'s tiles over the ranks of
//! a communicator and stepping them together, with the sparse engine's own
//! step on every rank.
//!
//! | item | what it holds |
//! |---|---|
//! | [`DistributedSparse`] | the lattice across ranks: scatter from rank 0, the step (halo exchange, shared step, agreement, rebalance), the gather to rank 0 for saving |
//! | [`Ownership`], [`morton`] | which rank owns which tile: Morton order of tile coordinates cut into balanced ranges |
//! | [`agree`] | every rank learns whether any failed, and the first failure's error |
//! | [`CommStats`] | bytes exchanged, time spent communicating, tiles per rank |
//! | [`mpi`] | the rsmpi crate, re-exported so programs use the same version |
//!
//! Local laws only (a receptive radius): a global law's window needs the
//! whole lattice in one process and is refused with an error saying so.

#![warn(missing_docs)]

mod engine;
mod exchange;
mod ownership;

pub use engine::{agree, CommStats, DistributedSparse, DEFAULT_REBALANCE};
pub use mpi;
pub use ownership::{morton, Ownership};
