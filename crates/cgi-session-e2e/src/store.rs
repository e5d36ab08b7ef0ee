//! The Rust side of the cross-language tests: a real memcached, the bundled client connected
//! to it, and a session store over that client configured as a Rust service sharing sessions
//! with Perl configures it.

use cgi_session::memcache::client::{Client, ClientConfig};
use cgi_session::{builder_from_dsn, DriverArgs, SessionStore, SessionStoreBuilder};
use memcached_harness::MemcachedServer;

/// The bundled client connected to `server`; panics when it cannot connect.
pub async fn connect(server: &MemcachedServer) -> Client {
    Client::connect(ClientConfig::new(server.addr().to_string()))
        .await
        .unwrap_or_else(|e| panic!("cannot connect to memcached at {}: {e}", server.addr()))
}

/// The store a Rust service sharing sessions with Perl's `CGI::Session::Driver::memcache`
/// builds (the README's DSN): `driver:memcache;serializer:default` over `client`, keys
/// `sessions:<id>`, not hashed.
pub fn perl_sharing_store(client: &Client) -> SessionStoreBuilder {
    builder_from_dsn(
        "driver:memcache;serializer:default",
        &DriverArgs::new().handle(client.clone()),
    )
    .unwrap_or_else(|e| panic!("the Perl-sharing DSN opens: {e}"))
}

/// A memcached of its own, the bundled client connected to it, and a store over that client.
#[derive(Debug)]
pub struct SharedStore {
    /// The memcached, stopped when this is dropped.
    pub server: MemcachedServer,
    /// The bundled client, connected to `server`.
    pub client: Client,
    /// The Rust side's store over `client`.
    pub store: SessionStore,
}

impl SharedStore {
    /// Starts a memcached, connects the client and builds the store from `dsn` with the driver
    /// arguments `args` makes of the client (e.g. `|c| DriverArgs::new().handle(c)`).
    pub async fn start(dsn: &str, args: impl FnOnce(Client) -> DriverArgs) -> SharedStore {
        let server = MemcachedServer::start();
        let client = connect(&server).await;
        let store = builder_from_dsn(dsn, &args(client.clone()))
            .unwrap_or_else(|e| panic!("{dsn} opens: {e}"))
            .build();
        SharedStore {
            server,
            client,
            store,
        }
    }
}
