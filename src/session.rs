//! One task per WebSocket connection, for what takes waiting.
//!
//! A session admits its client (a new player in its room, or a resumed
//! one), sends `welcome`, and hands the client ([`Live`]) to its room, which
//! serves it in every tick without waiting (see [`Client`]): it reads and
//! rate-limits the client's messages, decodes them and passes inputs on,
//! sends the pings and checks the idle deadline, and encodes and writes the
//! snapshots. When the client is done the room hands it back, and the
//! session does the rest, which may wait: the close handshake, a refusal,
//! handing the player over to a connection that resumed it, or parking it
//! for a resume.
//!
//! The session's seat in its room and its place in the server's player count
//! are drop guards ([`Seat`](crate::room::Seat), [`PlayerCount`]): however a
//! session ends, a panic included, both are given back.

mod rate;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};
use tokio::time::{timeout, Instant};
use tracing::{debug, error, info, warn};

use crate::game::{Game, PlayerId};
use crate::metrics::{Metrics, RefusedReason, SessionCounters};
use crate::protocol::encoder::{Encoder, Outgoing};
use crate::protocol::{self, encode, ClientMessage, ErrorCode, Protocol, ProtocolError};
use crate::resume::{self, Asked, Claimed, ResumeError, Takeover, Token};
use crate::room::{
    panic_message, validate_room_name, Client, Command, InputQueue, Pushed, Release, ReserveError,
    RoomTimings, Seat as RoomSeat,
};
use crate::server::Shared;
use crate::snapshot::Snapshot;
use crate::ws::{self, CloseFrame, Message, Sent, Socket, Utf8Bytes};

pub use rate::{RateLimit, Verdict, EXCESS_GAP, EXCESS_LIMIT};

/// WebSocket close codes we use (RFC 6455 §7.4.1).
pub mod close_code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
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

/// A connection's count of bad messages. It saturates: a client cannot
/// wrap it around (and get logged at `warn` again) by sending 2^32 of them.
#[derive(Debug, Default)]
struct BadMessages(u32);

/// How loudly to log a bad message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loudness {
    /// One of the first few: `warn`. `last` on the last of them.
    Warn { last: bool },
    /// The rest: `debug`.
    Debug,
}

impl BadMessages {
    /// Counts one bad message.
    fn count(&mut self) -> Loudness {
        self.0 = self.0.saturating_add(1);
        if self.0 <= LOUD_BAD_MESSAGES {
            Loudness::Warn {
                last: self.0 == LOUD_BAD_MESSAGES,
            }
        } else {
            Loudness::Debug
        }
    }
}

/// One player in the server's total (`GET /rooms`), for as long as this
/// lives: dropping it, on any path out of a session, counts the player out.
pub struct PlayerCount<G: Game> {
    shared: Arc<Shared<G>>,
    counted: bool,
}

impl<G: Game> PlayerCount<G> {
    /// Counts a player in; returns the guard and the new total.
    pub fn join(shared: &Arc<Shared<G>>) -> (Self, usize) {
        let total = shared.player_joined();
        let count = PlayerCount {
            shared: Arc::clone(shared),
            counted: true,
        };
        (count, total)
    }

    /// Counts the player out now; returns the new total.
    pub fn leave(mut self) -> usize {
        self.counted = false;
        self.shared.player_left()
    }
}

impl<G: Game> Drop for PlayerCount<G> {
    fn drop(&mut self) {
        if self.counted {
            self.shared.player_left();
        }
    }
}

/// The close reason when a room stops under its players (its game panicked).
fn room_failed_reason(room: &str) -> String {
    format!("room `{room}` stopped after an internal error; reconnect to join a fresh room")
}

/// Why a session ended, for the disconnect log line.
#[derive(Debug)]
enum End {
    /// The client closed the connection: with a close frame and its code,
    /// or (`None`) without one.
    ClientClosed(Option<u16>),
    Shutdown,
    Closed {
        code: u16,
        reason: String,
    },
    IdleTimeout,
    SlowClient,
    SocketError(String),
    /// The player was resumed on another connection.
    TakenOver,
}

impl End {
    /// Whether the client may come back for its player: the connection
    /// was lost (no close, an error, a timeout) or the client closed it
    /// with any code but 1000, which means "I am leaving".
    fn resumable(&self) -> bool {
        match self {
            End::ClientClosed(code) => *code != Some(close_code::NORMAL),
            End::IdleTimeout | End::SlowClient | End::SocketError(_) => true,
            End::Shutdown | End::Closed { .. } | End::TakenOver => false,
        }
    }
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::ClientClosed(Some(code)) => write!(f, "client closed ({code})"),
            End::ClientClosed(None) => f.write_str("connection lost (no close frame)"),
            End::Shutdown => f.write_str("server shutting down"),
            End::Closed { code, reason } => write!(f, "closed by server ({code}: {reason})"),
            End::IdleTimeout => f.write_str("idle timeout (no pong)"),
            End::SlowClient => f.write_str("client not reading (send timeout)"),
            End::SocketError(e) => write!(f, "socket error: {e}"),
            End::TakenOver => f.write_str("resumed on another connection"),
        }
    }
}

/// What the upgrade handler decided before the socket existed.
pub struct Admission {
    pub protocol: Protocol,
    /// `?room=`, absent, or why the query string could not be read.
    pub room: Result<Option<String>, String>,
    /// `?resume=`: the token of a player to take back.
    pub resume: Option<String>,
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

/// A player without its connection: everything that keeps it in its room
/// (the seat, the input queue, its place in the player count). Dropping it
/// removes the player; [`Resumes`](crate::resume::Resumes) keeps it while
/// the player's client may still come back.
pub struct Parked<G: Game> {
    seat: RoomSeat<G>,
    inputs: InputQueue<G::Input>,
    count: PlayerCount<G>,
    player: PlayerId,
    info: serde_json::Value,
}

/// Why a client could not get a player, as it is told.
struct Refused {
    metric: RefusedReason,
    code: ErrorCode,
    close: u16,
    reason: String,
}

/// Runs one connection from upgrade to close.
///
/// A panic in the session (a bug: nothing a client sends should cause one)
/// is caught and logged here. The seat and the player count have been
/// given back by their guards during the unwinding, and the socket is
/// dropped without a close frame.
///
/// The socket comes boxed: it is the biggest part of a session's state, and
/// an async fn keeps a slot for a value at each place it is moved to (the
/// argument, the connection, the live session), so unboxed it was stored
/// three times over in every session's future.
pub async fn run<G: Game>(socket: Box<Socket>, shared: Arc<Shared<G>>, admission: Admission) {
    if let Err(panic) = AssertUnwindSafe(connect(socket, shared, admission))
        .catch_unwind()
        .await
    {
        error!(
            panic = %panic_message(&*panic),
            "a session panicked (a bug); its seat and player count were given back and its socket dropped"
        );
    }
}

async fn connect<G: Game>(socket: Box<Socket>, shared: Arc<Shared<G>>, admission: Admission) {
    let protocol = admission.protocol;
    let mut conn = Connection {
        socket,
        protocol,
        send_timeout: shared.config.send_timeout,
        counters: shared.metrics.session_counters(protocol.name()),
    };
    let _permit = match admission.seat {
        Seat::Admitted(permit) => permit,
        Seat::Refused(_refusal) => {
            // Counted as refused when the limit was checked.
            let reason = server_full_reason(shared.config.max_connections);
            debug!("refused a connection: {reason}");
            conn.refuse(ErrorCode::ServerFull, close_code::TRY_AGAIN_LATER, reason)
                .await;
            return;
        }
    };
    // Boxed: admission runs once, and its state would otherwise widen the
    // session's future (one allocation per connection for its whole life).
    let (parked, resumed_with) =
        match Box::pin(admit(&shared, protocol, admission.room, admission.resume)).await {
            Ok(admitted) => admitted,
            Err(refused) => {
                debug!("refused a connection: {}", refused.reason);
                shared.metrics.refused(refused.metric);
                conn.refuse(refused.code, refused.close, refused.reason)
                    .await;
                return;
            }
        };
    shared.metrics.websockets_accepted.inc();
    play(conn, shared, parked, resumed_with).await;
}

/// Finds this client its player: a new one in its room, or the one its
/// resume token names.
async fn admit<G: Game>(
    shared: &Arc<Shared<G>>,
    protocol: Protocol,
    room: Result<Option<String>, String>,
    resume: Option<String>,
) -> Result<(Parked<G>, Option<Token>), Refused> {
    if protocol == Protocol::Seed && !G::speaks_seed() {
        return Err(Refused {
            metric: RefusedReason::unsupported_protocol,
            code: ErrorCode::UnsupportedProtocol,
            close: close_code::POLICY,
            reason: format!(
                "this game cannot be played with the seed protocol; connect with subprotocol `{}`",
                protocol::NATIVE_JSON_V1
            ),
        });
    }
    let room = room.map_err(|reason| Refused {
        metric: RefusedReason::invalid_query,
        code: ErrorCode::InvalidRoom,
        close: close_code::POLICY,
        reason,
    })?;
    if let Some(token) = resume {
        return take_back(shared, protocol, &token, room.as_deref())
            .await
            .map(|parked| (parked, Token::parse(&token)));
    }
    let room = room.unwrap_or_else(|| shared.config.default_room.clone());
    if let Err(why) = validate_room_name(&room) {
        let shown = protocol::truncate(&room, 40);
        return Err(Refused {
            metric: RefusedReason::invalid_room,
            code: ErrorCode::InvalidRoom,
            close: close_code::POLICY,
            reason: format!("invalid room `{shown}`: {why}"),
        });
    }
    // Given back when dropped, on every path out of this function.
    let mut seat = shared.rooms.reserve(&room).map_err(|why| {
        let (metric, code) = match why {
            ReserveError::RoomFull { .. } => (RefusedReason::room_full, ErrorCode::RoomFull),
            ReserveError::TooManyRooms { .. } => {
                (RefusedReason::too_many_rooms, ErrorCode::TooManyRooms)
            }
        };
        Refused {
            metric,
            code,
            close: close_code::TRY_AGAIN_LATER,
            reason: why.to_string(),
        }
    })?;
    let player = shared.next_player_id();
    let Some(joined) = seat.join(player).await else {
        // The room stopped under us: its game panicked.
        return Err(Refused {
            metric: RefusedReason::room_failed,
            code: ErrorCode::RoomFailed,
            close: close_code::INTERNAL,
            reason: room_failed_reason(&room),
        });
    };
    let (count, _) = PlayerCount::join(shared);
    Ok((
        Parked {
            seat,
            inputs: joined.inputs,
            count,
            player,
            info: joined.info,
        },
        None,
    ))
}

/// Takes back the player of `token`: at once if it is suspended, or from
/// its live session (whose client has not noticed yet that it lost it).
async fn take_back<G: Game>(
    shared: &Arc<Shared<G>>,
    protocol: Protocol,
    token: &str,
    room: Option<&str>,
) -> Result<Parked<G>, Refused> {
    let refused = |why: ResumeError| Refused {
        metric: RefusedReason::resume_refused,
        code: why.code(),
        close: resume::REFUSED,
        reason: why.to_string(),
    };
    if !protocol.resumable() {
        return Err(Refused {
            metric: RefusedReason::resume_refused,
            code: ErrorCode::UnsupportedProtocol,
            close: resume::REFUSED,
            reason: format!(
                "the seed protocol cannot resume players; connect with subprotocol `{}` or `{}`",
                protocol::NATIVE_BIN_V1,
                protocol::NATIVE_JSON_V1
            ),
        });
    }
    match shared.resumes.claim(token, room).map_err(refused)? {
        Claimed::Ready(parked) => Ok(parked),
        Claimed::HandingOver(handed) => {
            // The live session hands over as soon as it sees the request;
            // only a session stuck in a send takes up to the send timeout.
            let wait = shared.config.send_timeout + Duration::from_secs(1);
            match timeout(wait, handed).await {
                Ok(Ok(parked)) => Ok(parked),
                _ => Err(refused(ResumeError::Gone)),
            }
        }
    }
}

/// Plays one connection's player until the connection ends, then parks
/// the player for a resume or lets it go. `resumed_with` is the token this
/// connection resumed its player with.
///
/// While the player plays, the connection is served by the room's task
/// (see [`Client`]); this task only waits for it to come back, and then
/// does what takes waiting: a close handshake, a handover.
async fn play<G: Game>(
    mut conn: Connection,
    shared: Arc<Shared<G>>,
    parked: Parked<G>,
    resumed_with: Option<Token>,
) {
    let resumed = resumed_with.is_some();
    let Parked {
        seat,
        inputs,
        count,
        player,
        info,
    } = parked;
    let room = seat.room().to_owned();
    let span = tracing::Span::current();
    span.record("room", room.as_str());
    span.record("player", player);
    let protocol = conn.protocol;
    // Seed clients have nowhere to put a token; with a grace of 0 resuming is off.
    let resumable = protocol.resumable() && !shared.config.resume_grace.is_zero();
    let (token, asked) = if resumable {
        let (live, asked) = shared.resumes.issue(&room);
        (Some(live), asked)
    } else {
        (None, Asked::unclaimed())
    };
    if resumed {
        shared.metrics.resumes.inc();
    }
    let how = if resumed { "resumed" } else { "connected" };
    info!(player, room = %room, protocol = protocol.name(), "Player {player} {how}. Total players: {}", shared.players());

    let welcome = match protocol {
        Protocol::Seed => encode::seed_init(player),
        Protocol::NativeJson | Protocol::NativeBin => encode::welcome(&encode::Welcome {
            id: player,
            room: &room,
            tick_rate: shared.config.tick_rate,
            input_buffer: shared.config.input_buffer,
            server_time: protocol::unix_millis(std::time::SystemTime::now()),
            world: &info,
            schema: G::SCHEMA,
            view_size: shared.config.view_size.min(shared.config.world_size),
            resume_token: token.as_ref().map(|t| t.token().to_string()),
            resumed_seq: resumed.then(|| inputs.last_seq()),
        }),
    };
    let served = match conn.send(Message::Text(welcome.into())).await {
        // The client never got its token: nothing to come back with,
        // unless it resumed with one.
        Err(end) => Served::Back {
            inputs,
            asked,
            back: Back {
                end,
                conn: None,
                handover: None,
                heard: false,
            },
        },
        Ok(()) => {
            let live = Live::new(conn, &shared, &seat, player, inputs, asked, span);
            in_room(live, &seat).await
        }
    };
    let (inputs, asked, back) = match served {
        Served::Back {
            inputs,
            asked,
            back,
        } => (inputs, asked, back),
        Served::Gone(why) => {
            drop(token);
            drop(seat);
            let total = count.leave();
            info!(player, room = %room, "Player {player} disconnected ({why}). Total players: {total}");
            return;
        }
    };
    let parked = Parked {
        seat,
        inputs,
        count,
        player,
        info,
    };
    part(&shared, parked, back, token, asked, resumed_with).await;
}

/// What came of serving a client in its room.
enum Served<G: Game> {
    /// It came back: what is left of it, and how it ended.
    Back {
        inputs: InputQueue<G::Input>,
        asked: Asked<Parked<G>>,
        back: Back<G>,
    },
    /// Its socket is gone after a bug (logged): the player leaves.
    Gone(&'static str),
}

/// Hands `live` to the room of `seat`, waits for it to come back, and does
/// what is left to do (which may wait: a close handshake, a handover).
async fn in_room<G: Game>(mut live: Box<Live<G>>, seat: &RoomSeat<G>) -> Served<G> {
    let (done, back) = oneshot::channel();
    live.done = Some(done);
    // From here on the room reads and writes the socket.
    live.conn.socket.park();
    if let Err(mpsc::error::SendError(Command::Attach(live))) =
        seat.handle().commands.send(Command::Attach(live))
    {
        // The room is gone: its game panicked.
        live.finish(Release::RoomFailed);
    }
    let Ok(live) = back.await else {
        // Serving it panicked outside its own guard (logged by the room).
        return Served::Gone("connection dropped after an internal error");
    };
    let Live {
        mut conn,
        inputs,
        heard,
        asked,
        ending,
        room,
        ..
    } = *live;
    let (end, handover) = match ending {
        Some(Ending::Panicked(panic)) => {
            error!(
                %panic,
                "a session panicked (a bug); its seat and player count were given back and its socket dropped"
            );
            return Served::Gone("a session panicked");
        }
        Some(ending) => conn.conclude(ending).await,
        // Not told why: only a room that stopped can do that.
        None => (
            conn.close(close_code::INTERNAL, room_failed_reason(&room))
                .await,
            None,
        ),
    };
    Served::Back {
        inputs,
        asked,
        back: Back {
            end,
            conn: Some(conn),
            handover,
            heard,
        },
    }
}

/// How a connection ended, for [`part`].
struct Back<G: Game> {
    end: End,
    /// The connection, if the welcome went out on it.
    conn: Option<Connection>,
    /// Where to hand the player over to, when it was resumed elsewhere.
    handover: Option<Takeover<Parked<G>>>,
    /// Whether anything came from the client (see [`Live::heard`]).
    heard: bool,
}

/// Parts a player from its connection: hands it over to the connection
/// that resumed it, parks it for a resume, or lets it go.
async fn part<G: Game>(
    shared: &Arc<Shared<G>>,
    parked: Parked<G>,
    back: Back<G>,
    token: Option<resume::Live<Parked<G>>>,
    asked: Asked<Parked<G>>,
    resumed_with: Option<Token>,
) {
    let (player, room) = (parked.player, parked.seat.room().to_owned());
    let Back {
        end,
        conn,
        handover,
        heard,
    } = back;
    match (end, token) {
        (End::TakenOver, _) => {
            if let Some(reply) = handover {
                // If the new connection gave up meanwhile, the player leaves.
                let _ = reply.send(parked);
            }
            info!(player, room = %room, "Player {player} moved to a resumed connection");
            if let Some(mut conn) = conn {
                conn.close(
                    resume::TAKEN_OVER,
                    "this player was resumed on another connection".into(),
                )
                .await;
            }
        }
        // Only a client that may have a token can come back: the new one
        // if its welcome went out, or the one it resumed with.
        (end, Some(token))
            if end.resumable()
                && (conn.is_some() || resumed_with.is_some())
                && !shared.shutdown.is_cancelled() =>
        {
            let grace = shared.resumes.grace().as_secs_f64();
            info!(
                player,
                room = %room,
                reason = %end,
                "Player {player} lost its connection; kept {grace} s for a resume"
            );
            // Unheard, the client may not have the new token yet.
            let also = resumed_with.filter(|_| !heard);
            shared.resumes.suspend(token, parked, asked, also);
        }
        (end, token) => {
            // The token (if any) is retired; the player leaves its room,
            // then the count.
            drop(token);
            let Parked { seat, count, .. } = parked;
            drop(seat);
            let total = count.leave();
            info!(
                player,
                room = %room,
                reason = %end,
                "Player {player} disconnected. Total players: {total}"
            );
        }
    }
}

/// The socket with its protocol and send policy.
struct Connection {
    socket: Box<Socket>,
    protocol: Protocol,
    send_timeout: Duration,
    /// Messages and bytes in and out, by protocol.
    counters: SessionCounters,
}

impl Connection {
    /// Sends one message, giving up on clients that do not take it in time.
    async fn send(&mut self, msg: Message) -> Result<(), End> {
        self.count_out(&msg);
        let mut sending = std::pin::pin!(self.socket.send(msg));
        // Almost every send completes at once (the kernel takes the bytes):
        // only start the timer when it does not. The timer is boxed: it is
        // rare, and inline it would widen the session's future.
        let done = match (&mut sending).now_or_never() {
            Some(done) => done,
            None => match Box::pin(timeout(self.send_timeout, sending)).await {
                Ok(done) => done,
                Err(_) => return Err(End::SlowClient),
            },
        };
        done.map_err(|e| End::SocketError(e.to_string()))
    }

    fn count_out(&mut self, msg: &Message) {
        if let Some(len) = data_len(msg) {
            self.counters.messages_out.inc();
            self.counters.bytes_out.inc_by(len);
        }
    }

    /// Queues `msg` and writes as much as the socket takes now, without
    /// waiting. `Ok(false)` when bytes are left over for [`try_flush`].
    ///
    /// [`try_flush`]: Connection::try_flush
    fn push(&mut self, msg: Message) -> Result<bool, End> {
        self.count_out(&msg);
        self.socket
            .push(msg)
            .map_err(|e| End::SocketError(e.to_string()))
    }

    /// Writes a snapshot as the encoder made it, without waiting.
    fn push_snapshot(&mut self, out: Outgoing<'_>) -> Result<Sent, End> {
        let (sent, len) = match out {
            Outgoing::Message(msg) => {
                let len = data_len(&msg).unwrap_or(0);
                let sent = self
                    .socket
                    .push(msg)
                    .map(|all| if all { Sent::All } else { Sent::Part });
                (sent, len)
            }
            Outgoing::Shared(shared) => {
                (self.socket.push_shared(shared.frame()), shared.len() as u64)
            }
            Outgoing::Framed { frame, payload } => (
                self.socket.push_framed(frame),
                frame.len().saturating_sub(payload) as u64,
            ),
        };
        let sent = sent.map_err(|e| End::SocketError(e.to_string()))?;
        if sent != Sent::Skipped {
            self.counters.messages_out.inc();
            self.counters.bytes_out.inc_by(len);
        }
        Ok(sent)
    }

    /// Writes what is queued as far as the socket takes it now, without
    /// waiting. `Ok(true)` when nothing is left.
    fn try_flush(&mut self) -> Result<bool, End> {
        self.socket
            .try_flush()
            .map_err(|e| End::SocketError(e.to_string()))
    }

    /// Does what `ending` asks for, waiting as long as that takes. Returns
    /// how the session ended, and where to hand the player over to if it
    /// was resumed elsewhere.
    async fn conclude<G: Game>(&mut self, ending: Ending<G>) -> (End, Option<Takeover<Parked<G>>>) {
        let end = match ending {
            Ending::Lost(end) => end,
            Ending::ClientClosed(frame) => {
                // Answer the close frame (RFC 6455 §5.5.1). tungstenite
                // queued the reply on reading the close but only writes it
                // on a later read, write or flush; without this flush the
                // socket was dropped first, and a browser saw an unclean
                // close (1006) after leaving normally.
                let _ = timeout(self.send_timeout, self.socket.flush()).await;
                End::ClientClosed(frame.map(|f| u16::from(f.code)))
            }
            Ending::Close { code, reason, then } => match self.close(code, reason).await {
                End::Closed { code, reason } => then.unwrap_or(End::Closed { code, reason }),
                other => other,
            },
            Ending::Refuse {
                code,
                close,
                message,
            } => self.refuse(code, close, message).await,
            Ending::TakenOver(reply) => return (End::TakenOver, Some(reply)),
            Ending::Panicked(panic) => End::SocketError(format!("panicked: {panic}")),
        };
        (end, None)
    }

    /// Sends a close frame and waits briefly for the client's reply, so the
    /// close handshake completes and the client sees our code and reason.
    fn close(&mut self, code: u16, reason: String) -> BoxFuture<'_, End> {
        async move {
            let frame = CloseFrame {
                code: code.into(),
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
        .boxed()
    }

    /// Tells the client why it cannot play (an `error` message, then a close).
    fn refuse(&mut self, code: ErrorCode, close: u16, message: String) -> BoxFuture<'_, End> {
        async move {
            let err = ProtocolError {
                code,
                message: message.clone(),
            };
            match self.send(Message::Text(encode::error(&err).into())).await {
                Ok(()) => self.close(close, message).await,
                Err(end) => end,
            }
        }
        .boxed()
    }
}

/// The payload size of a data message (text or binary); `None` for control
/// frames, which the message counters leave out.
fn data_len(msg: &Message) -> Option<u64> {
    match msg {
        Message::Text(t) => Some(t.len() as u64),
        Message::Binary(b) => Some(b.len() as u64),
        _ => None,
    }
}

/// What is left to do when the room is done with a client; its session
/// does it (it may take waiting).
enum Ending<G: Game> {
    /// Nothing to send: the connection is lost or unusable.
    Lost(End),
    /// The client closed the connection: answer its close frame.
    ClientClosed(Option<CloseFrame>),
    /// Close with `code` and `reason`. If that goes through, the session
    /// ended as `then` (by default as closed by the server).
    Close {
        code: u16,
        reason: String,
        then: Option<End>,
    },
    /// Tell the client why (an `error` message), then close.
    Refuse {
        code: ErrorCode,
        close: u16,
        message: String,
    },
    /// The player was resumed on another connection: hand it over there.
    TakenOver(Takeover<Parked<G>>),
    /// Serving the client panicked (a bug): the socket is dropped as it is,
    /// and the player leaves.
    Panicked(String),
}

/// A session's connection while its room serves it (see [`Client`]).
struct Live<G: Game> {
    conn: Connection,
    player: PlayerId,
    room: String,
    shared: Arc<Shared<G>>,
    /// A claim of this player's resume token (see `resume::Asked`).
    asked: Asked<Parked<G>>,
    /// Encodes snapshots for this client; holds its delta baseline.
    encoder: Encoder,
    /// The room's timings, where this client's fan-out is recorded.
    timings: Arc<RoomTimings>,
    /// The tick and time of the last snapshot sent.
    last_sent: Option<(u64, std::time::Instant)>,
    /// Whether anything (a message, a pong) came from the client: then it
    /// surely got its `welcome`, and with it its new resume token.
    heard: bool,
    inputs: InputQueue<G::Input>,
    bad_messages: BadMessages,
    dropped_inputs: u64,
    /// The client's message rate.
    limit: RateLimit,
    /// When the next ping goes out. Pings go out, and the idle deadline is
    /// checked, on the snapshots that go out anyway (20 a second at the
    /// default tick rate) rather than on timers of their own; a room always
    /// ticks while it has players, so both hold to within a tick.
    next_ping: Instant,
    /// Liveness is measured by pongs: a client that stops reading also
    /// stops answering pings, even if it keeps sending.
    last_pong: Instant,
    /// Since when the socket has held bytes it could not take yet: a client
    /// that reads slowly, or not at all. It skips snapshots meanwhile, and
    /// is let go after the send timeout.
    backlog_since: Option<Instant>,
    /// Why the client is done, once it is.
    ending: Option<Ending<G>>,
    /// Where the room hands the client back.
    done: Option<oneshot::Sender<Box<Live<G>>>>,
    /// The connection's log span, entered while the room serves it.
    span: tracing::Span,
}

impl<G: Game> Client for Live<G> {
    fn read(&mut self) -> bool {
        self.within(Live::read_now)
    }

    fn write(&mut self, snapshot: &Arc<Snapshot>) -> bool {
        self.within(|live| match live.send_snapshot(snapshot) {
            Ok(()) => true,
            Err(ending) => live.done(ending),
        })
    }

    fn finish(mut self: Box<Self>, why: Release) {
        if why == Release::RoomFailed && self.ending.is_none() {
            self.ending = Some(Ending::Close {
                code: close_code::INTERNAL,
                reason: room_failed_reason(&self.room),
                then: None,
            });
        }
        if let Some(done) = self.done.take() {
            // If the session is gone, so is the client.
            let _ = done.send(self);
        }
    }
}

impl<G: Game> Live<G> {
    fn new(
        conn: Connection,
        shared: &Arc<Shared<G>>,
        seat: &RoomSeat<G>,
        player: PlayerId,
        inputs: InputQueue<G::Input>,
        asked: Asked<Parked<G>>,
        span: tracing::Span,
    ) -> Box<Self> {
        let now = Instant::now();
        let config = &shared.config;
        Box::new(Live {
            encoder: Encoder::new(conn.protocol),
            conn,
            player,
            room: seat.room().to_owned(),
            shared: Arc::clone(shared),
            asked,
            timings: Arc::clone(&seat.handle().timings),
            last_sent: None,
            heard: false,
            inputs,
            bad_messages: BadMessages::default(),
            dropped_inputs: 0,
            limit: RateLimit::new(config.message_rate(), config.message_burst, now),
            next_ping: now + config.ping_interval,
            last_pong: now,
            backlog_since: None,
            ending: None,
            done: None,
            span,
        })
    }

    /// Runs `f` in the connection's span, so what it logs carries the
    /// connection's id, peer, room and player, as on the session's own
    /// task. A panic in it (a bug: nothing a client sends should cause
    /// one) ends this client alone.
    fn within(&mut self, f: impl FnOnce(&mut Self) -> bool) -> bool {
        let span = std::mem::replace(&mut self.span, tracing::Span::none());
        let result = {
            let _entered = span.enter();
            std::panic::catch_unwind(AssertUnwindSafe(|| f(self)))
        };
        self.span = span;
        match result {
            Ok(more) => more,
            Err(panic) => self.done(Ending::Panicked(panic_message(&*panic).to_owned())),
        }
    }

    fn read_now(&mut self) -> bool {
        // A bounded number of messages per tick, as many as a client may
        // send at once (`--message-burst`): one that floods finds its excess
        // left in the kernel (and its own send buffer filling up) rather
        // than taking the room's time.
        self.conn.socket.begin_reads();
        for _ in 0..self.shared.config.message_burst {
            let msg = match self.conn.socket.try_recv() {
                Poll::Pending => return true,
                Poll::Ready(None) => return self.done(Ending::Lost(End::ClientClosed(None))),
                Poll::Ready(Some(Ok(Message::Close(frame)))) => {
                    return self.done(Ending::ClientClosed(frame))
                }
                Poll::Ready(Some(Err(e))) => {
                    let ending = self.socket_error(e);
                    return self.done(ending);
                }
                Poll::Ready(Some(Ok(msg))) => msg,
            };
            if let Err(ending) = self.on_frame(msg) {
                return self.done(ending);
            }
        }
        true
    }

    /// Records why the client is done; `false`, for [`Client`]'s methods.
    fn done(&mut self, ending: Ending<G>) -> bool {
        self.ending = Some(ending);
        false
    }

    /// Takes one message from the client.
    fn on_frame(&mut self, msg: Message) -> Result<(), Ending<G>> {
        self.heard = true;
        if let Some(len) = data_len(&msg) {
            self.conn.counters.messages_in.inc();
            self.conn.counters.bytes_in.inc_by(len);
        }
        let shared = Arc::clone(&self.shared);
        let metrics = &shared.metrics;
        match self.limit.check(Instant::now()) {
            Verdict::Accept => match msg {
                Message::Pong(_) => {
                    self.last_pong = Instant::now();
                    Ok(())
                }
                Message::Ping(_) => Ok(()), // answered by the WebSocket layer
                Message::Text(text) => {
                    let decoded = protocol::decode::<G>(self.conn.protocol, text.as_str());
                    self.on_message(decoded, metrics)
                }
                Message::Binary(bytes) if self.conn.protocol.accepts_binary() => {
                    let decoded = protocol::decode_binary::<G>(&bytes);
                    self.on_message(decoded, metrics)
                }
                Message::Binary(_) => {
                    metrics.protocol_error("binary_not_accepted");
                    Err(Ending::Close {
                        code: close_code::UNSUPPORTED_DATA,
                        reason: format!(
                            "binary frames are not accepted by protocol {}; send JSON text frames (or connect with `{}`)",
                            self.conn.protocol.name(),
                            protocol::NATIVE_BIN_V1
                        ),
                        then: None,
                    })
                }
                Message::Close(frame) => Err(Ending::ClientClosed(frame)),
                // Only ever written, never read.
                Message::Frame(_) => Ok(()),
            },
            Verdict::Drop { first } => {
                self.inputs.unread();
                metrics.protocol_error("rate_limited");
                self.over_rate(first)
            }
            Verdict::Close => {
                metrics.protocol_error("rate_limit_close");
                Err(self.flooded())
            }
        }
    }

    /// Sends this tick's snapshot, and the ping when one is due; or ends
    /// the client: its token was claimed, the server shuts down, it stopped
    /// answering pings, or it stopped reading for longer than the send
    /// timeout.
    fn send_snapshot(&mut self, snapshot: &Arc<Snapshot>) -> Result<(), Ending<G>> {
        // A claim of this player's token is looked for once per tick (see
        // `resume::Asked`).
        if let Some(reply) = self.asked.take() {
            return Err(Ending::TakenOver(reply));
        }
        if self.shared.shutdown.is_cancelled() {
            return Err(Ending::Close {
                code: close_code::GOING_AWAY,
                reason: "server shutting down".into(),
                then: Some(End::Shutdown),
            });
        }
        let config = &self.shared.config;
        let now = Instant::now();
        if let Some(since) = self.backlog_since {
            if !self.conn.try_flush().map_err(Ending::Lost)? {
                if now.saturating_duration_since(since) >= config.send_timeout {
                    return Err(Ending::Lost(End::SlowClient));
                }
                // Still full: this snapshot is skipped; the next one that
                // goes out is a delta against what the client really has.
                return Ok(());
            }
            self.backlog_since = None;
        }
        let ping_due = now >= self.next_ping;
        if ping_due {
            self.next_ping = now + config.ping_interval;
            if now.saturating_duration_since(self.last_pong) >= config.idle_timeout {
                let secs = config.idle_timeout.as_secs_f64();
                return Err(Ending::Close {
                    code: close_code::GOING_AWAY,
                    reason: format!("idle timeout: no pong for {secs} s; answer WebSocket pings to stay connected"),
                    then: Some(End::IdleTimeout),
                });
            }
        }
        let mut flushed = true;
        if let Some(out) = self.encoder.snapshot(snapshot, self.player) {
            let sent = self.conn.push_snapshot(out).map_err(Ending::Lost)?;
            flushed = sent == Sent::All;
            if sent == Sent::Skipped {
                // Bytes queued earlier held it back: the client never gets
                // this one, so the next is not a delta against it.
                self.encoder.forget();
            } else {
                let sent = std::time::Instant::now();
                let budget = config.tick_interval();
                let fanout = sent - snapshot.published;
                self.timings.fanout.record(fanout, budget);
                self.shared
                    .metrics
                    .fanout_seconds
                    .observe(fanout.as_secs_f64());
                if let Some((tick, at)) = self.last_sent {
                    let skipped = snapshot.tick.saturating_sub(tick + 1);
                    if skipped > 0 {
                        self.shared.metrics.snapshots_skipped.inc_by(skipped);
                    }
                    if tick + 1 == snapshot.tick {
                        // Over budget: more than 1.5 ticks apart.
                        self.timings.send_gap.record(sent - at, budget + budget / 2);
                    }
                }
                self.last_sent = Some((snapshot.tick, sent));
            }
        }
        if ping_due {
            flushed = self
                .conn
                .push(Message::Ping(Default::default()))
                .map_err(Ending::Lost)?;
        }
        if !flushed {
            self.backlog_since = Some(now);
        }
        Ok(())
    }

    /// Queues a reply to the client. A socket that cannot take it all now
    /// is written on the next tick.
    fn reply(&mut self, msg: Message) -> Result<(), Ending<G>> {
        if !self.conn.push(msg).map_err(Ending::Lost)? && self.backlog_since.is_none() {
            self.backlog_since = Some(Instant::now());
        }
        Ok(())
    }

    /// A message dropped by the rate limit; the client is told once per
    /// period of excess, not per message.
    fn over_rate(&mut self, first: bool) -> Result<(), Ending<G>> {
        if !first {
            return Ok(());
        }
        let config = &self.shared.config;
        let rate = config.message_rate();
        let burst = config.message_burst;
        let secs = EXCESS_LIMIT.as_secs();
        debug!(
            player = self.player,
            "over the message rate; dropping messages"
        );
        let err = ProtocolError {
            code: ErrorCode::RateLimited,
            message: format!(
                "too many messages: at most {rate} per second (bursts of {burst}); the excess is dropped, and a client that keeps it up for {secs} s is disconnected"
            ),
        };
        self.reply(Message::Text(encode::error(&err).into()))
    }

    /// Closes a client that stayed over its message rate.
    fn flooded(&mut self) -> Ending<G> {
        let rate = self.shared.config.message_rate();
        let secs = EXCESS_LIMIT.as_secs();
        warn!(
            player = self.player,
            "closing a client that sent more than {rate} messages/s for {secs} s"
        );
        Ending::Refuse {
            code: ErrorCode::RateLimited,
            close: close_code::POLICY,
            message: format!("message rate limit: more than {rate} messages/s for {secs} s"),
        }
    }

    fn on_message(
        &mut self,
        decoded: Result<ClientMessage<G::Input>, ProtocolError>,
        metrics: &Metrics,
    ) -> Result<(), Ending<G>> {
        match decoded {
            Ok(ClientMessage::Input { seq, input }) => match self.inputs.push(seq, input) {
                Ok(Pushed::Queued) => Ok(()),
                // A full queue means the client sends faster than the tick:
                // dropping is the rule that makes flooding useless.
                Ok(Pushed::Dropped) => {
                    metrics.inputs_dropped.inc();
                    self.dropped_inputs = self.dropped_inputs.saturating_add(1);
                    if self.dropped_inputs.is_power_of_two() {
                        debug!(
                            player = self.player,
                            dropped = self.dropped_inputs,
                            "input queue full, dropping inputs"
                        );
                    }
                    Ok(())
                }
                Err(jump) => {
                    metrics.protocol_error("seq_jump");
                    self.bad_message(ProtocolError {
                        code: ErrorCode::InvalidMessage,
                        message: jump.to_string(),
                    })
                }
            },
            Ok(ClientMessage::Ping { id }) => {
                let now = protocol::unix_millis(std::time::SystemTime::now());
                self.reply(Message::Text(encode::pong(id, now).into()))
            }
            Err(err) => {
                metrics.protocol_error(err.code.as_str());
                self.bad_message(err)
            }
        }
    }

    /// Logs a refused message (loudly only for the first few) and tells the
    /// client why.
    fn bad_message(&mut self, err: ProtocolError) -> Result<(), Ending<G>> {
        match self.bad_messages.count() {
            Loudness::Warn { last } => {
                warn!(
                    player = self.player,
                    code = err.code.as_str(),
                    "bad message: {}",
                    err.message
                );
                if last {
                    warn!(
                        player = self.player,
                        "further bad messages from this player are logged at debug level"
                    );
                }
            }
            Loudness::Debug => debug!(
                player = self.player,
                code = err.code.as_str(),
                "bad message: {}",
                err.message
            ),
        }
        self.reply(Message::Text(encode::error(&err).into()))
    }

    /// Maps a failed read to the close code the RFC assigns to it.
    fn socket_error(&mut self, err: ws::Error) -> Ending<G> {
        use tungstenite::error::CapacityError;
        let limit = self.shared.config.max_message_bytes;
        let metrics = &self.shared.metrics;
        let close = |code, reason| Ending::Close {
            code,
            reason,
            then: None,
        };
        match &err {
            ws::Error::Capacity(cap) => {
                let size = match cap {
                    CapacityError::MessageTooLong { size, .. } => format!("{size} bytes"),
                    _ => "a message".to_owned(),
                };
                debug!(player = self.player, "message too big: {cap}");
                metrics.protocol_error("message_too_big");
                close(
                    close_code::TOO_BIG,
                    format!("{size} exceeds the limit of {limit} bytes per message"),
                )
            }
            ws::Error::Utf8(_) => {
                debug!(player = self.player, "invalid UTF-8 in a text frame");
                metrics.protocol_error("invalid_utf8");
                close(
                    close_code::INVALID_PAYLOAD,
                    "text frame is not valid UTF-8".into(),
                )
            }
            ws::Error::Protocol(violation) => match protocol_violation(violation) {
                Some(what) => {
                    metrics.protocol_error("websocket_violation");
                    debug!(
                        player = self.player,
                        "WebSocket protocol violation: {violation}"
                    );
                    close(
                        close_code::PROTOCOL_ERROR,
                        format!("WebSocket protocol violation: {what}"),
                    )
                }
                // The peer went away without a close frame: a lost
                // connection, not an error.
                None if matches!(
                    violation,
                    tungstenite::error::ProtocolError::ResetWithoutClosingHandshake
                ) =>
                {
                    Ending::Lost(End::ClientClosed(None))
                }
                None => Ending::Lost(End::SocketError(err.to_string())),
            },
            _ => Ending::Lost(End::SocketError(err.to_string())),
        }
    }
}

/// What a client did wrong, for a close reason, if a read error is a
/// violation of RFC 6455 by the client (close 1002). Other errors (the
/// connection was reset, ...) leave nobody to tell.
fn protocol_violation(e: &tungstenite::error::ProtocolError) -> Option<String> {
    use tungstenite::error::ProtocolError as P;
    Some(match e {
        P::UnmaskedFrameFromClient => "unmasked frame; a client must mask every frame".into(),
        P::InvalidOpcode(op) | P::UnknownDataFrameType(op) | P::UnknownControlFrameType(op) => {
            format!("reserved opcode 0x{op:x}")
        }
        P::FragmentedControlFrame => {
            "fragmented control frame; close, ping and pong frames must not be fragmented".into()
        }
        P::ControlFrameTooBig => "control frame payload over 125 bytes".into(),
        P::NonZeroReservedBits => "reserved bits set; no extension was negotiated".into(),
        P::UnexpectedContinueFrame => "continuation frame with no message to continue".into(),
        P::ExpectedFragment(_) => "new data frame before the fragmented message ended".into(),
        P::InvalidCloseSequence => "malformed close frame".into(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_message_count_saturates() {
        let mut bad = BadMessages::default();
        assert_eq!(bad.count(), Loudness::Warn { last: false });
        assert_eq!(bad.count(), Loudness::Warn { last: false });
        assert_eq!(bad.count(), Loudness::Warn { last: true });
        assert_eq!(bad.count(), Loudness::Debug);
        // 2^32 bad messages later it neither overflows (a panic in debug
        // builds) nor wraps around to logging at warn again.
        bad.0 = u32::MAX - 1;
        for _ in 0..3 {
            assert_eq!(bad.count(), Loudness::Debug);
        }
        assert_eq!(bad.0, u32::MAX);
    }

    #[test]
    fn violations_have_short_reasons() {
        use tungstenite::error::ProtocolError as P;
        use tungstenite::protocol::frame::coding::Data;
        for e in [
            P::UnmaskedFrameFromClient,
            P::InvalidOpcode(3),
            P::UnknownControlFrameType(11),
            P::FragmentedControlFrame,
            P::ControlFrameTooBig,
            P::NonZeroReservedBits,
            P::UnexpectedContinueFrame,
            P::ExpectedFragment(Data::Text),
            P::InvalidCloseSequence,
        ] {
            let what = protocol_violation(&e).unwrap();
            let reason = format!("WebSocket protocol violation: {what}");
            assert!(reason.len() <= 123, "{reason}");
        }
        assert_eq!(protocol_violation(&P::ResetWithoutClosingHandshake), None);
    }
}
