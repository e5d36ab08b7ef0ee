//! [`SessionLayer`] and its [`SessionService`].

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::ConnectInfo;
use cgi_session::{Session, SessionId, SessionStore};
use cookie::{Cookie, CookieJar, Key};
use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use tokio::sync::Mutex;
use tower_layer::Layer;
use tower_service::Service;

use crate::error::is_unavailable;
use crate::handle::{SessionHandle, Shared, State};

#[derive(Debug, Clone)]
struct Config {
    store: SessionStore,
    cookie_name: String,
    secure: Option<bool>,
    key: Option<Key>,
}

/// The tower [`Layer`] that gives every request a lazily loaded [`SessionHandle`] and saves
/// the session after the inner service answers.
///
/// Per request:
///
/// 1. The id is read from the session cookie (verified first when cookies are signed: a
///    tampered or unsigned value counts as no id) and the client address from axum's
///    [`ConnectInfo`] when present (for the store's ip matching). No store I/O yet.
/// 2. The handler's first use of the [`SessionHandle`] loads the session
///    (`CGI::Session->new`: the stored session, or a new one with a fresh id).
/// 3. After the handler: nothing happens if the session was never used. Otherwise a deleted
///    session is removed (removal cookie), a new session that was not changed is dropped
///    (nothing stored, no cookie), and a changed session is flushed. The cookie is sent when
///    the client does not have the session's id yet, and refreshed on every use when the
///    session has an idle timeout (so that its `Max-Age` slides with it).
/// 4. A store that cannot be reached (while loading or saving) turns the response into a 503
///    with the cause logged; other store failures into a 500. A session deleted meanwhile by
///    another request ([`cgi_session::Error::Gone`]) is not brought back: the response stands
///    and the cookie is removed.
///
/// ```
/// use cgi_session::{MemoryDriver, SessionStore};
/// use cgi_session_tower::{Key, SessionLayer};
///
/// let store = SessionStore::builder(MemoryDriver::new()).default_expire(1800).build();
/// let layer = SessionLayer::new(store)
///     .cookie_name("MYSESSID")
///     .secure(true)
///     .signed(Key::generate());
/// # let _ = layer;
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct SessionLayer {
    config: Config,
}

impl SessionLayer {
    /// A layer over `store`; the cookie is named after the store's
    /// [`cookie_name`](SessionStore::cookie_name) (`CGISESSID` by default) and takes its
    /// attributes from the store's [`CookieConfig`](cgi_session::CookieConfig) (`HttpOnly`,
    /// `SameSite=Lax`, `Path=/` by default).
    pub fn new(store: SessionStore) -> Self {
        let cookie_name = store.cookie_name().to_owned();
        Self {
            config: Config {
                store,
                cookie_name,
                secure: None,
                key: None,
            },
        }
    }

    /// The cookie name (CGI::Session's `name()`).
    pub fn cookie_name(mut self, name: impl Into<String>) -> Self {
        self.config.cookie_name = name.into();
        self
    }

    /// Whether the cookie carries `Secure` (only sent over HTTPS). Default: the store's
    /// [`CookieConfig::secure`](cgi_session::CookieConfig::secure), off unless set: turn it on
    /// wherever the site is served over HTTPS.
    pub fn secure(mut self, secure: bool) -> Self {
        self.config.secure = Some(secure);
        self
    }

    /// Signs the cookie with `key` (the `cookie` crate's signed jar, HMAC-SHA256): a cookie
    /// whose value was altered, or that was not signed with this key, is treated as no cookie
    /// (a fresh session), and logged at debug level. Keep the key secret and stable across
    /// restarts ([`Key::from`] a 64-byte random secret kept outside the code).
    pub fn signed(mut self, key: Key) -> Self {
        self.config.key = Some(key);
        self
    }

    /// The store.
    pub fn store(&self) -> &SessionStore {
        &self.config.store
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            config: Arc::new(self.config.clone()),
        }
    }
}

/// The service made by [`SessionLayer`].
#[derive(Debug, Clone)]
pub struct SessionService<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let config = Arc::clone(&self.config);
        let (claimed, cookie_sent) = claimed_id(req.headers(), &config);
        let remote_addr = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip().to_string());
        let shared = Arc::new(Shared {
            store: config.store.clone(),
            claimed,
            cookie_sent,
            remote_addr,
            state: Mutex::new(State::default()),
        });
        req.extensions_mut()
            .insert(SessionHandle(Arc::clone(&shared)));
        // The service that was polled ready handles this request (tower's clone-and-swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let mut response = inner.call(req).await?;
            finish(&config, &shared, &mut response).await;
            Ok(response)
        })
    }
}

/// The session id the request's cookie holds, and whether a session cookie was sent at all.
fn claimed_id(headers: &HeaderMap, config: &Config) -> (Option<String>, bool) {
    let mut sent = false;
    for header in headers.get_all(COOKIE) {
        let Ok(text) = header.to_str() else { continue };
        for cookie in Cookie::split_parse(text).flatten() {
            if cookie.name() != config.cookie_name {
                continue;
            }
            sent = true;
            let value = match &config.key {
                None => Some(cookie.value().to_owned()),
                Some(key) => {
                    let jar = CookieJar::new();
                    let verified = jar.signed(key).verify(cookie.into_owned());
                    if verified.is_none() {
                        tracing::debug!(
                            "session cookie failed signature verification; treating the request as having no session"
                        );
                    }
                    verified.map(|c| c.value().to_owned())
                }
            };
            if let Some(value) = value.filter(|v| SessionId::parse(v).is_ok()) {
                return (Some(value), true);
            }
        }
    }
    (None, sent)
}

/// After the handler: save if needed, set or remove the cookie, or answer 503/500.
async fn finish<B: Default>(config: &Config, shared: &Shared, response: &mut Response<B>) {
    let mut state = shared.state.lock().await;
    if let Some(failure) = state.failure.take() {
        if let Some(mut session) = state.session.take() {
            session.discard();
        }
        replace_with_error(response, failure.status());
        return;
    }
    // Never used by the handler: no I/O, no cookie.
    let Some(mut session) = state.session.take() else {
        return;
    };
    drop(state);

    let cookie = if session.is_deleted() {
        if let Err(e) = session.flush().await {
            if flush_failed(response, &mut session, e) {
                return;
            }
        }
        Some(removal_cookie(config))
    } else if session.is_new() && !session.is_modified() {
        // Used but not changed: nothing worth storing. A cookie naming a session that is gone
        // (expired, deleted, tampered with) is cleared so that the client stops sending it.
        session.discard();
        shared.cookie_sent.then(|| removal_cookie(config))
    } else {
        if session.needs_flush() {
            if let Err(e) = session.flush().await {
                if flush_failed(response, &mut session, e) {
                    return;
                }
                // The session is gone: drop the cookie.
                append_cookie(response, &removal_cookie(config));
                return;
            }
        }
        let id_is_new_to_client = session.id().map(SessionId::as_str) != shared.claimed.as_deref();
        let slides = session.expire().is_some_and(|e| e > 0);
        (id_is_new_to_client || slides)
            .then(|| session_cookie(config, &session))
            .flatten()
    };
    if let Some(cookie) = cookie {
        append_cookie(response, &cookie);
    }
}

/// Handles a failed flush. Returns true when the response was replaced (503/500); false when
/// the session was deleted meanwhile (the response stands).
fn flush_failed<B: Default>(
    response: &mut Response<B>,
    session: &mut Session,
    e: cgi_session::Error,
) -> bool {
    session.discard();
    match e {
        cgi_session::Error::Gone { .. } => {
            tracing::warn!(error = %e, "session changes not saved");
            false
        }
        e => {
            let status = if is_unavailable(&e) {
                tracing::error!(error = %e, "session store unavailable while saving the session; answering 503");
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                tracing::error!(error = %e, "session could not be saved; answering 500");
                StatusCode::INTERNAL_SERVER_ERROR
            };
            replace_with_error(response, status);
            true
        }
    }
}

/// Replaces the handler's response with an empty-bodied error, unless it already is a server
/// error (e.g. the handler returned [`SessionError`]'s own 503).
fn replace_with_error<B: Default>(response: &mut Response<B>, status: StatusCode) {
    if response.status().is_server_error() {
        return;
    }
    let mut error = Response::new(B::default());
    *error.status_mut() = status;
    error.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    *response = error;
}

/// The cookie carrying the session's id, with the layer's name, `Secure` and signature.
fn session_cookie(config: &Config, session: &Session) -> Option<Cookie<'static>> {
    let mut cookie = session.cookie()?;
    cookie.set_name(config.cookie_name.clone());
    if let Some(secure) = config.secure {
        cookie.set_secure(secure);
    }
    match &config.key {
        None => Some(cookie),
        Some(key) => {
            let mut jar = CookieJar::new();
            jar.signed_mut(key).add(cookie);
            jar.get(&config.cookie_name).cloned()
        }
    }
}

/// A cookie telling the client to forget the session cookie.
fn removal_cookie(config: &Config) -> Cookie<'static> {
    let cfg = config.store.cookie_config();
    let mut cookie = Cookie::build((config.cookie_name.clone(), ""))
        .path(cfg.path.clone())
        .http_only(cfg.http_only)
        .secure(config.secure.unwrap_or(cfg.secure));
    if let Some(same_site) = cfg.same_site {
        cookie = cookie.same_site(same_site);
    }
    if let Some(domain) = &cfg.domain {
        cookie = cookie.domain(domain.clone());
    }
    let mut cookie = cookie.build();
    cookie.make_removal();
    cookie
}

fn append_cookie<B>(response: &mut Response<B>, cookie: &Cookie<'static>) {
    match HeaderValue::from_str(&cookie.to_string()) {
        Ok(value) => {
            response.headers_mut().append(SET_COOKIE, value);
        }
        Err(_) => {
            tracing::error!("session cookie is not a valid header value (check the cookie name and domain); not sent");
        }
    }
}
