//! go-plugin's automatic mutual TLS. Terraform passes its client certificate
//! in `PLUGIN_CLIENT_CERT`; we serve with a fresh self-signed certificate
//! (announced in the handshake line) and accept exactly that client
//! certificate, nothing else.
//!
//! Terraform's client certificate is an ECDSA P-521 certificate flagged as a
//! CA, which WebPKI-style verifiers reject as an end-entity certificate, so
//! the client check here pins the exact certificate bytes and verifies the
//! handshake signature with its key.

use std::sync::Arc;

use base64::Engine;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("PLUGIN_CLIENT_CERT does not hold a PEM certificate: {0}")]
    ClientCert(String),
    #[error("generating the server certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("building the TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The one crypto provider the process uses. rustls panics at first use when
/// both ring and aws-lc-rs are compiled in and none was chosen, so the binary
/// installs this at start.
///
/// Randomness, key exchange and our certificate's key come from ring, whose
/// getrandom-backed generator is ready at once: aws-lc's first random bytes
/// cost ~40 ms seeding its jitter-entropy DRBG, all of it between exec and
/// the handshake line. Signature verification comes from aws-lc-rs, because
/// ring cannot verify P-521 signatures and Terraform's client certificate is
/// P-521.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.signature_verification_algorithms =
        rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms;
    Arc::new(provider)
}

/// Installs [`crypto_provider`] as the process default (idempotent).
pub fn install_crypto_provider() {
    let _ = crypto_provider().as_ref().clone().install_default();
}

/// The server's TLS setup and the certificate to announce.
pub struct ServerTls {
    pub config: Arc<rustls::ServerConfig>,
    /// DER of the server certificate, base64 without padding, as go-plugin
    /// expects in the handshake line.
    pub announced_cert: String,
}

/// Builds a server configuration that requires `client_cert_pem`.
pub fn server_tls(client_cert_pem: &str) -> Result<ServerTls, TlsError> {
    let client_cert =
        CertificateDer::from_pem_slice(client_cert_pem.as_bytes()).map_err(|e| TlsError::ClientCert(e.to_string()))?;
    let provider = crypto_provider();
    let verifier = Arc::new(PinnedClientCert {
        expected: client_cert.into_owned(),
        algorithms: provider.signature_verification_algorithms,
    });
    let (cert, key) = generate_server_cert()?;
    let announced_cert = base64::engine::general_purpose::STANDARD_NO_PAD.encode(cert.as_ref());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert], key)?;
    // grpc-go insists on ALPN "h2" since 1.67.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(ServerTls { config: Arc::new(config), announced_cert })
}

/// A self-signed certificate shaped like go-plugin's own: valid for
/// `localhost` (the server name go-plugin's client checks), usable for both
/// server and client auth, and marked as a CA because the client trusts it as
/// its only root.
pub fn generate_server_cert() -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), rcgen::Error> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
        PKCS_ECDSA_P256_SHA256,
    };
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(vec!["localhost".to_string()])?;
    params.distinguished_name.push(DnType::OrganizationName, "Coffer");
    params.distinguished_name.push(DnType::CommonName, "localhost");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::KeyAgreement,
        KeyUsagePurpose::KeyCertSign,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.self_signed(&key)?;
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok((cert.der().clone(), key_der))
}

/// Accepts one exact certificate; proves the peer holds its key by checking
/// the handshake signature.
#[derive(Debug)]
pub struct PinnedClientCert {
    expected: CertificateDer<'static>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for PinnedClientCert {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.expected.as_ref() {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
