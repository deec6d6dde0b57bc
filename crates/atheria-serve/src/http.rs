//! The HTTP side: the page, the token check, the WebSocket connections, the
//! snapshot download and the state upload.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use atheria::{CellBox, EngineKind, Viz};
use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::{oneshot, watch};

use crate::protocol::{parse_command, Command, CLIENT_TOOLS};
use crate::sim::{FrameSlot, Shared, SimCmd, SubKey};
use crate::ServeOptions;

/// The page, with its style and script inlined (one request, one token check).
const PAGE: &str = include_str!("../web/index.html");
const STYLE: &str = include_str!("../web/style.css");
const SCRIPT: &str = include_str!("../web/app.js");
/// Transport limit of one WebSocket message; commands are checked against
/// the smaller [`ServeOptions::max_message_bytes`] with an error message.
const TRANSPORT_MAX: usize = 1 << 20;
/// How long a command may wait for the simulation thread.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct App {
    pub shared: Arc<Shared>,
    pub status: watch::Receiver<Arc<str>>,
    pub token: Option<String>,
    pub options: ServeOptions,
    pub engine: EngineKind,
    pub d_state: usize,
    pub max_cells: usize,
    pub default_region: Option<CellBox>,
}

/// Serves until `shutdown` fires.
pub(crate) async fn serve(
    listener: std::net::TcpListener,
    app: App,
    shutdown: oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot listen: {e}");
            return;
        }
    };
    let page = Arc::<str>::from(
        PAGE.replace("/*STYLE*/", STYLE)
            .replace("/*SCRIPT*/", SCRIPT)
            .as_str(),
    );
    let limit = app.options.max_load_bytes;
    let router = Router::new()
        .route("/", get(move || async move { page_response(&page) }))
        .route("/ws", get(ws))
        .route("/snapshot.safetensors", get(snapshot))
        .route("/load", post(load).layer(DefaultBodyLimit::max(limit)))
        .layer(middleware::from_fn_with_state(app.clone(), auth))
        .with_state(app);
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    let _ = axum::serve(listener, service)
        .with_graceful_shutdown(async {
            let _ = shutdown.await;
        })
        .await;
}

fn page_response(page: &str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        page.to_string(),
    )
        .into_response()
}

/// The token a request carries: `?token=`, `Authorization: Bearer`, or
/// `X-Atheria-Token`.
fn token_of(req: &Request) -> Option<String> {
    let from_query = req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|p| p.strip_prefix("token="))
            .map(str::to_string)
    });
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    from_query
        .or_else(|| {
            header("authorization").and_then(|a| a.strip_prefix("Bearer ").map(str::to_string))
        })
        .or_else(|| header("x-atheria-token"))
}

/// Compares in time that depends on the lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// Every route: the token, when one is in force.
async fn auth(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
    next: Next,
) -> Response {
    if let Some(want) = &app.token {
        let path = req.uri().path().to_string();
        match token_of(&req) {
            None => {
                tracing::warn!("{peer}: {path} refused: no token (401)");
                return (
                    StatusCode::UNAUTHORIZED,
                    "a token is needed: open the URL the server printed\n",
                )
                    .into_response();
            }
            Some(t) if !same(t.as_bytes(), want.as_bytes()) => {
                tracing::warn!("{peer}: {path} refused: wrong token (403)");
                return (StatusCode::FORBIDDEN, "wrong token\n").into_response();
            }
            Some(_) => {}
        }
    }
    next.run(req).await
}

/// Whether a WebSocket upgrade's `Origin` is this server (same host and
/// port as the `Host` header). Programs that send no `Origin` pass;
/// browsers always send one.
pub(crate) fn origin_allowed(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let (Ok(origin), Some(Ok(host))) = (
        origin.to_str(),
        headers.get(header::HOST).map(HeaderValue::to_str),
    ) else {
        return false;
    };
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or("");
    !origin_host.is_empty() && origin_host.eq_ignore_ascii_case(host)
}

async fn ws(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !origin_allowed(&headers) {
        let origin = headers
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .unwrap_or("?");
        tracing::warn!("{peer}: WebSocket refused: Origin `{origin}` is not this server (403)");
        return (StatusCode::FORBIDDEN, "cross-origin WebSocket refused\n").into_response();
    }
    upgrade
        .max_message_size(TRANSPORT_MAX)
        .max_frame_size(TRANSPORT_MAX)
        .write_buffer_size(64 * 1024)
        .on_upgrade(move |socket| client(socket, app, peer))
}

/// Commands per second, with a burst of as many.
struct Bucket {
    level: f64,
    rate: f64,
    at: Instant,
}

impl Bucket {
    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.level =
            (self.level + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.rate);
        self.at = now;
        if self.level >= 1.0 {
            self.level -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One viewer's picture: a subscription that ends when it is dropped.
struct Watching {
    shared: Arc<Shared>,
    key: SubKey,
    slot: FrameSlot,
}

impl Watching {
    fn new(shared: &Arc<Shared>, key: SubKey) -> Self {
        let slot = shared.subscribe(key);
        Self {
            shared: Arc::clone(shared),
            key,
            slot,
        }
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.shared.unsubscribe(self.key);
    }
}

fn error_message(message: &str) -> Message {
    Message::Text(
        json!({"type": "error", "message": message})
            .to_string()
            .into(),
    )
}

/// One WebSocket viewer, until it leaves or stops reading.
async fn client(socket: WebSocket, app: App, peer: SocketAddr) {
    let viewers = app.shared.clients.fetch_add(1, Ordering::SeqCst) + 1;
    tracing::info!("viewer {peer} connected ({viewers} now)");
    let reason = session(socket, &app).await;
    let viewers = app.shared.clients.fetch_sub(1, Ordering::SeqCst) - 1;
    tracing::info!("viewer {peer} left: {reason} ({viewers} now)");
}

async fn session(socket: WebSocket, app: &App) -> String {
    let (mut tx, mut rx) = socket.split();
    let timeout = app.options.send_timeout;
    macro_rules! send {
        ($msg:expr) => {
            match tokio::time::timeout(timeout, tx.send($msg)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return format!("send failed ({e})"),
                Err(_) => return "stopped reading (send timed out)".to_string(),
            }
        };
    }
    let names: Vec<String> = Viz::ALL.iter().map(Viz::name).collect();
    let region = |r: Option<CellBox>| {
        r.map(|b| json!({"x": b.min_x, "y": b.min_y, "width": b.width(), "height": b.height()}))
    };
    let hello = json!({
        "type": "hello",
        "engine": app.engine.name(),
        "d_state": app.d_state,
        "visualizations": names,
        "tools": CLIENT_TOOLS,
        "view": region(app.default_region),
        "max_view_cells": app.options.max_view_cells,
        "max_commands_per_s": app.options.max_commands_per_s,
    });
    send!(Message::Text(hello.to_string().into()));
    let mut status = app.status.clone();
    let current = status.borrow_and_update().to_string();
    send!(Message::Text(current.into()));
    let mut watching = Watching::new(
        &app.shared,
        SubKey {
            viz: Viz::Phase,
            region: app.default_region,
        },
    );
    let rate = f64::from(app.options.max_commands_per_s.max(1));
    let mut bucket = Bucket {
        level: rate,
        rate,
        at: Instant::now(),
    };
    loop {
        tokio::select! {
            incoming = rx.next() => {
                let text = match incoming {
                    None => return "closed".into(),
                    Some(Err(e)) => return format!("read failed ({e})"),
                    Some(Ok(Message::Close(_))) => return "closed".into(),
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Binary(_))) => {
                        send!(error_message("commands are JSON text messages"));
                        continue;
                    }
                    Some(Ok(_)) => continue,
                };
                if text.len() > app.options.max_message_bytes {
                    send!(error_message(&format!(
                        "message of {} bytes refused: at most {}", text.len(), app.options.max_message_bytes
                    )));
                    continue;
                }
                if !bucket.take() {
                    send!(error_message(&format!(
                        "too many commands: at most {} per second", app.options.max_commands_per_s
                    )));
                    continue;
                }
                let command = match parse_command(text.as_str(), app.options.max_view_cells, app.max_cells) {
                    Ok(c) => c,
                    Err(e) => {
                        send!(error_message(&e));
                        continue;
                    }
                };
                let name = command.name();
                let reply = match command {
                    Command::SetViz(viz) => {
                        if let Viz::PhaseChannel(c) = viz {
                            if c >= app.d_state {
                                send!(error_message(&format!(
                                    "set_viz: phase:{c}: the law has channels 0..{}", app.d_state
                                )));
                                continue;
                            }
                        }
                        let key = SubKey { viz, region: watching.key.region };
                        watching = Watching::new(&app.shared, key);
                        Ok(status.borrow().to_string())
                    }
                    Command::View(area) => {
                        if app.engine == EngineKind::Sparse {
                            let key = SubKey { viz: watching.key.viz, region: Some(area) };
                            watching = Watching::new(&app.shared, key);
                        }
                        Ok(status.borrow().to_string())
                    }
                    Command::Snapshot => {
                        let url = match &app.token {
                            Some(t) => format!("/snapshot.safetensors?token={t}"),
                            None => "/snapshot.safetensors".to_string(),
                        };
                        send!(Message::Text(json!({"type": "snapshot", "url": url}).to_string().into()));
                        Ok(status.borrow().to_string())
                    }
                    other => ask(&app.shared, |reply| SimCmd::Client(other, reply)).await,
                };
                match reply {
                    Ok(s) => {
                        // This status is the newest: not sent twice.
                        let _ = status.borrow_and_update();
                        send!(Message::Text(reply_to(&s, name).into()))
                    }
                    Err(e) => send!(error_message(&e)),
                }
                // A new picture may already be there (another viewer's).
                if watching.slot.has_changed().unwrap_or(false) {
                    let frame = watching.slot.borrow_and_update().clone();
                    if let Some(f) = frame {
                        send!(Message::Binary(f));
                    }
                }
            }
            changed = watching.slot.changed() => {
                if changed.is_err() {
                    return "server stopping".into();
                }
                let frame = watching.slot.borrow_and_update().clone();
                if let Some(f) = frame {
                    send!(Message::Binary(f));
                }
            }
            changed = status.changed() => {
                if changed.is_err() {
                    return "server stopping".into();
                }
                let s = status.borrow_and_update().to_string();
                send!(Message::Text(s.into()));
            }
        }
    }
}

/// A status as the answer to command `name`: with `"reply_to": name`.
fn reply_to(status: &str, name: &str) -> String {
    match status.strip_suffix('}') {
        Some(body) if body.len() > 1 => format!("{body},\"reply_to\":\"{name}\"}}"),
        _ => status.to_string(),
    }
}

/// Sends a command to the simulation thread and waits for its answer.
async fn ask<T>(
    shared: &Shared,
    make: impl FnOnce(oneshot::Sender<Result<T, String>>) -> SimCmd,
) -> Result<T, String> {
    let (reply, answer) = oneshot::channel();
    shared
        .cmd
        .try_send(make(reply))
        .map_err(|_| "the simulation is busy: try again".to_string())?;
    match tokio::time::timeout(COMMAND_TIMEOUT, answer).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err("the simulation stopped".into()),
        Err(_) => Err("the simulation did not answer in time".into()),
    }
}

async fn snapshot(State(app): State<App>) -> Response {
    match ask(&app.shared, SimCmd::Snapshot).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"atheria-snapshot.safetensors\"",
                ),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

async fn load(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Response {
    match ask(&app.shared, |reply| SimCmd::Load(body.to_vec(), reply)).await {
        Ok(status) => {
            tracing::info!("{peer}: loaded a state file ({} bytes)", body.len());
            ([(header::CONTENT_TYPE, "application/json")], status).into_response()
        }
        Err(e) => (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "application/json")],
            json!({"type": "error", "message": format!("load: {e}")}).to_string(),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_must_be_this_host_and_tokens_compare_exactly() {
        let h = |origin: Option<&str>, host: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::HOST, host.parse().unwrap());
            if let Some(o) = origin {
                m.insert(header::ORIGIN, o.parse().unwrap());
            }
            origin_allowed(&m)
        };
        assert!(h(None, "127.0.0.1:8080"));
        assert!(h(Some("http://127.0.0.1:8080"), "127.0.0.1:8080"));
        assert!(!h(Some("http://evil.example"), "127.0.0.1:8080"));
        assert!(!h(Some("http://127.0.0.1:9999"), "127.0.0.1:8080"));
        assert!(!h(Some("null"), "127.0.0.1:8080"));
        assert!(same(b"abcdefgh", b"abcdefgh"));
        assert!(!same(b"abcdefgh", b"abcdefgx"));
        assert!(!same(b"abcdefgh", b"abcdefg"));
        assert!(!same(b"", b"a"));
    }
}
