//! An [actix-web] middleware and extractor for [cgi-session](cgi_session_core): CGI::Session's
//! per-request routine (`CGI::Session->new`, `param`, `flush`, `header`) done once, around
//! every handler, with the same semantics as the tower layer of `cgi-session-tower`.
//!
//! - **Lazy**: the session is loaded on the handler's first use of [`SessionHandle`]; a
//!   handler that never touches it costs no store I/O and sends no cookie.
//! - **Saved only if changed**: after the handler, a changed (or deleted, or regenerated)
//!   session is flushed; an untouched new session is dropped (no empty sessions for bots).
//! - **Cookie**: configured in one place, the store's
//!   [`CookieConfig`](cgi_session_core::CookieConfig): `CGISESSID`,
//!   `HttpOnly; SameSite=Lax; Path=/` by default, `Secure` one option away; the middleware
//!   only adds a signature ([`SessionMiddleware::signed`], with key rotation through
//!   [`SigningKeys`]). The cookie is set when the id is new to the client, refreshed (its
//!   `Max-Age`) when the session has an idle timeout, re-signed when an older key signed it,
//!   and removed after [`SessionHandle::delete`] or when the client sent an id that is no
//!   longer usable.
//! - **Store down is a 503**: when the store cannot be reached while loading or saving, the
//!   response is `503 Service Unavailable` with `Retry-After` and a plain-text body, and the
//!   cause is logged (never a silent new session, never a full id in the log).
//!
//! ```
//! # actix_web::rt::System::new().block_on(async {
//! use actix_web::{test, web, App};
//! use cgi_session_actix::{SessionError, SessionHandle, SessionMiddleware};
//! use cgi_session_core::{MemoryDriver, SessionStore};
//!
//! async fn greet(session: SessionHandle) -> Result<String, SessionError> {
//!     let before: Option<String> = session.get("greet_en").await?; // $s->param('greet_en')
//!     session.set("greet_en", "Hi !").await?;                      // $s->param('greet_en', 'Hi !')
//!     Ok(format!("greet_en was {before:?}"))
//! }
//!
//! let store = SessionStore::builder(MemoryDriver::new()).default_expire(1800).build();
//! let app = test::init_service(
//!     App::new()
//!         .wrap(SessionMiddleware::new(store))
//!         .route("/", web::get().to(greet)),
//! )
//! .await;
//! let response = test::call_service(&app, test::TestRequest::get().uri("/").to_request()).await;
//! let cookie = response.headers().get("set-cookie").unwrap().to_str().unwrap();
//! assert!(cookie.starts_with("CGISESSID="));
//! assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"));
//! # });
//! ```
//!
//! The session store is async (tokio): actix-web's workers run on tokio, so one store (and
//! one memcached client) can be shared by all workers: build it once and clone it into the
//! `HttpServer::new` closure.
//!
//! [actix-web]: https://docs.rs/actix-web
#![forbid(unsafe_code)]

mod error;
mod handle;
mod middleware;

pub use error::SessionError;
pub use handle::{SessionGuard, SessionHandle};
pub use middleware::{SessionMiddleware, SessionService};

/// Re-exported: the reverse proxies whose forwarding header is believed.
pub use cgi_session_core::client_addr::{ForwardedHeader, TrustedProxies};
/// The core's cookie signing keys (the newest signs, previous ones still verify), for
/// [`SessionMiddleware::signed`].
pub use cgi_session_core::cookie::SigningKeys;

/// The `cookie` crate's signing key, re-exported for [`SessionMiddleware::signed`].
pub use cgi_session_core::cookie::Key;
