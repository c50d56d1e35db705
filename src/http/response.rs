//! HTTP/1.1 responses (RFC 9112 §4, §6) and the CORS headers (Fetch standard) that let web
//! pages on other origins call the XMPP endpoints.

use super::config::Cors;

/// A response head under construction; [`Response::write`] appends it and the body.
pub struct Response<'a> {
    status: u16,
    fields: smallvec::SmallVec<[(&'a str, &'a str); 8]>,
}

impl<'a> Response<'a> {
    /// A response with `status`.
    pub fn new(status: u16) -> Response<'a> {
        Response {
            status,
            fields: smallvec::SmallVec::new(),
        }
    }

    /// Adds a header field.
    pub fn header(mut self, name: &'a str, value: &'a str) -> Response<'a> {
        self.fields.push((name, value));
        self
    }

    /// Adds the CORS fields for a request from `origin` under `cors` (none when the request
    /// has no `Origin` or the origin is not allowed).
    pub fn cors(mut self, cors: &'a Cors, origin: Option<&'a str>) -> Response<'a> {
        match cors {
            Cors::Any => {
                if origin.is_some() {
                    self.fields.push(("Access-Control-Allow-Origin", "*"));
                }
            }
            Cors::Only(_) => {
                // The answer depends on the origin: caches must key on it.
                self.fields.push(("Vary", "Origin"));
                if let Some(o) = allowed(cors, origin) {
                    self.fields.push(("Access-Control-Allow-Origin", o));
                }
            }
        }
        self
    }

    /// The status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Appends the head and `body` to `out`: `Date` and `Server`, `Content-Length` (except for
    /// 1xx, 204 and 304, RFC 9110 §8.6), and `Connection: close` unless `keep_alive`. A `HEAD`
    /// request gets the head alone (`head_only`), with the length the body would have.
    pub fn write(
        &self,
        out: &mut Vec<u8>,
        date: &str,
        body: &[u8],
        keep_alive: bool,
        head_only: bool,
    ) {
        use std::io::Write;
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\nDate: {date}\r\nServer: xmppd\r\n",
            self.status,
            reason(self.status)
        );
        for (name, value) in &self.fields {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        let bodyless = self.status < 200 || self.status == 204 || self.status == 304;
        if !bodyless {
            let _ = write!(out, "Content-Length: {}\r\n", body.len());
        }
        if !keep_alive {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !bodyless && !head_only {
            out.extend_from_slice(body);
        }
    }
}

/// The `Access-Control-Allow-Origin` value for a request from `origin`, if it is allowed.
pub fn allowed<'a>(cors: &'a Cors, origin: Option<&'a str>) -> Option<&'a str> {
    let origin = origin?;
    match cors {
        Cors::Any => Some("*"),
        Cors::Only(list) => list.iter().find(|o| *o == origin).map(String::as_str),
    }
}

/// The reason phrase of a status code (RFC 9110 §15).
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(r: &Response<'_>, body: &[u8], keep_alive: bool, head_only: bool) -> String {
        let mut out = Vec::new();
        r.write(&mut out, "D", body, keep_alive, head_only);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn heads_lengths_and_connection() {
        let r = Response::new(200).header("Content-Type", "text/plain");
        assert_eq!(
            text(&r, b"hi", true, false),
            "HTTP/1.1 200 OK\r\nDate: D\r\nServer: xmppd\r\nContent-Type: text/plain\r\n\
             Content-Length: 2\r\n\r\nhi"
        );
        assert_eq!(
            text(&r, b"hi", false, true),
            "HTTP/1.1 200 OK\r\nDate: D\r\nServer: xmppd\r\nContent-Type: text/plain\r\n\
             Content-Length: 2\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(
            text(&Response::new(204), b"", true, false),
            "HTTP/1.1 204 No Content\r\nDate: D\r\nServer: xmppd\r\n\r\n"
        );
    }

    #[test]
    fn cors_any_only_and_no_origin() {
        let any = Cors::Any;
        let only = Cors::Only(vec!["https://a.example".into()]);
        let fields = |cors: &Cors, origin: Option<&str>| {
            let r = Response::new(200).cors(cors, origin);
            text(&r, b"", true, false)
                .lines()
                .filter(|l| l.starts_with("Access-Control") || l.starts_with("Vary"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(fields(&any, None), Vec::<String>::new());
        assert_eq!(
            fields(&any, Some("https://x")),
            ["Access-Control-Allow-Origin: *"]
        );
        assert_eq!(
            fields(&only, Some("https://a.example")),
            [
                "Vary: Origin",
                "Access-Control-Allow-Origin: https://a.example"
            ]
        );
        assert_eq!(fields(&only, Some("https://b.example")), ["Vary: Origin"]);
        assert_eq!(allowed(&only, Some("https://a.example.evil")), None);
    }
}
