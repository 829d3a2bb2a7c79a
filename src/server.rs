//! The HTTP front: one port for the browser client, the WebSocket endpoint,
//! a JSON room list and health probes, plus graceful shutdown.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Version};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::compression::CompressionLayer;
use tracing::field::Empty;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::assets;
use crate::config::Config;
use crate::game::{Game, PlayerId};
use crate::http::{self, Connection, WebSocketSeat};
use crate::limits::{ConnectionLimits, Refusal};
use crate::metrics::{self as m, Metrics, RefusedReason};
use crate::protocol::{self, encode, ErrorCode, Protocol, ProtocolError};
use crate::resume::Resumes;
use crate::room::{RoomConfig, Rooms};
use crate::session::{self, close_code, Admission, Parked, Seat};
use crate::ws::{
    self, CloseFrame, Message, Socket, Upgrade, UpgradeRejection, Utf8Bytes, WebSocketConfig,
};

/// State shared by every connection of one server.
pub struct Shared<G: Game> {
    pub config: Config,
    pub rooms: Rooms<G>,
    /// Every connection's place under `--max-connections` and
    /// `--max-connections-per-ip`, and the refusal slots.
    pub limits: Arc<ConnectionLimits>,
    /// Cancelled once on shutdown; every session watches it.
    pub shutdown: CancellationToken,
    /// Every session task, so shutdown can wait for their close handshakes.
    pub tracker: TaskTracker,
    /// What `GET /metrics` reports.
    pub metrics: Arc<Metrics>,
    /// Players that can be resumed, live or suspended.
    pub resumes: Arc<Resumes<Parked<G>>>,
    next_player: AtomicU64,
    next_connection: AtomicU64,
    players: AtomicUsize,
}

impl<G: Game> Shared<G> {
    pub fn new(config: Config) -> Self {
        let metrics = Arc::new(Metrics::new());
        let rooms = Rooms::new(
            config.room_capacity,
            config.max_rooms,
            RoomConfig {
                tick_rate: config.tick_rate,
                input_buffer: config.input_buffer as usize,
                world_size: config.world_size,
                view_size: config.view_size,
            },
            config.tick_interval(),
            Arc::clone(&metrics),
        );
        Shared {
            limits: ConnectionLimits::from_config(&config, Arc::clone(&metrics)),
            metrics,
            resumes: Resumes::new(config.resume_grace),
            rooms,
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            next_player: AtomicU64::new(1),
            next_connection: AtomicU64::new(1),
            players: AtomicUsize::new(0),
            config,
        }
    }

    /// The next player id: sequential per server, starting at 1, like the seed.
    pub fn next_player_id(&self) -> PlayerId {
        self.next_player.fetch_add(1, Ordering::Relaxed)
    }

    /// The next WebSocket connection's id, for its log span.
    pub fn next_connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    /// Counts a player in; returns the new total.
    pub fn player_joined(&self) -> usize {
        self.players.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Counts a player out; returns the new total.
    pub fn player_left(&self) -> usize {
        self.players
            .fetch_sub(1, Ordering::Relaxed)
            .saturating_sub(1)
    }

    /// Players currently in a room.
    pub fn players(&self) -> usize {
        self.players.load(Ordering::Relaxed)
    }
}

/// The application: routes, their handlers, and the layers every response
/// goes through (security headers, compression, the limits' refusals).
pub fn router<G: Game>(shared: Arc<Shared<G>>) -> Router {
    Router::new()
        // CONNECT: WebSockets over HTTP/2 (RFC 8441).
        .route("/", get(root::<G>).connect(websocket::<G>))
        .route("/ws", get(websocket::<G>).connect(websocket::<G>))
        .route("/rooms", get(rooms::<G>))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz::<G>))
        .route("/metrics", get(metrics::<G>))
        .fallback(assets::serve)
        .with_state(Arc::clone(&shared))
        .layer(CompressionLayer::new())
        .layer(middleware::from_fn(security_headers))
        .layer(middleware::from_fn_with_state(shared, front_policy::<G>))
}

/// Bytes read from a socket at a time; larger messages take several reads.
const READ_BUFFER: usize = 1024;

#[derive(Debug, Deserialize)]
struct WsParams {
    room: Option<String>,
    /// A resume token from an earlier `welcome`.
    resume: Option<String>,
}

/// `GET /`: the browser client, or a WebSocket when the request asks to
/// upgrade (the seed client connects to the bare root).
async fn root<G: Game>(
    State(shared): State<Arc<Shared<G>>>,
    connection: Option<Extension<Connection>>,
    headers: HeaderMap,
    params: Result<Query<WsParams>, QueryRejection>,
    ws: Result<Upgrade, UpgradeRejection>,
) -> Response {
    match ws {
        Ok(ws) => upgrade(
            shared,
            connection.map(|Extension(c)| c),
            &headers,
            params,
            ws,
        ),
        Err(_) => assets::index(&headers),
    }
}

/// `GET /ws` (and `CONNECT` on HTTP/2): WebSocket only.
async fn websocket<G: Game>(
    State(shared): State<Arc<Shared<G>>>,
    connection: Option<Extension<Connection>>,
    headers: HeaderMap,
    params: Result<Query<WsParams>, QueryRejection>,
    ws: Upgrade,
) -> Response {
    upgrade(
        shared,
        connection.map(|Extension(c)| c),
        &headers,
        params,
        ws,
    )
}

fn upgrade<G: Game>(
    shared: Arc<Shared<G>>,
    connection: Option<Connection>,
    headers: &HeaderMap,
    params: Result<Query<WsParams>, QueryRejection>,
    ws: Upgrade,
) -> Response {
    if shared.shutdown.is_cancelled() {
        shared.metrics.refused(RefusedReason::shutting_down);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "server is shutting down; reconnect in a moment\n",
        )
            .into_response();
    }
    // Browsers always send `Origin` on a WebSocket; bots and servers need not.
    if let Some(origin) = headers.get(header::ORIGIN) {
        if !shared.config.allowed_origins.allows(origin.as_bytes()) {
            shared.metrics.refused(RefusedReason::origin);
            return origin_refused(origin);
        }
    }
    // A malformed query (e.g. `?room=a&room=b`) is reported on the socket
    // with a close reason, which a browser can show; an HTTP 400 it cannot.
    let (room, resume) = match params {
        Ok(Query(p)) => (Ok(p.room), p.resume),
        Err(e) => (
            Err(format!(
                "invalid query string ({}); use ?room=NAME and, to resume a player, &resume=TOKEN",
                e.body_text()
            )),
            None,
        ),
    };
    let offered = ws
        .requested_protocols()
        .filter_map(|h| h.to_str().ok())
        .collect::<Vec<_>>();
    let protocol = match Protocol::negotiate(offered) {
        Ok(p) => p,
        Err(message) => {
            shared.metrics.refused(RefusedReason::bad_subprotocol);
            return (StatusCode::BAD_REQUEST, message).into_response();
        }
    };
    let limit = shared.config.max_message_bytes as usize;
    let config = WebSocketConfig::default()
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit))
        // tungstenite's default 128 KiB read buffer is zero-filled on every
        // read: with thousands of clients sending tiny inputs that memset
        // was the hottest thing in a profile and 128 KiB of RSS per
        // connection. Client messages are small (4 KiB at most by default).
        .read_buffer_size(READ_BUFFER);
    let subprotocol = protocol.subprotocol();
    // Every log line of this connection carries its id and peer, and once
    // it has a player, its room and player id (recorded by the session).
    let span = info_span!(
        "conn",
        id = shared.next_connection_id(),
        peer = connection
            .as_ref()
            .map(|c| c.peer().to_string())
            .unwrap_or_default(),
        room = Empty,
        player = Empty,
    );
    // Over a limit, the client is still upgraded to be told why (close 1013
    // with a reason a browser can show) while refusal slots last; past
    // them, a plain 503 costs nothing.
    let seat = match &connection {
        Some(connection) => connection.websocket_seat(),
        None => http::websocket_seat_without_connection(&shared.limits),
    };
    let (seat, hold) = match seat {
        WebSocketSeat::Admitted { permit, hold } => (Seat::Admitted(permit), hold),
        WebSocketSeat::Refused {
            why: Refusal::ServerFull { .. },
            slot,
            hold,
        } => (Seat::Refused(slot), hold),
        WebSocketSeat::Refused { why, slot, hold } => {
            // The session only knows how to say "server full".
            let send_timeout = shared.config.send_timeout;
            let tracker = shared.tracker.clone();
            debug!("refused a connection: {why}");
            return ws.on_upgrade(subprotocol, config, move |socket| {
                tracker.track_future(
                    async move {
                        let _held = (slot, hold);
                        refuse_on_socket(socket, why.to_string(), send_timeout).await;
                    }
                    .instrument(span),
                )
            });
        }
        WebSocketSeat::Rejected(why) => {
            return (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response()
        }
    };
    let admission = Admission {
        protocol,
        room,
        resume,
        seat,
    };
    let tracker = shared.tracker.clone();
    ws.on_upgrade(subprotocol, config, move |socket| {
        tracker.track_future(
            async move {
                // The per-address count, and an HTTP/2 connection's place,
                // last as long as the session.
                let _hold = hold;
                session::run(Box::new(socket), shared, admission).await;
            }
            .instrument(span),
        )
    })
}

/// HTTP 403 for a WebSocket from an origin not in `--allowed-origins`.
fn origin_refused(origin: &HeaderValue) -> Response {
    let origin = String::from_utf8_lossy(origin.as_bytes());
    let shown = protocol::truncate(&origin, 100);
    debug!("refused a WebSocket from origin `{shown}`");
    (
        StatusCode::FORBIDDEN,
        format!(
            "WebSocket connections from origin `{shown}` are not allowed on this server. \
             To allow them, add `{shown}` to --allowed-origins (PLAYFIELD_ALLOWED_ORIGINS), \
             a comma-separated list of exact origins such as `https://game.example,http://localhost:8765` \
             (`null` allows pages opened from a file).\n"
        ),
    )
        .into_response()
}

/// Tells a WebSocket client over a limit why (an `error`, then close 1013),
/// bounded in time like a session's own refusals.
async fn refuse_on_socket(mut socket: Socket, reason: String, send_timeout: Duration) {
    let error = encode::error(&ProtocolError {
        code: ErrorCode::ServerFull,
        message: reason.clone(),
    });
    let close = CloseFrame {
        code: close_code::TRY_AGAIN_LATER.into(),
        reason: Utf8Bytes::from(protocol::truncate(&reason, 123)),
    };
    let _ = tokio::time::timeout(send_timeout + Duration::from_secs(1), async {
        socket.send(Message::Text(error.into())).await?;
        socket.send(Message::Close(Some(close))).await?;
        // Wait for the client's close, so it surely reads ours.
        while let Some(Ok(msg)) = socket.recv().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
        }
        Ok::<(), ws::Error>(())
    })
    .await;
}

/// `GET /rooms`: rooms with player counts and capacity.
async fn rooms<G: Game>(State(shared): State<Arc<Shared<G>>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "rooms": shared.rooms.summaries(),
        "players": shared.players(),
        "connections": shared.limits.open(),
        "max_connections": shared.config.max_connections,
    }))
}

/// `GET /metrics`: every metric in the OpenMetrics text format (which
/// Prometheus scrapes), with the gauges read from the server's state now.
async fn metrics<G: Game>(State(shared): State<Arc<Shared<G>>>) -> Response {
    let now = m::Now {
        connections_open: shared.limits.open(),
        addresses_at_limit: shared.limits.addresses_at_limit(),
        players_suspended: shared.resumes.suspended(),
        rooms: shared.rooms.player_counts(),
    };
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.render(&now),
    )
        .into_response()
}

/// `GET /readyz`: 200 while the server accepts players, 503 once it is
/// shutting down (for a load balancer to stop sending it players).
async fn readyz<G: Game>(State(shared): State<Arc<Shared<G>>>) -> Response {
    if shared.shutdown.is_cancelled() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "draining: the server is shutting down",
        )
            .into_response()
    } else {
        "ready".into_response()
    }
}

/// Requests on a connection that is over a limit get HTTP 503 with the
/// reason, except probes (a full server is still alive) and WebSockets
/// (which are told on their socket). On HTTP/1.1, a refused connection and
/// every connection while shutting down close after their response.
async fn front_policy<G: Game>(
    State(shared): State<Arc<Shared<G>>>,
    request: Request,
    next: Next,
) -> Response {
    let http1 = request.version() <= Version::HTTP_11;
    let refused = request
        .extensions()
        .get::<Connection>()
        .and_then(Connection::refusal);
    let mut response = match &refused {
        Some(why) if !is_probe(request.uri().path()) && !wants_websocket(&request) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response()
        }
        _ => next.run(request).await,
    };
    let closing = refused.is_some() || shared.shutdown.is_cancelled();
    if http1 && closing && response.status() != StatusCode::SWITCHING_PROTOCOLS {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

fn is_probe(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz")
}

fn wants_websocket(request: &Request) -> bool {
    request.method() == Method::CONNECT
        || request
            .headers()
            .get(header::UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
}

/// The headers a security review expects on every page: a
/// Content-Security-Policy that allows only this server (and its
/// WebSocket), `nosniff`, and no referrer.
async fn security_headers(request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().authority().map(|a| a.as_str()));
    let csp = content_security_policy(host);
    let mut response = next.run(request).await;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        return response;
    }
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// The client has no inline script or style and loads everything from this
/// server; it talks to the server's own WebSocket. `'self'` covers `ws:` and
/// `wss:` on the same host in current browsers (CSP 3); older ones (Safari
/// before 16) need the host spelled out, which is taken from the request's
/// `Host` when it is a plain `host[:port]`.
pub fn content_security_policy(host: Option<&str>) -> HeaderValue {
    const REST: &str =
        "base-uri 'none'; form-action 'self'; frame-ancestors 'self'; object-src 'none'";
    let connect = match host.filter(|h| is_plain_authority(h)) {
        Some(h) => format!("'self' ws://{h} wss://{h}"),
        None => "'self'".to_owned(),
    };
    HeaderValue::from_str(&format!(
        "default-src 'self'; connect-src {connect}; {REST}"
    ))
    .unwrap_or_else(|_| {
        HeaderValue::from_static(
            "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'; object-src 'none'",
        )
    })
}

/// `host[:port]` made of the characters a host name, an IPv4 or a bracketed
/// IPv6 address and a port use: nothing that could end a CSP source.
fn is_plain_authority(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && !s.starts_with(':')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

/// Serves `G` on `listener` until `shutdown` completes; then refuses new
/// players (`/readyz` answers 503), closes every client with 1001 and exits
/// within `shutdown_grace`, whatever the clients do (a half-sent HTTP request
/// or a client that never answers the close cannot hold the process).
pub async fn run<G: Game>(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    config
        .validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    G::SCHEMA.validate().map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the game's schema: {e}"),
        )
    })?;
    let tls = crate::tls::acceptor(&config)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let grace = config.shutdown_grace;
    let shared = Arc::new(Shared::<G>::new(config));
    let token = shared.shutdown.clone();
    tokio::spawn(async move {
        shutdown.await;
        token.cancel();
    });
    let front = http::Front {
        header_timeout: shared.config.header_timeout,
        tls,
        limits: Arc::clone(&shared.limits),
    };
    let closed = CancellationToken::new();
    let connections = TaskTracker::new();
    let accepting = http::serve(
        listener,
        router(Arc::clone(&shared)),
        front,
        shared.shutdown.clone(),
        closed.clone(),
        connections.clone(),
    );
    let drained = async {
        shared.shutdown.cancelled().await;
        // One deadline for everything: sessions start closing at the
        // signal, in parallel with the HTTP drain. The listener stays open
        // meanwhile, so probes see `/readyz` answer 503.
        let deadline = tokio::time::Instant::now() + grace;
        info!(
            sessions = shared.tracker.len(),
            "shutting down: closing clients with 1001, refusing new players"
        );
        connections.close();
        shared.tracker.close();
        if tokio::time::timeout_at(deadline, connections.wait())
            .await
            .is_err()
        {
            warn!(
                remaining = connections.len(),
                "HTTP connections still open after {grace:?}; dropping them"
            );
        }
        if tokio::time::timeout_at(deadline, shared.tracker.wait())
            .await
            .is_err()
        {
            warn!(
                remaining = shared.tracker.len(),
                "some clients did not close within {grace:?}; exiting anyway"
            );
        }
    };
    tokio::select! {
        () = accepting => {}
        () = drained => {}
    }
    // Stops accepting (the listener is dropped with the accept loop) and
    // drops every HTTP connection still open.
    closed.cancel();
    Ok(())
}
