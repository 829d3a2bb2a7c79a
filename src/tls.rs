//! TLS for `https://` and `wss://` on the server's one port (rustls with the
//! `ring` provider), from PEM files named by `--tls-cert` and `--tls-key`.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{crypto, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::config::Config;

/// The acceptor for `config`'s certificate and key, `None` without TLS, or
/// what is wrong with the files.
pub fn acceptor(config: &Config) -> Result<Option<TlsAcceptor>, String> {
    match (&config.tls_cert, &config.tls_key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => server_config(cert, key).map(|c| Some(TlsAcceptor::from(c))),
        _ => config.validate().map(|()| None),
    }
}

/// A rustls server configuration from a PEM certificate chain and a PEM
/// private key. Offers HTTP/2 and HTTP/1.1 (ALPN).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let chain = read_certificates(cert)?;
    let key = read_key(key)?;
    let provider = Arc::new(crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            format!(
                "--tls-cert and --tls-key cannot be used together: {e} (is the key the one the certificate was issued for, and the server's certificate first in the file?)"
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read(flag: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {flag} {}: {e}", path.display()))
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read("--tls-cert", path)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid_pem("--tls-cert", path, e))?;
    if chain.is_empty() {
        return Err(format!(
            "--tls-cert {} holds no certificate: expected PEM with `-----BEGIN CERTIFICATE-----` (the server's certificate, then its chain)",
            path.display()
        ));
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem = read("--tls-key", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        pem::Error::NoItemsFound => format!(
            "--tls-key {} holds no private key: expected PEM with `-----BEGIN PRIVATE KEY-----` (PKCS#8), `BEGIN RSA PRIVATE KEY` or `BEGIN EC PRIVATE KEY`",
            path.display()
        ),
        e => invalid_pem("--tls-key", path, e),
    })
}

fn invalid_pem(flag: &str, path: &Path, e: pem::Error) -> String {
    format!("{flag} {} is not valid PEM: {e}", path.display())
}
