//! How fast and how far a client is: a per-connection estimate of the link's
//! bandwidth and round-trip latency.
//!
//! At connect MAIN runs a net test for the session (the idea of
//! spice-server's main channel "net test"; our own sequence; the display
//! channels adopt its result, see `session_link`): three PINGs queued back to back, an
//! empty one (its round trip is the latency), one with a warm-up payload (it
//! opens the TCP window and gives a reference time) and one with the rate
//! payload. The client answers each on arrival, so the time between the last
//! two PONGs is how long the rate payload took to cross the link.
//!
//! After that the estimate follows the traffic (delivery-rate sampling as in
//! BBR, at ack granularity): each counted message records how many bytes were
//! delivered when it was sent and since when; an ACK (the client has read
//! another window of messages) makes a sample of the bytes delivered over the
//! longer of the send and ack spans. A sample that started with nothing in
//! flight also holds one round trip of waiting, which is taken off. Samples
//! of less than [`MIN_SAMPLE_BYTES`] say more about the message rate than the
//! link and are ignored. Idle probes (an empty PING when nothing is in flight,
//! every [`PROBE_EVERY`]) keep the latency current. A link found slow sends
//! little (JPEG), too little to show that it got faster, so while it is slow
//! and idle the net test runs again after [`RETEST_EVERY`], or later on a
//! link so slow that the test would cost more than [`RETEST_SHARE`] of it.
//! Each test that finds the link as it was doubles the wait (up to
//! [`RETEST_MAX`]): on a 2 Mbit/s link one test is 80 KB, more than a
//! minute of a dragged window's own traffic, and links seldom change.
//!
//! PONGs are client input: one whose id we have no PING for, or whose
//! timestamp is not the one that PING carried, is refused (the caller logs it).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::conn::ACK_WINDOW;
use super::session_link::Estimate;

/// Below this a link is slow (spice-server's low-bandwidth threshold).
pub const SLOW_BPS: f64 = 10_000_000.0;
/// The warm-up PING's payload.
pub const WARMUP_BYTES: usize = 16 * 1024;
/// The rate PING's payload: 0.26 s at 2 Mbit/s, 52 ms at the threshold.
pub const RATE_BYTES: usize = 64 * 1024;
/// A net test with no answer by then is given up (the estimate then comes
/// from the traffic alone).
pub const NET_TEST_TIMEOUT: Duration = Duration::from_secs(3);
/// How often an idle connection is probed for its latency.
pub const PROBE_EVERY: Duration = Duration::from_secs(5);
/// How soon an idle slow link is tested again, at the soonest.
pub const RETEST_EVERY: Duration = Duration::from_secs(60);
/// The longest wait between tests of a link that keeps testing the same.
pub const RETEST_MAX: Duration = Duration::from_secs(8 * 60);
/// Two estimates within this factor of each other are the same link.
const SAME_LINK: f64 = 1.5;
/// The most of a slow link's time the tests again may take.
pub const RETEST_SHARE: f64 = 0.03;
/// A link is idle when no message went out for this long (and whatever
/// was sent had time to arrive), with fewer than a window's worth unacked:
/// the client acks only every [`ACK_WINDOW`] messages, so a few may stay
/// unacked for good.
pub const IDLE_AFTER: Duration = Duration::from_secs(1);
/// Ack samples smaller than this are not counted.
pub const MIN_SAMPLE_BYTES: u64 = 32 * 1024;
/// PINGs awaiting their PONG; older ones are forgotten.
const MAX_PINGS: usize = 8;
/// Counted messages remembered while unacked (the ack window keeps far fewer
/// in flight; this only bounds memory if a client never acks).
const MAX_SENT: usize = 256;
/// Weight of a new ack sample in the bandwidth estimate.
const SAMPLE_WEIGHT: f64 = 0.25;
/// Weight of a new probe in the latency estimate.
const PROBE_WEIGHT: f64 = 0.25;
/// Shortest span a rate is computed over (a faster link reads as the cap).
const MIN_SPAN: Duration = Duration::from_micros(50);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PingKind {
    /// Net test: empty, for the latency.
    Latency,
    /// Net test: warm-up payload, the reference for the rate ping.
    Warmup,
    /// Net test: the rate payload.
    Rate,
    /// An idle latency probe.
    Probe,
}

/// A PING to queue: its id, timestamp and payload length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PingOut {
    pub id: u32,
    pub timestamp: u64,
    pub payload: usize,
}

/// Why a PONG was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadPong {
    UnknownId(u32),
    WrongTimestamp { id: u32, got: u64, sent: u64 },
}

struct Ping {
    id: u32,
    timestamp: u64,
    at: Instant,
    kind: PingKind,
}

/// A counted message, unacked.
struct Sent {
    /// Bytes queued up to and including it.
    end: u64,
    at: Instant,
    /// Delivered bytes and the time they were when it was sent.
    delivered: u64,
    delivered_time: Instant,
    first_sent: Instant,
    /// Sent with nothing in flight: its span holds a round trip of waiting.
    from_idle: bool,
}

pub struct LinkMeter {
    epoch: Instant,
    next_id: u32,
    pings: VecDeque<Ping>,
    sent: VecDeque<Sent>,
    queued: u64,
    delivered: u64,
    delivered_time: Option<Instant>,
    first_sent: Option<Instant>,
    idle_start: bool,
    last_sent: Option<Instant>,
    /// Net test: when it started (None: not run or done) and the warm-up
    /// PONG's round trip.
    net_test: Option<Instant>,
    warmup_rtt: Option<Duration>,
    /// When the last net test started.
    tested: Option<Instant>,
    /// The wait from one test of a slow idle link to the next.
    retest_after: Duration,
    last_probe: Option<Instant>,
    bandwidth: Option<f64>,
    latency: Option<Duration>,
}

impl LinkMeter {
    pub fn new(now: Instant) -> LinkMeter {
        LinkMeter {
            epoch: now,
            next_id: 1,
            pings: VecDeque::new(),
            sent: VecDeque::new(),
            queued: 0,
            delivered: 0,
            delivered_time: None,
            first_sent: None,
            idle_start: true,
            last_sent: None,
            net_test: None,
            warmup_rtt: None,
            tested: None,
            retest_after: RETEST_EVERY,
            last_probe: None,
            bandwidth: None,
            latency: None,
        }
    }

    /// Estimated bandwidth, bits per second.
    pub fn bandwidth(&self) -> Option<f64> {
        self.bandwidth
    }

    /// Estimated round-trip latency.
    pub fn latency(&self) -> Option<Duration> {
        self.latency
    }

    /// Whether the link is slow; None while nothing is known.
    pub fn slow(&self) -> Option<bool> {
        self.bandwidth.map(|b| b < SLOW_BPS)
    }

    /// A PING of `kind` to queue now.
    pub fn ping(&mut self, now: Instant, kind: PingKind, payload: usize) -> PingOut {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        // Microseconds since the meter started: the client echoes it, and it
        // must come back unchanged.
        let timestamp = now.saturating_duration_since(self.epoch).as_micros() as u64;
        if self.pings.len() == MAX_PINGS {
            self.pings.pop_front();
        }
        self.pings.push_back(Ping {
            id,
            timestamp,
            at: now,
            kind,
        });
        PingOut {
            id,
            timestamp,
            payload,
        }
    }

    /// The net test's three PINGs, in the order they must be queued.
    pub fn start_net_test(&mut self, now: Instant) -> [PingOut; 3] {
        self.net_test = Some(now);
        self.tested = Some(now);
        self.warmup_rtt = None;
        [
            self.ping(now, PingKind::Latency, 0),
            self.ping(now, PingKind::Warmup, WARMUP_BYTES),
            self.ping(now, PingKind::Rate, RATE_BYTES),
        ]
    }

    /// The net test runs and has not timed out.
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn net_test_pending(&self, now: Instant) -> bool {
        self.net_test
            .is_some_and(|t| now.saturating_duration_since(t) < NET_TEST_TIMEOUT)
    }

    /// When a pending net test times out.
    #[cfg(test)]
    pub fn net_test_deadline(&self) -> Option<Instant> {
        self.net_test.map(|t| t + NET_TEST_TIMEOUT)
    }

    /// Whether the net test should run again: the link is slow, idle, and
    /// was last tested [`RETEST_EVERY`] ago (doubled for each test that
    /// found it unchanged), or longer on a link where the test takes more
    /// than [`RETEST_SHARE`] of that.
    pub fn retest_due(&self, now: Instant) -> bool {
        let Some(b) = self.bandwidth.filter(|b| *b < SLOW_BPS) else {
            return false;
        };
        let bits = (WARMUP_BYTES + RATE_BYTES) as f64 * 8.0;
        let share = Duration::from_secs_f64((bits / b.max(1.0) / RETEST_SHARE).min(3600.0));
        self.idle(now)
            && self
                .tested
                .is_some_and(|t| now.saturating_duration_since(t) >= self.retest_after.max(share))
    }

    /// Nothing is in flight or due to be acked, and no PING is out (one
    /// unanswered for [`NET_TEST_TIMEOUT`] is given up: a client that never
    /// answers must not keep the link busy for good).
    fn idle(&self, now: Instant) -> bool {
        self.pings
            .iter()
            .all(|p| now.saturating_duration_since(p.at) >= NET_TEST_TIMEOUT)
            && self.quiet(now)
    }

    /// Takes the session's net test result (see `session_link`) when this
    /// meter knows nothing yet: a channel that runs no test of its own
    /// starts from it, and its traffic refines it.
    pub fn adopt(&mut self, e: Estimate, now: Instant) -> bool {
        if self.bandwidth.is_some() || !e.bandwidth.is_finite() || e.bandwidth <= 0.0 {
            return false;
        }
        self.bandwidth = Some(e.bandwidth);
        if self.latency.is_none() {
            self.latency = e.latency;
        }
        // The test just ran: the next one is due as after our own.
        self.tested.get_or_insert(now);
        true
    }

    /// No message went out for [`IDLE_AFTER`] (or, on a slow link, for as
    /// long as the unacked bytes take to arrive, plus a round trip), and
    /// no ack is due.
    fn quiet(&self, now: Instant) -> bool {
        let Some(last) = self.last_sent else {
            return true;
        };
        let unacked = self.queued.saturating_sub(self.delivered) as f64 * 8.0;
        let drain = self.bandwidth.map_or(Duration::ZERO, |b| {
            Duration::from_secs_f64((unacked / b.max(1.0)).min(60.0))
        });
        let wait = IDLE_AFTER.max(drain + self.latency.unwrap_or_default());
        self.sent.len() < ACK_WINDOW as usize && now.saturating_duration_since(last) >= wait
    }

    /// Whether an idle probe is due: the link is idle and there was none
    /// for [`PROBE_EVERY`].
    pub fn probe_due(&self, now: Instant) -> bool {
        self.idle(now)
            && self
                .last_probe
                .or(self.net_test)
                .is_none_or(|t| now.saturating_duration_since(t) >= PROBE_EVERY)
    }

    pub fn probe(&mut self, now: Instant) -> PingOut {
        self.last_probe = Some(now);
        self.ping(now, PingKind::Probe, 0)
    }

    /// A PONG arrived at `now`; Ok: the kind of PING it answered.
    pub fn pong(&mut self, now: Instant, id: u32, timestamp: u64) -> Result<PingKind, BadPong> {
        let i = self
            .pings
            .iter()
            .position(|p| p.id == id)
            .ok_or(BadPong::UnknownId(id))?;
        if self.pings[i].timestamp != timestamp {
            return Err(BadPong::WrongTimestamp {
                id,
                got: timestamp,
                sent: self.pings[i].timestamp,
            });
        }
        let p = self.pings.remove(i).expect("index found above");
        let rtt = now.saturating_duration_since(p.at);
        match p.kind {
            PingKind::Latency => self.latency = Some(rtt),
            PingKind::Probe => {
                self.latency = Some(match self.latency {
                    Some(l) => l.mul_f64(1.0 - PROBE_WEIGHT) + rtt.mul_f64(PROBE_WEIGHT),
                    None => rtt,
                })
            }
            PingKind::Warmup => self.warmup_rtt = Some(rtt),
            PingKind::Rate => {
                if let (Some(w), Some(_)) = (self.warmup_rtt, self.net_test) {
                    let span = rtt.saturating_sub(w).max(MIN_SPAN);
                    let new = RATE_BYTES as f64 * 8.0 / span.as_secs_f64();
                    let unchanged = self.bandwidth.is_some_and(|old| {
                        (old < SLOW_BPS) == (new < SLOW_BPS)
                            && old.max(new) <= old.min(new) * SAME_LINK
                    });
                    self.retest_after = if unchanged {
                        (self.retest_after * 2).min(RETEST_MAX)
                    } else {
                        RETEST_EVERY
                    };
                    self.bandwidth = Some(new);
                }
                self.net_test = None;
            }
        }
        Ok(p.kind)
    }

    /// A message of `bytes` (framed) was queued at `now`; `counted`: the
    /// client acks it (the ack window runs).
    pub fn sent(&mut self, now: Instant, bytes: usize, counted: bool) {
        if self.quiet(now) {
            // Nothing in flight: the next sample starts here, and what was
            // sent before has arrived (acked or not: a partial window).
            self.delivered = self.queued;
            self.delivered_time = Some(now);
            self.first_sent = Some(now);
            self.idle_start = true;
        }
        self.queued += bytes as u64;
        self.last_sent = Some(now);
        if !counted {
            // Uncounted bytes are never the end of a sample, but they are
            // delivered before the next counted message.
            return;
        }
        if self.sent.len() == MAX_SENT {
            self.sent.pop_front();
        }
        self.sent.push_back(Sent {
            end: self.queued,
            at: now,
            delivered: self.delivered,
            delivered_time: self.delivered_time.unwrap_or(now),
            first_sent: self.first_sent.unwrap_or(now),
            from_idle: self.idle_start,
        });
    }

    /// The ack window restarted (SET_ACK): unacked messages will not be acked.
    pub fn reset_acks(&mut self) {
        self.sent.clear();
    }

    /// The client acked `count` more messages at `now`.
    pub fn acked(&mut self, now: Instant, count: u32) {
        let mut last = None;
        for _ in 0..count {
            match self.sent.pop_front() {
                Some(s) => last = Some(s),
                None => break,
            }
        }
        let Some(s) = last else { return };
        self.delivered = s.end;
        self.delivered_time = Some(now);
        self.first_sent = Some(s.at);
        self.idle_start = false;
        let bytes = s.end.saturating_sub(s.delivered);
        if bytes < MIN_SAMPLE_BYTES {
            return;
        }
        let send_span = s.at.saturating_duration_since(s.first_sent);
        let mut ack_span = now.saturating_duration_since(s.delivered_time);
        if s.from_idle {
            ack_span = ack_span.saturating_sub(self.latency.unwrap_or_default());
        }
        let span = send_span.max(ack_span).max(MIN_SPAN);
        let rate = bytes as f64 * 8.0 / span.as_secs_f64();
        self.bandwidth = Some(match self.bandwidth {
            Some(b) => b * (1.0 - SAMPLE_WEIGHT) + rate * SAMPLE_WEIGHT,
            None => rate,
        });
    }
    /// A video stream report: `bytes` of frames reached the client over
    /// `secs`. With late frames (`saturated`) the link was the limit, so the
    /// rate is a sample of it; without, the stream may have sent less than
    /// the link could carry, so it only ever raises the estimate.
    pub fn stream_delivered(&mut self, bytes: u64, secs: f64, saturated: bool) {
        if bytes < MIN_SAMPLE_BYTES || !secs.is_finite() || secs <= 0.0 {
            return;
        }
        let rate = bytes as f64 * 8.0 / secs.max(MIN_SPAN.as_secs_f64());
        self.bandwidth = Some(match self.bandwidth {
            Some(b) if saturated => b * (1.0 - SAMPLE_WEIGHT) + rate * SAMPLE_WEIGHT,
            Some(b) => b.max(b * (1.0 - SAMPLE_WEIGHT) + rate * SAMPLE_WEIGHT),
            None => rate,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A link of `bps` and one-way `delay`: when the pongs to a net test
    /// queued at t0 come back (each ping's bytes cross in order).
    fn net_test(bps: f64, delay: Duration) -> LinkMeter {
        let t0 = Instant::now();
        let mut m = LinkMeter::new(t0);
        let pings = m.start_net_test(t0);
        assert!(m.net_test_pending(t0));
        let mut wire = Duration::ZERO;
        for p in pings {
            wire += Duration::from_secs_f64((p.payload + 20) as f64 * 8.0 / bps);
            m.pong(t0 + wire + 2 * delay, p.id, p.timestamp).unwrap();
        }
        assert!(!m.net_test_pending(t0 + ms(1)));
        m
    }

    #[test]
    fn a_net_test_measures_rate_and_latency() {
        // 2 Mbit/s, 50 ms each way: slow, 100 ms round trip.
        let m = net_test(2e6, ms(50));
        let b = m.bandwidth().unwrap();
        assert!((b - 2e6).abs() < 0.01 * 2e6, "{b}");
        let l = m.latency().unwrap();
        assert!(l >= ms(100) && l < ms(101), "{l:?}");
        assert_eq!(m.slow(), Some(true));
        // A local link: fast, whatever the small latency.
        let m = net_test(10e9, Duration::from_micros(30));
        assert_eq!(m.slow(), Some(false));
        // 20 Mbit/s far away: fast.
        assert_eq!(net_test(20e6, ms(80)).slow(), Some(false));
    }

    #[test]
    fn nothing_known_is_not_slow_and_a_test_times_out() {
        let t0 = Instant::now();
        let mut m = LinkMeter::new(t0);
        assert_eq!(m.slow(), None);
        m.start_net_test(t0);
        assert!(m.net_test_pending(t0 + NET_TEST_TIMEOUT - ms(1)));
        assert!(!m.net_test_pending(t0 + NET_TEST_TIMEOUT));
        assert_eq!(m.net_test_deadline(), Some(t0 + NET_TEST_TIMEOUT));
        assert_eq!(m.slow(), None);
    }

    #[test]
    fn hostile_pongs_are_refused_and_change_nothing() {
        let t0 = Instant::now();
        let mut m = LinkMeter::new(t0);
        let [lat, warm, rate] = m.start_net_test(t0);
        assert_eq!(m.pong(t0, 999, 0), Err(BadPong::UnknownId(999)));
        assert_eq!(
            m.pong(t0, rate.id, u64::MAX),
            Err(BadPong::WrongTimestamp {
                id: rate.id,
                got: u64::MAX,
                sent: rate.timestamp
            })
        );
        assert_eq!(m.bandwidth(), None);
        // The real answers still count, each once.
        m.pong(t0 + ms(10), lat.id, lat.timestamp).unwrap();
        m.pong(t0 + ms(20), warm.id, warm.timestamp).unwrap();
        m.pong(t0 + ms(30), rate.id, rate.timestamp).unwrap();
        assert_eq!(m.latency(), Some(ms(10)));
        assert!(m.bandwidth().is_some());
        assert_eq!(
            m.pong(t0 + ms(40), rate.id, rate.timestamp),
            Err(BadPong::UnknownId(rate.id))
        );
        // A rate pong without its warm-up reference gives no rate.
        let mut m = LinkMeter::new(t0);
        let [_, _, rate] = m.start_net_test(t0);
        m.pong(t0 + ms(5), rate.id, rate.timestamp).unwrap();
        assert_eq!(m.bandwidth(), None);
    }

    #[test]
    fn only_so_many_pings_are_remembered() {
        let t0 = Instant::now();
        let mut m = LinkMeter::new(t0);
        let first = m.probe(t0);
        for _ in 0..MAX_PINGS {
            m.probe(t0);
        }
        assert_eq!(
            m.pong(t0, first.id, first.timestamp),
            Err(BadPong::UnknownId(first.id))
        );
    }

    /// Streams `n` messages of `size` over a link of `bps` with round trip
    /// `rtt`, the sender keeping `window` messages unacked and the client
    /// acking every `every`; returns the meter.
    fn stream(m: &mut LinkMeter, t0: Instant, bps: f64, rtt: Duration, size: usize, n: u32) {
        let (window, every) = (40u32, 20u32);
        let tx = Duration::from_secs_f64(size as f64 * 8.0 / bps);
        // Message i leaves the wire at `done[i]`; the ack for a batch ending
        // at i arrives half a round trip... here: the whole rtt after.
        let mut link_free = t0;
        let mut acks: VecDeque<(Instant, u32)> = VecDeque::new();
        let mut in_flight = 0u32;
        let mut now = t0;
        let mut since_ack = 0;
        for _ in 0..n {
            while in_flight >= window {
                let (at, c) = acks.pop_front().unwrap();
                now = now.max(at);
                m.acked(now, c);
                in_flight -= c;
            }
            // Acks already due are handled before the next send.
            while acks.front().is_some_and(|(at, _)| *at <= now) {
                let (at, c) = acks.pop_front().unwrap();
                m.acked(at, c);
                in_flight -= c;
            }
            m.sent(now, size, true);
            in_flight += 1;
            link_free = link_free.max(now) + tx;
            since_ack += 1;
            if since_ack == every {
                acks.push_back((link_free + rtt, every));
                since_ack = 0;
            }
        }
        for (at, c) in acks {
            m.acked(at, c);
        }
    }

    #[test]
    fn acks_of_a_busy_link_follow_its_rate() {
        let t0 = Instant::now();
        // Start from a wrong (fast) guess: the traffic corrects it.
        let mut m = net_test(100e6, ms(50));
        assert_eq!(m.slow(), Some(false));
        stream(&mut m, t0, 2e6, ms(100), 20_000, 400);
        let b = m.bandwidth().unwrap();
        assert!(b > 1.5e6 && b < 2.5e6, "{b}");
        assert_eq!(m.slow(), Some(true));
        // And the other way: a fast link is found fast again.
        stream(
            &mut m,
            t0 + Duration::from_secs(60),
            1e9,
            ms(1),
            20_000,
            400,
        );
        assert_eq!(m.slow(), Some(false), "{:?}", m.bandwidth());
    }

    #[test]
    fn small_messages_say_nothing_about_the_link() {
        let t0 = Instant::now();
        let mut m = net_test(1e9, Duration::from_micros(50));
        let before = m.bandwidth();
        // 41-byte fills, window-limited on a far link: message rate, not
        // bandwidth.
        stream(&mut m, t0, 1e9, ms(100), 41, 2000);
        assert_eq!(m.bandwidth(), before);
    }

    #[test]
    fn a_partial_window_left_unacked_does_not_stretch_the_next_sample() {
        // 20 Mbit/s, 100 ms round trip. Five messages are never acked (less
        // than a window); a minute later a burst of 20 is, one round trip
        // and its transmission after it left.
        let t0 = Instant::now();
        let mut m = net_test(20e6, ms(50));
        for _ in 0..5 {
            m.sent(t0, 100, true);
        }
        let t1 = t0 + Duration::from_secs(60);
        for _ in 0..20 {
            m.sent(t1, 4096, true);
        }
        let tx = Duration::from_secs_f64(20.0 * 4096.0 * 8.0 / 20e6);
        m.bandwidth = None;
        // The client acks at its 20th message: the 15th of the burst.
        m.acked(t1 + tx * 15 / 20 + ms(100), 20);
        let b = m.bandwidth().unwrap();
        assert!(b > 18e6 && b < 22e6, "{b}");
    }

    #[test]
    fn a_burst_from_idle_does_not_count_its_round_trip() {
        // 20 Mbit/s, 100 ms round trip: one 40 KB burst from idle spans
        // 100 ms + 16 ms; less the known latency it is 20 Mbit/s, not 2.8.
        let t0 = Instant::now();
        let mut m = net_test(20e6, ms(50));
        m.bandwidth = None;
        for _ in 0..20 {
            m.sent(t0, 2048, true);
        }
        let tx = Duration::from_secs_f64(20.0 * 2048.0 * 8.0 / 20e6);
        m.acked(t0 + tx + ms(100), 20);
        let b = m.bandwidth().unwrap();
        assert!(b > 18e6 && b < 22e6, "{b}");
    }

    #[test]
    fn a_slow_idle_link_is_tested_again() {
        let t0 = Instant::now();
        // 5 Mbit/s: the test takes 0.13 s, well under 3% of RETEST_EVERY.
        let mut m = net_test(5e6, ms(10));
        assert!(!m.retest_due(t0 + RETEST_EVERY / 2));
        m.sent(t0 + RETEST_EVERY, 100, true);
        assert!(!m.retest_due(t0 + RETEST_EVERY), "not idle");
        assert!(m.retest_due(t0 + RETEST_EVERY + IDLE_AFTER));
        // The link got fast: the new test says so, and no more tests.
        let t1 = t0 + RETEST_EVERY * 2;
        for (i, p) in m.start_net_test(t1).into_iter().enumerate() {
            m.pong(t1 + ms(1 + i as u64), p.id, p.timestamp).unwrap();
        }
        assert_eq!(m.slow(), Some(false));
        assert!(!m.retest_due(t1 + RETEST_EVERY * 2));
        // A fast link is never tested again.
        let m = net_test(1e9, ms(1));
        assert!(!m.retest_due(t0 + RETEST_EVERY * 3));
        // 256 kbit/s: the test takes 2.6 s, so it runs every 87 s.
        let m = net_test(256e3, ms(10));
        assert!(!m.retest_due(t0 + Duration::from_secs(80)));
        assert!(m.retest_due(t0 + Duration::from_secs(90)));
    }

    /// Runs a net test at `at` on a link of `bps` (no latency).
    fn retest(m: &mut LinkMeter, at: Instant, bps: f64) {
        let [lat, warm, rate] = m.start_net_test(at);
        m.pong(at, lat.id, lat.timestamp).unwrap();
        let w = at + Duration::from_secs_f64(WARMUP_BYTES as f64 * 8.0 / bps);
        m.pong(w, warm.id, warm.timestamp).unwrap();
        let r = w + Duration::from_secs_f64(RATE_BYTES as f64 * 8.0 / bps);
        m.pong(r, rate.id, rate.timestamp).unwrap();
    }

    #[test]
    fn retests_that_find_the_same_link_come_ever_later() {
        let t0 = Instant::now();
        let mut m = LinkMeter::new(t0);
        retest(&mut m, t0, 2e6);
        assert_eq!(m.slow(), Some(true));
        let mut at = t0;
        let mut waits = vec![];
        for _ in 0..6 {
            let next = (1..=RETEST_MAX.as_secs() + 10)
                .map(|s| at + Duration::from_secs(s))
                .find(|t| m.retest_due(*t))
                .expect("a slow link is tested again");
            waits.push(next.duration_since(at).as_secs());
            at = next;
            retest(&mut m, at, 2.2e6);
        }
        assert_eq!(waits, [60, 120, 240, 480, 480, 480]);
        // The link changed (still slow, but four times faster): back to
        // the shortest wait.
        let next = at + RETEST_MAX;
        retest(&mut m, next, 8e6);
        assert!(!m.retest_due(next + RETEST_EVERY - Duration::from_secs(2)));
        assert!(m.retest_due(next + RETEST_EVERY + Duration::from_secs(1)));
    }

    #[test]
    fn probes_follow_latency_only_when_idle() {
        let t0 = Instant::now();
        let mut m = LinkMeter::new(t0);
        assert!(m.probe_due(t0));
        let p = m.probe(t0);
        assert!(!m.probe_due(t0 + PROBE_EVERY - ms(1)));
        // Unanswered for NET_TEST_TIMEOUT it no longer keeps the link busy.
        assert!(!m.idle(t0 + NET_TEST_TIMEOUT - ms(1)), "a probe is out");
        assert!(m.idle(t0 + NET_TEST_TIMEOUT));
        assert!(m.probe_due(t0 + PROBE_EVERY));
        m.pong(t0 + ms(40), p.id, p.timestamp).unwrap();
        assert_eq!(m.latency(), Some(ms(40)));
        assert!(!m.probe_due(t0 + ms(50)));
        let t1 = t0 + PROBE_EVERY;
        m.sent(t1, 100, true);
        assert!(!m.probe_due(t1), "messages in flight");
        // A partial window is never acked: quiet for IDLE_AFTER is idle.
        assert!(!m.probe_due(t1 + IDLE_AFTER - ms(1)));
        assert!(m.probe_due(t1 + IDLE_AFTER));
        // A whole window unacked waits for its ack.
        for _ in 0..ACK_WINDOW {
            m.sent(t1 + IDLE_AFTER, 100, true);
        }
        assert!(!m.probe_due(t1 + IDLE_AFTER * 5));
        m.acked(t1 + IDLE_AFTER * 5, ACK_WINDOW);
        assert!(m.probe_due(t1 + IDLE_AFTER * 5));
        let p = m.probe(t1);
        m.pong(t1 + ms(80), p.id, p.timestamp).unwrap();
        assert_eq!(m.latency(), Some(ms(50)));
    }
}
