//! TLS and authentication: settings, the stream that carries either a plain
//! TCP connection or a TLS one, and the per-connection set-up (handshake,
//! `-Y` authentication).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::BytesMut;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::error::{tls_cause, Error, Result};

/// TLS settings for the connections to memcached (`memcached -Z`).
///
/// The server's certificate is **always verified**: it must chain to one of
/// the CA certificates given with [`ca_file`](Self::ca_file) and name the
/// host connected to (or [`server_name`](Self::server_name)). There is no
/// switch to turn verification off. memcached certificates are usually
/// signed by a private CA, so the CA file is required; the system's trust
/// store is not used.
///
/// A client certificate ([`client_cert`](Self::client_cert)) is sent when
/// the server asks for one (`memcached -o ssl_verify_mode=2,ssl_ca_cert=...`).
///
/// Files are read when [`Client::connect`](crate::Client::connect) runs;
/// one that cannot be read or parsed is an [`Error::Config`] naming it.
/// TLS 1.2 and 1.3 are offered (rustls with the *ring* provider).
///
/// ```
/// use cgi_session_memcache_client::{ClientConfig, TlsConfig};
/// let config = ClientConfig::new("127.0.0.1:11211").tls(
///     TlsConfig::new()
///         .ca_file("/etc/memcached/ca.pem")
///         .server_name("cache.internal")
///         .client_cert("/etc/myapp/client.pem", "/etc/myapp/client.key"),
/// );
/// assert_eq!(config.tls.unwrap().server_name.as_deref(), Some("cache.internal"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsConfig {
    /// PEM files of the CA certificates trusted to sign the servers'
    /// certificates (at least one is required).
    pub ca_files: Vec<PathBuf>,
    /// The name checked against the servers' certificates, for every
    /// server; `None` (the default) uses the host part of each server's
    /// address (a DNS name, or an IP address matched against the
    /// certificate's IP SANs).
    pub server_name: Option<String>,
    /// PEM files of the client certificate chain and its private key
    /// (PKCS#8, PKCS#1 or SEC1), sent when the server asks for one.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

impl TlsConfig {
    /// No CA yet: add one with [`ca_file`](Self::ca_file).
    ///
    /// ```
    /// assert!(cgi_session_memcache_client::TlsConfig::new().ca_files.is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts the CA certificates in this PEM file (may be called several
    /// times; a file may hold several certificates).
    ///
    /// ```
    /// let tls = cgi_session_memcache_client::TlsConfig::new().ca_file("ca.pem").ca_file("old-ca.pem");
    /// assert_eq!(tls.ca_files.len(), 2);
    /// ```
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_files.push(path.into());
        self
    }

    /// Sets [`server_name`](Self::server_name): the name the servers'
    /// certificates must carry, when it differs from the host in their
    /// addresses (e.g. connecting to `10.0.0.5:11211` with a certificate for
    /// `cache.internal`).
    ///
    /// ```
    /// let tls = cgi_session_memcache_client::TlsConfig::new().server_name("localhost");
    /// assert_eq!(tls.server_name.as_deref(), Some("localhost"));
    /// ```
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// Sets [`client_cert`](Self::client_cert): the certificate chain and
    /// private key (both PEM files) presented to servers that require client
    /// certificates.
    ///
    /// ```
    /// let tls = cgi_session_memcache_client::TlsConfig::new().client_cert("client.pem", "client.key");
    /// assert!(tls.client_cert.is_some());
    /// ```
    pub fn client_cert(mut self, cert_chain: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.client_cert = Some((cert_chain.into(), key.into()));
        self
    }
}

/// Username and password for memcached's authentication (`memcached -Y
/// <auth file>`, lines `user:password`). The password is never shown by
/// `Debug` and never put in an error.
///
/// [`Client::connect`](crate::Client::connect) refuses (with
/// [`Error::Config`]) an empty username or one with a space, `:` or control
/// character, and an empty password or one with a space or control
/// character: memcached's login could not carry them.
///
/// ```
/// let c = cgi_session_memcache_client::Credentials::new("app", "s3cret");
/// assert_eq!(c.username(), "app");
/// assert!(!format!("{c:?}").contains("s3cret"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    username: String,
    password: String,
}

impl Credentials {
    /// Credentials for one user of the server's auth file.
    ///
    /// ```
    /// let c = cgi_session_memcache_client::Credentials::new("app", "pw");
    /// # let _ = c;
    /// ```
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }

    /// The username.
    ///
    /// ```
    /// assert_eq!(cgi_session_memcache_client::Credentials::new("u", "p").username(), "u");
    /// ```
    pub fn username(&self) -> &str {
        &self.username
    }

    /// Checks that memcached's authentication can carry these credentials.
    fn validate(&self) -> Result<()> {
        let bad = |detail: &str| Error::Config {
            detail: format!("memcached authentication: {detail}"),
        };
        if self.username.is_empty() {
            return Err(bad("the username is empty"));
        }
        if self
            .username
            .bytes()
            .any(|b| b == b' ' || b == b':' || b.is_ascii_control())
        {
            return Err(bad(
                "the username contains a space, ':' or a control character (the auth file is `user:password` lines and the login is `user password`)",
            ));
        }
        if self.password.is_empty() {
            return Err(bad("the password is empty"));
        }
        if self
            .password
            .bytes()
            .any(|b| b == b' ' || b.is_ascii_control())
        {
            return Err(bad("the password contains a space or a control character: memcached reads the password only up to the first space, and an auth file line cannot hold a line break"));
        }
        Ok(())
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The key named in the authentication `set`. A server with `-Y` ignores it;
/// a server without `-Y` stores the item already expired (exptime -1), so
/// the credentials are never readable there.
const AUTH_KEY: &str = "cgi_session_auth";

/// Longest reply line read while setting up a connection.
const MAX_SETUP_LINE: usize = 1024;

/// What each new connection does before carrying requests: TLS and/or
/// authentication. Shared by the pools of one client.
#[derive(Clone, Default)]
pub(crate) struct Security {
    tls: Option<TlsSetup>,
    auth: Option<Credentials>,
}

#[derive(Clone)]
struct TlsSetup {
    connector: TlsConnector,
    server_name: Option<ServerName<'static>>,
}

impl fmt::Debug for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Security")
            .field("tls", &self.tls.is_some())
            .field("auth", &self.auth)
            .finish()
    }
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let iter = CertificateDer::pem_file_iter(path).map_err(|e| Error::Config {
        detail: format!("cannot read the {what} file {}: {e}", path.display()),
    })?;
    let certs = iter
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Config {
            detail: format!("the {what} file {} is not valid PEM: {e}", path.display()),
        })?;
    if certs.is_empty() {
        return Err(Error::Config {
            detail: format!(
                "the {what} file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                path.display()
            ),
        });
    }
    Ok(certs)
}

impl Security {
    /// Reads the files and checks the settings (once per client).
    pub(crate) fn new(tls: Option<&TlsConfig>, auth: Option<&Credentials>) -> Result<Self> {
        if let Some(creds) = auth {
            creds.validate()?;
        }
        let tls = tls.map(build_tls).transpose()?;
        Ok(Security {
            tls,
            auth: auth.cloned(),
        })
    }

    /// The name a server's certificate must carry, checked at start-up.
    pub(crate) fn server_name_for(&self, server: &str) -> Result<Option<ServerName<'static>>> {
        let Some(tls) = &self.tls else {
            return Ok(None);
        };
        if let Some(name) = &tls.server_name {
            return Ok(Some(name.clone()));
        }
        let host = host_of(server);
        ServerName::try_from(host.to_string())
            .map(Some)
            .map_err(|_| Error::Config {
                detail: format!(
                    "TLS: the host {host:?} of server {server} is neither a DNS name nor an IP address; set TlsConfig::server_name"
                ),
            })
    }

    /// Turns a fresh TCP connection into one ready for requests: TLS
    /// handshake, then authentication (or, over TLS without credentials, a
    /// `version` round trip so a rejected client certificate shows up here).
    pub(crate) async fn establish(
        &self,
        tcp: TcpStream,
        server: &str,
        server_name: Option<&ServerName<'static>>,
    ) -> Result<Stream> {
        let mut stream = match (&self.tls, server_name) {
            (Some(tls), Some(name)) => match tls.connector.connect(name.clone(), tcp).await {
                Ok(s) => Stream::Tls(Box::new(s)),
                Err(e) => return Err(handshake_error(server, e)),
            },
            _ => Stream::Plain(tcp),
        };
        let tls = self.tls.is_some();
        if let Some(creds) = &self.auth {
            let login = format!(
                "set {AUTH_KEY} 0 -1 {}\r\n{} {}\r\n",
                creds.username.len() + 1 + creds.password.len(),
                creds.username,
                creds.password
            );
            let line = exchange(&mut stream, login.as_bytes(), server, tls).await?;
            match line.as_str() {
                "STORED" => {}
                "CLIENT_ERROR authentication failure" => {
                    return Err(Error::Auth {
                        server: server.to_string(),
                        reason: format!("wrong username or password for user {:?}", creds.username),
                    })
                }
                other => {
                    return Err(Error::Auth {
                        server: server.to_string(),
                        reason: format!(
                            "the server answered {:?} to the login of user {:?}",
                            truncate(other),
                            creds.username
                        ),
                    })
                }
            }
        } else if tls {
            let line = exchange(&mut stream, b"version\r\n", server, tls).await?;
            if line == "CLIENT_ERROR unauthenticated" {
                return Err(unauthenticated(server));
            }
            if !line.starts_with("VERSION ") {
                return Err(Error::protocol(
                    server,
                    format!(
                        "unexpected reply {:?} to version on a new connection",
                        truncate(&line)
                    ),
                ));
            }
        }
        Ok(stream)
    }
}

/// The error for `CLIENT_ERROR unauthenticated`.
pub(crate) fn unauthenticated(server: &str) -> Error {
    Error::Auth {
        server: server.to_string(),
        reason: "the server requires authentication (memcached -Y) and no credentials are configured (ClientConfig::auth)".into(),
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(120).collect()
}

fn build_tls(cfg: &TlsConfig) -> Result<TlsSetup> {
    if cfg.ca_files.is_empty() {
        return Err(Error::Config {
            detail: "TLS needs at least one CA file (TlsConfig::ca_file) holding the CA that signed the memcached servers' certificates".into(),
        });
    }
    let mut roots = rustls::RootCertStore::empty();
    for path in &cfg.ca_files {
        for cert in read_certs(path, "CA")? {
            roots.add(cert).map_err(|e| Error::Config {
                detail: format!(
                    "the CA file {} holds a certificate that cannot be used as a trust anchor: {e}",
                    path.display()
                ),
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config {
            detail: format!("TLS: {e}"),
        })?
        .with_root_certificates(roots);
    let config = match &cfg.client_cert {
        None => builder.with_no_client_auth(),
        Some((cert_path, key_path)) => {
            let chain = read_certs(cert_path, "client certificate")?;
            let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| Error::Config {
                detail: format!(
                    "cannot read a PEM private key from the client key file {}: {e}",
                    key_path.display()
                ),
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| Error::Config {
                    detail: format!(
                        "the client certificate {} and key {} cannot be used together: {e}",
                        cert_path.display(),
                        key_path.display()
                    ),
                })?
        }
    };
    let server_name = cfg
        .server_name
        .as_ref()
        .map(|name| {
            ServerName::try_from(name.clone()).map_err(|_| Error::Config {
                detail: format!(
                    "TLS: the server name {name:?} (TlsConfig::server_name) is neither a DNS name nor an IP address"
                ),
            })
        })
        .transpose()?;
    Ok(TlsSetup {
        connector: TlsConnector::from(Arc::new(config)),
        server_name,
    })
}

/// The host part of `host:port`, `[v6]:port` or a bare host.
fn host_of(server: &str) -> &str {
    if let Some(rest) = server.strip_prefix('[') {
        if let Some(end) = rest.find(']') {
            return &rest[..end];
        }
    }
    match server.rsplit_once(':') {
        // A bare IPv6 address has several colons and no port.
        Some((host, _)) if !host.contains(':') => host,
        _ => server,
    }
}

fn handshake_error(server: &str, e: io::Error) -> Error {
    if let Some(cause) = tls_cause(&e) {
        return Error::Tls {
            server: server.to_string(),
            detail: cause.to_string(),
        };
    }
    match e.kind() {
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => Error::Tls {
            server: server.to_string(),
            detail: format!("the server closed the connection during the handshake ({e}); is TLS enabled on it (memcached -Z)?"),
        },
        _ => Error::io(server, "TLS handshake failed", e),
    }
}

/// Writes `request` and reads one reply line (without `\r\n`).
async fn exchange(stream: &mut Stream, request: &[u8], server: &str, tls: bool) -> Result<String> {
    let io_err = |what: &str, e: io::Error| {
        let closed = matches!(
            e.kind(),
            io::ErrorKind::UnexpectedEof
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::BrokenPipe
        );
        if tls && closed && tls_cause(&e).is_none() {
            return closed_after_handshake(server);
        }
        Error::io(server, what, e)
    };
    stream
        .write_all(request)
        .await
        .map_err(|e| io_err("write failed", e))?;
    stream
        .flush()
        .await
        .map_err(|e| io_err("write failed", e))?;
    let mut buf = BytesMut::with_capacity(256);
    loop {
        if let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            if pos + 1 != buf.len() {
                return Err(Error::protocol(
                    server,
                    "unexpected bytes after the reply to a connection set-up command",
                ));
            }
            let line = &buf[..pos];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            return Ok(String::from_utf8_lossy(line).into_owned());
        }
        if buf.len() > MAX_SETUP_LINE {
            return Err(Error::protocol(
                server,
                "the reply to a connection set-up command is too long",
            ));
        }
        let n = stream
            .read_buf(&mut buf)
            .await
            .map_err(|e| io_err("read failed", e))?;
        if n == 0 {
            return Err(if tls {
                closed_after_handshake(server)
            } else {
                Error::unavailable(server, "the server closed the connection during set-up")
            });
        }
    }
}

fn closed_after_handshake(server: &str) -> Error {
    Error::Tls {
        server: server.to_string(),
        detail: "the server closed the connection right after the handshake (does it require a client certificate? see TlsConfig::client_cert)".into(),
    }
}

/// A connection to memcached: plain TCP or TLS over TCP.
pub(crate) enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS (boxed: the TLS state is large).
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(host_of("127.0.0.1:11211"), "127.0.0.1");
        assert_eq!(host_of("localhost:1"), "localhost");
        assert_eq!(host_of("[::1]:11211"), "::1");
        assert_eq!(host_of("::1"), "::1");
        assert_eq!(host_of("cache"), "cache");
    }

    #[test]
    fn credentials_are_checked_and_redacted() {
        assert!(Credentials::new("a b", "p").validate().is_err());
        assert!(Credentials::new("a:b", "p").validate().is_err());
        assert!(Credentials::new("", "p").validate().is_err());
        assert!(Credentials::new("a", "p\r\nx").validate().is_err());
        assert!(Credentials::new("a", "pass with spaces")
            .validate()
            .is_err());
        assert!(Credentials::new("a", "").validate().is_err());
        assert!(Credentials::new("a", "p:ss!#").validate().is_ok());
        let debug = format!("{:?}", Credentials::new("app", "hunter2"));
        assert!(debug.contains("app") && !debug.contains("hunter2"));
    }

    #[test]
    fn tls_config_errors_name_the_file() {
        let err = Security::new(Some(&TlsConfig::new()), None).unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{err}");
        let err = Security::new(Some(&TlsConfig::new().ca_file("/nonexistent/ca.pem")), None)
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
        assert!(!err.is_unavailable());
    }
}
