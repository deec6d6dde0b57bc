//! Once warm, a step of a bounded pattern allocates nothing of its own:
//! every per-step buffer is reused and freed tile slots are taken again. Its own test binary,
//! because the counting allocator sees every thread of the process.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::Reference;
use engine_api::{ComputeBackend, UpdateRule};
use sparse_grid::{SparseEngine, SparseOptions, Vacuum};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The tests take turns: each counts every thread's allocations.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_warm_step_allocates_nothing() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for vacuum in [Vacuum::Zero, Vacuum::Harmonic { strength: 0.3 }] {
        // Zero weights keep the pattern in place while its halo tiles come
        // and go every step.
        let backend: Arc<dyn ComputeBackend> =
            Arc::new(Reference::conv3x3(2, UpdateRule::Additive, 0.0, 1));
        let mut e = SparseEngine::new(
            backend,
            SparseOptions::default()
                .with_vacuum(vacuum)
                .with_forward_bytes(1 << 16),
        )
        .unwrap();
        for i in 0..300 {
            let (x, y) = ((i * 37) % 200 - 100, (i * 91) % 170 - 60);
            e.insert(x, y, &[(0.6, 0.0), (0.0, 0.8)]).unwrap();
        }
        for _ in 0..5 {
            e.step().unwrap();
        }
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        for _ in 0..20 {
            e.step().unwrap();
        }
        let during = ALLOCATIONS.load(Ordering::Relaxed) - before;
        // rayon itself allocates one block of its global job queue per 63
        // jobs injected from outside its pool (about a dozen per step here),
        // so a few allocations remain; one per step from the engine would
        // show as 20 or more.
        assert!(
            during < 10,
            "{during} allocations in 20 warm steps ({vacuum:?})"
        );
    }
}

/// A global law with memory whose delta is zero (the pattern stays, so the
/// window does too) and whose memory counts the steps.
struct Counter(engine_api::ModelSpec);

impl ComputeBackend for Counter {
    fn name(&self) -> &'static str {
        "counter"
    }
    fn spec(&self) -> &engine_api::ModelSpec {
        &self.0
    }
    fn device(&self) -> engine_api::Device {
        engine_api::Device::Cpu
    }
    fn run(&self, _: &[f32], _: engine_api::BatchShape, _: &mut [f32]) -> engine_api::Result<()> {
        unreachable!("a recurrent law runs with its memory")
    }
    fn run_with_memory(
        &self,
        _: &[f32],
        _: engine_api::BatchShape,
        memory: &[f32],
        output: &mut [f32],
        next_memory: &mut [f32],
    ) -> engine_api::Result<()> {
        output.fill(0.0);
        for (n, m) in next_memory.iter_mut().zip(memory) {
            *n = m + 1.0;
        }
        Ok(())
    }
}

#[test]
fn a_warm_step_of_a_recurrent_law_allocates_nothing_and_keeps_its_memory() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let spec = engine_api::ModelSpec::from_json(
        r#"{"format": "atheria-model/1", "name": "counter", "architecture": "unet_convlstm",
            "d_state": 2, "hidden_channels": 1, "update": "additive",
            "receptive_radius": null, "spatial_multiple": 4, "files": {},
            "memory": [{"name": "h_state", "channels": 4, "stride": 4},
                       {"name": "c_state", "channels": 4, "stride": 4}]}"#,
        std::path::Path::new("model.json"),
    )
    .unwrap();
    let mut e = SparseEngine::new(Arc::new(Counter(spec)), SparseOptions::default()).unwrap();
    for i in 0..40 {
        e.insert(i % 20 - 3, i / 2 - 5, &[(0.6, 0.0), (0.0, 0.8)])
            .unwrap();
    }
    for _ in 0..5 {
        e.step().unwrap();
    }
    let window = e.memory().unwrap().1;
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..20 {
        e.step().unwrap();
    }
    let during = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert!(during < 10, "{during} allocations in 20 warm steps");
    // The window stayed put, so every reduced cell counted every step.
    let (m, w) = e.memory().unwrap();
    assert_eq!(w, window);
    assert!(m.data().iter().all(|&v| v == 25.0), "{:?}", &m.data()[..4]);
}
