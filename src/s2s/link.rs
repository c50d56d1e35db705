//! The transport of one server-to-server stream, either direction: the socket, TLS (rustls
//! driven sans-I/O, as a client on outgoing streams and as a server on incoming ones), the
//! stream's plaintext not framed yet, and the framer. Negotiation reads frame by frame
//! ([`Link::next_frame`]) and writes with [`Link::write_all`]; an established stream polls
//! ([`Link::poll_fill`], [`Link::poll_flush`]) so that it reads and drains its send queue at
//! once.

use std::io::{Read, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_lite::future::poll_fn;
use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::core::ClientHandle;
use crate::xml::{self, Frame, Framer, StreamHeader, StreamNs, XmlError};

/// Bytes read per system call.
const CHUNK: usize = 16 * 1024;

/// A frame, owned: what negotiation looks at.
#[derive(Debug)]
pub enum Owned {
    /// A stream header.
    Header(StreamHeader),
    /// One element, its bytes.
    Element(Vec<u8>),
    /// `</stream:stream>`.
    Close,
}

/// Why reading failed.
#[derive(Debug)]
pub enum LinkError {
    /// The peer's XML broke the rules.
    Xml(XmlError),
    /// The connection closed or failed (TLS errors included).
    Io,
}

/// One server-to-server transport.
pub struct Link {
    /// The socket.
    pub sock: TcpStream,
    /// TLS, once started.
    pub tls: Option<Box<rustls::Connection>>,
    tls_out: Vec<u8>,
    tls_out_pos: usize,
    rbuf: Vec<u8>,
    /// Plaintext received and not framed yet.
    pub plain: Vec<u8>,
    /// The framer.
    pub framer: Framer,
    /// The namespace context of the peer's stream header.
    pub ns: Arc<StreamNs>,
}

/// A link on its way to another shard: the socket as a duplicated descriptor, and the
/// TLS, buffer and framer state, which are plain data.
pub struct Parts {
    fd: std::os::fd::OwnedFd,
    tls: Option<Box<rustls::Connection>>,
    tls_out: Vec<u8>,
    tls_out_pos: usize,
    plain: Vec<u8>,
    framer: Framer,
    ns: Arc<StreamNs>,
}

impl Link {
    /// Take the link apart to move it to another shard. The socket is duplicated; this
    /// link's own descriptor closes when it is dropped, without a shutdown, so the
    /// connection lives on in the parts.
    pub fn into_parts(self) -> std::io::Result<Parts> {
        use std::os::fd::{AsRawFd, FromRawFd};
        // SAFETY: dup of a descriptor we own; the duplicate is owned by the parts.
        let fd = unsafe { libc::dup(self.sock.as_raw_fd()) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Parts {
            // SAFETY: `fd` is a fresh descriptor from dup, owned by nobody else.
            fd: unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) },
            tls: self.tls,
            tls_out: self.tls_out,
            tls_out_pos: self.tls_out_pos,
            plain: self.plain,
            framer: self.framer,
            ns: self.ns,
        })
    }

    /// Put a moved link together again on the shard that adopted it.
    pub fn from_parts(p: Parts) -> Link {
        use std::os::fd::{FromRawFd, IntoRawFd};
        // SAFETY: the descriptor was dup'ed for this move and is owned by nobody else.
        let sock = unsafe { TcpStream::from_raw_fd(p.fd.into_raw_fd()) };
        Link {
            sock,
            tls: p.tls,
            tls_out: p.tls_out,
            tls_out_pos: p.tls_out_pos,
            rbuf: vec![0u8; CHUNK],
            plain: p.plain,
            framer: p.framer,
            ns: p.ns,
        }
    }

    /// A transport over `sock`, with `tls` already started (direct TLS) or not.
    pub fn new(sock: TcpStream, tls: Option<Box<rustls::Connection>>, limits: xml::Limits) -> Link {
        let framer = Framer::new(limits);
        Link {
            sock,
            tls,
            tls_out: Vec::new(),
            tls_out_pos: 0,
            rbuf: vec![0u8; CHUNK],
            plain: Vec::new(),
            ns: framer.stream_ns_shared(),
            framer,
        }
    }

    /// True once TLS is on.
    pub fn secured(&self) -> bool {
        self.tls.is_some()
    }

    /// Start TLS on the socket (after `<proceed/>`): the handshake completes as bytes flow;
    /// unread plaintext is discarded (CORE-TLS-06) and the framer starts a new stream.
    pub fn start_tls(&mut self, conn: rustls::Connection) {
        self.tls = Some(Box::new(conn));
        self.plain.clear();
        self.framer.reset();
    }

    /// Complete the TLS handshake (both directions), bounded by the caller's timeout.
    pub async fn handshake(&mut self) -> Result<(), LinkError> {
        loop {
            let Some(tls) = self.tls.as_ref() else {
                return Ok(());
            };
            if !tls.is_handshaking() {
                self.flush_tls().await.map_err(|_| LinkError::Io)?;
                return Ok(());
            }
            self.flush_tls().await.map_err(|_| LinkError::Io)?;
            if poll_fn(|cx| self.poll_fill(cx))
                .await
                .map_err(|_| LinkError::Io)?
                == 0
            {
                return Err(LinkError::Io);
            }
        }
    }

    /// The peer's certificate chain, once TLS is established.
    pub fn peer_certificates(&self) -> Option<&[rustls::pki_types::CertificateDer<'static>]> {
        self.tls.as_ref()?.peer_certificates()
    }

    /// Write all of `data` (encrypted once TLS is on).
    pub async fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self.tls.as_mut() {
            None => self.sock.write_all(data).await,
            Some(tls) => {
                tls.writer().write_all(data)?;
                self.flush_tls().await
            }
        }
    }

    async fn flush_tls(&mut self) -> std::io::Result<()> {
        poll_fn(|cx| self.poll_tls_out(cx)).await
    }

    /// Send what rustls has ready (records, alerts).
    fn poll_tls_out(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        loop {
            if self.tls_out_pos < self.tls_out.len() {
                match Pin::new(&mut self.sock).poll_write(cx, &self.tls_out[self.tls_out_pos..]) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()))
                    }
                    Poll::Ready(Ok(n)) => {
                        self.tls_out_pos += n;
                        continue;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            self.tls_out.clear();
            self.tls_out_pos = 0;
            let Some(tls) = self.tls.as_mut().filter(|t| t.wants_write()) else {
                return Poll::Ready(Ok(()));
            };
            while tls.wants_write() {
                match tls.write_tls(&mut self.tls_out) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        }
    }

    /// Read once from the socket; append the plaintext to `plain`. Ready(Ok(0)) when the
    /// peer closed.
    pub fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        let n = match Pin::new(&mut self.sock).poll_read(cx, &mut self.rbuf) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok(0)) => return Poll::Ready(Ok(0)),
            Poll::Ready(Ok(n)) => n,
        };
        let Some(tls) = self.tls.as_mut() else {
            self.plain.extend_from_slice(&self.rbuf[..n]);
            return Poll::Ready(Ok(n));
        };
        let before = self.plain.len();
        let mut data = &self.rbuf[..n];
        while !data.is_empty() {
            match tls.read_tls(&mut data) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            if let Err(e) = tls.process_new_packets() {
                tracing::debug!(error = %e, "s2s TLS error");
                // The alert goes out if it can; the stream is over either way.
                let _ = self.poll_tls_out(cx);
                return Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)));
            }
            let mut closed = false;
            let mut tmp = [0u8; 4096];
            loop {
                match tls.reader().read(&mut tmp) {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(k) => self.plain.extend_from_slice(&tmp[..k]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
            if closed {
                return Poll::Ready(Ok(0));
            }
        }
        // Handshake records to answer, if any (nothing waits on them here).
        let _ = self.poll_tls_out(cx);
        // Handshake traffic yields no plaintext: report progress without data as 1 so
        // the caller reads on.
        Poll::Ready(Ok((self.plain.len() - before).max(1)))
    }

    /// The next frame, read as needed; whitespace is skipped.
    pub async fn next_frame(&mut self) -> Result<Owned, LinkError> {
        loop {
            if let Some(f) = self.take_frame()? {
                return Ok(f);
            }
            match poll_fn(|cx| self.poll_fill(cx)).await {
                Ok(0) | Err(_) => return Err(LinkError::Io),
                Ok(_) => {}
            }
        }
    }

    /// The next complete frame already received, if any.
    pub fn take_frame(&mut self) -> Result<Option<Owned>, LinkError> {
        let mut pos = 0;
        let out = loop {
            match self.framer.next(&self.plain[pos..]) {
                Ok(None) => break None,
                Err(e) => return Err(LinkError::Xml(e)),
                Ok(Some((frame, used))) => {
                    let owned = match frame {
                        Frame::Whitespace => None,
                        Frame::StreamClose => Some(Owned::Close),
                        Frame::StreamOpen(h) => Some(Owned::Header(h)),
                        Frame::Element(raw) => Some(Owned::Element(raw.to_vec())),
                    };
                    pos += used;
                    if let Some(o) = owned {
                        if matches!(o, Owned::Header(_)) {
                            self.ns = self.framer.stream_ns_shared();
                        }
                        break Some(o);
                    }
                }
            }
        };
        self.plain.drain(..pos);
        Ok(out)
    }

    /// Hand the send queue's unsent bytes to the socket (through TLS when on).
    pub fn poll_flush(
        &mut self,
        cx: &mut Context<'_>,
        handle: &ClientHandle,
    ) -> Poll<std::io::Result<()>> {
        loop {
            match self.poll_tls_out(cx) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
            let sock = &mut self.sock;
            let r = match self.tls.as_mut() {
                None => handle.drain_with(|unsent| Pin::new(&mut *sock).poll_write(cx, unsent)),
                Some(tls) => handle.drain_with(|unsent| Poll::Ready(tls.writer().write(unsent))),
            };
            match r {
                Poll::Ready(Ok(0)) if handle.unsent() == 0 => {
                    return match self.tls.as_ref().is_some_and(|t| t.wants_write()) {
                        true => continue,
                        false => Poll::Ready(Ok(())),
                    }
                }
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()))
                }
                Poll::Ready(Ok(_)) => continue,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Close: TLS `close_notify` when on, then the lingering TCP close.
    pub async fn close(&mut self) {
        if let Some(tls) = self.tls.as_mut() {
            tls.send_close_notify();
            let _ = self
                .flush_tls()
                .or(async {
                    glommio::timer::sleep(std::time::Duration::from_secs(1)).await;
                    Ok(())
                })
                .await;
        }
        crate::c2s::linger_close(&mut self.sock).await;
    }
}

use futures_lite::FutureExt;
