//! The simulators' state files (`kraken-sim --state`, `bybit-sim --state`):
//! written so that a kill -9 at any moment leaves either the previous state
//! or the new one, never a torn file.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` durably: a temp file beside it, fsynced, renamed
/// over `path`, then the directory fsynced so the rename survives a crash.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::File::open(dir)?.sync_all()
}
