//! The wire protocol: commands a client sends (JSON text), and the binary
//! frame format the server sends. The README's "Protocol" section is the
//! reference a client is written from; this module is its implementation.

use std::io::{Read, Write};

use atheria::instruments::parse::parse_tool;
use atheria::{CellBox, Tool, Viz};
use serde_json::{Map, Value};

/// The first four bytes of every binary frame.
pub const MAGIC: [u8; 4] = *b"ATHF";
/// The frame format's version.
pub const VERSION: u8 = 1;
/// Header flag: the pixels are zlib-compressed (RFC 1950, what a
/// browser's `DecompressionStream("deflate")` reads).
pub const FLAG_DEFLATE: u8 = 1;
/// Bytes of the fixed part of a frame header (the visualization's name
/// follows it).
pub const HEADER_LEN: usize = 34;
/// The most steps one `step` command takes.
pub const MAX_STEP_COUNT: u64 = 1000;
/// Tools a client may apply (`stamp` reads a file on the server, so it is
/// not one of them).
pub const CLIENT_TOOLS: [&str; 6] = [
    "vortex",
    "wave",
    "collapse",
    "phase_vortex",
    "click_out",
    "inject_energy",
];

/// A command from a client, checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Step continuously.
    Play,
    /// Stop stepping.
    Pause,
    /// Take `count` steps (1 to [`MAX_STEP_COUNT`]) now.
    Step {
        /// How many.
        count: u64,
    },
    /// Go back to the state the server started with.
    Reset,
    /// Show this visualization to this client.
    SetViz(Viz),
    /// At most this many steps per second (`None`: as fast as it goes).
    SetSpeed(Option<f64>),
    /// Change the decay term gamma.
    SetGamma(f32),
    /// Apply a tool.
    Tool(Tool),
    /// Show this client this box of the sparse lattice.
    View(CellBox),
    /// Make the current state available for download.
    Snapshot,
}

impl Command {
    /// The command's name on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Play => "play",
            Command::Pause => "pause",
            Command::Step { .. } => "step",
            Command::Reset => "reset",
            Command::SetViz(_) => "set_viz",
            Command::SetSpeed(_) => "set_speed",
            Command::SetGamma(_) => "set_gamma",
            Command::Tool(_) => "tool",
            Command::View(_) => "view",
            Command::Snapshot => "snapshot",
        }
    }
}

/// Parses and checks one command message (`{"command": NAME, "args":
/// {...}}`). `max_view_cells` caps a `view`'s area; `max_cells` the cells
/// a tool may touch. The error is one line for the client.
pub fn parse_command(
    text: &str,
    max_view_cells: usize,
    max_cells: usize,
) -> Result<Command, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("malformed JSON: {e}"))?;
    let Value::Object(mut top) = value else {
        return Err("a command is a JSON object {\"command\": NAME, \"args\": {...}}".into());
    };
    let name = match top.remove("command") {
        Some(Value::String(s)) => s,
        _ => return Err("missing \"command\" (a string)".into()),
    };
    let args = match top.remove("args") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(format!("{name}: \"args\" must be an object")),
    };
    if let Some(k) = top.keys().next() {
        return Err(format!(
            "{name}: unknown field \"{k}\" (use \"command\" and \"args\")"
        ));
    }
    let a = Args { name: &name, args };
    match name.as_str() {
        "play" => a.none().map(|()| Command::Play),
        "pause" => a.none().map(|()| Command::Pause),
        "reset" => a.none().map(|()| Command::Reset),
        "snapshot" => a.none().map(|()| Command::Snapshot),
        "step" => {
            a.only(&["count"])?;
            let count = match a.args.get("count") {
                None => 1,
                Some(v) => v
                    .as_u64()
                    .filter(|n| (1..=MAX_STEP_COUNT).contains(n))
                    .ok_or_else(|| format!("step: count must be a whole number from 1 to {MAX_STEP_COUNT}"))?,
            };
            Ok(Command::Step { count })
        }
        "set_viz" => {
            a.only(&["viz"])?;
            let v = a.string("viz")?;
            v.parse::<Viz>().map(Command::SetViz).map_err(|e| format!("set_viz: {e}"))
        }
        "set_speed" => {
            a.only(&["steps_per_s"])?;
            match a.args.get("steps_per_s") {
                None | Some(Value::Null) => Ok(Command::SetSpeed(None)),
                Some(v) => {
                    let s = v
                        .as_f64()
                        .filter(|s| s.is_finite() && (0.0..=1e6).contains(s))
                        .ok_or("set_speed: steps_per_s must be a number from 0 to 1e6, or null (0 or null: as fast as it goes)")?;
                    Ok(Command::SetSpeed((s > 0.0).then_some(s)))
                }
            }
        }
        "set_gamma" => {
            a.only(&["gamma"])?;
            let g = a
                .args
                .get("gamma")
                .and_then(Value::as_f64)
                .filter(|g| g.is_finite() && *g >= 0.0 && *g <= 1e6)
                .ok_or("set_gamma: gamma must be a finite number >= 0")?;
            Ok(Command::SetGamma(g as f32))
        }
        "view" => {
            a.only(&["x", "y", "width", "height"])?;
            let int = |k: &str| -> Result<i64, String> {
                a.args
                    .get(k)
                    .and_then(Value::as_i64)
                    .ok_or_else(|| format!("view: {k} must be a whole number"))
            };
            let (x, y, w, h) = (int("x")?, int("y")?, int("width")?, int("height")?);
            if w < 1 || h < 1 || (w * h) as u64 > max_view_cells as u64 {
                return Err(format!(
                    "view: width and height must be at least 1 and cover at most {max_view_cells} cells"
                ));
            }
            let fits = |v: i64, n: i64| v >= i32::MIN as i64 && v + n - 1 <= i32::MAX as i64;
            if !fits(x, w) || !fits(y, h) {
                return Err("view: the box must lie on the lattice (i32 coordinates)".into());
            }
            CellBox::from_origin(x as i32, y as i32, w as usize, h as usize)
                .map(Command::View)
                .map_err(|e| format!("view: {e}"))
        }
        "tool" => parse_tool_command(&a.args, max_cells).map(Command::Tool),
        other => Err(format!(
            "unknown command `{other}`: use play, pause, step, reset, set_viz, set_speed, set_gamma, tool, view or snapshot"
        )),
    }
}

/// A command's arguments, for checks.
struct Args<'a> {
    name: &'a str,
    args: Map<String, Value>,
}

impl Args<'_> {
    fn none(&self) -> Result<(), String> {
        self.only(&[])
    }

    fn only(&self, keys: &[&str]) -> Result<(), String> {
        match self.args.keys().find(|k| !keys.contains(&k.as_str())) {
            Some(k) if keys.is_empty() => {
                Err(format!("{}: takes no arguments (got \"{k}\")", self.name))
            }
            Some(k) => Err(format!(
                "{}: unknown argument \"{k}\" (use {})",
                self.name,
                keys.join(", ")
            )),
            None => Ok(()),
        }
    }

    fn string(&self, key: &str) -> Result<&str, String> {
        self.args
            .get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{}: {key} must be a string", self.name))
    }
}

/// `{"name": "vortex", "x": 10, "y": 20, "radius": 6}`: the tool-string keys
/// of docs/instruments.md, through the one tool parser.
fn parse_tool_command(args: &Map<String, Value>, max_cells: usize) -> Result<Tool, String> {
    let name = args
        .get("name")
        .and_then(Value::as_str)
        .ok_or("tool: name must be a string")?;
    if !CLIENT_TOOLS.contains(&name) {
        return Err(format!(
            "tool: `{name}` is not available here: use {}",
            CLIENT_TOOLS.join(", ")
        ));
    }
    let mut parts = Vec::new();
    for (k, v) in args.iter().filter(|(k, _)| k.as_str() != "name") {
        let text = match v {
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::String(s) => s.clone(),
            _ => {
                return Err(format!(
                    "tool {name}: {k} must be a number, a boolean or a word"
                ))
            }
        };
        // Nothing that the tool-string syntax gives a meaning to.
        let plain = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-+".contains(c))
        };
        if !plain(k) || !plain(&text) {
            return Err(format!(
                "tool {name}: `{k}` = `{text}` is not a plain key and value"
            ));
        }
        parts.push(format!("{k}={text}"));
    }
    let spec = format!("{name}:{}", parts.join(","));
    parse_tool(&spec, max_cells)
        .map(|t| t.tool)
        .map_err(|e| e.to_string())
}

/// A binary frame's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameHeader {
    /// [`FLAG_DEFLATE`] when the pixels are compressed.
    pub flags: u8,
    /// Bytes per pixel: 3 (RGB, what the server sends) or 1.
    pub channels: u8,
    /// Pixels per cell along each axis.
    pub scale: u8,
    /// Pixels per row.
    pub width: u32,
    /// Rows.
    pub height: u32,
    /// The step the picture shows.
    pub step: u64,
    /// The lattice x of the picture's first column.
    pub x: i32,
    /// The lattice y of the picture's first row.
    pub y: i32,
    /// The visualization's name (`phase`, `phase:3`, ...).
    pub viz: String,
}

/// A frame that cannot be decoded.
#[derive(Debug, thiserror::Error)]
#[error("bad frame: {0}")]
pub struct FrameError(String);

impl FrameHeader {
    /// The whole message: header, name, then `pixels` (compressed when it
    /// saves at least a tenth; the flag says so).
    pub fn encode(&self, pixels: &[u8]) -> Vec<u8> {
        let mut flags = self.flags & !FLAG_DEFLATE;
        let mut payload = None;
        if pixels.len() >= 1024 {
            let mut z = flate2::write::ZlibEncoder::new(
                Vec::with_capacity(pixels.len() / 2),
                flate2::Compression::fast(),
            );
            if z.write_all(pixels).is_ok() {
                if let Ok(c) = z.finish() {
                    if c.len() * 10 < pixels.len() * 9 {
                        flags |= FLAG_DEFLATE;
                        payload = Some(c);
                    }
                }
            }
        }
        let name = self.viz.as_bytes();
        let body = payload.as_deref().unwrap_or(pixels);
        let mut out = Vec::with_capacity(HEADER_LEN + name.len() + body.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&[VERSION, flags, self.channels, self.scale]);
        out.extend_from_slice(&self.width.to_le_bytes());
        out.extend_from_slice(&self.height.to_le_bytes());
        out.extend_from_slice(&self.step.to_le_bytes());
        out.extend_from_slice(&self.x.to_le_bytes());
        out.extend_from_slice(&self.y.to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(body);
        out
    }

    /// Decodes a whole frame message: the header and the pixels,
    /// decompressed, checked to be `width * height * channels` bytes.
    pub fn decode(bytes: &[u8]) -> Result<(FrameHeader, Vec<u8>), FrameError> {
        let bad = |s: &str| FrameError(s.to_string());
        if bytes.len() < HEADER_LEN || bytes[..4] != MAGIC {
            return Err(bad("no ATHF header"));
        }
        if bytes[4] != VERSION {
            return Err(FrameError(format!(
                "version {} (this client reads {VERSION})",
                bytes[4]
            )));
        }
        let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
        let name_len = u16::from_le_bytes([bytes[32], bytes[33]]) as usize;
        let name = bytes
            .get(HEADER_LEN..HEADER_LEN + name_len)
            .ok_or_else(|| bad("name runs past the end"))?;
        let header = FrameHeader {
            flags: bytes[5],
            channels: bytes[6],
            scale: bytes[7],
            width: u32_at(8),
            height: u32_at(12),
            step: u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes")),
            x: u32_at(24) as i32,
            y: u32_at(28) as i32,
            viz: String::from_utf8(name.to_vec()).map_err(|_| bad("name is not UTF-8"))?,
        };
        let body = &bytes[HEADER_LEN + name_len..];
        let want = header.width as usize * header.height as usize * header.channels as usize;
        let pixels = if header.flags & FLAG_DEFLATE != 0 {
            let mut out = Vec::with_capacity(want);
            flate2::read::ZlibDecoder::new(body)
                .take(want as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| FrameError(format!("inflate: {e}")))?;
            out
        } else {
            body.to_vec()
        };
        if pixels.len() != want {
            return Err(FrameError(format!(
                "{} pixel bytes for {} x {} x {}",
                pixels.len(),
                header.width,
                header.height,
                header.channels
            )));
        }
        Ok((header, pixels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_compressed_or_not() {
        let h = FrameHeader {
            flags: 0,
            channels: 3,
            scale: 1,
            width: 40,
            height: 30,
            step: 7,
            x: -5,
            y: 9,
            viz: "phase:2".into(),
        };
        let flat = vec![17u8; 40 * 30 * 3];
        let m = h.encode(&flat);
        assert!(m[5] & FLAG_DEFLATE != 0 && m.len() < flat.len() / 4);
        let (got, px) = FrameHeader::decode(&m).unwrap();
        assert_eq!((got.flags, px), (FLAG_DEFLATE, flat));
        assert_eq!(FrameHeader { flags: 0, ..got }, h);
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let noise: Vec<u8> = (0..3600)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 56) as u8
            })
            .collect();
        let m = h.encode(&noise);
        assert_eq!(m[5] & FLAG_DEFLATE, 0);
        assert_eq!(FrameHeader::decode(&m).unwrap().1, noise);
        assert!(FrameHeader::decode(&m[..20]).is_err());
    }

    #[test]
    fn commands_parse_and_bad_ones_say_why() {
        let p = |s: &str| parse_command(s, 1 << 18, 1 << 20);
        assert_eq!(p(r#"{"command":"play"}"#), Ok(Command::Play));
        assert_eq!(
            p(r#"{"command":"step","args":{"count":3}}"#),
            Ok(Command::Step { count: 3 })
        );
        assert_eq!(
            p(r#"{"command":"set_speed","args":{"steps_per_s":null}}"#),
            Ok(Command::SetSpeed(None))
        );
        assert_eq!(
            p(r#"{"command":"set_viz","args":{"viz":"phase:1"}}"#),
            Ok(Command::SetViz(Viz::PhaseChannel(1)))
        );
        assert!(matches!(
            p(r#"{"command":"tool","args":{"name":"vortex","x":3,"y":4,"radius":2}}"#),
            Ok(Command::Tool(_))
        ));
        for bad in [
            "{",
            "[1]",
            r#"{"command":"fly"}"#,
            r#"{"command":"play","args":{"x":1}}"#,
            r#"{"command":"step","args":{"count":0}}"#,
            r#"{"command":"set_gamma","args":{"gamma":-1}}"#,
            r#"{"command":"tool","args":{"name":"stamp","x":1,"y":1,"file":"/etc/passwd"}}"#,
            r#"{"command":"tool","args":{"name":"vortex","x":"1,y=2","y":1}}"#,
            r#"{"command":"view","args":{"x":0,"y":0,"width":100000,"height":100000}}"#,
        ] {
            assert!(p(bad).is_err(), "{bad}");
        }
    }
}
