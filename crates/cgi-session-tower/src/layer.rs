//! [`SessionLayer`] and its [`SessionService`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use cgi_session_core::client_addr::TrustedProxies;
use cgi_session_core::cookie::SigningKeys;
use cgi_session_core::web::{Claim, Outcome, RequestSession, StoreLogs};
use cgi_session_core::{LockMode, SessionStore};
use cookie::{Cookie, Key};
use http::header::{COOKIE, SET_COOKIE};
use http::{HeaderMap, HeaderValue, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::error::{AnsweredWith, SessionError};
use crate::handle::SessionHandle;

#[derive(Debug, Clone)]
struct Config {
    store: SessionStore,
    keys: Option<SigningKeys>,
    lock_mode: Option<LockMode>,
    logs: Arc<StoreLogs>,
    proxies: TrustedProxies,
}

/// The tower [`Layer`] that gives every request a lazily loaded [`SessionHandle`] and saves
/// the session after the inner service answers.
///
/// Per request:
///
/// 1. The id is read from the session cookie (verified first when cookies are signed: a
///    tampered or unsigned value counts as no id) with the `Cookie` parser every adapter
///    shares ([`cgi_session_core::cookie_header`]: raw bytes, so a non-UTF-8 byte in another
///    cookie hides nothing; several `Cookie` headers; the first session cookie counts, as in
///    CGI.pm), and, with the `connect-info` feature (on by default), the client address from
///    axum's `ConnectInfo<SocketAddr>` when present, or behind
///    [trusted proxies](SessionLayer::trusted_proxies) the address they forwarded (for the
///    store's ip matching, and as [`ClientAddr`](crate::ClientAddr) for logs). No store I/O
///    yet.
/// 2. The handler's first use of the [`SessionHandle`] loads the session
///    (`CGI::Session->new`: the stored session, or a new one with a fresh id).
/// 3. After the handler: nothing happens if the session was never used. Otherwise a deleted
///    session is removed (removal cookie), a new session that was not changed is dropped
///    (nothing stored, no cookie), and a changed session is flushed. The cookie is sent when
///    the client does not have the session's id yet, and refreshed on every use when the
///    session has an idle timeout (so that its `Max-Age` slides with it).
/// 4. A store that cannot be reached (while loading or saving) turns the response into a 503
///    with the cause logged; a session that stays busy past its deadline (its lock held, or
///    other processes writing it) into a 503 with `Retry-After`; other store failures into a
///    500. Every error response has a short text body. A session deleted meanwhile by
///    another request ([`cgi_session_core::Error::Gone`]) is not brought back: the response
///    stands and the cookie is removed.
/// 5. With a session lock ([`SessionLayer::lock_mode`]), the lock is released once the session
///    is saved (or, for a cancelled request, by a background task).
///
/// Requests of one session sent at once all succeed: their saves are combined in order into
/// one write (changes to different parameters are all kept; for one parameter the last write
/// wins). For a value computed from its old value, use [`SessionHandle::update`].
///
/// The cookie is configured in one place, the store's [`CookieConfig`] (name, `Secure`,
/// `SameSite`, `Domain`...); the layer only adds its signature:
///
/// ```
/// use cgi_session_core::{CookieConfig, MemoryDriver, SessionStore};
/// use cgi_session_tower::{Key, SessionLayer};
///
/// let store = SessionStore::builder(MemoryDriver::new())
///     .default_expire(1800)
///     .cookie(CookieConfig { name: "MYSESSID".into(), secure: true, ..CookieConfig::default() })
///     .build();
/// let layer = SessionLayer::new(store).signed(Key::generate());
/// # let _ = layer;
/// ```
///
/// [`CookieConfig`]: cgi_session_core::CookieConfig
#[derive(Debug, Clone)]
#[must_use]
pub struct SessionLayer {
    config: Config,
}

impl SessionLayer {
    /// A layer over `store`; the cookie is the store's: named after its
    /// [`cookie_name`](SessionStore::cookie_name) (`CGISESSID` by default), with the
    /// attributes of its [`CookieConfig`](cgi_session_core::CookieConfig) (`HttpOnly`,
    /// `SameSite=Lax`, `Path=/` by default; `Secure` off unless set: turn it on wherever the
    /// site is served over HTTPS).
    pub fn new(store: SessionStore) -> Self {
        Self {
            config: Config {
                store,
                keys: None,
                lock_mode: None,
                logs: Arc::default(),
                proxies: TrustedProxies::none(),
            },
        }
    }

    /// Signs the cookie with `key` (the `cookie` crate's signed jar, HMAC-SHA256): a cookie
    /// whose value was altered, or that was not signed with this key, is treated as no cookie
    /// (a fresh session), and logged at debug level. Keep the key secret and stable across
    /// restarts ([`Key::from`] a 64-byte random secret kept outside the code). The same as
    /// [`SessionLayer::signing_keys`] with one key.
    pub fn signed(self, key: Key) -> Self {
        self.signing_keys(SigningKeys::new(key))
    }

    /// Signs the cookie with the newest of `keys` and accepts cookies signed with any of them
    /// (key rotation): a cookie signed with an older key is accepted and sent again signed
    /// with the newest; one signed with a key no longer in the set counts as no cookie.
    ///
    /// ```
    /// use cgi_session_core::{MemoryDriver, SessionStore};
    /// use cgi_session_tower::{Key, SessionLayer, SigningKeys};
    ///
    /// # let (new_secret, old_secret) = (Key::generate(), Key::generate());
    /// let store = SessionStore::builder(MemoryDriver::new()).build();
    /// let layer = SessionLayer::new(store)
    ///     .signing_keys(SigningKeys::new(new_secret).previous(old_secret));
    /// # let _ = layer;
    /// ```
    pub fn signing_keys(mut self, keys: SigningKeys) -> Self {
        self.config.keys = Some(keys);
        self
    }

    /// When requests take the session lock; default: the store's
    /// [`lock_mode`](SessionStore::lock_mode) ([`LockMode::Off`] unless configured).
    /// `EveryRequest` locks each request that uses the session, from its first use until the
    /// session is saved (PHP's way); `OnDemand` only when the handler calls
    /// [`SessionHandle::lock`].
    pub fn lock_mode(mut self, mode: LockMode) -> Self {
        self.config.lock_mode = Some(mode);
        self
    }

    /// Believes the forwarding header (`X-Forwarded-For` unless
    /// [`TrustedProxies::header`] says `Forwarded`) on connections from these reverse proxies:
    /// the client address used for ip matching, and recorded as [`ClientAddr`] in the
    /// request's extensions for logs, is then the rightmost untrusted address the proxies
    /// forwarded ([`TrustedProxies::client_addr`]). Default: none (the header is ignored and
    /// the client address is the connection's). Needs the `connect-info` feature.
    ///
    /// ```
    /// use cgi_session_core::{MemoryDriver, SessionStore};
    /// use cgi_session_tower::{SessionLayer, TrustedProxies};
    ///
    /// let store = SessionStore::builder(MemoryDriver::new()).ip_match(true).build();
    /// // nginx on the same host: trust loopback only.
    /// let layer = SessionLayer::new(store).trusted_proxies(TrustedProxies::parse("127.0.0.1, ::1")?);
    /// # let _ = layer;
    /// # Ok::<(), cgi_session_core::client_addr::ProxyListError>(())
    /// ```
    ///
    /// [`ClientAddr`]: crate::ClientAddr
    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.config.proxies = proxies;
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
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<String> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let config = Arc::clone(&self.config);
        let claim = claimed_id(req.headers(), &config);
        let mut session = RequestSession::new(
            config.store.clone(),
            claim.id,
            claim.sent,
            None,
            config.lock_mode.unwrap_or_else(|| config.store.lock_mode()),
            Arc::clone(&config.logs),
        );
        // Written out only if the handler uses the session.
        if let Some(ip) = crate::client_addr::resolve(&mut req, &config.proxies) {
            session = session.client_ip(ip);
        }
        let shared = Arc::new(session);
        req.extensions_mut()
            .insert(SessionHandle(Arc::clone(&shared)));
        // The service that was polled ready makes the handler's future now: nothing to clone,
        // and neither it nor the request is moved into the boxed future below.
        let handled = self.inner.call(req);
        Box::pin(async move {
            let mut response = handled.await?;
            finish(&config, &shared, claim.resign, &mut response).await;
            Ok(response)
        })
    }
}

/// What the request's cookie claims ([`Claim::from_cookie_headers`]).
fn claimed_id(headers: &HeaderMap, config: &Config) -> Claim {
    let cookies = headers
        .get_all(COOKIE)
        .into_iter()
        .map(HeaderValue::as_bytes);
    Claim::from_cookie_headers(cookies, &config.store, config.keys.as_ref())
}

/// After the handler: logs the session error the handler answered with (unless it is the
/// store failure logged when it happened), then saves and sets or removes the cookie, or
/// answers 503/500 ([`RequestSession::finish`]).
async fn finish<B: From<String>>(
    config: &Config,
    shared: &RequestSession,
    resign: bool,
    response: &mut Response<B>,
) {
    if let Some(AnsweredWith(error)) = response.extensions_mut().remove::<AnsweredWith>() {
        // The handler answered with a session error: its details go to the log, the client
        // got only words.
        if shared.answer_needs_log(error.shared().as_ref()).await {
            error.log_as_answer();
        }
    }
    match shared.finish(config.keys.as_ref(), resign).await {
        Outcome::Cookie(Some(cookie)) => append_cookie(response, &cookie),
        Outcome::Cookie(None) => {}
        Outcome::Error(e) => replace_with_error(response, &SessionError::from(e)),
    }
}

/// Replaces the handler's response with the error's text response (status, `Retry-After`
/// where it applies, a short body), unless it already is a server error (e.g. the handler
/// returned [`SessionError`]'s own response).
fn replace_with_error<B: From<String>>(response: &mut Response<B>, error: &SessionError) {
    if response.status().is_server_error() {
        return;
    }
    let (status, headers, body) = error.response_parts();
    let mut replacement = Response::new(B::from(body.to_owned()));
    *replacement.status_mut() = status;
    *replacement.headers_mut() = headers;
    *response = replacement;
}

fn append_cookie<B>(response: &mut Response<B>, cookie: &Cookie<'static>) {
    // Written directly (not through `Display`), and its buffer becomes the header value.
    match HeaderValue::try_from(cgi_session_core::cookie::set_cookie_value(cookie)) {
        Ok(value) => {
            response.headers_mut().append(SET_COOKIE, value);
        }
        Err(_) => {
            tracing::error!("session cookie is not a valid header value (check the cookie name and domain); not sent");
        }
    }
}
