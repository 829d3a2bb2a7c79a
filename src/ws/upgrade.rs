//! The WebSocket handshake (RFC 6455 over HTTP/1.1, RFC 8441 over HTTP/2).
//!
//! Like axum's `WebSocketUpgrade`, which it replaces, except that the
//! upgraded connection comes out as our [`Socket`]: for a plain TCP
//! connection, the socket itself, which a room can take off the reactor.

use std::future::Future;

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tungstenite::protocol::WebSocketConfig;

use super::link::Io;
use super::Socket;

/// A request to upgrade to a WebSocket, checked.
pub struct Upgrade {
    /// HTTP/1.1's `Sec-WebSocket-Key`; `None` on HTTP/2.
    key: Option<HeaderValue>,
    /// The subprotocols the client offered, in its order.
    protocols: Vec<HeaderValue>,
    on_upgrade: hyper::upgrade::OnUpgrade,
}

/// Why a request is not a WebSocket upgrade we can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeRejection {
    MethodNotGet,
    MethodNotConnect,
    ConnectionHeader,
    UpgradeHeader,
    ProtocolPseudoHeader,
    VersionHeader,
    KeyMissing,
    NotUpgradable,
}

impl std::fmt::Display for UpgradeRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UpgradeRejection::MethodNotGet => {
                "a WebSocket upgrade over HTTP/1.1 must be a GET request"
            }
            UpgradeRejection::MethodNotConnect => {
                "a WebSocket over HTTP/2 must be an extended CONNECT request (RFC 8441)"
            }
            UpgradeRejection::ConnectionHeader => {
                "a WebSocket upgrade needs the header `Connection: upgrade`"
            }
            UpgradeRejection::UpgradeHeader => {
                "a WebSocket upgrade needs the header `Upgrade: websocket`"
            }
            UpgradeRejection::ProtocolPseudoHeader => {
                "an HTTP/2 WebSocket needs the `:protocol: websocket` pseudo-header"
            }
            UpgradeRejection::VersionHeader => {
                "a WebSocket upgrade needs the header `Sec-WebSocket-Version: 13`"
            }
            UpgradeRejection::KeyMissing => {
                "a WebSocket upgrade needs a `Sec-WebSocket-Key` header"
            }
            UpgradeRejection::NotUpgradable => "this connection cannot be upgraded",
        })
    }
}

impl IntoResponse for UpgradeRejection {
    fn into_response(self) -> Response {
        let status = match self {
            UpgradeRejection::MethodNotGet | UpgradeRejection::MethodNotConnect => {
                StatusCode::METHOD_NOT_ALLOWED
            }
            UpgradeRejection::NotUpgradable | UpgradeRejection::VersionHeader => {
                StatusCode::UPGRADE_REQUIRED
            }
            _ => StatusCode::BAD_REQUEST,
        };
        let mut response = (status, format!("{self}\n")).into_response();
        if self == UpgradeRejection::VersionHeader {
            // RFC 6455 §4.2.2: say which version we speak.
            response.headers_mut().insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
        }
        response
    }
}

fn header_is(headers: &HeaderMap, name: HeaderName, value: &str) -> bool {
    headers
        .get(name)
        .is_some_and(|h| h.as_bytes().eq_ignore_ascii_case(value.as_bytes()))
}

/// Whether the comma-separated header `name` lists `token`.
fn header_lists(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|h| {
        h.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = UpgradeRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let key = if parts.version <= Version::HTTP_11 {
            if parts.method != Method::GET {
                return Err(UpgradeRejection::MethodNotGet);
            }
            if !header_lists(&parts.headers, header::CONNECTION, "upgrade") {
                return Err(UpgradeRejection::ConnectionHeader);
            }
            if !header_is(&parts.headers, header::UPGRADE, "websocket") {
                return Err(UpgradeRejection::UpgradeHeader);
            }
            let key = parts.headers.get(header::SEC_WEBSOCKET_KEY);
            Some(key.ok_or(UpgradeRejection::KeyMissing)?.clone())
        } else {
            if parts.method != Method::CONNECT {
                return Err(UpgradeRejection::MethodNotConnect);
            }
            let protocol = parts.extensions.get::<hyper::ext::Protocol>();
            if protocol.is_none_or(|p| p.as_str() != "websocket") {
                return Err(UpgradeRejection::ProtocolPseudoHeader);
            }
            None
        };
        if !header_is(&parts.headers, header::SEC_WEBSOCKET_VERSION, "13") {
            return Err(UpgradeRejection::VersionHeader);
        }
        let on_upgrade = parts
            .extensions
            .remove::<hyper::upgrade::OnUpgrade>()
            .ok_or(UpgradeRejection::NotUpgradable)?;
        let protocols = parts
            .headers
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .flat_map(|h| h.as_bytes().split(|&b| b == b','))
            .filter_map(|p| HeaderValue::from_bytes(p.trim_ascii()).ok())
            .collect();
        Ok(Upgrade {
            key,
            protocols,
            on_upgrade,
        })
    }
}

impl Upgrade {
    /// The subprotocols the client offered, in its order.
    pub fn requested_protocols(&self) -> impl Iterator<Item = &HeaderValue> {
        self.protocols.iter()
    }

    /// Answers the handshake, choosing `protocol`, and runs `callback` with
    /// the socket once the connection is upgraded (on a task of its own).
    pub fn on_upgrade<C, F>(
        self,
        protocol: Option<&'static str>,
        config: WebSocketConfig,
        callback: C,
    ) -> Response
    where
        C: FnOnce(Socket) -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            // The client went away before the upgrade completed.
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            // A plain TCP connection comes back as the socket itself (see
            // `Io::Parked`); anything else stays wrapped.
            let socket = match hyper_util::server::conn::auto::upgrade::downcast::<TokioIo<TcpStream>>(
                upgraded,
            ) {
                Ok(parts) => Socket::new(
                    Io::Tokio(parts.io.into_inner()),
                    parts.read_buf.to_vec(),
                    config,
                ),
                Err(upgraded) => Socket::new(
                    Io::Other(Box::new(TokioIo::new(upgraded))),
                    Vec::new(),
                    config,
                ),
            };
            callback(socket).await;
        });
        let mut response = match &self.key {
            Some(key) => Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header(header::CONNECTION, "upgrade")
                .header(header::UPGRADE, "websocket")
                .header(
                    header::SEC_WEBSOCKET_ACCEPT,
                    tungstenite::handshake::derive_accept_key(key.as_bytes()),
                )
                .body(Body::empty())
                .unwrap_or_default(),
            // HTTP/2: a 200 to the CONNECT (RFC 8441 §5).
            None => Response::new(Body::empty()),
        };
        if let Some(protocol) = protocol {
            response.headers_mut().insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_static(protocol),
            );
        }
        response
    }
}
