//! A visit counter with login and logout on actix-web, sessions in memcached.
//!
//! ```text
//! memcached -l 127.0.0.1 -p 11211 &
//! cargo run -p cgi-session-actix --example counter -- 127.0.0.1:11211
//! curl -c jar -b jar http://127.0.0.1:8080/        # visit number 1, 2, ...
//! curl -c jar -b jar http://127.0.0.1:8080/login   # a new session id, the user remembered
//! curl -c jar -b jar http://127.0.0.1:8080/logout  # the session removed, the cookie cleared
//! ```
//!
//! Without a server argument the sessions live in memory (lost at exit). The cookie is
//! signed with the key in `SESSION_KEY` (at least 64 bytes), or with a key generated at start
//! (every cookie is then refused after a restart).

use actix_web::{web, App, HttpServer};
use cgi_session::memcache::client::{Client, ClientConfig};
use cgi_session::memcache::MemcacheDriver;
use cgi_session::{MemoryDriver, SessionStore};
use cgi_session_actix::{Key, SessionError, SessionHandle, SessionMiddleware};

/// A read-modify-write: `update`, so that parallel requests each count once.
async fn count(session: SessionHandle) -> Result<String, SessionError> {
    let n = session
        .update(|s| {
            let n = s.get::<u64>("visits")?.unwrap_or(0) + 1;
            s.set("visits", &n)?;
            Ok(n)
        })
        .await?;
    let user: Option<String> = session.get("user").await?;
    Ok(format!(
        "visit number {n}{}\n",
        user.map(|u| format!(", welcome back {u}"))
            .unwrap_or_default()
    ))
}

/// Login: a new id against session fixation, then the user.
async fn login(session: SessionHandle) -> Result<&'static str, SessionError> {
    session.regenerate_id().await?;
    session.set("user", "ann").await?;
    Ok("logged in as ann\n")
}

/// Logout: the stored session is removed and the cookie cleared.
async fn logout(session: SessionHandle) -> Result<&'static str, SessionError> {
    session.delete().await?;
    Ok("bye\n")
}

/// A page that never touches the session: no store I/O, no cookie.
async fn health() -> &'static str {
    "ok\n"
}

async fn open_store(server: Option<String>) -> std::io::Result<SessionStore> {
    let builder = match server {
        Some(addr) => {
            let client = Client::connect(ClientConfig::new(addr).lazy(true))
                .await
                .map_err(std::io::Error::other)?;
            SessionStore::builder(MemcacheDriver::new(client))
        }
        None => SessionStore::builder(MemoryDriver::new()),
    };
    Ok(builder.default_expire(1800).build())
}

fn signing_key() -> Key {
    match std::env::var("SESSION_KEY") {
        Ok(secret) if secret.len() >= 64 => Key::from(secret.as_bytes()),
        _ => {
            eprintln!("SESSION_KEY unset or shorter than 64 bytes: signing with a random key");
            Key::generate()
        }
    }
}

fn main() -> std::io::Result<()> {
    actix_web::rt::System::new().block_on(async {
        // One store (one memcached client) for every worker.
        let store = open_store(std::env::args().nth(1)).await?;
        let middleware = SessionMiddleware::new(store).signed(signing_key());
        let server = HttpServer::new(move || {
            App::new()
                .wrap(middleware.clone())
                .route("/", web::get().to(count))
                .route("/login", web::get().to(login))
                .route("/logout", web::get().to(logout))
                .route("/health", web::get().to(health))
        })
        .bind(("127.0.0.1", 8080))?;
        eprintln!("listening on http://127.0.0.1:8080/");
        server.run().await
    })
}
