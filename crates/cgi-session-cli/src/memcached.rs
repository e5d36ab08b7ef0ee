//! What only memcached has: each server's health and statistics, and where the copies of a
//! replicated session are. Every call this tool makes to single servers of a pool is here.

use std::collections::HashMap;
use std::sync::Arc;

use cgi_session::memcache::client::GetOptions;
use cgi_session::memcache::{decode_replica, HealthReport, ReplicatedHandle};
use cgi_session::{Driver, OpenedMemcache, SessionId, StoreSpec};

use crate::cli::CliError;
use crate::util;

/// The driver's health check (version, item size limit, a set/get/delete probe) on `server`
/// alone.
pub(crate) async fn check(spec: &StoreSpec, server: &str) -> Result<HealthReport, String> {
    let one = spec.clone().servers([server]);
    let (client, _) = one.connect().await.map_err(|e| e.to_string())?;
    let driver = one.memcache_driver(client).map_err(|e| e.to_string())?;
    driver.check().await.map_err(|e| e.to_string())
}

/// `stats` of `server` alone.
pub(crate) async fn stats(
    spec: &StoreSpec,
    server: &str,
) -> Result<HashMap<String, String>, String> {
    let (client, _) = spec
        .clone()
        .servers([server])
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    client.stats().await.map_err(|e| e.to_string())
}

/// The copies of a replicated session: how many the servers hold, where, and the driver that
/// reads and removes all of them.
pub(crate) struct Replicas {
    pub(crate) driver: Arc<dyn Driver>,
    pub(crate) copies: usize,
    pub(crate) servers: Vec<String>,
}

/// Whether session `id` is replicated (`--replicas`, or found in the replica envelope on a
/// server of the pool), and if so how. Without `--replicas`, every server is asked for the key
/// (read only); the number of copies is the fewest that, placed as the application's
/// `ReplicatedHandle` places them, cover every server that holds one.
pub(crate) async fn replicas(
    m: &OpenedMemcache,
    spec: &StoreSpec,
    id: &SessionId,
) -> Result<Option<Replicas>, CliError> {
    let Some(client) = &m.client else {
        return Ok(None);
    };
    let key = m.driver.key_for(id);
    let names = client.servers();
    let describe = |at: &[usize]| at.iter().map(|&i| names[i].clone()).collect::<Vec<_>>();
    if let Some(handle) = &m.replicated {
        let at = handle.servers_for(&key);
        return Ok(Some(Replicas {
            driver: Arc::new(m.driver.clone()),
            copies: at.len(),
            servers: describe(&at),
        }));
    }
    let mut holders = Vec::new();
    let mut enveloped = false;
    for (server, name) in names.iter().enumerate() {
        let read = match client.server(server) {
            Ok(one) => one.get(&key, GetOptions::new()).await,
            Err(e) => Err(e),
        };
        match read {
            Ok(Some(item)) => {
                enveloped |= decode_replica(&item.value).is_some();
                holders.push(server);
            }
            Ok(None) => {}
            // A server that is down holds no copy we could read or remove now; the
            // application's next read repairs it from the others.
            Err(e) if e.is_unavailable() => {
                eprintln!(
                    "warning: {} did not answer: {}",
                    util::escape(name),
                    util::escape_message(&e.to_string())
                );
            }
            Err(e) => return Err(CliError::failed(e)),
        }
    }
    if !enveloped {
        return Ok(None);
    }
    let copies = (1..=names.len())
        .find(|&k| {
            let at = client.placement(&key, k);
            holders.iter().all(|h| at.contains(h))
        })
        .unwrap_or(names.len());
    let handle = ReplicatedHandle::new(client.clone(), copies.saturating_sub(1));
    let driver = spec
        .memcache_driver(handle.clone())
        .map_err(crate::store::open_error)?;
    Ok(Some(Replicas {
        driver: Arc::new(driver),
        copies,
        servers: describe(&handle.servers_for(&key)),
    }))
}
