//! TLS (`memcached -Z`) and authentication (`memcached -Y`) against real
//! memcached processes, with certificates generated here by rcgen.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cgi_session_memcache_client::{
    Client, ClientConfig, DeleteStatus, Error, GetOptions, SetOptions, TlsConfig,
};
use memcached_harness::MemcachedServer;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A CA, a server certificate (localhost, 127.0.0.1) and a client certificate
/// signed by it, and an unrelated CA, as PEM files in a temp dir.
struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    other_ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn new_ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

fn leaf(
    issuer: &Issuer<'static, KeyPair>,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, pem: &str| -> PathBuf {
            let path = dir.path().join(name);
            std::fs::write(&path, pem).unwrap();
            path
        };
        let (ca_pem, issuer) = new_ca("cgi-session test CA");
        let (other_pem, _) = new_ca("some other CA");
        let (server_pem, server_key) = leaf(
            &issuer,
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_pem, client_key) = leaf(
            &issuer,
            &["app-client"],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        Pki {
            ca: write("ca.pem", &ca_pem),
            other_ca: write("other-ca.pem", &other_pem),
            server_cert: write("server.pem", &server_pem),
            server_key: write("server.key", &server_key),
            client_cert: write("client.pem", &client_pem),
            client_key: write("client.key", &client_key),
            _dir: dir,
        }
    }

    fn tls_server(&self) -> MemcachedServer {
        MemcachedServer::builder()
            .tls(&self.server_cert, &self.server_key)
            .start()
    }

    fn trusting(&self, ca: &Path) -> TlsConfig {
        TlsConfig::new().ca_file(ca)
    }
}

fn config(server: &MemcachedServer) -> ClientConfig {
    ClientConfig::new(server.addr().to_string())
        .timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(5))
}

/// set / get with CAS / delete.
async fn round_trip(client: &Client, key: &str) {
    assert!(client
        .set(key, b"hello", SetOptions::new().ttl(60))
        .await
        .unwrap()
        .is_stored());
    let item = client
        .get(key, GetOptions::new().cas(true))
        .await
        .unwrap()
        .expect("just stored");
    assert_eq!(&item.value[..], b"hello");
    assert!(item.cas.is_some());
    assert_eq!(
        client.delete(key, None).await.unwrap(),
        DeleteStatus::Deleted
    );
    assert!(client.get(key, GetOptions::new()).await.unwrap().is_none());
}

/// 50 concurrent gets pipelined on one connection, each answered with its own value.
async fn pipelined_gets(client: &Client) {
    for i in 0..50 {
        client
            .set(
                &format!("p{i}"),
                format!("value-{i}").as_bytes(),
                SetOptions::new(),
            )
            .await
            .unwrap();
    }
    let gets = (0..50).map(|i| {
        let c = client.clone();
        tokio::spawn(async move {
            let item = c
                .get(&format!("p{i}"), GetOptions::new())
                .await
                .unwrap()
                .expect("stored above");
            assert_eq!(item.value, format!("value-{i}").as_bytes());
        })
    });
    for task in gets.collect::<Vec<_>>() {
        task.await.unwrap();
    }
}

#[tokio::test]
async fn tls_round_trip_pipelining_large_values_and_metadump() {
    let pki = Pki::new();
    let server = pki.tls_server();
    let client = Client::connect(config(&server).pool_size(1).tls(pki.trusting(&pki.ca)))
        .await
        .unwrap();
    round_trip(&client, "tls:k").await;
    pipelined_gets(&client).await;
    // Larger than TLS records and socket buffers: partial writes and flushes.
    let big: Vec<u8> = (0..900_000u32).map(|i| (i % 251) as u8).collect();
    client
        .set("tls:big", &big, SetOptions::new())
        .await
        .unwrap();
    let got = client
        .get("tls:big", GetOptions::new())
        .await
        .unwrap()
        .unwrap();
    assert!(got.value == big, "the large value came back intact");
    assert!(client.version().await.unwrap().starts_with("1."));
    let dump = client.metadump().await.unwrap();
    assert!(dump.entries.iter().any(|e| e.key == b"tls:big"));
    // The harness's plain listener sees the same data (one server, two listeners).
    assert_eq!(server.stats()["curr_items"], "51");
}

#[tokio::test]
async fn tls_server_name_can_be_set() {
    let pki = Pki::new();
    let server = pki.tls_server();
    // Connect to 127.0.0.1 but verify the certificate for "localhost".
    let client =
        Client::connect(config(&server).tls(pki.trusting(&pki.ca).server_name("localhost")))
            .await
            .unwrap();
    round_trip(&client, "named").await;
    let wrong = Client::connect(
        config(&server).tls(pki.trusting(&pki.ca).server_name("cache.example.org")),
    )
    .await
    .unwrap_err();
    assert!(matches!(wrong, Error::Tls { .. }), "{wrong}");
    assert!(!wrong.is_unavailable());
    let text = wrong.to_string();
    assert!(text.contains(&server.addr().to_string()), "{text}");
    assert!(text.contains("server name"), "{text}");
}

#[tokio::test]
async fn wrong_ca_is_refused_with_a_clear_error() {
    let pki = Pki::new();
    let server = pki.tls_server();
    let err = Client::connect(config(&server).tls(pki.trusting(&pki.other_ca)))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Tls { .. }), "{text}");
    assert!(
        !err.is_unavailable(),
        "a configuration problem, not an outage"
    );
    assert!(
        text.contains(&server.addr().to_string()),
        "names the server: {text}"
    );
    assert!(text.contains("UnknownIssuer"), "says why: {text}");
    assert!(text.contains("CA file"), "says what to check: {text}");

    // A lazy client fails each request the same way (never a silent miss).
    let lazy = Client::connect(config(&server).lazy(true).tls(pki.trusting(&pki.other_ca)))
        .await
        .unwrap();
    let err = lazy.get("k", GetOptions::new()).await.unwrap_err();
    assert!(matches!(err, Error::Tls { .. }), "{err}");
}

#[tokio::test]
async fn tls_client_against_a_plain_server_fails_clearly() {
    let pki = Pki::new();
    let server = MemcachedServer::start();
    let err = Client::connect(config(&server).tls(pki.trusting(&pki.ca)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Tls { .. }), "{err}");
}

#[tokio::test]
async fn tls_settings_that_cannot_be_used_fail_at_connect() {
    let pki = Pki::new();
    let server = pki.tls_server();
    for tls in [
        TlsConfig::new(),
        TlsConfig::new().ca_file(pki._dir.path().join("missing.pem")),
        TlsConfig::new().ca_file(&pki.server_key),
        pki.trusting(&pki.ca)
            .client_cert(&pki.client_cert, pki._dir.path().join("missing.key")),
        pki.trusting(&pki.ca).server_name("not a name"),
    ] {
        let err = Client::connect(config(&server).tls(tls.clone()))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{tls:?}: {err}");
    }
}

#[tokio::test]
async fn client_certificate_required_by_the_server() {
    let pki = Pki::new();
    let server = MemcachedServer::builder()
        .tls(&pki.server_cert, &pki.server_key)
        .tls_client_ca(&pki.ca)
        .start();
    let err = Client::connect(config(&server).tls(pki.trusting(&pki.ca)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Tls { .. }), "{err}");
    assert!(!err.is_unavailable());

    let client = Client::connect(
        config(&server).pool_size(1).tls(
            pki.trusting(&pki.ca)
                .client_cert(&pki.client_cert, &pki.client_key),
        ),
    )
    .await
    .unwrap();
    round_trip(&client, "mtls").await;
    pipelined_gets(&client).await;
}

#[tokio::test]
async fn auth_right_password_works_and_survives_a_restart() {
    let mut server = MemcachedServer::builder().auth("app", "s3cret").start();
    let client = Client::connect(config(&server).pool_size(1).auth("app", "s3cret"))
        .await
        .unwrap();
    round_trip(&client, "auth:k").await;
    pipelined_gets(&client).await;
    assert!(client.metadump().await.unwrap().entries.len() >= 50);
    assert_eq!(server.stats()["auth_errors"], "0");

    // The next connection (after a restart) logs in again by itself.
    server.restart();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match client.set("after", b"1", SetOptions::new()).await {
            Ok(status) => {
                assert!(status.is_stored());
                break;
            }
            Err(e) => {
                assert!(e.is_unavailable(), "only the outage may show: {e}");
                assert!(tokio::time::Instant::now() < deadline, "no recovery: {e}");
                tokio::task::yield_now().await;
            }
        }
    }
    assert!(client
        .get("after", GetOptions::new())
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn auth_wrong_password_is_a_clear_error_never_a_miss() {
    let server = MemcachedServer::builder().auth("app", "s3cret").start();
    let err = Client::connect(config(&server).auth("app", "wrong"))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Auth { .. }), "{text}");
    assert!(!err.is_unavailable());
    assert!(text.contains(&server.addr().to_string()), "{text}");
    assert!(text.contains("wrong username or password"), "{text}");
    assert!(
        !text.contains("wrong\""),
        "the password is not shown: {text}"
    );

    let lazy = Client::connect(config(&server).lazy(true).auth("app", "wrong"))
        .await
        .unwrap();
    let err = lazy.get("k", GetOptions::new()).await.unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err}");
    let err = lazy.set("k", b"v", SetOptions::new()).await.unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err}");
    let err = Client::connect(config(&server).auth("nobody", "s3cret"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err}");
    assert_eq!(server.stats()["auth_errors"], "4");
}

#[tokio::test]
async fn auth_required_but_not_configured() {
    let server = MemcachedServer::builder().auth("app", "s3cret").start();
    // Plain TCP, no credentials: the first request learns it.
    let client = Client::connect(config(&server)).await.unwrap();
    let err = client.get("k", GetOptions::new()).await.unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err}");
    assert!(err.to_string().contains("ClientConfig::auth"), "{err}");
}

#[tokio::test]
async fn credentials_on_a_server_without_auth_leave_nothing_readable() {
    let server = MemcachedServer::start();
    let client = Client::connect(config(&server).pool_size(1).auth("app", "s3cret"))
        .await
        .unwrap();
    round_trip(&client, "k").await;
    // The login `set` was stored already expired: the password is not readable.
    assert!(client
        .get("cgi_session_auth", GetOptions::new())
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn tls_and_auth_together() {
    let pki = Pki::new();
    let server = MemcachedServer::builder()
        .tls(&pki.server_cert, &pki.server_key)
        .auth("app", "s3cret")
        .start();
    let client = Client::connect(
        config(&server)
            .pool_size(1)
            .tls(pki.trusting(&pki.ca))
            .auth("app", "s3cret"),
    )
    .await
    .unwrap();
    round_trip(&client, "both").await;
    pipelined_gets(&client).await;
    let err = Client::connect(
        config(&server)
            .tls(pki.trusting(&pki.ca))
            .auth("app", "nope"),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err}");
    // TLS without credentials: the set-up round trip reports it at connect.
    let err = Client::connect(config(&server).tls(pki.trusting(&pki.ca)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err}");
}

#[tokio::test]
async fn credentials_memcached_cannot_carry_are_refused_at_connect() {
    for (user, password) in [
        ("", "pw"),
        ("a b", "pw"),
        ("a:b", "pw"),
        ("app", "two words"),
        ("app", ""),
    ] {
        let err = Client::connect(
            ClientConfig::new("127.0.0.1:1")
                .lazy(true)
                .auth(user, password),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{user:?}: {err}");
    }
}
