//! A small pool of ONNX Runtime sessions over one model.
//!
//! ort 2.0.0-rc.15's `Session::run` takes `&mut self` (some execution
//! providers' allocators are not thread-safe), so one session cannot serve two
//! threads at once. Rather than one lock held across every forward, each
//! concurrent caller checks out its own session; the pool's lock is held only
//! to pop and push. Sessions are built lazily, so a backend used from one
//! thread holds one session, and the pool never grows past `max` (extra
//! callers wait for a free session instead of multiplying weights in memory).

use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use engine_api::Result;

/// Builds one more session on demand; the pool calls it outside its lock.
pub(crate) type Factory<S> = Box<dyn Fn() -> Result<S> + Send + Sync>;

/// Sessions over one model, handed out one caller at a time. Generic over
/// the session type only so that its logic can be tested without a model.
pub(crate) struct SessionPool<S> {
    factory: Factory<S>,
    state: Mutex<State<S>>,
    returned: Condvar,
    max: usize,
}

struct State<S> {
    idle: Vec<S>,
    /// Sessions in existence (idle, checked out, or being built).
    live: usize,
}

impl<S> SessionPool<S> {
    /// A pool that starts with `first` and grows to at most `max` sessions.
    pub(crate) fn new(first: S, factory: Factory<S>, max: usize) -> Self {
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

    /// A session for the caller's exclusive use, returned to the pool on drop.
    pub(crate) fn checkout(&self) -> Result<PooledSession<'_, S>> {
        let mut state = self.lock();
        loop {
            if let Some(session) = state.idle.pop() {
                return Ok(PooledSession {
                    pool: self,
                    session: Some(session),
                });
            }
            if state.live < self.max {
                state.live += 1;
                drop(state);
                return match (self.factory)() {
                    Ok(session) => Ok(PooledSession {
                        pool: self,
                        session: Some(session),
                    }),
                    Err(e) => {
                        self.lock().live -= 1;
                        self.returned.notify_one();
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

    /// Sessions built so far.
    pub(crate) fn live(&self) -> usize {
        self.lock().live
    }

    /// The most sessions this pool will build.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    // A panic while the lock is held cannot leave `State` half-updated (every
    // critical section is a single push, pop or counter change), so a
    // poisoned lock is still sound to use.
    fn lock(&self) -> MutexGuard<'_, State<S>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A checked-out session; dereferences to it.
pub(crate) struct PooledSession<'p, S> {
    pool: &'p SessionPool<S>,
    session: Option<S>,
}

impl<S> Deref for PooledSession<'_, S> {
    type Target = S;
    fn deref(&self) -> &S {
        // Only `Drop` takes the session out.
        self.session.as_ref().expect("session present until drop")
    }
}

impl<S> DerefMut for PooledSession<'_, S> {
    fn deref_mut(&mut self) -> &mut S {
        self.session.as_mut().expect("session present until drop")
    }
}

impl<S> Drop for PooledSession<'_, S> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            self.pool.lock().idle.push(session);
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

    fn counting_pool(max: usize) -> (Arc<SessionPool<usize>>, Arc<AtomicUsize>) {
        let built = Arc::new(AtomicUsize::new(1));
        let counter = Arc::clone(&built);
        let factory: Factory<usize> = Box::new(move || Ok(counter.fetch_add(1, Ordering::SeqCst)));
        (Arc::new(SessionPool::new(0, factory, max)), built)
    }

    #[test]
    fn sessions_are_reused_and_built_only_for_concurrent_callers() {
        let (pool, built) = counting_pool(3);
        for _ in 0..5 {
            let s = pool.checkout().unwrap();
            assert_eq!(*s, 0, "a lone caller always gets the first session");
        }
        let a = pool.checkout().unwrap();
        let b = pool.checkout().unwrap();
        assert_ne!(*a, *b);
        assert_eq!((pool.live(), built.load(Ordering::SeqCst)), (2, 2));
    }

    #[test]
    fn callers_beyond_the_cap_wait_for_a_returned_session() {
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
            Err(engine_api::Error::backend("onnx", "no"))
        });
        let pool = SessionPool::new(0, factory, 2);
        let _held = pool.checkout().unwrap();
        assert!(pool.checkout().is_err());
        assert!(pool.checkout().is_err(), "the slot is free to retry");
        assert_eq!((pool.live(), calls.load(Ordering::SeqCst)), (1, 2));
    }
}
