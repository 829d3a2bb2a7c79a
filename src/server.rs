//! The HTTP front: one port for the browser client, the WebSocket endpoint
//! and a JSON room list, plus graceful shutdown.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

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
use crate::session::{self, Admission};

/// State shared by every connection of one server.
pub struct Shared<G: Game> {
    pub config: Config,
    pub rooms: Rooms<G>,
    /// One permit per open WebSocket: the connection limit.
    pub connections: Arc<Semaphore>,
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
            },
            config.tick_interval(),
        );
        Shared {
            connections: Arc::new(Semaphore::new(config.max_connections as usize)),
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

/// Bytes read from a socket at a time; larger messages take several reads.
const READ_BUFFER: usize = 4096;

#[derive(Debug, Deserialize)]
struct WsParams {
    room: Option<String>,
}

/// `GET /`: the browser client, or a WebSocket when the request asks to
/// upgrade (the seed client connects to the bare root).
async fn root<G: Game>(
    state: State<Arc<Shared<G>>>,
    params: Query<WsParams>,
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
    params: Query<WsParams>,
    ws: WebSocketUpgrade,
) -> Response {
    upgrade(state, params, ws)
}

fn upgrade<G: Game>(
    State(shared): State<Arc<Shared<G>>>,
    Query(params): Query<WsParams>,
    ws: WebSocketUpgrade,
) -> Response {
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
    // Refusals need the socket to carry a close reason, so the permit is only
    // checked here and the session reports a missing one.
    let admission = Admission {
        protocol,
        room: params.room,
        permit: shared.connections.clone().try_acquire_owned().ok(),
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

/// Serves `G` on `listener` until `shutdown` completes, then closes every
/// client with 1001 and waits up to `shutdown_grace` for them.
pub async fn run<G: Game>(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let grace = config.shutdown_grace;
    let shared = Arc::new(Shared::<G>::new(config));
    let token = shared.shutdown.clone();
    tokio::spawn(async move {
        shutdown.await;
        token.cancel();
    });
    axum::serve(listener, router(shared.clone()))
        .with_graceful_shutdown(shared.shutdown.clone().cancelled_owned())
        .await?;
    info!(
        sessions = shared.tracker.len(),
        "stopped accepting; closing clients"
    );
    shared.tracker.close();
    if tokio::time::timeout(grace, shared.tracker.wait())
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
