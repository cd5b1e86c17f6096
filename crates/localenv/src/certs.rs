//! Certificates for one local control plane: its CA, the API server's serving
//! certificate, client certificates for the admin, the controller-manager and
//! the scheduler, and the service-account signing key.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::Error;

/// PEM files of one cluster, all under its `pki/` directory.
#[derive(Clone, Debug)]
pub struct ClusterPki {
    pub dir: PathBuf,
}

impl ClusterPki {
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
    pub fn serving_cert(&self) -> PathBuf {
        self.dir.join("apiserver.crt")
    }
    pub fn serving_key(&self) -> PathBuf {
        self.dir.join("apiserver.key")
    }
    pub fn sa_key(&self) -> PathBuf {
        self.dir.join("service-account.key")
    }
    pub fn sa_pub(&self) -> PathBuf {
        self.dir.join("service-account.pub")
    }
    pub fn client_cert(&self, who: &str) -> PathBuf {
        self.dir.join(format!("{who}.crt"))
    }
    pub fn client_key(&self, who: &str) -> PathBuf {
        self.dir.join(format!("{who}.key"))
    }

    /// Creates every file, or keeps them when they already exist (a restarted
    /// cluster must keep its identity so existing kubeconfigs and tokens work).
    pub fn ensure(dir: &Path) -> Result<Self, Error> {
        let pki = ClusterPki {
            dir: dir.to_path_buf(),
        };
        // The service-account key is written last: when it exists, everything does.
        if pki.sa_pub().exists() {
            return Ok(pki);
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;

        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.distinguished_name = dn("drbridge-localenv-ca", None);
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key)?;
        write(&pki.ca_cert(), &ca_cert.pem())?;
        let issuer = Issuer::new(ca, &ca_key);

        let serving_key = KeyPair::generate()?;
        let mut serving = CertificateParams::new(vec![
            "localhost".to_string(),
            "kubernetes".to_string(),
            "kubernetes.default".to_string(),
            "kubernetes.default.svc".to_string(),
            "kubernetes.default.svc.cluster.local".to_string(),
        ])?;
        serving
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        serving
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))));
        serving.distinguished_name = dn("kube-apiserver", None);
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = serving.signed_by(&serving_key, &issuer)?;
        write(&pki.serving_cert(), &cert.pem())?;
        write(&pki.serving_key(), &serving_key.serialize_pem())?;

        for (who, cn, org) in [
            ("admin", "kubernetes-admin", Some("system:masters")),
            ("controller-manager", "system:kube-controller-manager", None),
            ("scheduler", "system:kube-scheduler", None),
        ] {
            let key = KeyPair::generate()?;
            let mut p = CertificateParams::new(Vec::<String>::new())?;
            p.distinguished_name = dn(cn, org);
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            let cert = p.signed_by(&key, &issuer)?;
            write(&pki.client_cert(who), &cert.pem())?;
            write(&pki.client_key(who), &key.serialize_pem())?;
        }

        // ECDSA P-256 keys are accepted for service-account token signing.
        let sa = KeyPair::generate()?;
        write(&pki.sa_key(), &sa.serialize_pem())?;
        // The API server reads verification keys as PUBLIC KEY blocks.
        write(&pki.sa_pub(), &sa.public_key_pem())?;
        Ok(pki)
    }
}

fn dn(cn: &str, org: Option<&str>) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    d.push(DnType::CommonName, cn);
    if let Some(o) = org {
        d.push(DnType::OrganizationName, o);
    }
    d
}

fn write(path: &Path, contents: &str) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    f.write_all(contents.as_bytes())
        .map_err(|e| Error::io(path, e))
}

/// A kubeconfig with embedded credentials, as `kubectl` and kube-rs read it.
pub fn kubeconfig(
    cluster: &str,
    server: &str,
    pki: &ClusterPki,
    who: &str,
) -> Result<String, Error> {
    use base64::Engine as _;
    let b64 = |p: PathBuf| -> Result<String, Error> {
        let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
    };
    Ok(format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {cluster}
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: {cluster}-{who}
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: {cluster}
  context:
    cluster: {cluster}
    user: {cluster}-{who}
current-context: {cluster}
",
        ca = b64(pki.ca_cert())?,
        cert = b64(pki.client_cert(who))?,
        key = b64(pki.client_key(who))?,
    ))
}

/// Writes a file readable only by its owner.
pub(crate) fn write_private(path: &Path, contents: &str) -> Result<(), Error> {
    write(path, contents)
}
