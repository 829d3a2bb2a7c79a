//! The WebSocket transport: the handshake, and a socket a room can serve
//! without waiting.
//!
//! tungstenite speaks the protocol (framing, masking, control frames,
//! limits); only the I/O around it is ours, for two reasons axum's
//! `WebSocket` (tokio-tungstenite) could not serve:
//!
//! - **A room serves its clients itself**, reading all of them just before
//!   it ticks and writing all of them right after, with no task wake-up per
//!   client (see [`room::Client`](crate::room::Client)). While it does, a
//!   plain TCP socket is taken off tokio's reactor: data arriving between
//!   ticks wakes nobody, and a tick costs one read and one write system
//!   call per client.
//! - **Messages that are the same for every client** (the seed protocol's
//!   full state) are framed once per tick and the same bytes are written
//!   to every socket, without copying them into each connection's buffer.

mod link;
mod socket;
mod upgrade;

use bytes::Bytes;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

pub use link::AsyncIo;
pub use socket::Socket;
pub use tungstenite::protocol::{CloseFrame, WebSocketConfig};
pub use tungstenite::{Error, Message, Utf8Bytes};
pub use upgrade::{Upgrade, UpgradeRejection};

/// A text message framed once for many clients: written to each socket
/// with [`Socket::push_shared`], the same bytes every time.
#[derive(Debug, Clone)]
pub struct Shared {
    text: Utf8Bytes,
    /// The whole server-to-client frame: header and `text`.
    frame: Bytes,
}

impl Shared {
    pub fn text(text: String) -> Self {
        let header = FrameHeader {
            is_final: true,
            opcode: OpCode::Data(Data::Text),
            ..FrameHeader::default()
        };
        let len = text.len() as u64;
        let mut frame = Vec::with_capacity(header.len(len) + text.len());
        // Writing into a Vec cannot fail.
        let _ = header.format(len, &mut frame);
        frame.extend_from_slice(text.as_bytes());
        Shared {
            text: Utf8Bytes::from(text),
            frame: Bytes::from(frame),
        }
    }

    pub fn as_str(&self) -> &str {
        self.text.as_str()
    }

    /// The payload's length in bytes.
    pub fn len(&self) -> usize {
        self.text.len()
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// The whole frame.
    pub fn frame(&self) -> &Bytes {
        &self.frame
    }

    /// The same message, for a socket that sends it as any other.
    pub fn message(&self) -> Message {
        Message::Text(self.text.clone())
    }
}

impl Default for Shared {
    fn default() -> Self {
        Shared::text(String::new())
    }
}

/// How much of a message a socket took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    All,
    /// Part of it; the rest goes out first on a later write.
    Part,
    /// None of it: earlier bytes were still waiting for the socket. A
    /// message that depends on the one before it (a delta) must not be
    /// followed by one that assumes the client got it.
    Skipped,
}

/// Room for the longest server frame header (2 bytes, then 8 of length).
pub const FRAME_HEADER_ROOM: usize = 10;

/// Frames in place a binary message built in `buf` after
/// [`FRAME_HEADER_ROOM`] reserved bytes: writes the header right before the
/// payload and returns where the frame starts. So a client's own message is
/// built once, in a buffer it keeps, and written to the socket from there.
pub fn frame_in_place(buf: &mut [u8]) -> usize {
    let len = buf.len().saturating_sub(FRAME_HEADER_ROOM);
    let mut header = [0u8; FRAME_HEADER_ROOM];
    header[0] = 0x82; // FIN, binary
    let size = if len < 126 {
        header[1] = len as u8;
        2
    } else if let Ok(short) = u16::try_from(len) {
        header[1] = 126;
        header[2..4].copy_from_slice(&short.to_be_bytes());
        4
    } else {
        header[1] = 127;
        header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    };
    let start = FRAME_HEADER_ROOM - size;
    if let (Some(to), Some(from)) = (buf.get_mut(start..FRAME_HEADER_ROOM), header.get(..size)) {
        to.copy_from_slice(from);
    }
    start
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_parse_back() {
        for len in [0, 1, 125, 126, 65_535, 65_536] {
            let shared = Shared::text("x".repeat(len));
            assert_eq!(shared.len(), len);
            let frame = shared.frame();
            let mut cursor = std::io::Cursor::new(&frame[..]);
            let (header, n) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
            assert!(header.is_final);
            assert_eq!(header.opcode, OpCode::Data(Data::Text));
            assert_eq!(header.mask, None);
            assert_eq!(n, len as u64);
            assert_eq!(cursor.position() as usize + len, frame.len());
        }
    }

    #[test]
    fn frames_in_place_parse_back() {
        for len in [0, 1, 125, 126, 65_535, 65_536] {
            let mut buf = vec![0u8; FRAME_HEADER_ROOM];
            buf.extend((0..len).map(|i| i as u8));
            let start = frame_in_place(&mut buf);
            let mut cursor = std::io::Cursor::new(&buf[start..]);
            let (header, n) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
            assert!(header.is_final);
            assert_eq!(header.opcode, OpCode::Data(Data::Binary));
            assert_eq!(header.mask, None);
            assert_eq!(n, len as u64);
            assert_eq!(start + cursor.position() as usize, FRAME_HEADER_ROOM);
        }
    }
}
