//! A server-side WebSocket that can be awaited (by a session) and served
//! without waiting (by a room).

use std::future::poll_fn;
use std::io;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tungstenite::{Error, Message, WebSocket};

use super::link::{Io, Link};
use super::Sent;

/// One client's WebSocket: tungstenite's protocol over a [`Link`].
///
/// Async methods (`send`, `recv`, `flush`, `close`) wait as a task
/// normally would. The `try_` and `push` methods never wait: the room calls
/// them with nobody to wake, and looks again on its next tick. Between the
/// two, [`Socket::park`] takes a plain TCP socket off the reactor; the async
/// methods put it back.
pub struct Socket {
    ws: WebSocket<Link>,
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket").finish_non_exhaustive()
    }
}

/// `Poll` for a call that may block: `Pending` where it would.
fn poll<T>(result: Result<T, Error>) -> Poll<Result<T, Error>> {
    match result {
        Err(Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
        other => Poll::Ready(other),
    }
}

/// `Ok(false)` for a call that would block.
fn done(result: Result<(), Error>) -> Result<bool, Error> {
    match result {
        Ok(()) => Ok(true),
        Err(Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(e),
    }
}

impl Socket {
    /// A server socket over `io`; `read_ahead` is what the HTTP layer read
    /// past the upgrade request (normally nothing).
    pub(super) fn new(io: Io, read_ahead: Vec<u8>, config: WebSocketConfig) -> Self {
        let link = Link::new(io);
        let ws = if read_ahead.is_empty() {
            WebSocket::from_raw_socket(link, Role::Server, Some(config))
        } else {
            WebSocket::from_partially_read(link, read_ahead, Role::Server, Some(config))
        };
        Socket { ws }
    }

    /// Runs `f` with `cx`'s waker installed, so that a stream that is not
    /// ready wakes this task.
    fn poll_with<T>(
        &mut self,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut WebSocket<Link>) -> Result<T, Error>,
    ) -> Poll<Result<T, Error>> {
        let link = self.ws.get_mut();
        link.unpark();
        link.waker.clone_from(cx.waker());
        poll(f(&mut self.ws))
    }

    /// Sends one message (waits until the socket took it).
    pub async fn send(&mut self, msg: Message) -> Result<(), Error> {
        self.ws.get_mut().unpark();
        // A `WouldBlock` here leaves the message queued; the flush sends it.
        done(self.ws.write(msg))?;
        self.flush().await
    }

    /// Writes whatever is queued (waits until the socket took it).
    pub async fn flush(&mut self) -> Result<(), Error> {
        poll_fn(|cx| self.poll_with(cx, |ws| ws.flush())).await
    }

    /// The next message; `None` once the connection is closed.
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        let next = poll_fn(|cx| self.poll_with(cx, |ws| ws.read())).await;
        match next {
            Err(Error::ConnectionClosed | Error::AlreadyClosed) => None,
            other => Some(other),
        }
    }

    /// Starts the close handshake: queues `frame` and sends it.
    pub async fn close(&mut self, frame: CloseFrame) -> Result<(), Error> {
        self.ws.get_mut().unpark();
        done(self.ws.close(Some(frame)))?;
        self.flush().await
    }

    /// Hands the socket to a room: a plain TCP socket leaves the reactor,
    /// and nobody is woken when it becomes ready.
    pub fn park(&mut self) {
        let link = self.ws.get_mut();
        link.park();
        link.waker = Waker::noop().clone();
    }

    /// Begins a tick's reads (see [`Socket::try_recv`]).
    pub fn begin_reads(&mut self) {
        self.ws.get_mut().new_turn();
    }

    /// The next message if it is here already, without waiting: `Pending`
    /// when the client has sent nothing more (so far this tick), `None`
    /// once the connection is closed.
    pub fn try_recv(&mut self) -> Poll<Option<Result<Message, Error>>> {
        match poll(self.ws.read()) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(Error::ConnectionClosed | Error::AlreadyClosed)) => Poll::Ready(None),
            Poll::Ready(other) => Poll::Ready(Some(other)),
        }
    }

    /// Queues `msg` and writes as much as the socket takes now, without
    /// waiting. `Ok(false)` when bytes are left for [`Socket::try_flush`].
    pub fn push(&mut self, msg: Message) -> Result<bool, Error> {
        if !done(self.ws.write(msg))? {
            return Ok(false);
        }
        self.try_flush()
    }

    /// Writes what is queued as far as the socket takes it now, without
    /// waiting. `Ok(true)` when nothing is left.
    pub fn try_flush(&mut self) -> Result<bool, Error> {
        done(self.ws.flush())
    }

    /// Writes `frame`, a whole frame framed once for many clients (see
    /// [`Shared`](super::Shared)), without copying it: all of it, part of
    /// it (the rest goes before anything else), or, if earlier bytes are
    /// still waiting for the socket, none of it.
    pub fn push_shared(&mut self, frame: &Bytes) -> Result<Sent, Error> {
        self.push_with(frame, |written| frame.slice(written..))
    }

    /// Writes `frame`, a whole frame this client's encoder built in place
    /// (see [`frame_in_place`](super::frame_in_place)), straight to the
    /// socket: like [`Socket::push_shared`], except that a rest the socket
    /// does not take is copied.
    pub fn push_framed(&mut self, frame: &[u8]) -> Result<Sent, Error> {
        self.push_with(frame, |written| {
            Bytes::copy_from_slice(frame.get(written..).unwrap_or_default())
        })
    }

    fn push_with(
        &mut self,
        frame: &[u8],
        rest: impl FnOnce(usize) -> Bytes,
    ) -> Result<Sent, Error> {
        if !self.try_flush()? || self.ws.get_ref().has_pending() {
            return Ok(Sent::Skipped);
        }
        Ok(if self.ws.get_mut().write_frame(frame, rest)? {
            Sent::All
        } else {
            Sent::Part
        })
    }
}
