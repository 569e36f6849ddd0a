//! Certificates generated per test run: a CA, a server certificate it signs, and an unrelated
//! CA that must not be trusted.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

/// PEM files written into a folder.
pub struct TlsFiles {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub other_ca: PathBuf,
}

/// Writes a CA, a server certificate valid for `server_names`, and an unrelated CA into `dir`.
pub fn generate(dir: &Path, server_names: &[&str]) -> TlsFiles {
    let ca = new_ca("Ally Test CA");
    let other = new_ca("Unrelated CA");

    let server_key = KeyPair::generate().expect("server key");
    let names: Vec<String> = server_names.iter().map(|n| n.to_string()).collect();
    let server = CertificateParams::new(names)
        .expect("server params")
        .signed_by(&server_key, &ca)
        .expect("sign server certificate");

    let files = TlsFiles {
        ca: dir.join("ca.pem"),
        server_cert: dir.join("server-cert.pem"),
        server_key: dir.join("server-key.pem"),
        other_ca: dir.join("other-ca.pem"),
    };
    std::fs::write(&files.ca, ca.pem()).expect("write CA");
    std::fs::write(&files.other_ca, other.pem()).expect("write other CA");
    std::fs::write(&files.server_cert, server.pem()).expect("write server certificate");
    std::fs::write(&files.server_key, server_key.serialize_pem()).expect("write server key");
    files
}

fn new_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA")
}
