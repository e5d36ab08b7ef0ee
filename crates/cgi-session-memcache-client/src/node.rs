//! One server as the client sees it: its connections ([`ServerPool`]) and the protocol
//! dialect chosen for it once, at start-up. Every operation goes to the dialect's module
//! ([`crate::meta`] or [`crate::text`]); the administrative ones, the same in both, to
//! [`crate::admin`].

use std::collections::HashMap;

use crate::admin;
use crate::config::Protocol;
use crate::error::{Error, Result};
use crate::key::validate_key;
use crate::meta;
use crate::metadump::{self, Metadump};
use crate::options::{DeleteStatus, GetOptions, Item, SetOptions, StoreStatus};
use crate::pool::ServerPool;
use crate::text;

/// The protocol dialect spoken to one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// memcached's meta protocol ([`Protocol::Meta`]).
    Meta,
    /// The classic text protocol ([`Protocol::Text`]); `gat`: read-and-touch with
    /// `gat`/`gats` (else a read and a `touch`, pipelined).
    Text {
        /// Whether the server (or proxy) knows `gat`.
        gat: bool,
    },
}

impl Dialect {
    /// The dialect for `protocol`.
    pub(crate) fn new(protocol: Protocol, gat: bool) -> Dialect {
        match protocol {
            Protocol::Text => Dialect::Text { gat },
            _ => Dialect::Meta,
        }
    }
}

/// One server: its connections and its dialect. Every key is validated here, once, before
/// anything is encoded. The text dialect's futures (twemproxy; a read and a touch joined)
/// are boxed, so that they do not make every meta request's future larger.
pub(crate) struct Node {
    pub(crate) pool: ServerPool,
    pub(crate) dialect: Dialect,
}

impl Node {
    pub(crate) fn server(&self) -> &str {
        self.pool.server()
    }

    pub(crate) async fn get(&self, key: &[u8], opts: GetOptions) -> Result<Option<Item>> {
        validate_key(key)?;
        match self.dialect {
            Dialect::Meta => meta::get(&self.pool, key, opts).await,
            Dialect::Text { gat } => Box::pin(text::get(&self.pool, key, opts, gat)).await,
        }
    }

    pub(crate) async fn set(
        &self,
        key: &[u8],
        value: &[u8],
        opts: SetOptions,
    ) -> Result<StoreStatus> {
        validate_key(key)?;
        let max = self.pool.settings().max_value_size;
        if value.len() > max {
            return Err(Error::ValueTooLarge {
                len: value.len(),
                max,
            });
        }
        match self.dialect {
            Dialect::Meta => meta::set(&self.pool, key, value, opts).await,
            Dialect::Text { .. } => Box::pin(text::set(&self.pool, key, value, opts)).await,
        }
    }

    pub(crate) async fn delete(&self, key: &[u8], cas: Option<u64>) -> Result<DeleteStatus> {
        validate_key(key)?;
        match self.dialect {
            Dialect::Meta => meta::delete(&self.pool, key, cas).await,
            Dialect::Text { .. } => Box::pin(text::delete(&self.pool, key, cas)).await,
        }
    }

    pub(crate) async fn touch(&self, key: &[u8], exptime: u32) -> Result<bool> {
        validate_key(key)?;
        match self.dialect {
            Dialect::Meta => meta::touch(&self.pool, key, exptime).await,
            Dialect::Text { .. } => Box::pin(text::touch(&self.pool, key, exptime)).await,
        }
    }

    pub(crate) async fn noop(&self) -> Result<()> {
        match self.dialect {
            Dialect::Meta => meta::noop(&self.pool).await,
            Dialect::Text { .. } => text::noop(&self.pool).await,
        }
    }

    pub(crate) async fn metadump(&self) -> Result<Metadump> {
        match self.dialect {
            Dialect::Meta => metadump::read(&self.pool).await,
            Dialect::Text { .. } => Err(text::no_listing(&self.pool)),
        }
    }

    pub(crate) async fn version(&self) -> Result<String> {
        admin::version(&self.pool).await
    }

    pub(crate) async fn stats(&self, arg: Option<&str>) -> Result<HashMap<String, String>> {
        admin::stats(&self.pool, admin::stats_request(arg)?).await
    }

    pub(crate) async fn item_size_max(&self) -> Result<u64> {
        admin::item_size_max(&self.pool).await
    }
}
