//! [`SessionMiddleware`] and its [`SessionService`].

use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{forward_ready, Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{HeaderMap, HeaderValue, COOKIE, SET_COOKIE};
use actix_web::{HttpMessage, ResponseError};
use cgi_session_core::client_addr::TrustedProxies;
use cgi_session_core::cookie::SigningKeys;
use cgi_session_core::web::{Claim, Outcome, RequestSession, StoreLogs};
use cgi_session_core::{LockMode, SessionStore};
use cookie::Cookie;

use crate::error::SessionError;
use crate::handle::SessionHandle;

#[derive(Debug, Clone)]
struct Config {
    store: SessionStore,
    keys: Option<SigningKeys>,
    lock_mode: Option<LockMode>,
    proxies: TrustedProxies,
    logs: Arc<StoreLogs>,
}

/// The actix-web middleware that gives every request a lazily loaded [`SessionHandle`] and
/// saves the session after the handler answers: `App::new().wrap(SessionMiddleware::new(store))`.
///
/// Per request (the same steps as the tower layer of `cgi-session-tower`):
///
/// 1. The id is read from the session cookie (verified first when cookies are signed: a
///    tampered or unsigned value counts as no id) with the `Cookie` parser every adapter
///    shares ([`cgi_session_core::cookie_header`]: raw bytes, several `Cookie` headers, the
///    first session cookie counts, as in CGI.pm), and the client address from the connection
///    ([`ServiceRequest::peer_addr`], for the store's ip matching). No store I/O yet.
/// 2. The handler's first use of the [`SessionHandle`] loads the session
///    (`CGI::Session->new`: the stored session, or a new one with a fresh id).
/// 3. After the handler: nothing happens if the session was never used. Otherwise a deleted
///    session is removed (removal cookie), a new session that was not changed is dropped
///    (nothing stored, no cookie), and a changed session is flushed. The cookie is sent when
///    the client does not have the session's id yet, refreshed on every use when the session
///    has an idle timeout (so that its `Max-Age` slides with it), and sent again signed with
///    the newest key when the client's cookie was signed with a previous one.
/// 4. A store that cannot be reached (while loading or saving) turns the response into a 503
///    with `Retry-After` and the cause logged (at most once per 10 s for each kind of
///    failure); a session that stays busy past its deadline (its lock held, or other
///    processes writing it) into a 503 with `Retry-After`; other store failures into a 500.
///    Every error response has a short text body. A session deleted meanwhile by another
///    request ([`cgi_session_core::Error::Gone`]) is not brought back: the response stands
///    and the cookie is removed.
/// 5. With a session lock ([`SessionMiddleware::lock_mode`]), the lock is released once the
///    session is saved.
///
/// Requests of one session sent at once all succeed: their saves are combined in order into
/// one write (changes to different parameters are all kept; for one parameter the last write
/// wins). For a value computed from its old value, use [`SessionHandle::update`].
///
/// The cookie is configured in one place, the store's [`CookieConfig`] (name, `Secure`,
/// `SameSite`, `Domain`...); the middleware only adds its signature:
///
/// ```
/// use cgi_session_actix::{Key, SessionMiddleware, SigningKeys};
/// use cgi_session_core::{CookieConfig, MemoryDriver, SessionStore};
///
/// let store = SessionStore::builder(MemoryDriver::new())
///     .default_expire(1800)
///     .cookie(CookieConfig { name: "MYSESSID".into(), secure: true, ..CookieConfig::default() })
///     .build();
/// // Key rotation: the new key signs; cookies signed with the old one are still accepted
/// // (and sent again signed with the new one).
/// let (new_key, old_key) = (Key::generate(), Key::generate());
/// let middleware = SessionMiddleware::new(store).signed(SigningKeys::new(new_key).previous(old_key));
/// let app = actix_web::App::new().wrap(middleware);
/// # let _ = app;
/// ```
///
/// [`CookieConfig`]: cgi_session_core::CookieConfig
#[derive(Debug, Clone)]
#[must_use]
pub struct SessionMiddleware {
    config: Config,
}

impl SessionMiddleware {
    /// A middleware over `store`; the cookie is the store's: named after its
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
                proxies: TrustedProxies::none(),
                logs: Arc::default(),
            },
        }
    }

    /// Signs the cookie (HMAC-SHA256) with the newest of `keys` (a [`Key`](crate::Key) or
    /// [`SigningKeys`] with previous keys for rotation): a cookie whose value was altered, or
    /// that no key signed, is treated as no cookie (a fresh session), and logged at debug
    /// level. A cookie signed with a previous key is accepted and sent again signed with the
    /// newest one by the next request that uses the session. Keep the keys secret and stable
    /// across restarts ([`Key::from`](crate::Key::from) a 64-byte random secret kept outside
    /// the code).
    pub fn signed(mut self, keys: impl Into<SigningKeys>) -> Self {
        self.config.keys = Some(keys.into());
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

    /// Believes the client address that these reverse proxies forward (in `X-Forwarded-For`
    /// or RFC 7239 `Forwarded`, as configured), for the store's ip matching: when the
    /// connection comes from a trusted proxy, the rightmost untrusted address of the header is
    /// the client's; from anyone else, the header is ignored. Default: none trusted, the
    /// connection's address is the client's.
    ///
    /// ```
    /// use cgi_session_actix::{SessionMiddleware, TrustedProxies};
    /// use cgi_session::{MemoryDriver, SessionStore};
    ///
    /// let store = SessionStore::builder(MemoryDriver::new()).ip_match(true).build();
    /// let middleware = SessionMiddleware::new(store)
    ///     .trusted_proxies(TrustedProxies::parse("127.0.0.1, 10.0.0.0/8").unwrap());
    /// # let _ = middleware;
    /// ```
    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.config.proxies = proxies;
        self
    }

    /// The store.
    pub fn store(&self) -> &SessionStore {
        &self.config.store
    }
}

impl<S, B> Transform<S, ServiceRequest> for SessionMiddleware
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = SessionService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(SessionService {
            inner: Rc::new(service),
            config: Arc::new(self.config.clone()),
        }))
    }
}

/// The service made by [`SessionMiddleware`] around the inner service.
#[derive(Debug)]
pub struct SessionService<S> {
    inner: Rc<S>,
    config: Arc<Config>,
}

type LocalBoxFuture<T> = Pin<Box<dyn Future<Output = T>>>;

impl<S, B> Service<ServiceRequest> for SessionService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<Result<Self::Response, Self::Error>>;

    forward_ready!(inner);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let config = Arc::clone(&self.config);
        let claim = claimed_id(req.headers(), &config);
        let remote_addr = req.peer_addr().map(|addr| {
            let values = req
                .headers()
                .get_all(config.proxies.forwarded_header().name())
                .map(actix_web::http::header::HeaderValue::as_bytes);
            config.proxies.client_addr(addr.ip(), values).to_string()
        });
        let shared = Arc::new(RequestSession::new(
            config.store.clone(),
            claim.id,
            claim.sent,
            remote_addr,
            config.lock_mode.unwrap_or_else(|| config.store.lock_mode()),
            Arc::clone(&config.logs),
        ));
        req.extensions_mut()
            .insert(SessionHandle(Arc::clone(&shared)));
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await?;
            Ok(finish(&config, &shared, claim.resign, response).await)
        })
    }
}

/// What the request's cookie claims ([`Claim::from_cookie_headers`]).
fn claimed_id(headers: &HeaderMap, config: &Config) -> Claim {
    let cookies = headers.get_all(COOKIE).map(HeaderValue::as_bytes);
    Claim::from_cookie_headers(cookies, &config.store, config.keys.as_ref())
}

/// After the handler: logs the session error the handler answered with (unless it is the
/// store failure logged when it happened, or the missing middleware, logged by the
/// extractor), then saves and sets or removes the cookie, or answers 503/500
/// ([`RequestSession::finish`]).
async fn finish<B>(
    config: &Config,
    shared: &RequestSession,
    resign: bool,
    mut response: ServiceResponse<B>,
) -> ServiceResponse<EitherBody<B>> {
    let answered_with = response
        .response()
        .error()
        .and_then(|e| e.as_error::<SessionError>())
        .cloned();
    if let Some(error) = answered_with {
        // The handler answered with a session error: its details go to the log, the client
        // got only words.
        if shared.answer_needs_log(error.shared().as_ref()).await {
            error.log_as_answer();
        }
    }
    match shared.finish(config.keys.as_ref(), resign).await {
        Outcome::Cookie(cookie) => {
            if let Some(cookie) = cookie {
                append_cookie(response.headers_mut(), &cookie);
            }
            response.map_into_left_body()
        }
        Outcome::Error(e) => replace_with_error(response, &SessionError::from(e)),
    }
}

/// Replaces the handler's response with the error's text response (status, `Retry-After`
/// where it applies, a short body), unless it already is a server error (e.g. the handler
/// returned [`SessionError`]'s own response).
fn replace_with_error<B>(
    response: ServiceResponse<B>,
    error: &SessionError,
) -> ServiceResponse<EitherBody<B>> {
    if response.status().is_server_error() {
        return response.map_into_left_body();
    }
    let (request, _) = response.into_parts();
    ServiceResponse::new(request, error.error_response()).map_into_right_body()
}

fn append_cookie(headers: &mut HeaderMap, cookie: &Cookie<'static>) {
    match HeaderValue::from_str(&cookie.to_string()) {
        Ok(value) => headers.append(SET_COOKIE, value),
        Err(_) => {
            tracing::error!("session cookie is not a valid header value (check the cookie name and domain); not sent");
        }
    }
}
