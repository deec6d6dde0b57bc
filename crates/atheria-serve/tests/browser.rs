//! The page in a real browser: headless Chromium from Debian's packages
//! (`chromium`, `chromium-driver`; scripts/setup-browser.sh installs them),
//! driven over WebDriver. Frames arrive, the vortex tool clicked onto the
//! canvas changes the field there within a second, pause stops the step
//! counter; screenshots at 1280 x 800 and 420 px wide are saved under
//! `<target>/serve-artifacts/` (and to docs/images/serve.png with
//! `ATHERIA_UPDATE_SCREENSHOT=1`).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use atheria::{InitKind, Simulation};
use atheria_serve::{ServeOptions, Server};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

struct Driver {
    child: Child,
    port: u16,
    session: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = request(
            self.port,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One WebDriver request; the `value` of its answer.
fn request(port: u16, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(WAIT)).unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    // chromedriver may keep the connection open: read what Content-Length says.
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let (at, length) = loop {
        let n = s.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before the headers".into());
        }
        out.extend_from_slice(&buf[..n]);
        if let Some(p) = out.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&out[..p]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or("no Content-Length")?;
            break (p + 4, length);
        }
    };
    while out.len() < at + length {
        let n = s.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    let data = out[at..(at + length).min(out.len())].to_vec();
    let v: Value = serde_json::from_slice(&data)
        .map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&data)))?;
    if v["value"].get("error").is_some() {
        return Err(v["value"].to_string());
    }
    Ok(v["value"].clone())
}

impl Driver {
    fn start() -> Driver {
        let binary = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("chromedriver is missing: run scripts/setup-browser.sh (apt-get install chromium chromium-driver)");
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let until = Instant::now() + WAIT;
        while request(port, "GET", "/status", None).map(|v| v["ready"] == true) != Ok(true) {
            assert!(Instant::now() < until, "chromedriver did not become ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,800", "--hide-scrollbars"]
        }}}});
        let v = request(port, "POST", "/session", Some(&caps)).expect("a browser session");
        let session = v["sessionId"].as_str().unwrap().to_string();
        Driver {
            child,
            port,
            session,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        request(self.port, method, &path, body.as_ref()).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn js(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    fn wait_for(&self, what: &str, script: &str, within: Duration) -> Value {
        let until = Instant::now() + within;
        loop {
            let v = self.js(script);
            if v != Value::Null && v != Value::Bool(false) {
                return v;
            }
            assert!(Instant::now() < until, "{what}: not within {within:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn click(&self, css: &str) {
        let e = self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        let id = e
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap()
            .to_string();
        self.call("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    fn click_at(&self, x: i64, y: i64) {
        let actions = json!({"actions": [{"type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"},
        "actions": [
            {"type": "pointerMove", "duration": 0, "origin": "viewport", "x": x, "y": y},
            {"type": "pointerDown", "button": 0},
            {"type": "pointerUp", "button": 0}
        ]}]});
        self.call("POST", "/actions", Some(actions));
    }

    fn screenshot(&self, name: &str) -> PathBuf {
        let b64 = self.call("GET", "/screenshot", None);
        let png = base64(b64.as_str().unwrap());
        let dir = artifacts();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, png).unwrap();
        path
    }
}

fn base64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let clean: Vec<u8> = s.bytes().filter(|c| !b"=\r\n".contains(c)).collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |a, (i, &c)| a | (val(c) as u32) << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// `<target>/serve-artifacts`.
fn artifacts() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../serve-artifacts")
}

/// A sum of the canvas's pixels in a box of cells around (x, y) (the
/// whole canvas without a box).
const PIXELS: &str = "const c = document.getElementById('field'); const f = window.atheria.frame;
  if (!f) return null; const g = c.getContext('2d');
  const d = g.getImageData(0, 0, c.width, c.height).data; let s = 0;
  for (let i = 0; i < d.length; i += 7) s = (s * 31 + d[i]) % 1000000007; return s;";

fn box_sum(x: i64, y: i64, r: i64) -> String {
    format!(
        "const c = document.getElementById('field'); const f = window.atheria.frame; if (!f) return null;
         const g = c.getContext('2d'); const k = f.scale;
         const d = g.getImageData(({x} - {r} - f.x) * k, ({y} - {r} - f.y) * k, (2 * {r} + 1) * k, (2 * {r} + 1) * k).data;
         let s = 0; for (let i = 0; i < d.length; i++) s += d[i]; return s;"
    )
}

/// Clicks the canvas at cell (cx, cy) with the selected tool and returns the
/// milliseconds, timed in the page, from its sending the tool command to the
/// canvas around the cell changing. Fails if no click sends a command or the
/// change never comes.
fn vortex_latency(driver: &Driver, cx: i64, cy: i64) -> f64 {
    let at = driver.js(&format!(
        "const c = document.getElementById('field'); const f = window.atheria.frame; const r = c.getBoundingClientRect();
         const k = Math.min(r.width / f.w, r.height / f.h);
         const ox = r.left + (r.width - f.w * k) / 2, oy = r.top + (r.height - f.h * k) / 2;
         return [Math.round(ox + ({cx} - f.x + 0.5) * f.scale * k), Math.round(oy + ({cy} - f.y + 0.5) * f.scale * k)];"
    ));
    // The page records when it sends a tool command and, polling its own
    // canvas every few milliseconds, when the box around the cell changes.
    let sum = box_sum(cx, cy, 4);
    driver.js(&format!(
        "const sum = () => {{ {sum} }};
         window.__sent = null; window.__shown = null; const before = sum();
         if (!window.__send) {{
           window.__send = WebSocket.prototype.send;
           WebSocket.prototype.send = function (d) {{
             if (window.__sent === null && typeof d === 'string' && d.includes('\"tool\"')) window.__sent = performance.now();
             return window.__send.call(this, d);
           }};
         }}
         clearInterval(window.__watch);
         window.__watch = setInterval(() => {{
           if (window.__sent !== null && window.__shown === null && sum() !== before) {{
             window.__shown = performance.now(); clearInterval(window.__watch);
           }}
         }}, 5);
         return true;"
    ));
    for attempt in 1..=3 {
        driver.click_at(at[0].as_i64().unwrap(), at[1].as_i64().unwrap());
        let t = Instant::now();
        let sent = loop {
            if driver.js("return window.__sent !== null") == json!(true) {
                break true;
            }
            if t.elapsed() > Duration::from_secs(2) {
                break false;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if sent {
            break;
        }
        eprintln!("click {attempt} sent no tool command; clicking again");
        assert!(
            attempt < 3,
            "three clicks on the canvas sent no tool command"
        );
    }
    let ms = driver.wait_for(
        "the vortex on the canvas",
        "return window.__shown === null ? null : window.__shown - window.__sent",
        WAIT,
    );
    ms.as_f64().expect("a number of milliseconds")
}

#[test]
fn the_page_shows_live_frames_and_its_controls_work() {
    let sim = Simulation::builder()
        .init(InitKind::Random, 5, 96)
        .threads(1)
        .build()
        .expect("simulation");
    let mut options = ServeOptions::default();
    options.port = 0;
    let server = Server::start(sim, options).expect("server");
    let driver = Driver::start();
    driver.call("POST", "/url", Some(json!({"url": server.url()})));
    driver.wait_for(
        "a first frame",
        "return window.atheria && window.atheria.frames > 0",
        WAIT,
    );
    driver.wait_for(
        "the status",
        "return document.getElementById('conn').dataset.state === 'open'",
        WAIT,
    );

    // Play: frames arrive and the canvas changes between two reads.
    driver.click("#play");
    driver.wait_for(
        "running",
        "return window.atheria.status && window.atheria.status.running",
        WAIT,
    );
    let a = driver.wait_for("pixels", PIXELS, WAIT);
    let until = Instant::now() + WAIT;
    loop {
        std::thread::sleep(Duration::from_millis(300));
        if driver.js(PIXELS) != a {
            break;
        }
        assert!(
            Instant::now() < until,
            "the canvas never changed while running"
        );
    }
    std::thread::sleep(Duration::from_secs(2));
    let shot = driver.screenshot("serve.png");
    if std::env::var_os("ATHERIA_UPDATE_SCREENSHOT").is_some() {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/images/serve.png");
        std::fs::copy(&shot, docs).unwrap();
    }

    // Pause: the step counter stops.
    driver.click("#play");
    driver.wait_for(
        "paused",
        "return window.atheria.status && !window.atheria.status.running",
        WAIT,
    );
    std::thread::sleep(Duration::from_millis(300));
    let step = driver.js("return document.getElementById('step').textContent");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        driver.js("return document.getElementById('step').textContent"),
        step,
        "paused"
    );

    // The vortex tool clicked onto the canvas at a cell changes the field
    // around that cell within a second. The second is timed inside the page,
    // from the moment it sends the tool command to the moment the canvas
    // around the cell differs, so that the latency of WebDriver's own calls
    // on a loaded machine is not counted. A click the browser lost (an input
    // race of WebDriver) sends no command and is clicked again; a slow
    // machine gets three tries at three cells, each of which must show.
    driver.click("[data-tool=vortex]");
    let mut latencies = Vec::new();
    for (attempt, (cx, cy)) in [(30i64, 60i64), (60, 30), (70, 70)].into_iter().enumerate() {
        let latency = vortex_latency(&driver, cx, cy);
        eprintln!(
            "vortex {} at ({cx}, {cy}) visible {latency:.0} ms after the page sent it",
            attempt + 1
        );
        latencies.push(latency);
        if latency < 1000.0 {
            break;
        }
    }
    assert!(
        latencies.iter().any(|&ms| ms < 1000.0),
        "the vortex never showed within a second of the page sending it (ms: {latencies:?})"
    );
    assert_eq!(
        driver.js("return document.getElementById('step').textContent"),
        step,
        "a tool takes no step"
    );

    // A narrow window: the layout stacks.
    driver.call(
        "POST",
        "/window/rect",
        Some(json!({"width": 420, "height": 900})),
    );
    std::thread::sleep(Duration::from_millis(500));
    let narrow = driver.screenshot("serve-narrow.png");
    eprintln!("screenshots: {} {}", shot.display(), narrow.display());
    drop(driver);
    server.shutdown();
}
