//! Driving the plugin binary the way Terraform does, without Terraform: the
//! go-plugin environment, the handshake line, and a gRPC client that
//! presents a client certificate over TLS. Used by the protocol tests and
//! the benchmarks.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use coffer_tfplugin::server::tfplugin6::provider_client::ProviderClient;
use coffer_tfplugin::server::{MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tonic::transport::{Channel, Endpoint};

/// A client identity like Terraform's: an ECDSA P-521 self-signed
/// certificate flagged as a CA (fixtures in tests/fixtures/tls).
pub struct ClientIdentity {
    pub cert_pem: String,
    pub cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

impl ClientIdentity {
    /// The identity standing in for Terraform's.
    pub fn terraform() -> Self {
        Self::fixture("terraform-client")
    }

    /// Another identity of the same shape, which the plugin must refuse.
    pub fn stranger() -> Self {
        Self::fixture("stranger")
    }

    fn fixture(name: &str) -> Self {
        use rustls::pki_types::pem::PemObject;
        let dir = super::tools::repo_root().join("tests/fixtures/tls");
        let cert_pem = std::fs::read_to_string(dir.join(format!("{name}.pem"))).expect("certificate fixture");
        let key_pem = std::fs::read(dir.join(format!("{name}.key"))).expect("key fixture");
        Self {
            cert: CertificateDer::from_pem_slice(cert_pem.as_bytes()).expect("PEM certificate"),
            key: PrivateKeyDer::from_pem_slice(&key_pem).expect("PEM private key"),
            cert_pem,
        }
    }
}

/// The plugin's handshake line, parsed.
#[derive(Debug, Clone)]
pub struct Handshake {
    pub core_version: String,
    pub protocol_version: String,
    pub address: SocketAddr,
    pub server_cert: Option<CertificateDer<'static>>,
    pub raw: String,
}

/// A running plugin process. Killed on drop.
pub struct PluginProcess {
    child: Child,
    pub handshake: Handshake,
    /// Time from spawn to the handshake line on stdout.
    pub handshake_time: Duration,
}

impl PluginProcess {
    /// Starts the plugin as go-plugin would, with `client` as the mTLS
    /// client certificate (plaintext when `None`).
    pub fn start(binary: &Path, client: Option<&ClientIdentity>) -> Self {
        let mut command = Command::new(binary);
        command
            .env(MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE)
            .env("PLUGIN_PROTOCOL_VERSIONS", "5,6")
            .env_remove("PLUGIN_CLIENT_CERT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(client) = client {
            command.env("PLUGIN_CLIENT_CERT", &client.cert_pem);
        }
        let start = Instant::now();
        let mut child = command.spawn().expect("spawning the plugin");
        let stdout = child.stdout.take().expect("plugin stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("reading the handshake line");
        let handshake_time = start.elapsed();
        let handshake = parse_handshake(&line);
        Self { child, handshake, handshake_time }
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident set size so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Connects with `identity` as the client certificate (or none), trusting
    /// exactly the certificate the plugin announced.
    pub async fn connect(&self, identity: Option<&ClientIdentity>) -> Result<ProviderClient<Channel>, String> {
        self.channel(identity).await.map(ProviderClient::new)
    }

    /// A gRPC channel to the plugin, for any of its services.
    pub async fn channel(&self, identity: Option<&ClientIdentity>) -> Result<Channel, String> {
        let address = self.handshake.address;
        let endpoint = Endpoint::from_shared(format!("http://{address}")).map_err(|e| e.to_string())?;
        let channel = match &self.handshake.server_cert {
            None => endpoint.connect().await.map_err(|e| format!("{e:?}"))?,
            Some(server_cert) => {
                let config = client_tls(server_cert.clone(), identity);
                let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
                endpoint
                    .connect_with_connector(tower::service_fn(move |_uri| {
                        let connector = connector.clone();
                        async move {
                            let tcp = tokio::net::TcpStream::connect(address).await?;
                            tcp.set_nodelay(true)?;
                            let name = ServerName::try_from("localhost").expect("server name");
                            let tls = connector.connect(name, tcp).await?;
                            Ok::<_, std::io::Error>(TokioIo::new(tls))
                        }
                    }))
                    .await
                    .map_err(|e| format!("{e:?}"))?
            }
        };
        Ok(channel)
    }
}

impl Drop for PluginProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn parse_handshake(line: &str) -> Handshake {
    let raw = line.trim_end().to_string();
    let fields: Vec<&str> = raw.split('|').collect();
    assert_eq!(fields.len(), 6, "handshake line {raw:?} must have 6 fields");
    assert_eq!(fields[2], "tcp", "network in {raw:?}");
    assert_eq!(fields[4], "grpc", "protocol in {raw:?}");
    let server_cert = (!fields[5].is_empty()).then(|| {
        let der = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(fields[5])
            .expect("handshake certificate is base64 without padding");
        CertificateDer::from(der)
    });
    Handshake {
        core_version: fields[0].to_string(),
        protocol_version: fields[1].to_string(),
        address: fields[3].parse().expect("handshake address"),
        server_cert,
        raw,
    }
}

fn client_tls(server_cert: CertificateDer<'static>, identity: Option<&ClientIdentity>) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedServer { cert: server_cert, provider }));
    let mut config = match identity {
        Some(identity) => builder
            .with_client_auth_cert(vec![identity.cert.clone()], identity.key.clone_key())
            .expect("client certificate"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    config
}

/// Trusts exactly the certificate from the handshake line, as go-plugin's
/// client does by making it the only root.
#[derive(Debug)]
struct PinnedServer {
    cert: CertificateDer<'static>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General("server certificate differs from the handshake's".into()))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
