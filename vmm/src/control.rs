//! Run/pause/exit coordination between the VMM thread and the vCPU threads.
//!
//! The VMM thread changes the state and kicks the vCPUs out of KVM_RUN with a
//! signal; each vCPU thread parks at the top of its loop while the state is not
//! `Running`. A signal can land just before a thread enters KVM_RUN and be lost, so
//! `pause_all` keeps kicking until every thread has reported itself parked.
//!
//! `gate` runs before every KVM_RUN, i.e. once per exit, so while the machine is
//! running it reads one atomic flag and takes no lock.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    Running,
    Paused,
    Exiting,
}

struct Inner {
    state: RunState,
    parked: usize,
}

pub struct CpuControl {
    /// `state == Running`, readable without the lock; written only under it.
    running: AtomicBool,
    /// Bumped on every machine reset (before `running` is set again); a vCPU that
    /// sees a new value reloads its power-on register state before running.
    reset_generation: AtomicU64,
    inner: Mutex<Inner>,
    cond: Condvar,
}

/// What a vCPU thread should do after passing the gate.
pub enum Gate {
    Run { reset_generation: u64 },
    Exit,
}

impl CpuControl {
    pub fn new(initial: RunState) -> Self {
        CpuControl {
            running: AtomicBool::new(initial == RunState::Running),
            reset_generation: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                state: initial,
                parked: 0,
            }),
            cond: Condvar::new(),
        }
    }

    fn set_state(&self, g: &mut Inner, state: RunState) {
        g.state = state;
        self.running
            .store(state == RunState::Running, Ordering::Release);
    }

    /// Called by a vCPU thread before each KVM_RUN.
    pub fn gate(&self) -> Gate {
        if self.running.load(Ordering::Acquire) {
            return Gate::Run {
                reset_generation: self.reset_generation.load(Ordering::Acquire),
            };
        }
        let mut g = self.inner.lock().unwrap();
        if g.state != RunState::Running {
            g.parked += 1;
            self.cond.notify_all();
            while g.state == RunState::Paused {
                g = self.cond.wait(g).unwrap();
            }
            g.parked -= 1;
        }
        match g.state {
            RunState::Exiting => Gate::Exit,
            _ => Gate::Run {
                reset_generation: self.reset_generation.load(Ordering::Acquire),
            },
        }
    }

    /// Move to `state`, then keep calling `kick` until `n` vCPU threads are parked
    /// (or, for `Exiting`, until the caller joins them).
    pub fn pause_all(&self, n: usize, kick: impl Fn()) {
        self.set_state(&mut self.inner.lock().unwrap(), RunState::Paused);
        loop {
            kick();
            let g = self.inner.lock().unwrap();
            if g.parked >= n {
                return;
            }
            let (g, _) = self
                .cond
                .wait_timeout(g, Duration::from_millis(10))
                .unwrap();
            if g.parked >= n {
                return;
            }
        }
    }

    /// Make every vCPU reload its power-on state the next time it passes the
    /// gate (while paused: when resumed). Call with the vCPUs paused.
    pub fn mark_reset(&self) {
        self.reset_generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Resume from a pause.
    pub fn resume(&self) {
        let mut g = self.inner.lock().unwrap();
        self.set_state(&mut g, RunState::Running);
        self.cond.notify_all();
    }

    pub fn exit(&self) {
        let mut g = self.inner.lock().unwrap();
        self.set_state(&mut g, RunState::Exiting);
        self.cond.notify_all();
    }
}

impl CpuControl {
    /// A vCPU that hit a fatal error waits here until the VMM exits.
    pub fn pause_self(&self) {
        let mut g = self.inner.lock().unwrap();
        g.parked += 1;
        self.cond.notify_all();
        while g.state != RunState::Exiting {
            g = self.cond.wait(g).unwrap();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn pause_resume_exit() {
        let ctl = Arc::new(CpuControl::new(RunState::Running));
        let runs = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (ctl, runs) = (ctl.clone(), runs.clone());
                std::thread::spawn(move || {
                    let mut seen_reset = 0;
                    loop {
                        match ctl.gate() {
                            Gate::Exit => return seen_reset,
                            Gate::Run { reset_generation } => {
                                seen_reset = reset_generation;
                                runs.fetch_add(1, Ordering::SeqCst);
                                std::thread::sleep(Duration::from_millis(1));
                            }
                        }
                    }
                })
            })
            .collect();
        ctl.pause_all(2, || {});
        let frozen = runs.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(runs.load(Ordering::SeqCst), frozen);
        ctl.mark_reset();
        ctl.resume();
        std::thread::sleep(Duration::from_millis(20));
        assert!(runs.load(Ordering::SeqCst) > frozen);
        ctl.exit();
        for t in threads {
            assert_eq!(t.join().unwrap(), 1);
        }
    }
}
