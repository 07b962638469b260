//! The little HTTP/1.1 this port speaks: one bounded request head (GET only, since
//! only a connection that starts with `GET ` gets here), one response, then close.

use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest request head accepted (request line and headers).
pub const MAX_REQUEST: usize = 8 * 1024;
/// Most headers accepted in one request.
pub const MAX_HEADERS: usize = 48;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The request target without its query string.
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The first header of that name (case-insensitive), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }

    /// Does a comma-separated header carry `token` (case-insensitive)?
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum HttpError {
    /// The head grew past MAX_REQUEST or MAX_HEADERS (answered 431).
    TooLarge,
    /// Not HTTP/1.x as far as httparse is concerned (answered 400).
    Malformed(String),
    /// The client closed before the head was complete (nothing to answer).
    Closed,
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::TooLarge => write!(
                f,
                "request head over {MAX_REQUEST} bytes or {MAX_HEADERS} headers"
            ),
            HttpError::Malformed(why) => write!(f, "malformed HTTP request: {why}"),
            HttpError::Closed => write!(f, "closed inside the HTTP request"),
        }
    }
}

/// Parses a complete request head at the start of `buf`: Ok(None) = needs more
/// bytes, Ok(Some((request, head length))).
pub fn parse(buf: &[u8]) -> Result<Option<(Request, usize)>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => {
            let target = req.path.unwrap_or("/");
            let path = target.split(['?', '#']).next().unwrap_or("/").to_string();
            let headers = req
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            Ok(Some((
                Request {
                    method: req.method.unwrap_or("").to_string(),
                    path,
                    headers,
                },
                n,
            )))
        }
        Ok(httparse::Status::Partial) if buf.len() >= MAX_REQUEST => Err(HttpError::TooLarge),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(HttpError::TooLarge),
        Err(e) => Err(HttpError::Malformed(e.to_string())),
    }
}

/// Reads one request head; `buf` holds what was read already (the sniffed `GET `).
/// Returns the request and whatever followed its head.
pub async fn read_request<S: AsyncRead + Unpin>(
    s: &mut S,
    mut buf: Vec<u8>,
) -> Result<(Request, Vec<u8>), HttpError> {
    let mut chunk = [0u8; 1024];
    loop {
        if let Some((req, n)) = parse(&buf[..buf.len().min(MAX_REQUEST)])? {
            return Ok((req, buf.split_off(n)));
        }
        let room = MAX_REQUEST + 1 - buf.len().min(MAX_REQUEST);
        let n = s
            .read(&mut chunk[..room.min(1024)])
            .await
            .map_err(|_| HttpError::Closed)?;
        if n == 0 {
            return Err(HttpError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A complete response with `Connection: close` and a Content-Length.
pub fn response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let reason = match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let mut out = format!("HTTP/1.1 {status} {reason}\r\n").into_bytes();
    for (n, v) in headers {
        out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    if status != 101 {
        out.extend_from_slice(
            format!(
                "Content-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n\
                 X-Content-Type-Options: nosniff\r\n",
                body.len()
            )
            .as_bytes(),
        );
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// A short plain-text error page.
pub fn error(status: u16, text: &str) -> Vec<u8> {
    response(
        status,
        &[("Content-Type", "text/plain; charset=utf-8")],
        format!("{text}\n").as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_complete_head_and_keeps_what_follows() {
        let raw = b"GET /spice-html5/main.js?x=1 HTTP/1.1\r\nHost: a:1\r\nConnection: keep-alive, Upgrade\r\n\r\nrest";
        let (req, n) = parse(raw).unwrap().unwrap();
        assert_eq!(req.method, "GET");
        assert_eq!(req.path, "/spice-html5/main.js");
        assert_eq!(req.header("host"), Some("a:1"));
        assert!(req.header_has_token("connection", "upgrade"));
        assert!(!req.header_has_token("connection", "close"));
        assert_eq!(&raw[n..], b"rest");
    }

    #[test]
    fn partial_heads_wait_and_bounds_hold() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap(), None);
        let mut endless = b"GET / HTTP/1.1\r\n".to_vec();
        while endless.len() < MAX_REQUEST {
            endless.extend_from_slice(b"X-A: b\r\n");
        }
        assert_eq!(parse(&endless), Err(HttpError::TooLarge));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse(&many), Err(HttpError::TooLarge));
        assert!(matches!(
            parse(b"GET /\x01 HTTP/1.1\r\n\r\n"),
            Err(HttpError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn read_request_stops_at_the_bound() {
        // A client that never ends its head is cut off after MAX_REQUEST bytes.
        let endless: Vec<u8> = b"GET / HTTP/1.1\r\n"
            .iter()
            .copied()
            .chain(std::iter::repeat_n(b'a', 3 * MAX_REQUEST))
            .collect();
        let mut r = &endless[4..];
        let got = read_request(&mut r, b"GET ".to_vec()).await;
        assert_eq!(got, Err(HttpError::TooLarge));
        let mut r: &[u8] = b"/ HTTP/1.1\r\nHost: h\r\n\r\n\x81\x80";
        let (req, rest) = read_request(&mut r, b"GET ".to_vec()).await.unwrap();
        assert_eq!(req.path, "/");
        assert_eq!(rest, b"\x81\x80");
        let mut r: &[u8] = b"/ HTTP/1.1\r\nHo";
        assert_eq!(
            read_request(&mut r, b"GET ".to_vec()).await,
            Err(HttpError::Closed)
        );
    }

    #[test]
    fn responses_are_framed() {
        let r = response(200, &[("Content-Type", "text/plain")], b"hi");
        let s = String::from_utf8(r).unwrap();
        assert!(s.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(s.contains("Content-Length: 2\r\n"));
        assert!(s.ends_with("\r\n\r\nhi"));
    }
}
