//! Device worker threads: one named thread per running device, an epoll loop
//! over the device's eventfds (queue kicks, which KVM signals straight from a
//! guest write with ioeventfd) and timerfds, plus the two control events every
//! worker has: pause and kill.
//!
//! A device hands its state to the worker as a `WorkerHandler` and gets it back
//! from `stop`, so the state has one owner at a time and needs no lock: the
//! vCPU path (under the device's lock) talks to the worker only through
//! eventfds and the control calls here, and the worker never takes the device's
//! lock. That is what lets a vCPU thread stop a worker while holding it.
//!
//! Guarantees: `pause` returns once the worker is parked between events, after
//! it has handled every event it was woken for, so a kick written before
//! `pause` is handled before the pause takes effect. `stop` returns once the
//! thread has ended: a handler may cut a long stretch of work short when it
//! sees `WorkerEvents::yield_requested`, but never in the middle of an item
//! (no request is left half-done).

use std::io;
use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::{debug, error};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::{Error, Result};

/// A handler's name for one of its event sources.
pub type Token = u32;

const KILL: u64 = u64::MAX;
const PAUSE: u64 = u64::MAX - 1;
const MAX_EVENTS: usize = 16;

/// The event sources a worker waits on; handlers add and remove their own.
pub struct WorkerEvents {
    epoll: Epoll,
    wanted: Arc<AtomicBool>,
}

impl WorkerEvents {
    /// Whether the owner is stopping the worker. A handler with a long
    /// stretch of work (a queue that another vCPU keeps filling while this
    /// one resets the device) checks this between items and returns early,
    /// leaving the rest. (A pause waits for the work: it comes with the vCPUs
    /// parked, so nothing refills the queue and the work is bounded.)
    pub fn yield_requested(&self) -> bool {
        self.wanted.load(Ordering::Acquire)
    }

    /// Wake the worker with `token` whenever `fd` is readable.
    pub fn add(&self, fd: &impl AsRawFd, token: Token) -> io::Result<()> {
        let event = EpollEvent::new(EventSet::IN, u64::from(token));
        self.epoll.ctl(ControlOperation::Add, fd.as_raw_fd(), event)
    }

    /// Stop waiting on `fd`.
    pub fn remove(&self, fd: &impl AsRawFd) -> io::Result<()> {
        self.epoll.ctl(
            ControlOperation::Delete,
            fd.as_raw_fd(),
            EpollEvent::default(),
        )
    }
}

/// What runs on a worker thread.
pub trait WorkerHandler: Send + 'static {
    /// Register the event sources, on the worker thread before the loop.
    fn register(&mut self, events: &WorkerEvents) -> io::Result<()>;

    /// The source registered as `token` is readable. The handler reads (and so
    /// clears) it; a source left readable wakes the loop again at once.
    fn handle(&mut self, token: Token, events: &WorkerEvents);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Request {
    Run,
    Pause,
    Stop,
}

struct ControlState {
    request: Request,
    parked: bool,
}

struct Control {
    kill: EventFd,
    pause: EventFd,
    /// Set once a stop is requested (`WorkerEvents::yield_requested`).
    wanted: Arc<AtomicBool>,
    state: Mutex<ControlState>,
    cond: Condvar,
}

impl Control {
    fn lock(&self) -> MutexGuard<'_, ControlState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// On the worker: park until told to run or stop; true means stop.
    fn park(&self) -> bool {
        let mut st = self.lock();
        st.parked = true;
        self.cond.notify_all();
        while st.request == Request::Pause {
            st = self.cond.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st.parked = false;
        self.cond.notify_all();
        st.request == Request::Stop
    }
}

/// A running worker thread that owns a `H`.
pub struct Worker<H: WorkerHandler> {
    name: String,
    thread: Option<JoinHandle<H>>,
    control: Arc<Control>,
}

impl<H: WorkerHandler> Worker<H> {
    /// Start thread `name` (at most 15 bytes show in `ps`/`top`) running
    /// `handler`. Fails if the handler cannot register its event sources.
    pub fn spawn(name: &str, mut handler: H) -> Result<Self> {
        let werr = |what: &str, e: io::Error| Error::Worker(format!("{name}: {what}: {e}"));
        let control = Arc::new(Control {
            kill: EventFd::new(EFD_NONBLOCK).map_err(|e| werr("eventfd", e))?,
            pause: EventFd::new(EFD_NONBLOCK).map_err(|e| werr("eventfd", e))?,
            wanted: Arc::new(AtomicBool::new(false)),
            state: Mutex::new(ControlState {
                request: Request::Run,
                parked: false,
            }),
            cond: Condvar::new(),
        });
        let events = WorkerEvents {
            epoll: Epoll::new().map_err(|e| werr("epoll", e))?,
            wanted: control.wanted.clone(),
        };
        for (fd, token) in [(&control.kill, KILL), (&control.pause, PAUSE)] {
            let ev = EpollEvent::new(EventSet::IN, token);
            events
                .epoll
                .ctl(ControlOperation::Add, fd.as_raw_fd(), ev)
                .map_err(|e| werr("epoll_ctl", e))?;
        }
        // Registered here, not on the thread, so a failure is the caller's.
        handler.register(&events).map_err(|e| werr("register", e))?;
        let ctl = control.clone();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || run(handler, events, &ctl))
            .map_err(|e| werr("spawn", e))?;
        debug!("worker {name} started");
        Ok(Self {
            name: name.to_owned(),
            thread: Some(thread),
            control,
        })
    }

    /// Wait until the worker is parked between events (every event it had been
    /// woken for is handled). Returns at once if the thread has died.
    pub fn pause(&self) {
        let mut st = self.control.lock();
        if st.request == Request::Stop {
            return;
        }
        if st.request != Request::Pause {
            st.request = Request::Pause;
            if let Err(e) = self.control.pause.write(1) {
                error!("worker {}: pause event: {e}", self.name);
            }
        }
        while !st.parked {
            if self.thread.as_ref().is_none_or(|t| t.is_finished()) {
                return;
            }
            let (g, _) = self
                .control
                .cond
                .wait_timeout(st, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner());
            st = g;
        }
    }

    /// Let a paused worker go on. Returns once it has left its parking spot,
    /// so a `pause` right after waits for a fresh park (and is a barrier again).
    pub fn resume(&self) {
        let mut st = self.control.lock();
        if st.request != Request::Pause {
            return;
        }
        st.request = Request::Run;
        self.control.cond.notify_all();
        while st.parked {
            if self.thread.as_ref().is_none_or(|t| t.is_finished()) {
                return;
            }
            let (g, _) = self
                .control
                .cond
                .wait_timeout(st, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner());
            st = g;
        }
    }

    /// End the thread (after the events it was woken for) and take the handler
    /// back. None if the handler panicked (logged): its state is gone.
    pub fn stop(mut self) -> Option<H> {
        self.stop_thread()
    }

    fn stop_thread(&mut self) -> Option<H> {
        let thread = self.thread.take()?;
        {
            let mut st = self.control.lock();
            st.request = Request::Stop;
            self.control.wanted.store(true, Ordering::Release);
            self.control.cond.notify_all();
        }
        if let Err(e) = self.control.kill.write(1) {
            error!("worker {}: kill event: {e}", self.name);
        }
        match thread.join() {
            Ok(h) => {
                debug!("worker {} stopped", self.name);
                Some(h)
            }
            Err(_) => {
                error!("worker {} panicked; its device state is lost", self.name);
                None
            }
        }
    }
}

impl<H: WorkerHandler> Drop for Worker<H> {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

fn run<H: WorkerHandler>(mut handler: H, events: WorkerEvents, control: &Control) -> H {
    let mut ready = [EpollEvent::default(); MAX_EVENTS];
    loop {
        let n = match events.epoll.wait(-1, &mut ready) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                error!("worker epoll_wait failed: {e}; stopping");
                return handler;
            }
        };
        // The device's own events first: work kicked before a pause or stop
        // request is done before it takes effect.
        let (mut pause, mut kill) = (false, false);
        for ev in &ready[..n] {
            match ev.data() {
                KILL => kill = true,
                PAUSE => pause = true,
                token => handler.handle(token as Token, &events),
            }
        }
        if pause {
            let _ = control.pause.read();
            if control.park() {
                return handler;
            }
        }
        if kill || control.lock().request == Request::Stop {
            return handler;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;
    use vmm_sys_util::timerfd::TimerFd;

    const KICK: Token = 1;
    const TIMER: Token = 2;

    /// Counts kicks (each one "work" that takes a little while) and timer ticks.
    struct Counter {
        kick: Arc<EventFd>,
        timer: Option<TimerFd>,
        kicks: Arc<AtomicUsize>,
        ticks: usize,
        work: Duration,
    }

    impl WorkerHandler for Counter {
        fn register(&mut self, events: &WorkerEvents) -> io::Result<()> {
            events.add(&*self.kick, KICK)?;
            if let Some(t) = &self.timer {
                events.add(t, TIMER)?;
            }
            Ok(())
        }

        fn handle(&mut self, token: Token, events: &WorkerEvents) {
            match token {
                KICK => {
                    let n = self.kick.read().unwrap_or(0) as usize;
                    std::thread::sleep(self.work);
                    self.kicks.fetch_add(n, Ordering::SeqCst);
                }
                TIMER => {
                    let t = self.timer.as_mut().unwrap();
                    self.ticks += t.wait().unwrap() as usize;
                    if self.ticks >= 3 {
                        events.remove(&*t).unwrap();
                    }
                }
                _ => panic!("unknown token {token}"),
            }
        }
    }

    fn counter(work: Duration) -> (Counter, Arc<EventFd>, Arc<AtomicUsize>) {
        let kick = Arc::new(EventFd::new(EFD_NONBLOCK).unwrap());
        let kicks = Arc::new(AtomicUsize::new(0));
        let c = Counter {
            kick: kick.clone(),
            timer: None,
            kicks: kicks.clone(),
            ticks: 0,
            work,
        };
        (c, kick, kicks)
    }

    fn wait_until(what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn start_kick_stop() {
        let (c, kick, kicks) = counter(Duration::ZERO);
        let w = Worker::spawn("test-worker", c).unwrap();
        kick.write(1).unwrap();
        wait_until("first kick", || kicks.load(Ordering::SeqCst) == 1);
        kick.write(2).unwrap();
        let c = w.stop().expect("handler back");
        assert_eq!(kicks.load(Ordering::SeqCst), 3, "kick before stop handled");
        // The state comes back and can run again on a new thread.
        let w = Worker::spawn("test-worker", c).unwrap();
        kick.write(1).unwrap();
        wait_until("kick after restart", || kicks.load(Ordering::SeqCst) == 4);
        drop(w);
    }

    #[test]
    fn pause_is_a_barrier_and_holds_work_back() {
        let (c, kick, kicks) = counter(Duration::from_millis(20));
        let w = Worker::spawn("test-pause", c).unwrap();
        // Kicked work is finished by the time pause returns.
        kick.write(1).unwrap();
        w.pause();
        assert_eq!(kicks.load(Ordering::SeqCst), 1);
        // While paused, kicks wait.
        kick.write(1).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(kicks.load(Ordering::SeqCst), 1);
        w.pause(); // idempotent
        w.resume();
        wait_until("kick after resume", || kicks.load(Ordering::SeqCst) == 2);
        w.resume(); // not paused: nothing
                    // Stop while paused ends the thread too.
        w.pause();
        kick.write(1).unwrap();
        let c = w.stop().unwrap();
        assert_eq!(
            c.kicks.load(Ordering::SeqCst),
            2,
            "kick after pause stays queued"
        );
        assert_eq!(c.kick.read().unwrap(), 1);
    }

    #[test]
    fn long_work_yields_to_stop() {
        /// Works through `left` items, one per millisecond, yielding when asked.
        struct Long {
            kick: EventFd,
            left: u32,
            done: Arc<AtomicUsize>,
        }
        impl WorkerHandler for Long {
            fn register(&mut self, events: &WorkerEvents) -> io::Result<()> {
                events.add(&self.kick, 1)
            }
            fn handle(&mut self, _: Token, events: &WorkerEvents) {
                let _ = self.kick.read();
                while self.left > 0 && !events.yield_requested() {
                    std::thread::sleep(Duration::from_millis(1));
                    self.left -= 1;
                    self.done.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        let done = Arc::new(AtomicUsize::new(0));
        let kick = EventFd::new(EFD_NONBLOCK).unwrap();
        kick.write(1).unwrap();
        let w = Worker::spawn(
            "test-long",
            Long {
                kick,
                left: 5000,
                done: done.clone(),
            },
        )
        .unwrap();
        wait_until("work started", || done.load(Ordering::SeqCst) > 0);
        // The stop does not wait for 5 s of work.
        let t = Instant::now();
        let h = w.stop().unwrap();
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        assert!(h.left > 0, "stopped before the end");
    }

    #[test]
    fn timers_tick_on_the_worker() {
        let (mut c, _kick, _) = counter(Duration::ZERO);
        let mut t = TimerFd::new().unwrap();
        t.reset(Duration::from_millis(1), Some(Duration::from_millis(1)))
            .unwrap();
        c.timer = Some(t);
        let w = Worker::spawn("test-timer", c).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let c = w.stop().unwrap();
        assert!(c.ticks >= 3, "ticks {}", c.ticks);
    }

    #[test]
    fn thread_is_named() {
        struct Name(Arc<Mutex<Option<String>>>, EventFd);
        impl WorkerHandler for Name {
            fn register(&mut self, events: &WorkerEvents) -> io::Result<()> {
                events.add(&self.1, 1)
            }
            fn handle(&mut self, _: Token, _: &WorkerEvents) {
                let _ = self.1.read();
                *self.0.lock().unwrap() = std::thread::current().name().map(str::to_owned);
            }
        }
        let seen = Arc::new(Mutex::new(None));
        let fd = EventFd::new(EFD_NONBLOCK).unwrap();
        fd.write(1).unwrap();
        let w = Worker::spawn("virtio-blk@03.0", Name(seen.clone(), fd)).unwrap();
        w.pause();
        assert_eq!(seen.lock().unwrap().as_deref(), Some("virtio-blk@03.0"));
    }

    #[test]
    fn a_panicking_handler_does_not_hang_its_owner() {
        struct Boom(EventFd);
        impl WorkerHandler for Boom {
            fn register(&mut self, events: &WorkerEvents) -> io::Result<()> {
                events.add(&self.0, 1)
            }
            fn handle(&mut self, _: Token, _: &WorkerEvents) {
                panic!("handler bug (expected by this test)");
            }
        }
        let fd = EventFd::new(EFD_NONBLOCK).unwrap();
        fd.write(1).unwrap();
        let w = Worker::spawn("test-boom", Boom(fd)).unwrap();
        w.pause();
        assert!(w.stop().is_none());
    }

    #[test]
    fn registration_failure_is_an_error() {
        struct Bad;
        impl WorkerHandler for Bad {
            fn register(&mut self, _: &WorkerEvents) -> io::Result<()> {
                Err(io::Error::other("no"))
            }
            fn handle(&mut self, _: Token, _: &WorkerEvents) {}
        }
        assert!(matches!(
            Worker::spawn("test-bad", Bad),
            Err(Error::Worker(_))
        ));
    }
}
