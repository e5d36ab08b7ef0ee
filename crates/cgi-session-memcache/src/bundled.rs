//! [`MemcacheHandle`] for the bundled client: every operation is one meta-protocol round trip.

use async_trait::async_trait;
use cgi_session_core::{StoreMode, StoreOutcome};
use cgi_session_memcache_client::{
    Client, DeleteStatus, GetOptions, Item, MetadumpEntry, SetMode, SetOptions, StoreStatus,
};

use crate::handle::{DeleteIfOutcome, HandleError, ListedKey, MemcacheHandle, ServerInfo};

/// The client's options for a store in `mode`.
pub(crate) fn set_options(mode: StoreMode, flags: u32, exptime: u32) -> SetOptions {
    let opts = SetOptions::new().ttl(exptime).flags(flags);
    match mode {
        StoreMode::Create => opts.mode(SetMode::Add),
        StoreMode::Replace { expected: None } => opts.mode(SetMode::Replace),
        StoreMode::Replace {
            expected: Some(cas),
        } => opts.cas(Some(cas)),
    }
}

/// memcached's answer to a store in `mode`, in the session layer's words: "not stored" is
/// `Exists` for a create (`add`) and `NotFound` for a replace.
pub(crate) fn store_outcome(
    status: StoreStatus,
    mode: StoreMode,
) -> Result<StoreOutcome, HandleError> {
    Ok(match (status, mode) {
        (StoreStatus::Stored { cas }, _) => StoreOutcome::Stored(cas),
        (StoreStatus::NotStored | StoreStatus::Exists, StoreMode::Create) => StoreOutcome::Exists,
        (StoreStatus::NotStored | StoreStatus::NotFound, _) => StoreOutcome::NotFound,
        (StoreStatus::Exists, _) => StoreOutcome::Conflict,
        (other, _) => {
            return Err(HandleError::Other(
                format!("unexpected store status {other:?}").into(),
            ))
        }
    })
}

/// memcached's answer to a compare-and-delete.
pub(crate) fn delete_if_outcome(status: DeleteStatus) -> Result<DeleteIfOutcome, HandleError> {
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

/// A metadump line as a listed key (`None` for a key that is not UTF-8).
pub(crate) fn listed_key(entry: MetadumpEntry) -> Option<ListedKey> {
    Some(ListedKey {
        key: String::from_utf8(entry.key).ok()?,
        exp: entry.exp,
        last_access: Some(entry.last_access),
        size: Some(entry.size),
    })
}

#[async_trait]
impl MemcacheHandle for Client {
    fn describe(&self) -> String {
        format!("memcached {}", self.servers().join(", "))
    }

    /// `mg <key> v c f [T<exptime>]`: the client's item as it came off the wire.
    async fn get(&self, key: &str, touch: Option<u32>) -> Result<Option<Item>, HandleError> {
        let mut opts = GetOptions::new().cas(true).flags(true);
        if let Some(exptime) = touch {
            opts = opts.touch(exptime);
        }
        Ok(Client::get(self, key, opts).await?)
    }

    async fn write(
        &self,
        key: &str,
        value: &[u8],
        flags: u32,
        exptime: u32,
        mode: StoreMode,
    ) -> Result<StoreOutcome, HandleError> {
        let status = self
            .set(key, value, set_options(mode, flags, exptime))
            .await?;
        store_outcome(status, mode)
    }

    async fn delete(&self, key: &str) -> Result<bool, HandleError> {
        let status = Client::delete(self, key, None).await?;
        Ok(matches!(status, DeleteStatus::Deleted))
    }

    /// `md <key> C<cas>`. Servers configured with the text protocol (twemproxy) have no
    /// compare-and-delete: [`HandleError::Unsupported`], before anything is sent.
    async fn delete_if(&self, key: &str, cas: u64) -> Result<DeleteIfOutcome, HandleError> {
        delete_if_outcome(Client::delete(self, key, Some(cas)).await?)
    }

    async fn touch(&self, key: &str, exptime: u32) -> Result<bool, HandleError> {
        Ok(Client::touch(self, key, exptime).await?)
    }

    async fn server_info(&self) -> Result<ServerInfo, HandleError> {
        let version = self.version().await?;
        let item_size_max = Client::item_size_max(self).await?;
        Ok(ServerInfo {
            version,
            item_size_max: Some(item_size_max),
        })
    }

    async fn list_keys(&self) -> Result<Vec<ListedKey>, HandleError> {
        let dump = self.metadump().await?;
        if !dump.skipped.is_empty() {
            tracing::warn!(
                skipped = dump.skipped.len(),
                "lru_crawler metadump: some lines could not be parsed and were skipped"
            );
        }
        Ok(dump.entries.into_iter().filter_map(listed_key).collect())
    }
}
