//! A watchdog for start-up stages and steps.
//!
//! A call into a native library that hangs cannot be cancelled from Rust, so
//! the watchdog does the next best thing: a thread that, when the current
//! stage outlives its limit, reports the stage by name through a callback
//! (the binary prints one error line and exits). The hang the C++ engine had
//! would have been an error naming `model load`.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the watchdog is watching.
struct Watch {
    stage: Option<(String, Instant)>,
    stop: bool,
}

/// Watches one stage at a time; dropping it stops the thread.
pub struct Watchdog {
    shared: Arc<(Mutex<Watch>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// Starts a watchdog that calls `on_timeout(stage, limit)` once when a
    /// stage runs longer than `limit`.
    pub fn start(limit: Duration, on_timeout: impl Fn(&str, Duration) + Send + 'static) -> Self {
        let shared = Arc::new((
            Mutex::new(Watch {
                stage: None,
                stop: false,
            }),
            Condvar::new(),
        ));
        let watched = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("atheria-watchdog".into())
            .spawn(move || {
                let (lock, wake) = &*watched;
                let Ok(mut watch) = lock.lock() else { return };
                loop {
                    if watch.stop {
                        return;
                    }
                    let wait = match &watch.stage {
                        None => Duration::from_secs(3600),
                        Some((name, since)) => {
                            let elapsed = since.elapsed();
                            if elapsed >= limit {
                                on_timeout(name, limit);
                                watch.stage = None;
                                continue;
                            }
                            limit - elapsed
                        }
                    };
                    watch = match wake.wait_timeout(watch, wait) {
                        Ok((w, _)) => w,
                        Err(_) => return,
                    };
                }
            })
            .ok();
        Self { shared, thread }
    }

    /// Begins watching `stage` (replacing the previous one).
    pub fn enter(&self, stage: impl Into<String>) {
        self.set(Some((stage.into(), Instant::now())));
    }

    /// Stops watching; nothing is running that could hang.
    pub fn idle(&self) {
        self.set(None);
    }

    fn set(&self, stage: Option<(String, Instant)>) {
        let (lock, wake) = &*self.shared;
        if let Ok(mut w) = lock.lock() {
            w.stage = stage;
            wake.notify_all();
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let (lock, wake) = &*self.shared;
        if let Ok(mut w) = lock.lock() {
            w.stop = true;
            wake.notify_all();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn a_stage_that_overruns_is_reported_by_name() {
        let (tx, rx) = mpsc::channel();
        let dog = Watchdog::start(Duration::from_millis(50), move |stage, _| {
            let _ = tx.send(stage.to_string());
        });
        dog.enter("quick");
        dog.idle();
        dog.enter("model load");
        let hung = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("watchdog never fired");
        assert_eq!(hung, "model load");
    }

    #[test]
    fn stages_that_finish_in_time_are_not_reported() {
        let (tx, rx) = mpsc::channel::<String>();
        let dog = Watchdog::start(Duration::from_millis(200), move |stage, _| {
            let _ = tx.send(stage.to_string());
        });
        for i in 0..5 {
            dog.enter(format!("step {i}"));
            std::thread::sleep(Duration::from_millis(10));
        }
        dog.idle();
        assert!(rx.recv_timeout(Duration::from_millis(400)).is_err());
    }
}
