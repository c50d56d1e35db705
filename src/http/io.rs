//! The socket of one HTTP connection, plain or TLS: read plaintext into a buffer, write
//! plaintext out. rustls is driven directly (sans-I/O), as on the XMPP ports, so that a
//! connection upgraded to WebSocket can take its TLS state along to the XMPP connection task.

use std::io::{Read, Write};
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt, FutureExt};
use glommio::net::TcpStream;

/// Ciphertext read per system call.
const CHUNK: usize = 16 * 1024;

/// One HTTP connection's transport.
pub struct Io {
    /// The socket.
    pub sock: TcpStream,
    /// TLS state on the HTTPS port.
    pub tls: Option<Box<rustls::ServerConnection>>,
    /// Read buffer for ciphertext (or plaintext without TLS), allocated on first read.
    chunk: Vec<u8>,
}

impl Io {
    /// A connection over `sock`, with `tls` on the HTTPS port.
    pub fn new(sock: TcpStream, tls: Option<Box<rustls::ServerConnection>>) -> Io {
        Io {
            sock,
            tls,
            chunk: Vec::new(),
        }
    }

    /// The socket and its TLS state, for a connection that leaves HTTP (a WebSocket upgrade).
    pub fn into_parts(self) -> (TcpStream, Option<Box<rustls::ServerConnection>>) {
        (self.sock, self.tls)
    }

    /// Frees the read buffer while the connection reads nothing (a held BOSH request): the
    /// next read allocates it again.
    pub fn release_buffer(&mut self) {
        self.chunk = Vec::new();
    }

    /// Reads what arrives next and appends the plaintext to `buf`; `Ok(0)` when the peer
    /// closed (TCP FIN, or TLS `close_notify`). A TLS error sends rustls's alert and fails.
    pub async fn read(&mut self, buf: &mut Vec<u8>) -> std::io::Result<usize> {
        if self.chunk.len() != CHUNK {
            self.chunk = vec![0u8; CHUNK];
        }
        if self.tls.is_none() {
            let n = self.sock.read(&mut self.chunk).await?;
            buf.extend_from_slice(&self.chunk[..n]);
            return Ok(n);
        }
        let before = buf.len();
        loop {
            let closed = self.drain_plaintext(buf)?;
            if buf.len() > before {
                return Ok(buf.len() - before);
            }
            if closed {
                return Ok(0);
            }
            self.flush_tls().await?;
            let n = self.sock.read(&mut self.chunk).await?;
            if n == 0 {
                return Ok(0);
            }
            let chunk = std::mem::take(&mut self.chunk);
            let fed = self.feed(&chunk[..n], buf).await;
            self.chunk = chunk;
            if !fed? && buf.len() == before {
                return Ok(0);
            }
        }
    }

    /// Feeds ciphertext to rustls, moving what it decrypts into `buf`; false when the peer
    /// closed TLS (nothing after `close_notify` is taken).
    async fn feed(&mut self, mut rest: &[u8], buf: &mut Vec<u8>) -> std::io::Result<bool> {
        while !rest.is_empty() {
            let Some(tls) = self.tls.as_mut() else {
                return Ok(false);
            };
            // rustls takes nothing after close_notify, and nothing while its plaintext buffer
            // is full: drain it between records.
            if tls.read_tls(&mut rest)? == 0 {
                return Ok(false);
            }
            if let Err(e) = tls.process_new_packets() {
                let _ = self.flush_tls().await;
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e));
            }
            if self.drain_plaintext(buf)? {
                // close_notify: the caller's next read sees it.
                return Ok(true);
            }
        }
        Ok(true)
    }

    /// Moves decrypted bytes into `buf`; true once the peer sent `close_notify`.
    fn drain_plaintext(&mut self, buf: &mut Vec<u8>) -> std::io::Result<bool> {
        let Some(tls) = self.tls.as_mut() else {
            return Ok(false);
        };
        let mut tmp = [0u8; 4096];
        loop {
            match tls.reader().read(&mut tmp) {
                Ok(0) => return Ok(true),
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes all of `data` (encrypted on the HTTPS port).
    pub async fn write_all(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        if self.tls.is_none() {
            return self.sock.write_all(data).await;
        }
        while !data.is_empty() {
            let Some(tls) = self.tls.as_mut() else {
                return Ok(());
            };
            let n = tls.writer().write(data)?;
            data = &data[n..];
            self.flush_tls().await?;
        }
        Ok(())
    }

    /// Sends whatever TLS records rustls has ready (handshake, alerts, data).
    async fn flush_tls(&mut self) -> std::io::Result<()> {
        let mut out = Vec::new();
        while let Some(tls) = self.tls.as_mut().filter(|t| t.wants_write()) {
            out.clear();
            tls.write_tls(&mut out)?;
            self.sock.write_all(&out).await?;
        }
        Ok(())
    }

    /// Closes the way that lets the last response arrive: TLS `close_notify`, then the
    /// XMPP ports' lingering close (a FIN, then the peer's input read and discarded for a
    /// bounded time, so that the kernel does not reset the connection under the response).
    pub async fn close(mut self, linger: Duration) {
        if let Some(tls) = self.tls.as_mut() {
            tls.send_close_notify();
            let _ = self
                .flush_tls()
                .or(async {
                    glommio::timer::sleep(linger).await;
                    Ok(())
                })
                .await;
        }
        crate::c2s::linger_close(&mut self.sock).await;
    }
}
