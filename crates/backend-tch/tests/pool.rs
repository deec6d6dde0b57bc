//! Four threads forwarding through one backend at once.

mod common;

use std::sync::{mpsc, Arc, Barrier};
use std::time::Duration;

use common::{forward, load, max_diff};
use engine_api::ComputeBackend;

const THREADS: usize = 4;
const CALLS: usize = 25;

#[test]
fn four_threads_forward_at_once_and_agree_with_pytorch() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<backend_tch::TchBackend>();

    let case = "unet_d2_h8";
    let backend = Arc::new(load(case));
    let f = Arc::new(forward(case));
    let start = Arc::new(Barrier::new(THREADS));
    let (done, results) = mpsc::channel();
    for t in 0..THREADS {
        let (backend, f, start, done) = (backend.clone(), f.clone(), start.clone(), done.clone());
        std::thread::spawn(move || {
            start.wait();
            let mut worst = 0.0f32;
            let mut out = vec![0.0; f.x.len()];
            for _ in 0..CALLS {
                if let Err(e) = backend.forward(&f.x, f.shape, &mut out) {
                    let _ = done.send(Err(format!("thread {t}: {e}")));
                    return;
                }
                worst = worst.max(max_diff(&out, &f.y));
            }
            let _ = done.send(Ok(worst));
        });
    }
    for _ in 0..THREADS {
        // A deadlock in the pool fails here instead of hanging the test run.
        let worst = results
            .recv_timeout(Duration::from_secs(120))
            .expect("a forwarding thread did not finish within 120 s")
            .unwrap();
        assert!(worst <= 1e-4, "max |tch - pytorch| = {worst}");
    }
    let pooled = backend.pooled_modules();
    assert!((1..=THREADS).contains(&pooled), "{pooled} modules");
    assert!(pooled <= backend.max_modules(), "{pooled} modules");
}

#[test]
fn the_pool_never_grows_past_its_cap_and_callers_wait_for_a_module() {
    let case = "conv3x3_d4";
    let package = engine_api::ModelPackage::load(common::golden(case)).unwrap();
    let request = engine_api::LoadRequest::new(
        &backend_tch::TchRuntime,
        &package,
        &engine_api::BackendOptions::default(),
    )
    .unwrap();
    let backend = Arc::new(backend_tch::TchBackend::prepare_with_cap(request, 1).unwrap());
    let f = Arc::new(forward(case));
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (backend, f) = (backend.clone(), f.clone());
            std::thread::spawn(move || {
                let mut out = vec![0.0; f.x.len()];
                for _ in 0..CALLS {
                    backend.forward(&f.x, f.shape, &mut out).unwrap();
                }
                max_diff(&out, &f.y)
            })
        })
        .collect();
    for t in threads {
        assert!(t.join().unwrap() <= 1e-4);
    }
    assert_eq!((backend.pooled_modules(), backend.max_modules()), (1, 1));
}
