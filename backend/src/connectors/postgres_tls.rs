//! TLS for the PostgreSQL connector, with libpq's `sslmode` meanings, so a URL copied from a
//! managed database's console (`?sslmode=verify-full&sslrootcert=/path/ca.pem`) works as is.
//!
//! | `sslmode` | TLS | server certificate |
//! |---|---|---|
//! | `disable` | never | – |
//! | `prefer` (default) | when the server offers it | not verified (libpq's meaning) |
//! | `require` | always | not verified (libpq's meaning) |
//! | `verify-ca` | always | signed by a trusted CA; its name is not checked |
//! | `verify-full` | always | signed by a trusted CA and issued to the host connected to |
//!
//! Trusted CAs: the PEM file `sslrootcert` names when given (it replaces the system's, as in
//! libpq), else the operating system's store.
//!
//! # Invariants
//! - `tokio-postgres` knows `sslmode` only up to `require` and no `sslrootcert`: [`split_url`]
//!   takes both out of a URL before it parses the rest, and an unknown `sslmode` is an error,
//!   never a silent downgrade.
//! - No error message repeats the URL (it may hold a password).

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientConfig, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// No TLS.
    Disable,
    /// TLS when the server offers it, unverified.
    Prefer,
    /// TLS, unverified.
    Require,
    /// TLS, the certificate chain verified, not its name.
    VerifyCa,
    /// TLS, the certificate chain and name verified.
    VerifyFull,
}

/// How the connector speaks TLS to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The `sslmode`.
    pub mode: TlsMode,
    /// The CAs to trust (`sslrootcert`), else the system's.
    pub root_cert: Option<PathBuf>,
}

impl TlsMode {
    fn parse(text: &str) -> Result<Self, String> {
        Ok(match text {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(format!(
                    "sslmode={other:?} is not one of disable, prefer, require, verify-ca, verify-full"
                ));
            }
        })
    }

    /// The mode `tokio-postgres` read from a key=value connection string.
    pub fn from_negotiation(mode: SslMode) -> Self {
        match mode {
            SslMode::Disable => Self::Disable,
            SslMode::Require => Self::Require,
            _ => Self::Prefer,
        }
    }

    /// What `tokio-postgres` negotiates for it.
    pub fn negotiation(self) -> SslMode {
        match self {
            Self::Disable => SslMode::Disable,
            Self::Prefer => SslMode::Prefer,
            Self::Require | Self::VerifyCa | Self::VerifyFull => SslMode::Require,
        }
    }
}

/// Takes `sslmode` and `sslrootcert` out of a `postgres://` URL: the URL without them, and the
/// TLS settings (`prefer` by default). A key=value connection string is returned as it is,
/// without settings: `tokio-postgres` reads its `sslmode` (up to `require`) itself.
///
/// # Errors
/// An unknown `sslmode`; a URL that does not parse (the message does not repeat it).
pub fn split_url(text: &str) -> Result<(String, Option<TlsSettings>), String> {
    let mut settings = TlsSettings {
        mode: TlsMode::Prefer,
        root_cert: None,
    };
    if !(text.starts_with("postgres://") || text.starts_with("postgresql://")) {
        return Ok((text.to_owned(), None));
    }
    let mut url = url::Url::parse(text)
        .map_err(|error| format!("it is not a usable PostgreSQL URL ({error})"))?;
    let mut kept = Vec::new();
    for (key, value) in url.query_pairs() {
        match key.as_ref() {
            "sslmode" => settings.mode = TlsMode::parse(&value)?,
            "sslrootcert" => settings.root_cert = Some(PathBuf::from(value.as_ref())),
            _ => kept.push((key.into_owned(), value.into_owned())),
        }
    }
    if kept.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(kept);
    }
    Ok((url.into(), Some(settings)))
}

/// The connection settings and the TLS connector for a URL (or key=value string): libpq's TLS
/// parameters taken out ([`split_url`]), the rest parsed by `tokio-postgres`, its `sslmode`
/// set to what the TLS mode negotiates.
///
/// # Errors
/// An unusable URL or TLS setting; no message repeats the URL.
pub fn connection(url: &str) -> Result<(tokio_postgres::Config, MakeRustlsConnect), String> {
    let (url_without_tls, tls) = split_url(url)?;
    let mut config: tokio_postgres::Config = url_without_tls.parse().map_err(|_| {
        "it does not hold a usable PostgreSQL URL (postgres://user:password@host:port/database)"
            .to_owned()
    })?;
    let tls = tls.unwrap_or_else(|| TlsSettings {
        mode: TlsMode::from_negotiation(config.get_ssl_mode()),
        root_cert: None,
    });
    config.ssl_mode(tls.mode.negotiation());
    Ok((config, connector(&tls)?))
}

/// The TLS connector for `settings`.
///
/// # Errors
/// When `sslrootcert` cannot be read or holds no certificate, or the system's store is empty.
pub fn connector(settings: &TlsSettings) -> Result<MakeRustlsConnect, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS: {error}"))?;
    let config = match settings.mode {
        TlsMode::Disable | TlsMode::Prefer | TlsMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly { provider }))
            .with_no_client_auth(),
        TlsMode::VerifyCa | TlsMode::VerifyFull => {
            let roots = Arc::new(trusted_roots(settings.root_cert.as_deref())?);
            let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|error| format!("TLS: {error}"))?;
            let verifier: Arc<dyn ServerCertVerifier> = if settings.mode == TlsMode::VerifyCa {
                Arc::new(AnyName(verifier))
            } else {
                verifier
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth()
        }
    };
    Ok(MakeRustlsConnect::new(config))
}

fn trusted_roots(root_cert: Option<&std::path::Path>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    match root_cert {
        Some(path) => {
            let shown = path.display();
            let certificates = CertificateDer::pem_file_iter(path)
                .map_err(|error| format!("sslrootcert {shown}: {error}"))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| format!("sslrootcert {shown}: {error}"))?;
            let (added, _) = roots.add_parsable_certificates(certificates);
            if added == 0 {
                return Err(format!("sslrootcert {shown}: no usable certificate in it"));
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
            if roots.is_empty() {
                return Err(
                    "the system's certificate store is empty: name the server's CA with sslrootcert"
                        .into(),
                );
            }
        }
    }
    Ok(roots)
}

/// `prefer` and `require`: encrypted, the server not authenticated (libpq's meaning); the
/// handshake's signatures are still checked.
#[derive(Debug)]
struct EncryptOnly {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `verify-ca`: the chain verified, a certificate issued to another name accepted.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_parameters_are_taken_out_of_the_url() {
        let (url, settings) = split_url(
            "postgres://u:p%40ss@db.example.com:5432/warehouse?application_name=t&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem",
        )
        .unwrap();
        assert_eq!(
            url,
            "postgres://u:p%40ss@db.example.com:5432/warehouse?application_name=t"
        );
        assert_eq!(
            settings,
            Some(TlsSettings {
                mode: TlsMode::VerifyFull,
                root_cert: Some(PathBuf::from("/etc/ca.pem"))
            })
        );

        let (url, settings) = split_url("postgresql://u@h/d?sslmode=require").unwrap();
        assert_eq!(url, "postgresql://u@h/d");
        assert_eq!(
            settings,
            Some(TlsSettings {
                mode: TlsMode::Require,
                root_cert: None
            })
        );
        let default = split_url("postgres://u@h/d").unwrap().1.unwrap();
        assert_eq!(default.mode, TlsMode::Prefer);
        assert_eq!(
            split_url("host=h user=u sslmode=disable").unwrap(),
            ("host=h user=u sslmode=disable".to_owned(), None)
        );
    }

    #[test]
    fn an_unknown_sslmode_or_a_missing_root_cert_is_an_error() {
        let error = split_url("postgres://u:secret@h/d?sslmode=allow-anything").unwrap_err();
        assert!(error.contains("sslmode=\"allow-anything\""), "{error}");
        assert!(!error.contains("secret"));
        let error = connector(&TlsSettings {
            mode: TlsMode::VerifyFull,
            root_cert: Some(PathBuf::from("/nonexistent/ca.pem")),
        })
        .err()
        .unwrap();
        assert!(
            error.starts_with("sslrootcert /nonexistent/ca.pem: "),
            "{error}"
        );
    }
}
