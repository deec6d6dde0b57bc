//! `atheria serve` as a user starts it: the URL it prints, the token rule off
//! loopback (generated, printed, and required at the door), bad tokens
//! refused at start-up.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `atheria serve ARGS` and returns it with the URL it printed.
fn serve(args: &[&str]) -> (Serving, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_atheria"))
        .args(["serve", "--grid", "16", "--port", "0", "--threads", "1"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("atheria runs");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let child = Serving(child);
    let line = rx.recv_timeout(WAIT).expect("a URL in time");
    let url = line
        .strip_prefix("open ")
        .unwrap_or_else(|| panic!("`{line}` is not `open URL`"))
        .to_string();
    (child, url)
}

/// GET `path` on the server at `url`'s host: the status code.
fn get(url: &str, path: &str) -> u16 {
    let host = url
        .strip_prefix("http://")
        .and_then(|r| r.split('/').next())
        .unwrap();
    let mut s = TcpStream::connect(host).expect("connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out[..out.len().min(12)])[9..]
        .parse()
        .expect("status code")
}

#[test]
fn loopback_needs_no_token() {
    let (_s, url) = serve(&[]);
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with('/'),
        "{url}"
    );
    assert_eq!(get(&url, "/"), 200);
}

#[test]
fn any_other_address_gets_a_token_and_the_door_refuses_without_it() {
    let (_s, url) = serve(&["--bind", "0.0.0.0"]);
    let token = url.split("?token=").nth(1).expect("a token in the URL");
    assert_eq!(token.len(), 32);
    assert_eq!(get(&url, "/"), 401);
    assert_eq!(get(&url, "/?token=not-the-token"), 403);
    assert_eq!(get(&url, &format!("/?token={token}")), 200);
    assert_eq!(
        get(&url, &format!("/snapshot.safetensors?token={token}")),
        200
    );
}

#[test]
fn a_given_token_is_used_and_a_bad_one_refused_at_start_up() {
    let (_s, url) = serve(&["--bind", "0.0.0.0", "--token", "our-lab-token"]);
    assert!(url.ends_with("/?token=our-lab-token"), "{url}");
    assert_eq!(get(&url, "/"), 401);
    let out = Command::new(env!("CARGO_BIN_EXE_atheria"))
        .args(["serve", "--grid", "8", "--port", "0", "--token", "a b"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--token"), "{err}");
}
