//! Loopback ports for programs that bind them themselves.
//!
//! A program we start (kube-apiserver, etcd, the hub) gets its port on the command
//! line, so there is a window between our check that the port is free and the
//! program's bind. Two things can take the port in that window:
//! - any outgoing connection on the machine: the kernel picks source ports from the
//!   ephemeral range, which is exactly where `bind(0)` hands out ports (CI saw
//!   kube-apiserver fail four times with "address already in use" on such a port);
//! - a parallel test, in this process or another, picking the same port.
//!
//! So ports come from outside the ephemeral range, and each one is claimed by an
//! exclusive lock on a file named after it, held until this process exits (the
//! kernel drops the lock if the process dies). The bind check still runs: a lock
//! says no drbridge process is using the port, not that nothing else is.

use std::fs::{File, OpenOptions};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Error;

/// Where ports are looked for when the kernel's ephemeral range leaves room below it.
const PREFERRED: Range<u16> = 20_000..32_768;

/// Claims held by this process; a claim ends when the process does.
static CLAIMS: Mutex<Vec<File>> = Mutex::new(Vec::new());
static CALLS: AtomicU64 = AtomicU64::new(0);

/// A free TCP port on loopback, outside the ephemeral range, claimed for this process.
pub fn free_port() -> Result<u16, Error> {
    let range = candidates(ephemeral_range());
    let dir = claims_dir();
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let len = u32::from(range.end - range.start);
    let start = start_offset() % len;
    for i in 0..len {
        let port = range.start + ((start + i) % len) as u16;
        if let Some(claim) = claim(&dir, port)?
            && bindable(port)
        {
            CLAIMS.lock().unwrap_or_else(|p| p.into_inner()).push(claim);
            return Ok(port);
        }
    }
    Err(Error::NoFreePort {
        range: format!("{}..{}", range.start, range.end),
    })
}

/// Fails with a clear message when a port is taken.
pub fn check_port_free(port: u16) -> Result<(), Error> {
    if bindable(port) {
        Ok(())
    } else {
        Err(Error::PortInUse { port })
    }
}

fn bindable(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// The lock on `port`'s file, or `None` when another claim holds it.
fn claim(dir: &Path, port: u16) -> Result<Option<File>, Error> {
    let path = dir.join(port.to_string());
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
    }
}

fn claims_dir() -> PathBuf {
    std::env::temp_dir().join("drbridge-ports")
}

/// The kernel's ephemeral port range, or Linux's default when it cannot be read.
fn ephemeral_range() -> Range<u16> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| parse_range(&s))
        .unwrap_or(32_768..61_000)
}

fn parse_range(s: &str) -> Option<Range<u16>> {
    let mut it = s.split_whitespace().map(str::parse::<u16>);
    let (lo, hi) = (it.next()?.ok()?, it.next()?.ok()?);
    (lo <= hi).then(|| lo..hi.saturating_add(1))
}

/// Ports to try: below the ephemeral range, else above it, else (a machine that gave
/// nearly every port to the ephemeral range) the preferred range anyway, where the
/// claim and bind check still keep drbridge's own programs apart.
fn candidates(ephemeral: Range<u16>) -> Range<u16> {
    const ENOUGH: u16 = 2_000;
    let below = PREFERRED.start..PREFERRED.end.min(ephemeral.start);
    if below.end.saturating_sub(below.start) >= ENOUGH {
        return below;
    }
    let above = ephemeral.end.max(PREFERRED.start)..u16::MAX;
    if above.end.saturating_sub(above.start) >= ENOUGH {
        return above;
    }
    PREFERRED
}

/// Different in every call and every process, so parallel callers rarely contend.
fn start_offset() -> u32 {
    use std::hash::{BuildHasher, RandomState};
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    (RandomState::new().hash_one((std::process::id(), call)) % u64::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_come_from_outside_the_ephemeral_range() {
        assert_eq!(candidates(32_768..61_000), 20_000..32_768);
        assert_eq!(candidates(25_000..61_000), 20_000..25_000);
        assert_eq!(candidates(1_024..50_000), 50_000..u16::MAX);
        assert_eq!(candidates(1_024..u16::MAX), PREFERRED);
        let port = free_port().unwrap();
        assert!(!ephemeral_range().contains(&port), "{port}");
    }

    #[test]
    fn parses_the_kernels_range() {
        assert_eq!(parse_range("32768\t60999\n"), Some(32_768..61_000));
        assert_eq!(parse_range("garbage"), None);
        assert_eq!(parse_range("9 3"), None);
    }

    #[test]
    fn a_claimed_port_is_not_handed_out_again() {
        let ports: Vec<u16> = (0..200).map(|_| free_port().unwrap()).collect();
        let unique: std::collections::HashSet<_> = ports.iter().collect();
        assert_eq!(unique.len(), ports.len());
        // Another open of the same file (another process, in effect) cannot claim it.
        assert!(claim(&claims_dir(), ports[0]).unwrap().is_none());
    }
}
