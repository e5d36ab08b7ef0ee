//! Opening the memcached store: the bundled client, connected on this crate's runtime (feature
//! `memcache`, on by default). Nothing else of the crate builds memcached clients.

pub use cgi_session::memcache::client::{Client, ClientConfig};

use crate::error::CgiError;
use crate::log;
use crate::runtime::block_on;

/// Connects the bundled memcached client on this crate's runtime: the Perl driver's
/// `Cache::Memcached->new(...)`, except that a dead server is an error here (unless the
/// config is [`lazy`](ClientConfig::lazy)).
///
/// ```no_run
/// use cgi_session_cgi::{connect_memcached, ClientConfig, DriverArgs};
/// let memd = connect_memcached(ClientConfig::new("127.0.0.1:11211"))?;
/// let args = DriverArgs::new().handle(memd);
/// # Ok::<(), cgi_session_cgi::CgiError>(())
/// ```
///
/// # Errors
/// [`CgiError::Memcached`] naming the server when it cannot be reached.
pub fn connect_memcached(config: ClientConfig) -> Result<Client, CgiError> {
    log::ensure_installed();
    Ok(block_on(Client::connect(config))??)
}
