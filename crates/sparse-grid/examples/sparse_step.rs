//! Where a sparse step's time and memory go.
//!
//! `cargo run --release -p sparse-grid --example sparse_step -- [cells] [pattern] [steps] [backend]`
//! (defaults: 100000 blob 5 depthwise; pattern `blob` or `scattered`;
//! backend `depthwise` or `candle`). D = 64, radius 1, one law: an
//! identity-like 3x3 (delta = 0.1 x + 0.02 * neighbour sum, per channel).
//! `depthwise` computes it as such, cheaply, so the figures show the engine's
//! own cost (gather, scatter) next to a minimal forward; `candle` runs it as
//! the full conv3x3 (2D x 2D x 3 x 3 weights) that a trained law costs.
//! Prints the split per step and the peak resident memory (VmHWM) against
//! the raw state (2 * 64 * 4 bytes per cell).

use std::sync::Arc;

use engine_api::{Architecture, BatchShape, ComputeBackend, Device, Error, ModelSpec, Result};
use sparse_grid::{DenseState, SparseEngine, SparseOptions, StepTimes};

const D: usize = 64;

/// The identity-like radius-1 law, batched, parallel over channels from its
/// own scoped threads (as a real backend owns its intra-op threads).
struct Depthwise {
    spec: ModelSpec,
}

impl ComputeBackend for Depthwise {
    fn name(&self) -> &'static str {
        "depthwise"
    }
    fn spec(&self) -> &ModelSpec {
        &self.spec
    }
    fn device(&self) -> Device {
        Device::Cpu
    }
    fn run(&self, input: &[f32], shape: BatchShape, output: &mut [f32]) -> Result<()> {
        let (h, w) = (shape.height, shape.width);
        let plane = h * w;
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let per = output.len().div_ceil(threads).div_ceil(plane) * plane;
        std::thread::scope(|s| {
            for (k, out) in output.chunks_mut(per).enumerate() {
                let base = k * per;
                s.spawn(move || {
                    for (p, o) in out.chunks_mut(plane).enumerate() {
                        let x = &input[base + p * plane..][..plane];
                        for y in 0..h {
                            for xx in 0..w {
                                let mut nb = 0.0;
                                for dy in -1isize..=1 {
                                    for dx in -1isize..=1 {
                                        let (sy, sx) = (y as isize + dy, xx as isize + dx);
                                        if (dy, dx) != (0, 0)
                                            && sy >= 0
                                            && sx >= 0
                                            && (sy as usize) < h
                                            && (sx as usize) < w
                                        {
                                            nb += x[sy as usize * w + sx as usize];
                                        }
                                    }
                                }
                                o[y * w + xx] = 0.1 * x[y * w + xx] + 0.02 * nb;
                            }
                        }
                    }
                });
            }
        });
        Ok(())
    }
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let cells: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let pattern = args.get(2).map_or("blob", String::as_str);
    let steps: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(5);
    let spec = ModelSpec::for_architecture("depthwise-identity", Architecture::Conv3x3, D, None)
        .map_err(Error::InvalidArgument)?;
    // At threshold 0.2 a vacuum cell needs |delta| = 0.02 x (matter neighbours)
    // >= 0.2: impossible, so the pattern is stationary and the figures are
    // those of the requested cell count.
    let options = SparseOptions::default().with_threshold(0.2);
    let backend: Arc<dyn ComputeBackend> = match args.get(4).map_or("depthwise", String::as_str) {
        "candle" => {
            let c = 2 * D;
            let mut w = vec![0.0f32; c * c * 9];
            for o in 0..c {
                for k in 0..9 {
                    w[(o * c + o) * 9 + k] = if k == 4 { 0.1 } else { 0.02 };
                }
            }
            let tensors = vec![
                ("conv.weight".to_string(), vec![c, c, 3, 3], w),
                ("conv.bias".to_string(), vec![c], vec![0.0; c]),
            ];
            Arc::new(backend_candle::CandleBackend::from_tensors(
                spec,
                tensors,
                &engine_api::BackendOptions::default(),
            )?)
        }
        _ => Arc::new(Depthwise { spec }),
    };
    println!("backend: {}", backend.describe());
    let mut e = SparseEngine::new(backend, options)?;
    let value = (1.0 / (D as f32).sqrt(), 0.0);
    match pattern {
        "blob" => {
            let side = (cells as f64).sqrt().ceil() as usize;
            let mut s = DenseState::zeros(side, side, D)?;
            s.origin = (-(side as i32) / 2, -(side as i32) / 2);
            let n = s.cells();
            let (planes, mask) = s.split_mut();
            planes[..D * n].fill(value.0);
            for m in mask.iter_mut().take(cells) {
                *m = 1;
            }
            e.insert_dense(&s)?;
        }
        _ => {
            // Uniform at 1/16 density: about 16 cells per 16 x 16 tile.
            let side = ((cells * 16) as f64).sqrt() as u64;
            let mut rng = sparse_grid::rng::Rng::new(0x1234_5678);
            while e.occupied_count() < cells {
                let (x, y) = (rng.below(side), rng.below(side));
                e.insert(x as i32, y as i32, &[value; D])?;
            }
        }
    }
    let raw = e.occupied_count() as f64 * (2 * D * 4) as f64 / (1 << 20) as f64;
    println!(
        "{pattern}: {} cells in {} tiles, raw state {raw:.0} MiB, RSS after insert {:.0} MiB",
        e.occupied_count(),
        e.tile_count(),
        peak_rss_mib()
    );
    e.step()?; // warm-up: sizes every buffer
    let (times, last) = StepTimes::measure(steps, || e.step())?;
    let tiles = last.active_tiles;
    let (g, f, s) = times.per_step_ms();
    println!(
        "per step: gather {g:.1} ms, forward {f:.1} ms, scatter {s:.1} ms ({} active tiles, {} cells); outside forward: {:.0}%",
        tiles,
        e.occupied_count(),
        100.0 * times.outside_forward_share()
    );
    println!(
        "peak RSS {:.0} MiB = {:.2} x the raw state of the cells now held ({:.0} MiB)",
        peak_rss_mib(),
        peak_rss_mib() / (e.occupied_count() as f64 * (2 * D * 4) as f64 / (1 << 20) as f64),
        e.occupied_count() as f64 * (2 * D * 4) as f64 / (1 << 20) as f64
    );
    Ok(())
}
