//! The per-key nonce: strictly increasing, and never lower after a restart.
//!
//! A nonce is the largest of: the last one plus one, the clock in
//! microseconds, and the persisted high-water mark plus one. The mark is
//! written ahead in blocks: before handing out a nonce above the reserved
//! mark, the generator durably writes a new mark one block higher, so a
//! restart (even with the wall clock set back) starts above every nonce the
//! previous process could have used, and the file is synced about once per
//! block rather than once per call.
//!
//! Serialising a key's requests from nonce to send is the HTTP client's job
//! (see [`crate::http::KrakenHttpClient`]); this type only issues numbers.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// How far ahead of the last issued nonce the persisted mark is moved: one
/// second of microseconds, or a million calls.
pub const DEFAULT_RESERVE_BLOCK: u64 = 1_000_000;

/// Microseconds since the Unix epoch.
pub trait MicrosClock: Send + Sync + fmt::Debug {
    fn now_micros(&self) -> u64;
}

/// The system clock in microseconds.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemMicros;

impl MicrosClock for SystemMicros {
    fn now_micros(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// Any [`herd_venue::Clock`] (milliseconds) as a microsecond clock; lets a
/// test drive nonces with a `ManualClock`.
#[derive(Debug, Clone)]
pub struct MillisAsMicros<C>(pub C);

impl<C: herd_venue::Clock> MicrosClock for MillisAsMicros<C> {
    fn now_micros(&self) -> u64 {
        u64::try_from(self.0.now_ms())
            .unwrap_or(0)
            .saturating_mul(1000)
    }
}

/// Why a nonce could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum NonceError {
    #[error("nonce file {path}: {message}")]
    File { path: String, message: String },
    #[error("nonce space exhausted")]
    Exhausted,
}

#[derive(Debug)]
struct State {
    last: u64,
    reserved: u64,
}

/// Issues the nonces of one API key.
pub struct NonceGenerator {
    clock: Arc<dyn MicrosClock>,
    file: Option<PathBuf>,
    block: u64,
    state: Mutex<State>,
}

impl fmt::Debug for NonceGenerator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NonceGenerator")
            .field("file", &self.file)
            .field("block", &self.block)
            .finish_non_exhaustive()
    }
}

impl NonceGenerator {
    /// A generator on the system clock, persisting to `file` when given.
    pub fn new(file: Option<PathBuf>) -> Result<NonceGenerator, NonceError> {
        NonceGenerator::with_clock(Arc::new(SystemMicros), file, DEFAULT_RESERVE_BLOCK)
    }

    /// A generator on any clock and reservation block. Reads the persisted mark
    /// if the file exists; a missing file means a fresh key.
    pub fn with_clock(
        clock: Arc<dyn MicrosClock>,
        file: Option<PathBuf>,
        block: u64,
    ) -> Result<NonceGenerator, NonceError> {
        let persisted = match &file {
            Some(path) => read_mark(path)?,
            None => 0,
        };
        Ok(NonceGenerator {
            clock,
            file,
            block: block.max(1),
            state: Mutex::new(State {
                last: persisted,
                reserved: persisted,
            }),
        })
    }

    /// The next nonce. Fails only when the high-water mark cannot be
    /// persisted: issuing a nonce that a restart could repeat is worse.
    pub fn next(&self) -> Result<u64, NonceError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let next = state
            .last
            .checked_add(1)
            .ok_or(NonceError::Exhausted)?
            .max(self.clock.now_micros());
        if let Some(path) = &self.file
            && next > state.reserved
        {
            let mark = next.saturating_add(self.block);
            write_mark(path, mark)?;
            state.reserved = mark;
        }
        state.last = next;
        Ok(next)
    }

    /// The last nonce issued (or the persisted mark before the first call).
    pub fn last(&self) -> u64 {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).last
    }

    /// Moves the sequence past `floor`, e.g. after Kraken said
    /// `EAPI:Invalid nonce` because another client used the key.
    pub fn bump_to(&self, floor: u64) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.last = state.last.max(floor);
    }
}

fn file_error(path: &Path, e: impl fmt::Display) -> NonceError {
    NonceError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn read_mark(path: &Path) -> Result<u64, NonceError> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .trim()
            .parse::<u64>()
            .map_err(|e| file_error(path, format!("not a nonce: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(file_error(path, e)),
    }
}

/// Writes the mark to a temporary file, syncs it and renames it over the old
/// one, so a crash leaves either the old or the new mark, never a torn one.
fn write_mark(path: &Path, mark: u64) -> Result<(), NonceError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp).map_err(|e| file_error(&tmp, e))?;
    f.write_all(format!("{mark}\n").as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| file_error(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| file_error(path, e))?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        })
    {
        // Best effort: makes the rename itself durable on Linux.
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_venue::ManualClock;
    use std::collections::HashSet;

    fn manual(ms: i64) -> (ManualClock, Arc<dyn MicrosClock>) {
        let c = ManualClock::new(ms);
        (c.clone(), Arc::new(MillisAsMicros(c)))
    }

    #[test]
    fn follows_the_clock_and_never_repeats() {
        let (clock, micros) = manual(1_000);
        let g = NonceGenerator::with_clock(micros, None, 10).unwrap();
        assert_eq!(g.next().unwrap(), 1_000_000);
        assert_eq!(g.next().unwrap(), 1_000_001);
        clock.advance_ms(5);
        assert_eq!(g.next().unwrap(), 1_005_000);
        clock.set_ms(0);
        assert_eq!(
            g.next().unwrap(),
            1_005_001,
            "clock going back never lowers it"
        );
    }

    #[test]
    fn strictly_increasing_under_concurrent_callers() {
        let g = Arc::new(NonceGenerator::new(None).unwrap());
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let g = g.clone();
                std::thread::spawn(move || {
                    let mut v = Vec::with_capacity(2000);
                    for _ in 0..2000 {
                        v.push(g.next().unwrap());
                    }
                    v
                })
            })
            .collect();
        let mut all = HashSet::new();
        for h in handles {
            let v = h.join().unwrap();
            assert!(v.windows(2).all(|w| w[0] < w[1]), "per-thread order");
            for n in v {
                assert!(all.insert(n), "duplicate nonce {n}");
            }
        }
        assert_eq!(all.len(), 16_000);
    }

    #[test]
    fn no_regression_after_restart_with_clock_set_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kraken.nonce");
        let (clock, micros) = manual(2_000_000);
        let first = NonceGenerator::with_clock(micros.clone(), Some(path.clone()), 1_000).unwrap();
        let mut last = 0;
        for _ in 0..2_500 {
            last = first.next().unwrap();
        }
        drop(first);
        // The wall clock jumps back an hour and the process restarts.
        clock.advance_ms(-3_600_000);
        let second = NonceGenerator::with_clock(micros, Some(path.clone()), 1_000).unwrap();
        let n = second.next().unwrap();
        assert!(n > last, "restart went backwards: {n} <= {last}");
        let on_disk: u64 = std::fs::read_to_string(&path)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(on_disk >= n);
    }

    #[test]
    fn persists_once_per_block() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n");
        let (_clock, micros) = manual(1);
        let g = NonceGenerator::with_clock(micros, Some(path.clone()), 100).unwrap();
        let a = g.next().unwrap();
        let mark = std::fs::read_to_string(&path).unwrap();
        assert_eq!(mark.trim().parse::<u64>().unwrap(), a + 100);
        // Nonces up to the mark are covered by it: no write.
        for _ in 0..100 {
            g.next().unwrap();
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), mark, "same block");
        let beyond = g.next().unwrap();
        assert_eq!(beyond, a + 101);
        let new_mark: u64 = std::fs::read_to_string(&path)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(new_mark, beyond + 100);
    }

    #[test]
    fn corrupt_file_is_an_error_not_zero() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n");
        std::fs::write(&path, "garbage").unwrap();
        assert!(NonceGenerator::new(Some(path)).is_err());
    }

    #[test]
    fn unwritable_file_refuses_to_issue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("n");
        let g = NonceGenerator::new(Some(path)).unwrap();
        assert!(g.next().is_err());
    }
}
