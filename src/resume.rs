//! Resume tokens: a player whose connection drops keeps its place for a
//! grace period, and a client that reconnects with the token gets the same
//! player back.
//!
//! Every native connection gets a fresh token in its `welcome`. The token
//! names a slot here, which is either *live* (a session holds the player) or
//! *suspended* (the connection dropped; the player's state waits here until
//! the grace period ends, then it is dropped, which removes the player from
//! its room as if it had left then). Claiming a token retires it at once, so
//! a token works once, and only for the player it was issued for.
//!
//! A client usually notices a dead connection before the server does (the
//! server only learns of it from a failed send or the idle timeout). So a
//! live slot can be claimed too: its session is asked to hand the player
//! over, and its old socket is closed with [`TAKEN_OVER`].
//!
//! This module knows nothing of rooms or sessions: the state `S` it keeps
//! is whatever the session parks (its seat, input queue and counts), whose
//! drop guards remove the player when the state is dropped.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rand::TryRngCore;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::protocol::ErrorCode;

/// Close code of a connection whose `?resume=` token was refused
/// (malformed, unknown, used, expired, or for another room). The client
/// should connect again without `?resume=`, as a new player.
pub const REFUSED: u16 = 4001;

/// Close code of a connection whose player was resumed on another
/// connection. The client should not reconnect: its player lives on there.
pub const TAKEN_OVER: u16 = 4002;

/// How long a retired token is remembered, so that reusing it gets "used"
/// or "expired" rather than "unknown".
const REMEMBER_RETIRED: Duration = Duration::from_secs(600);

/// At most this many retired tokens are remembered (about 40 bytes each).
const MAX_RETIRED: usize = 65_536;

/// 128 bits from the operating system's RNG, shown as 32 lowercase hex
/// digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token([u8; 16]);

impl Token {
    /// A new token from the OS RNG (`getrandom`). Should the OS RNG fail,
    /// the thread RNG (a CSPRNG the OS seeded) is used instead.
    pub fn generate() -> Token {
        let mut bytes = [0u8; 16];
        if rand::rngs::OsRng.try_fill_bytes(&mut bytes).is_err() {
            tracing::warn!("the OS RNG failed; resume token drawn from the thread RNG");
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
        }
        Token(bytes)
    }

    /// Reads a token as the client sends it.
    pub fn parse(s: &str) -> Option<Token> {
        // `from_str_radix` alone would take a sign ("+f").
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut bytes = [0u8; 16];
        for (byte, pair) in bytes.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
            let hex = std::str::from_utf8(pair).ok()?;
            *byte = u8::from_str_radix(hex, 16).ok()?;
        }
        Some(Token(bytes))
    }
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumeError {
    /// Not 32 hex digits.
    Malformed,
    /// Never issued by this server (or forgotten long ago).
    Unknown,
    /// Claimed already: the player lives on another connection, which got
    /// a new token.
    Used,
    /// The grace period ended; the player was removed.
    Expired { grace: Duration },
    /// The token is for a player in another room than `?room=` names.
    WrongRoom { room: String },
    /// The player left for good (its client closed the connection with
    /// 1000, or it was closed for breaking the rules).
    Left,
    /// The player's session ended while it was being handed over, and
    /// did not hand it over.
    Gone,
}

impl ResumeError {
    /// The `error` message's code.
    pub fn code(&self) -> ErrorCode {
        match self {
            ResumeError::Malformed | ResumeError::Unknown => ErrorCode::ResumeInvalid,
            ResumeError::Used => ErrorCode::ResumeUsed,
            ResumeError::Expired { .. } | ResumeError::Left | ResumeError::Gone => {
                ErrorCode::ResumeExpired
            }
            ResumeError::WrongRoom { .. } => ErrorCode::ResumeWrongRoom,
        }
    }
}

impl std::fmt::Display for ResumeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const FRESH: &str = "connect without ?resume= to join as a new player";
        match self {
            ResumeError::Malformed => write!(
                f,
                "invalid resume token: a token is the 32 hex digits of `resume_token` in a welcome; {FRESH}"
            ),
            ResumeError::Unknown => {
                write!(f, "unknown resume token: this server never issued it; {FRESH}")
            }
            ResumeError::Used => write!(
                f,
                "resume token already used: each token works once, and the player it resumed got a new one; {FRESH}"
            ),
            ResumeError::Expired { grace } => write!(
                f,
                "resume token expired: players are kept for {} s after their connection drops, and this one was removed; {FRESH}",
                grace.as_secs_f64()
            ),
            ResumeError::WrongRoom { room } => write!(
                f,
                "resume token is for a player in room `{room}`; resume with ?room={room} or leave ?room= out"
            ),
            ResumeError::Left => write!(
                f,
                "resume token no longer valid: its player left the game; {FRESH}"
            ),
            ResumeError::Gone => write!(f, "the player left while being resumed; {FRESH}"),
        }
    }
}

impl std::error::Error for ResumeError {}

/// What a live session is asked for when its player is resumed elsewhere:
/// a channel to hand its state over on.
pub type Takeover<S> = oneshot::Sender<S>;

/// A live session's side of its slot: where a claim leaves the claimer's
/// reply channel.
///
/// The session looks here once per snapshot (so a claim is noticed within
/// a tick) rather than polling a waiter on every wake-up: a per-session
/// waiter is a cache line of its own, cold by the time the session runs,
/// and polling one (a oneshot, a child cancellation token) on each of a
/// session's ~80 wake-ups a second was about 3 % of the server's CPU
/// samples at 1,000 players.
pub struct Asked<S>(Arc<Claim<S>>);

struct Claim<S> {
    claimed: AtomicBool,
    reply: Mutex<Option<Takeover<S>>>,
}

impl<S> Asked<S> {
    /// Not claimed (yet). A session without a slot (seed clients, resuming
    /// off) keeps one that never will be.
    pub fn unclaimed() -> Self {
        Asked(Arc::new(Claim {
            claimed: AtomicBool::new(false),
            reply: Mutex::new(None),
        }))
    }

    /// The claimer's reply channel, if the player was claimed (one atomic
    /// load when it was not).
    pub fn take(&self) -> Option<Takeover<S>> {
        if !self.0.claimed.load(Ordering::Acquire) {
            return None;
        }
        self.0
            .reply
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

enum Slot<S> {
    Live {
        room: String,
        claim: Arc<Claim<S>>,
    },
    Suspended {
        room: String,
        state: S,
        /// An earlier token that claims this slot too (see [`Resumes::suspend`]).
        alias: Option<Token>,
    },
}

impl<S> Slot<S> {
    fn room(&self) -> &str {
        match self {
            Slot::Live { room, .. } | Slot::Suspended { room, .. } => room,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Fate {
    Used,
    Expired,
    Left,
}

struct Inner<S> {
    slots: HashMap<Token, Slot<S>>,
    /// Earlier tokens that lead to a suspended slot: alias → slot's token.
    aliases: HashMap<Token, Token>,
    suspended: usize,
    retired: HashMap<Token, Fate>,
    /// When each retired token was retired, oldest first.
    retired_order: VecDeque<(Instant, Token)>,
}

impl<S> Inner<S> {
    fn retire(&mut self, token: Token, fate: Fate) {
        let now = Instant::now();
        while let Some(&(at, old)) = self.retired_order.front() {
            if self.retired_order.len() < MAX_RETIRED && now - at < REMEMBER_RETIRED {
                break;
            }
            self.retired_order.pop_front();
            self.retired.remove(&old);
        }
        self.retired.insert(token, fate);
        self.retired_order.push_back((now, token));
    }
}

/// Every resumable player of one server, live or suspended.
pub struct Resumes<S> {
    inner: Mutex<Inner<S>>,
    grace: Duration,
}

/// What a claim got: the state at once (the player was suspended), or a
/// receiver for it (its live session is handing it over).
pub enum Claimed<S> {
    Ready(S),
    HandingOver(oneshot::Receiver<S>),
}

/// A live session's hold on its token. Dropping it without
/// [`Resumes::suspend`] (the session ended for good, or panicked) retires
/// the token, so no slot is left behind.
pub struct Live<S: Send + 'static> {
    resumes: Arc<Resumes<S>>,
    token: Token,
    done: bool,
}

impl<S: Send + 'static> Live<S> {
    pub fn token(&self) -> Token {
        self.token
    }
}

impl<S: Send + 'static> Drop for Live<S> {
    fn drop(&mut self) {
        if !self.done {
            let mut inner = self.resumes.lock();
            if inner.slots.remove(&self.token).is_some() {
                inner.retire(self.token, Fate::Left);
            }
        }
    }
}

impl<S: Send + 'static> Resumes<S> {
    /// Players are kept `grace` after their connection drops.
    pub fn new(grace: Duration) -> Arc<Self> {
        Arc::new(Resumes {
            inner: Mutex::new(Inner {
                slots: HashMap::new(),
                aliases: HashMap::new(),
                suspended: 0,
                retired: HashMap::new(),
                retired_order: VecDeque::new(),
            }),
            grace,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner<S>> {
        // Every update is a few map operations that cannot panic halfway.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// Players suspended now (their connection dropped, still in the game).
    pub fn suspended(&self) -> usize {
        self.lock().suspended
    }

    /// A fresh token for a live session of a player in `room`, and where
    /// that session learns that it should hand its player over.
    pub fn issue(self: &Arc<Self>, room: &str) -> (Live<S>, Asked<S>) {
        let asked = Asked::unclaimed();
        let mut inner = self.lock();
        let token = loop {
            // 128 random bits do not collide; the loop only makes it certain.
            let token = Token::generate();
            if !inner.slots.contains_key(&token) {
                break token;
            }
        };
        inner.slots.insert(
            token,
            Slot::Live {
                room: room.to_owned(),
                claim: Arc::clone(&asked.0),
            },
        );
        drop(inner);
        let live = Live {
            resumes: Arc::clone(self),
            token,
            done: false,
        };
        (live, asked)
    }

    /// Claims the player of `token` (as the client sent it). `room` is the
    /// client's `?room=`, if any: it must be the player's room. A claimed
    /// token is retired, whatever happens next.
    pub fn claim(&self, token: &str, room: Option<&str>) -> Result<Claimed<S>, ResumeError> {
        let token = Token::parse(token).ok_or(ResumeError::Malformed)?;
        let mut inner = self.lock();
        let token = inner.aliases.get(&token).copied().unwrap_or(token);
        let Some(slot) = inner.slots.get(&token) else {
            return Err(match inner.retired.get(&token) {
                Some(Fate::Used) => ResumeError::Used,
                Some(Fate::Expired) => ResumeError::Expired { grace: self.grace },
                Some(Fate::Left) => ResumeError::Left,
                None => ResumeError::Unknown,
            });
        };
        if room.is_some_and(|r| r != slot.room()) {
            return Err(ResumeError::WrongRoom {
                room: slot.room().to_owned(),
            });
        }
        let slot = inner.slots.remove(&token);
        inner.retire(token, Fate::Used);
        match slot {
            Some(Slot::Suspended { state, alias, .. }) => {
                inner.suspended -= 1;
                if let Some(alias) = alias {
                    inner.aliases.remove(&alias);
                    inner.retire(alias, Fate::Used);
                }
                Ok(Claimed::Ready(state))
            }
            Some(Slot::Live { claim, .. }) => {
                let (tx, handed) = oneshot::channel();
                // Under the lock: the session either sees this request, or
                // finds its slot gone in `suspend` and looks for it there.
                *claim.reply.lock().unwrap_or_else(PoisonError::into_inner) = Some(tx);
                claim.claimed.store(true, Ordering::Release);
                Ok(Claimed::HandingOver(handed))
            }
            None => Err(ResumeError::Unknown),
        }
    }

    /// The connection of `live` dropped: keep `state` for the grace period,
    /// then drop it (the player leaves). If the token was claimed meanwhile,
    /// `state` goes to the claimer instead, through `asked`.
    ///
    /// `also` is the token this connection resumed its player with, when
    /// the connection ended before its client was heard from: the client
    /// may never have received the `welcome` with the new token (it gave up
    /// on the connection while the server was busy, say). Both tokens then
    /// lead to the player, until one of them is used.
    pub fn suspend(
        self: &Arc<Self>,
        mut live: Live<S>,
        state: S,
        asked: Asked<S>,
        also: Option<Token>,
    ) {
        live.done = true;
        let token = live.token;
        let mut inner = self.lock();
        match inner.slots.get_mut(&token) {
            Some(slot @ Slot::Live { .. }) => {
                let room = slot.room().to_owned();
                *slot = Slot::Suspended {
                    room,
                    state,
                    alias: also,
                };
                inner.suspended += 1;
                if let Some(also) = also {
                    inner.retired.remove(&also);
                    inner.aliases.insert(also, token);
                }
                drop(inner);
                let resumes = Arc::clone(self);
                let grace = self.grace;
                tokio::spawn(async move {
                    tokio::time::sleep(grace).await;
                    resumes.expire(token);
                });
            }
            _ => {
                drop(inner);
                // Claimed: the request was sent under the lock, so it is here.
                if let Some(reply) = asked.take() {
                    // If the claimer gave up, the state drops: the player leaves.
                    let _ = reply.send(state);
                }
            }
        }
    }

    /// The grace period of `token` ended: its player leaves, unless it was
    /// claimed already.
    fn expire(&self, token: Token) {
        let mut inner = self.lock();
        if !matches!(inner.slots.get(&token), Some(Slot::Suspended { .. })) {
            return;
        }
        let slot = inner.slots.remove(&token);
        inner.suspended -= 1;
        inner.retire(token, Fate::Expired);
        if let Some(Slot::Suspended {
            alias: Some(alias), ..
        }) = &slot
        {
            inner.aliases.remove(alias);
            inner.retire(*alias, Fate::Expired);
        }
        drop(inner);
        // Dropped outside the lock: its guards talk to the room.
        drop(slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_as_32_hex_digits() {
        let t = Token::generate();
        let shown = t.to_string();
        assert_eq!(shown.len(), 32);
        assert!(shown.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(Token::parse(&shown), Some(t));
        assert_ne!(Token::generate(), t);
        for bad in [
            "",
            "abc",
            &"g".repeat(32),
            &"a".repeat(31),
            &"a".repeat(33),
            "+f00000000000000000000000000000f",
        ] {
            assert_eq!(Token::parse(bad), None, "{bad}");
        }
    }

    fn ready(c: Result<Claimed<&'static str>, ResumeError>) -> &'static str {
        match c {
            Ok(Claimed::Ready(s)) => s,
            Ok(Claimed::HandingOver(_)) => panic!("expected a suspended player"),
            Err(e) => panic!("refused: {e}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_suspended_player_is_resumed_once() {
        let r = Resumes::new(Duration::from_secs(10));
        let (live, asked) = r.issue("lobby");
        let token = live.token().to_string();
        r.suspend(live, "player 1", asked, None);
        assert_eq!(r.suspended(), 1);
        assert_eq!(
            r.claim(&token, Some("other")).err(),
            Some(ResumeError::WrongRoom {
                room: "lobby".into()
            })
        );
        assert_eq!(ready(r.claim(&token, Some("lobby"))), "player 1");
        assert_eq!(r.suspended(), 0);
        assert_eq!(r.claim(&token, None).err(), Some(ResumeError::Used));
        assert_eq!(
            r.claim(&Token::generate().to_string(), None).err(),
            Some(ResumeError::Unknown)
        );
        assert_eq!(r.claim("nope", None).err(), Some(ResumeError::Malformed));
    }

    #[tokio::test(start_paused = true)]
    async fn a_suspended_player_expires_after_the_grace_period() {
        let r = Resumes::new(Duration::from_secs(10));
        let (live, asked) = r.issue("lobby");
        let token = live.token().to_string();
        let state = Arc::new(());
        r.suspend(live, Arc::clone(&state), asked, None);
        tokio::time::sleep(Duration::from_millis(9_900)).await;
        assert_eq!(Arc::strong_count(&state), 2, "still kept");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(Arc::strong_count(&state), 1, "dropped: the player left");
        assert_eq!(r.suspended(), 0);
        assert!(matches!(
            r.claim(&token, None).err(),
            Some(ResumeError::Expired { .. })
        ));
    }

    #[tokio::test]
    async fn a_live_player_is_handed_over() {
        let r = Resumes::new(Duration::from_secs(10));
        let (live, asked) = r.issue("lobby");
        let token = live.token().to_string();
        let Ok(Claimed::HandingOver(handed)) = r.claim(&token, None) else {
            panic!("expected a hand-over");
        };
        // The live session sees the request and hands its state over.
        let reply = asked.take().expect("asked to hand over");
        reply.send("player 1").unwrap();
        drop(live);
        assert_eq!(handed.await.unwrap(), "player 1");
        assert_eq!(r.claim(&token, None).err(), Some(ResumeError::Used));
    }

    #[tokio::test]
    async fn a_session_ending_while_claimed_hands_over_in_suspend() {
        let r = Resumes::new(Duration::from_secs(10));
        let (live, asked) = r.issue("lobby");
        let token = live.token().to_string();
        let Ok(Claimed::HandingOver(handed)) = r.claim(&token, None) else {
            panic!("expected a hand-over");
        };
        // The session ended before it saw the request.
        r.suspend(live, "player 1", asked, None);
        assert_eq!(r.suspended(), 0);
        assert_eq!(handed.await.unwrap(), "player 1");
    }

    /// A resumed connection that ends before its client said anything may
    /// never have delivered its welcome: the token it was resumed with
    /// works again, as does the new one, once.
    #[tokio::test(start_paused = true)]
    async fn an_unheard_resume_keeps_the_old_token_valid() {
        let r = Resumes::new(Duration::from_secs(10));
        let (live, asked) = r.issue("lobby");
        let first = live.token();
        r.suspend(live, "player 1", asked, None);
        assert_eq!(ready(r.claim(&first.to_string(), None)), "player 1");
        let (live, asked) = r.issue("lobby");
        let second = live.token();
        r.suspend(live, "player 1", asked, Some(first));
        assert_eq!(r.suspended(), 1);
        assert_eq!(ready(r.claim(&first.to_string(), None)), "player 1");
        assert_eq!(
            r.claim(&second.to_string(), None).err(),
            Some(ResumeError::Used)
        );
        assert_eq!(
            r.claim(&first.to_string(), None).err(),
            Some(ResumeError::Used)
        );
        // Or the new one, and then the old one is used up too; and both
        // expire together.
        let (live, asked) = r.issue("lobby");
        let third = live.token();
        r.suspend(live, "player 1", asked, Some(first));
        assert_eq!(ready(r.claim(&third.to_string(), None)), "player 1");
        assert_eq!(
            r.claim(&first.to_string(), None).err(),
            Some(ResumeError::Used)
        );
        let (live, asked) = r.issue("lobby");
        let fourth = live.token();
        r.suspend(live, "player 1", asked, Some(third));
        tokio::time::sleep(Duration::from_secs(11)).await;
        for t in [third, fourth] {
            assert!(matches!(
                r.claim(&t.to_string(), None).err(),
                Some(ResumeError::Expired { .. })
            ));
        }
        assert!(r.lock().aliases.is_empty());
    }

    #[test]
    fn a_session_that_ends_for_good_retires_its_token() {
        let r: Arc<Resumes<()>> = Resumes::new(Duration::from_secs(10));
        let (live, _asked) = r.issue("lobby");
        let token = live.token().to_string();
        drop(live);
        assert_eq!(r.claim(&token, None).err(), Some(ResumeError::Left));
        assert!(r.lock().slots.is_empty());
    }

    #[test]
    fn retired_tokens_are_remembered_within_bounds() {
        let r: Arc<Resumes<()>> = Resumes::new(Duration::from_secs(10));
        for _ in 0..MAX_RETIRED + 10 {
            drop(r.issue("lobby").0);
        }
        let inner = r.lock();
        assert!(inner.retired.len() <= MAX_RETIRED);
        assert_eq!(inner.retired.len(), inner.retired_order.len());
    }
}
