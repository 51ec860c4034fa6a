//! Connection slots for the node's listeners (HTTP, RTMP): a cap on connections in all and
//! from one address. A slot is an RAII value, so it is returned however the connection's
//! task ends, a panic included.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub total: u32,
    pub per_address: u32,
}

/// The open connections of one listener.
#[derive(Default)]
pub struct Admissions {
    per_address: Mutex<HashMap<IpAddr, u32>>,
    total: AtomicUsize,
}

/// One open connection's slot.
pub struct Slot {
    admissions: Arc<Admissions>,
    ip: IpAddr,
}

impl Admissions {
    /// A slot for a connection from `ip`, or why there is none.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, limits: ConnectionLimits) -> Result<Slot, String> {
        let mut per = self
            .per_address
            .lock()
            .map_err(|_| "slot table poisoned".to_string())?;
        if self.total.load(Ordering::SeqCst) >= limits.total as usize {
            return Err(format!("{} connections open", limits.total));
        }
        let n = per.entry(ip).or_insert(0);
        if *n >= limits.per_address {
            return Err(format!(
                "{} connections open from this address",
                limits.per_address
            ));
        }
        *n += 1;
        self.total.fetch_add(1, Ordering::SeqCst);
        Ok(Slot {
            admissions: Arc::clone(self),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.admissions.total.fetch_sub(1, Ordering::SeqCst);
        if let Ok(mut per) = self.admissions.per_address.lock()
            && let Some(n) = per.get_mut(&self.ip)
        {
            *n -= 1;
            if *n == 0 {
                per.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_in_all_and_per_address_and_returned_on_drop() {
        let a = Arc::new(Admissions::default());
        let limits = ConnectionLimits {
            total: 3,
            per_address: 2,
        };
        let one: IpAddr = [10, 0, 0, 1].into();
        let two: IpAddr = [10, 0, 0, 2].into();
        let s1 = a.admit(one, limits).expect("first");
        let _s2 = a.admit(one, limits).expect("second");
        assert!(a.admit(one, limits).is_err(), "per address");
        let _s3 = a.admit(two, limits).expect("other address");
        assert!(a.admit(two, limits).is_err(), "in all");
        drop(s1);
        assert!(a.admit(one, limits).is_ok());
    }
}

/// Requests per second allowed from one address, with a burst: a token bucket per address.
/// Only the addresses seen most recently are remembered, so a flood of addresses costs a
/// bounded table (a forgotten address starts with a full bucket again).
pub struct RateLimit {
    per_second: f64,
    burst: f64,
    buckets: Mutex<lru::LruCache<IpAddr, (f64, std::time::Instant)>>,
}

impl RateLimit {
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self {
            per_second: f64::from(per_second),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(16_384).expect("non-zero"),
            )),
        }
    }

    /// Takes one request's token for `ip`; `Err` carries the seconds until one is available.
    pub fn take(&self, ip: IpAddr) -> Result<(), u64> {
        let now = std::time::Instant::now();
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        let (tokens, at) = buckets.get_or_insert_mut(ip, || (self.burst, now));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.per_second).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod rate_tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let r = RateLimit::new(1, 3);
        let ip: IpAddr = [10, 0, 0, 1].into();
        assert!((0..3).all(|_| r.take(ip).is_ok()));
        assert_eq!(r.take(ip), Err(1));
        assert!(r.take([10, 0, 0, 2].into()).is_ok(), "addresses are apart");
    }
}
