//! One task per WebSocket connection.
//!
//! A session joins its room, then loops over four things at once: snapshots
//! the room publishes (encoded for this client and sent as they come, newest
//! only), messages from the client (decoded and passed on), a ping timer, and
//! an idle deadline. Every send is
//! bounded by `send_timeout`, so a client that stops reading costs at most that
//! long before it is dropped, and it never delays the room or anyone else: the
//! room publishes on a latest-value `fanout` channel and does not wait for sessions.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::FutureExt;
use tokio::sync::{oneshot, OwnedSemaphorePermit};
use tokio::time::{timeout, Instant};
use tracing::{debug, info, warn};

use crate::fanout;
use crate::game::{Game, PlayerId};
use crate::protocol::encoder::Encoder;
use crate::protocol::{self, encode, ClientMessage, ErrorCode, Protocol, ProtocolError};
use crate::room::{validate_room_name, Command, InputQueue, ReserveError, RoomHandle, RoomTimings};
use crate::server::Shared;
use crate::snapshot::Snapshot;

/// WebSocket close codes we use (RFC 6455 §7.4.1).
pub mod close_code {
    pub const GOING_AWAY: u16 = 1001;
    pub const UNSUPPORTED_DATA: u16 = 1003;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL: u16 = 1011;
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// Bad messages logged at `warn` per connection; the rest go to `debug`, so
/// a client spamming garbage cannot flood the log.
const LOUD_BAD_MESSAGES: u32 = 3;

/// Why a session ended, for the disconnect log line.
#[derive(Debug)]
enum End {
    ClientClosed,
    Shutdown,
    Closed { code: u16, reason: String },
    SlowClient,
    SocketError(String),
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::ClientClosed => f.write_str("client closed"),
            End::Shutdown => f.write_str("server shutting down"),
            End::Closed { code, reason } => write!(f, "closed by server ({code}: {reason})"),
            End::SlowClient => f.write_str("client not reading (send timeout)"),
            End::SocketError(e) => write!(f, "socket error: {e}"),
        }
    }
}

/// What the upgrade handler decided before the socket existed.
pub struct Admission {
    pub protocol: Protocol,
    /// `?room=`, absent, or why the query string could not be read.
    pub room: Result<Option<String>, String>,
    pub seat: Seat,
}

/// Whether the connection limit let this client in. Either way the permit
/// is held for as long as the session runs.
pub enum Seat {
    Admitted(OwnedSemaphorePermit),
    /// Over the limit: only here to be told so.
    Refused(OwnedSemaphorePermit),
}

/// What an over-limit client is told.
pub fn server_full_reason(max_connections: u32) -> String {
    format!("server is full ({max_connections} connections max); try again later")
}

/// Runs one connection from upgrade to close.
pub async fn run<G: Game>(socket: WebSocket, shared: Arc<Shared<G>>, admission: Admission) {
    let protocol = admission.protocol;
    let mut conn = Connection {
        socket,
        protocol,
        send_timeout: shared.config.send_timeout,
    };
    let _permit = match admission.seat {
        Seat::Admitted(permit) => permit,
        Seat::Refused(_refusal) => {
            let reason = server_full_reason(shared.config.max_connections);
            debug!("refused a connection: {reason}");
            conn.refuse(ErrorCode::ServerFull, close_code::TRY_AGAIN_LATER, reason)
                .await;
            return;
        }
    };
    if protocol == Protocol::Seed && !G::speaks_seed() {
        let reason = format!(
            "this game cannot be played with the seed protocol; connect with subprotocol `{}`",
            protocol::NATIVE_JSON_V1
        );
        conn.refuse(ErrorCode::UnsupportedProtocol, close_code::POLICY, reason)
            .await;
        return;
    }
    let room = match admission.room {
        Ok(room) => room.unwrap_or_else(|| shared.config.default_room.clone()),
        Err(reason) => {
            debug!("refused a connection: {reason}");
            conn.refuse(ErrorCode::InvalidRoom, close_code::POLICY, reason)
                .await;
            return;
        }
    };
    if let Err(why) = validate_room_name(&room) {
        let shown = protocol::truncate(&room, 40);
        let reason = format!("invalid room `{shown}`: {why}");
        debug!("refused a connection: {reason}");
        conn.refuse(ErrorCode::InvalidRoom, close_code::POLICY, reason)
            .await;
        return;
    }
    let handle = match shared.rooms.reserve(&room) {
        Ok(handle) => handle,
        Err(why) => {
            debug!("refused a connection: {why}");
            let code = match why {
                ReserveError::RoomFull { .. } => ErrorCode::RoomFull,
                ReserveError::TooManyRooms { .. } => ErrorCode::TooManyRooms,
            };
            conn.refuse(code, close_code::TRY_AGAIN_LATER, why.to_string())
                .await;
            return;
        }
    };
    let player = shared.next_player_id();
    let (reply, joined) = oneshot::channel();
    let join = Command::Join { player, reply };
    let joined = match handle.commands.send(join).await {
        Ok(()) => joined.await.ok(),
        Err(_) => None,
    };
    let Some(joined) = joined else {
        // The room stopped under us; it cannot happen while we hold a
        // reservation, but a refusal is better than a panic if it does.
        shared.rooms.release(&room);
        conn.close(
            close_code::INTERNAL,
            "room closed unexpectedly; reconnect".into(),
        )
        .await;
        return;
    };

    let total = shared.player_joined();
    info!(
        player,
        room = %room,
        protocol = protocol.name(),
        "Player {player} connected. Total players: {total}"
    );

    let welcome = match protocol {
        Protocol::Seed => encode::seed_init(player),
        Protocol::NativeJson | Protocol::NativeBin => encode::welcome(&encode::Welcome {
            id: player,
            room: &room,
            tick_rate: shared.config.tick_rate,
            input_buffer: shared.config.input_buffer,
            server_time: protocol::unix_millis(std::time::SystemTime::now()),
            world: &joined.info,
            schema: G::SCHEMA,
            view_size: shared.config.view_size.min(shared.config.world_size),
        }),
    };
    let end = match conn.send(Message::Text(welcome.into())).await {
        Ok(()) => {
            let mut live = Live {
                conn,
                player,
                encoder: Encoder::new(protocol),
                snapshots: handle.snapshots.clone(),
                timings: Arc::clone(&handle.timings),
                last_sent: None,
                inputs: joined.inputs,
                bad_messages: 0,
                dropped_inputs: 0,
            };
            live.serve(&shared).await
        }
        Err(end) => end,
    };

    let last = shared.rooms.release(&room);
    leave(&handle, player, last).await;
    let total = shared.player_left();
    info!(
        player,
        room = %room,
        reason = %end,
        "Player {player} disconnected. Total players: {total}"
    );
}

async fn leave<G: Game>(handle: &RoomHandle<G>, player: PlayerId, last: bool) {
    // If the room is gone there is nothing to leave.
    let _ = handle.commands.send(Command::Leave { player, last }).await;
}

/// The socket with its protocol and send policy.
struct Connection {
    socket: WebSocket,
    protocol: Protocol,
    send_timeout: Duration,
}

impl Connection {
    /// Sends one message, giving up on clients that do not take it in time.
    async fn send(&mut self, msg: Message) -> Result<(), End> {
        let mut sending = std::pin::pin!(self.socket.send(msg));
        // Almost every send completes at once (the kernel takes the bytes):
        // only start the timer when it does not. That is one timer fewer per
        // client per tick.
        let done = match (&mut sending).now_or_never() {
            Some(done) => done,
            None => match timeout(self.send_timeout, sending).await {
                Ok(done) => done,
                Err(_) => return Err(End::SlowClient),
            },
        };
        done.map_err(|e| End::SocketError(e.to_string()))
    }

    /// Sends a close frame and waits briefly for the client's reply, so the
    /// close handshake completes and the client sees our code and reason.
    async fn close(&mut self, code: u16, reason: String) -> End {
        let frame = CloseFrame {
            code,
            reason: Utf8Bytes::from(protocol::truncate(&reason, 123)),
        };
        if self.send(Message::Close(Some(frame))).await.is_ok() {
            let _ = timeout(Duration::from_secs(1), async {
                while let Some(Ok(msg)) = self.socket.recv().await {
                    if matches!(msg, Message::Close(_)) {
                        break;
                    }
                }
            })
            .await;
        }
        End::Closed { code, reason }
    }

    /// Tells the client why it cannot play (an `error` message, then a close).
    async fn refuse(&mut self, code: ErrorCode, close: u16, message: String) {
        let err = ProtocolError {
            code,
            message: message.clone(),
        };
        if self
            .send(Message::Text(encode::error(&err).into()))
            .await
            .is_ok()
        {
            self.close(close, message).await;
        }
    }
}

/// Waits for the room's next snapshot; hands the receiver back so the
/// session can wait again (one future per snapshot, not per loop turn).
/// `None` when the room is gone.
async fn next_snapshot(
    mut receiver: fanout::Receiver<Arc<Snapshot>>,
) -> (fanout::Receiver<Arc<Snapshot>>, Option<Arc<Snapshot>>) {
    let snapshot = receiver.changed().await.ok();
    (receiver, snapshot)
}

/// A session that has joined its room.
struct Live<I> {
    conn: Connection,
    player: PlayerId,
    /// Encodes snapshots for this client; holds its delta baseline.
    encoder: Encoder,
    snapshots: fanout::Receiver<Arc<Snapshot>>,
    /// The room's timings, where this session records its fan-out.
    timings: Arc<RoomTimings>,
    /// The tick and time of the last snapshot sent.
    last_sent: Option<(u64, std::time::Instant)>,
    inputs: InputQueue<I>,
    bad_messages: u32,
    dropped_inputs: u64,
}

impl<I: Send + 'static> Live<I> {
    async fn serve<G: Game<Input = I>>(&mut self, shared: &Shared<G>) -> End {
        let config = &shared.config;
        let mut ping =
            tokio::time::interval_at(Instant::now() + config.ping_interval, config.ping_interval);
        // Liveness is measured by pongs: a client that stops reading also
        // stops answering pings, even if it keeps sending.
        //
        // The futures below live across loop iterations: a client sends ~20
        // messages a second, and re-creating a timer, a shutdown waiter and a
        // watch waiter on each of them was a measurable share of the
        // server's CPU with thousands of clients.
        let idle = tokio::time::sleep(config.idle_timeout);
        tokio::pin!(idle);
        let shutdown = shared.shutdown.cancelled();
        tokio::pin!(shutdown);
        let mut snapshots = self.snapshots.clone();
        snapshots.mark_seen();
        let next = next_snapshot(snapshots);
        tokio::pin!(next);
        loop {
            let result = tokio::select! {
                biased;
                _ = &mut shutdown => {
                    return match self.conn.close(close_code::GOING_AWAY, "server shutting down".into()).await {
                        End::Closed { .. } => End::Shutdown,
                        other => other,
                    };
                }
                incoming = self.conn.socket.recv() => match incoming {
                    None | Some(Ok(Message::Close(_))) => return End::ClientClosed,
                    Some(Ok(Message::Pong(_))) => {
                        idle.as_mut().reset(Instant::now() + config.idle_timeout);
                        Ok(())
                    }
                    Some(Ok(Message::Ping(_))) => Ok(()), // answered by the WebSocket layer
                    Some(Ok(Message::Text(text))) => {
                        let decoded = protocol::decode::<G>(self.conn.protocol, text.as_str());
                        self.on_message(decoded).await
                    }
                    Some(Ok(Message::Binary(bytes))) if self.conn.protocol.accepts_binary() => {
                        let decoded = protocol::decode_binary::<G>(&bytes);
                        self.on_message(decoded).await
                    }
                    Some(Ok(Message::Binary(_))) => {
                        return self.conn.close(
                            close_code::UNSUPPORTED_DATA,
                            format!("binary frames are not accepted by protocol {}; send JSON text frames (or connect with `{}`)", self.conn.protocol.name(), protocol::NATIVE_BIN_V1),
                        ).await;
                    }
                    Some(Err(e)) => return self.on_socket_error(e, config.max_message_bytes).await,
                },
                (receiver, snapshot) = &mut next => {
                    let Some(snapshot) = snapshot else {
                        return self.conn.close(close_code::INTERNAL, "room closed unexpectedly; reconnect".into()).await;
                    };
                    next.set(next_snapshot(receiver));
                    match self.encoder.snapshot(&snapshot, self.player) {
                        Some(msg) => {
                            let sent = self.conn.send(msg).await;
                            let now = std::time::Instant::now();
                            let budget = config.tick_interval();
                            self.timings.fanout.record(now - snapshot.published, budget);
                            if let Some((tick, at)) = self.last_sent {
                                if tick + 1 == snapshot.tick {
                                    // Over budget: more than 1.5 ticks apart.
                                    self.timings.send_gap.record(now - at, budget + budget / 2);
                                }
                            }
                            self.last_sent = Some((snapshot.tick, now));
                            sent
                        }
                        None => Ok(()),
                    }
                }
                _ = ping.tick() => self.conn.send(Message::Ping(Default::default())).await,
                _ = &mut idle => {
                    let secs = config.idle_timeout.as_secs_f64();
                    return self.conn.close(
                        close_code::GOING_AWAY,
                        format!("idle timeout: no pong for {secs} s; answer WebSocket pings to stay connected"),
                    ).await;
                }
            };
            if let Err(end) = result {
                return end;
            }
        }
    }

    async fn on_message(
        &mut self,
        decoded: Result<ClientMessage<I>, ProtocolError>,
    ) -> Result<(), End> {
        match decoded {
            Ok(ClientMessage::Input { seq, input }) => {
                // A full queue means the client sends faster than the tick:
                // dropping is the rule that makes flooding useless.
                if !self.inputs.push(seq, input) {
                    self.dropped_inputs += 1;
                    if self.dropped_inputs.is_power_of_two() {
                        debug!(
                            player = self.player,
                            dropped = self.dropped_inputs,
                            "input queue full, dropping inputs"
                        );
                    }
                }
                Ok(())
            }
            Ok(ClientMessage::Ping { id }) => {
                let now = protocol::unix_millis(std::time::SystemTime::now());
                self.conn
                    .send(Message::Text(encode::pong(id, now).into()))
                    .await
            }
            Err(err) => {
                self.bad_messages += 1;
                if self.bad_messages <= LOUD_BAD_MESSAGES {
                    warn!(
                        player = self.player,
                        code = err.code.as_str(),
                        "bad message: {}",
                        err.message
                    );
                    if self.bad_messages == LOUD_BAD_MESSAGES {
                        warn!(
                            player = self.player,
                            "further bad messages from this player are logged at debug level"
                        );
                    }
                } else {
                    debug!(
                        player = self.player,
                        code = err.code.as_str(),
                        "bad message: {}",
                        err.message
                    );
                }
                self.conn
                    .send(Message::Text(encode::error(&err).into()))
                    .await
            }
        }
    }

    /// Maps a failed read to the close code the RFC assigns to it.
    async fn on_socket_error(&mut self, err: axum::Error, limit: u32) -> End {
        use tungstenite::error::{CapacityError, Error as WsError};
        let inner = err.into_inner();
        match inner.downcast_ref::<WsError>() {
            Some(WsError::Capacity(cap)) => {
                let size = match cap {
                    CapacityError::MessageTooLong { size, .. } => format!("{size} bytes"),
                    _ => "a message".to_owned(),
                };
                debug!(player = self.player, "message too big: {cap}");
                self.conn
                    .close(
                        close_code::TOO_BIG,
                        format!("{size} exceeds the limit of {limit} bytes per message"),
                    )
                    .await
            }
            Some(WsError::Utf8(_)) => {
                debug!(player = self.player, "invalid UTF-8 in a text frame");
                self.conn
                    .close(
                        close_code::INVALID_PAYLOAD,
                        "text frame is not valid UTF-8".into(),
                    )
                    .await
            }
            _ => End::SocketError(inner.to_string()),
        }
    }
}
