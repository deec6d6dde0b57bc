//! Shared by the server's tests: a small served simulation, WebSocket
//! helpers with bounded waits, and a bare HTTP client.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use atheria::{EngineKind, InitKind, Simulation};
use atheria_serve::{FrameHeader, ServeOptions, Server};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Every wait in these tests is at most this long.
pub const WAIT: Duration = Duration::from_secs(20);

/// The default law on a `size` x `size` grid, served on 127.0.0.1, any port.
/// Held for the whole of each test of a binary, so that its tests run one
/// at a time: each runs a server whose simulation steps flat out and up to
/// fifty clients, and several of them at once on a 2-core machine starved
/// one of every message for 20 s in CI.
/// (An async lock: it is held across awaits, and each test has its own
/// runtime; a test that panics releases it as it unwinds.)
pub async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

pub fn server(engine: EngineKind, size: usize, tweak: impl FnOnce(&mut ServeOptions)) -> Server {
    let sim = Simulation::builder()
        .engine(engine)
        .init(InitKind::Random, 3, size)
        .threads(1)
        .build()
        .expect("simulation");
    let mut options = ServeOptions::default();
    options.port = 0;
    tweak(&mut options);
    Server::start(sim, options).expect("server starts")
}

pub fn ws_url(addr: SocketAddr, token: Option<&str>) -> String {
    match token {
        Some(t) => format!("ws://{addr}/ws?token={t}"),
        None => format!("ws://{addr}/ws"),
    }
}

pub async fn connect(addr: SocketAddr, token: Option<&str>) -> Ws {
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(ws_url(addr, token)))
        .await
        .expect("connect in time")
        .expect("connect");
    ws
}

/// Connects with extra headers; the HTTP status on refusal.
pub async fn try_connect(url: &str, headers: &[(&str, &str)]) -> Result<Ws, u16> {
    let mut req = url.into_client_request().unwrap();
    for (k, v) in headers {
        let name = tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes())
            .expect("header name");
        req.headers_mut()
            .insert(name, v.parse().expect("header value"));
    }
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
        .await
        .expect("answer in time")
    {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("unexpected error: {e}"),
    }
}

/// One incoming message: JSON text or a decoded frame.
#[derive(Debug)]
pub enum In {
    Json(Value),
    Frame(FrameHeader, Vec<u8>),
}

pub async fn next(ws: &mut Ws) -> In {
    loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message in time")
            .expect("open")
            .expect("readable");
        match m {
            Message::Text(t) => return In::Json(serde_json::from_str(t.as_str()).expect("JSON")),
            Message::Binary(b) => {
                let (h, px) = FrameHeader::decode(&b).expect("a frame that decodes");
                return In::Frame(h, px);
            }
            _ => continue,
        }
    }
}

/// The next JSON message of `kind`, skipping frames and other types.
pub async fn next_json(ws: &mut Ws, kind: &str) -> Value {
    let until = Instant::now() + WAIT;
    while Instant::now() < until {
        if let In::Json(v) = next(ws).await {
            if v["type"] == kind {
                return v;
            }
        }
    }
    panic!("no {kind} message in time");
}

/// The next message that is a status or an error.
pub async fn reply(ws: &mut Ws) -> Value {
    let until = Instant::now() + WAIT;
    while Instant::now() < until {
        if let In::Json(v) = next(ws).await {
            if v["type"] == "status" || v["type"] == "error" {
                return v;
            }
        }
    }
    panic!("no reply in time");
}

/// The next frame, optionally of one visualization.
pub async fn next_frame(ws: &mut Ws, viz: Option<&str>) -> (FrameHeader, Vec<u8>) {
    let until = Instant::now() + WAIT;
    while Instant::now() < until {
        if let In::Frame(h, px) = next(ws).await {
            if viz.is_none_or(|v| h.viz == v) {
                return (h, px);
            }
        }
    }
    panic!("no frame in time");
}

pub async fn send(ws: &mut Ws, text: &str) {
    ws.send(Message::Text(text.into())).await.expect("send");
}

/// The next answer to a command: an error, or a status with `reply_to`.
pub async fn answer(ws: &mut Ws) -> Value {
    let until = Instant::now() + WAIT;
    while Instant::now() < until {
        if let In::Json(v) = next(ws).await {
            if v["type"] == "error" || (v["type"] == "status" && v.get("reply_to").is_some()) {
                return v;
            }
        }
    }
    panic!("no answer in time");
}

/// Sends a command and returns its answer.
pub async fn command(ws: &mut Ws, text: &str) -> Value {
    send(ws, text).await;
    answer(ws).await
}

/// A bare HTTP/1.1 request; the status code and the body.
pub fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("response");
    let text_end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("headers")
        + 4;
    let head = String::from_utf8_lossy(&out[..text_end]).to_string();
    let code = head[9..12].parse().expect("status code");
    let mut body = out[text_end..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (code, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
}

/// This process's resident memory, in bytes (Linux).
pub fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
