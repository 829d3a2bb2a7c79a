//! `--tls-cert` / `--tls-key`: https:// and wss:// on the server's port,
//! with a certificate generated here; and clear errors for bad files.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{crypto, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A self-signed certificate for `localhost` and 127.0.0.1, written to a
/// fresh directory; removed on drop.
struct Cert {
    dir: PathBuf,
    der: Vec<u8>,
}

impl Cert {
    fn new(tag: &str) -> Self {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .unwrap();
        let dir = std::env::temp_dir().join(format!(
            "playfield-tls-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cert.pem"), made.cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), made.signing_key.serialize_pem()).unwrap();
        Cert {
            dir,
            der: made.cert.der().to_vec(),
        }
    }

    fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }

    fn file(&self, name: &str, content: &[u8]) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    /// A client that trusts only this certificate, offering `alpn`.
    fn connector(&self, alpn: &[&[u8]]) -> TlsConnector {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone().into()).unwrap();
        let mut config =
            ClientConfig::builder_with_provider(Arc::new(crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        TlsConnector::from(Arc::new(config))
    }
}

impl Drop for Cert {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn tls_connect(server: &TestServer, cert: &Cert, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(WAIT, cert.connector(alpn).connect(name, tcp))
        .await
        .expect("TLS handshake timed out")
        .expect("TLS handshake failed")
}

async fn tls_server(cert: &Cert) -> TestServer {
    let (c, k) = (cert.cert(), cert.key());
    TestServer::with(move |config| {
        config.tls_cert = Some(c);
        config.tls_key = Some(k);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_and_wss_with_a_generated_certificate() {
    let cert = Cert::new("serve");
    let server = tls_server(&cert).await;

    // HTTPS, HTTP/1.1.
    let mut tls = tls_connect(&server, &cert, &[b"http/1.1"]).await;
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, tls.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8(answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nok"), "{answer}");
    assert!(
        answer.contains("x-content-type-options: nosniff"),
        "{answer}"
    );

    // HTTPS, HTTP/2 (ALPN h2).
    let tls = tls_connect(&server, &cert, &[b"h2", b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = send
        .send_request(
            Request::get("https://localhost/healthz")
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"ok");

    // wss://, native protocol: welcome, then snapshots.
    let tls = tls_connect(&server, &cert, &[b"http/1.1"]).await;
    let mut req = format!("wss://localhost:{}/ws", server.addr.port())
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "playfield.v1.json".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::client_async(req, tls).await.unwrap();
    let welcome = next_json(&mut ws).await;
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["room"], "lobby");
    assert_eq!(next_json(&mut ws).await["type"], "snapshot");

    // Plain HTTP on the TLS port is not served.
    let mut plain = TcpStream::connect(server.addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(WAIT, plain.read_to_end(&mut buf))
        .await
        .expect("plain HTTP left hanging");
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
}

/// A client that connects and never finishes the TLS handshake is cut off
/// after the header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_tls_handshake_times_out() {
    let cert = Cert::new("slow");
    let (c, k) = (cert.cert(), cert.key());
    let server = TestServer::with(move |config| {
        config.tls_cert = Some(c);
        config.tls_key = Some(k);
        config.header_timeout = std::time::Duration::from_millis(500);
    })
    .await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let start = std::time::Instant::now();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(WAIT, silent.read_to_end(&mut buf))
        .await
        .expect("still open long after the header timeout");
    assert!(start.elapsed() >= std::time::Duration::from_millis(400));
}

#[test]
fn bad_files_get_clear_errors() {
    let cert = Cert::new("errors");
    let other = Cert::new("errors-other");
    let missing = cert.dir.join("missing.pem");
    let garbage = cert.file("garbage.pem", b"hello, I am not PEM\n");
    let broken = cert.file(
        "broken.pem",
        b"-----BEGIN CERTIFICATE-----\nnot base64 !!\n-----END CERTIFICATE-----\n",
    );
    let cases = [
        (missing.clone(), cert.key(), "cannot read --tls-cert"),
        (cert.cert(), missing.clone(), "cannot read --tls-key"),
        (garbage.clone(), cert.key(), "holds no certificate"),
        (cert.key(), cert.key(), "holds no certificate"),
        (cert.cert(), garbage.clone(), "holds no private key"),
        (cert.cert(), cert.cert(), "holds no private key"),
        (broken, cert.key(), "is not valid PEM"),
        (cert.cert(), other.key(), "cannot be used together"),
    ];
    for (c, k, expected) in cases {
        let e = playfield::tls::server_config(&c, &k).unwrap_err();
        assert!(e.contains(expected), "{c:?} + {k:?}: {e}");
    }
    assert!(playfield::tls::server_config(&cert.cert(), &cert.key()).is_ok());
}

/// `server::run` refuses to start with a bad file, and so does the binary,
/// before it listens, with the reason on stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_does_not_start_with_bad_files() {
    let cert = Cert::new("start");
    let mut config = playfield::Config::for_tests();
    config.tls_cert = Some(cert.cert());
    config.tls_key = Some(cert.dir.join("missing.pem"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let e = playfield::server::run::<playfield::dots::DotGame>(config, listener, async {})
        .await
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert!(e.to_string().contains("cannot read --tls-key"), "{e}");

    let bin = env!("CARGO_BIN_EXE_playfield");
    let out = std::process::Command::new(bin)
        .args(["--port", "0", "--host", "127.0.0.1", "--tls-cert"])
        .arg(cert.cert())
        .arg("--tls-key")
        .arg(cert.dir.join("missing.pem"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot read --tls-key"), "{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"));

    let out = std::process::Command::new(bin)
        .args(["--port", "0", "--tls-cert"])
        .arg(cert.cert())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--tls-key"), "{stderr}");
}
