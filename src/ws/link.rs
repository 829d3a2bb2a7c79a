//! The byte stream under a WebSocket, usable both ways: awaited by a
//! session, and polled without waiting by a room.

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Any other async byte stream: TLS, or a WebSocket over HTTP/2.
pub trait AsyncIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> AsyncIo for T {}

/// Where the bytes go.
pub(super) enum Io {
    /// A plain TCP socket, registered with tokio's reactor: what sessions
    /// await on.
    Tokio(TcpStream),
    /// The same socket off the reactor, while a room serves it: data that
    /// arrives between ticks wakes nobody, and the room reads and writes it
    /// with plain non-blocking system calls.
    Parked(std::net::TcpStream),
    /// Anything else; polled like any async stream. Nothing is gained by
    /// taking it off the reactor (TLS and HTTP/2 sit on their own tasks or
    /// buffers), so it stays on.
    Other(Box<dyn AsyncIo>),
    /// Gone: re-registering a parked socket failed.
    Closed,
}

/// The stream tungstenite reads and writes (a blocking-style `Read` +
/// `Write` that reports `WouldBlock`), plus one frame's worth of bytes of
/// our own: a message framed once for many clients ([`Link::write_shared`])
/// that the socket did not take in full.
pub(super) struct Link {
    pub(super) io: Io,
    /// Whom to wake when the stream becomes ready: the session's task while
    /// it awaits, nobody (a no-op) while the room polls.
    pub(super) waker: Waker,
    /// The unsent rest of a shared frame. It goes out before anything
    /// tungstenite writes after it, so frames never interleave.
    pending: Bytes,
    /// A parked socket's read came back short this tick: it is drained, so
    /// the next read can say `WouldBlock` without a system call (see
    /// [`Link::new_turn`]).
    drained: bool,
}

fn would_block() -> io::Error {
    io::ErrorKind::WouldBlock.into()
}

/// A `Poll` from an async stream as the result of a non-blocking call.
fn ready<T>(poll: Poll<io::Result<T>>) -> io::Result<T> {
    match poll {
        Poll::Ready(result) => result,
        Poll::Pending => Err(would_block()),
    }
}

impl Link {
    pub(super) fn new(io: Io) -> Self {
        Link {
            io,
            waker: Waker::noop().clone(),
            pending: Bytes::new(),
            drained: false,
        }
    }

    /// Takes a plain TCP socket off the reactor (see [`Io::Parked`]).
    pub(super) fn park(&mut self) {
        if let Io::Tokio(_) = self.io {
            let Io::Tokio(stream) = std::mem::replace(&mut self.io, Io::Closed) else {
                return;
            };
            self.io = match stream.into_std() {
                Ok(stream) => Io::Parked(stream),
                Err(_) => Io::Closed,
            };
        }
    }

    /// Puts a parked socket back on the reactor, so it can be awaited.
    /// Must run within a tokio runtime.
    pub(super) fn unpark(&mut self) {
        if let Io::Parked(_) = self.io {
            let Io::Parked(stream) = std::mem::replace(&mut self.io, Io::Closed) else {
                return;
            };
            self.io = match TcpStream::from_std(stream) {
                Ok(stream) => Io::Tokio(stream),
                Err(_) => Io::Closed,
            };
        }
        self.drained = false;
    }

    /// A new round of reads (one per tick): the socket may have data again.
    pub(super) fn new_turn(&mut self) {
        self.drained = false;
    }

    /// Whether bytes of a shared frame are still waiting for the socket.
    pub(super) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Writes `frame` (a whole WebSocket frame) as far as the socket takes
    /// it now; the rest is kept (`rest(written)` makes it: a cheap slice of
    /// a shared frame, a copy of a client's own) and goes out first on the
    /// next write or flush. The caller makes sure nothing else is queued
    /// before it. `Ok(true)` when all of it went out.
    pub(super) fn write_frame(
        &mut self,
        frame: &[u8],
        rest: impl FnOnce(usize) -> Bytes,
    ) -> io::Result<bool> {
        debug_assert!(self.pending.is_empty());
        let written = self.write_now(frame)?;
        if written < frame.len() {
            self.pending = rest(written);
            return Ok(false);
        }
        // A TLS stream may have taken the bytes into its own buffer only:
        // push them on now, or say they are still on their way.
        if let Io::Other(stream) = &mut self.io {
            let mut cx = Context::from_waker(&self.waker);
            return match Pin::new(stream).poll_flush(&mut cx) {
                Poll::Ready(Ok(())) => Ok(true),
                Poll::Ready(Err(e)) => Err(e),
                Poll::Pending => Ok(false),
            };
        }
        Ok(true)
    }

    /// Sends what is left of a shared frame. `Ok(true)` when nothing is.
    fn drain_pending(&mut self) -> io::Result<bool> {
        if self.pending.is_empty() {
            return Ok(true);
        }
        let pending = self.pending.clone();
        let written = self.write_now(&pending)?;
        self.pending = pending.slice(written..);
        Ok(self.pending.is_empty())
    }

    /// Writes as much of `buf` as the stream takes now; how much that was.
    fn write_now(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut written = 0;
        while let Some(rest) = buf.get(written..).filter(|rest| !rest.is_empty()) {
            match self.raw_write(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(written)
    }

    fn raw_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut cx = Context::from_waker(&self.waker);
        match &mut self.io {
            Io::Parked(stream) => stream.write(buf),
            Io::Tokio(stream) => ready(Pin::new(stream).poll_write(&mut cx, buf)),
            Io::Other(stream) => ready(Pin::new(stream).poll_write(&mut cx, buf)),
            Io::Closed => Err(io::ErrorKind::NotConnected.into()),
        }
    }
}

impl Read for Link {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.read_once(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }
}

impl Link {
    fn read_once(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Io::Parked(stream) = &mut self.io {
            // One read per tick is almost always all there is: a client
            // sends about one message per tick. A short read means the
            // socket was empty a moment ago; asking again now would cost a
            // system call to learn `WouldBlock`.
            if self.drained {
                return Err(would_block());
            }
            let len = buf.len();
            let result = stream.read(buf);
            match &result {
                Ok(n) if *n < len => self.drained = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.drained = true,
                _ => {}
            }
            return result;
        }
        let mut cx = Context::from_waker(&self.waker);
        let mut read_buf = ReadBuf::new(buf);
        let poll = match &mut self.io {
            Io::Tokio(stream) => Pin::new(stream).poll_read(&mut cx, &mut read_buf),
            Io::Other(stream) => Pin::new(stream).poll_read(&mut cx, &mut read_buf),
            Io::Parked(_) | Io::Closed => return Err(io::ErrorKind::NotConnected.into()),
        };
        ready(poll)?;
        Ok(read_buf.filled().len())
    }
}

impl Write for Link {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.drain_pending()? {
            return Err(would_block());
        }
        loop {
            match self.raw_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.drain_pending()? {
            return Err(would_block());
        }
        let mut cx = Context::from_waker(&self.waker);
        match &mut self.io {
            Io::Parked(stream) => stream.flush(),
            Io::Tokio(stream) => ready(Pin::new(stream).poll_flush(&mut cx)),
            Io::Other(stream) => ready(Pin::new(stream).poll_flush(&mut cx)),
            Io::Closed => Err(io::ErrorKind::NotConnected.into()),
        }
    }
}
