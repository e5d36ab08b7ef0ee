//! The cgi-session demo web app: the Perl driver's `greet_en` example in a browser, with a visit
//! counter, login/logout (with session id regeneration) and the session's metadata, on the
//! embedded default store (files in a temporary directory) or on memcached.
//!
//! Run it with `cargo run -p cgi-session-demo` and open the address it prints. The same app is
//! available as a library so that tests (and benchmarks) run it in-process:
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use cgi_session::{MemoryDriver, SessionStore};
//! use tower::ServiceExt;
//!
//! let store = SessionStore::builder(MemoryDriver::new()).default_expire(1800).build();
//! let app = cgi_session_demo::app(store);
//! let response = app
//!     .oneshot(http::Request::get("/").body(axum::body::Body::empty()).unwrap())
//!     .await
//!     .unwrap();
//! assert_eq!(response.status(), 200);
//! // An anonymous view: nothing stored, no cookie.
//! assert!(!response.headers().contains_key("set-cookie"));
//! # });
//! ```
//!
//! Routes:
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the page: `greet_en` and a form to set it, the visit counter (one more per view of a stored session), login/logout, the session's metadata (id prefix only, ctime, atime, expiry) |
//! | `POST /greet` | sets `greet_en` (form field `greet_en`) |
//! | `POST /login` | regenerates the id, then stores `user` (form field `username`) |
//! | `POST /logout` | deletes the session |
//! | `GET /plain` | the same page shell without any session (a baseline for benchmarks) |
//! | `GET /api/session` | the session as JSON (`counter`, `user`, `greet_en`, `id_prefix`, ...), read-only |
//! | `GET /hold?ms=N` | uses the session, then waits N ms (at most 10 minutes) before answering: shows how a session lock (`--lock every-request`) serializes the requests of one session |
//! | `GET /metrics` | the session store's metrics in Prometheus's text format (recorded by the binary; 404 when the app runs as a library without a recorder) |
//!
//! The visit counter is a read-modify-write ([`SessionHandle::update`]): several views sent at
//! once with one cookie (what a browser does) are each counted exactly once.
//!
//! A session is stored only when it holds something worth keeping: an anonymous view (no
//! session yet) stores nothing and sends no cookie, so bots and one-off visitors cannot fill
//! the store. The visitor gets a session by acting (`POST /greet`, `POST /login`); from then
//! on its page views are counted ([`SessionHandle::is_stored`]).
#![forbid(unsafe_code)]

mod html;
pub mod metrics;
mod options;
mod server;

use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use cgi_session::SessionStore;
use cgi_session_tower::{SessionError, SessionHandle, SessionLayer};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

pub use options::{open_store, run, Args, DemoError, OpenedStore};
pub use server::{
    default_max_connections, open_file_limit, serve_with, ServerLimits, FALLBACK_MAX_CONNECTIONS,
};

/// Longest `greet_en` and user name accepted, in characters.
pub const MAX_FIELD_CHARS: usize = 200;

/// The demo app over `store`, with the default [`SessionLayer`] (cookie `CGISESSID`,
/// `HttpOnly; SameSite=Lax`).
pub fn app(store: SessionStore) -> Router {
    app_with_layer(SessionLayer::new(store))
}

/// The demo app with a configured layer (e.g. signed or `Secure` cookies).
///
/// ```
/// use cgi_session::{MemoryDriver, SessionStore};
/// use cgi_session_tower::{Key, SessionLayer};
///
/// let store = SessionStore::builder(MemoryDriver::new()).build();
/// let app = cgi_session_demo::app_with_layer(SessionLayer::new(store).signed(Key::generate()));
/// # let _ = app;
/// ```
pub fn app_with_layer(layer: SessionLayer) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/greet", post(set_greeting))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/api/session", get(api_session))
        .route("/plain", get(plain))
        .route("/hold", get(hold))
        .route("/metrics", get(metrics::metrics))
        .layer(layer)
}

/// Serves `app` on `listener` until `shutdown` completes, giving handlers the client address
/// (for the store's ip matching), under the default [`ServerLimits`] (header, body and idle
/// timeouts, a connection limit, a shutdown deadline). [`serve_with`] takes other limits.
///
/// # Errors
/// Not in practice: failed accepts are logged and retried.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, app, ServerLimits::default(), shutdown).await
}

/// What `GET /api/session` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// Page views counted in this session (`visits`).
    pub counter: u64,
    /// The logged-in user.
    pub user: Option<String>,
    /// The Perl driver's example parameter `greet_en`.
    pub greet_en: Option<String>,
    /// The first 8 characters of the id followed by `…`; `None` before anything was stored.
    pub id_prefix: Option<String>,
    /// Creation time, Unix seconds.
    pub ctime: i64,
    /// Last access time, Unix seconds.
    pub atime: i64,
    /// Idle timeout in seconds.
    pub expire: Option<i64>,
    /// The client address the session was created from (CGI::Session's `remote_addr`): behind
    /// a trusted proxy (`--trusted-proxies`), the address it forwarded. `None` before anything
    /// was stored.
    #[serde(default)]
    pub remote_addr: Option<String>,
}

async fn info(session: &SessionHandle) -> Result<SessionInfo, SessionError> {
    let s = session.guard().await?;
    let get_string = |name: &str| s.get::<String>(name).ok().flatten();
    Ok(SessionInfo {
        counter: s.get::<u64>("visits").ok().flatten().unwrap_or(0),
        user: get_string("user"),
        greet_en: get_string("greet_en"),
        id_prefix: if s.is_new() {
            None
        } else {
            s.id().map(|id| id.redacted())
        },
        ctime: s.ctime(),
        atime: s.atime(),
        expire: s.expire(),
        remote_addr: if s.is_new() {
            None
        } else {
            s.remote_addr().map(str::to_owned)
        },
    })
}

async fn home(session: SessionHandle) -> Result<Html<String>, SessionError> {
    // Nothing is stored for an anonymous view: visits are counted only in a session the
    // visitor made by acting (setting greet_en, logging in). The layer drops the new session
    // of a view that changed nothing: no store write, no cookie.
    let stored = session.is_stored().await?;
    let expired = session.guard().await?.is_expired();
    let visits = if stored {
        // Read-modify-write on the freshest copy: concurrent views each count once.
        Some(
            session
                .update(|s| {
                    let n = s.get::<u64>("visits")?.unwrap_or(0) + 1;
                    s.set("visits", &n)?;
                    Ok(n)
                })
                .await?,
        )
    } else {
        None
    };
    let mut info = info(&session).await?;
    if let Some(visits) = visits {
        // This view's own count (the session may already hold later views' counts).
        info.counter = visits;
    }
    Ok(Html(html::home(&info, expired)))
}

async fn api_session(session: SessionHandle) -> Result<Json<SessionInfo>, SessionError> {
    Ok(Json(info(&session).await?))
}

/// `/hold`'s query.
#[derive(Debug, Deserialize)]
struct HoldQuery {
    #[serde(default)]
    ms: u64,
}

/// Longest `/hold` wait.
const MAX_HOLD_MS: u64 = 600_000;

async fn hold(
    session: SessionHandle,
    axum::extract::Query(q): axum::extract::Query<HoldQuery>,
) -> Result<String, SessionError> {
    // Under `--lock every-request` this takes the session lock, held until the answer.
    let prefix = session.id_prefix().await?;
    tokio::time::sleep(std::time::Duration::from_millis(q.ms.min(MAX_HOLD_MS))).await;
    Ok(format!(
        "held session {prefix} for {} ms\n",
        q.ms.min(MAX_HOLD_MS)
    ))
}

async fn plain() -> Html<String> {
    Html(html::plain())
}

/// The `/greet` form.
#[derive(Debug, Deserialize)]
struct GreetForm {
    greet_en: String,
}

async fn set_greeting(session: SessionHandle, Form(form): Form<GreetForm>) -> Response {
    let greeting = clip(form.greet_en.trim());
    let result = if greeting.is_empty() {
        session.remove("greet_en").await.map(|_| ())
    } else {
        session.set("greet_en", &greeting).await
    };
    match result {
        Ok(()) => Redirect::to("/").into_response(),
        Err(e) => e.into_response(),
    }
}

/// The `/login` form.
#[derive(Debug, Deserialize)]
struct LoginForm {
    username: String,
}

async fn login(session: SessionHandle, Form(form): Form<LoginForm>) -> Response {
    let user = clip(form.username.trim());
    if user.is_empty() {
        return Redirect::to("/").into_response();
    }
    let result = async {
        // A new id at login, against session fixation; the data moves with it.
        session.regenerate_id().await?;
        session.set("user", &user).await
    }
    .await;
    match result {
        Ok(()) => Redirect::to("/").into_response(),
        Err(e) => e.into_response(),
    }
}

async fn logout(session: SessionHandle) -> Response {
    match session.delete().await {
        Ok(()) => Redirect::to("/").into_response(),
        Err(e) => e.into_response(),
    }
}

fn clip(s: &str) -> String {
    s.chars().take(MAX_FIELD_CHARS).collect()
}
