//! A client session's link estimate, shared by its channels.
//!
//! The net test (see `link_meter`) runs once per session, on MAIN right after
//! MAIN_INIT, as spice-server's main channel does: its 80 KiB of PINGs then
//! count against MAIN, which carries nothing else at connect, and no display
//! waits behind them. Its result is published here; a display channel whose
//! own meter knows nothing yet adopts it (its acks and stream reports refine
//! it from then on), and until it arrives the display's first picture goes as
//! for an unknown link.

use std::time::Duration;

use tokio::sync::watch;

/// What a net test found.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Estimate {
    /// Bits per second.
    pub bandwidth: f64,
    /// Round trip.
    pub latency: Option<Duration>,
}

/// The newest net test result of one session.
pub struct SessionLink {
    estimate: watch::Sender<Option<Estimate>>,
}

impl Default for SessionLink {
    fn default() -> Self {
        SessionLink {
            estimate: watch::Sender::new(None),
        }
    }
}

impl SessionLink {
    /// A net test finished.
    pub fn publish(&self, e: Estimate) {
        self.estimate.send_replace(Some(e));
    }

    /// The newest result, if any.
    pub fn get(&self) -> Option<Estimate> {
        *self.estimate.borrow()
    }

    /// Wakes on each new result.
    pub fn subscribe(&self) -> watch::Receiver<Option<Estimate>> {
        self.estimate.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_result_is_kept_and_announced() {
        let link = SessionLink::default();
        let mut rx = link.subscribe();
        assert_eq!(link.get(), None);
        assert!(!rx.has_changed().unwrap());
        let e = Estimate {
            bandwidth: 2e6,
            latency: Some(Duration::from_millis(100)),
        };
        link.publish(e);
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), Some(e));
        let e2 = Estimate {
            bandwidth: 20e6,
            latency: None,
        };
        link.publish(e2);
        assert_eq!(link.get(), Some(e2));
    }
}
