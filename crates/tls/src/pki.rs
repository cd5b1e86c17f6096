//! A small certificate authority (rcgen) for drbridge: the hub's server certificate, agents'
//! client certificates carrying the cluster identity URI, and signing agents' CSRs.
//!
//! Keys are ECDSA P-256. Every certificate gets a random 16-byte serial number, so a revocation
//! list by serial can be added later.

use std::fmt;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::{ClusterName, Error, cluster_uri};

/// Validity of a CA made by [`Ca::generate`].
pub const DEFAULT_CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Certificates are back-dated by this much so a peer whose clock is slightly behind accepts them;
/// by a tenth of their validity at most, so that `notBefore` stays close to the time of issue
/// and an agent can tell from a short-lived certificate alone when it is time to renew.
const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// A CA certificate and its key.
pub struct Ca {
    cert_pem: String,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// A new self-signed CA valid for [`DEFAULT_CA_VALIDITY`].
    pub fn generate(common_name: &str) -> Result<Ca, Error> {
        Self::generate_with_validity(common_name, DEFAULT_CA_VALIDITY)
    }

    pub fn generate_with_validity(common_name: &str, validity: Duration) -> Result<Ca, Error> {
        let key = KeyPair::generate()?;
        let mut params = base_params(common_name, validity)?;
        // Path length 0: this CA signs leaves only.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key)?;
        Ok(Ca {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads an existing CA; fails if the certificate is not a CA or the key does not match it.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca, Error> {
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| Error::Certificate(format!("CA certificate PEM: {e}")))?;
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|e| Error::Certificate(format!("parsing CA certificate: {e}")))?;
        if !cert.is_ca() {
            return Err(Error::Certificate(
                "CA certificate lacks basicConstraints cA=true".into(),
            ));
        }
        let key = KeyPair::from_pem(key_pem)?;
        if cert.public_key().raw != rcgen::PublicKeyData::subject_public_key_info(&key) {
            return Err(Error::Certificate(
                "CA key does not match the CA certificate".into(),
            ));
        }
        let issuer = Issuer::from_ca_cert_der(&der, key)?;
        Ok(Ca {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            issuer,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The CA as an [`Issued`] pair, e.g. to [`Issued::write`] it.
    pub fn to_issued(&self) -> Issued {
        Issued {
            cert_pem: self.cert_pem.clone(),
            key_pem: self.key_pem.clone(),
        }
    }

    /// A server certificate (EKU serverAuth) for the given DNS names and IP addresses.
    pub fn issue_server(
        &self,
        dns_names: &[&str],
        ip_addrs: &[IpAddr],
        validity: Duration,
    ) -> Result<Issued, Error> {
        let cn = dns_names.first().copied().unwrap_or("drbridge-hub");
        let mut params = base_params(cn, validity)?;
        for name in dns_names {
            params
                .subject_alt_names
                .push(SanType::DnsName((*name).try_into()?));
        }
        params
            .subject_alt_names
            .extend(ip_addrs.iter().copied().map(SanType::IpAddress));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params)
    }

    /// An agent's client certificate (EKU clientAuth) carrying `spiffe://drbridge/cluster/<name>`.
    pub fn issue_client(&self, cluster: &ClusterName, validity: Duration) -> Result<Issued, Error> {
        self.issue(client_params(cluster, validity)?)
    }

    /// Signs a CSR for `cluster` and returns the certificate PEM. Only the CSR's public key
    /// is used (after checking the CSR's signature): subject, SANs and usages are ours, so a
    /// CSR cannot ask for another identity.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        cluster: &ClusterName,
        validity: Duration,
    ) -> Result<String, Error> {
        let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)?;
        csr.params = client_params(cluster, validity)?;
        Ok(csr.signed_by(&self.issuer)?.pem())
    }

    fn issue(&self, params: CertificateParams) -> Result<Issued, Error> {
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

/// Generates an agent's key and a CSR for `cluster` (CN = name, SAN URI = cluster identity).
/// Returns `(key_pem, csr_pem)`; the key never leaves the agent.
pub fn generate_key_and_csr(cluster: &ClusterName) -> Result<(String, String), Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name(cluster.as_str());
    params.subject_alt_names = vec![SanType::URI(cluster_uri(cluster).try_into()?)];
    let csr = params.serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.pem()?))
}

/// A certificate and its private key, PEM-encoded.
#[derive(Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Issued {
    /// Writes `<dir>/<stem>.crt` and `<dir>/<stem>.key` (mode 0600 on Unix), each through a
    /// temporary file and a rename so a reader never sees a half-written file. Creates `dir`.
    /// Returns the two paths.
    pub fn write(&self, dir: impl AsRef<Path>, stem: &str) -> Result<(PathBuf, PathBuf), Error> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_owned(),
            source,
        })?;
        let cert = dir.join(format!("{stem}.crt"));
        let key = dir.join(format!("{stem}.key"));
        write_atomic(&key, self.key_pem.as_bytes(), 0o600)?;
        write_atomic(&cert, self.cert_pem.as_bytes(), 0o644)?;
        Ok((cert, key))
    }

    /// The leaf certificate, DER-encoded.
    pub fn cert_der(&self) -> Result<CertificateDer<'static>, Error> {
        CertificateDer::from_pem_slice(self.cert_pem.as_bytes())
            .map_err(|e| Error::Certificate(format!("certificate PEM: {e}")))
    }
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// Writes `path` through a temporary file in the same directory, fsync and a rename, so a
/// reader sees the old or the new contents, never a mix; `mode` on Unix.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), Error> {
    let io_err = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{file_name}.tmp"));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let result = (|| {
        let mut file = options.open(&tmp)?;
        // `mode` applies only when the file is created; a stale temp file keeps its bits.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io_err)
}

fn client_params(cluster: &ClusterName, validity: Duration) -> Result<CertificateParams, Error> {
    let mut params = base_params(cluster.as_str(), validity)?;
    params.subject_alt_names = vec![SanType::URI(cluster_uri(cluster).try_into()?)];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    Ok(params)
}

fn base_params(cn: &str, validity: Duration) -> Result<CertificateParams, Error> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| Error::Certificate("system clock is before 1970".into()))?;
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name(cn);
    params.not_before = epoch + now.saturating_sub(CLOCK_SKEW.min(validity / 10));
    params.not_after = epoch + now + validity;
    params.serial_number = Some(random_serial());
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn common_name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

/// 16 random bytes, top bit clear so the DER INTEGER is positive and second-highest bit set so
/// it keeps its full length.
fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}
