//! `atheria bench --serve`: the simulation's steps/s under `atheria serve`
//! with 0, 1 and 51 viewers (50 reading, one that never reads), at
//! 128 x 128, D = 64 (the identity conv3x3 law), side by side in one run.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use atheria::{BackendOptions, ComputeBackend, InitKind, Simulation};
use atheria_serve::{Command, ServeOptions, Server};
use serde_json::{json, Value};

use crate::cli::out;

/// The viewer counts measured: none, one, and 50 reading plus one stalled.
const CASES: [usize; 3] = [0, 1, 51];

/// Measures every case `windows` times, alternating; prints the medians.
pub fn run(options: &BackendOptions, windows: usize, secs: f64) -> anyhow::Result<Value> {
    let (spec, tensors) = super::models::in_code::identity_conv(64);
    let backend: Arc<dyn ComputeBackend> = Arc::new(
        atheria::candle::CandleBackend::from_tensors(spec, tensors, options)
            .context("the identity conv3x3 law")?,
    );
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); CASES.len()];
    for w in 0..windows {
        for (i, &viewers) in CASES.iter().enumerate() {
            let r = measure(&backend, viewers, secs)?;
            tracing::info!("window {}: {viewers} viewers: {r:.1} steps/s", w + 1);
            rates[i].push(r);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let medians: Vec<f64> = rates.iter_mut().map(median).collect();
    out!("atheria serve, 128 x 128, D = 64, identity conv3x3 on candle ({windows} windows of {secs} s, median):");
    for (i, &viewers) in CASES.iter().enumerate() {
        let label = match viewers {
            0 => "no viewers".to_string(),
            1 => "1 viewer".to_string(),
            n => format!("{} viewers + 1 stalled", n - 1),
        };
        out!(
            "  {label:<24} {:>7.1} steps/s  ({:+.1}% vs none)",
            medians[i],
            100.0 * (medians[i] / medians[0] - 1.0)
        );
    }
    Ok(json!({"cases": CASES, "steps_per_s": medians, "windows": rates}))
}

/// A WebSocket viewer over a bare socket: the handshake only.
fn viewer(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let mut s = TcpStream::connect(addr)?;
    write!(
        s,
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )?;
    Ok(s)
}

fn measure(backend: &Arc<dyn ComputeBackend>, viewers: usize, secs: f64) -> anyhow::Result<f64> {
    let sim = Simulation::builder()
        .backend(Arc::clone(backend))
        .init(InitKind::Random, 0, 128)
        .build()?;
    let mut options = ServeOptions::default();
    options.port = 0;
    let server = Server::start(sim, options)?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    let mut stalled = Vec::new();
    for i in 0..viewers {
        let mut s = viewer(server.local_addr())?;
        if viewers > 1 && i == 0 {
            stalled.push(s);
            continue;
        }
        s.set_read_timeout(Some(Duration::from_millis(100)))?;
        let stop = Arc::clone(&stop);
        readers.push(std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            while !stop.load(Ordering::Relaxed) {
                if let Ok(0) = s.read(&mut buf) {
                    break;
                }
            }
        }));
    }
    server.command(Command::Play).map_err(anyhow::Error::msg)?;
    std::thread::sleep(Duration::from_secs(1));
    let (s0, t0) = (server.step_count(), Instant::now());
    std::thread::sleep(Duration::from_secs_f64(secs));
    let rate = (server.step_count() - s0) as f64 / t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        let _ = r.join();
    }
    drop(stalled);
    server.shutdown();
    Ok(rate)
}
