//! Peer certificate validation and RFC 6125 identity checks for server-to-server streams
//! (RFC 6120 §13.7.2, XEP-0178; CORE-S2S-09, EXT-S2S-01/02/04).
//!
//! The TLS handshake itself never fails because the peer's certificate is untrusted, names
//! another domain, or is absent: policy may still fall back to dialback (XEP-0220). So
//! [`DeferredServerCertVerifier`] (outgoing streams) and [`DeferredClientCertVerifier`]
//! (incoming streams, client certificate requested but optional) accept any chain at
//! handshake time while still checking the handshake signatures, which proves possession of
//! the presented certificate's key. After the handshake the connection code calls the pure
//! [`verify_peer`] on `peer_certificates()` with the domain the stream is about, and decides.
//!
//! Chain validation is rustls-webpki's (`EndEntityCert::verify_for_usage`), accepting the
//! serverAuth or the clientAuth EKU (or none). Identity extraction uses `x509-parser`, because
//! rustls-webpki exposes neither otherName SANs (SRV-ID, XmppAddr) nor the subject CN.
//!
//! Matching ([`matches`]) follows RFC 6125 §6 with the XMPP identifier types of RFC 6120
//! §13.7.1.2: DNS-ID (wildcard only as the complete left-most label), SRV-ID
//! (`_xmpp-server.` / `_xmpps-server.`), XmppAddr (a bare domain), and CN-ID only when the
//! certificate carries none of DNS-ID, SRV-ID, URI-ID or XmppAddr (§6.4.4). Both sides are
//! compared as ASCII lowercase A-labels; U-label input (as stored in prepared JIDs) is
//! converted with Nameprep and Punycode.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use webpki::{ExtendedKeyUsageValidator, KeyPurposeIdIter};

/// System CA bundles tried by [`TrustAnchors::from_system`], after `$SSL_CERT_FILE`: Debian
/// and Ubuntu, Fedora and RHEL, openSUSE, Alpine and the BSDs.
pub const SYSTEM_CA_FILES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// `id-on-xmppAddr` (RFC 6120 §13.7.1.4): 1.3.6.1.5.5.7.8.5, DER content octets.
const OID_XMPP_ADDR: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x08, 0x05];
/// `id-on-dnsSRV` (RFC 4985): 1.3.6.1.5.5.7.8.7, DER content octets.
const OID_DNS_SRV: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x08, 0x07];
/// `id-kp-serverAuth` and `id-kp-clientAuth`, DER content octets.
const EKU_SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
const EKU_CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];

/// SRV-ID service labels accepted for an XMPP server (RFC 6120 §13.7.1.2.1, XEP-0368).
const SRV_SERVICES: &[&str] = &["_xmpp-server", "_xmpps-server"];

// ---------------------------------------------------------------------------------------------
// Errors and results
// ---------------------------------------------------------------------------------------------

/// Loading trust anchors or parsing a certificate failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityError(pub String);

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for IdentityError {}

/// Outcome of [`verify_peer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertStatus {
    /// The chain verifies to a trust anchor and the end-entity certificate names the domain.
    Valid,
    /// The chain does not verify (checked before the name: an untrusted name means nothing).
    Untrusted(Untrusted),
    /// The chain verifies but the end-entity certificate does not name the domain.
    NameMismatch,
    /// The peer presented no certificate.
    Missing,
}

impl CertStatus {
    /// True for [`CertStatus::Valid`].
    pub fn is_valid(&self) -> bool {
        matches!(self, CertStatus::Valid)
    }

    /// Short stable label for logs and metrics: `valid`, `untrusted`, `name-mismatch`,
    /// `missing`.
    pub fn as_str(&self) -> &'static str {
        match self {
            CertStatus::Valid => "valid",
            CertStatus::Untrusted(_) => "untrusted",
            CertStatus::NameMismatch => "name-mismatch",
            CertStatus::Missing => "missing",
        }
    }
}

impl fmt::Display for CertStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertStatus::Untrusted(why) => write!(f, "untrusted: {why}"),
            other => f.write_str(other.as_str()),
        }
    }
}

/// Why a chain did not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Untrusted {
    /// No path to a trust anchor (includes self-signed certificates not in the anchors).
    UnknownIssuer,
    /// A certificate in the path has expired.
    Expired,
    /// A certificate in the path is not valid yet.
    NotYetValid,
    /// A signature in the path does not verify.
    BadSignature,
    /// A signature algorithm in the path is not supported.
    UnsupportedAlgorithm,
    /// Wrong extended key usage (neither serverAuth nor clientAuth), a CA certificate used as
    /// end entity, or a path/name constraint violation.
    BadUsage,
    /// The certificate is malformed or uses an unsupported critical extension or version.
    Malformed,
    /// Any other rustls-webpki error, by its debug name.
    Other(String),
}

impl fmt::Display for Untrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Untrusted::UnknownIssuer => f.write_str("unknown issuer"),
            Untrusted::Expired => f.write_str("certificate expired"),
            Untrusted::NotYetValid => f.write_str("certificate not valid yet"),
            Untrusted::BadSignature => f.write_str("bad signature"),
            Untrusted::UnsupportedAlgorithm => f.write_str("unsupported signature algorithm"),
            Untrusted::BadUsage => f.write_str("certificate not usable for this purpose"),
            Untrusted::Malformed => f.write_str("malformed certificate"),
            Untrusted::Other(e) => f.write_str(e),
        }
    }
}

impl From<webpki::Error> for Untrusted {
    #[allow(deprecated)]
    fn from(e: webpki::Error) -> Untrusted {
        use webpki::Error as E;
        match e {
            E::UnknownIssuer | E::CertDistrusted => Untrusted::UnknownIssuer,
            E::CertExpired { .. } => Untrusted::Expired,
            E::CertNotValidYet { .. } => Untrusted::NotYetValid,
            E::InvalidSignatureForPublicKey | E::SignatureAlgorithmMismatch => {
                Untrusted::BadSignature
            }
            E::UnsupportedSignatureAlgorithm
            | E::UnsupportedSignatureAlgorithmContext(_)
            | E::UnsupportedSignatureAlgorithmForPublicKey
            | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
                Untrusted::UnsupportedAlgorithm
            }
            E::RequiredEkuNotFound
            | E::RequiredEkuNotFoundContext(_)
            | E::EmptyEkuExtension
            | E::CaUsedAsEndEntity
            | E::EndEntityUsedAsCa
            | E::PathLenConstraintViolated
            | E::NameConstraintViolation => Untrusted::BadUsage,
            E::BadDer
            | E::BadDerTime
            | E::TrailingData(_)
            | E::InvalidCertValidity
            | E::InvalidSerialNumber
            | E::MalformedExtensions
            | E::ExtensionValueInvalid
            | E::UnsupportedCertVersion
            | E::UnsupportedCriticalExtension => Untrusted::Malformed,
            other => Untrusted::Other(format!("{other:?}")),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Trust anchors
// ---------------------------------------------------------------------------------------------

/// The CA certificates s2s peer chains are validated against.
#[derive(Clone, Default)]
pub struct TrustAnchors {
    roots: Arc<Vec<TrustAnchor<'static>>>,
}

impl fmt::Debug for TrustAnchors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustAnchors")
            .field("len", &self.roots.len())
            .finish()
    }
}

impl TrustAnchors {
    /// No anchors: every chain is [`Untrusted::UnknownIssuer`] (dialback-only deployments).
    pub fn empty() -> TrustAnchors {
        TrustAnchors::default()
    }

    /// Anchors from DER certificates. Certificates rustls-webpki cannot use as anchors are
    /// skipped (and logged); it is an error if none is usable.
    pub fn from_der<'a>(
        certs: impl IntoIterator<Item = &'a CertificateDer<'a>>,
    ) -> Result<TrustAnchors, IdentityError> {
        let mut roots = Vec::new();
        let mut skipped = 0usize;
        for cert in certs {
            match webpki::anchor_from_trusted_cert(cert) {
                Ok(anchor) => roots.push(anchor.to_owned()),
                Err(e) => {
                    skipped += 1;
                    tracing::debug!(error = ?e, "skipping unusable CA certificate");
                }
            }
        }
        if skipped > 0 {
            tracing::warn!(
                skipped,
                used = roots.len(),
                "some CA certificates were unusable"
            );
        }
        if roots.is_empty() {
            return Err(IdentityError("no usable CA certificate".into()));
        }
        Ok(TrustAnchors {
            roots: Arc::new(roots),
        })
    }

    /// Anchors from a PEM bundle (`CERTIFICATE` blocks; other blocks are ignored).
    pub fn from_pem_bytes(pem: &[u8]) -> Result<TrustAnchors, IdentityError> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<_, _>>()
            .map_err(|e| IdentityError(format!("parsing PEM: {e}")))?;
        if certs.is_empty() {
            return Err(IdentityError("no certificate in PEM data".into()));
        }
        TrustAnchors::from_der(&certs)
    }

    /// Anchors from a PEM file (the `--s2s-ca` option).
    pub fn from_pem_file(path: &Path) -> Result<TrustAnchors, IdentityError> {
        let data = std::fs::read(path)
            .map_err(|e| IdentityError(format!("reading {}: {e}", path.display())))?;
        TrustAnchors::from_pem_bytes(&data)
            .map_err(|e| IdentityError(format!("{}: {e}", path.display())))
    }

    /// The system's CA bundle: `$SSL_CERT_FILE` if set, else the first of
    /// [`SYSTEM_CA_FILES`] that exists.
    pub fn from_system() -> Result<TrustAnchors, IdentityError> {
        if let Some(path) = std::env::var_os("SSL_CERT_FILE") {
            return TrustAnchors::from_pem_file(Path::new(&path));
        }
        for path in SYSTEM_CA_FILES {
            let path = Path::new(path);
            if path.exists() {
                return TrustAnchors::from_pem_file(path);
            }
        }
        Err(IdentityError(format!(
            "no system CA bundle found (tried {})",
            SYSTEM_CA_FILES.join(", ")
        )))
    }

    /// Number of anchors.
    pub fn len(&self) -> usize {
        self.roots.len()
    }

    /// True without anchors.
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// The anchors' subjects, as CertificateRequest root hints.
    pub fn subjects(&self) -> Vec<DistinguishedName> {
        self.roots
            .iter()
            .map(|ta| DistinguishedName::in_sequence(ta.subject.as_ref()))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Handshake-time verifiers
// ---------------------------------------------------------------------------------------------

/// ring's signature verification algorithms, used for chain validation in [`verify_chain`].
fn ring_algorithms() -> &'static WebPkiSupportedAlgorithms {
    static ALGS: OnceLock<WebPkiSupportedAlgorithms> = OnceLock::new();
    ALGS.get_or_init(|| rustls::crypto::ring::default_provider().signature_verification_algorithms)
}

/// Verifier for OUTGOING s2s connections: accepts any server certificate chain during the
/// handshake (the chain and name are judged afterwards by [`verify_peer`]) but verifies the
/// handshake signatures with the provider's algorithms.
#[derive(Debug)]
pub struct DeferredServerCertVerifier {
    algs: WebPkiSupportedAlgorithms,
}

impl DeferredServerCertVerifier {
    /// Uses `provider`'s signature verification algorithms.
    pub fn new(provider: &CryptoProvider) -> DeferredServerCertVerifier {
        DeferredServerCertVerifier {
            algs: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for DeferredServerCertVerifier {
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// Verifier for INCOMING s2s connections: requests a client certificate without requiring
/// one (CORE-TLS-10), accepts any chain during the handshake (judged afterwards by
/// [`verify_peer`]), and verifies the handshake signatures.
#[derive(Debug)]
pub struct DeferredClientCertVerifier {
    algs: WebPkiSupportedAlgorithms,
    root_hints: Vec<DistinguishedName>,
}

impl DeferredClientCertVerifier {
    /// Uses `provider`'s signature verification algorithms; sends no root hints.
    pub fn new(provider: &CryptoProvider) -> DeferredClientCertVerifier {
        DeferredClientCertVerifier {
            algs: provider.signature_verification_algorithms,
            root_hints: Vec::new(),
        }
    }

    /// Sends `anchors`' subjects as root hints in the CertificateRequest. (With the system
    /// bundle that is well over 10 KiB, so the default is none.)
    pub fn with_root_hints(mut self, anchors: &TrustAnchors) -> DeferredClientCertVerifier {
        self.root_hints = anchors.subjects();
        self
    }
}

impl ClientCertVerifier for DeferredClientCertVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.root_hints
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

// ---------------------------------------------------------------------------------------------
// Post-handshake verification
// ---------------------------------------------------------------------------------------------

/// EKU policy for s2s peers: no EKU extension, or one containing serverAuth or clientAuth.
/// (A peer's certificate on an incoming stream usually carries only serverAuth.)
struct S2sUsage;

impl ExtendedKeyUsageValidator for S2sUsage {
    // `RequiredEkuNotFoundContext` has no public constructor, so report the older variant.
    #[allow(deprecated)]
    fn validate(&self, iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        let server = webpki::KeyPurposeId::new(EKU_SERVER_AUTH);
        let client = webpki::KeyPurposeId::new(EKU_CLIENT_AUTH);
        let mut empty = true;
        for id in iter {
            empty = false;
            let id = id?;
            if id == server || id == client {
                return Ok(());
            }
        }
        if empty {
            Ok(())
        } else {
            Err(webpki::Error::RequiredEkuNotFound)
        }
    }
}

/// Validate `chain` (end entity first, then intermediates in any order) against `anchors` at
/// `now`, for s2s use (serverAuth or clientAuth EKU). Names are not checked.
pub fn verify_chain(
    chain: &[CertificateDer<'_>],
    anchors: &TrustAnchors,
    now: UnixTime,
) -> Result<(), Untrusted> {
    let Some((end_entity, intermediates)) = chain.split_first() else {
        return Err(Untrusted::Malformed);
    };
    let ee = webpki::EndEntityCert::try_from(end_entity).map_err(Untrusted::from)?;
    ee.verify_for_usage(
        ring_algorithms().all,
        &anchors.roots,
        intermediates,
        now,
        S2sUsage,
        None,
        None,
    )
    .map(|_| ())
    .map_err(Untrusted::from)
}

/// Judge the certificate chain a peer presented for an s2s stream about `domain` (the
/// stream's `from` on incoming streams, the target domain on outgoing ones): chain first,
/// then the RFC 6125 identity of the end-entity certificate. `domain` is a prepared domain
/// (A-labels or Nameprep'd U-labels).
pub fn verify_peer(
    chain: &[CertificateDer<'_>],
    domain: &str,
    anchors: &TrustAnchors,
    now: UnixTime,
) -> CertStatus {
    let Some(end_entity) = chain.first() else {
        return CertStatus::Missing;
    };
    if let Err(why) = verify_chain(chain, anchors, now) {
        return CertStatus::Untrusted(why);
    }
    match identities(end_entity) {
        Ok(ids) if matches(&ids, domain) => CertStatus::Valid,
        Ok(_) => CertStatus::NameMismatch,
        Err(_) => CertStatus::Untrusted(Untrusted::Malformed),
    }
}

// ---------------------------------------------------------------------------------------------
// Identities
// ---------------------------------------------------------------------------------------------

/// The identifiers a certificate presents, as written in it (not normalised).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identities {
    /// subjectAltName dNSName values (DNS-IDs, possibly wildcards).
    pub dns: Vec<String>,
    /// subjectAltName otherName id-on-dnsSRV values (SRV-IDs), e.g. `_xmpp-server.example.com`.
    pub srv: Vec<String>,
    /// subjectAltName otherName id-on-xmppAddr values.
    pub xmpp_addrs: Vec<String>,
    /// subjectAltName uniformResourceIdentifier values (URI-IDs; never matched, but their
    /// presence disables CN-ID matching).
    pub uris: Vec<String>,
    /// Subject commonName values.
    pub common_names: Vec<String>,
}

impl Identities {
    /// True if any DNS-ID, SRV-ID, URI-ID or XmppAddr is present, in which case CN-IDs are
    /// not used (RFC 6125 §6.4.4).
    pub fn has_san_ids(&self) -> bool {
        !(self.dns.is_empty()
            && self.srv.is_empty()
            && self.xmpp_addrs.is_empty()
            && self.uris.is_empty())
    }
}

impl fmt::Display for Identities {
    /// `DNS:a.example, SRV:_xmpp-server.b.example, XmppAddr:c.example, URI:…, CN:d.example`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let groups: [(&str, &Vec<String>); 5] = [
            ("DNS", &self.dns),
            ("SRV", &self.srv),
            ("XmppAddr", &self.xmpp_addrs),
            ("URI", &self.uris),
            ("CN", &self.common_names),
        ];
        for (label, values) in groups {
            for v in values {
                if !first {
                    f.write_str(", ")?;
                }
                first = false;
                write!(f, "{label}:{}", v.escape_debug())?;
            }
        }
        if first {
            f.write_str("(none)")?;
        }
        Ok(())
    }
}

/// Extract the identifiers of a certificate (used by [`verify_peer`], and for logs and the
/// `xmppd s2s` command). Malformed individual names are skipped; a certificate that does not
/// parse, or has a malformed subjectAltName extension, is an error.
pub fn identities(cert: &CertificateDer<'_>) -> Result<Identities, IdentityError> {
    use x509_parser::extensions::GeneralName;

    let (_, x509) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|e| IdentityError(format!("parsing certificate: {e}")))?;
    let mut ids = Identities::default();
    let san = x509
        .subject_alternative_name()
        .map_err(|e| IdentityError(format!("subjectAltName: {e}")))?;
    if let Some(san) = san {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(s) => ids.dns.push((*s).to_owned()),
                GeneralName::URI(s) => ids.uris.push((*s).to_owned()),
                GeneralName::OtherName(oid, value) => {
                    let Some(s) = other_name_string(value) else {
                        continue;
                    };
                    if oid.as_bytes() == OID_XMPP_ADDR {
                        ids.xmpp_addrs.push(s.to_owned());
                    } else if oid.as_bytes() == OID_DNS_SRV && s.is_ascii() {
                        ids.srv.push(s.to_owned());
                    }
                }
                _ => {}
            }
        }
    }
    for cn in x509.subject().iter_common_name() {
        if let Ok(s) = cn.as_str() {
            ids.common_names.push(s.to_owned());
        }
    }
    Ok(ids)
}

/// The string in an otherName's `[0] EXPLICIT` value: a UTF8String (XmppAddr) or IA5String
/// (SRVName); either is accepted for both.
fn other_name_string(value: &[u8]) -> Option<&str> {
    let (tag, inner, _) = der_item(value)?;
    if tag != 0xa0 {
        return None;
    }
    let (tag, content, rest) = der_item(inner)?;
    if !rest.is_empty() || !(tag == 0x0c || tag == 0x16) {
        return None;
    }
    std::str::from_utf8(content).ok()
}

use crate::tls::der_item;

// ---------------------------------------------------------------------------------------------
// Matching
// ---------------------------------------------------------------------------------------------

/// Which kind of presented identifier matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    /// subjectAltName dNSName.
    DnsId,
    /// subjectAltName otherName id-on-dnsSRV.
    SrvId,
    /// subjectAltName otherName id-on-xmppAddr.
    XmppAddr,
    /// Subject commonName (only without SAN identifiers).
    CnId,
}

/// The first presented identifier in `ids` that names `domain`, with its kind: DNS-IDs, then
/// SRV-IDs, then XmppAddrs, then (only if [`Identities::has_san_ids`] is false) CN-IDs.
pub fn matched_identity<'a>(ids: &'a Identities, domain: &str) -> Option<(IdKind, &'a str)> {
    let reference = to_ascii_domain(domain)?;
    let reference = reference.as_str();
    if let Some(id) = ids.dns.iter().find(|p| dns_id_matches(p, reference)) {
        return Some((IdKind::DnsId, id));
    }
    if let Some(id) = ids.srv.iter().find(|p| srv_id_matches(p, reference)) {
        return Some((IdKind::SrvId, id));
    }
    if let Some(id) = ids
        .xmpp_addrs
        .iter()
        .find(|p| xmpp_addr_matches(p, reference))
    {
        return Some((IdKind::XmppAddr, id));
    }
    if !ids.has_san_ids() {
        if let Some(id) = ids
            .common_names
            .iter()
            .find(|p| dns_id_matches(p, reference))
        {
            return Some((IdKind::CnId, id));
        }
    }
    None
}

/// True if `ids` names `domain` (RFC 6125 §6 with the XMPP identifier types).
pub fn matches(ids: &Identities, domain: &str) -> bool {
    matched_identity(ids, domain).is_some()
}

/// Match one presented DNS-ID (or CN-ID) against a reference identifier in ASCII lowercase
/// A-label form (as produced by [`to_ascii_domain`]). Case-insensitive; one trailing dot is
/// ignored on either side; a wildcard is accepted only as the complete left-most label of a
/// name with at least two further labels, and matches exactly one non-empty label
/// (`*.example.com` matches `a.example.com`, not `example.com` nor `a.b.example.com`).
/// Partial-label wildcards (`f*.example.com`, `*x.example.com`) never match.
pub fn dns_id_matches(presented: &str, reference: &str) -> bool {
    let presented = presented.strip_suffix('.').unwrap_or(presented);
    let reference = reference.strip_suffix('.').unwrap_or(reference);
    if presented.is_empty()
        || reference.is_empty()
        || !presented.is_ascii()
        || !reference.is_ascii()
        || reference.contains('*')
        || presented.split('.').any(str::is_empty)
        || reference.split('.').any(str::is_empty)
    {
        return false;
    }
    match presented.strip_prefix("*.") {
        Some(base) => {
            if base.contains('*') || !base.contains('.') {
                return false;
            }
            match reference.split_once('.') {
                Some((_label, rest)) => rest.eq_ignore_ascii_case(base),
                None => false,
            }
        }
        None => !presented.contains('*') && presented.eq_ignore_ascii_case(reference),
    }
}

/// Match one presented SRV-ID (`_xmpp-server.<domain>` or `_xmpps-server.<domain>`): the
/// service label case-insensitively, the domain part by the DNS-ID rules (RFC 6125 §6.4.3
/// applies to the DNS domain name portion).
fn srv_id_matches(presented: &str, reference: &str) -> bool {
    match presented.split_once('.') {
        Some((service, name)) => {
            SRV_SERVICES.iter().any(|s| s.eq_ignore_ascii_case(service))
                && dns_id_matches(name, reference)
        }
        None => false,
    }
}

/// Match one presented XmppAddr: it must be a bare domain JID equal to the reference after
/// preparation (no wildcards).
fn xmpp_addr_matches(presented: &str, reference: &str) -> bool {
    if presented.contains(['@', '/', '*']) {
        return false;
    }
    to_ascii_domain(presented).is_some_and(|p| p == reference)
}

/// Bring a domain to comparison form: ASCII lowercase, one trailing dot removed, non-ASCII
/// labels converted with Nameprep and Punycode to A-labels (`xn--…`). None for a domain that
/// does not prepare.
pub fn to_ascii_domain(domain: &str) -> Option<String> {
    if domain.is_ascii() {
        let d = domain.strip_suffix('.').unwrap_or(domain);
        return (!d.is_empty()).then(|| d.to_ascii_lowercase());
    }
    let prepared = crate::xmpp::jid::nameprep_domain(domain).ok()?;
    let mut out = String::with_capacity(prepared.len() + 8);
    for (i, label) in prepared.split('.').enumerate() {
        if i > 0 {
            out.push('.');
        }
        if label.is_ascii() {
            out.push_str(&label.to_ascii_lowercase());
        } else {
            out.push_str("xn--");
            out.push_str(&punycode_encode(label)?);
        }
    }
    Some(out)
}

/// RFC 3492 Punycode encoding of one label (without the `xn--` prefix).
fn punycode_encode(input: &str) -> Option<String> {
    const BASE: u32 = 36;
    const TMIN: u32 = 1;
    const TMAX: u32 = 26;
    const SKEW: u32 = 38;
    const DAMP: u32 = 700;
    const INITIAL_BIAS: u32 = 72;
    const INITIAL_N: u32 = 128;

    fn adapt(mut delta: u32, num_points: u32, first: bool) -> u32 {
        delta /= if first { DAMP } else { 2 };
        delta += delta / num_points;
        let mut k = 0;
        while delta > ((BASE - TMIN) * TMAX) / 2 {
            delta /= BASE - TMIN;
            k += BASE;
        }
        k + (BASE - TMIN + 1) * delta / (delta + SKEW)
    }
    fn digit(d: u32) -> char {
        // d < 36: a..z then 0..9
        let d = d as u8;
        char::from(if d < 26 { b'a' + d } else { b'0' + d - 26 })
    }

    let code_points: Vec<u32> = input.chars().map(u32::from).collect();
    let mut out: String = input.chars().filter(char::is_ascii).collect();
    let basic = u32::try_from(out.len()).ok()?;
    let total = u32::try_from(code_points.len()).ok()?;
    if basic > 0 {
        out.push('-');
    }
    let mut n = INITIAL_N;
    let mut delta: u32 = 0;
    let mut bias = INITIAL_BIAS;
    let mut handled = basic;
    while handled < total {
        let m = code_points.iter().copied().filter(|&c| c >= n).min()?;
        delta = delta.checked_add((m - n).checked_mul(handled + 1)?)?;
        n = m;
        for &c in &code_points {
            if c < n {
                delta = delta.checked_add(1)?;
            }
            if c == n {
                let mut q = delta;
                let mut k = BASE;
                loop {
                    let t = if k <= bias {
                        TMIN
                    } else if k >= bias + TMAX {
                        TMAX
                    } else {
                        k - bias
                    };
                    if q < t {
                        break;
                    }
                    out.push(digit(t + (q - t) % (BASE - t)));
                    q = (q - t) / (BASE - t);
                    k += BASE;
                }
                out.push(digit(q));
                bias = adapt(delta, handled + 1, handled == basic);
                delta = 0;
                handled += 1;
            }
        }
        delta = delta.checked_add(1)?;
        n = n.checked_add(1)?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, CustomExtension, DnType,
        ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
    };
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};

    const XMPP_ADDR_OID: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 8, 5];

    // --- certificate factory -----------------------------------------------------------------

    fn dn(cn: &str) -> rcgen::DistinguishedName {
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        dn
    }

    fn ca_params(cn: &str) -> CertificateParams {
        let mut p = CertificateParams::default();
        p.distinguished_name = dn(cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p
    }

    fn root_ca(cn: &str) -> CertifiedIssuer<'static, KeyPair> {
        CertifiedIssuer::self_signed(ca_params(cn), KeyPair::generate().unwrap()).unwrap()
    }

    fn intermediate_ca(
        cn: &str,
        parent: &Issuer<'_, KeyPair>,
    ) -> CertifiedIssuer<'static, KeyPair> {
        CertifiedIssuer::signed_by(ca_params(cn), KeyPair::generate().unwrap(), parent).unwrap()
    }

    /// Leaf parameters: the given SANs, subject CN, serverAuth EKU.
    fn leaf(cn: &str, sans: Vec<SanType>) -> CertificateParams {
        let mut p = CertificateParams::default();
        p.distinguished_name = dn(cn);
        p.subject_alt_names = sans;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p
    }

    fn dns(name: &str) -> SanType {
        SanType::DnsName(name.try_into().unwrap())
    }

    fn xmpp_addr(addr: &str) -> SanType {
        SanType::OtherName((XMPP_ADDR_OID.to_vec(), addr.into()))
    }

    fn issue(
        params: &CertificateParams,
        issuer: &Issuer<'_, KeyPair>,
    ) -> (CertificateDer<'static>, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, issuer).unwrap();
        (cert.der().clone(), key)
    }

    fn issue_der(
        params: &CertificateParams,
        issuer: &Issuer<'_, KeyPair>,
    ) -> CertificateDer<'static> {
        issue(params, issuer).0
    }

    fn anchors_of(ca: &CertifiedIssuer<'_, KeyPair>) -> TrustAnchors {
        TrustAnchors::from_der([ca.der()]).unwrap()
    }

    // Hand-built DER for SAN entries rcgen cannot express (IA5String otherName, URIs mixed in).

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        let len = content.len();
        if len < 0x80 {
            v.push(len as u8);
        } else if len < 0x100 {
            v.extend([0x81, len as u8]);
        } else {
            v.extend([0x82, (len >> 8) as u8, len as u8]);
        }
        v.extend_from_slice(content);
        v
    }

    /// `[0] IMPLICIT OtherName { type-id, [0] EXPLICIT <string_tag> value }`.
    fn raw_other_name(oid: &[u8], string_tag: u8, value: &str) -> Vec<u8> {
        let mut content = tlv(0x06, oid);
        content.extend(tlv(0xa0, &tlv(string_tag, value.as_bytes())));
        tlv(0xa0, &content)
    }

    fn raw_srv(value: &str) -> Vec<u8> {
        raw_other_name(OID_DNS_SRV, 0x16, value)
    }

    fn raw_dns(value: &str) -> Vec<u8> {
        tlv(0x82, value.as_bytes())
    }

    fn raw_uri(value: &str) -> Vec<u8> {
        tlv(0x86, value.as_bytes())
    }

    /// Leaf parameters whose subjectAltName is the given raw GeneralNames.
    fn leaf_raw_san(cn: &str, names: &[Vec<u8>]) -> CertificateParams {
        let mut p = leaf(cn, Vec::new());
        p.custom_extensions = vec![CustomExtension::from_oid_content(
            &[2, 5, 29, 17],
            tlv(0x30, &names.concat()),
        )];
        p
    }

    fn now() -> UnixTime {
        UnixTime::now()
    }

    // --- verify_peer on the certificate zoo --------------------------------------------------

    #[test]
    fn dns_id_cert() {
        let ca = root_ca("Test Root");
        let anchors = anchors_of(&ca);
        let cert = issue_der(&leaf("unrelated", vec![dns("example.com")]), &ca);
        let chain = [cert.clone()];
        assert_eq!(
            verify_peer(&chain, "example.com", &anchors, now()),
            CertStatus::Valid
        );
        assert_eq!(
            verify_peer(&chain, "EXAMPLE.com.", &anchors, now()),
            CertStatus::Valid
        );
        for other in ["other.com", "sub.example.com", "com", "example.com.evil"] {
            assert_eq!(
                verify_peer(&chain, other, &anchors, now()),
                CertStatus::NameMismatch,
                "{other}"
            );
        }
        let ids = identities(&cert).unwrap();
        assert_eq!(ids.dns, ["example.com"]);
        assert_eq!(ids.common_names, ["unrelated"]);
        assert_eq!(
            matched_identity(&ids, "example.com"),
            Some((IdKind::DnsId, "example.com"))
        );
    }

    #[test]
    fn wildcard_cert() {
        let ca = root_ca("Test Root");
        let anchors = anchors_of(&ca);
        let chain = [issue_der(&leaf("wild", vec![dns("*.example.com")]), &ca)];
        assert_eq!(
            verify_peer(&chain, "a.example.com", &anchors, now()),
            CertStatus::Valid
        );
        assert_eq!(
            verify_peer(&chain, "xn--bcher-kva.example.com", &anchors, now()),
            CertStatus::Valid
        );
        assert_eq!(
            verify_peer(&chain, "bücher.example.com", &anchors, now()),
            CertStatus::Valid
        );
        for other in ["example.com", "a.b.example.com", "a.example.org"] {
            assert_eq!(
                verify_peer(&chain, other, &anchors, now()),
                CertStatus::NameMismatch,
                "{other}"
            );
        }
    }

    #[test]
    fn partial_wildcard_cert_never_matches() {
        let ca = root_ca("Test Root");
        let anchors = anchors_of(&ca);
        let chain = [issue_der(&leaf("p", vec![dns("f*.example.com")]), &ca)];
        for d in ["f.example.com", "foo.example.com", "example.com"] {
            assert_eq!(
                verify_peer(&chain, d, &anchors, now()),
                CertStatus::NameMismatch,
                "{d}"
            );
        }
    }

    #[test]
    fn srv_id_only_cert() {
        let ca = root_ca("Test Root");
        let anchors = anchors_of(&ca);
        let cert = issue_der(
            &leaf_raw_san(
                "unrelated",
                &[
                    raw_srv("_xmpp-server.example.com"),
                    raw_srv("_xmpps-server.example.net"),
                ],
            ),
            &ca,
        );
        let ids = identities(&cert).unwrap();
        assert_eq!(
            ids.srv,
            ["_xmpp-server.example.com", "_xmpps-server.example.net"]
        );
        assert!(ids.dns.is_empty() && ids.xmpp_addrs.is_empty());
        let chain = [cert];
        assert_eq!(
            verify_peer(&chain, "example.com", &anchors, now()),
            CertStatus::Valid
        );
        assert_eq!(
            verify_peer(&chain, "example.net", &anchors, now()),
            CertStatus::Valid
        );
        assert_eq!(
            matched_identity(&ids, "example.com"),
            Some((IdKind::SrvId, "_xmpp-server.example.com"))
        );
        // The CN must not be used: the certificate has SAN identifiers.
        assert_eq!(
            verify_peer(&chain, "unrelated", &anchors, now()),
            CertStatus::NameMismatch
        );
        assert_eq!(
            verify_peer(&chain, "example.org", &anchors, now()),
            CertStatus::NameMismatch
        );
    }

    #[test]
    fn srv_id_for_another_service_does_not_match() {
        let ca = root_ca("Test Root");
        let anchors = anchors_of(&ca);
        let chain = [issue_der(
            &leaf_raw_san(
                "example.com",
                &[
                    raw_srv("_xmpp-client.example.com"),
                    raw_srv("_imap.example.com"),
                ],
            ),
            &ca,
        )];
        assert_eq!(
            verify_peer(&chain, "example.com", &anchors, now()),
            CertStatus::NameMismatch
        );
    }

    #[test]
    fn xmpp_addr_only_cert() {
        let ca = root_ca("Test Root");
        let anchors = anchors_of(&ca);
        let cert = issue_der(&leaf("unrelated", vec![xmpp_addr("example.com")]), &ca);
        let ids = identities(&cert).unwrap();
        assert_eq!(ids.xmpp_addrs, ["example.com"]);
        assert!(ids.dns.is_empty() && ids.srv.is_empty());
        let chain = [cert];
        assert_eq!(
            verify_peer(&chain, "example.com", &anchors, now()),
            CertStatus::Valid
        );
        assert_eq!(
            verify_peer(&chain, "sub.example.com", &anchors, now()),
            CertStatus::NameMismatch
        );
        assert_eq!(
            verify_peer(&chain, "unrelated", &anchors, now()),
            CertStatus::NameMismatch
        );
    }

    #[test]
    fn xmpp_addr_with_localpart_or_resource_is_not_a_server_identity() {
        let ca = root_ca("Test Root");
        let anchors = anchors_of(&ca);
        let chain = [issue_der(
            &leaf(
                "x",
                vec![xmpp_addr("user@example.com"), xmpp_addr("example.com/res")],
            ),
            &ca,
        )];
        assert_eq!(
            verify_peer(&chain, "example.com", &anchors, now()),
            CertStatus::NameMismatch
        );
    }

    #[test]
    fn xmpp_addr_with_u_labels_matches_a_labels() {
        let ca = root_ca("Test Root");
        let anchors = anchors_of(&ca);
        let chain = [issue_der(
            &leaf("x", vec![xmpp_addr("Bücher.example")]),
            &ca,
        )];
        assert_eq!(
            verify_peer(&chain, "xn--bcher-kva.example", &anchors, now()),
            CertStatus::Valid
        );
        assert_eq!(
            verify_peer(&chain, "bücher.example", &anchors, now()),
            CertStatus::Valid
        );
        assert_eq!(
            verify_peer(&chain, "bucher.example", &anchors, now()),
            CertStatus::NameMismatch
        );
    }

    #[test]
    fn cn_only_cert() {
        let ca = root_ca("Test Root");
        let anchors = anchors_of(&ca);
        let cert = issue_der(&leaf("Example.COM", Vec::new()), &ca);
        let ids = identities(&cert).unwrap();
        assert!(!ids.has_san_ids());
        assert_eq!(ids.common_names, ["Example.COM"]);
        let chain = [cert];
        assert_eq!(
            verify_peer(&chain, "example.com", &anchors, now()),
            CertStatus::Valid
        );
        assert_eq!(
            matched_identity(&ids, "example.com"),
            Some((IdKind::CnId, "Example.COM"))
        );
        assert_eq!(
            verify_peer(&chain, "other.com", &anchors, now()),
            CertStatus::NameMismatch
        );
    }

    #[test]
    fn cn_ignored_when_san_identifiers_present() {
        let ca = root_ca("Test Root");
        let anchors = anchors_of(&ca);
        let with_dns = [issue_der(&leaf("example.com", vec![dns("other.com")]), &ca)];
        assert_eq!(
            verify_peer(&with_dns, "example.com", &anchors, now()),
            CertStatus::NameMismatch
        );
        let with_xmpp = [issue_der(
            &leaf("example.com", vec![xmpp_addr("other.com")]),
            &ca,
        )];
        assert_eq!(
            verify_peer(&with_xmpp, "example.com", &anchors, now()),
            CertStatus::NameMismatch
        );
        let with_uri = [issue_der(
            &leaf_raw_san("example.com", &[raw_uri("xmpp:other.com")]),
            &ca,
        )];
        assert_eq!(
            verify_peer(&with_uri, "example.com", &anchors, now()),
            CertStatus::NameMismatch
        );
    }

    #[test]
    fn mixed_raw_san_is_extracted_in_full() {
        let ca = root_ca("Test Root");
        let cert = issue_der(
            &leaf_raw_san(
                "cn.example",
                &[
                    raw_dns("a.example"),
                    raw_srv("_xmpp-server.b.example"),
                    raw_other_name(OID_XMPP_ADDR, 0x0c, "c.example"),
                    raw_uri("xmpp:d.example"),
                    // Unknown otherName type and a non-string value are ignored.
                    raw_other_name(&[0x2a, 0x03], 0x0c, "ignored"),
                    tlv(
                        0xa0,
                        &[tlv(0x06, OID_XMPP_ADDR), tlv(0xa0, &tlv(0x02, &[1]))].concat(),
                    ),
                ],
            ),
            &ca,
        );
        let ids = identities(&cert).unwrap();
        assert_eq!(
            ids,
            Identities {
                dns: vec!["a.example".into()],
                srv: vec!["_xmpp-server.b.example".into()],
                xmpp_addrs: vec!["c.example".into()],
                uris: vec!["xmpp:d.example".into()],
                common_names: vec!["cn.example".into()],
            }
        );
        assert_eq!(
            ids.to_string(),
            "DNS:a.example, SRV:_xmpp-server.b.example, XmppAddr:c.example, \
             URI:xmpp:d.example, CN:cn.example"
        );
        assert_eq!(Identities::default().to_string(), "(none)");
        for d in ["a.example", "b.example", "c.example"] {
            assert!(matches(&ids, d), "{d}");
        }
        for d in ["d.example", "cn.example"] {
            assert!(!matches(&ids, d), "{d}");
        }
    }

    #[test]
    fn cert_for_another_domain() {
        let ca = root_ca("Test Root");
        let anchors = anchors_of(&ca);
        let chain = [issue_der(
            &leaf(
                "other.example",
                vec![dns("other.example"), xmpp_addr("other.example")],
            ),
            &ca,
        )];
        assert_eq!(
            verify_peer(&chain, "example.com", &anchors, now()),
            CertStatus::NameMismatch
        );
        assert_eq!(
            verify_peer(&chain, "other.example", &anchors, now()),
            CertStatus::Valid
        );
    }

    #[test]
    fn expired_and_not_yet_valid() {
        let ca = root_ca("Test Root");
        let anchors = anchors_of(&ca);
        let mut p = leaf("x", vec![dns("example.com")]);
        p.not_before = rcgen::date_time_ymd(2000, 1, 1);
        p.not_after = rcgen::date_time_ymd(2001, 1, 1);
        let expired = [issue_der(&p, &ca)];
        assert_eq!(
            verify_peer(&expired, "example.com", &anchors, now()),
            CertStatus::Untrusted(Untrusted::Expired)
        );
        // Untrusted wins over the name check.
        assert_eq!(
            verify_peer(&expired, "other.com", &anchors, now()),
            CertStatus::Untrusted(Untrusted::Expired)
        );
        // The same certificate at a time inside its validity is fine.
        let in_2000 = UnixTime::since_unix_epoch(std::time::Duration::from_secs(978_000_000));
        assert_eq!(
            verify_peer(&expired, "example.com", &anchors, in_2000),
            CertStatus::Valid
        );

        p.not_before = rcgen::date_time_ymd(2090, 1, 1);
        p.not_after = rcgen::date_time_ymd(2091, 1, 1);
        let future = [issue_der(&p, &ca)];
        assert_eq!(
            verify_peer(&future, "example.com", &anchors, now()),
            CertStatus::Untrusted(Untrusted::NotYetValid)
        );
    }

    #[test]
    fn self_signed_cert_is_untrusted() {
        let ca = root_ca("Test Root");
        let anchors = anchors_of(&ca);
        let key = KeyPair::generate().unwrap();
        let cert = leaf("example.com", vec![dns("example.com")])
            .self_signed(&key)
            .unwrap();
        let chain = [cert.der().clone()];
        assert_eq!(
            verify_peer(&chain, "example.com", &anchors, now()),
            CertStatus::Untrusted(Untrusted::UnknownIssuer)
        );
        // Still untrusted with no anchors at all.
        assert_eq!(
            verify_peer(&chain, "example.com", &TrustAnchors::empty(), now()),
            CertStatus::Untrusted(Untrusted::UnknownIssuer)
        );
        // Its identities are still readable for logging.
        assert!(matches(&identities(&chain[0]).unwrap(), "example.com"));
    }

    #[test]
    fn chain_with_intermediate() {
        let root = root_ca("Test Root");
        let inter = intermediate_ca("Test Intermediate", &root);
        let anchors = anchors_of(&root);
        let cert = issue_der(&leaf("x", vec![dns("example.com")]), &inter);
        let full = [cert.clone(), inter.der().clone()];
        assert_eq!(
            verify_peer(&full, "example.com", &anchors, now()),
            CertStatus::Valid
        );
        assert_eq!(
            verify_peer(&full, "other.com", &anchors, now()),
            CertStatus::NameMismatch
        );
        // Without the intermediate there is no path.
        assert_eq!(
            verify_peer(std::slice::from_ref(&cert), "example.com", &anchors, now()),
            CertStatus::Untrusted(Untrusted::UnknownIssuer)
        );
        // Anchored at another root there is no path either.
        let other = anchors_of(&root_ca("Other Root"));
        assert_eq!(
            verify_peer(&full, "example.com", &other, now()),
            CertStatus::Untrusted(Untrusted::UnknownIssuer)
        );
        // The intermediate itself as anchor works too.
        let inter_anchor = anchors_of(&inter);
        assert_eq!(
            verify_peer(&[cert], "example.com", &inter_anchor, now()),
            CertStatus::Valid
        );
    }

    #[test]
    fn forged_signature_is_untrusted() {
        let ca = root_ca("Test Root");
        // Same subject as the real CA, different key: the issuer name matches but the
        // signature does not verify.
        let impostor = root_ca("Test Root");
        let chain = [issue_der(&leaf("x", vec![dns("example.com")]), &impostor)];
        assert_eq!(
            verify_peer(&chain, "example.com", &anchors_of(&ca), now()),
            CertStatus::Untrusted(Untrusted::BadSignature)
        );
        // Flip a bit in the signature of a genuine certificate.
        let mut der = issue_der(&leaf("x", vec![dns("example.com")]), &ca).to_vec();
        let last = der.len() - 1;
        der[last] ^= 1;
        let status = verify_peer(
            &[CertificateDer::from(der)],
            "example.com",
            &anchors_of(&ca),
            now(),
        );
        assert!(
            matches!(
                status,
                CertStatus::Untrusted(Untrusted::UnknownIssuer | Untrusted::BadSignature)
            ),
            "{status:?}"
        );
    }

    #[test]
    fn extended_key_usage_policy() {
        let ca = root_ca("Test Root");
        let anchors = anchors_of(&ca);
        let with_eku = |ekus: Vec<ExtendedKeyUsagePurpose>| {
            let mut p = leaf("x", vec![dns("example.com")]);
            p.extended_key_usages = ekus;
            [issue_der(&p, &ca)]
        };
        use ExtendedKeyUsagePurpose as E;
        for ekus in [
            vec![E::ServerAuth],
            vec![E::ClientAuth],
            vec![E::ServerAuth, E::ClientAuth],
            vec![E::CodeSigning, E::ClientAuth],
            vec![],
        ] {
            assert_eq!(
                verify_peer(&with_eku(ekus.clone()), "example.com", &anchors, now()),
                CertStatus::Valid,
                "{ekus:?}"
            );
        }
        assert_eq!(
            verify_peer(
                &with_eku(vec![E::CodeSigning]),
                "example.com",
                &anchors,
                now()
            ),
            CertStatus::Untrusted(Untrusted::BadUsage)
        );
    }

    #[test]
    fn ca_certificate_as_end_entity_is_untrusted() {
        let root = root_ca("Test Root");
        let mut p = ca_params("example.com");
        p.subject_alt_names = vec![dns("example.com")];
        let chain = [issue_der(&p, &root)];
        assert_eq!(
            verify_peer(&chain, "example.com", &anchors_of(&root), now()),
            CertStatus::Untrusted(Untrusted::BadUsage)
        );
    }

    #[test]
    fn missing_and_malformed() {
        let anchors = anchors_of(&root_ca("Test Root"));
        assert_eq!(
            verify_peer(&[], "example.com", &anchors, now()),
            CertStatus::Missing
        );
        let garbage = [CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00])];
        assert_eq!(
            verify_peer(&garbage, "example.com", &anchors, now()),
            CertStatus::Untrusted(Untrusted::Malformed)
        );
        assert!(identities(&garbage[0]).is_err());
        assert!(identities(&CertificateDer::from(Vec::new())).is_err());
    }

    #[test]
    fn status_labels() {
        assert!(CertStatus::Valid.is_valid());
        assert!(!CertStatus::Missing.is_valid());
        assert_eq!(CertStatus::NameMismatch.to_string(), "name-mismatch");
        assert_eq!(
            CertStatus::Untrusted(Untrusted::Expired).to_string(),
            "untrusted: certificate expired"
        );
        assert_eq!(
            CertStatus::Untrusted(Untrusted::UnknownIssuer).as_str(),
            "untrusted"
        );
    }

    // --- trust anchors -------------------------------------------------------------------------

    #[test]
    fn trust_anchors_from_pem() {
        let a = root_ca("Root A");
        let b = root_ca("Root B");
        let pem = format!(
            "junk before\n{}{}-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            a.pem(),
            b.pem()
        );
        let anchors = TrustAnchors::from_pem_bytes(pem.as_bytes()).unwrap();
        assert_eq!(anchors.len(), 2);
        assert_eq!(anchors.subjects().len(), 2);
        let chain = [issue_der(&leaf("x", vec![dns("example.com")]), &b)];
        assert_eq!(
            verify_peer(&chain, "example.com", &anchors, now()),
            CertStatus::Valid
        );

        assert!(TrustAnchors::from_pem_bytes(b"").is_err());
        assert!(TrustAnchors::from_pem_bytes(b"no pem here").is_err());
        assert!(TrustAnchors::empty().is_empty());

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, a.pem()).unwrap();
        assert_eq!(TrustAnchors::from_pem_file(&path).unwrap().len(), 1);
        let err = TrustAnchors::from_pem_file(&dir.path().join("missing.pem")).unwrap_err();
        assert!(err.0.contains("missing.pem"), "{err}");
    }

    #[test]
    fn trust_anchors_from_system_bundle() {
        // Only meaningful where a system bundle exists (Debian CI images have one).
        if std::env::var_os("SSL_CERT_FILE").is_none()
            && !SYSTEM_CA_FILES.iter().any(|p| Path::new(p).exists())
        {
            return;
        }
        let anchors = TrustAnchors::from_system().unwrap();
        assert!(anchors.len() > 10, "{anchors:?}");
    }

    // --- matcher tables ------------------------------------------------------------------------

    #[test]
    fn dns_id_wildcard_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("example.com", "example.com", true),
            ("Example.COM", "example.com", true),
            ("example.com.", "example.com", true),
            ("example.com", "example.com.", true),
            ("example.com", "www.example.com", false),
            ("www.example.com", "example.com", false),
            ("example.co", "example.com", false),
            ("*.example.com", "a.example.com", true),
            ("*.EXAMPLE.com", "xyz.example.com", true),
            ("*.example.com", "xn--bcher-kva.example.com", true),
            ("*.example.com", "example.com", false),
            ("*.example.com", "a.b.example.com", false),
            ("*.example.com", ".example.com", false),
            ("*.example.com", "a.example.org", false),
            ("*.com", "example.com", false),
            ("*", "example", false),
            ("*.", "example.", false),
            ("f*.example.com", "foo.example.com", false),
            ("f*.example.com", "f.example.com", false),
            ("*o.example.com", "foo.example.com", false),
            ("xn--*.example.com", "xn--bcher-kva.example.com", false),
            ("a.*.example.com", "a.b.example.com", false),
            ("*.*.example.com", "a.b.example.com", false),
            ("**.example.com", "a.example.com", false),
            ("example.*", "example.com", false),
            ("*.example.com", "*.example.com", false),
            ("", "example.com", false),
            ("example.com", "", false),
            ("a..example.com", "a..example.com", false),
            ("bücher.example", "bücher.example", false),
        ];
        for &(presented, reference, expected) in cases {
            assert_eq!(
                dns_id_matches(presented, reference),
                expected,
                "{presented} vs {reference}"
            );
        }
    }

    #[test]
    fn srv_id_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("_xmpp-server.example.com", "example.com", true),
            ("_XMPP-Server.Example.com", "example.com", true),
            ("_xmpps-server.example.com", "example.com", true),
            ("_xmpp-server.*.example.com", "a.example.com", true),
            ("_xmpp-server.*.example.com", "example.com", false),
            ("_xmpp-client.example.com", "example.com", false),
            ("_xmpp-server.example.com", "other.com", false),
            ("_xmpp-server", "example.com", false),
            ("xmpp-server.example.com", "example.com", false),
            (
                "_xmpp-server.example.com",
                "_xmpp-server.example.com",
                false,
            ),
        ];
        for &(presented, reference, expected) in cases {
            assert_eq!(
                srv_id_matches(presented, reference),
                expected,
                "{presented} vs {reference}"
            );
        }
    }

    #[test]
    fn xmpp_addr_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("example.com", "example.com", true),
            ("EXAMPLE.com", "example.com", true),
            ("example.com.", "example.com", true),
            ("*.example.com", "a.example.com", false),
            ("user@example.com", "example.com", false),
            ("example.com/resource", "example.com", false),
            ("bücher.example", "xn--bcher-kva.example", true),
            ("BÜCHER.example", "xn--bcher-kva.example", true),
            ("sub.example.com", "example.com", false),
        ];
        for &(presented, reference, expected) in cases {
            assert_eq!(
                xmpp_addr_matches(presented, reference),
                expected,
                "{presented} vs {reference}"
            );
        }
    }

    #[test]
    fn ascii_domain_conversion() {
        assert_eq!(
            to_ascii_domain("Example.COM.").as_deref(),
            Some("example.com")
        );
        assert_eq!(
            to_ascii_domain("bücher.example").as_deref(),
            Some("xn--bcher-kva.example")
        );
        assert_eq!(
            to_ascii_domain("MÜNCHEN.de").as_deref(),
            Some("xn--mnchen-3ya.de")
        );
        assert_eq!(
            to_ascii_domain("例え.テスト").as_deref(),
            Some("xn--r8jz45g.xn--zckzah")
        );
        assert_eq!(to_ascii_domain(""), None);
        assert_eq!(to_ascii_domain("."), None);
    }

    #[test]
    fn punycode_rfc3492_samples() {
        // RFC 3492 §7.1 (A) Arabic (Egyptian), (B) Chinese (simplified), (L) 3<nen>B<gumi>...
        let arabic: String = [
            0x0644, 0x064A, 0x0647, 0x0645, 0x0627, 0x0628, 0x062A, 0x0643, 0x0644, 0x0645, 0x0648,
            0x0634, 0x0639, 0x0631, 0x0628, 0x064A, 0x061F,
        ]
        .iter()
        .map(|&c| char::from_u32(c).unwrap())
        .collect();
        assert_eq!(
            punycode_encode(&arabic).as_deref(),
            Some("egbpdaj6bu4bxfgehfvwxn")
        );
        assert_eq!(
            punycode_encode("他们为什么不说中文").as_deref(),
            Some("ihqwcrb4cv8a8dqg056pqjye")
        );
        assert_eq!(
            punycode_encode("3年B組金八先生").as_deref(),
            Some("3B-ww4c5e180e575a65lsy2b")
        );
        assert_eq!(punycode_encode("bücher").as_deref(), Some("bcher-kva"));
    }

    // --- real handshakes -----------------------------------------------------------------------

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    fn key_der(key: &KeyPair) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()))
    }

    fn server_config(
        version: &'static rustls::SupportedProtocolVersion,
        chain: Vec<CertificateDer<'static>>,
        key: &KeyPair,
    ) -> ServerConfig {
        let provider = provider();
        ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_client_cert_verifier(Arc::new(DeferredClientCertVerifier::new(&provider)))
            .with_single_cert(chain, key_der(key))
            .unwrap()
    }

    fn client_config(
        version: &'static rustls::SupportedProtocolVersion,
        client_cert: Option<(Vec<CertificateDer<'static>>, &KeyPair)>,
    ) -> ClientConfig {
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[version])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(DeferredServerCertVerifier::new(&provider)));
        match client_cert {
            Some((chain, key)) => builder.with_client_auth_cert(chain, key_der(key)).unwrap(),
            None => builder.with_no_client_auth(),
        }
    }

    /// Move bytes between the two ends until both finish the handshake (or one fails).
    fn handshake(
        client: &mut ClientConnection,
        server: &mut ServerConnection,
    ) -> Result<(), rustls::Error> {
        fn transfer(
            from: &mut impl std::ops::DerefMut<Target = rustls::ConnectionCommon<impl Sized>>,
            to: &mut impl std::ops::DerefMut<Target = rustls::ConnectionCommon<impl Sized>>,
        ) -> Result<bool, rustls::Error> {
            let mut buf = Vec::new();
            while from.wants_write() {
                from.write_tls(&mut buf).unwrap();
            }
            let moved = !buf.is_empty();
            let mut rd = &buf[..];
            while !rd.is_empty() {
                to.read_tls(&mut rd).unwrap();
                to.process_new_packets()?;
            }
            Ok(moved)
        }
        for _ in 0..32 {
            let a = transfer(client, server)?;
            let b = transfer(server, client)?;
            if !a && !b && !client.is_handshaking() && !server.is_handshaking() {
                return Ok(());
            }
        }
        panic!("handshake did not finish");
    }

    struct Pki {
        anchors: TrustAnchors,
        server_chain: Vec<CertificateDer<'static>>,
        server_key: KeyPair,
        client_chain: Vec<CertificateDer<'static>>,
        client_key: KeyPair,
    }

    /// Root → intermediate → `b.example` (the receiving server, serverAuth) and root →
    /// `a.example` (the initiating server, serverAuth only, as many CAs issue today).
    fn pki() -> Pki {
        let root = root_ca("Test Root");
        let inter = intermediate_ca("Test Intermediate", &root);
        let (server_cert, server_key) = issue(&leaf("b.example", vec![dns("b.example")]), &inter);
        let (client_cert, client_key) = issue(&leaf("a.example", vec![dns("a.example")]), &root);
        Pki {
            anchors: anchors_of(&root),
            server_chain: vec![server_cert, inter.der().clone()],
            server_key,
            client_chain: vec![client_cert],
            client_key,
        }
    }

    fn connect(
        version: &'static rustls::SupportedProtocolVersion,
        pki: &Pki,
        with_client_cert: bool,
    ) -> (ClientConnection, ServerConnection) {
        let server_cfg = server_config(version, pki.server_chain.clone(), &pki.server_key);
        let client_cert = with_client_cert.then(|| (pki.client_chain.clone(), &pki.client_key));
        let client_cfg = client_config(version, client_cert);
        let client = ClientConnection::new(
            Arc::new(client_cfg),
            ServerName::try_from("b.example").unwrap(),
        )
        .unwrap();
        let server = ServerConnection::new(Arc::new(server_cfg)).unwrap();
        (client, server)
    }

    #[test]
    fn handshake_with_client_certificate() {
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let pki = pki();
            let (mut client, mut server) = connect(version, &pki, true);
            handshake(&mut client, &mut server).unwrap();
            assert_eq!(client.protocol_version(), Some(version.version));

            // Outgoing side (we are the client): the receiving server's chain.
            let seen_by_client = client.peer_certificates().unwrap();
            assert_eq!(seen_by_client.len(), 2);
            assert_eq!(
                verify_peer(seen_by_client, "b.example", &pki.anchors, now()),
                CertStatus::Valid
            );
            assert_eq!(
                verify_peer(seen_by_client, "a.example", &pki.anchors, now()),
                CertStatus::NameMismatch
            );
            // Incoming side (we are the server): the initiating server's chain.
            let seen_by_server = server.peer_certificates().unwrap();
            assert_eq!(
                verify_peer(seen_by_server, "a.example", &pki.anchors, now()),
                CertStatus::Valid
            );
            assert_eq!(
                verify_peer(seen_by_server, "b.example", &pki.anchors, now()),
                CertStatus::NameMismatch
            );
            // Another trust store: the handshake succeeded anyway, the verdict is Untrusted.
            let other = anchors_of(&root_ca("Other Root"));
            assert_eq!(
                verify_peer(seen_by_server, "a.example", &other, now()),
                CertStatus::Untrusted(Untrusted::UnknownIssuer)
            );
        }
    }

    #[test]
    fn handshake_without_client_certificate() {
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let pki = pki();
            let (mut client, mut server) = connect(version, &pki, false);
            handshake(&mut client, &mut server).unwrap();
            let seen_by_server = server.peer_certificates().unwrap_or(&[]);
            assert_eq!(
                verify_peer(seen_by_server, "a.example", &pki.anchors, now()),
                CertStatus::Missing
            );
            assert_eq!(
                verify_peer(
                    client.peer_certificates().unwrap(),
                    "b.example",
                    &pki.anchors,
                    now()
                ),
                CertStatus::Valid
            );
        }
    }

    #[test]
    fn handshake_accepts_untrusted_self_signed_peers() {
        let key = KeyPair::generate().unwrap();
        let cert = leaf("b.example", vec![dns("b.example")])
            .self_signed(&key)
            .unwrap();
        let ckey = KeyPair::generate().unwrap();
        let ccert = leaf("a.example", vec![dns("a.example")])
            .self_signed(&ckey)
            .unwrap();
        let version = &rustls::version::TLS13;
        let server_cfg = server_config(version, vec![cert.der().clone()], &key);
        let client_cfg = client_config(version, Some((vec![ccert.der().clone()], &ckey)));
        let mut client = ClientConnection::new(
            Arc::new(client_cfg),
            ServerName::try_from("x.test").unwrap(),
        )
        .unwrap();
        let mut server = ServerConnection::new(Arc::new(server_cfg)).unwrap();
        handshake(&mut client, &mut server).unwrap();
        let anchors = TrustAnchors::empty();
        assert_eq!(
            verify_peer(
                server.peer_certificates().unwrap(),
                "a.example",
                &anchors,
                now()
            ),
            CertStatus::Untrusted(Untrusted::UnknownIssuer)
        );
        assert_eq!(
            verify_peer(
                client.peer_certificates().unwrap(),
                "b.example",
                &anchors,
                now()
            ),
            CertStatus::Untrusted(Untrusted::UnknownIssuer)
        );
    }

    /// A certificate presented with a key that is not its own: the handshake signature
    /// (CertificateVerify / ServerKeyExchange) must fail verification.
    fn mismatched(
        cert: CertificateDer<'static>,
        other_key: &KeyPair,
    ) -> rustls::sign::CertifiedKey {
        let signer = provider()
            .key_provider
            .load_private_key(key_der(other_key))
            .unwrap();
        rustls::sign::CertifiedKey::new(vec![cert], signer)
    }

    #[test]
    fn handshake_rejects_server_without_the_certificate_key() {
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let pki = pki();
            let intruder = KeyPair::generate().unwrap();
            let provider = provider();
            let server_cfg = ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&[version])
                .unwrap()
                .with_client_cert_verifier(Arc::new(DeferredClientCertVerifier::new(&provider)))
                .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(mismatched(
                    pki.server_chain[0].clone(),
                    &intruder,
                ))));
            let client_cfg = client_config(version, None);
            let mut client = ClientConnection::new(
                Arc::new(client_cfg),
                ServerName::try_from("b.example").unwrap(),
            )
            .unwrap();
            let mut server = ServerConnection::new(Arc::new(server_cfg)).unwrap();
            let err = handshake(&mut client, &mut server).unwrap_err();
            assert!(
                matches!(
                    err,
                    rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature)
                ),
                "{version:?}: {err:?}"
            );
        }
    }

    #[test]
    fn handshake_rejects_client_without_the_certificate_key() {
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let pki = pki();
            let intruder = KeyPair::generate().unwrap();
            let server_cfg = server_config(version, pki.server_chain.clone(), &pki.server_key);
            let provider = provider();
            let client_cfg = ClientConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&[version])
                .unwrap()
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(DeferredServerCertVerifier::new(
                    &provider,
                )))
                .with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(
                    mismatched(pki.client_chain[0].clone(), &intruder),
                )));
            let mut client = ClientConnection::new(
                Arc::new(client_cfg),
                ServerName::try_from("b.example").unwrap(),
            )
            .unwrap();
            let mut server = ServerConnection::new(Arc::new(server_cfg)).unwrap();
            let err = handshake(&mut client, &mut server).unwrap_err();
            assert!(
                matches!(
                    err,
                    rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature)
                ),
                "{version:?}: {err:?}"
            );
        }
    }

    #[test]
    fn verifier_flags() {
        let provider = provider();
        let v = DeferredClientCertVerifier::new(&provider);
        assert!(v.offer_client_auth());
        assert!(!v.client_auth_mandatory());
        assert!(v.root_hint_subjects().is_empty());
        assert!(!v.supported_verify_schemes().is_empty());
        let anchors = anchors_of(&root_ca("Hint Root"));
        let v = v.with_root_hints(&anchors);
        assert_eq!(v.root_hint_subjects().len(), 1);
        let s = DeferredServerCertVerifier::new(&provider);
        assert_eq!(s.supported_verify_schemes(), v.supported_verify_schemes());
    }
}
