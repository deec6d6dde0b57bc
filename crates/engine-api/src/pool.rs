//! [`Pool`]: a bounded pool of instances of one model, one per concurrent
//! caller, for backends whose library handles cannot serve two threads at
//! once.
//!
//! It lives here, in the crate every backend depends on, because two backends
//! need exactly this and nothing backend-specific: ONNX Runtime (ort's
//! `Session::run` takes `&mut self`) and libtorch (a TorchScript forward may
//! mutate its module, and each module keeps a reusable input tensor). Rather
//! than one lock held across every forward, each concurrent caller checks out
//! its own instance; the pool's lock is held only to pop and push. Instances
//! are built lazily, so a backend used from one thread holds one, and the
//! pool never grows past its cap: extra callers wait for a returned instance
//! instead of multiplying the weights in memory.

use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use crate::Result;

/// Builds one more instance on demand; the pool calls it outside its lock.
pub type Factory<T> = Box<dyn Fn() -> Result<T> + Send + Sync>;

/// Instances of one model, handed out one caller at a time, at most
/// [`max`](Pool::max) of them.
pub struct Pool<T> {
    factory: Factory<T>,
    state: Mutex<State<T>>,
    returned: Condvar,
    max: usize,
}

struct State<T> {
    idle: Vec<T>,
    /// Instances in existence (idle, checked out, or being built).
    live: usize,
}

impl<T> Pool<T> {
    /// A pool that starts with `first` and grows, through `factory`, to at
    /// most `max` instances (at least 1).
    pub fn new(first: T, factory: Factory<T>, max: usize) -> Self {
        Self {
            factory,
            state: Mutex::new(State {
                idle: vec![first],
                live: 1,
            }),
            returned: Condvar::new(),
            max: max.max(1),
        }
    }

    /// The cap a backend uses unless it has a reason for another: the core
    /// count, within 2..=16. More concurrent callers than cores gain nothing
    /// but another copy of the weights, and 16 bounds that on big hosts.
    pub fn default_max() -> usize {
        std::thread::available_parallelism()
            .map_or(4, |n| n.get())
            .clamp(2, 16)
    }

    /// An instance for the caller's exclusive use, returned to the pool when
    /// the guard drops: an idle one, a new one while the pool is below its
    /// cap, or else the next one another caller returns.
    ///
    /// An instance whose user panicked is dropped rather than returned (it
    /// may be half-way through an update), and its slot is freed.
    pub fn checkout(&self) -> Result<Pooled<'_, T>> {
        let mut state = self.lock();
        loop {
            if let Some(item) = state.idle.pop() {
                return Ok(Pooled {
                    pool: self,
                    item: Some(item),
                });
            }
            if state.live < self.max {
                state.live += 1;
                drop(state);
                return match (self.factory)() {
                    Ok(item) => Ok(Pooled {
                        pool: self,
                        item: Some(item),
                    }),
                    Err(e) => {
                        self.release_slot();
                        Err(e)
                    }
                };
            }
            state = self
                .returned
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Instances in existence now (idle or checked out).
    pub fn live(&self) -> usize {
        self.lock().live
    }

    /// The most instances this pool will build.
    pub fn max(&self) -> usize {
        self.max
    }

    fn release_slot(&self) {
        self.lock().live -= 1;
        self.returned.notify_one();
    }

    // A panic while the lock is held cannot leave `State` half-updated (every
    // critical section is a single push, pop or counter change), so a
    // poisoned lock is still sound to use.
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A checked-out instance; dereferences to it, and goes back to its pool on
/// drop.
pub struct Pooled<'p, T> {
    pool: &'p Pool<T>,
    item: Option<T>,
}

impl<T> Deref for Pooled<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // Only `Drop` takes the item out.
        self.item.as_ref().expect("item present until drop")
    }
}

impl<T> DerefMut for Pooled<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.item.as_mut().expect("item present until drop")
    }
}

impl<T> Drop for Pooled<'_, T> {
    fn drop(&mut self) {
        let Some(item) = self.item.take() else {
            return;
        };
        if std::thread::panicking() {
            drop(item);
            self.pool.release_slot();
        } else {
            self.pool.lock().idle.push(item);
            self.pool.returned.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn counting_pool(max: usize) -> (Arc<Pool<usize>>, Arc<AtomicUsize>) {
        let built = Arc::new(AtomicUsize::new(1));
        let counter = Arc::clone(&built);
        let factory: Factory<usize> = Box::new(move || Ok(counter.fetch_add(1, Ordering::SeqCst)));
        (Arc::new(Pool::new(0, factory, max)), built)
    }

    #[test]
    fn instances_are_reused_and_built_only_for_concurrent_callers() {
        let (pool, built) = counting_pool(3);
        for _ in 0..5 {
            let s = pool.checkout().unwrap();
            assert_eq!(*s, 0, "a lone caller always gets the first instance");
        }
        let a = pool.checkout().unwrap();
        let b = pool.checkout().unwrap();
        assert_ne!(*a, *b);
        assert_eq!((pool.live(), built.load(Ordering::SeqCst)), (2, 2));
    }

    #[test]
    fn callers_beyond_the_cap_wait_for_a_returned_instance() {
        let (pool, _) = counting_pool(2);
        let a = pool.checkout().unwrap();
        let b = pool.checkout().unwrap();
        let waiter = {
            let pool = Arc::clone(&pool);
            std::thread::spawn(move || *pool.checkout().unwrap())
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished(), "a third caller must wait at cap 2");
        let returned = *b;
        drop(b);
        assert_eq!(waiter.join().unwrap(), returned);
        assert_eq!(pool.live(), 2);
        drop(a);
    }

    #[test]
    fn a_failed_build_frees_its_slot() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&calls);
        let factory: Factory<usize> = Box::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            Err(crate::Error::backend("test", "no"))
        });
        let pool = Pool::new(0, factory, 2);
        let _held = pool.checkout().unwrap();
        assert!(pool.checkout().is_err());
        assert!(pool.checkout().is_err(), "the slot is free to retry");
        assert_eq!((pool.live(), calls.load(Ordering::SeqCst)), (1, 2));
    }

    #[test]
    fn an_instance_whose_user_panicked_is_dropped_and_replaced() {
        let (pool, built) = counting_pool(1);
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _item = pool.checkout().unwrap();
            panic!("mid-forward");
        }));
        assert!(panicked.is_err());
        assert_eq!(pool.live(), 0, "the broken instance is gone");
        assert_eq!(*pool.checkout().unwrap(), 1, "a fresh one is built");
        assert_eq!(built.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn the_default_cap_is_between_2_and_16() {
        assert!((2..=16).contains(&Pool::<()>::default_max()));
    }
}
