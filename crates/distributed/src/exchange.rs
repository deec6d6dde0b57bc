//! Cells sent between ranks: one buffer per rank each way, reused from step
//! to step; sizes agreed by one all-to-all of counts, then the data moves by
//! non-blocking point-to-point messages between the ranks that have any.

use mpi::traits::{Communicator, CommunicatorCollectives, Destination, Source};

/// Per-rank send and receive buffers of encoded cells
/// ([`sparse_grid::SparseEngine::encode_cells`]).
pub struct Exchange {
    /// What this rank sends to each rank (its own entry stays empty).
    pub send: Vec<Vec<f32>>,
    /// What this rank received from each rank in the last exchange.
    pub recv: Vec<Vec<f32>>,
    counts_out: Vec<i32>,
    counts_in: Vec<i32>,
}

impl Exchange {
    /// Empty buffers for `ranks` ranks.
    pub fn new(ranks: usize) -> Self {
        Self {
            send: vec![Vec::new(); ranks],
            recv: vec![Vec::new(); ranks],
            counts_out: vec![0; ranks],
            counts_in: vec![0; ranks],
        }
    }

    /// Empties the send buffers (keeping their capacity).
    pub fn clear(&mut self) {
        self.send.iter_mut().for_each(Vec::clear);
    }

    /// Sends every send buffer to its rank and fills the receive buffers,
    /// running `meanwhile` after the messages are posted and before they
    /// are waited for (work that needs none of them); returns the bytes
    /// this rank sent. Every rank of `comm` must call it (the counts go by
    /// one collective). A buffer larger than MPI's count limit (i32::MAX
    /// values) is not sent, and is this rank's error once the exchange is
    /// over: every rank still takes part in it, so none waits for this one.
    pub fn run<C: Communicator>(
        &mut self,
        comm: &C,
        meanwhile: impl FnOnce(),
    ) -> engine_api::Result<u64> {
        let mut too_large = None;
        for (n, buf) in self.counts_out.iter_mut().zip(&self.send) {
            *n = i32::try_from(buf.len()).unwrap_or_else(|_| {
                too_large = Some(buf.len());
                0
            });
        }
        comm.all_to_all_into(&self.counts_out[..], &mut self.counts_in[..]);
        for (buf, &n) in self.recv.iter_mut().zip(&self.counts_in) {
            buf.clear();
            buf.resize(n as usize, 0.0);
        }
        let me = comm.rank() as usize;
        let (send, recv) = (&self.send, &mut self.recv);
        mpi::request::scope(|scope| {
            let mut pending = Vec::new();
            for (r, buf) in recv.iter_mut().enumerate() {
                if r != me && !buf.is_empty() {
                    let p = comm.process_at_rank(r as i32);
                    pending.push(p.immediate_receive_into(scope, &mut buf[..]));
                }
            }
            let mut sends = Vec::new();
            for (r, buf) in send.iter().enumerate() {
                if r != me && !buf.is_empty() && self_count(&buf[..]) {
                    let p = comm.process_at_rank(r as i32);
                    sends.push(p.immediate_send(scope, &buf[..]));
                }
            }
            meanwhile();
            for req in pending {
                req.wait();
            }
            for req in sends {
                req.wait();
            }
        });
        if let Some(len) = too_large {
            return Err(engine_api::Error::InvalidArgument(format!(
                "{len} values to send to one rank exceed MPI's count limit; use more ranks"
            )));
        }
        Ok(self
            .send
            .iter()
            .enumerate()
            .filter(|&(r, _)| r != me)
            .map(|(_, b)| 4 * b.len() as u64)
            .sum())
    }
}

/// Whether a buffer fits one message (its count was sent as is; one that
/// did not went as 0 and is not sent).
fn self_count(buf: &[f32]) -> bool {
    i32::try_from(buf.len()).is_ok()
}
