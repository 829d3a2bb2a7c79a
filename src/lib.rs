//! Playfield: an authoritative multiplayer game server for real-time browser
//! games.
//!
//! Data flows socket → [`session`] → [`room`] (tick of a [`game::Game`]) →
//! typed [`snapshot`] ([`replicate::World`]) → each session's encoder
//! ([`protocol::encoder`]) → sockets. The binary in `src/bin/playfield.rs` only parses
//! [`config::Config`], binds, and calls [`server::run`] with the dot game.
//! See `docs/ARCHITECTURE.md`.

pub mod assets;
pub mod bots;
pub mod config;
pub mod dots;
pub mod game;
pub mod http;
pub mod interest;
pub mod limits;
pub mod metrics;
pub mod protocol;
pub mod replicate;
pub mod resume;
pub mod room;
pub mod server;
pub mod session;
pub mod snapshot;
pub mod tls;
pub mod ws;

pub use config::Config;
pub use game::Game;
