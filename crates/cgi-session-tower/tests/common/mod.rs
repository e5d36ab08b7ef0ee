//! What the tower tests share: one request through a `Router` and its reply.
// Each test binary uses only some of these.
#![allow(dead_code)]

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use http::{Request, Response, StatusCode};
use tower::ServiceExt;

pub struct Reply {
    pub status: StatusCode,
    pub set_cookies: Vec<String>,
    pub body: String,
}

impl Reply {
    /// The one Set-Cookie header, if any.
    pub fn cookie(&self) -> Option<&str> {
        assert!(self.set_cookies.len() <= 1, "{:?}", self.set_cookies);
        self.set_cookies.first().map(String::as_str)
    }

    /// `NAME=value` of the Set-Cookie header, for the next request's Cookie header.
    pub fn cookie_pair(&self) -> String {
        let c = self.cookie().expect("a Set-Cookie header");
        c.split(';').next().unwrap().to_owned()
    }
}

pub async fn call(app: &Router, path: &str, cookie: Option<&str>) -> Reply {
    call_from(app, path, cookie, None).await
}

pub async fn call_from(
    app: &Router,
    path: &str,
    cookie: Option<&str>,
    from: Option<SocketAddr>,
) -> Reply {
    let mut req = Request::get(path);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let mut req = req.body(Body::empty()).unwrap();
    if let Some(addr) = from {
        req.extensions_mut().insert(ConnectInfo(addr));
    }
    let res: Response<Body> = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let set_cookies = res
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let body = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    Reply {
        status,
        set_cookies,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}
