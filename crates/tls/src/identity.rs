//! Cluster identity carried in an agent's client certificate.

use rustls_pki_types::CertificateDer;
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
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| Error::Certificate(format!("parsing certificate: {e}")))?;
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
