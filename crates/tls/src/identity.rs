//! Cluster identity carried in an agent's client certificate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::{ClusterName, Error};

/// Prefix of the SAN URI that names a managed cluster in an agent's client certificate.
pub const CLUSTER_URI_PREFIX: &str = "spiffe://drbridge/cluster/";

/// The SAN URI that identifies `cluster`: `spiffe://drbridge/cluster/<name>`.
pub fn cluster_uri(cluster: &ClusterName) -> String {
    format!("{CLUSTER_URI_PREFIX}{cluster}")
}

/// Reads the cluster identity from a (leaf) certificate.
///
/// Exactly one SAN URI must start with [`CLUSTER_URI_PREFIX`], and the rest of it must be a
/// valid [`ClusterName`]. Other SANs (DNS names, other URIs) are ignored. This does not verify
/// the certificate: callers use it on certificates rustls has already verified.
pub fn cluster_from_cert(der: &CertificateDer<'_>) -> Result<ClusterName, Error> {
    cluster_of(&parse(der)?)
}

fn parse<'a>(der: &'a CertificateDer<'_>) -> Result<X509Certificate<'a>, Error> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| Error::Certificate(format!("parsing certificate: {e}")))?;
    Ok(cert)
}

fn cluster_of(cert: &X509Certificate<'_>) -> Result<ClusterName, Error> {
    let san = cert
        .subject_alternative_name()
        .map_err(|e| Error::Certificate(format!("parsing subjectAltName: {e}")))?;
    let uris: Vec<&str> = san
        .iter()
        .flat_map(|san| san.value.general_names.iter())
        .filter_map(|name| match name {
            GeneralName::URI(uri) => uri.strip_prefix(CLUSTER_URI_PREFIX),
            _ => None,
        })
        .collect();
    match uris.as_slice() {
        [] => Err(Error::NoClusterIdentity),
        [name] => ClusterName::new(*name),
        many => Err(Error::AmbiguousClusterIdentity(many.len())),
    }
}

/// What the hub authorises on besides the name: which certificate it is (serial, so single
/// certificates can be revoked) and until when it is valid (so a stream never outlives it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    pub cluster: ClusterName,
    /// The serial number as lowercase hex of its DER content bytes (no separators).
    pub serial: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

/// Reads the cluster identity, serial and validity of a (leaf) certificate. Like
/// [`cluster_from_cert`], this does not verify the certificate.
pub fn cert_info(der: &CertificateDer<'_>) -> Result<CertInfo, Error> {
    let cert = parse(der)?;
    let validity = cert.validity();
    Ok(CertInfo {
        cluster: cluster_of(&cert)?,
        serial: serial_hex(cert.raw_serial()),
        not_before: system_time(validity.not_before.timestamp()),
        not_after: system_time(validity.not_after.timestamp()),
    })
}

/// [`cert_info`] of the first certificate in a PEM text (the leaf of a chain).
pub fn cert_info_pem(pem: &[u8]) -> Result<CertInfo, Error> {
    let der = CertificateDer::from_pem_slice(pem)
        .map_err(|e| Error::Certificate(format!("certificate PEM: {e}")))?;
    cert_info(&der)
}

/// Lowercase hex of a serial's bytes.
pub fn serial_hex(raw: &[u8]) -> String {
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

fn system_time(unix_seconds: i64) -> SystemTime {
    if unix_seconds >= 0 {
        UNIX_EPOCH + Duration::from_secs(unix_seconds as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(unix_seconds.unsigned_abs())
    }
}
