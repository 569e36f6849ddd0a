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

/// PEM files for mutual TLS: a server CA with a server certificate, a client CA with a client
/// certificate, and a client certificate from an unrelated CA.
pub struct MtlsFiles {
    pub server: TlsFiles,
    pub client_ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub stranger_cert: PathBuf,
    pub stranger_key: PathBuf,
}

/// Writes the files of [`MtlsFiles`] into `dir`, with a server certificate for `server_names`.
pub fn generate_mtls(dir: &Path, server_names: &[&str]) -> MtlsFiles {
    let server = generate(dir, server_names);
    let client_ca = new_ca("Ally Test Client CA");
    let stranger_ca = new_ca("Stranger CA");
    let files = MtlsFiles {
        server,
        client_ca: dir.join("client-ca.pem"),
        client_cert: dir.join("client-cert.pem"),
        client_key: dir.join("client-key.pem"),
        stranger_cert: dir.join("stranger-cert.pem"),
        stranger_key: dir.join("stranger-key.pem"),
    };
    std::fs::write(&files.client_ca, client_ca.pem()).expect("write client CA");
    write_client_cert(&client_ca, &files.client_cert, &files.client_key);
    write_client_cert(&stranger_ca, &files.stranger_cert, &files.stranger_key);
    files
}

fn write_client_cert(issuer: &CertifiedIssuer<'static, KeyPair>, cert: &Path, key: &Path) {
    let key_pair = KeyPair::generate().expect("client key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ally-test-client");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let certificate = params
        .signed_by(&key_pair, issuer)
        .expect("sign client certificate");
    std::fs::write(cert, certificate.pem()).expect("write client certificate");
    std::fs::write(key, key_pair.serialize_pem()).expect("write client key");
}
