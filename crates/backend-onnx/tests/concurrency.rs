//! Four threads forwarding through one backend at once.

mod common;

use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use backend_onnx::OnnxBackend;
use common::*;
use engine_api::{BatchShape, ComputeBackend};

const THREADS: usize = 4;
const FORWARDS: usize = 25;
/// Far above the few hundred milliseconds this takes; a deadlock fails here.
const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn four_threads_share_one_backend_without_hanging_or_mixing_results() {
    let d = 4;
    let (onnx, _, _) = conv3x3(d, 11);
    let backend =
        Arc::new(OnnxBackend::load(&write_package("concurrency", d, &onnx), &cpu(1)).unwrap());
    let shape = BatchShape::new(1, 2 * d, 96, 80);
    // Each thread has its own input, so a mixed-up output shows.
    let inputs: Vec<Vec<f32>> = (0..THREADS)
        .map(|t| values(shape.len(), 100 + t as u64))
        .collect();
    let expected: Vec<Vec<f32>> = inputs
        .iter()
        .map(|x| {
            let mut y = vec![0.0; shape.len()];
            backend.forward(x, shape, &mut y).unwrap();
            y
        })
        .collect();

    let (done, results) = mpsc::channel();
    let start_line = Arc::new(Barrier::new(THREADS));
    let started = Instant::now();
    for t in 0..THREADS {
        let start_line = Arc::clone(&start_line);
        let (backend, x, want, done) = (
            Arc::clone(&backend),
            inputs[t].clone(),
            expected[t].clone(),
            done.clone(),
        );
        std::thread::spawn(move || {
            let mut y = vec![0.0; shape.len()];
            let mut outcome = Ok(());
            start_line.wait();
            for i in 0..FORWARDS {
                if let Err(e) = backend.forward(&x, shape, &mut y) {
                    outcome = Err(format!("thread {t}, forward {i}: {e}"));
                    break;
                }
                if y != want {
                    outcome = Err(format!(
                        "thread {t}, forward {i}: output differs from the serial run"
                    ));
                    break;
                }
            }
            let _ = done.send(outcome);
        });
    }
    for _ in 0..THREADS {
        match results.recv_timeout(LIMIT.saturating_sub(started.elapsed())) {
            Ok(outcome) => outcome.unwrap(),
            Err(_) => panic!(
                "{THREADS} threads did not finish {FORWARDS} forwards within {LIMIT:?}: hang?"
            ),
        }
    }
    let sessions = backend.sessions();
    assert!((1..=THREADS).contains(&sessions), "{sessions} sessions");
    println!(
        "{THREADS} threads x {FORWARDS} forwards of {shape} in {:?} on {sessions} sessions ({})",
        started.elapsed(),
        backend.describe()
    );
}
