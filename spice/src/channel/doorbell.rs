//! A wake-up for a channel task, rung from a thread outside the runtime (a
//! device worker), that reaches the task through tokio's I/O driver rather
//! than its scheduler.
//!
//! Why: a task woken through its waker from a foreign thread is put on the
//! multi-thread runtime's global queue and one parked worker is unparked to
//! look for it; the worker that finds it was the last one searching, so it
//! unparks another worker before running it (tokio's rule, so that no work
//! waits). With two workers and one frame every 10 ms that is two woken
//! threads per frame, the second for nothing (measured during playback: the
//! idle worker switched in ~120 times a second). A byte on a socket that the
//! driver polls wakes just the worker parked in the driver, which runs the
//! task from its own queue without searching: one woken thread per frame.
//! Should the socket pair be unavailable (out of descriptors), a
//! `tokio::sync::Notify` does the job the old way.

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

pub struct Doorbell {
    /// Ring side (written) and listening side (read by the task).
    pair: Option<(UnixStream, UnixStream)>,
    fallback: Notify,
    /// A byte is on its way and not yet drained: further rings need no
    /// syscall (the task looks at all of its queue when it wakes).
    rung: AtomicBool,
}

impl Default for Doorbell {
    fn default() -> Self {
        let pair = UnixStream::pair()
            .and_then(|(tx, rx)| {
                tx.set_nonblocking(true)?;
                rx.set_nonblocking(true)?;
                Ok((tx, rx))
            })
            .inspect_err(|e| tracing::warn!("doorbell: no socket pair ({e}); Notify instead"))
            .ok();
        Doorbell {
            pair,
            fallback: Notify::new(),
            rung: AtomicBool::new(false),
        }
    }
}

impl Doorbell {
    /// Wakes the listening task (now, or at its next `wait` if it is busy).
    /// Never blocks; callable from any thread.
    pub fn ring(&self) {
        let Some((tx, _)) = &self.pair else {
            self.fallback.notify_one();
            return;
        };
        if self.rung.swap(true, Ordering::AcqRel) {
            return;
        }
        // `Write` is implemented for `&UnixStream`: no lock, no `mut`.
        let mut tx: &UnixStream = tx;
        match tx.write(&[1]) {
            Ok(_) => {}
            // Full: bytes are waiting, so the task will wake anyway.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                self.rung.store(false, Ordering::Release);
                tracing::warn!("doorbell: {e}");
                self.fallback.notify_one();
            }
        }
    }

    /// The listening side for a task of the current runtime. One at a time
    /// (a channel serves one client); a ring from before it existed wakes it
    /// once, spuriously.
    pub fn listener(&self) -> Listener<'_> {
        let rx = self.pair.as_ref().and_then(|(_, rx)| {
            rx.try_clone()
                .and_then(tokio::net::UnixStream::from_std)
                .inspect_err(|e| tracing::warn!("doorbell: listener: {e}; Notify instead"))
                .ok()
        });
        Listener { bell: self, rx }
    }
}

pub struct Listener<'a> {
    bell: &'a Doorbell,
    rx: Option<tokio::net::UnixStream>,
}

impl Listener<'_> {
    /// Returns once the bell has rung since the last return. Cancel-safe: a
    /// ring is never lost, at worst it wakes the next call at once.
    pub async fn wait(&self) {
        let Some(rx) = &self.rx else {
            return self.bell.fallback.notified().await;
        };
        loop {
            tokio::select! {
                r = rx.readable() => {
                    if let Err(e) = r {
                        tracing::warn!("doorbell: {e}");
                        return self.bell.fallback.notified().await;
                    }
                }
                // A ring whose write failed.
                _ = self.bell.fallback.notified() => return,
            }
            let mut buf = [0u8; 64];
            let mut drained = false;
            loop {
                match rx.try_read(&mut buf) {
                    Ok(0) => return,
                    Ok(_) => drained = true,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        tracing::warn!("doorbell: {e}");
                        return;
                    }
                }
            }
            if drained {
                // Cleared after draining, never before: cleared first, a ring
                // landing between the clear and the drain would set the flag
                // and have its byte drained, leaving the flag set with no
                // byte on its way, and every later ring would be skipped (a
                // lost wake-up, seen in CI). Now a ring that found the flag
                // set came before this swap, and the swap acquires what that
                // ringer published, so the caller sees it when it looks at
                // its queue; a ring after the swap writes a new byte.
                self.bell.rung.swap(false, Ordering::AcqRel);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_ring_from_another_thread_wakes_the_listener_once() {
        let bell = Arc::new(Doorbell::default());
        assert!(bell.pair.is_some());
        runtime().block_on(async {
            let listener = bell.listener();
            let quiet = tokio::time::timeout(Duration::from_millis(50), listener.wait()).await;
            assert!(quiet.is_err(), "woke without a ring");
            let b = bell.clone();
            std::thread::spawn(move || {
                // Several rings before the task runs: one wake-up.
                b.ring();
                b.ring();
                b.ring();
            })
            .join()
            .unwrap();
            tokio::time::timeout(Duration::from_secs(5), listener.wait())
                .await
                .expect("the ring was lost");
            let again = tokio::time::timeout(Duration::from_millis(50), listener.wait()).await;
            assert!(again.is_err(), "one burst of rings woke it twice");
            // A ring while the listener is busy is kept for its next wait.
            bell.ring();
            tokio::time::timeout(Duration::from_secs(5), listener.wait())
                .await
                .expect("a ring before the wait was lost");
        });
    }

    #[test]
    fn rings_from_a_thread_are_never_lost() {
        let bell = Arc::new(Doorbell::default());
        let count = Arc::new(std::sync::atomic::AtomicU32::new(0));
        runtime().block_on(async {
            let listener = bell.listener();
            let (b, c) = (bell.clone(), count.clone());
            let ringer = std::thread::spawn(move || {
                for _ in 0..20_000 {
                    c.fetch_add(1, Ordering::SeqCst);
                    b.ring();
                }
            });
            // Whatever the interleaving, the last increment is followed by a
            // wake-up that sees it.
            let mut seen = 0;
            while seen < 20_000 {
                tokio::time::timeout(Duration::from_secs(5), listener.wait())
                    .await
                    .expect("a ring was lost");
                seen = count.load(Ordering::SeqCst);
            }
            ringer.join().unwrap();
        });
    }
}
