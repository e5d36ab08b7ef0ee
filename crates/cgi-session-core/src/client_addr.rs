//! The client's address behind reverse proxies, shared by every adapter (the tower layer, the
//! CGI adapter), for ip matching and logs.
//!
//! Behind a reverse proxy the connection comes from the proxy, so ip matching would compare
//! the proxy's address. The proxy says who its client was in a header: `X-Forwarded-For`
//! (nginx's `$proxy_add_x_forwarded_for`, HAProxy's `option forwardfor`, most load balancers)
//! or `Forwarded` (RFC 7239). Any client can send those headers too, so they are believed only
//! when the connection comes from a **trusted proxy**, a list the operator configures
//! ([`TrustedProxies`]); with the empty list (the default) the headers are ignored and the
//! client address is the peer's.
//!
//! The rules ([`TrustedProxies::client_addr`]):
//!
//! * The peer (the connection's address) is not trusted: it is the client; headers ignored.
//! * Otherwise the header's entries are walked **from the right** (each proxy appends the
//!   address it received the request from): trusted entries are skipped, the first untrusted
//!   one is the client (the rightmost untrusted address: entries left of it were written by a
//!   host nobody vouches for). When every entry is trusted, the leftmost one is the client.
//! * Only one header is read, the one your proxies write ([`ForwardedHeader`]:
//!   `X-Forwarded-For` by default); the other is ignored, since a proxy passes unchanged
//!   whatever a client put in a header it does not write itself.
//! * Several header lines count as one list, in order. An entry may carry a port
//!   (`192.0.2.7:4711`, `[2001:db8::7]:4711`); IPv6 may be bracketed. IPv4-mapped IPv6
//!   addresses (`::ffff:192.0.2.7`, what a dual-stack socket reports) count as IPv4.
//! * An entry that is no address (`unknown`, an obfuscated identifier such as `_hidden`, a
//!   `Forwarded` element without `for=`, garbage) ends the walk: the client is then the last
//!   trusted hop, the proxy that wrote it (for the first entry, the peer). A `Forwarded` header
//!   that does not follow RFC 7239's grammar is ignored as a whole (the client is the peer).
//!   Nothing panics, whatever the bytes.
//!
//! ```
//! use std::net::IpAddr;
//! use cgi_session_core::client_addr::TrustedProxies;
//!
//! let proxies: TrustedProxies = "127.0.0.1, 10.0.0.0/8".parse()?;
//! let peer: IpAddr = "10.1.2.3".parse()?;
//! // A client claimed 198.51.100.1; the trusted proxy 10.1.2.3 appended the real address.
//! let xff = b"198.51.100.1, 203.0.113.9".as_slice();
//! assert_eq!(proxies.client_addr(peer, [xff]).to_string(), "203.0.113.9");
//! // From an untrusted peer the header is ignored.
//! let stranger: IpAddr = "203.0.113.66".parse()?;
//! assert_eq!(proxies.client_addr(stranger, [xff]), stranger);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// A trusted proxy list that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyListError {
    /// An entry is not an IP address or a CIDR block.
    #[error("trusted proxy {entry:?} is not an IP address or a CIDR block: write e.g. 127.0.0.1, 10.0.0.0/8, ::1 or fd00::/8")]
    BadEntry {
        /// The entry as given.
        entry: String,
    },
}

/// An IP network in CIDR notation (`10.0.0.0/8`, `fd00::/8`), or one address (`127.0.0.1`,
/// `::1`: a /32 or /128).
///
/// ```
/// use cgi_session_core::client_addr::IpNet;
///
/// let net: IpNet = "10.0.0.0/8".parse()?;
/// assert!(net.contains("10.200.0.1".parse()?));
/// assert!(!net.contains("11.0.0.1".parse()?));
/// assert!(net.contains("::ffff:10.0.0.1".parse()?)); // IPv4-mapped counts as IPv4
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    /// The network address (host bits cleared).
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// The network of `addr` with `prefix` leading bits (host bits cleared); `None` when the
    /// prefix is longer than the address (32 for IPv4, 128 for IPv6).
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let addr = addr.to_canonical();
        match addr {
            IpAddr::V4(v4) if prefix <= 32 => Some(Self {
                addr: IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask32(prefix))),
                prefix,
            }),
            IpAddr::V6(v6) if prefix <= 128 => Some(Self {
                addr: IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask128(prefix))),
                prefix,
            }),
            _ => None,
        }
    }

    /// Whether `ip` is in this network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                u32::from(ip) & mask32(self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                u128::from(ip) & mask128(self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl FromStr for IpNet {
    type Err = ProxyListError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ProxyListError::BadEntry {
            entry: s.to_owned(),
        };
        let text = s.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => {
                let prefix = prefix
                    .parse::<u8>()
                    .ok()
                    .filter(|_| prefix.bytes().all(|b| b.is_ascii_digit()));
                (addr, Some(prefix.ok_or_else(bad)?))
            }
            None => (text, None),
        };
        let addr: IpAddr = addr
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .unwrap_or(addr)
            .parse()
            .map_err(|_| bad())?;
        let full = if addr.to_canonical().is_ipv4() {
            32
        } else {
            128
        };
        Self::new(addr, prefix.unwrap_or(full)).ok_or_else(bad)
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The header trusted proxies write the client's address in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (the default: nginx, HAProxy, most load
    /// balancers).
    #[default]
    XForwardedFor,
    /// `Forwarded: for=client, for="[2001:db8::1]:4711"` (RFC 7239).
    Forwarded,
}

impl ForwardedHeader {
    /// The header's name, lower case (`x-forwarded-for`, `forwarded`).
    pub fn name(self) -> &'static str {
        match self {
            Self::XForwardedFor => "x-forwarded-for",
            Self::Forwarded => "forwarded",
        }
    }

    /// The CGI meta-variable a web server passes it in (`HTTP_X_FORWARDED_FOR`,
    /// `HTTP_FORWARDED`).
    pub fn cgi_variable(self) -> &'static str {
        match self {
            Self::XForwardedFor => "HTTP_X_FORWARDED_FOR",
            Self::Forwarded => "HTTP_FORWARDED",
        }
    }
}

/// The reverse proxies whose forwarding header is believed, and which header that is. Empty
/// by default: the client address is the connection's.
///
/// Parse it from a list of addresses and CIDR blocks separated by commas or spaces; list
/// exactly the proxies in front of the application (e.g. `127.0.0.1` when nginx runs on the
/// same host), never a network clients can send from.
///
/// ```
/// use cgi_session_core::client_addr::{ForwardedHeader, TrustedProxies};
///
/// let proxies = TrustedProxies::parse("127.0.0.1 ::1, 10.0.0.0/8")?
///     .header(ForwardedHeader::Forwarded);
/// let peer = "::1".parse()?;
/// let forwarded = br#"for="[2001:db8:cafe::17]:4711";proto=https"#.as_slice();
/// assert_eq!(proxies.client_addr(peer, [forwarded]).to_string(), "2001:db8:cafe::17");
/// assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
    header: ForwardedHeader,
}

impl TrustedProxies {
    /// No trusted proxy: forwarding headers are ignored.
    pub fn none() -> Self {
        Self::default()
    }

    /// These networks, with the `X-Forwarded-For` header.
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Self {
        Self {
            nets: nets.into_iter().collect(),
            header: ForwardedHeader::default(),
        }
    }

    /// Reads a list of addresses and CIDR blocks separated by commas or whitespace (empty: no
    /// trusted proxy).
    ///
    /// # Errors
    /// [`ProxyListError::BadEntry`] naming the first entry that is neither.
    pub fn parse(list: &str) -> Result<Self, ProxyListError> {
        list.split(|c: char| c == ',' || c.is_whitespace())
            .filter(|entry| !entry.is_empty())
            .map(str::parse)
            .collect::<Result<Vec<IpNet>, _>>()
            .map(Self::new)
    }

    /// Reads `header` instead of `X-Forwarded-For`.
    pub fn header(mut self, header: ForwardedHeader) -> Self {
        self.header = header;
        self
    }

    /// The header read.
    pub fn forwarded_header(&self) -> ForwardedHeader {
        self.header
    }

    /// The trusted networks.
    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `ip` is a trusted proxy.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|net| net.contains(ip))
    }

    /// The client's address: `peer` (the connection's address) unless it is a trusted proxy,
    /// then the rightmost untrusted address of the forwarding header's `values` (all lines of
    /// the header, in order), by the rules of the [module](self). IPv4-mapped IPv6 addresses
    /// come back as IPv4.
    pub fn client_addr<'a>(
        &self,
        peer: IpAddr,
        values: impl IntoIterator<Item = &'a [u8]>,
    ) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        let hops = match self.header {
            ForwardedHeader::XForwardedFor => Some(x_forwarded_for(values)),
            ForwardedHeader::Forwarded => forwarded(values),
        };
        let Some(hops) = hops else {
            return peer;
        };
        let mut client = peer;
        for hop in hops.iter().rev() {
            match hop {
                Some(ip) => {
                    client = *ip;
                    if !self.trusts(client) {
                        break;
                    }
                }
                None => break,
            }
        }
        client
    }
}

impl FromStr for TrustedProxies {
    type Err = ProxyListError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The entries of `X-Forwarded-For` lines: an address each, `None` for one that is not.
fn x_forwarded_for<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Vec<Option<IpAddr>> {
    let mut hops = Vec::new();
    for value in values {
        // An empty line names nothing; an empty entry is an unknown hop.
        let value = trim(value);
        if value.is_empty() {
            continue;
        }
        hops.extend(
            value
                .split(|&b| b == b',')
                .map(|entry| std::str::from_utf8(trim(entry)).ok().and_then(node)),
        );
    }
    hops
}

/// The `for=` node of each element of `Forwarded` lines (RFC 7239 §4): `None` for an element
/// without one or whose node is no address; `None` overall when the syntax is broken.
fn forwarded<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Option<Vec<Option<IpAddr>>> {
    let mut hops = Vec::new();
    for value in values {
        let mut p = Parser { s: value, i: 0 };
        p.ows();
        if p.at_end() {
            continue;
        }
        loop {
            // One element: pairs separated by `;` (empty pairs allowed).
            let mut for_node: Option<Option<IpAddr>> = None;
            loop {
                p.ows();
                if let Some(name) = p.token() {
                    if !p.eat(b'=') {
                        return None;
                    }
                    let value = p.value()?;
                    if name.eq_ignore_ascii_case(b"for") {
                        if for_node.is_some() {
                            return None; // a parameter may occur once per element
                        }
                        for_node = Some(std::str::from_utf8(&value).ok().and_then(node));
                    }
                }
                p.ows();
                if !p.eat(b';') {
                    break;
                }
            }
            hops.push(for_node.flatten());
            p.ows();
            if p.at_end() {
                break;
            }
            if !p.eat(b',') {
                return None;
            }
        }
    }
    Some(hops)
}

/// One node (`192.0.2.7`, `192.0.2.7:80`, `2001:db8::7`, `[2001:db8::7]`,
/// `[2001:db8::7]:80`); `None` for `unknown`, obfuscated identifiers and anything else.
fn node(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            after => Some(after.strip_prefix(':')?),
        };
        (host.parse::<Ipv6Addr>().ok().map(IpAddr::V6)?, port)
    } else {
        let (host, port) = text.split_once(':')?;
        (host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)?, Some(port))
    };
    if let Some(port) = port {
        let obfuscated = port.strip_prefix('_').is_some_and(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        });
        let digits = port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok();
        if !obfuscated && !digits {
            return None;
        }
    }
    Some(host.to_canonical())
}

fn trim(s: &[u8]) -> &[u8] {
    s.trim_ascii()
}

/// A cursor over one `Forwarded` line.
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    /// RFC 9110's token: one or more tchar.
    fn token(&mut self) -> Option<&'a [u8]> {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        let s: &'a [u8] = self.s;
        (self.i > start).then(|| &s[start..self.i])
    }

    /// A token or a quoted-string (backslash escapes removed).
    fn value(&mut self) -> Option<Vec<u8>> {
        if !self.eat(b'"') {
            return self.token().map(<[u8]>::to_vec);
        }
        let mut out = Vec::new();
        loop {
            match self.peek()? {
                b'"' => {
                    self.i += 1;
                    return Some(out);
                }
                b'\\' => {
                    self.i += 1;
                    out.push(self.peek()?);
                    self.i += 1;
                }
                b => {
                    out.push(b);
                    self.i += 1;
                }
            }
        }
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests;
