//! The client's address: the layer works it out once per request, for the store's ip
//! matching and for the application's logs ([`ClientAddr`]).

use std::net::IpAddr;

use cgi_session_core::client_addr::TrustedProxies;
use http::Request;

/// The client's address as the layer worked it out: the connection's address (axum's
/// `ConnectInfo<SocketAddr>`, feature `connect-info`), or, when that is a trusted proxy
/// ([`SessionLayer::trusted_proxies`](crate::SessionLayer::trusted_proxies)), the address the
/// proxies forwarded ([`TrustedProxies::client_addr`]). The store's ip matching compares it;
/// the layer also puts it in the request's extensions for the application's logs (axum:
/// `Extension<ClientAddr>`).
///
/// A `ClientAddr` already in the extensions when the request reaches the layer (set by an
/// outer layer, e.g. without the `connect-info` feature) is used as it is.
///
/// ```
/// use axum::Extension;
/// use cgi_session_tower::ClientAddr;
///
/// async fn handler(client: Option<Extension<ClientAddr>>) -> String {
///     match client {
///         Some(Extension(ClientAddr(ip))) => format!("hello, {ip}"),
///         None => "hello, whoever you are".to_owned(),
///     }
/// }
/// # let _ = handler;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub IpAddr);

/// The request's client address (and records it as [`ClientAddr`] in its extensions).
pub(crate) fn resolve<B>(req: &mut Request<B>, proxies: &TrustedProxies) -> Option<IpAddr> {
    if let Some(ClientAddr(ip)) = req.extensions().get::<ClientAddr>() {
        return Some(*ip);
    }
    let client = from_connection(req, proxies)?;
    req.extensions_mut().insert(ClientAddr(client));
    Some(client)
}

/// From axum's `ConnectInfo<SocketAddr>` and, behind trusted proxies, the forwarding header.
#[cfg(feature = "connect-info")]
fn from_connection<B>(req: &Request<B>, proxies: &TrustedProxies) -> Option<IpAddr> {
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()?
        .0
        .ip()
        .to_canonical();
    if !proxies.trusts(peer) {
        // The header is read only from a trusted proxy ([`TrustedProxies::client_addr`]'s
        // rule): skip looking it up.
        return Some(peer);
    }
    let values = req
        .headers()
        .get_all(proxies.forwarded_header().name())
        .into_iter()
        .map(http::HeaderValue::as_bytes);
    Some(proxies.client_addr(peer, values))
}

/// Without the `connect-info` feature the layer knows no connection address.
#[cfg(not(feature = "connect-info"))]
fn from_connection<B>(_req: &Request<B>, _proxies: &TrustedProxies) -> Option<IpAddr> {
    None
}
