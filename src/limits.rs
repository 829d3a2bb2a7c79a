//! Connection limits: how many connections the server holds at once, in all
//! and per client address.
//!
//! Every TCP connection holds a [`Permit`] from the moment it is accepted
//! (plain HTTP, WebSocket, TLS or not). A WebSocket takes its connection's
//! permit over; a further WebSocket on the same HTTP/2 connection takes one
//! of its own. A permit is released when what holds it is dropped, so no
//! path (an error, a panic, a client that vanishes) can leak one.
//!
//! Over a limit, a connection is refused at once. While a bounded number of
//! refusal slots last, it is served just long enough to be told why (a
//! WebSocket client gets an `error` and close 1013, HTTP gets 503); past
//! them it gets a canned HTTP 503 (or, on TLS, a plain close) without a task.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::{Config, IpNets};
use crate::metrics::{Metrics, RefusedReason};

/// The server's connection limits and what is open against them.
#[derive(Debug)]
pub struct ConnectionLimits {
    max: u32,
    per_address: u32,
    exempt: IpNets,
    connections: Arc<Semaphore>,
    refusals: Arc<Semaphore>,
    open_per_address: Mutex<HashMap<IpAddr, u32>>,
    /// Where admissions and refusals are counted.
    metrics: Arc<Metrics>,
}

impl ConnectionLimits {
    /// `max` connections in all, `per_address` from one address (0: no
    /// per-address limit) except from `exempt` addresses.
    pub fn new(max: u32, per_address: u32, exempt: IpNets) -> Arc<Self> {
        Self::counted_in(max, per_address, exempt, Arc::new(Metrics::new()))
    }

    /// The limits of `config`, counted in `metrics`.
    pub fn from_config(config: &Config, metrics: Arc<Metrics>) -> Arc<Self> {
        Self::counted_in(
            config.max_connections,
            config.max_connections_per_ip,
            config.per_ip_exempt.clone(),
            metrics,
        )
    }

    fn counted_in(max: u32, per_address: u32, exempt: IpNets, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(ConnectionLimits {
            max,
            per_address,
            exempt,
            connections: Arc::new(Semaphore::new(max as usize)),
            refusals: Arc::new(Semaphore::new(refusal_slots(max))),
            open_per_address: Mutex::new(HashMap::new()),
            metrics,
        })
    }

    /// A permit for one more connection from `peer` (`None`: an unknown
    /// peer, only the total limit applies), or why not.
    pub fn admit(self: &Arc<Self>, peer: Option<IpAddr>) -> Result<Permit, Refusal> {
        let admitted = self.try_admit(peer);
        match &admitted {
            Ok(_) => {
                self.metrics.connections_accepted.inc();
            }
            Err(why) => self.metrics.refused(why.reason()),
        }
        admitted
    }

    fn try_admit(self: &Arc<Self>, peer: Option<IpAddr>) -> Result<Permit, Refusal> {
        let global = self
            .connections
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::ServerFull { max: self.max })?;
        let address = match peer {
            Some(ip) if self.per_address > 0 && !self.exempt.contains(ip) => {
                let key = address_key(ip);
                let mut open = self.lock();
                let n = open.entry(key).or_insert(0);
                if *n >= self.per_address {
                    return Err(Refusal::PerAddress {
                        address: show_key(key),
                        max: self.per_address,
                    });
                }
                *n += 1;
                Some(AddressGuard {
                    limits: Arc::clone(self),
                    key,
                })
            }
            _ => None,
        };
        Ok(Permit { global, address })
    }

    /// One of the bounded slots for telling an over-limit client why.
    pub fn refusal_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.refusals.clone().try_acquire_owned().ok()
    }

    /// The connection limit (`--max-connections`).
    pub fn max(&self) -> u32 {
        self.max
    }

    /// Connections holding a permit now.
    pub fn open(&self) -> usize {
        (self.max as usize).saturating_sub(self.connections.available_permits())
    }

    /// Connections counted against `ip`'s address now (0 when exempt).
    pub fn open_from(&self, ip: IpAddr) -> u32 {
        self.lock().get(&address_key(ip)).copied().unwrap_or(0)
    }

    /// Addresses holding all the connections they may have now.
    pub fn addresses_at_limit(&self) -> usize {
        if self.per_address == 0 {
            return 0;
        }
        self.lock()
            .values()
            .filter(|&&n| n >= self.per_address)
            .count()
    }

    /// Over-limit connections being told so now.
    pub fn refusing(&self) -> usize {
        refusal_slots(self.max).saturating_sub(self.refusals.available_permits())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, u32>> {
        // Nothing panics while holding it; if something did, the counts are
        // still consistent (each update is one statement).
        self.open_per_address
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Refusals that may be in flight at once: a sixteenth of the connection
/// limit, at least 16.
pub fn refusal_slots(max_connections: u32) -> usize {
    (max_connections as usize / 16).max(16)
}

/// What a connection is counted under: its IPv4 address, or the /64 of its
/// IPv6 address (one subscriber usually gets a whole /64, so counting single
/// IPv6 addresses would limit nobody).
fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let masked = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(masked))
        }
        v4 => v4,
    }
}

fn show_key(key: IpAddr) -> String {
    match key {
        IpAddr::V6(_) => format!("{key}/64"),
        IpAddr::V4(_) => key.to_string(),
    }
}

/// One connection's place under the limits; released on drop.
#[derive(Debug)]
pub struct Permit {
    global: OwnedSemaphorePermit,
    address: Option<AddressGuard>,
}

impl Permit {
    /// The total-limit permit and the per-address count, to be held apart.
    pub fn into_parts(self) -> (OwnedSemaphorePermit, Option<AddressGuard>) {
        (self.global, self.address)
    }
}

/// One connection counted against its address; uncounted on drop.
#[derive(Debug)]
pub struct AddressGuard {
    limits: Arc<ConnectionLimits>,
    key: IpAddr,
}

impl Drop for AddressGuard {
    fn drop(&mut self) {
        let mut open = self.limits.lock();
        if let Some(n) = open.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `--max-connections` reached.
    ServerFull { max: u32 },
    /// `--max-connections-per-ip` reached for this address.
    PerAddress { address: String, max: u32 },
}

impl Refusal {
    /// The reason label of `playfield_connections_refused_total`.
    pub fn reason(&self) -> RefusedReason {
        match self {
            Refusal::ServerFull { .. } => RefusedReason::server_full,
            Refusal::PerAddress { .. } => RefusedReason::per_ip,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::ServerFull { max } => {
                f.write_str(&crate::session::server_full_reason(*max))
            }
            Refusal::PerAddress { address, max } => write!(
                f,
                "too many connections from {address} ({max} max per address); close some and try again"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn total_and_per_address_limits_release_on_drop() {
        let limits = ConnectionLimits::new(3, 2, IpNets::none());
        let a1 = limits.admit(ip("10.0.0.1")).unwrap();
        let a2 = limits.admit(ip("10.0.0.1")).unwrap();
        assert_eq!(
            limits.admit(ip("10.0.0.1")).unwrap_err(),
            Refusal::PerAddress {
                address: "10.0.0.1".into(),
                max: 2
            }
        );
        // The refused attempt gave its total permit back.
        assert_eq!(limits.open(), 2);
        let b = limits.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(
            limits.admit(ip("10.0.0.3")).unwrap_err(),
            Refusal::ServerFull { max: 3 }
        );
        drop(a1);
        assert_eq!(limits.open_from("10.0.0.1".parse().unwrap()), 1);
        let a3 = limits.admit(ip("10.0.0.1")).unwrap();
        drop((a2, a3, b));
        assert_eq!(limits.open(), 0);
        assert_eq!(limits.open_from("10.0.0.1".parse().unwrap()), 0);
        assert!(limits.lock().is_empty(), "no entry left behind");
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let limits = ConnectionLimits::new(100, 1, IpNets::none());
        let _a = limits.admit(ip("2001:db8:1:2::1")).unwrap();
        let e = limits.admit(ip("2001:db8:1:2:ffff::9")).unwrap_err();
        assert_eq!(
            e.to_string().split(" (").next().unwrap(),
            "too many connections from 2001:db8:1:2::/64"
        );
        let _b = limits.admit(ip("2001:db8:1:3::1")).unwrap();
        let _c = limits.admit(ip("192.0.2.7")).unwrap();
        assert!(limits.admit(ip("::ffff:192.0.2.7")).is_err());
    }

    #[test]
    fn exempt_and_unknown_peers_only_count_in_total() {
        let limits = ConnectionLimits::new(10, 1, IpNets::parse("127.0.0.0/8").unwrap());
        let held: Vec<_> = (0..5)
            .map(|_| limits.admit(ip("127.0.0.1")).unwrap())
            .collect();
        let _unknown = limits.admit(None).unwrap();
        assert_eq!(limits.open(), 6);
        assert_eq!(limits.open_from("127.0.0.1".parse().unwrap()), 0);
        drop(held);
        let unlimited = ConnectionLimits::new(10, 0, IpNets::none());
        let _many: Vec<_> = (0..10)
            .map(|_| unlimited.admit(ip("10.0.0.1")).unwrap())
            .collect();
    }

    #[test]
    fn refusal_slots_are_bounded() {
        let limits = ConnectionLimits::new(1, 0, IpNets::none());
        let slots: Vec<_> = std::iter::from_fn(|| limits.refusal_slot())
            .take(100)
            .collect();
        assert_eq!(slots.len(), 16);
        assert_eq!(limits.refusing(), 16);
    }
}
