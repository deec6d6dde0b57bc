//! A matrix-multiply speed probe for `atheria bench`: the ceiling any
//! convolution on this backend can reach on this machine.

use std::time::Instant;

use engine_api::{Error, Result};

/// GFLOP/s of the best of a few `n x n` f32 matrix multiplies through the
/// same `gemm` kernels the convolutions use, on `threads` threads (the
/// count the convolutions being compared with ran on).
pub fn matmul_gflops(n: usize, threads: usize) -> Result<f64> {
    if !(1..=8192).contains(&n) {
        return Err(Error::InvalidArgument(format!(
            "matmul size {n} is out of range 1..=8192"
        )));
    }
    if threads == 0 {
        return Err(Error::InvalidArgument(
            "matmul threads must be at least 1".into(),
        ));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::backend("candle", format!("cannot start {threads} threads: {e}")))?;
    let a: Vec<f32> = (0..n * n).map(|i| (i % 7) as f32 * 0.25 - 0.75).collect();
    let b: Vec<f32> = (0..n * n).map(|i| (i % 5) as f32 * 0.5 - 1.0).collect();
    let mut c = vec![0.0f32; n * n];
    let mut best = f64::INFINITY;
    for _ in 0..4 {
        let start = Instant::now();
        pool.install(|| {
            // SAFETY: a, b and c are dense row-major n x n matrices.
            unsafe {
                gemm::gemm(
                    n,
                    n,
                    n,
                    c.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    a.as_ptr(),
                    1,
                    n as isize,
                    b.as_ptr(),
                    1,
                    n as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::Rayon(threads),
                )
            }
        });
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok(2.0 * (n as f64).powi(3) / best.max(1e-9) / 1e9)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reports_a_positive_speed_and_refuses_silly_sizes() {
        assert!(super::matmul_gflops(64, 1).unwrap() > 0.0);
        assert!(super::matmul_gflops(64, 2).unwrap() > 0.0);
        assert!(super::matmul_gflops(0, 1).is_err());
        assert!(super::matmul_gflops(64, 0).is_err());
    }
}
