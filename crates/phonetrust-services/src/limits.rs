//! What one service may hold at once: a global count and a count per client address,
//! each with its cap ([`Limiter`]), and log lines that summarise a flood instead of
//! writing one line per refused packet ([`Throttle`]).
//!
//! Every connection, transfer or session holds an [`Admission`] for as long as it lives;
//! dropping it gives the slot back.
//!
//! Where what is held costs nothing to start again (a pending TLS handshake), a full
//! limiter is shared fairly ([`Limiter::admit_fair`]): a client from an address holding
//! fewer slots than the heaviest one takes that address's oldest slot, whose holder is
//! told through [`Admission::evicted`]. Many addresses filling the cap together then
//! cannot keep a phone from another address out.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Why a new client was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Busy {
    /// The service holds its global maximum.
    #[error("the service is at its limit of {0} at once")]
    Global(usize),
    /// This address holds its maximum.
    #[error("this address is at its limit of {0} at once")]
    PerAddress(usize),
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    by_addr: HashMap<IpAddr, Slots>,
    next_id: u64,
}

/// What one address holds: its count, and its evictable slots oldest first.
#[derive(Debug, Default)]
struct Slots {
    n: usize,
    evictable: VecDeque<(u64, Arc<Evict>)>,
}

/// How an evicted slot's holder learns of it.
#[derive(Debug, Default)]
struct Evict {
    notify: Notify,
    gone: AtomicBool,
}

impl Counts {
    /// Take a slot of `addr` back (eviction or drop).
    fn release(&mut self, addr: IpAddr) {
        self.total = self.total.saturating_sub(1);
        if let Some(s) = self.by_addr.get_mut(&addr) {
            s.n = s.n.saturating_sub(1);
            if s.n == 0 {
                self.by_addr.remove(&addr);
            }
        }
    }

    /// Free a slot for `addr` by evicting the oldest evictable slot of the address that
    /// holds the most, if that address holds at least two more than `addr` would.
    fn evict_for(&mut self, addr: IpAddr) -> bool {
        let mine = self.by_addr.get(&addr).map_or(0, |s| s.n);
        let Some((&heavy, _)) = self
            .by_addr
            .iter()
            .filter(|(_, s)| !s.evictable.is_empty())
            .max_by_key(|(_, s)| s.n)
        else {
            return false;
        };
        let Some(slots) = self.by_addr.get_mut(&heavy) else {
            return false;
        };
        if slots.n <= mine + 1 {
            return false;
        }
        let Some((_, victim)) = slots.evictable.pop_front() else {
            return false;
        };
        victim.gone.store(true, Ordering::Release);
        victim.notify.notify_one();
        self.release(heavy);
        true
    }
}

#[derive(Debug)]
struct Inner {
    global: usize,
    per_addr: usize,
    counts: Mutex<Counts>,
}

/// Caps on what a service holds at once, globally and per address.
#[derive(Clone, Debug)]
pub struct Limiter {
    inner: Arc<Inner>,
}

impl Limiter {
    /// At most `global` at once, at most `per_addr` from one address (0 means 1).
    pub fn new(global: usize, per_addr: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                global: global.max(1),
                per_addr: per_addr.max(1),
                counts: Mutex::new(Counts::default()),
            }),
        }
    }

    /// Take a slot for a client at `addr`.
    pub fn admit(&self, addr: IpAddr) -> Result<Admission, Busy> {
        self.take(addr, false)
    }

    /// Take an evictable slot for a client at `addr`; when the limiter is full, evict the
    /// oldest evictable slot of the address holding the most, if it holds at least two
    /// more than `addr`. The holder of an evictable slot must watch
    /// [`Admission::evicted`] and give up when it fires.
    pub fn admit_fair(&self, addr: IpAddr) -> Result<Admission, Busy> {
        self.take(addr, true)
    }

    fn take(&self, addr: IpAddr, fair: bool) -> Result<Admission, Busy> {
        let mut c = self
            .inner
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mine = c.by_addr.get(&addr).map_or(0, |s| s.n);
        if c.total >= self.inner.global {
            if !(fair && mine < self.inner.per_addr && c.evict_for(addr)) {
                return Err(Busy::Global(self.inner.global));
            }
        } else if mine >= self.inner.per_addr {
            return Err(Busy::PerAddress(self.inner.per_addr));
        }
        c.total += 1;
        let id = c.next_id;
        c.next_id = c.next_id.wrapping_add(1);
        let evict = fair.then(|| Arc::new(Evict::default()));
        let slots = c.by_addr.entry(addr).or_default();
        slots.n += 1;
        if let Some(e) = &evict {
            slots.evictable.push_back((id, e.clone()));
        }
        Ok(Admission {
            inner: self.inner.clone(),
            addr,
            id,
            evict,
        })
    }

    /// Slots held now.
    pub fn in_use(&self) -> usize {
        self.inner
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .total
    }

    /// The global cap.
    pub fn global(&self) -> usize {
        self.inner.global
    }

    /// The per-address cap.
    pub fn per_address(&self) -> usize {
        self.inner.per_addr
    }
}

/// One slot of a [`Limiter`], given back when dropped.
#[derive(Debug)]
pub struct Admission {
    inner: Arc<Inner>,
    addr: IpAddr,
    id: u64,
    evict: Option<Arc<Evict>>,
}

impl Admission {
    /// Completes when this slot was given to a client of a lighter address (only slots
    /// taken with [`Limiter::admit_fair`]; never for the others).
    pub async fn evicted(&self) {
        match &self.evict {
            Some(e) => {
                if !e.gone.load(Ordering::Acquire) {
                    e.notify.notified().await;
                }
            }
            None => std::future::pending().await,
        }
    }
}

impl Admission {
    /// Make an evictable slot permanent (its holder started real work); false when it
    /// was evicted already.
    pub fn keep(&self) -> bool {
        let Some(e) = &self.evict else {
            return true;
        };
        let mut c = self
            .inner
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Eviction happens under the same lock: the flag cannot change meanwhile.
        if e.gone.load(Ordering::Acquire) {
            return false;
        }
        if let Some(s) = c.by_addr.get_mut(&self.addr) {
            s.evictable.retain(|(id, _)| *id != self.id);
        }
        true
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if self
            .evict
            .as_ref()
            .is_some_and(|e| e.gone.load(Ordering::Acquire))
        {
            // Already given back when it was evicted.
            return;
        }
        let mut c = self
            .inner
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.evict.is_some()
            && let Some(s) = c.by_addr.get_mut(&self.addr)
        {
            s.evictable.retain(|(id, _)| *id != self.id);
        }
        c.release(self.addr);
    }
}

/// " (file descriptors exhausted: …)" when `e` is EMFILE or ENFILE, for accept-failure
/// log lines; otherwise empty.
pub fn fd_hint(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(23 | 24) => {
            " (file descriptors exhausted: raise LimitNOFILE, or lower the services' max_* settings)"
        }
        _ => "",
    }
}

/// Lets one log line through per interval and counts the ones held back, so that a
/// flood of refusals costs a line every few seconds, each saying how many it stands for.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    /// One line per `every`.
    pub const fn new(every: Duration) -> Self {
        Self {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// An event happened at `now`: `Some(n)` when it should be logged, `n` being how many
    /// events (this one included) the line stands for.
    pub fn hit(&self, now: Instant) -> Option<u64> {
        let mut s = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.1 += 1;
        match s.0 {
            Some(last) if now.duration_since(last) < self.every => None,
            _ => {
                s.0 = Some(now);
                Some(std::mem::take(&mut s.1))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_and_per_address_caps() {
        let l = Limiter::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = l.admit(a).unwrap();
        let _a2 = l.admit(a).unwrap();
        assert_eq!(l.admit(a).unwrap_err(), Busy::PerAddress(2));
        let _b1 = l.admit(b).unwrap();
        assert_eq!(l.admit(b).unwrap_err(), Busy::Global(3));
        drop(a1);
        assert_eq!(l.in_use(), 2);
        let _b2 = l.admit(b).unwrap();
        assert_eq!(l.admit(b).unwrap_err(), Busy::Global(3));
    }

    #[tokio::test]
    async fn a_full_limiter_is_shared_fairly() {
        let l = Limiter::new(4, 4);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let c: IpAddr = "10.0.0.3".parse().unwrap();
        let held: Vec<Admission> = (0..4).map(|_| l.admit_fair(a).unwrap()).collect();
        // b takes a's oldest slot; a's holder is told.
        let b1 = l.admit_fair(b).unwrap();
        tokio::time::timeout(Duration::from_secs(1), held[0].evicted())
            .await
            .unwrap();
        assert_eq!(l.in_use(), 4);
        // Still a at 3, b at 1: b may take another (3 > 1 + 1), then no more (2, 2).
        let b2 = l.admit_fair(b).unwrap();
        assert_eq!(l.admit_fair(b).unwrap_err(), Busy::Global(4));
        // c, holding nothing, takes from the heaviest (a and b at 2: either).
        let _c1 = l.admit_fair(c).unwrap();
        assert_eq!(l.in_use(), 4);
        // Dropping evicted and live slots keeps the counts right.
        drop(held);
        drop((b1, b2));
        assert_eq!(l.in_use(), 1);
        // A kept slot is no longer evictable.
        let l = Limiter::new(1, 1);
        let k = l.admit_fair(a).unwrap();
        assert!(k.keep());
        assert_eq!(l.admit_fair(b).unwrap_err(), Busy::Global(1));
        drop(k);
        // Plain admissions are never evicted.
        let l = Limiter::new(1, 1);
        let p = l.admit(a).unwrap();
        assert_eq!(l.admit_fair(b).unwrap_err(), Busy::Global(1));
        assert!(
            tokio::time::timeout(Duration::from_millis(50), p.evicted())
                .await
                .is_err()
        );
    }

    #[test]
    fn a_flood_is_summarised() {
        let t = Throttle::new(Duration::from_secs(5));
        let t0 = Instant::now();
        assert_eq!(t.hit(t0), Some(1));
        for i in 1..1000 {
            assert_eq!(t.hit(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(t.hit(t0 + Duration::from_secs(6)), Some(1000));
    }
}
