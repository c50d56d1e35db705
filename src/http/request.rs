//! HTTP/1.1 request heads (RFC 9112), sans-I/O: `httparse` reads the syntax; this file bounds
//! what a peer may make us buffer and decides the message framing, each refusal with its 4xx
//! or 5xx status.

/// The most header fields one request may carry (more is 431).
pub const MAX_HEADERS: usize = 64;

/// What a request may make the server buffer.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of the request line (414 beyond).
    pub max_request_line: usize,
    /// Bytes of the whole head, request line included (431 beyond).
    pub max_header_bytes: usize,
    /// Bytes of body (413 beyond).
    pub max_body: usize,
}

/// A request head, borrowed from the connection's buffer.
#[derive(Debug)]
pub struct Request<'h, 'b> {
    /// The method, case-sensitive (RFC 9110 §9.1).
    pub method: &'b str,
    /// The path of the target, without the query; `*` for an asterisk-form `OPTIONS`.
    pub path: &'b str,
    /// HTTP/1.`minor`.
    pub minor: u8,
    /// Every header field, in order.
    pub headers: &'h [httparse::Header<'b>],
    /// Bytes of the head, the final empty line included.
    pub head_len: usize,
    /// Bytes of body that follow the head (Content-Length; 0 without one).
    pub body_len: usize,
    /// The connection persists after the response (RFC 9112 §9.3).
    pub keep_alive: bool,
    /// The client waits for `100 Continue` before sending the body (RFC 9110 §10.1.1).
    pub expect_continue: bool,
}

/// Why a request is refused before it reaches a handler; the connection closes after the
/// answer, since what follows the refused head cannot be framed reliably.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    /// The status code.
    pub status: u16,
    /// A short text for the body and the log.
    pub reason: &'static str,
}

const fn reject(status: u16, reason: &'static str) -> Reject {
    Reject { status, reason }
}

impl<'h, 'b> Request<'h, 'b> {
    /// The value of the first header field named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'b [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// The value of the first header field named `name`, if it is text.
    pub fn header_str(&self, name: &str) -> Option<&'b str> {
        self.header(name)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::trim)
    }

    /// Whether any field named `name` lists `token` (a comma-separated list, RFC 9110 §5.6.1;
    /// case-insensitive).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        has_token(self.headers, name, token)
    }
}

fn has_token(headers: &[httparse::Header<'_>], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Parse the head at the start of `buf`. `Ok(None)`: more bytes are needed (and allowed).
pub fn parse<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [httparse::Header<'b>; MAX_HEADERS],
    limits: &Limits,
) -> Result<Option<Request<'h, 'b>>, Reject> {
    // RFC 9112 §2.2: empty lines before the request line are ignored (httparse skips them);
    // they count toward the head's bound, not the request line's.
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let line = &buf[start..];
    match memchr::memchr(b'\n', line) {
        Some(end) if end > limits.max_request_line + 1 => {
            return Err(reject(414, "request line too long"))
        }
        None if line.len() > limits.max_request_line + 1 => {
            return Err(reject(414, "request line too long"))
        }
        _ => {}
    }
    let mut req = httparse::Request::new(headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > limits.max_header_bytes {
                return Err(reject(431, "request header fields too large"));
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(reject(431, "too many header fields")),
        // 505 for another HTTP version; anything else is not HTTP/1.x at all.
        Err(httparse::Error::Version) if other_http_version(line) => {
            return Err(reject(505, "HTTP/1.0 or 1.1 only"))
        }
        Err(_) => return Err(reject(400, "malformed request head")),
    };
    if head_len > limits.max_header_bytes {
        return Err(reject(431, "request header fields too large"));
    }
    let method = req.method.unwrap_or_default();
    let target = req.path.unwrap_or_default();
    let minor = req.version.unwrap_or(1);
    let headers: &'h [httparse::Header<'b>] = req.headers;
    let path = target_path(method, target).ok_or(reject(400, "bad request target"))?;

    // RFC 9112 §3.2: an HTTP/1.1 request has exactly one Host.
    let hosts = headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"))
        .count();
    if hosts > 1 || (minor >= 1 && hosts == 0) {
        return Err(reject(400, "a request needs exactly one Host header"));
    }
    let body_len = body_length(headers, limits)?;
    let expect_continue = match headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("expect"))
    {
        None => false,
        Some(h) if h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue") => true,
        Some(_) => return Err(reject(417, "only Expect: 100-continue is understood")),
    };
    let keep_alive = if minor >= 1 {
        !has_token(headers, "connection", "close")
    } else {
        has_token(headers, "connection", "keep-alive")
    };
    Ok(Some(Request {
        method,
        path,
        minor,
        headers,
        head_len,
        body_len,
        keep_alive,
        expect_continue,
    }))
}

/// Whether the request line ends in `HTTP/<digit>...` (a version we do not speak).
fn other_http_version(line: &[u8]) -> bool {
    let end = memchr::memchr(b'\r', line)
        .or_else(|| memchr::memchr(b'\n', line))
        .unwrap_or(line.len());
    let version = line[..end]
        .rsplit(|&b| b == b' ')
        .next()
        .unwrap_or_default();
    version
        .strip_prefix(b"HTTP/")
        .is_some_and(|v| v.first().is_some_and(u8::is_ascii_digit))
}

/// The path of a request target (RFC 9112 §3.2): origin-form `/p?q`, absolute-form
/// `http://host/p?q`, or `*` for `OPTIONS`.
fn target_path<'b>(method: &str, target: &'b str) -> Option<&'b str> {
    if target == "*" {
        return (method == "OPTIONS").then_some(target);
    }
    let origin_form = if target.starts_with('/') {
        target
    } else {
        let rest = target
            .strip_prefix("http://")
            .or_else(|| target.strip_prefix("https://"))?;
        match rest.find('/') {
            Some(i) => &rest[i..],
            None => "/",
        }
    };
    Some(origin_form.split(['?', '#']).next().unwrap_or("/"))
}

/// The body's length (RFC 9112 §6.3): Content-Length, or none. Chunked bodies are refused
/// with 411 (§6.3 allows asking for a length), conflicting framing with 400.
fn body_length(headers: &[httparse::Header<'_>], limits: &Limits) -> Result<usize, Reject> {
    if let Some(te) = headers
        .iter()
        .rev()
        .find(|h| h.name.eq_ignore_ascii_case("transfer-encoding"))
    {
        if headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("content-length"))
        {
            return Err(reject(400, "both Transfer-Encoding and Content-Length"));
        }
        let last = te.value.rsplit(|&b| b == b',').next().unwrap_or_default();
        if last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
            return Err(reject(411, "send the body with a Content-Length"));
        }
        return Err(reject(400, "unknown transfer coding"));
    }
    let mut len: Option<u64> = None;
    for h in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
    {
        // A list of identical values is allowed (§6.3 item 5); anything else is not.
        for v in h.value.split(|&b| b == b',') {
            let v = v.trim_ascii();
            if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
                return Err(reject(400, "bad Content-Length"));
            }
            let n = std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or(reject(400, "bad Content-Length"))?;
            if len.is_some_and(|l| l != n) {
                return Err(reject(400, "conflicting Content-Length"));
            }
            len = Some(n);
        }
    }
    let len = len.unwrap_or(0);
    if len > limits.max_body as u64 {
        return Err(reject(413, "request body too large"));
    }
    Ok(len as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_request_line: 64,
        max_header_bytes: 256,
        max_body: 1000,
    };

    /// (method, path, head length, body length, keep-alive, expect 100-continue)
    type Summary = (String, String, usize, usize, bool, bool);

    fn run(buf: &[u8]) -> Result<Option<Summary>, Reject> {
        let mut h = [httparse::EMPTY_HEADER; MAX_HEADERS];
        parse(buf, &mut h, &LIMITS).map(|r| {
            r.map(|r| {
                (
                    r.method.to_string(),
                    r.path.to_string(),
                    r.head_len,
                    r.body_len,
                    r.keep_alive,
                    r.expect_continue,
                )
            })
        })
    }

    fn status(buf: &[u8]) -> u16 {
        run(buf).expect_err("refused").status
    }

    #[test]
    fn a_complete_head_whole_and_cut_at_every_offset() {
        let req = b"\r\nPOST /http-bind?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
        let whole = run(req).unwrap().unwrap();
        assert_eq!(
            whole,
            (
                "POST".into(),
                "/http-bind".into(),
                req.len() - 5,
                5,
                true,
                false
            )
        );
        let head = req.len() - 5;
        for cut in 0..head {
            assert_eq!(run(&req[..cut]).unwrap(), None, "cut at {cut}");
        }
        for cut in head..=req.len() {
            assert_eq!(run(&req[..cut]).unwrap().unwrap(), whole, "cut at {cut}");
        }
    }

    #[test]
    fn rfc9112_9_3_persistence_by_version_and_connection() {
        let ka = |r: &[u8]| run(r).unwrap().unwrap().4;
        assert!(ka(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(!ka(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: x, Close\r\n\r\n"
        ));
        assert!(!ka(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(ka(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
    }

    #[test]
    fn rfc9112_3_2_targets() {
        let path = |r: &[u8]| run(r).unwrap().unwrap().1;
        assert_eq!(
            path(b"GET http://a/x/y?q HTTP/1.1\r\nHost: a\r\n\r\n"),
            "/x/y"
        );
        assert_eq!(path(b"GET https://a HTTP/1.1\r\nHost: a\r\n\r\n"), "/");
        assert_eq!(path(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"), "*");
        assert_eq!(status(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET x HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    }

    #[test]
    fn host_is_required_once_in_http_1_1() {
        assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
        assert!(run(b"GET / HTTP/1.0\r\n\r\n").unwrap().is_some());
    }

    #[test]
    fn bounds_414_431_413() {
        let long_line = format!("GET /{} HTTP/1.1\r\n", "a".repeat(64));
        assert_eq!(status(long_line.as_bytes()), 414);
        // Refused before the line ends: nothing more is buffered for it.
        assert_eq!(status(&long_line.as_bytes()[..70]), 414);
        let at_limit = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(50));
        assert_eq!(at_limit.find('\r'), Some(64));
        assert!(run(at_limit.as_bytes()).unwrap().is_some());
        let mut big = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        while big.len() <= 256 {
            big.extend_from_slice(b"X-A: bbbbbbbbbbbbbbbbbbbbbbbbbb\r\n");
        }
        assert_eq!(status(&big), 431, "partial head over the bound");
        big.extend_from_slice(b"\r\n");
        assert_eq!(status(&big), 431, "complete head over the bound");
        let mut many = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for _ in 0..MAX_HEADERS {
            many.extend_from_slice(b"A: b\r\n");
        }
        many.extend_from_slice(b"\r\n");
        let mut h = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let limits = Limits {
            max_header_bytes: 4096,
            ..LIMITS
        };
        assert_eq!(parse(&many, &mut h, &limits).unwrap_err().status, 431);
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n"),
            413
        );
        assert_eq!(
            run(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n")
                .unwrap()
                .unwrap()
                .3,
            1000
        );
    }

    #[test]
    fn rfc9112_6_3_body_framing() {
        let head = |fields: &str| format!("POST / HTTP/1.1\r\nHost: a\r\n{fields}\r\n");
        assert_eq!(
            status(head("Transfer-Encoding: chunked\r\n").as_bytes()),
            411
        );
        assert_eq!(status(head("Transfer-Encoding: gzip\r\n").as_bytes()), 400);
        assert_eq!(
            status(head("Transfer-Encoding: chunked\r\nContent-Length: 3\r\n").as_bytes()),
            400
        );
        for bad in ["-1", "+3", "3 4", "", "0x10", "99999999999999999999"] {
            let r = head(&format!("Content-Length: {bad}\r\n"));
            assert_eq!(status(r.as_bytes()), 400, "{bad:?}");
        }
        assert_eq!(
            status(head("Content-Length: 3\r\nContent-Length: 4\r\n").as_bytes()),
            400
        );
        let same = head("Content-Length: 3, 3\r\nContent-Length: 3\r\n");
        assert_eq!(run(same.as_bytes()).unwrap().unwrap().3, 3);
    }

    #[test]
    fn expect_and_versions() {
        let r = b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\n";
        assert!(run(r).unwrap().unwrap().5);
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: something\r\n\r\n"),
            417
        );
        assert_eq!(status(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505);
        assert_eq!(status(b"NOT HTTP AT ALL\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost a\r\n\r\n"), 400);
        assert_eq!(status(b"\x00\x01 / HTTP/1.1\r\n\r\n"), 400);
    }

    #[test]
    fn header_lookup_and_tokens() {
        let buf = b"GET / HTTP/1.1\r\nHost: a\r\nconnection: keep-alive, Upgrade\r\nUPGRADE: WebSocket\r\n\r\n";
        let mut h = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let r = parse(buf, &mut h, &LIMITS).unwrap().unwrap();
        assert!(r.has_token("Connection", "upgrade"));
        assert!(!r.has_token("Connection", "close"));
        assert_eq!(r.header_str("upgrade"), Some("WebSocket"));
        assert_eq!(r.header("missing"), None);
    }
}
