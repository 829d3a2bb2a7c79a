//! The HTTP front: one port for the browser client, the WebSocket endpoint
//! and a JSON room list, plus graceful shutdown.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::assets;
use crate::config::Config;
use crate::game::{Game, PlayerId};
use crate::protocol::Protocol;
use crate::room::{RoomConfig, Rooms};
use crate::session::{self, Admission, Seat};

/// State shared by every connection of one server.
pub struct Shared<G: Game> {
    pub config: Config,
    pub rooms: Rooms<G>,
    /// One permit per open WebSocket: the connection limit.
    pub connections: Arc<Semaphore>,
    /// Over-limit clients being told so on their socket. Bounded too, so a
    /// flood of refused clients cannot cost more than a few tasks; past it
    /// they get a plain HTTP 503.
    pub refusals: Arc<Semaphore>,
    /// Cancelled once on shutdown; every session watches it.
    pub shutdown: CancellationToken,
    /// Every session task, so shutdown can wait for their close handshakes.
    pub tracker: TaskTracker,
    next_player: AtomicU64,
    players: AtomicUsize,
}

impl<G: Game> Shared<G> {
    pub fn new(config: Config) -> Self {
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
        );
        Shared {
            connections: Arc::new(Semaphore::new(config.max_connections as usize)),
            refusals: Arc::new(Semaphore::new(refusal_slots(config.max_connections))),
            rooms,
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            next_player: AtomicU64::new(1),
            players: AtomicUsize::new(0),
            config,
        }
    }

    /// The next player id: sequential per server, starting at 1, like the seed.
    pub fn next_player_id(&self) -> PlayerId {
        self.next_player.fetch_add(1, Ordering::Relaxed)
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

/// The application: routes and their handlers.
pub fn router<G: Game>(shared: Arc<Shared<G>>) -> Router {
    Router::new()
        .route("/", get(root::<G>))
        .route("/ws", get(websocket::<G>))
        .route("/rooms", get(rooms::<G>))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(assets::serve)
        .with_state(shared)
}

/// Refusals that may be in flight at once: a sixteenth of the connection
/// limit, at least 16.
fn refusal_slots(max_connections: u32) -> usize {
    (max_connections as usize / 16).max(16)
}

/// Bytes read from a socket at a time; larger messages take several reads.
const READ_BUFFER: usize = 1024;

#[derive(Debug, Deserialize)]
struct WsParams {
    room: Option<String>,
}

/// `GET /`: the browser client, or a WebSocket when the request asks to
/// upgrade (the seed client connects to the bare root).
async fn root<G: Game>(
    state: State<Arc<Shared<G>>>,
    params: Result<Query<WsParams>, QueryRejection>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match ws {
        Ok(ws) => upgrade(state, params, ws),
        Err(_) => assets::index(),
    }
}

/// `GET /ws`: WebSocket only.
async fn websocket<G: Game>(
    state: State<Arc<Shared<G>>>,
    params: Result<Query<WsParams>, QueryRejection>,
    ws: WebSocketUpgrade,
) -> Response {
    upgrade(state, params, ws)
}

fn upgrade<G: Game>(
    State(shared): State<Arc<Shared<G>>>,
    params: Result<Query<WsParams>, QueryRejection>,
    ws: WebSocketUpgrade,
) -> Response {
    // A malformed query (e.g. `?room=a&room=b`) is reported on the socket
    // with a close reason, which a browser can show; an HTTP 400 it cannot.
    let room = params
        .map(|Query(p)| p.room)
        .map_err(|e| format!("invalid query string ({}); use ?room=NAME", e.body_text()));
    let offered = ws
        .requested_protocols()
        .filter_map(|h| h.to_str().ok())
        .collect::<Vec<_>>();
    let protocol = match Protocol::negotiate(offered) {
        Ok(p) => p,
        Err(message) => return (StatusCode::BAD_REQUEST, message).into_response(),
    };
    let ws = match protocol.subprotocol() {
        Some(name) => ws.protocols([name]),
        None => ws,
    };
    let limit = shared.config.max_message_bytes as usize;
    // A refusal is sent on the socket (close 1013 with a reason a browser can
    // show) while refusal slots last; past them, a plain 503 costs nothing.
    let seat = match shared.connections.clone().try_acquire_owned() {
        Ok(permit) => Seat::Admitted(permit),
        Err(_) => match shared.refusals.clone().try_acquire_owned() {
            Ok(permit) => Seat::Refused(permit),
            Err(_) => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    session::server_full_reason(shared.config.max_connections),
                )
                    .into_response()
            }
        },
    };
    let admission = Admission {
        protocol,
        room,
        seat,
    };
    let tracker = shared.tracker.clone();
    ws.max_message_size(limit)
        .max_frame_size(limit)
        // tungstenite's default 128 KiB read buffer is zero-filled on every
        // read: with thousands of clients sending tiny inputs that memset was
        // the hottest thing in a profile and 128 KiB of RSS per connection.
        // Client messages are small (the limit is 4 KiB by default).
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| tracker.track_future(session::run(socket, shared, admission)))
}

/// `GET /rooms`: rooms with player counts and capacity.
async fn rooms<G: Game>(State(shared): State<Arc<Shared<G>>>) -> Json<serde_json::Value> {
    let open = (shared.config.max_connections as usize)
        .saturating_sub(shared.connections.available_permits());
    Json(serde_json::json!({
        "rooms": shared.rooms.summaries(),
        "players": shared.players(),
        "connections": open,
        "max_connections": shared.config.max_connections,
    }))
}

/// Serves `G` on `listener` until `shutdown` completes, then stops accepting,
/// closes every client with 1001 and exits within `shutdown_grace`, whatever
/// the clients do (a half-sent HTTP request or a client that never answers
/// the close cannot hold the process).
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
    let grace = config.shutdown_grace;
    let shared = Arc::new(Shared::<G>::new(config));
    let token = shared.shutdown.clone();
    tokio::spawn(async move {
        shutdown.await;
        token.cancel();
    });
    let header_timeout = shared.config.header_timeout;
    let accepting = crate::http::accept_until(
        listener,
        router(shared.clone()),
        header_timeout,
        shared.shutdown.clone(),
    );
    let open_http = accepting.await;
    // One deadline for everything: sessions start closing at the signal, in
    // parallel with the HTTP drain.
    let deadline = tokio::time::Instant::now() + grace;
    info!(
        sessions = shared.tracker.len(),
        "stopped accepting; closing clients with 1001"
    );
    if tokio::time::timeout_at(deadline, open_http.shutdown())
        .await
        .is_err()
    {
        warn!("HTTP connections still open after {grace:?}; dropping them");
    }
    shared.tracker.close();
    if tokio::time::timeout_at(deadline, shared.tracker.wait())
        .await
        .is_err()
    {
        warn!(
            remaining = shared.tracker.len(),
            "some clients did not close within {grace:?}; exiting anyway"
        );
    }
    Ok(())
}
