//! Once warm, a step of a bounded pattern allocates nothing of its own:
//! every per-step buffer is reused and freed tile slots are taken again;
//! a rolling step (atomic steps off) holds far less beside the lattice than
//! an atomic one. Its own test binary, because the counting allocator sees
//! every thread of the process.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::Reference;
use engine_api::{ComputeBackend, UpdateRule};
use sparse_grid::{SparseEngine, SparseOptions, Vacuum};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
/// Bytes allocated and not yet freed, and the most there have been.
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        grew(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        grew(new_size);
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

#[test]
fn a_rolling_step_holds_a_few_rows_of_tiles_beside_the_lattice_not_a_copy() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (d, side) = (4, 256);
    let state_bytes = side * side * 2 * d * 4;
    let mut peaks = Vec::new();
    for atomic in [true, false] {
        let before = LIVE.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        let backend: Arc<dyn ComputeBackend> =
            Arc::new(Reference::conv3x3(d, UpdateRule::Additive, 0.0, 1));
        let options = SparseOptions::default()
            .with_forward_bytes(1 << 18)
            .with_atomic_steps(atomic);
        let mut e = SparseEngine::new(backend, options).unwrap();
        for y in 0..side as i32 {
            for x in 0..side as i32 {
                e.insert(x, y, &[(0.5, 0.0), (0.0, 0.5), (0.5, 0.0), (0.0, 0.5)])
                    .unwrap();
            }
        }
        let mut staged = 0;
        for _ in 0..2 {
            staged = e.step().unwrap().staged_tiles;
        }
        // Everything the engine ever held at once: the tiles (with the
        // slab's spare capacity, the same in both modes), the staging and
        // one chunk's buffers.
        peaks.push((PEAK.load(Ordering::Relaxed) - before, staged));
    }
    let share = |b: usize| b as f64 / state_bytes as f64;
    let ((atomic, atomic_tiles), (rolling, rolling_tiles)) = (peaks[0], peaks[1]);
    // 16 x 16 tiles of 16 cells and their ring: 324 active tiles, all
    // staged by the atomic step (1.27x the state); the rolling step holds
    // a ring of whole chunks of 25 tiles covering three rows of 18.
    assert_eq!(atomic_tiles, 324);
    assert!(rolling_tiles <= 100, "{rolling_tiles} tiles staged");
    let saved = share(atomic) - share(rolling);
    assert!(
        saved > 0.9,
        "rolling saves {saved:.2} x the state (atomic peak {:.2}, rolling {:.2})",
        share(atomic),
        share(rolling)
    );
}
