//! The TCP accept loop: HTTP/1.1 and HTTP/2 (with WebSocket upgrades on
//! both), optional TLS, connection limits, timeouts and draining.
//!
//! Why not `axum::serve`: it gives hyper no timer, so a client that never
//! finishes its request headers holds its connection (and graceful shutdown)
//! for ever, and it has no place for per-connection limits. Here:
//!
//! - every accepted TCP connection gets a [`Permit`] from
//!   [`ConnectionLimits`] before anything else, or is refused at once (see
//!   [`crate::limits`]); nothing waits in the kernel's accept queue;
//! - hyper-util's connection builder gets a timer and `--header-timeout`
//!   for HTTP/1.1 headers, and a watchdog closes any connection, HTTP/1.1 or
//!   HTTP/2, that has had no request in progress for `--header-timeout`
//!   (an HTTP/2 client that sends its preface and nothing else; an idle
//!   keep-alive); the TLS handshake has the same bound;
//! - each request carries a [`Connection`] extension (peer address, the
//!   connection's permit or refusal) and axum's `ConnectInfo`;
//! - shutdown is in two steps the caller controls: `draining` (idle
//!   connections close, requests in progress finish, new connections are
//!   still served so probes can see `/readyz` say 503), then `closed`
//!   (the listener and every connection are dropped).

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::pin::{pin, Pin};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::{debug, warn};

use crate::limits::{AddressGuard, ConnectionLimits, Permit, Refusal};

/// How the front serves connections.
pub struct Front {
    /// `--header-timeout`: for request headers, the TLS handshake, and a
    /// connection with no request in progress.
    pub header_timeout: Duration,
    /// Serve TLS (`https://`, `wss://`) when set.
    pub tls: Option<TlsAcceptor>,
    pub limits: Arc<ConnectionLimits>,
}

/// Accepts connections and serves `app` on them until `closed` is
/// cancelled; then the listener is dropped. Once `draining` is cancelled,
/// connections open at that moment finish their requests in progress and
/// close; connections accepted after it are served one request at a time
/// (the app's responses say `Connection: close`). Every connection task is
/// spawned on `connections`, for the caller to wait on.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    front: Front,
    draining: CancellationToken,
    closed: CancellationToken,
    connections: TaskTracker,
) {
    let builder = Arc::new(builder(front.header_timeout));
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            _ = closed.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Usually out of file descriptors: back off, don't spin.
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Game traffic is many small frames: never hold them back (Nagle).
        if let Err(e) = stream.set_nodelay(true) {
            debug!(%peer, "could not set TCP_NODELAY: {e}");
        }
        let seat = match front.limits.admit(Some(peer.ip())) {
            Ok(permit) => Seat::Held(permit),
            Err(why) => match front.limits.refusal_slot() {
                Some(slot) => {
                    debug!(%peer, "refusing a connection: {why}");
                    Seat::Refused(why, Some(slot))
                }
                None => {
                    debug!(%peer, "refusing a connection at once: {why}");
                    refuse_now(stream, &why, front.tls.is_some());
                    continue;
                }
            },
        };
        let state = Arc::new(ConnectionState {
            peer,
            secure: front.tls.is_some(),
            limits: Arc::clone(&front.limits),
            seat: Mutex::new(seat),
            activity: watch::Sender::new(Activity::default()),
            evict: CancellationToken::new(),
        });
        connections.spawn(run_connection(
            stream,
            state,
            Arc::clone(&builder),
            app.clone(),
            front.tls.clone(),
            Shutdown {
                draining: draining.clone(),
                closed: closed.clone(),
                header_timeout: front.header_timeout,
            },
        ));
    }
}

fn builder(header_timeout: Duration) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    // WebSockets over HTTP/2 (RFC 8441): browsers use them on an HTTP/2
    // (TLS) connection when the server offers them.
    builder
        .http2()
        .timer(TokioTimer::new())
        .enable_connect_protocol();
    builder
}

/// What ends a connection, besides the client.
#[derive(Clone)]
struct Shutdown {
    draining: CancellationToken,
    closed: CancellationToken,
    header_timeout: Duration,
}

async fn run_connection(
    stream: TcpStream,
    state: Arc<ConnectionState>,
    builder: Arc<Builder<TokioExecutor>>,
    app: Router,
    tls: Option<TlsAcceptor>,
    shutdown: Shutdown,
) {
    let peer = state.peer;
    match tls {
        None => drive(TokioIo::new(stream), &state, &builder, app, &shutdown).await,
        Some(acceptor) => {
            let handshake = tokio::time::timeout(shutdown.header_timeout, acceptor.accept(stream));
            let stream = tokio::select! {
                _ = shutdown.closed.cancelled() => None,
                done = handshake => match done {
                    Ok(Ok(stream)) => Some(stream),
                    Ok(Err(e)) => {
                        debug!(%peer, "TLS handshake failed: {e}");
                        None
                    }
                    Err(_) => {
                        debug!(%peer, "TLS handshake not done within the header timeout");
                        None
                    }
                },
            };
            if let Some(stream) = stream {
                drive(TokioIo::new(stream), &state, &builder, app, &shutdown).await;
            }
        }
    }
    state.close();
}

/// Serves HTTP on one connection until it ends, is idle for too long, is
/// evicted, or the server closes.
async fn drive<I>(
    io: I,
    state: &Arc<ConnectionState>,
    builder: &Builder<TokioExecutor>,
    app: Router,
    shutdown: &Shutdown,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let peer = state.peer;
    let service = {
        let state = Arc::clone(state);
        hyper::service::service_fn(move |mut req: Request<Incoming>| {
            let activity = ActivityGuard::start(&state);
            req.extensions_mut().insert(Connection(Arc::clone(&state)));
            req.extensions_mut().insert(ConnectInfo(state.peer));
            let response = app.clone().oneshot(req.map(Body::new));
            async move {
                let response = match response.await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                // The request counts as in progress until its body is sent.
                Ok::<_, Infallible>(response.map(|body| Tracked {
                    body,
                    _activity: activity,
                }))
            }
        })
    };
    let mut connection = pin!(builder.serve_connection_with_upgrades(io, service));
    let mut idle = pin!(idle_for(
        state.activity.subscribe(),
        shutdown.header_timeout
    ));
    // Connections accepted while draining are served (the app closes them
    // after each response); only those that have served requests before
    // are told to wind down.
    let mut watch_draining = !shutdown.draining.is_cancelled();
    let mut winding_down = false;
    let mut evicted = false;
    let give_up = tokio::time::sleep(Duration::ZERO);
    let mut give_up = pin!(give_up);
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    debug!(%peer, "HTTP connection ended with an error: {e}");
                }
                return;
            }
            _ = shutdown.closed.cancelled() => return,
            _ = &mut give_up, if winding_down => {
                debug!(%peer, "closing a connection that did not wind down");
                return;
            }
            _ = shutdown.draining.cancelled(), if watch_draining => {
                watch_draining = false;
                // A connection that has not sent its first request yet is
                // served like one accepted while draining: its request,
                // likely racing the shutdown, gets an answer, not a close.
                if state.activity.borrow().started > 0 {
                    connection.as_mut().graceful_shutdown();
                }
            }
            _ = &mut idle, if !winding_down => {
                debug!(%peer, "closing a connection with no request for {:?}", shutdown.header_timeout);
                winding_down = true;
                connection.as_mut().graceful_shutdown();
                give_up.as_mut().reset(Instant::now() + shutdown.header_timeout);
            }
            _ = state.evict.cancelled(), if !evicted => {
                // No new requests; WebSockets it carries (each counted on
                // its own) run on, and the idle watchdog closes it after.
                debug!(%peer, "closing a connection that lost its place under the connection limit");
                evicted = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Completes once the connection has had no request in progress for
/// `limit` without a break.
async fn idle_for(mut activity: watch::Receiver<Activity>, limit: Duration) {
    loop {
        let Ok(since) = activity
            .wait_for(|a| a.in_progress == 0)
            .await
            .map(|a| a.started)
        else {
            return std::future::pending().await;
        };
        let busy = tokio::time::timeout(
            limit,
            activity.wait_for(|a| a.in_progress > 0 || a.started != since),
        )
        .await
        .is_ok();
        if !busy {
            let now = *activity.borrow();
            if now.in_progress == 0 && now.started == since {
                return;
            }
        }
    }
}

/// Requests in progress on one connection, and how many were ever started
/// (so a request that starts and ends between two looks still counts).
#[derive(Debug, Clone, Copy, Default)]
struct Activity {
    in_progress: usize,
    started: u64,
}

/// One request (or WebSocket) in progress on a connection.
struct ActivityGuard(Arc<ConnectionState>);

impl ActivityGuard {
    fn start(state: &Arc<ConnectionState>) -> Self {
        state.activity.send_modify(|a| {
            a.in_progress += 1;
            a.started = a.started.wrapping_add(1);
        });
        ActivityGuard(Arc::clone(state))
    }
}

impl Drop for ActivityGuard {
    fn drop(&mut self) {
        self.0
            .activity
            .send_modify(|a| a.in_progress = a.in_progress.saturating_sub(1));
    }
}

/// A response body that keeps its request counted as in progress until
/// hyper has sent it (or given up on it).
struct Tracked {
    body: Body,
    _activity: ActivityGuard,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Refuses a connection without spending a task on it: a canned HTTP 503
/// written straight into the fresh socket's send buffer, then a close. On
/// TLS a plain close: a handshake costs more than a refusal is worth.
fn refuse_now(stream: TcpStream, why: &Refusal, tls: bool) {
    if tls {
        return;
    }
    // Nonblocking std socket: one write and a few reads, no reactor.
    let Ok(mut stream) = stream.into_std() else {
        return;
    };
    let body = format!("{why}\n");
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write(response.as_bytes());
    // Read what the client already sent, so that closing sends a FIN, not a
    // reset that could make the client discard our answer unread.
    let mut buf = [0u8; 2048];
    for _ in 0..8 {
        match stream.read(&mut buf) {
            Ok(n) if n > 0 => continue,
            _ => break,
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// What a request knows about its connection (a request extension set by
/// [`serve`]).
#[derive(Clone)]
pub struct Connection(Arc<ConnectionState>);

struct ConnectionState {
    peer: SocketAddr,
    secure: bool,
    limits: Arc<ConnectionLimits>,
    seat: Mutex<Seat>,
    activity: watch::Sender<Activity>,
    /// Cancelled when the connection lost its permit and must close.
    evict: CancellationToken,
}

/// A connection's place under the limits.
enum Seat {
    /// Counted by this connection.
    Held(Permit),
    /// Counted by a WebSocket on this connection, which hands it back (or
    /// takes a fresh one) when it ends.
    Lent,
    /// Over a limit: served only to be told why. The slot bounds how many
    /// such connections are served at once; a WebSocket takes it over.
    Refused(Refusal, Option<OwnedSemaphorePermit>),
    /// The connection is over (or was evicted).
    Closed,
}

impl ConnectionState {
    fn lock(&self) -> MutexGuard<'_, Seat> {
        self.seat
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The connection ended: its permit, if it still has it, is released.
    fn close(&self) {
        *self.lock() = Seat::Closed;
    }

    /// A WebSocket that had this connection's permit ended: the connection
    /// (an HTTP/2 one; an HTTP/1.1 connection ended with its upgrade) needs
    /// a place of its own again, or must close.
    fn reclaim(&self) {
        let mut seat = self.lock();
        if matches!(*seat, Seat::Lent) {
            match self.limits.admit(Some(self.peer.ip())) {
                Ok(permit) => *seat = Seat::Held(permit),
                Err(_) => {
                    *seat = Seat::Closed;
                    self.evict.cancel();
                }
            }
        }
    }
}

impl Connection {
    /// The client's address (the proxy's, behind a reverse proxy).
    pub fn peer(&self) -> SocketAddr {
        self.0.peer
    }

    /// Whether the connection is TLS.
    pub fn is_secure(&self) -> bool {
        self.0.secure
    }

    /// Why this connection is over a limit, if it is.
    pub fn refusal(&self) -> Option<Refusal> {
        match &*self.0.lock() {
            Seat::Refused(why, _) => Some(why.clone()),
            _ => None,
        }
    }

    /// A place for a WebSocket on this connection: the connection's own
    /// permit (or refusal slot) when it still has it, else a fresh one, as
    /// for a new connection (a further WebSocket on an HTTP/2 connection).
    pub fn websocket_seat(&self) -> WebSocketSeat {
        let state = &self.0;
        {
            let mut seat = state.lock();
            match std::mem::replace(&mut *seat, Seat::Lent) {
                Seat::Held(permit) => {
                    let (permit, address) = permit.into_parts();
                    return WebSocketSeat::Admitted {
                        permit,
                        hold: Hold {
                            address,
                            home: Some(Arc::clone(state)),
                            activity: Some(ActivityGuard::start(state)),
                        },
                    };
                }
                Seat::Refused(why, Some(slot)) => {
                    *seat = Seat::Refused(why.clone(), None);
                    return WebSocketSeat::Refused {
                        why,
                        slot,
                        hold: Hold {
                            address: None,
                            home: None,
                            activity: Some(ActivityGuard::start(state)),
                        },
                    };
                }
                other => *seat = other,
            }
        }
        fresh_seat(
            &state.limits,
            Some(state.peer.ip()),
            Some(ActivityGuard::start(state)),
        )
    }
}

/// A place for a WebSocket whose request did not come through [`serve`]
/// (no [`Connection`]): only the total limit applies.
pub fn websocket_seat_without_connection(limits: &Arc<ConnectionLimits>) -> WebSocketSeat {
    fresh_seat(limits, None, None)
}

fn fresh_seat(
    limits: &Arc<ConnectionLimits>,
    peer: Option<IpAddr>,
    activity: Option<ActivityGuard>,
) -> WebSocketSeat {
    match limits.admit(peer) {
        Ok(permit) => {
            let (permit, address) = permit.into_parts();
            WebSocketSeat::Admitted {
                permit,
                hold: Hold {
                    address,
                    home: None,
                    activity,
                },
            }
        }
        Err(why) => match limits.refusal_slot() {
            Some(slot) => WebSocketSeat::Refused {
                why,
                slot,
                hold: Hold {
                    address: None,
                    home: None,
                    activity,
                },
            },
            None => WebSocketSeat::Rejected(why),
        },
    }
}

/// Whether a WebSocket may open, and what it holds while it runs.
pub enum WebSocketSeat {
    /// Under the limits: `permit` counts it (hand it to the session), and
    /// `hold` must live as long as the session.
    Admitted {
        permit: OwnedSemaphorePermit,
        hold: Hold,
    },
    /// Over a limit, with a refusal slot to tell the client why on its
    /// socket.
    Refused {
        why: Refusal,
        slot: OwnedSemaphorePermit,
        hold: Hold,
    },
    /// Over a limit and out of refusal slots: answer with HTTP 503.
    Rejected(Refusal),
}

/// What a WebSocket holds besides its permit: its per-address count, its
/// connection kept open (an HTTP/2 connection is not idle while it carries
/// a WebSocket), and the connection's permit to hand back when it ends.
pub struct Hold {
    address: Option<AddressGuard>,
    home: Option<Arc<ConnectionState>>,
    activity: Option<ActivityGuard>,
}

impl Drop for Hold {
    fn drop(&mut self) {
        // Uncount the address first, so the connection can count it again.
        self.address.take();
        if let Some(home) = self.home.take() {
            home.reclaim();
        }
        self.activity.take();
    }
}
