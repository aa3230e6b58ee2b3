//! How CAPF slows down authentication-string (and certificate) guessing, as data and
//! pure functions (the clock is the caller's).
//!
//! - Failures are counted per phone and per client address when the attempt is
//!   evaluated, not when its session ends, so parallel guesses are counted one by one.
//! - The phone is the main defence: after [`Policy::device_failures`] failures within
//!   the window, that phone is locked for a delay that doubles with every further failure
//!   (10 s, 20 s, … at most 10 minutes).
//! - An address is locked only after [`Policy::address_failures`] failures (ten phones'
//!   worth by default), so a branch behind one NAT is not locked out by one phone.
//! - The delay RETRY_LATER advertises is the truth: the lock ends exactly then, and one
//!   more attempt is allowed (a failure locks again, for twice as long).
//! - A successful authentication clears the phone's count.
//!
//! The records are kept in the store, so a restart does not reset them.

/// Thresholds and delays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Failures of one phone before it is locked.
    pub device_failures: u32,
    /// Failures from one address before it is locked.
    pub address_failures: u32,
    /// Failures older than this (seconds since the last one) are forgotten.
    pub window: i64,
    /// First lock, seconds.
    pub first_delay: u32,
    /// Longest lock, seconds.
    pub max_delay: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            device_failures: 5,
            address_failures: 50,
            window: 600,
            first_delay: 10,
            max_delay: 600,
        }
    }
}

impl Policy {
    /// With `device_failures` per phone, and ten times that per address.
    pub fn with_device_failures(n: u32) -> Self {
        let n = n.max(1);
        Self {
            device_failures: n,
            address_failures: n.saturating_mul(10),
            ..Self::default()
        }
    }
}

/// What is counted: a phone or an address.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// A phone, by name.
    Device(String),
    /// A client address.
    Address(std::net::IpAddr),
}

impl Key {
    /// As stored: `dev:SEP…` or `ip:192.0.2.1`.
    pub fn stored(&self) -> String {
        match self {
            Self::Device(d) => format!("dev:{d}"),
            Self::Address(a) => format!("ip:{a}"),
        }
    }

    /// From the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        if let Some(d) = s.strip_prefix("dev:") {
            return Some(Self::Device(d.to_string()));
        }
        s.strip_prefix("ip:")?.parse().ok().map(Self::Address)
    }

    fn threshold(&self, p: &Policy) -> u32 {
        match self {
            Self::Device(_) => p.device_failures,
            Self::Address(_) => p.address_failures,
        }
    }
}

/// The failures of one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// Failures within the window.
    pub failures: u32,
    /// The last one (Unix seconds).
    pub last: i64,
    /// Locked until this time (Unix seconds; 0: not locked).
    pub locked_until: i64,
}

/// The record after a failure at `now`.
pub fn after_failure(p: &Policy, key: &Key, old: Option<Record>, now: i64) -> Record {
    let failures = match old {
        Some(r) if now - r.last < p.window => r.failures.saturating_add(1),
        _ => 1,
    };
    let t = key.threshold(p);
    let locked_until = if failures >= t {
        let doublings = (failures - t).min(16);
        let d = u64::from(p.first_delay) << doublings;
        now + i64::try_from(d.min(u64::from(p.max_delay))).unwrap_or(i64::MAX)
    } else {
        0
    };
    Record {
        failures,
        last: now,
        locked_until,
    }
}

/// Seconds until `r` allows an attempt again, if it is locked at `now`.
pub fn locked_for(r: Option<&Record>, now: i64) -> Option<u32> {
    let r = r?;
    (r.locked_until > now).then(|| u32::try_from(r.locked_until - now).unwrap_or(u32::MAX))
}

/// Whether `r` may be forgotten at `now` (outside the window and not locked).
pub fn expired(p: &Policy, r: &Record, now: i64) -> bool {
    now - r.last >= p.window && r.locked_until <= now
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> Key {
        Key::Device("SEP001122334455".into())
    }

    #[test]
    fn a_phone_is_locked_after_five_failures_for_a_doubling_delay() {
        let p = Policy::default();
        let mut r = None;
        for i in 0..4 {
            let n = after_failure(&p, &dev(), r, 1000 + i);
            assert_eq!(n.locked_until, 0);
            r = Some(n);
        }
        let n = after_failure(&p, &dev(), r, 1004);
        assert_eq!((n.failures, n.locked_until), (5, 1014));
        assert_eq!(locked_for(Some(&n), 1004), Some(10));
        // The advertised delay is the truth: at 1014 one attempt is allowed.
        assert_eq!(locked_for(Some(&n), 1014), None);
        let n = after_failure(&p, &dev(), Some(n), 1014);
        assert_eq!(n.locked_until, 1014 + 20);
        // At most ten minutes.
        let mut r = n;
        for i in 0..20 {
            r = after_failure(&p, &dev(), Some(r), 2000 + i);
        }
        assert_eq!(r.locked_until - r.last, 600);
    }

    #[test]
    fn an_address_takes_ten_phones_worth_of_failures() {
        let p = Policy::default();
        let a = Key::Address("192.0.2.7".parse().unwrap());
        let mut r = None;
        for i in 0..49 {
            let n = after_failure(&p, &a, r, 1000 + i);
            assert_eq!(n.locked_until, 0, "failure {}", i + 1);
            r = Some(n);
        }
        assert!(after_failure(&p, &a, r, 1049).locked_until > 1049);
    }

    #[test]
    fn old_failures_are_forgotten() {
        let p = Policy::default();
        let r = Record {
            failures: 4,
            last: 1000,
            locked_until: 0,
        };
        assert_eq!(after_failure(&p, &dev(), Some(r), 1600).failures, 1);
        assert!(expired(&p, &r, 1600));
        assert!(!expired(&p, &r, 1599));
        assert_eq!(Key::parse(&dev().stored()), Some(dev()));
        let a = Key::Address("2001:db8::1".parse().unwrap());
        assert_eq!(Key::parse(&a.stored()), Some(a));
        assert_eq!(Key::parse("x:1"), None);
    }
}
