//! QMP wire format: splitting the byte stream into JSON values, checking the
//! request envelope, and building greetings, responses and errors with QEMU's
//! classes and texts (qapi/qmp-dispatch.c, qobject/json-streamer.c).

use serde_json::{json, Map, Value};

/// The QEMU version we claim: client libraries (qemu.qmp, libvirt) look at it,
/// and every command we offer has this version's names and shapes.
pub const QEMU_VERSION: (u32, u32, u32) = (8, 2, 0);

/// One JSON message may not exceed this many bytes; past it the client gets an
/// error and is disconnected (QEMU allows 64 MiB; no real command needs 1 MiB).
pub const MAX_MESSAGE: usize = 1 << 20;

/// QEMU's error classes (qapi/error.json).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    GenericError,
    CommandNotFound,
    DeviceNotActive,
    DeviceNotFound,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::GenericError => "GenericError",
            ErrorClass::CommandNotFound => "CommandNotFound",
            ErrorClass::DeviceNotActive => "DeviceNotActive",
            ErrorClass::DeviceNotFound => "DeviceNotFound",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QmpError {
    pub class: ErrorClass,
    pub desc: String,
}

impl QmpError {
    pub fn generic(desc: impl Into<String>) -> Self {
        QmpError {
            class: ErrorClass::GenericError,
            desc: desc.into(),
        }
    }
    pub fn new(class: ErrorClass, desc: impl Into<String>) -> Self {
        QmpError {
            class,
            desc: desc.into(),
        }
    }
}

impl std::fmt::Display for QmpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.class.as_str(), self.desc)
    }
}

pub fn greeting() -> Value {
    let (major, minor, micro) = QEMU_VERSION;
    json!({"QMP": {
        "version": {
            "qemu": {"micro": micro, "minor": minor, "major": major},
            "package": concat!("spicebox ", env!("CARGO_PKG_VERSION")),
        },
        // No "oob": out-of-band execution buys nothing when every client has
        // its own thread.
        "capabilities": [],
    }})
}

fn with_id(mut m: Map<String, Value>, id: Option<Value>) -> Value {
    if let Some(id) = id {
        m.insert("id".into(), id);
    }
    Value::Object(m)
}

pub fn return_response(ret: Value, id: Option<Value>) -> Value {
    let mut m = Map::new();
    m.insert("return".into(), ret);
    with_id(m, id)
}

pub fn error_response(err: &QmpError, id: Option<Value>) -> Value {
    let mut m = Map::new();
    m.insert(
        "error".into(),
        json!({"class": err.class.as_str(), "desc": err.desc}),
    );
    with_id(m, id)
}

/// A checked `{"execute", "arguments", "id"}` object.
#[derive(Debug, PartialEq)]
pub struct Request {
    pub execute: String,
    pub arguments: Map<String, Value>,
}

/// Check the envelope as QEMU's `qmp_dispatch_check_obj` does. The id is
/// returned separately because QEMU echoes it even when the rest is wrong.
pub fn parse_request(v: Value) -> (Option<Value>, Result<Request, QmpError>) {
    let Value::Object(mut obj) = v else {
        return (
            None,
            Err(QmpError::generic("QMP input must be a JSON object")),
        );
    };
    let id = obj.remove("id");
    let check = || -> Result<Request, QmpError> {
        let mut execute = None;
        let mut arguments = Map::new();
        for (k, v) in obj {
            match (k.as_str(), v) {
                ("execute", Value::String(s)) => execute = Some(s),
                ("execute", _) => {
                    return Err(QmpError::generic(
                        "QMP input member 'execute' must be a string",
                    ))
                }
                ("arguments", Value::Object(a)) => arguments = a,
                ("arguments", _) => {
                    return Err(QmpError::generic(
                        "QMP input member 'arguments' must be an object",
                    ))
                }
                // Includes "exec-oob": we never offer the oob capability.
                (other, _) => {
                    return Err(QmpError::generic(format!(
                        "QMP input member '{other}' is unexpected"
                    )))
                }
            }
        }
        let execute =
            execute.ok_or_else(|| QmpError::generic("QMP input lacks member 'execute'"))?;
        Ok(Request { execute, arguments })
    };
    (id, check())
}

/// What the splitter found in the byte stream.
#[derive(Debug, PartialEq)]
pub enum Frame {
    /// The bytes of one complete top-level JSON value (maybe invalid JSON).
    Message(Vec<u8>),
    /// More than `MAX_MESSAGE` bytes without completing a value.
    TooLong,
}

/// Splits a byte stream into top-level JSON values the way QEMU's streamer
/// does: by counting braces and brackets outside strings. Clients need not end
/// messages with a newline (qemu.qmp does not), and may put several on a line.
#[derive(Default)]
pub struct Splitter {
    buf: Vec<u8>,
    depth: usize,
    in_string: bool,
    escape: bool,
}

impl Splitter {
    /// Feed bytes; complete frames are appended to `out`. After `TooLong`
    /// the caller should drop the connection: the rest of the stream has no
    /// reliable message boundary.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Frame>) {
        for &b in bytes {
            if self.in_string {
                self.buf.push(b);
                if self.escape {
                    self.escape = false;
                } else if b == b'\\' {
                    self.escape = true;
                } else if b == b'"' {
                    self.in_string = false;
                    if self.depth == 0 {
                        self.emit(out);
                    }
                }
            } else {
                match b {
                    b' ' | b'\t' | b'\r' | b'\n' => {
                        if self.depth == 0 {
                            // Ends a top-level scalar such as `42` or `nul`.
                            self.emit(out);
                        } else {
                            self.buf.push(b);
                        }
                    }
                    b'{' | b'[' | b'"' => {
                        if self.depth == 0 {
                            self.emit(out);
                        }
                        self.buf.push(b);
                        if b == b'"' {
                            self.in_string = true;
                        } else {
                            self.depth += 1;
                        }
                    }
                    b'}' | b']' => {
                        self.buf.push(b);
                        // A stray closer at top level is emitted alone and
                        // fails to parse, as in QEMU.
                        self.depth = self.depth.saturating_sub(1);
                        if self.depth == 0 {
                            self.emit(out);
                        }
                    }
                    _ => self.buf.push(b),
                }
            }
            if self.buf.len() > MAX_MESSAGE {
                *self = Splitter::default();
                out.push(Frame::TooLong);
                return;
            }
        }
    }

    fn emit(&mut self, out: &mut Vec<Frame>) {
        if !self.buf.is_empty() {
            self.depth = 0;
            out.push(Frame::Message(std::mem::take(&mut self.buf)));
        }
    }
}

/// Parse one frame; a syntax error carries QEMU's "JSON parse error, " prefix.
pub fn parse_frame(bytes: &[u8]) -> Result<Value, QmpError> {
    serde_json::from_slice(bytes).map_err(|e| QmpError::generic(format!("JSON parse error, {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<Frame> {
        let mut s = Splitter::default();
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, &mut out);
        }
        out
    }

    fn msg(s: &str) -> Frame {
        Frame::Message(s.as_bytes().to_vec())
    }

    #[test]
    fn splits_without_newlines_and_across_reads() {
        let out = split(&[
            b"{\"execute\":\"a\"}{\"exe",
            b"cute\":\"b\", \"arguments\": {\"x\": \"}{\\\"\"}}\n",
        ]);
        assert_eq!(
            out,
            vec![
                msg("{\"execute\":\"a\"}"),
                msg("{\"execute\":\"b\", \"arguments\": {\"x\": \"}{\\\"\"}}"),
            ]
        );
    }

    #[test]
    fn scalars_and_strays_are_messages() {
        let out = split(&[b"42 \"str\"[1] } garbage\n"]);
        assert_eq!(
            out,
            vec![
                msg("42"),
                msg("\"str\""),
                msg("[1]"),
                msg("}"),
                msg("garbage")
            ]
        );
        assert!(parse_frame(b"}").is_err());
        let e = parse_frame(b"garbage").unwrap_err();
        assert!(e.desc.starts_with("JSON parse error, "), "{e}");
    }

    #[test]
    fn too_long_without_end() {
        let mut s = Splitter::default();
        let mut out = Vec::new();
        s.feed(b"{\"execute\": \"", &mut out);
        let chunk = vec![b'a'; 64 * 1024];
        for _ in 0..17 {
            s.feed(&chunk, &mut out);
        }
        assert_eq!(out, vec![Frame::TooLong]);
    }

    #[test]
    fn envelope_errors_have_qemu_texts() {
        let check = |v: Value| parse_request(v).1.unwrap_err().desc;
        assert_eq!(check(json!([1])), "QMP input must be a JSON object");
        assert_eq!(check(json!({"id": 1})), "QMP input lacks member 'execute'");
        assert_eq!(
            check(json!({"execute": 1})),
            "QMP input member 'execute' must be a string"
        );
        assert_eq!(
            check(json!({"execute": "x", "arguments": []})),
            "QMP input member 'arguments' must be an object"
        );
        assert_eq!(
            check(json!({"exec-oob": "x"})),
            "QMP input member 'exec-oob' is unexpected"
        );
        let (id, r) = parse_request(json!({"execute": "x", "id": {"a": 1}, "bogus": 1}));
        assert_eq!(id, Some(json!({"a": 1})), "the id is echoed even on error");
        assert!(r.is_err());
        let (id, r) = parse_request(json!({"execute": "x", "arguments": {"k": 1}}));
        assert_eq!(id, None);
        assert_eq!(r.unwrap().arguments["k"], 1);
    }

    #[test]
    fn responses() {
        assert_eq!(
            return_response(json!({}), Some(json!("i"))),
            json!({"return": {}, "id": "i"})
        );
        assert_eq!(
            error_response(&QmpError::generic("x"), None),
            json!({"error": {"class": "GenericError", "desc": "x"}})
        );
        let g = greeting();
        assert_eq!(g["QMP"]["version"]["qemu"]["major"], 8);
        assert!(g["QMP"]["capabilities"].as_array().unwrap().is_empty());
    }
}
