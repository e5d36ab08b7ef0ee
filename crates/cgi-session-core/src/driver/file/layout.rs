//! How the file driver lays sessions out on disk: file names, the version hash, opening
//! files safely (no symbolic links) and temporary files.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::driver::Version;
use crate::SessionId;

/// Session files are named `cgisess_<id>`, as CGI::Session names them.
pub(super) const PREFIX: &str = "cgisess_";
/// Temporary files are named `.cgisess_<id>.tmp.<hex>`: the leading dot keeps them apart.
pub(super) const TEMP_PREFIX: &str = ".cgisess_";
pub(super) const TEMP_MARKER: &str = ".tmp.";
/// Lock files are named `cgilock_<id>`: they never start like a session file.
pub(super) const LOCK_PREFIX: &str = "cgilock_";
/// Temporary lock files are named `.cgilock_<id>.tmp.<hex>`.
pub(super) const LOCK_TEMP_PREFIX: &str = ".cgilock_";
/// The first word of a lock file's line: the format and its version.
pub(super) const LOCK_MAGIC: &str = "cgilock1";
/// The length of a well-formed lock file: magic, token, up to 20 digits, spaces and newline.
pub(super) const MAX_LOCK_FILE_LEN: u64 = 64;
/// How many times a writer retakes the lock when the file keeps being replaced under it.
pub(super) const MAX_LOCK_ATTEMPTS: u32 = 64;

/// 64-bit FNV-1a (Fowler–Noll–Vo) hash of `bytes`: the version of a stored session.
///
/// Written out here because it takes four lines and must never change between builds or
/// processes (unlike `std`'s `DefaultHasher`): processes sharing a directory compare versions.
pub(super) fn fnv1a64(bytes: &[u8]) -> Version {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(PRIME)
    })
}

pub(super) fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

pub(super) fn is_temp_name(name: &OsStr) -> bool {
    name.to_str().is_some_and(|n| {
        (n.starts_with(TEMP_PREFIX) || n.starts_with(LOCK_TEMP_PREFIX)) && n.contains(TEMP_MARKER)
    })
}

/// The session id a directory entry's name stands for, when it is a session file.
pub(super) fn session_id_of(name: &OsStr) -> Option<SessionId> {
    SessionId::parse(name.to_str()?.strip_prefix(PREFIX)?).ok()
}

/// Opens a session file for reading; `None` when it does not exist.
///
/// Refuses symbolic links (a planted `cgisess_<id>` link must not make the driver read or
/// overwrite another file) and anything that is not a regular file.
pub(super) fn open_session(path: &Path) -> io::Result<Option<File>> {
    open_regular(path, "a session file")
}

/// Opens the regular file at `path` for reading; `None` when it does not exist; an error
/// naming `what` when it is a symbolic link or not a regular file.
pub(super) fn open_regular(path: &Path, what: &str) -> io::Result<Option<File>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let opened = file.metadata()?;
    let link = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        // Removed or replaced just now: it was a regular file or not, either way the caller's
        // inode check (writers) or a whole old version (readers) is fine; check what we opened.
        Err(e) if e.kind() == io::ErrorKind::NotFound => opened.clone(),
        Err(e) => return Err(e),
    };
    if link.file_type().is_symlink() || !opened.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{what} is a symbolic link or not a regular file; refusing to use it"),
        ));
    }
    Ok(Some(file))
}

/// A temporary file in the session directory, removed when dropped unless it was renamed.
pub(super) struct TempFile {
    pub(super) path: PathBuf,
    pub(super) keep: bool,
}

impl TempFile {
    /// Writes `data` to a new `.cgisess_<id>.tmp.<hex>` file (mode 0600) and fsyncs it.
    pub(super) fn write(dir: &Path, id: &str, data: &[u8]) -> io::Result<Self> {
        Self::write_as(dir, TEMP_PREFIX, id, data, true)
    }

    /// Writes `data` to a new `<prefix><id>.tmp.<hex>` file (mode 0600), fsynced when `sync`.
    pub(super) fn write_as(
        dir: &Path,
        prefix: &str,
        id: &str,
        data: &[u8],
        sync: bool,
    ) -> io::Result<Self> {
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).map_err(|e| io::Error::other(e.to_string()))?;
        let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let path = dir.join(format!("{prefix}{id}{TEMP_MARKER}{hex}"));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        // From here on the guard removes the file whatever happens.
        let temp = Self { path, keep: false };
        file.write_all(data)?;
        if sync {
            file.sync_all()?;
        }
        Ok(temp)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_file(&self.path);
        }
    }
}
