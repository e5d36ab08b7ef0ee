//! [`MemcacheHandle`] for the [`memcache`] crate's (blocking) client: proof that any client
//! plugs into the driver, as in the Perl driver, where any Perl memcached module could be passed.
//!
//! Enabled by the `memcache-crate` feature. Calls run on tokio's blocking pool. Use the
//! crate's binary protocol (its default URL form `memcache://host:port`): its text-protocol
//! `add` does not report "not stored". Differences from the bundled client, all documented
//! here and visible in [`MemcacheHandle`]'s results:
//!
//! - a read with TTL refresh takes two round trips (`get`, then `touch`);
//! - a failed CAS write takes a second read to tell "changed" from "gone", and a successful
//!   write takes a read to learn the new CAS value (the crate does not return it; a write by
//!   another client between the two goes undetected by the next CAS);
//! - client flags are not written, so the driver's compression is unavailable through it
//!   (the write fails with [`HandleError::Unsupported`]);
//! - keys cannot be listed, so `find` is unsupported;
//! - session locks are unsupported: the crate's `delete` takes no CAS value, and a lock
//!   released without comparing it could free another request's lock
//!   ([`MemcacheHandle::delete_if`] keeps its default, [`HandleError::Unsupported`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use cgi_session_memcache::{memcache_crate::MemcacheCrateHandle, MemcacheDriver};
//!
//! let memd = memcache::Client::connect("memcache://127.0.0.1:11211")?;
//! let driver = MemcacheDriver::new(MemcacheCrateHandle::new(memd, "127.0.0.1:11211"));
//! driver.check().await?;
//! # Ok(()) }
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use memcache::{CommandError, MemcacheError};

use cgi_session_core::{StoreMode, StoreOutcome};
use cgi_session_memcache_client::Item;

use crate::handle::{HandleError, MemcacheHandle, ServerInfo};

/// A [`memcache::Client`] as a [`MemcacheHandle`].
#[derive(Clone)]
pub struct MemcacheCrateHandle {
    client: Arc<memcache::Client>,
    server: String,
}

impl std::fmt::Debug for MemcacheCrateHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemcacheCrateHandle")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl MemcacheCrateHandle {
    /// Wraps `client`; `server` names it in messages.
    pub fn new(client: memcache::Client, server: impl Into<String>) -> Self {
        Self {
            client: Arc::new(client),
            server: server.into(),
        }
    }

    async fn run<T, F>(&self, op: F) -> Result<T, HandleError>
    where
        F: FnOnce(&memcache::Client) -> Result<T, MemcacheError> + Send + 'static,
        T: Send + 'static,
    {
        let client = Arc::clone(&self.client);
        let server = self.server.clone();
        tokio::task::spawn_blocking(move || op(&client))
            .await
            .map_err(|e| HandleError::Other(format!("memcache client task failed: {e}").into()))?
            .map_err(|e| classify(&server, e))
    }
}

fn classify(server: &str, e: MemcacheError) -> HandleError {
    let message = format!("memcached at {server} (memcache crate): {e}");
    match e {
        MemcacheError::IOError(_) | MemcacheError::PoolError(_) => {
            HandleError::Unavailable(message.into())
        }
        _ => HandleError::Other(message.into()),
    }
}

fn is_command(e: &MemcacheError, which: &CommandError) -> bool {
    matches!(e, MemcacheError::CommandError(c) if c == which)
}

#[async_trait]
impl MemcacheHandle for MemcacheCrateHandle {
    fn describe(&self) -> String {
        format!("memcached {} (memcache crate)", self.server)
    }

    async fn get(&self, key: &str, touch: Option<u32>) -> Result<Option<Item>, HandleError> {
        let key = key.to_owned();
        self.run(move |c| {
            let got: Option<(Vec<u8>, u32, Option<u64>)> = c.get(&key)?;
            if let (Some(_), Some(exptime)) = (&got, touch) {
                c.touch(&key, exptime)?;
            }
            Ok(got.map(|(value, flags, cas)| Item::new(value).with_cas(cas).with_flags(flags)))
        })
        .await
    }

    async fn write(
        &self,
        key: &str,
        value: &[u8],
        flags: u32,
        exptime: u32,
        mode: StoreMode,
    ) -> Result<StoreOutcome, HandleError> {
        if flags != 0 {
            return Err(HandleError::Unsupported(
                "client flags (turn compression off with this client)",
            ));
        }
        let key = key.to_owned();
        let value = value.to_vec();
        self.run(move |c| {
            let bytes: &[u8] = &value;
            let outcome = match mode {
                StoreMode::Create => match c.add(&key, bytes, exptime) {
                    Ok(()) => StoreOutcome::Stored(None),
                    Err(e) if is_command(&e, &CommandError::KeyExists) => StoreOutcome::Exists,
                    Err(e) => return Err(e),
                },
                StoreMode::Replace { expected: None } => match c.replace(&key, bytes, exptime) {
                    Ok(()) => StoreOutcome::Stored(None),
                    Err(e) if is_command(&e, &CommandError::KeyNotFound) => StoreOutcome::NotFound,
                    Err(e) => return Err(e),
                },
                StoreMode::Replace {
                    expected: Some(cas),
                } => {
                    if c.cas(&key, bytes, exptime, cas)? {
                        return Ok(StoreOutcome::Stored(None));
                    }
                    // The crate folds "changed" and "gone" into `false`: tell them apart.
                    let now: Option<(Vec<u8>, u32, Option<u64>)> = c.get(&key)?;
                    if now.is_some() {
                        StoreOutcome::Conflict
                    } else {
                        StoreOutcome::NotFound
                    }
                }
            };
            if let StoreOutcome::Stored(_) = outcome {
                let now: Option<(Vec<u8>, u32, Option<u64>)> = c.get(&key)?;
                return Ok(StoreOutcome::Stored(now.and_then(|(_, _, cas)| cas)));
            }
            Ok(outcome)
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<bool, HandleError> {
        let key = key.to_owned();
        self.run(move |c| c.delete(&key)).await
    }

    async fn touch(&self, key: &str, exptime: u32) -> Result<bool, HandleError> {
        let key = key.to_owned();
        self.run(move |c| c.touch(&key, exptime)).await
    }

    async fn server_info(&self) -> Result<ServerInfo, HandleError> {
        self.run(|c| {
            let version = c
                .version()?
                .into_iter()
                .next()
                .map(|(_, v)| v)
                .unwrap_or_default();
            Ok(ServerInfo {
                version,
                item_size_max: None,
            })
        })
        .await
    }
}
