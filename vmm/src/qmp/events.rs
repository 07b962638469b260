//! The machine's side of the monitor: its run status, and asynchronous events
//! delivered to every negotiated client.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::backend::RunStatus;

/// Where a client's output goes. `deliver` must not block: it returns false
/// when the client is gone (or was dropped for not reading).
pub trait EventSink: Send + Sync {
    fn deliver(&self, line: &Arc<str>) -> bool;
}

pub struct Monitor {
    status: AtomicU8,
    next_id: AtomicU64,
    sinks: Mutex<Vec<(u64, Arc<dyn EventSink>)>>,
}

const RUNNING: u8 = 0;
const PAUSED: u8 = 1;
const SHUTDOWN: u8 = 2;

/// An event as QEMU sends it; `data` is left out when the event has none.
pub fn event_json(name: &str, data: Option<Value>, now: SystemTime) -> Value {
    let t = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut m = Map::new();
    m.insert("event".into(), name.into());
    if let Some(d) = data {
        m.insert("data".into(), d);
    }
    m.insert(
        "timestamp".into(),
        json!({"seconds": t.as_secs(), "microseconds": t.subsec_micros()}),
    );
    Value::Object(m)
}

impl Monitor {
    pub fn new() -> Arc<Self> {
        Arc::new(Monitor {
            status: AtomicU8::new(RUNNING),
            next_id: AtomicU64::new(0),
            sinks: Mutex::new(Vec::new()),
        })
    }

    pub fn status(&self) -> RunStatus {
        match self.status.load(Ordering::Acquire) {
            RUNNING => RunStatus::Running,
            PAUSED => RunStatus::Paused,
            _ => RunStatus::Shutdown,
        }
    }

    fn set_status(&self, s: RunStatus) {
        let v = match s {
            RunStatus::Running => RUNNING,
            RunStatus::Paused => PAUSED,
            RunStatus::Shutdown => SHUTDOWN,
        };
        self.status.store(v, Ordering::Release);
    }

    pub fn subscribe(&self, sink: Arc<dyn EventSink>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.sinks.lock().unwrap().push((id, sink));
        id
    }

    pub fn unsubscribe(&self, id: u64) {
        self.sinks.lock().unwrap().retain(|(i, _)| *i != id);
    }

    pub fn emit(&self, name: &str, data: Option<Value>) {
        let line: Arc<str> = event_json(name, data, SystemTime::now()).to_string().into();
        tracing::debug!(event = name, "QMP event");
        self.sinks
            .lock()
            .unwrap()
            .retain(|(_, sink)| sink.deliver(&line));
    }

    // What the VMM thread reports, in QEMU's event vocabulary.

    pub fn stopped(&self) {
        self.set_status(RunStatus::Paused);
        self.emit("STOP", None);
    }

    pub fn resumed(&self) {
        self.set_status(RunStatus::Running);
        self.emit("RESUME", None);
    }

    /// `guest`: the guest asked (reason "guest-reset"), else QMP did.
    pub fn reset(&self, guest: bool) {
        let reason = if guest {
            "guest-reset"
        } else {
            "host-qmp-system-reset"
        };
        self.emit("RESET", Some(json!({"guest": guest, "reason": reason})));
    }

    /// The guest opened or closed virtio-serial port `id` (QEMU's
    /// VSERPORT_CHANGE, sent for ports that have an id).
    pub fn vserport_change(&self, id: &str, open: bool) {
        self.emit("VSERPORT_CHANGE", Some(json!({"id": id, "open": open})));
    }

    /// `reason`: "guest-shutdown", "host-qmp-quit" or "host-signal".
    pub fn shutdown(&self, guest: bool, reason: &str) {
        self.set_status(RunStatus::Shutdown);
        self.emit("SHUTDOWN", Some(json!({"guest": guest, "reason": reason})));
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// Collects lines; refuses once `limit` is reached (a client not reading).
    pub struct Collect {
        pub lines: Mutex<Vec<String>>,
        pub limit: usize,
    }

    impl Collect {
        pub fn new(limit: usize) -> Arc<Self> {
            Arc::new(Collect {
                lines: Mutex::new(Vec::new()),
                limit,
            })
        }
        pub fn values(&self) -> Vec<Value> {
            let lines = self.lines.lock().unwrap();
            lines
                .iter()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        }
    }

    impl EventSink for Collect {
        fn deliver(&self, line: &Arc<str>) -> bool {
            let mut l = self.lines.lock().unwrap();
            if l.len() >= self.limit {
                return false;
            }
            l.push(line.to_string());
            true
        }
    }

    #[test]
    fn events_reach_subscribers_and_full_ones_are_dropped() {
        let m = Monitor::new();
        let a = Collect::new(100);
        let b = Collect::new(1);
        m.subscribe(a.clone());
        m.subscribe(b.clone());
        m.stopped();
        assert_eq!(m.status(), RunStatus::Paused);
        m.resumed();
        m.reset(false);
        m.shutdown(false, "host-qmp-quit");
        assert_eq!(m.status(), RunStatus::Shutdown);
        let names: Vec<_> = a.values().iter().map(|v| v["event"].clone()).collect();
        assert_eq!(names, ["STOP", "RESUME", "RESET", "SHUTDOWN"]);
        let v = a.values();
        assert!(v[0].get("data").is_none(), "STOP has no data");
        assert_eq!(
            v[2]["data"],
            json!({"guest": false, "reason": "host-qmp-system-reset"})
        );
        assert!(v[3]["timestamp"]["seconds"].as_u64().unwrap() > 1_600_000_000);
        assert!(v[3]["timestamp"]["microseconds"].as_u64().unwrap() < 1_000_000);
        assert_eq!(b.values().len(), 1);
        assert_eq!(m.sinks.lock().unwrap().len(), 1, "the full sink is gone");
    }

    #[test]
    fn vserport_change_as_qemu_sends_it() {
        let m = Monitor::new();
        let a = Collect::new(10);
        m.subscribe(a.clone());
        m.vserport_change("vdagent", true);
        m.vserport_change("vdagent", false);
        let v = a.values();
        assert_eq!(v[0]["event"], "VSERPORT_CHANGE");
        assert_eq!(v[0]["data"], json!({"id": "vdagent", "open": true}));
        assert_eq!(v[1]["data"], json!({"id": "vdagent", "open": false}));
    }
}
