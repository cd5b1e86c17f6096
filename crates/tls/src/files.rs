//! PEM files on disk and what is parsed out of them.

use std::path::{Path, PathBuf};

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::Error;

/// Where a component's TLS material lives (PEM files). `cert` may hold a chain (leaf first);
/// `ca` may hold several CA certificates (e.g. old and new during a CA rotation).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TlsPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl TlsPaths {
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>, ca: impl Into<PathBuf>) -> Self {
        Self {
            cert: cert.into(),
            key: key.into(),
            ca: ca.into(),
        }
    }

    /// `<dir>/<stem>.crt`, `<dir>/<stem>.key` and `<dir>/<ca_stem>.crt`, the names
    /// [`crate::pki::Issued::write`] uses.
    pub fn in_dir(dir: impl AsRef<Path>, stem: &str, ca_stem: &str) -> Self {
        let dir = dir.as_ref();
        Self {
            cert: dir.join(format!("{stem}.crt")),
            key: dir.join(format!("{stem}.key")),
            ca: dir.join(format!("{ca_stem}.crt")),
        }
    }

    /// Reads the three files' raw bytes.
    pub(crate) fn read_blocking(&self) -> Result<RawFiles, Error> {
        Ok(RawFiles {
            cert: read(&self.cert)?,
            key: read(&self.key)?,
            ca: read(&self.ca)?,
        })
    }

    pub(crate) async fn read(&self) -> Result<RawFiles, Error> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.read_blocking())
            .await
            .map_err(|e| Error::Io {
                path: self.cert.clone(),
                source: std::io::Error::other(e),
            })?
    }
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })
}

/// The files' bytes, kept to notice when they change.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct RawFiles {
    pub(crate) cert: Vec<u8>,
    pub(crate) key: Vec<u8>,
    pub(crate) ca: Vec<u8>,
}

/// Parsed TLS material.
pub(crate) struct Material {
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
    pub(crate) roots: RootCertStore,
}

impl RawFiles {
    pub(crate) fn parse(&self, paths: &TlsPaths) -> Result<Material, Error> {
        let chain = parse_certs(&self.cert, &paths.cert)?;
        let key = PrivateKeyDer::from_pem_slice(&self.key).map_err(|source| Error::Pem {
            path: paths.key.clone(),
            source,
        })?;
        let roots = parse_roots(&self.ca, &paths.ca)?;
        Ok(Material { chain, key, roots })
    }
}

/// Reads a PEM file of CA certificates into a root store.
pub(crate) fn read_roots(path: &Path) -> Result<RootCertStore, Error> {
    parse_roots(&read(path)?, path)
}

fn parse_roots(pem: &[u8], path: &Path) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    for ca in parse_certs(pem, path)? {
        roots.add(ca).map_err(|source| Error::Rustls {
            context: format!("adding CA certificate from {}", path.display()),
            source,
        })?;
    }
    Ok(roots)
}

fn parse_certs(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| Error::Pem {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(Error::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}
