//! The page in a real browser: headless Chromium from Debian's packages
//! (`chromium`, `chromium-driver`; scripts/setup-browser.sh installs them),
//! driven over WebDriver (fantoccini). Frames arrive, the vortex tool clicked onto the
//! canvas changes the field there within a second, pause stops the step
//! counter; screenshots at 1280 x 800 and 420 px wide are saved under
//! `<target>/serve-artifacts/` (and to docs/images/serve.png with
//! `ATHERIA_UPDATE_SCREENSHOT=1`).

use std::future::Future;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use atheria::{InitKind, Simulation};
use atheria_serve::{ServeOptions, Server};
use fantoccini::actions::{InputSource, MouseActions, PointerAction, MOUSE_BUTTON_LEFT};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);
/// How long a vortex may take to show at all (one that shows but takes more
/// than a second is retried at the next cell).
const VORTEX_WAIT: Duration = Duration::from_secs(10);

/// chromedriver and one browser session on it, driven by fantoccini (a
/// WebDriver client) from this synchronous test: every call is bounded by
/// [`WAIT`], so a browser that stops answering fails the test, never hangs it.
struct Driver {
    runtime: tokio::runtime::Runtime,
    client: Option<Client>,
    child: Child,
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = self.runtime.block_on(within(client.close()));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `future`, or `Err` after [`WAIT`] (the timer made inside the runtime).
async fn within<T>(future: impl Future<Output = T>) -> Result<T, tokio::time::error::Elapsed> {
    tokio::time::timeout(WAIT, future).await
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
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let caps = json!({"goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,800", "--hide-scrollbars"]
        }});
        let caps = caps.as_object().unwrap().clone();
        let url = format!("http://127.0.0.1:{port}");
        // chromedriver takes a moment to listen: retry the session until WAIT.
        let until = Instant::now() + WAIT;
        let client = loop {
            let attempt = runtime.block_on(within(
                ClientBuilder::new(HttpConnector::new())
                    .capabilities(caps.clone())
                    .connect(&url),
            ));
            match attempt {
                Ok(Ok(client)) => break client,
                Ok(Err(_)) if Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Ok(Err(e)) => panic!("no browser session from chromedriver: {e}"),
                Err(_) => panic!("chromedriver did not answer within {WAIT:?}"),
            }
        };
        Driver {
            runtime,
            client: Some(client),
            child,
        }
    }

    /// Runs one WebDriver command, failing the test when it errs or takes
    /// longer than [`WAIT`].
    fn run<T, E: std::fmt::Display, F: Future<Output = Result<T, E>>>(
        &self,
        what: &str,
        command: impl FnOnce(Client) -> F,
    ) -> T {
        let client = self.client.clone().expect("a session");
        match self.runtime.block_on(within(command(client))) {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => panic!("{what}: {e}"),
            Err(_) => panic!("{what}: no answer within {WAIT:?}"),
        }
    }

    fn goto(&self, url: &str) {
        let url = url.to_string();
        self.run("open the page", |c| async move { c.goto(&url).await });
    }

    fn js(&self, script: &str) -> Value {
        let script = script.to_string();
        self.run("run a script", |c| async move {
            c.execute(&script, Vec::new()).await
        })
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
        let css = css.to_string();
        self.run(&format!("click {css}"), |c| async move {
            c.find(Locator::Css(&css)).await?.click().await
        });
    }

    /// A left click at (x, y) pixels of the viewport.
    fn click_at(&self, x: i64, y: i64) {
        let mouse = MouseActions::new("mouse".to_string())
            .then(PointerAction::MoveTo {
                duration: Some(Duration::ZERO),
                x: x as f64,
                y: y as f64,
            })
            .then(PointerAction::Down {
                button: MOUSE_BUTTON_LEFT,
            })
            .then(PointerAction::Up {
                button: MOUSE_BUTTON_LEFT,
            });
        self.run("click the canvas", |c| async move {
            c.perform_actions(mouse).await
        });
    }

    fn resize(&self, width: u32, height: u32) {
        self.run("resize the window", |c| async move {
            c.set_window_size(width, height).await
        });
    }

    fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.run("take a screenshot", |c| async move { c.screenshot().await });
        let dir = artifacts();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, png).unwrap();
        path
    }
}

/// `<target>/serve-artifacts`.
fn artifacts() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../serve-artifacts")
}

/// A hash of the whole canvas (every seventh byte of its pixels).
const PIXELS: &str = "const c = document.getElementById('field'); const f = window.atheria.frame;
  if (!f) return null; const g = c.getContext('2d');
  const d = g.getImageData(0, 0, c.width, c.height).data; let s = 0;
  for (let i = 0; i < d.length; i += 7) s = (s * 31 + d[i]) % 1000000007; return s;";

/// A hash of the canvas's pixels in a box of cells around (x, y): any
/// change of any byte shows. (Not their sum: the phase picture's colour
/// wheel keeps R + G + B nearly constant, so a vortex that turns every
/// pixel of the box to another hue left a sum of its bytes unchanged in
/// about one run in fifteen.)
fn box_hash(x: i64, y: i64, r: i64) -> String {
    format!(
        "const c = document.getElementById('field'); const f = window.atheria.frame; if (!f) return null;
         const g = c.getContext('2d'); const k = f.scale;
         const d = g.getImageData(({x} - {r} - f.x) * k, ({y} - {r} - f.y) * k, (2 * {r} + 1) * k, (2 * {r} + 1) * k).data;
         let s = 0; for (let i = 0; i < d.length; i++) s = (s * 31 + d[i]) % 1000000007; return s;"
    )
}

/// Clicks the canvas at cell (cx, cy) with the selected tool and returns the
/// milliseconds, timed in the page, from its sending the tool command to the
/// canvas around the cell changing. Fails if no click sends a command or the
/// change does not come within [`VORTEX_WAIT`].
fn vortex_latency(driver: &Driver, cx: i64, cy: i64) -> f64 {
    let at = driver.js(&format!(
        "const c = document.getElementById('field'); const f = window.atheria.frame; const r = c.getBoundingClientRect();
         const k = Math.min(r.width / f.w, r.height / f.h);
         const ox = r.left + (r.width - f.w * k) / 2, oy = r.top + (r.height - f.h * k) / 2;
         return [Math.round(ox + ({cx} - f.x + 0.5) * f.scale * k), Math.round(oy + ({cy} - f.y + 0.5) * f.scale * k)];"
    ));
    // The page records when it sends a tool command and, polling its own
    // canvas every few milliseconds, when the box around the cell changes.
    let hash = box_hash(cx, cy, 4);
    driver.js(&format!(
        "const hash = () => {{ {hash} }};
         window.__sent = null; window.__shown = null; const before = hash();
         if (!window.__send) {{
           window.__send = WebSocket.prototype.send;
           WebSocket.prototype.send = function (d) {{
             if (window.__sent === null && typeof d === 'string' && d.includes('\"tool\"')) window.__sent = performance.now();
             return window.__send.call(this, d);
           }};
         }}
         clearInterval(window.__watch);
         window.__watch = setInterval(() => {{
           if (window.__sent !== null && window.__shown === null && hash() !== before) {{
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
    let until = Instant::now() + VORTEX_WAIT;
    loop {
        let ms =
            driver.js("return window.__shown === null ? null : window.__shown - window.__sent");
        if let Some(ms) = ms.as_f64() {
            return ms;
        }
        assert!(
            Instant::now() < until,
            "the vortex at ({cx}, {cy}) was sent and never changed the canvas around it within {VORTEX_WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
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
    driver.goto(&server.url());
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
    // machine gets three tries at three cells, one of which must show
    // within a second.
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
    driver.resize(420, 900);
    std::thread::sleep(Duration::from_millis(500));
    let narrow = driver.screenshot("serve-narrow.png");
    eprintln!("screenshots: {} {}", shot.display(), narrow.display());
    drop(driver);
    server.shutdown();
}
