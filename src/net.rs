//! A byte stream that is plain TCP or TLS (either side), and a connection
//! wrapper that reads whole frames for the startup phase.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::protocol::{self, FrameError};

/// A TCP stream, possibly wrapped in TLS.
pub enum Stream {
    Plain(TcpStream),
    ServerTls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    ClientTls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    pub fn is_tls(&self) -> bool {
        !matches!(self, Stream::Plain(_))
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::ServerTls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::ClientTls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::ServerTls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::ClientTls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::ServerTls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::ClientTls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::ServerTls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::ClientTls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Why reading a frame failed.
#[derive(Debug)]
pub enum ReadError {
    Io(io::Error),
    /// The peer closed the connection cleanly between frames.
    Closed,
    Frame(FrameError),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "{e}"),
            ReadError::Closed => f.write_str("connection closed"),
            ReadError::Frame(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ReadError {}

/// A stream with a read buffer, for the request/response phases
/// (startup, authentication, connecting upstream).
pub struct Conn {
    pub stream: Stream,
    pub rbuf: BytesMut,
    pub wbuf: BytesMut,
}

impl Conn {
    pub fn new(stream: Stream) -> Conn {
        Conn {
            stream,
            rbuf: BytesMut::with_capacity(8 * 1024),
            wbuf: BytesMut::with_capacity(1024),
        }
    }

    /// Reads one whole regular frame; returns its type byte and body.
    pub async fn read_frame(&mut self, max: usize) -> Result<(u8, BytesMut), ReadError> {
        loop {
            if let Some(total) = protocol::check(&self.rbuf, max).map_err(ReadError::Frame)? {
                let mut frame = self.rbuf.split_to(total);
                let tag = frame[0];
                frame.advance(5);
                return Ok((tag, frame));
            }
            if self.rbuf.capacity() - self.rbuf.len() < 4096 {
                self.rbuf.reserve(8192);
            }
            let n = self
                .stream
                .read_buf(&mut self.rbuf)
                .await
                .map_err(ReadError::Io)?;
            if n == 0 {
                return Err(if self.rbuf.is_empty() {
                    ReadError::Closed
                } else {
                    ReadError::Io(io::ErrorKind::UnexpectedEof.into())
                });
            }
        }
    }

    /// Writes and flushes everything queued in `wbuf`.
    pub async fn flush(&mut self) -> io::Result<()> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf).await?;
            self.wbuf.clear();
        }
        self.stream.flush().await
    }

    /// Sends an error (usually FATAL) and flushes, ignoring a peer that is gone.
    pub async fn send_error(&mut self, err: &protocol::PgError) {
        err.encode(&mut self.wbuf);
        let _ = self.flush().await;
    }
}
