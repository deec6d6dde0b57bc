//! The WebSocket protocol end to end: every command, the status contract,
//! frames, bad commands, tokens, Origin, many viewers, a stalled one and
//! one that leaves mid-frame.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use atheria::EngineKind;
use common::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_answers_with_a_status_and_frames_decode() {
    let _serial = one_at_a_time().await;
    let server = server(EngineKind::Dense, 24, |_| {});
    let mut ws = connect(server.local_addr(), None).await;
    let hello = next_json(&mut ws, "hello").await;
    assert_eq!(hello["engine"], "dense");
    assert_eq!(hello["visualizations"].as_array().unwrap().len(), 14);
    let status = next_json(&mut ws, "status").await;
    for key in ["step", "running", "steps_per_s", "metrics"] {
        assert!(status.get(key).is_some(), "status lacks {key}: {status}");
    }
    assert_eq!(status["running"], false);
    for key in ["norm", "energy", "entropy", "epoch"] {
        assert!(status["metrics"][key].is_number(), "metrics lack {key}");
    }
    let (h, px) = next_frame(&mut ws, Some("phase")).await;
    assert_eq!((h.width, h.height, h.channels, h.scale), (24, 24, 3, 1));
    assert_eq!(px.len(), 24 * 24 * 3);

    let s = command(&mut ws, r#"{"command":"step","args":{"count":3}}"#).await;
    assert_eq!(
        (s["type"].as_str(), s["step"].as_u64()),
        (Some("status"), Some(3))
    );
    let (h, _) = next_frame(&mut ws, None).await;
    assert!(h.step >= 3);

    let s = command(&mut ws, r#"{"command":"set_gamma","args":{"gamma":0.02}}"#).await;
    assert!((s["gamma"].as_f64().unwrap() - 0.02).abs() < 1e-6, "{s}");
    let s = command(
        &mut ws,
        r#"{"command":"set_speed","args":{"steps_per_s":40}}"#,
    )
    .await;
    assert_eq!(s["speed"], 40.0);

    let s = command(&mut ws, r#"{"command":"play"}"#).await;
    assert_eq!(s["running"], true);
    // At least once a second while running, with the step advancing.
    let t = Instant::now();
    let a = next_json(&mut ws, "status").await;
    let b = next_json(&mut ws, "status").await;
    assert!(t.elapsed() < Duration::from_secs(3));
    assert!(b["step"].as_u64() > a["step"].as_u64() || b["step"].as_u64() > Some(3));
    let s = command(&mut ws, r#"{"command":"pause"}"#).await;
    assert_eq!(s["running"], false);
    let paused_at = s["step"].as_u64().unwrap();

    let s = command(
        &mut ws,
        r#"{"command":"set_viz","args":{"viz":"holographic"}}"#,
    )
    .await;
    assert_eq!(s["type"], "status");
    let (h, px) = next_frame(&mut ws, Some("holographic")).await;
    assert_eq!(px.len(), (h.width * h.height * 3) as usize);
    // Every visualization draws, holographic_bulk as five layers side by side.
    for name in hello["visualizations"].as_array().unwrap() {
        let name = name.as_str().unwrap();
        let s = command(
            &mut ws,
            &format!(r#"{{"command":"set_viz","args":{{"viz":"{name}"}}}}"#),
        )
        .await;
        assert_eq!(s["type"], "status", "{name}: {s}");
        let (h, px) = next_frame(&mut ws, Some(name)).await;
        assert_eq!(px.len(), (h.width * h.height * 3) as usize, "{name}");
        assert!(h.width >= 24 && h.height >= 24, "{name}");
    }

    let before = next_frame_after(&mut ws, r#"{"command":"set_viz","args":{"viz":"phase"}}"#).await;
    let s = command(
        &mut ws,
        r#"{"command":"tool","args":{"name":"vortex","x":12,"y":12,"radius":4,"strength":1}}"#,
    )
    .await;
    assert_eq!(s["type"], "status", "{s}");
    assert_eq!(s["step"].as_u64(), Some(paused_at), "a tool takes no step");
    let (_, after) = next_frame(&mut ws, Some("phase")).await;
    assert_ne!(before, after, "the vortex shows in the next frame");
    for tool in [
        r#"{"name":"wave","k_x":2,"k_y":1}"#,
        r#"{"name":"collapse","x":5,"y":5,"intensity":0.3,"seed":1}"#,
        r#"{"name":"phase_vortex","x":8,"y":8,"charge":2,"core":2}"#,
    ] {
        let s = command(&mut ws, &format!(r#"{{"command":"tool","args":{tool}}}"#)).await;
        assert_eq!(s["type"], "status", "{tool}: {s}");
    }
    // view is for the sparse engine; on the dense grid it changes nothing.
    let s = command(
        &mut ws,
        r#"{"command":"view","args":{"x":0,"y":0,"width":8,"height":8}}"#,
    )
    .await;
    assert_eq!(s["type"], "status");

    send(&mut ws, r#"{"command":"snapshot"}"#).await;
    let snap = next_json(&mut ws, "snapshot").await;
    assert_eq!(snap["url"], "/snapshot.safetensors");
    assert_eq!(answer(&mut ws).await["reply_to"], "snapshot");
    let (code, file) = http(server.local_addr(), "GET", "/snapshot.safetensors", b"");
    assert_eq!(code, 200);
    assert!(file.len() > 24 * 24 * 2 * 4, "a whole state file");

    let s = command(&mut ws, r#"{"command":"reset"}"#).await;
    assert_eq!(s["step"].as_u64(), Some(0));
    // Loading the snapshot brings its step back.
    let (code, body) = http(server.local_addr(), "POST", "/load", &file);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let s: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(s["step"].as_u64(), Some(paused_at));
    let (code, _) = http(server.local_addr(), "POST", "/load", b"not a state file");
    assert_eq!(code, 400);
    server.shutdown();
}

async fn next_frame_after(ws: &mut Ws, cmd: &str) -> Vec<u8> {
    command(ws, cmd).await;
    next_frame(ws, Some("phase")).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_commands_get_errors_and_change_nothing() {
    let _serial = one_at_a_time().await;
    let server = server(EngineKind::Dense, 16, |o| o.max_commands_per_s = 50);
    let mut ws = connect(server.local_addr(), None).await;
    let start = next_json(&mut ws, "status").await["step"].as_u64();
    let huge = format!(
        r#"{{"command":"step","args":{{"pad":"{}"}}}}"#,
        "x".repeat(70 * 1024)
    );
    for bad in [
        "{not json",
        "[]",
        r#"{"command":"launch"}"#,
        r#"{"command":"step","args":{"count":-1}}"#,
        r#"{"command":"step","args":{"count":"two"}}"#,
        r#"{"command":"set_gamma","args":{"gamma":"NaN"}}"#,
        r#"{"command":"set_viz","args":{"viz":"phase:999"}}"#,
        r#"{"command":"tool","args":{"name":"stamp","x":1,"y":1,"file":"/etc/passwd"}}"#,
        r#"{"command":"tool","args":{"name":"vortex","x":1000,"y":1000}}"#,
        r#"{"command":"view","args":{"x":0,"y":0,"width":0,"height":5}}"#,
        huge.as_str(),
    ] {
        let r = command(&mut ws, bad).await;
        assert_eq!(r["type"], "error", "{bad:.80} -> {r}");
        assert!(r["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // Binary messages are not commands.
    use futures_util::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::Binary(
        vec![1, 2, 3].into(),
    ))
    .await
    .unwrap();
    assert_eq!(reply(&mut ws).await["type"], "error");
    // Nothing changed; the connection still works.
    let s = command(&mut ws, r#"{"command":"pause"}"#).await;
    assert_eq!(s["step"].as_u64(), start);
    assert_eq!(s["gamma"].as_f64(), Some(0.0));
    // The rate limit: a burst of 120 commands gets errors beyond the budget.
    for _ in 0..120 {
        send(&mut ws, r#"{"command":"pause"}"#).await;
    }
    let mut errors = 0;
    for _ in 0..120 {
        let r = answer(&mut ws).await;
        if r["type"] == "error" {
            assert!(r["message"].as_str().unwrap().contains("too many"));
            errors += 1;
        }
    }
    assert!(errors >= 50, "{errors} refused of 120");
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_required_on_every_route_and_origin_is_checked() {
    let _serial = one_at_a_time().await;
    let server = server(EngineKind::Dense, 16, |o| {
        o.token = Some("s3cret-token".into())
    });
    let addr = server.local_addr();
    assert!(server.url().ends_with("/?token=s3cret-token"));
    assert_eq!(http(addr, "GET", "/", b"").0, 401);
    assert_eq!(http(addr, "GET", "/?token=wrong-token", b"").0, 403);
    assert_eq!(http(addr, "GET", "/snapshot.safetensors", b"").0, 401);
    assert_eq!(http(addr, "POST", "/load", b"x").0, 401);
    let (code, page) = http(addr, "GET", "/?token=s3cret-token", b"");
    assert_eq!(code, 200);
    assert!(String::from_utf8_lossy(&page).contains("<canvas"));
    assert_eq!(
        http(addr, "GET", "/snapshot.safetensors?token=s3cret-token", b"").0,
        200
    );
    assert_eq!(try_connect(&ws_url(addr, None), &[]).await.err(), Some(401));
    assert_eq!(
        try_connect(&ws_url(addr, Some("nope-nope")), &[])
            .await
            .err(),
        Some(403)
    );
    let url = ws_url(addr, Some("s3cret-token"));
    assert!(
        try_connect(&url, &[("authorization", "Bearer s3cret-token")])
            .await
            .is_ok()
    );
    let evil = try_connect(&url, &[("origin", "http://evil.example")]).await;
    assert_eq!(evil.err(), Some(403));
    let own = format!("http://{addr}");
    assert!(try_connect(&url, &[("origin", own.as_str())]).await.is_ok());
    assert_eq!(
        http(addr, "GET", "/../../etc/passwd?token=s3cret-token", b"").0,
        404
    );
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_viewers_and_a_stalled_one_do_not_stop_the_simulation() {
    let _serial = one_at_a_time().await;
    let server = server(EngineKind::Dense, 64, |o| {
        o.send_timeout = Duration::from_secs(3)
    });
    let addr = server.local_addr();
    // One viewer that never reads: its socket buffers fill, its sends time out.
    let stalled = connect(addr, None).await;
    let mut viewers = Vec::new();
    for _ in 0..50 {
        viewers.push(connect(addr, None).await);
    }
    let mut lead = viewers.pop().unwrap();
    command(
        &mut lead,
        r#"{"command":"set_viz","args":{"viz":"density"}}"#,
    )
    .await;
    command(&mut lead, r#"{"command":"play"}"#).await;
    let readers: Vec<_> = viewers
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let mut frames = 0u32;
                let until = Instant::now() + Duration::from_secs(6);
                while Instant::now() < until {
                    if let In::Frame(..) = next(&mut ws).await {
                        frames += 1;
                    }
                }
                frames
            })
        })
        .collect();
    let rss0 = rss();
    let first = next_json(&mut lead, "status").await["step"]
        .as_u64()
        .unwrap();
    let mut last = first;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(6) {
        let s = next_json(&mut lead, "status").await;
        last = s["step"].as_u64().unwrap();
    }
    assert!(
        last > first + 5,
        "steps advance with 51 viewers: {first} -> {last}"
    );
    let mut total = 0;
    for r in readers {
        let frames = r.await.unwrap();
        assert!(frames >= 2, "every reading viewer gets frames ({frames})");
        total += frames;
    }
    let grown = rss().saturating_sub(rss0);
    assert!(grown < 64 << 20, "memory grew {grown} bytes");
    eprintln!(
        "51 viewers: steps {first} -> {last} in 6 s, {total} frames to 49 readers, rss +{} KiB",
        grown >> 10
    );
    drop(stalled);
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_that_leaves_mid_frame_harms_no_one() {
    let _serial = one_at_a_time().await;
    let server = server(EngineKind::Dense, 64, |_| {});
    let addr = server.local_addr();
    let mut lead = connect(addr, None).await;
    command(&mut lead, r#"{"command":"play"}"#).await;
    for _ in 0..5 {
        // A raw WebSocket handshake, part of a frame read, then gone.
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        write!(
            s,
            "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        while got.len() < 2000 {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "the server answers");
            got.extend_from_slice(&buf[..n]);
        }
        assert!(got.starts_with(b"HTTP/1.1 101"));
        drop(s);
    }
    let a = next_json(&mut lead, "status").await["step"]
        .as_u64()
        .unwrap();
    let mut b = a;
    let t = Instant::now();
    while b <= a + 2 && t.elapsed() < WAIT {
        b = next_json(&mut lead, "status").await["step"]
            .as_u64()
            .unwrap();
    }
    assert!(b > a + 2, "still stepping: {a} -> {b}");
    let (h, px) = next_frame(&mut lead, None).await;
    assert_eq!(px.len(), (h.width * h.height * 3) as usize);
    let s = command(&mut lead, r#"{"command":"pause"}"#).await;
    assert_eq!(s["viewers"].as_u64(), Some(1), "the leavers are gone: {s}");
    server.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sparse_engine_sends_the_region_in_view() {
    let _serial = one_at_a_time().await;
    let server = server(EngineKind::Sparse, 32, |_| {});
    let mut ws = connect(server.local_addr(), None).await;
    let hello = next_json(&mut ws, "hello").await;
    assert_eq!(hello["engine"], "sparse");
    let v = &hello["view"];
    let (h, _) = next_frame(&mut ws, None).await;
    assert_eq!(
        (h.x as i64, h.width as i64),
        (v["x"].as_i64().unwrap(), v["width"].as_i64().unwrap())
    );
    let s = command(
        &mut ws,
        r#"{"command":"view","args":{"x":-1000,"y":500,"width":40,"height":30}}"#,
    )
    .await;
    assert_eq!(s["type"], "status");
    let until = Instant::now() + WAIT;
    loop {
        let (h, px) = next_frame(&mut ws, None).await;
        if (h.x, h.y, h.width, h.height) == (-1000, 500, 40, 30) {
            // Far from the matter: all vacuum grey.
            assert!(px.chunks(3).all(|c| c == [40, 40, 44]));
            break;
        }
        assert!(Instant::now() < until, "no frame of the new view");
    }
    // A tool far out creates matter there, and the view shows it.
    let s = command(
        &mut ws,
        r#"{"command":"tool","args":{"name":"phase_vortex","x":-980,"y":515,"charge":1,"core":2}}"#,
    )
    .await;
    assert_eq!(s["type"], "status", "{s}");
    let (_, px) = next_frame(&mut ws, None).await;
    assert!(px.chunks(3).any(|c| c != [40, 40, 44]));
    let too_big = command(
        &mut ws,
        r#"{"command":"view","args":{"x":0,"y":0,"width":4096,"height":4096}}"#,
    )
    .await;
    assert_eq!(too_big["type"], "error");
    server.shutdown();
}
