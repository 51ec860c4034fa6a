//! TLS for the node's outgoing calls to orchestrators. The certificate check is the caller's:
//! a gateway accepts any certificate, as go-livepeer's do (the orchestrator is authenticated by
//! its signatures), a transcoder pins one. The handshake's signatures are always verified.

use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::rustls;
use tonic::transport::{Channel, Endpoint};

type CertificateCheck =
    dyn Fn(&rustls::pki_types::CertificateDer<'_>) -> Result<(), rustls::Error> + Send + Sync;

struct Verifier {
    provider: Arc<rustls::crypto::CryptoProvider>,
    check: Box<CertificateCheck>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier")
    }
}

impl rustls::client::danger::ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        cert: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        (self.check)(cert).map(|()| rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client configuration whose certificate check is `check`, offering `alpn`.
pub fn config(
    check: impl Fn(&rustls::pki_types::CertificateDer<'_>) -> Result<(), rustls::Error>
    + Send
    + Sync
    + 'static,
    alpn: &[&[u8]],
) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Verifier {
            provider,
            check: Box::new(check),
        }))
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(cfg)
}

/// A gRPC channel over TLS (`tls` should offer `h2`) to `https://host:port`.
pub async fn channel(
    uri: &str,
    tls: rustls::ClientConfig,
    connect_timeout: Duration,
    keep_alive: Option<Duration>,
) -> Result<Channel, String> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let mut endpoint = Endpoint::from_shared(uri.to_string())
        .map_err(|e| e.to_string())?
        .connect_timeout(connect_timeout);
    if let Some(every) = keep_alive {
        endpoint = endpoint
            .http2_keep_alive_interval(every)
            .keep_alive_while_idle(true);
    }
    endpoint
        .connect_with_connector(tower::service_fn(move |uri: tonic::codegen::http::Uri| {
            let connector = connector.clone();
            async move {
                let host = uri.host().unwrap_or("localhost").to_string();
                let port = uri.port_u16().unwrap_or(8935);
                let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
                let name =
                    rustls::pki_types::ServerName::try_from(host).map_err(std::io::Error::other)?;
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
        .await
        .map_err(|e| format!("cannot reach {uri}: {e}"))
}
