//! TLS setup with rustls: certificate loading and first-start generation, server configs for
//! STARTTLS and direct TLS (XEP-0368), and the channel-binding data SCRAM-PLUS needs.
//!
//! Only TLS 1.2 and 1.3 with the ring provider's AEAD/ECDHE suites are offered (RFC 7590,
//! CORE-TLS-08); rustls never negotiates TLS-level compression.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use sha2::Digest;

/// ALPN protocol id for client streams on the direct-TLS port (XEP-0368).
pub const ALPN_XMPP_CLIENT: &[u8] = b"xmpp-client";

/// Everything the listeners need for TLS.
#[derive(Clone)]
pub struct TlsSetup {
    /// Config for STARTTLS on the plain port (no ALPN).
    pub starttls: Arc<ServerConfig>,
    /// Config for the direct-TLS port (ALPN `xmpp-client` when the client offers ALPN).
    pub direct: Arc<ServerConfig>,
    /// Config for the HTTPS ports (ALPN `http/1.1` when the client offers ALPN).
    pub https: Arc<ServerConfig>,
    /// RFC 5929 `tls-server-end-point` data of the server certificate, if defined for its
    /// signature algorithm.
    pub server_end_point: Option<Arc<[u8]>>,
    /// The certificate chain (server-to-server streams build their own configs from it).
    pub chain: Vec<CertificateDer<'static>>,
    /// The private key.
    pub key: Arc<PrivateKeyDer<'static>>,
}

/// A TLS setup problem.
#[derive(Debug)]
pub struct TlsError(pub String);

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

impl TlsSetup {
    /// Load the certificate chain and key; if `generate` and both files are missing, first
    /// create a self-signed certificate for `domains`.
    pub fn load(
        cert: &Path,
        key: &Path,
        generate: bool,
        domains: &[String],
    ) -> Result<TlsSetup, TlsError> {
        if generate && !cert.exists() && !key.exists() {
            generate_self_signed(domains, cert, key)?;
            tracing::info!(cert = %cert.display(), "generated a self-signed certificate");
        }
        let chain = load_chain(cert)?;
        let key_der = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| TlsError(format!("reading key {}: {e}", key.display())))?;
        let server_end_point = chain
            .first()
            .and_then(|leaf| server_end_point(leaf.as_ref()))
            .map(Arc::from);
        let build = |alpn: Option<&[u8]>| -> Result<Arc<ServerConfig>, TlsError> {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = ServerConfig::builder_with_provider(provider)
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                .map_err(|e| TlsError(e.to_string()))?
                .with_no_client_auth()
                .with_single_cert(chain.clone(), key_der.clone_key())
                .map_err(|e| TlsError(format!("certificate/key: {e}")))?;
            if let Some(alpn) = alpn {
                config.alpn_protocols = vec![alpn.to_vec()];
            }
            Ok(Arc::new(config))
        };
        Ok(TlsSetup {
            starttls: build(None)?,
            direct: build(Some(ALPN_XMPP_CLIENT))?,
            https: build(Some(b"http/1.1"))?,
            server_end_point,
            chain: chain.clone(),
            key: Arc::new(key_der.clone_key()),
        })
    }
}

fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError(format!("reading certificate {}: {e}", path.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError(format!("parsing certificate {}: {e}", path.display())))?;
    if chain.is_empty() {
        return Err(TlsError(format!(
            "{}: no certificate found",
            path.display()
        )));
    }
    Ok(chain)
}

/// Write a self-signed ECDSA P-256 certificate for `domains` (and their subdomains) with its
/// key (mode 0600).
pub fn generate_self_signed(domains: &[String], cert: &Path, key: &Path) -> Result<(), TlsError> {
    let mut names = Vec::new();
    for d in domains {
        names.push(d.clone());
        if d.parse::<std::net::IpAddr>().is_err() && d != "localhost" {
            names.push(format!("*.{d}"));
        }
    }
    let generated =
        rcgen::generate_simple_self_signed(names).map_err(|e| TlsError(e.to_string()))?;
    for path in [cert, key] {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| TlsError(format!("creating {}: {e}", dir.display())))?;
        }
    }
    write_private(key, generated.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(cert, generated.cert.pem())
        .map_err(|e| TlsError(format!("writing {}: {e}", cert.display())))?;
    Ok(())
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| TlsError(format!("writing {}: {e}", path.display())))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(|e| TlsError(format!("writing {}: {e}", path.display())))
}

/// RFC 5929 §4.1: hash the certificate with its signature's hash function, using SHA-256 for
/// MD5 and SHA-1; undefined (None) for algorithms without a single hash (Ed25519, RSA-PSS).
pub fn server_end_point(cert_der: &[u8]) -> Option<Vec<u8>> {
    const SHA256: &[&[u8]] = &[
        // sha256WithRSAEncryption, sha1WithRSAEncryption, md5WithRSAEncryption
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b],
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05],
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x04],
        // ecdsa-with-SHA256, ecdsa-with-SHA1
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02],
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01],
    ];
    const SHA384: &[&[u8]] = &[
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c],
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03],
    ];
    const SHA512: &[&[u8]] = &[
        &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d],
        &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04],
    ];
    let oid = signature_algorithm_oid(cert_der)?;
    if SHA256.contains(&oid) {
        Some(sha2::Sha256::digest(cert_der).to_vec())
    } else if SHA384.contains(&oid) {
        Some(sha2::Sha384::digest(cert_der).to_vec())
    } else if SHA512.contains(&oid) {
        Some(sha2::Sha512::digest(cert_der).to_vec())
    } else {
        None
    }
}

/// `Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm AlgorithmIdentifier, .. }`:
/// return the content octets of the signatureAlgorithm's OID.
fn signature_algorithm_oid(der: &[u8]) -> Option<&[u8]> {
    let (tag, cert, _) = der_item(der)?;
    if tag != 0x30 {
        return None;
    }
    let (_, _, rest) = der_item(cert)?; // tbsCertificate
    let (tag, alg, _) = der_item(rest)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, oid, _) = der_item(alg)?;
    (tag == 0x06).then_some(oid)
}

/// One DER TLV: (tag, contents, remaining input). Single-byte tags only.
pub(crate) fn der_item(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (bytes, rest) = rest.split_at(n);
        let len = bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    let (contents, rest) = rest.split_at(len);
    Some((tag, contents, rest))
}

/// RFC 9266 `tls-exporter` channel binding, defined only for TLS 1.3.
pub fn tls_exporter(conn: &rustls::ServerConnection) -> Option<Vec<u8>> {
    if conn.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
        return None;
    }
    conn.export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", Some(&[]))
        .ok()
        .map(|k| k.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certificate_loads_and_has_end_point_binding() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("tls/cert.pem");
        let key = dir.path().join("tls/key.pem");
        let setup = TlsSetup::load(&cert, &key, true, &["localhost".to_string()]).unwrap();
        let der = load_chain(&cert).unwrap().remove(0);
        let expected = sha2::Sha256::digest(der.as_ref()).to_vec();
        assert_eq!(setup.server_end_point.as_deref(), Some(&expected[..]));
        assert_eq!(setup.direct.alpn_protocols, vec![b"xmpp-client".to_vec()]);
        // A second load reuses the files.
        let again = TlsSetup::load(&cert, &key, true, &["localhost".to_string()]).unwrap();
        assert_eq!(again.server_end_point, setup.server_end_point);
    }

    #[test]
    fn der_parser_rejects_truncated_input() {
        assert_eq!(signature_algorithm_oid(&[0x30, 0x82, 0xff]), None);
        assert_eq!(signature_algorithm_oid(&[]), None);
        assert_eq!(server_end_point(&[0x30, 0x00]), None);
    }
}
