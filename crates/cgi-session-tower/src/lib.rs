//! A [tower] layer and an [axum] extractor for [cgi-session](cgi_session_core): CGI::Session's
//! per-request routine (`CGI::Session->new`, `param`, `flush`, `header`) done once, around
//! every handler.
//!
//! - **Lazy**: the session is loaded on the handler's first use of [`SessionHandle`]; a
//!   handler that never touches it costs no store I/O and sends no cookie.
//! - **Saved only if changed**: after the handler, a changed (or deleted, or regenerated)
//!   session is flushed; an untouched new session is dropped (no empty sessions for bots).
//!   For data worth keeping only once the visitor has a session (a view counter), write it
//!   only when [`SessionHandle::is_stored`]: an anonymous view then stores nothing.
//! - **Cookie**: configured in one place, the store's
//!   [`CookieConfig`](cgi_session_core::CookieConfig) (built by
//!   [`cgi_session_core::cookie`], as for CGI programs): `CGISESSID`,
//!   `HttpOnly; SameSite=Lax; Path=/` by default, `Secure` one option away; the layer only
//!   adds a signature, with the `cookie` crate's signed jar ([`SessionLayer::signed`], or
//!   [`SessionLayer::signing_keys`] for key rotation). The cookie is set when the id is new
//!   to the client, refreshed (its `Max-Age`) when the session has an idle timeout and a
//!   persistent cookie, sent again when the handler changed its expiry
//!   ([`cgi_session_core::Expiry`]) or an older key signed it, and removed after
//!   [`SessionHandle::delete`] or when the client sent an id that is no longer usable.
//! - **Store down is a 503**: when the store cannot be reached while loading or saving, the
//!   response is `503 Service Unavailable` and the cause is logged (never a silent new
//!   session, never a full id in the log).
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use axum::{routing::get, Router};
//! use cgi_session_core::{MemoryDriver, SessionStore};
//! use cgi_session_tower::{SessionHandle, SessionLayer};
//!
//! async fn greet(session: SessionHandle) -> Result<String, cgi_session_tower::SessionError> {
//!     let before: Option<String> = session.get("greet_en").await?; // $s->param('greet_en')
//!     session.set("greet_en", "Hi !").await?;                      // $s->param('greet_en', 'Hi !')
//!     Ok(format!("greet_en was {before:?}"))
//! }
//!
//! let store = SessionStore::builder(MemoryDriver::new()).default_expire(1800).build();
//! let app: Router = Router::new()
//!     .route("/", get(greet))
//!     .layer(SessionLayer::new(store));
//!
//! use tower::ServiceExt;
//! let response = app
//!     .oneshot(http::Request::get("/").body(axum::body::Body::empty()).unwrap())
//!     .await
//!     .unwrap();
//! let cookie = response.headers()["set-cookie"].to_str().unwrap();
//! assert!(cookie.starts_with("CGISESSID="));
//! assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"));
//! # });
//! ```
//!
//! The design follows tower-sessions' split (a store-agnostic layer, a lazily loaded session
//! shared with the handler through request extensions, signed cookies through the `cookie`
//! crate), on cgi-session's own engine.
//!
//! # Cargo features
//!
//! - `connect-info` (default): the client address for the store's ip matching
//!   ([`SessionStoreBuilder::ip_match`](cgi_session_core::SessionStoreBuilder::ip_match)) is
//!   read from axum's `ConnectInfo<SocketAddr>` (served with
//!   `into_make_service_with_connect_info`). It needs axum's `tokio` feature (hyper-util,
//!   hyper). Without it the layer depends on `axum-core`, `http` and tower's traits only, and
//!   ip matching sees no address (unless an outer layer puts a [`ClientAddr`] in the
//!   request's extensions). Behind a reverse proxy, list it with
//!   [`SessionLayer::trusted_proxies`]: the address it forwards is used instead.
//!
//! [tower]: https://docs.rs/tower
//! [axum]: https://docs.rs/axum
#![forbid(unsafe_code)]

mod client_addr;
mod error;
mod handle;
mod layer;

pub use cgi_session_core::client_addr::{ForwardedHeader, TrustedProxies};
pub use client_addr::ClientAddr;
pub use error::SessionError;
pub use handle::{SessionGuard, SessionHandle};
pub use layer::{SessionLayer, SessionService};

/// The `cookie` crate's signing key, re-exported for [`SessionLayer::signed`].
pub use cookie::Key;

/// Signing keys with rotation, re-exported for [`SessionLayer::signing_keys`].
pub use cgi_session_core::cookie::SigningKeys;
