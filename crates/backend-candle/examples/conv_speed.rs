//! Times the conv3x3 law: this backend against candle's stock `conv2d`.
//!
//! `cargo run --release -p backend-candle --example conv_speed -- [threads] [case]`
//! (`case` picks one line of the table by index, for profiling). Figures are
//! the fastest of many runs, since the machine may be shared. PyTorch on the
//! same shapes, for comparison:
//!
//! ```text
//! python -c "import time,torch,torch.nn.functional as F; torch.set_num_threads(2)
//! for b,c,h in [(1,128,128),(256,8,18),(1024,8,18),(64,128,18)]:
//!     x,w,bi=torch.randn(b,c,h,h),torch.randn(c,c,3,3),torch.randn(c); ts=[]
//!     for _ in range(30): t=time.perf_counter(); F.conv2d(x,w,bi,padding=1); ts.append(time.perf_counter()-t)
//!     print(b,c,h,'%.2f ms'%(min(ts[2:])*1e3))"
//! ```

use std::time::Instant;

use backend_candle::CandleBackend;
use candle_core::{Device, Tensor};
use engine_api::{Architecture, BackendOptions, BatchShape, ComputeBackend, ModelSpec};

fn values(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    sparse_grid::rng::Rng::new(seed).uniform_vec(n, -scale, scale)
}

/// Fastest milliseconds of `reps` runs of `f` after two warm-ups: the
/// machine is shared, and the minimum is the least disturbed figure.
fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[0]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let threads: usize = std::env::args().nth(1).map_or(Ok(2), |s| s.parse())?;
    let only: Option<usize> = std::env::args().nth(2).map(|s| s.parse()).transpose()?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    println!("threads {threads}; {}", backend_candle::check()?);
    let cases = [
        (64, 1, 128, 30),
        (4, 256, 18, 60),
        (4, 1024, 18, 30),
        (64, 64, 18, 20),
    ];
    for (i, &(d, b, hw, reps)) in cases.iter().enumerate() {
        if only.is_some_and(|o| o != i) {
            continue;
        }
        let c = 2 * d;
        let weight = values(1, c * c * 9, 1.0 / (c as f32 * 9.0).sqrt());
        let bias = values(2, c, 0.1);
        let backend = CandleBackend::from_tensors(
            ModelSpec::for_architecture(format!("conv3x3_d{d}"), Architecture::Conv3x3, d, None)?,
            vec![
                ("conv.weight".into(), vec![c, c, 3, 3], weight.clone()),
                ("conv.bias".into(), vec![c], bias.clone()),
            ],
            &BackendOptions::default().with_threads(threads),
        )?;
        let shape = BatchShape::new(b, c, hw, hw);
        let x = values(3, shape.len(), 1.0);
        let mut y = vec![0.0; shape.len()];
        let ours = time(reps, || {
            backend.forward(&x, shape, &mut y).expect("forward")
        });

        let dev = Device::Cpu;
        let xt = Tensor::from_vec(x.clone(), (b, c, hw, hw), &dev)?;
        let wt = Tensor::from_vec(weight, (c, c, 3, 3), &dev)?;
        let bt = Tensor::from_vec(bias, (1, c, 1, 1), &dev)?;
        let mut stock_y = None;
        let stock = time(reps, || {
            stock_y = Some(pool.install(|| {
                xt.conv2d(&wt, 1, 1, 1, 1)
                    .and_then(|t| t.broadcast_add(&bt))
                    .expect("candle conv2d")
            }))
        });
        let stock_y = stock_y.expect("ran").flatten_all()?.to_vec1::<f32>()?;
        let diff = y
            .iter()
            .zip(&stock_y)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        println!(
            "conv3x3 D={d:<3} input [{b}, {c}, {hw}, {hw}]: ours {ours:8.2} ms   candle stock {stock:8.2} ms   (max |diff| {diff:.1e})"
        );
    }
    Ok(())
}
