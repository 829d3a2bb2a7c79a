//! The TCP accept loop: HTTP/1.1 and HTTP/2 with WebSocket upgrades, a
//! header-read timeout, `TCP_NODELAY`, and graceful shutdown.
//!
//! Why not `axum::serve`: it gives hyper no timer, so a client that never
//! finishes its request headers holds its connection (and graceful shutdown)
//! for ever. Here hyper-util's connection builder gets a timer and
//! `--header-timeout`, and [`GracefulShutdown`] lets the caller bound the
//! drain with its own deadline.

use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Accepts connections and serves `app` on them until `stop` is cancelled.
/// Returns the watcher of the connections still open, for the caller to
/// drain (`shutdown().await`) within its deadline.
pub async fn accept_until(
    listener: TcpListener,
    app: Router,
    header_timeout: Duration,
    stop: CancellationToken,
) -> GracefulShutdown {
    let graceful = GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    // WebSockets over HTTP/2 (RFC 8441), as axum::serve enables too.
    builder.http2().enable_connect_protocol();
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
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
        let service = TowerToHyperService::new(app.clone());
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!(%peer, "HTTP connection ended with an error: {e}");
            }
        });
    }
    graceful
}
