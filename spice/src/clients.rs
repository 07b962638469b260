//! The registry of linked channels that feeds `SpiceServer::clients()` and the
//! events of `SpiceServer::subscribe()` (QEMU's SPICE_CONNECTED, _INITIALIZED,
//! _DISCONNECTED, one per channel). Each linked channel's traffic counters
//! (`stats::LiveStats`) are listed with it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use tracing::warn;

use crate::server::lock;
use crate::stats::LiveStats;
use crate::{ClientInfo, SpiceEvent};

/// Events are dropped (with a warning) for a subscriber this far behind.
const EVENT_QUEUE: usize = 1024;

#[derive(Default)]
pub struct Clients {
    linked: Mutex<BTreeMap<u64, (ClientInfo, Arc<LiveStats>)>>,
    next: AtomicU64,
    subscribers: Mutex<Vec<SyncSender<SpiceEvent>>>,
}

impl Clients {
    fn emit(&self, ev: SpiceEvent) {
        let mut subs = lock(&self.subscribers);
        subs.retain(|s| match s.try_send(ev.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                warn!("SPICE event subscriber is not reading; event dropped");
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        });
    }

    pub fn list(&self) -> Vec<ClientInfo> {
        lock(&self.linked)
            .values()
            .map(|(info, stats)| ClientInfo {
                stats: Some(stats.snapshot()),
                ..info.clone()
            })
            .collect()
    }

    pub fn subscribe(&self) -> Receiver<SpiceEvent> {
        let (tx, rx) = std::sync::mpsc::sync_channel(EVENT_QUEUE);
        lock(&self.subscribers).push(tx);
        rx
    }
}

/// One linked channel: listed by `clients()` until dropped, then Disconnected.
pub struct Registration {
    clients: Arc<Clients>,
    key: u64,
    pub info: ClientInfo,
    pub stats: Arc<LiveStats>,
}

impl Registration {
    pub fn new(clients: &Arc<Clients>, info: ClientInfo, server: ClientInfo) -> Registration {
        let key = clients.next.fetch_add(1, Ordering::Relaxed);
        let stats = Arc::new(LiveStats::default());
        lock(&clients.linked).insert(key, (info.clone(), stats.clone()));
        clients.emit(SpiceEvent::Connected {
            server,
            client: info.clone(),
        });
        Registration {
            clients: clients.clone(),
            key,
            info,
            stats,
        }
    }

    /// The channel is set up (its first messages are out).
    pub fn initialized(&self) {
        self.clients.emit(SpiceEvent::Initialized {
            client: self.info.clone(),
        });
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.clients.linked).remove(&self.key);
        self.clients.emit(SpiceEvent::Disconnected {
            client: self.info.clone(),
        });
    }
}
