//! A test certificate authority (rcgen) for the s2s tests: its PEM file (for `--s2s-ca`),
//! leaves for server and client use, and data directories holding a leaf as
//! `tls/cert.pem` (leaf then CA: the harness's clients trust what that file holds) and
//! `tls/key.pem`.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A certificate chain (leaf, then CA) and its key.
pub struct Leaf {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// A test CA whose PEM file xmppd trusts with `--s2s-ca`.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// The CA's certificate, PEM.
    pub pem: PathBuf,
    _dir: tempfile::TempDir,
}

impl Ca {
    /// A fresh CA named `common_name`.
    pub fn new(common_name: &str) -> Ca {
        let dir = tempfile::tempdir().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pem = dir.path().join("ca.pem");
        std::fs::write(&pem, issuer.pem()).unwrap();
        Ca {
            issuer,
            pem,
            _dir: dir,
        }
    }

    pub fn pem_arg(&self) -> String {
        self.pem.to_str().unwrap().to_string()
    }

    /// A certificate with the common name `cn` and the DNS-IDs `names`, server and client
    /// use, and its key.
    fn issue(&self, cn: &str, names: Vec<String>) -> (rcgen::Certificate, KeyPair) {
        let mut p = CertificateParams::new(names).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (cert, key)
    }

    /// A certificate for `domain` (DNS-ID), server and client use.
    pub fn leaf(&self, domain: &str) -> Leaf {
        let (cert, key) = self.issue(domain, vec![domain.to_string()]);
        Leaf {
            chain: vec![cert.der().clone(), self.issuer.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }

    /// A data directory of its own holding a certificate for `domain` with the DNS-IDs
    /// `names`: (the directory, `tls/cert.pem` (leaf then CA), `tls/key.pem`).
    pub fn data_dir(
        &self,
        domain: &str,
        names: Vec<String>,
    ) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let (cert, key) = self.issue(domain, names);
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        std::fs::create_dir_all(&tls).unwrap();
        let cert_path = tls.join("cert.pem");
        let key_path = tls.join("key.pem");
        std::fs::write(&cert_path, format!("{}{}", cert.pem(), self.issuer.pem())).unwrap();
        write_private(&key_path, key.serialize_pem().as_bytes());
        (dir, cert_path, key_path)
    }
}

/// Writes `data` to `path`, readable by the owner only.
pub fn write_private(path: &Path, data: &[u8]) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    f.write_all(data).unwrap();
}
