//! [`MemcacheHandle`] for the bundled client: every operation is one meta-protocol round trip.

use async_trait::async_trait;
use cgi_session_memcache_client::{
    Client, DeleteStatus, Error, GetOptions, SetMode, SetOptions, StoreStatus,
};

use crate::handle::{
    DeleteIfOutcome, Fetched, HandleError, ListedKey, MemcacheHandle, ServerInfo, WriteMode,
    WriteOutcome,
};

fn map_err(e: Error) -> HandleError {
    if let Error::Unsupported { what, .. } = e {
        return HandleError::Unsupported(what);
    }
    if e.is_outcome_unknown() {
        HandleError::OutcomeUnknown(Box::new(e))
    } else if e.is_unavailable() {
        HandleError::Unavailable(Box::new(e))
    } else {
        HandleError::Other(Box::new(e))
    }
}

#[async_trait]
impl MemcacheHandle for Client {
    fn describe(&self) -> String {
        format!("memcached {}", self.servers().join(", "))
    }

    async fn get(&self, key: &str, touch: Option<u32>) -> Result<Option<Fetched>, HandleError> {
        let mut opts = GetOptions::new().cas(true).flags(true);
        if let Some(exptime) = touch {
            opts = opts.touch(exptime);
        }
        let item = Client::get(self, key, opts).await.map_err(map_err)?;
        Ok(item.map(|item| Fetched {
            value: Vec::from(item.value),
            cas: item.cas,
            flags: item.flags.unwrap_or(0),
        }))
    }

    async fn write(
        &self,
        key: &str,
        value: &[u8],
        flags: u32,
        exptime: u32,
        mode: WriteMode,
    ) -> Result<WriteOutcome, HandleError> {
        let opts = SetOptions::new().ttl(exptime).flags(flags);
        let opts = match mode {
            WriteMode::Add => opts.mode(SetMode::Add),
            WriteMode::Replace => opts.mode(SetMode::Replace),
            WriteMode::Cas(cas) => opts.cas(Some(cas)),
        };
        let status = self.set(key, value, opts).await.map_err(map_err)?;
        Ok(match status {
            StoreStatus::Stored { cas } => WriteOutcome::Stored { cas },
            StoreStatus::NotStored => WriteOutcome::NotStored,
            StoreStatus::Exists => WriteOutcome::Exists,
            StoreStatus::NotFound => WriteOutcome::NotFound,
            other => {
                return Err(HandleError::Other(
                    format!("unexpected store status {other:?}").into(),
                ))
            }
        })
    }

    async fn delete(&self, key: &str) -> Result<bool, HandleError> {
        let status = Client::delete(self, key, None).await.map_err(map_err)?;
        Ok(matches!(status, DeleteStatus::Deleted))
    }

    /// `md <key> C<cas>`. Servers configured with the text protocol (twemproxy) have no
    /// compare-and-delete: [`HandleError::Unsupported`], before anything is sent.
    async fn delete_if(&self, key: &str, cas: u64) -> Result<DeleteIfOutcome, HandleError> {
        let status = Client::delete(self, key, Some(cas))
            .await
            .map_err(map_err)?;
        Ok(match status {
            DeleteStatus::Deleted => DeleteIfOutcome::Deleted,
            DeleteStatus::Exists => DeleteIfOutcome::Changed,
            DeleteStatus::NotFound => DeleteIfOutcome::NotFound,
            other => {
                return Err(HandleError::Other(
                    format!("unexpected delete status {other:?}").into(),
                ))
            }
        })
    }

    async fn touch(&self, key: &str, exptime: u32) -> Result<bool, HandleError> {
        Client::touch(self, key, exptime).await.map_err(map_err)
    }

    async fn server_info(&self) -> Result<ServerInfo, HandleError> {
        let version = self.version().await.map_err(map_err)?;
        let item_size_max = Client::item_size_max(self).await.map_err(map_err)?;
        Ok(ServerInfo {
            version,
            item_size_max: Some(item_size_max),
        })
    }

    async fn list_keys(&self) -> Result<Vec<ListedKey>, HandleError> {
        let dump = self.metadump().await.map_err(map_err)?;
        if !dump.skipped.is_empty() {
            tracing::warn!(
                skipped = dump.skipped.len(),
                "lru_crawler metadump: some lines could not be parsed and were skipped"
            );
        }
        Ok(dump
            .entries
            .into_iter()
            .filter_map(|e| {
                Some(ListedKey {
                    key: String::from_utf8(e.key).ok()?,
                    exp: e.exp,
                    last_access: Some(e.last_access),
                    size: Some(e.size),
                })
            })
            .collect())
    }
}
