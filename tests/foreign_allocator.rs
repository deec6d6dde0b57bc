//! The tch backend's library under a host with its own global allocator.
//!
//! The tch backend lives in a shared library (`libatheria_tch.so`) that is a
//! separate Rust program with its own allocator (the system's). Its boundary
//! must therefore be C: memory freed by the side that allocated it, no Rust
//! types crossing. This test binary installs an allocator that is not the
//! system's and that no other allocator can mistake for its own: every block
//! it hands out starts 16 or more bytes into a `malloc`ed block, behind a
//! header with a magic number. A pointer from the library freed here fails
//! the magic check and aborts; a pointer from here freed by the library's
//! `free` is not a `malloc` chunk, and glibc aborts. The Rust-ABI boundary
//! this replaced (a `String` from `check`, an `Arc<dyn ComputeBackend>` from
//! `load`, both dropped by the host) aborted this test in its first call.
//!
//! Through that boundary the test checks every entry point (check, load from
//! a directory and from memory, forward, describe, errors, logging, free)
//! and that a forward and a dense run equal the candle backend's within 1e-5.
#![cfg(all(feature = "tch", feature = "candle"))]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::{Arc, Mutex, Once};

use atheria::{
    state_file, BackendKind, BackendOptions, BatchShape, ComputeBackend, DenseEngine, Error,
    ModelFile, ModelPackage, ModelSpec, StepOptions,
};
use common::*;

/// Blocks `HEADER.max(align)` bytes into a block of the system allocator,
/// with [`MAGIC`] and that offset in the 16 bytes before the pointer.
struct OffsetAllocator;

const MAGIC: u64 = 0xA7E4_1A00_F0E1_6E01;
const HEADER: usize = 16;

impl OffsetAllocator {
    fn outer(layout: Layout) -> Option<(Layout, usize)> {
        let offset = HEADER.max(layout.align());
        let size = layout.size().checked_add(offset)?;
        Some((Layout::from_size_align(size, offset).ok()?, offset))
    }
}

fn die(what: &str) -> ! {
    let _ = std::io::stderr().write_all(what.as_bytes());
    std::process::abort()
}

// SAFETY: every block is a part of a System block large and aligned enough
// for the layout asked; dealloc returns exactly that System block.
unsafe impl GlobalAlloc for OffsetAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some((outer, offset)) = Self::outer(layout) else {
            return std::ptr::null_mut();
        };
        // SAFETY: `outer` has a non-zero size (offset >= 16).
        let base = unsafe { System.alloc(outer) };
        if base.is_null() {
            return base;
        }
        // SAFETY: `offset` <= the block's size; the header lies within it.
        unsafe {
            let ptr = base.add(offset);
            ptr.sub(16).cast::<u64>().write_unaligned(MAGIC);
            ptr.sub(8).cast::<u64>().write_unaligned(offset as u64);
            ptr
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: a block from `alloc` has its header right before it; any
        // other pointer (from another allocator) is at least readable there
        // on glibc, whose chunks carry a 16-byte header.
        let (magic, offset) = unsafe {
            (
                ptr.sub(16).cast::<u64>().read_unaligned(),
                ptr.sub(8).cast::<u64>().read_unaligned() as usize,
            )
        };
        if magic != MAGIC {
            die("foreign_allocator: the host freed memory it did not allocate\n");
        }
        let Some((outer, expected)) = Self::outer(layout) else {
            die("foreign_allocator: bad layout\n");
        };
        if offset != expected {
            die("foreign_allocator: corrupt header\n");
        }
        // SAFETY: the block `alloc` made for this layout; marked freed first.
        unsafe {
            ptr.sub(16).cast::<u64>().write_unaligned(0);
            System.dealloc(ptr.sub(offset), outer);
        }
    }
}

#[global_allocator]
static ALLOCATOR: OffsetAllocator = OffsetAllocator;

/// Log events the library sent, as `target: message`.
static LOGGED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// A subscriber that keeps every event under the target `atheria::plugin`.
struct Collect;

impl tracing::Subscriber for Collect {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Text(String);
        impl tracing::field::Visit for Text {
            fn record_debug(&mut self, field: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                self.0.push_str(&format!(" {}={v:?}", field.name()));
            }
        }
        if event.metadata().target() == "atheria::plugin" {
            let mut text = Text(String::new());
            event.record(&mut text);
            LOGGED.lock().unwrap().push(text.0);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Installs [`Collect`] before the library is first loaded (it learns the
/// host's log level then).
fn setup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| tracing::subscriber::set_global_default(Collect).unwrap());
}

fn options() -> BackendOptions {
    BackendOptions::default().with_threads(2)
}

fn golden_forward(case: &str) -> (BatchShape, Vec<f32>, Vec<f32>) {
    let file = golden(case).join("forward.safetensors");
    let (shape, x) = read_tensor(&file, "x");
    let (_, y) = read_tensor(&file, "y");
    (
        BatchShape::new(shape[0], shape[1], shape[2], shape[3]),
        x,
        y,
    )
}

fn forward(backend: &dyn ComputeBackend, shape: BatchShape, x: &[f32]) -> Vec<f32> {
    let mut out = vec![f32::NAN; x.len()];
    backend
        .forward(x, shape, &mut out)
        .unwrap_or_else(|e| panic!("{}: {e}", backend.name()));
    out
}

#[test]
fn tch_through_the_c_boundary_equals_candle_under_a_foreign_allocator() {
    setup();
    let version = BackendKind::Tch.check().expect("tch works here");
    assert!(version.starts_with("libtorch "), "{version}");

    let case = "conv3x3_d4";
    let package = ModelPackage::load(golden(case)).unwrap();
    let tch = BackendKind::Tch.load(&package, &options()).unwrap();
    let candle = BackendKind::Candle.load(&package, &options()).unwrap();
    let described = tch.describe();
    assert!(described.starts_with("tch (libtorch"), "{described}");
    assert_eq!((tch.name(), tch.spec()), ("tch", package.spec()));

    let (shape, x, y) = golden_forward(case);
    let (by_tch, by_candle) = (forward(&*tch, shape, &x), forward(&*candle, shape, &x));
    assert_close("tch vs candle forward", &by_tch, &by_candle, 1e-5, 1e-5);
    assert_close("tch vs PyTorch forward", &by_tch, &y, 1e-4, 1e-4);

    // The same model from memory: the host hands the library its bytes.
    let dir = golden(case);
    let spec = ModelSpec::from_json(
        &std::fs::read_to_string(dir.join("model.json")).unwrap(),
        &dir.join("model.json"),
    )
    .unwrap();
    let in_memory = ModelPackage::from_bytes(
        spec,
        [(
            ModelFile::TorchScript,
            std::fs::read(dir.join("model.pt")).unwrap(),
        )],
    )
    .unwrap();
    let from_memory = BackendKind::Tch.load(&in_memory, &options()).unwrap();
    assert_eq!(forward(&*from_memory, shape, &x), by_tch);

    // A dense run, step by step, on both.
    let (steps, gamma) = case_params(case);
    let initial = state_file::read_state(&dir.join("initial.safetensors"), usize::MAX).unwrap();
    let step_options = StepOptions::default().with_gamma(gamma);
    let mut on_tch = DenseEngine::new(Arc::clone(&tch), initial.clone(), step_options).unwrap();
    let mut on_candle = DenseEngine::new(candle, initial, step_options).unwrap();
    for _ in 0..steps {
        on_tch.step().unwrap();
        on_candle.step().unwrap();
        assert_close(
            "tch vs candle state",
            on_tch.state().planes(),
            on_candle.state().planes(),
            1e-5,
            1e-5,
        );
    }

    // Two threads forwarding through one handle at once.
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (tch, x) = (Arc::clone(&tch), x.clone());
            std::thread::spawn(move || forward(&*tch, shape, &x))
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), by_tch);
    }

    // The library's log events reach this process's subscriber.
    let logged = LOGGED.lock().unwrap().join("\n");
    assert!(
        logged.contains("loaded") && logged.contains("from=atheria_tch"),
        "no log event from the library: {logged:?}"
    );
    drop((on_tch, from_memory, tch));
}

#[test]
fn errors_cross_the_c_boundary_as_the_right_variant_with_their_message() {
    setup();
    let dir = temp_dir("foreign-allocator-errors");
    std::fs::write(
        dir.join("model.json"),
        r#"{"format":"atheria-model/1","name":"t","architecture":"custom","d_state":4,
           "update":"additive","receptive_radius":null,"files":{"torchscript":"model.pt"}}"#,
    )
    .unwrap();
    std::fs::write(dir.join("model.pt"), b"this is not a model").unwrap();
    let package = ModelPackage::load(&dir).unwrap();
    match BackendKind::Tch.load(&package, &options()) {
        Err(Error::Model { path, message }) => {
            assert_eq!(path, dir.join("model.pt"));
            assert!(message.contains("TorchScript"), "{message}");
        }
        Err(e) => panic!("expected a model error, got {e:?}"),
        Ok(_) => panic!("garbage loaded as TorchScript"),
    }

    // A wrong call is refused before it crosses; a right one still works.
    let tch = load(BackendKind::Tch, "conv3x3_d4");
    let shape = BatchShape::new(1, 6, 4, 4);
    let mut out = vec![0.0; shape.len()];
    let err = tch.forward(&vec![0.0; shape.len()], shape, &mut out);
    assert!(matches!(err, Err(Error::InvalidArgument(_))), "{err:?}");
    let shape = BatchShape::new(1, 8, 4, 4);
    let mut out = vec![0.0; shape.len()];
    tch.forward(&vec![0.25; shape.len()], shape, &mut out)
        .unwrap();
    assert!(out.iter().all(|v| v.is_finite()));
}
