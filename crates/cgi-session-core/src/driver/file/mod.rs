//! The `file` driver: CGI::Session's layout, one file `cgisess_<id>` per session in a directory.
//!
//! # How concurrent requests stay consistent
//!
//! * **Every write is atomic.** The new bytes go to a temporary file in the same directory
//!   (`.cgisess_<id>.tmp.<random hex>`, mode 0600, fsynced), which is then either hard-linked to
//!   `cgisess_<id>` ([`StoreMode::Create`]: the link fails when the name exists, an atomic "add")
//!   or renamed over it ([`StoreMode::Replace`]). A reader therefore always sees a whole session,
//!   the old one or the new one, never a mix.
//! * **Writers serialize on the current file.** The path `cgisess_<id>` is only ever renamed over
//!   or unlinked by a writer that holds the exclusive lock ([`File::lock`](std::fs::File::lock)) on the inode the path
//!   points to, checked *after* the lock was taken (when another writer replaced the file in
//!   between, the lock is dropped and taken again on the new file). So a conditional replace
//!   reads the version and renames while no other writer can change the file, and a removal
//!   waits for an in-flight replace, so that a removed session is never brought back.
//! * **Versions are content hashes** (64-bit FNV-1a of the stored bytes). Identical content gives
//!   an identical version: a replace that expected it succeeds although someone rewrote the same
//!   bytes in between, which loses nothing.
//! * **Readers take a shared lock** ([`File::lock_shared`](std::fs::File::lock_shared)). With rename-based writes they would
//!   see a whole file without it; the lock keeps them safe should an in-place writer ever be added
//!   (none exists today).
//!
//! # Lifetimes
//!
//! The driver keeps no expiry of its own: `ttl` arguments are ignored, the session layer enforces
//! idle timeouts when it loads a session, and the file's modification time records the last
//! access ([`Loaded::last_access`]); loading with `touch` and [`Driver::touch`] set it to now.
//! Files of sessions nobody loads again stay until a purge (a later CLI `purge`) removes them.
//!
//! # Session locks
//!
//! [`Driver::try_lock`] keeps a session's lock in a file of its own, `cgilock_<id>`, next to
//! the session file (and independent of it: a lock may be held for an id that has no session).
//! The file exists while the lock is held, and holds one line of ASCII:
//!
//! ```text
//! cgilock1 <token> <until>\n
//! ```
//!
//! * `cgilock1` names the format (version 1);
//! * `<token>` is the holder's [`LockToken`]: exactly 16 lowercase hexadecimal digits, drawn
//!   from the operating system's random generator for each acquisition;
//! * `<until>` is the last millisecond of the lease: milliseconds since the Unix epoch, in
//!   decimal (ASCII digits only). The lease has ended once the system clock, read in whole
//!   milliseconds, is past `<until>` (so a lease never ends before its full length, although
//!   the clock's reading is truncated).
//!
//! For example `cgilock1 9f86d081884c7d65 1718000000000` followed by a newline. Anything else
//! in a `cgilock_<id>` file (an empty file left by a power loss, a planted file, a truncated
//! line) counts as a lease that has ended: it is logged and taken over, never trusted.
//!
//! How processes sharing the directory agree on the holder:
//!
//! * **Taking a free lock** writes the line to a temporary file (`.cgilock_<id>.tmp.<hex>`,
//!   mode 0600) and hard-links it to `cgilock_<id>`: the link fails when the name exists, so of
//!   two acquirers only one creates the file, and nobody ever sees a half-written one.
//! * **Everything else is done under the lock file's exclusive [`File::lock`](std::fs::File::lock)**, re-checked
//!   against the path once taken, as for session files (a file unlinked or replaced while the
//!   flock was awaited is detected and the path opened again): reading the lease, taking over an
//!   ended one (a new temporary file renamed over the name), releasing and purging. The name is
//!   only ever renamed over or unlinked by the holder of the flock of the file it names, so two
//!   acquirers that both find an ended lease are serialized: the second one reads the first
//!   one's fresh lease and finds the lock held. The flock is held for a read and a rename or an
//!   unlink, never for the lease: [`Driver::try_lock`] does not wait for a holder.
//! * **Releasing** ([`Driver::unlock`]) compares the token under the flock and unlinks the file
//!   only when it matches. It returns `false` when the lease had ended, even if nobody took the
//!   lock since (the file is removed then all the same).
//! * **A crashed holder's file** is taken over by the next acquirer once its lease has ended,
//!   and removed by [`FileDriver::purge_temp_files`] (or [`FileDriver::purge_expired_locks`]).
//!
//! Leases are measured with the system's wall clock, which the processes of one machine share: a
//! clock stepped backwards makes leases last longer, one stepped forwards ends them early. The
//! directory must be on a local file system where `flock` and hard links work (not NFS).
//!
//! # Stale temporary files
//!
//! A writer that crashes (power loss, `SIGKILL`) between writing its temporary file and linking
//! or renaming it leaves a `.cgisess_<id>.tmp.<hex>` (or `.cgilock_<id>.tmp.<hex>`) file behind.
//! It is never mistaken for a session ([`Driver::list`] skips it, as it skips lock files)
//! and can be removed with [`FileDriver::purge_temp_files`].
//!
//! # Security
//!
//! Session files hold whatever the application stores in sessions. Use a directory only the
//! application's user can enter (mode 0700) rather than a shared temporary directory: files are
//! created with mode 0600 and the driver refuses to read through a symbolic link, but a shared
//! directory still lets other users see which sessions exist and plant files.

use std::fs;
use std::io;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::driver::{
    Driver, ListedSession, Loaded, LockAttempt, LockToken, StoreMode, StoreOutcome,
};
use crate::error::DriverError;
use crate::SessionId;

const DRIVER: &str = "file";

/// Default of [`FileDriver::max_session_size`]: 1 MiB, memcached's default item size limit, so
/// that a session that works on files also fits memcached.
pub const DEFAULT_MAX_SESSION_SIZE: u64 = 1024 * 1024;

mod layout;
mod locks;
mod sessions;
#[cfg(test)]
mod tests;

use layout::{is_temp_name, LOCK_PREFIX, PREFIX};
use locks::{purge_locks_blocking, try_lock_blocking, unlock_blocking};
use sessions::{
    create_blocking, list_blocking, load_blocking, remove_blocking, replace_blocking,
    touch_blocking, FileRead,
};

/// Sessions kept as files in a directory, one `cgisess_<id>` file per session, as
/// CGI::Session's default `driver:file` keeps them.
///
/// Writes are atomic (temporary file, then link or rename), conditional replaces are serialized
/// with file locks and checked against a hash of the content, so a write of one process never
/// silently overwrites what another process wrote since it read the session (the session layer
/// then re-applies its changes); see the
/// [module documentation](self) for the details. Cloning shares the same directory.
///
/// ```
/// # tokio_test_block_on(async {
/// use cgi_session_core::{Driver, FileDriver, SessionId, StoreMode, StoreOutcome};
///
/// let dir = tempfile::tempdir().unwrap();
/// let driver = FileDriver::new(dir.path()).unwrap();
/// let id = SessionId::parse("5ee0c1d2a1b2c3d4e5f60718293a4b5c").unwrap();
///
/// let created = driver.store(&id, b"user=alice", StoreMode::Create, None).await.unwrap();
/// assert!(matches!(created, StoreOutcome::Stored(Some(_))));
/// assert!(dir.path().join("cgisess_5ee0c1d2a1b2c3d4e5f60718293a4b5c").is_file());
///
/// let loaded = driver.load(&id, None).await.unwrap().unwrap();
/// assert_eq!(loaded.data, b"user=alice");
///
/// // A conditional replace succeeds with the version just loaded...
/// let replace = StoreMode::Replace { expected: loaded.version };
/// let stored = driver.store(&id, b"user=bob", replace, None).await.unwrap();
/// assert!(matches!(stored, StoreOutcome::Stored(Some(_))));
/// // ...and fails once someone else wrote since.
/// let stale = driver.store(&id, b"user=eve", replace, None).await.unwrap();
/// assert_eq!(stale, StoreOutcome::Conflict);
///
/// assert!(driver.remove(&id).await.unwrap());
/// assert_eq!(driver.load(&id, None).await.unwrap(), None);
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct FileDriver {
    dir: Arc<PathBuf>,
    max_size: u64,
}

impl FileDriver {
    /// A driver keeping its session files in `dir`, which must exist and be a directory.
    ///
    /// This checks the directory once, with blocking calls: build the driver at start-up.
    ///
    /// # Errors
    /// [`DriverError::Config`] when `dir` does not exist, is not a directory or cannot be
    /// inspected; the message says what to do.
    ///
    /// ```
    /// use cgi_session_core::FileDriver;
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let driver = FileDriver::new(dir.path()).unwrap();
    /// assert_eq!(driver.dir(), dir.path());
    /// assert!(FileDriver::new(dir.path().join("missing")).is_err());
    /// ```
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, DriverError> {
        let dir = dir.into();
        let config = |message: String| DriverError::Config {
            driver: DRIVER,
            message,
        };
        match fs::metadata(&dir) {
            Ok(meta) if meta.is_dir() => Ok(Self {
                dir: Arc::new(dir),
                max_size: DEFAULT_MAX_SESSION_SIZE,
            }),
            Ok(_) => Err(config(format!(
                "session directory {} is not a directory; pass the directory that should hold \
                 the cgisess_<id> files",
                dir.display()
            ))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(config(format!(
                "session directory {} does not exist; create it (mode 0700, owned by the \
                 application's user) or pass an existing directory",
                dir.display()
            ))),
            Err(e) => Err(config(format!(
                "session directory {} cannot be inspected ({e}); check its path and permissions",
                dir.display()
            ))),
        }
    }

    /// A driver keeping its files in the system's temporary directory
    /// ([`std::env::temp_dir`]), CGI::Session's default.
    ///
    /// Prefer [`FileDriver::new`] with a private directory in production: see the
    /// [module documentation](self#security).
    ///
    /// # Errors
    /// As [`FileDriver::new`], when the temporary directory (`TMPDIR`) is unusable.
    ///
    /// ```
    /// use cgi_session_core::FileDriver;
    ///
    /// let driver = FileDriver::in_temp_dir().unwrap();
    /// assert_eq!(driver.dir(), std::env::temp_dir());
    /// ```
    pub fn in_temp_dir() -> Result<Self, DriverError> {
        Self::new(std::env::temp_dir())
    }

    /// The directory holding the session files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The largest session stored or read, in bytes ([`DEFAULT_MAX_SESSION_SIZE`] unless
    /// set). A larger save fails with [`DriverError::TooLarge`] before anything is written; a
    /// larger file (written by another program) is refused the same way without being read,
    /// so one oversized session cannot make every request that carries its cookie slow.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use cgi_session_core::{Driver, DriverError, FileDriver, SessionId, StoreMode};
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let driver = FileDriver::new(dir.path()).unwrap().max_session_size(16);
    /// let id = SessionId::parse("abc123").unwrap();
    /// let err = driver.store(&id, &[b'x'; 17], StoreMode::Create, None).await.unwrap_err();
    /// assert!(matches!(err, DriverError::TooLarge { size: 17, limit: 16, .. }));
    /// # });
    /// ```
    #[must_use]
    pub fn max_session_size(mut self, bytes: u64) -> Self {
        self.max_size = bytes;
        self
    }

    fn too_large(&self, size: u64) -> DriverError {
        DriverError::TooLarge {
            driver: DRIVER,
            size: usize::try_from(size).unwrap_or(usize::MAX),
            limit: usize::try_from(self.max_size).unwrap_or(usize::MAX),
        }
    }

    /// Removes temporary files that crashed writers left behind (`.cgisess_<id>.tmp.<hex>`
    /// and `.cgilock_<id>.tmp.<hex>`) and that were last modified more than `older_than` ago,
    /// then the lock files whose lease has ended, as [`FileDriver::purge_expired_locks`] does;
    /// returns how many files were removed in all.
    ///
    /// A temporary file lives only for the duration of one write, so any age well above the
    /// slowest write (say, an hour) is safe to pass while the application runs.
    ///
    /// # Errors
    /// [`DriverError::Backend`] when the directory cannot be listed or a file not removed.
    ///
    /// ```
    /// # tokio_test_block_on(async {
    /// use std::time::Duration;
    /// use cgi_session_core::FileDriver;
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let driver = FileDriver::new(dir.path()).unwrap();
    /// let removed = driver.purge_temp_files(Duration::from_secs(3600)).await.unwrap();
    /// assert_eq!(removed, 0);
    /// # });
    /// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    /// # }
    /// ```
    pub async fn purge_temp_files(&self, older_than: Duration) -> Result<usize, DriverError> {
        let dir = Arc::clone(&self.dir);
        self.run("purging temporary files", move || {
            let cutoff = SystemTime::now().checked_sub(older_than);
            let mut removed = 0;
            for entry in fs::read_dir(&*dir)? {
                let entry = entry?;
                if !is_temp_name(&entry.file_name()) {
                    continue;
                }
                let meta = match entry.metadata() {
                    Ok(meta) => meta,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                let old = match cutoff {
                    Some(cutoff) => meta.modified()? < cutoff,
                    None => false,
                };
                if meta.is_file() && old {
                    match fs::remove_file(entry.path()) {
                        Ok(()) => removed += 1,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok(removed + purge_locks_blocking(&dir)?)
        })
        .await
    }

    /// Removes the lock files (`cgilock_<id>`) whose lease has ended, left by holders that
    /// crashed or never released, and lock files that do not hold a well-formed lease; returns
    /// how many were removed.
    ///
    /// Safe while the application runs: each file is checked and removed under its exclusive
    /// flock (a file another process is working on is skipped), so a lock taken over or released
    /// in the meantime is left alone. [`FileDriver::purge_temp_files`] calls it too.
    ///
    /// # Errors
    /// [`DriverError::Backend`] when the directory cannot be listed or a file not read or
    /// removed.
    ///
    /// ```
    /// # tokio_test_block_on(async {
    /// use std::time::Duration;
    /// use cgi_session_core::{Driver, FileDriver, LockAttempt, SessionId};
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let driver = FileDriver::new(dir.path()).unwrap();
    /// let id = SessionId::parse("5ee0c1d2a1b2c3d4e5f60718293a4b5c").unwrap();
    /// let lease = Duration::from_secs(30);
    /// assert!(matches!(driver.try_lock(&id, lease).await.unwrap(), LockAttempt::Acquired(_)));
    /// // A live lease is kept.
    /// assert_eq!(driver.purge_expired_locks().await.unwrap(), 0);
    /// assert_eq!(driver.try_lock(&id, lease).await.unwrap(), LockAttempt::Held);
    /// # });
    /// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    /// # }
    /// ```
    pub async fn purge_expired_locks(&self) -> Result<usize, DriverError> {
        let dir = Arc::clone(&self.dir);
        self.run("purging expired lock files", move || {
            purge_locks_blocking(&dir)
        })
        .await
    }

    /// The path of a session's file.
    fn session_path(&self, id: &SessionId) -> Result<PathBuf, DriverError> {
        self.path_for(PREFIX, id)
    }

    /// The path of a session's lock file.
    fn lock_path(&self, id: &SessionId) -> Result<PathBuf, DriverError> {
        self.path_for(LOCK_PREFIX, id)
    }

    /// The path of the file `<prefix><id>` in the directory.
    fn path_for(&self, prefix: &str, id: &SessionId) -> Result<PathBuf, DriverError> {
        let id = id.as_str();
        // `SessionId` already excludes these; refuse them anyway so that no id can ever name a
        // file outside the directory.
        if id.is_empty() || id.contains(['/', '\\']) || id.contains("..") {
            return Err(DriverError::Backend {
                driver: DRIVER,
                source: "refusing a session id holding a path separator or `..`".into(),
            });
        }
        Ok(self.dir.join(format!("{prefix}{id}")))
    }

    /// Runs blocking file work on tokio's blocking pool, mapping failures to
    /// [`DriverError::Backend`] (with `op` and the directory, never the full id, for context).
    async fn run<T, F>(&self, op: &'static str, work: F) -> Result<T, DriverError>
    where
        T: Send + 'static,
        F: FnOnce() -> io::Result<T> + Send + 'static,
    {
        let error = match tokio::task::spawn_blocking(work).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(source)) => DriverError::Backend {
                driver: DRIVER,
                source: Box::new(FileError {
                    op,
                    dir: PathBuf::clone(&self.dir),
                    source,
                }),
            },
            Err(join) => DriverError::Backend {
                driver: DRIVER,
                source: Box::new(join),
            },
        };
        // The store-error counter, as the memcached driver keeps it (no server: one directory).
        crate::observe::record_store_error(DRIVER, None, &error);
        Err(error)
    }
}

/// An I/O failure with what the driver was doing and where.
#[derive(Debug, thiserror::Error)]
#[error("{op} in {}: {source}", dir.display())]
struct FileError {
    op: &'static str,
    dir: PathBuf,
    #[source]
    source: io::Error,
}

#[async_trait]
impl Driver for FileDriver {
    fn name(&self) -> &'static str {
        DRIVER
    }

    /// Reads `cgisess_<id>` under a shared lock; `last_access` is the file's modification time.
    /// With `touch`, the modification time is set to now after reading (the lifetime itself is
    /// enforced by the session layer).
    async fn load(
        &self,
        id: &SessionId,
        touch: Option<Duration>,
    ) -> Result<Option<Loaded>, DriverError> {
        let path = self.session_path(id)?;
        let max_size = self.max_size;
        match self
            .run("reading a session file", move || {
                load_blocking(&path, touch.is_some(), max_size)
            })
            .await?
        {
            FileRead::Loaded(found) => Ok(found),
            FileRead::TooLarge(size) => Err(self.too_large(size)),
        }
    }

    /// Writes atomically (temporary file, then link or rename); `ttl` is ignored.
    async fn store(
        &self,
        id: &SessionId,
        data: &[u8],
        mode: StoreMode,
        _ttl: Option<Duration>,
    ) -> Result<StoreOutcome, DriverError> {
        let path = self.session_path(id)?;
        if data.len() as u64 > self.max_size {
            return Err(self.too_large(data.len() as u64));
        }
        let dir = Arc::clone(&self.dir);
        let id = id.as_str().to_owned();
        let data = data.to_vec();
        self.run("writing a session file", move || match mode {
            StoreMode::Create => create_blocking(&dir, &id, &path, &data),
            StoreMode::Replace { expected } => replace_blocking(&dir, &id, &path, &data, expected),
        })
        .await
    }

    /// Unlinks `cgisess_<id>` under its exclusive lock, after any in-flight write.
    async fn remove(&self, id: &SessionId) -> Result<bool, DriverError> {
        let path = self.session_path(id)?;
        self.run("removing a session file", move || remove_blocking(&path))
            .await
    }

    /// Sets the file's modification time to now; `ttl` is ignored.
    async fn touch(&self, id: &SessionId, _ttl: Option<Duration>) -> Result<bool, DriverError> {
        let path = self.session_path(id)?;
        self.run("touching a session file", move || touch_blocking(&path))
            .await
    }

    /// Takes the lock file `cgilock_<id>`: creates it when there is none, takes it over when
    /// its lease has ended or it holds no well-formed lease, under its exclusive flock; see the
    /// [module documentation](self#session-locks). Waits only for another process's brief
    /// read-and-rename, never for a holder.
    async fn try_lock(&self, id: &SessionId, lease: Duration) -> Result<LockAttempt, DriverError> {
        let path = self.lock_path(id)?;
        let dir = Arc::clone(&self.dir);
        let id = id.clone();
        self.run("taking a session lock file", move || {
            try_lock_blocking(&dir, &id, &path, lease)
        })
        .await
    }

    /// Unlinks the lock file `cgilock_<id>` when it holds `token`, compared under its exclusive
    /// flock; `Ok(false)` when it holds another token, none, or a lease that has ended (the file
    /// is removed then all the same).
    async fn unlock(&self, id: &SessionId, token: LockToken) -> Result<bool, DriverError> {
        let path = self.lock_path(id)?;
        let id = id.clone();
        self.run("releasing a session lock file", move || {
            unlock_blocking(&id, &path, token)
        })
        .await
    }

    /// Visits every `cgisess_<id>` file whose name holds a well-formed id; temporary files,
    /// lock files and anything else in the directory are skipped.
    async fn list(
        &self,
        visit: &mut (dyn FnMut(ListedSession) -> ControlFlow<()> + Send),
    ) -> Result<(), DriverError> {
        let dir = Arc::clone(&self.dir);
        let listed = self
            .run("listing session files", move || list_blocking(&dir))
            .await?;
        for session in listed {
            if visit(session).is_break() {
                break;
            }
        }
        Ok(())
    }
}
