//! Serve a running [`atheria::Simulation`] to browsers: one page, a
//! WebSocket at `/ws` that streams frames and status and takes commands,
//! a state-file download (`/snapshot.safetensors`) and upload (`/load`).
//!
//! ```no_run
//! use atheria::{InitKind, Simulation};
//! use atheria_serve::{ServeOptions, Server};
//!
//! let sim = Simulation::builder().init(InitKind::Random, 0, 128).build()?;
//! let server = Server::start(sim, ServeOptions::default())?; // 127.0.0.1:8080
//! println!("open {}", server.url());
//! server.wait();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Threads
//! The simulation steps on a thread of its own (a plain `std::thread`,
//! never a tokio or rayon worker); the HTTP server runs on a small tokio
//! runtime ([`ServeOptions::io_threads`], one by default) on another. They
//! talk through a bounded command channel one way and `watch` channels
//! (the newest frame, the newest status) the other: viewers never queue
//! frames, and a slow or stalled one never slows the simulation.
//!
//! # Security
//! Loopback by default. Any other bind address needs a token: given, or
//! generated at start-up ([`access_token`]). With a token in force every
//! route wants it (`?token=`, `Authorization: Bearer`, or `X-Atheria-Token`);
//! a missing one is 401, a wrong one 403, both logged. A WebSocket upgrade
//! whose `Origin` is not the server's own host is 403. Commands are limited
//! in size and rate per client; no route reads a file.

#![warn(missing_docs)]

mod http;
pub mod protocol;
mod sim;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::thread::JoinHandle;

use atheria::Simulation;
use tokio::sync::watch;

pub use protocol::{parse_command, Command, FrameHeader};

/// What can stop a server from starting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A token that cannot be used.
    #[error("--token: {0}")]
    Token(String),
    /// The simulation could not be read (its state, for `reset`).
    #[error(transparent)]
    Simulation(#[from] atheria::Error),
    /// A thread or the runtime could not be started.
    #[error("cannot start the server: {0}")]
    Start(std::io::Error),
}

/// How to serve.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServeOptions {
    /// Address to bind (default 127.0.0.1).
    pub bind: IpAddr,
    /// Port (default 8080; 0 picks a free one: [`Server::local_addr`]).
    pub port: u16,
    /// The access token; `None` on a non-loopback address generates one.
    pub token: Option<String>,
    /// Largest command message a client may send, in bytes (default 64 KiB).
    pub max_message_bytes: usize,
    /// Commands per second per client (default 50); more get an error.
    pub max_commands_per_s: u32,
    /// Largest sparse view, in cells (default 512 x 512).
    pub max_view_cells: usize,
    /// Largest state file `/load` takes, in bytes (default 256 MiB).
    pub max_load_bytes: usize,
    /// A send to a viewer that takes longer than this drops the viewer
    /// (default 10 s).
    pub send_timeout: std::time::Duration,
    /// Threads of the HTTP runtime (default 1).
    pub io_threads: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 8080,
            token: None,
            max_message_bytes: 64 * 1024,
            max_commands_per_s: 50,
            max_view_cells: 512 * 512,
            max_load_bytes: 256 << 20,
            send_timeout: std::time::Duration::from_secs(10),
            io_threads: 1,
        }
    }
}

/// The token in force for a server bound to `bind`: the one given (checked:
/// at least 8 characters, letters, digits and `-._~` only, so that it
/// travels in a URL as it is), none on a loopback address without one, and
/// a fresh random one (32 hex digits) on any other address without one.
pub fn access_token(bind: IpAddr, token: Option<&str>) -> Result<Option<String>, ServeError> {
    match token {
        Some(t) => {
            let ok = t.len() >= 8
                && t.len() <= 256
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c));
            if ok {
                Ok(Some(t.to_string()))
            } else {
                Err(ServeError::Token(
                    "use 8 to 256 letters, digits or -._~".to_string(),
                ))
            }
        }
        None if bind.is_loopback() => Ok(None),
        None => {
            let mut bytes = [0u8; 16];
            getrandom::fill(&mut bytes).map_err(|e| {
                ServeError::Token(format!("no random token ({e}): give one with --token"))
            })?;
            Ok(Some(bytes.iter().map(|b| format!("{b:02x}")).collect()))
        }
    }
}

/// A running server: the simulation thread and the HTTP runtime.
pub struct Server {
    addr: SocketAddr,
    token: Option<String>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    http: Option<JoinHandle<()>>,
    sim: Option<JoinHandle<()>>,
    cmd: std::sync::mpsc::SyncSender<sim::SimCmd>,
    shared: Arc<sim::Shared>,
}

impl Server {
    /// Binds, starts the simulation thread and the HTTP server, and
    /// returns at once; the simulation starts paused.
    pub fn start(sim: Simulation, options: ServeOptions) -> Result<Server, ServeError> {
        let token = access_token(options.bind, options.token.as_deref())?;
        let addr = SocketAddr::new(options.bind, options.port);
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|source| ServeError::Bind { addr, source })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| ServeError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ServeError::Bind { addr, source })?;
        let initial = sim.state()?;
        let (cmd_tx, cmd_rx) = sync_channel(64);
        let shared = Arc::new(sim::Shared::new(cmd_tx.clone()));
        let (status_tx, status_rx) = watch::channel(Arc::<str>::from("{}"));
        let app = http::App {
            shared: Arc::clone(&shared),
            status: status_rx,
            token: token.clone(),
            options: options.clone(),
            engine: sim.engine_kind(),
            d_state: sim.d_state(),
            max_cells: sim.max_cells(),
            default_region: sim::default_region(&sim, options.max_view_cells),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(options.io_threads.max(1))
            .thread_name("atheria-http")
            .enable_all()
            .build()
            .map_err(ServeError::Start)?;
        let sim_thread = sim::SimThread {
            sim,
            initial,
            rx: cmd_rx,
            shared: Arc::clone(&shared),
            status: status_tx,
        };
        let sim = std::thread::Builder::new()
            .name("atheria-sim".into())
            .spawn(move || sim_thread.run())
            .map_err(ServeError::Start)?;
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel();
        let http = std::thread::Builder::new()
            .name("atheria-serve".into())
            .spawn(move || {
                runtime.block_on(http::serve(listener, app, shutdown_rx));
                runtime.shutdown_timeout(std::time::Duration::from_secs(1));
            })
            .map_err(ServeError::Start)?;
        Ok(Server {
            addr,
            token,
            shutdown: Some(shutdown_tx),
            http: Some(http),
            sim: Some(sim),
            cmd: cmd_tx,
            shared,
        })
    }

    /// The address it listens on (the port chosen when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The token in force, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The URL to open, with the token when one is needed; an unspecified
    /// bind address (0.0.0.0, ::) is shown as this machine's loopback.
    pub fn url(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let host = SocketAddr::new(ip, self.addr.port());
        match &self.token {
            Some(t) => format!("http://{host}/?token={t}"),
            None => format!("http://{host}/"),
        }
    }

    /// The simulation's step counter, as of its last step.
    pub fn step_count(&self) -> u64 {
        self.shared.steps.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Runs a command as a viewer's would be run, from this thread (not
    /// from inside an async task: it blocks until the simulation answers).
    /// Per-viewer commands (`set_viz`, `view`, `snapshot`) do nothing here.
    pub fn command(&self, command: Command) -> Result<(), String> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.cmd
            .try_send(sim::SimCmd::Client(command, reply))
            .map_err(|_| "the simulation is busy: try again".to_string())?;
        answer
            .blocking_recv()
            .map_err(|_| "the simulation stopped".to_string())?
            .map(|_| ())
    }

    /// Blocks until the server stops (it stops only on [`Server::shutdown`]
    /// from another handle, or when its threads fail).
    pub fn wait(mut self) {
        if let Some(h) = self.http.take() {
            let _ = h.join();
        }
    }

    /// Stops the server: closes every connection and ends both threads.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = self.cmd.try_send(sim::SimCmd::Shutdown);
        if let Some(h) = self.http.take() {
            let _ = h.join();
        }
        if let Some(h) = self.sim.take() {
            // The command channel may be full: make room until it stops.
            while !h.is_finished() {
                let _ = self.cmd.try_send(sim::SimCmd::Shutdown);
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            let _ = h.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_needed_off_loopback_and_checked_when_given() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let any: IpAddr = "0.0.0.0".parse().unwrap();
        let lan: IpAddr = "192.168.1.5".parse().unwrap();
        assert_eq!(access_token(lo, None).unwrap(), None);
        assert_eq!(access_token("::1".parse().unwrap(), None).unwrap(), None);
        for ip in [any, lan, "::".parse().unwrap()] {
            let t = access_token(ip, None).unwrap().expect("generated");
            assert_eq!(t.len(), 32);
            assert_ne!(
                access_token(ip, None).unwrap().unwrap(),
                t,
                "fresh each time"
            );
        }
        assert_eq!(
            access_token(lan, Some("secret-token")).unwrap().as_deref(),
            Some("secret-token")
        );
        assert!(access_token(lan, Some("short")).is_err());
        assert!(access_token(lo, Some("has space in it")).is_err());
    }
}
