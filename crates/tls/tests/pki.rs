//! PKI: CA loading, CSR signing, identity parsing, files on disk.

mod common;

use common::*;
use drbridge_tls::pki::{self, Ca};
use drbridge_tls::{Error, ServerTls, TlsPaths, cluster_from_cert};

#[tokio::test]
async fn csr_flow_gives_a_working_client_cert_with_the_hub_chosen_identity() {
    let pki = Pki::new();
    let hub = Hub::start(ServerTls::new(pki.hub()).unwrap()).await;

    // The agent asks for "east"; the hub decides it is "west": the CSR's SANs do not count.
    let (key_pem, csr_pem) = pki::generate_key_and_csr(&name("east")).unwrap();
    let cert_pem = pki.ca.sign_csr(&csr_pem, &name("west"), DAY).unwrap();
    let issued = pki::Issued { cert_pem, key_pem };
    assert_eq!(
        cluster_from_cert(&issued.cert_der().unwrap()).unwrap(),
        name("west")
    );
    let paths = pki.write(&issued, "joined");
    assert_eq!(hub.who_am_i(&paths).await.unwrap(), "west");

    assert!(matches!(
        pki.ca.sign_csr("not a csr", &name("west"), DAY),
        Err(Error::Pki(_))
    ));
    hub.stop().await;
}

#[tokio::test]
async fn ca_loaded_from_pem_issues_certs_the_original_trusts() {
    let pki = Pki::new();
    let hub = Hub::start(ServerTls::new(pki.hub()).unwrap()).await;

    let loaded = Ca::from_pem(pki.ca.cert_pem(), pki.ca.key_pem()).unwrap();
    let issued = loaded.issue_client(&name("east"), DAY).unwrap();
    assert_eq!(
        hub.who_am_i(&pki.write(&issued, "east")).await.unwrap(),
        "east"
    );

    let other = Ca::generate("other").unwrap();
    assert!(Ca::from_pem(pki.ca.cert_pem(), other.key_pem()).is_err());
    let leaf = pki.ca.issue_client(&name("east"), DAY).unwrap();
    assert!(Ca::from_pem(&leaf.cert_pem, &leaf.key_pem).is_err());
    hub.stop().await;
}

#[test]
fn cluster_identity_is_read_from_exactly_one_uri() {
    let ca = Ca::generate("ca").unwrap();
    let client = ca.issue_client(&name("east-1"), DAY).unwrap();
    assert_eq!(
        cluster_from_cert(&client.cert_der().unwrap()).unwrap(),
        name("east-1")
    );

    let server = ca.issue_server(&[HUB_NAME], &[], DAY).unwrap();
    assert!(matches!(
        cluster_from_cert(&server.cert_der().unwrap()),
        Err(Error::NoClusterIdentity)
    ));

    // Our issuing code always writes exactly one valid URI, so build odd ones with rcgen.
    let with_sans = |uris: &[&str]| {
        let mut params = rcgen::CertificateParams::default();
        params.subject_alt_names = uris
            .iter()
            .map(|u| rcgen::SanType::URI((*u).try_into().unwrap()))
            .collect();
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    };
    assert!(matches!(
        cluster_from_cert(&with_sans(&[
            "spiffe://drbridge/cluster/a",
            "spiffe://drbridge/cluster/b"
        ])),
        Err(Error::AmbiguousClusterIdentity(2))
    ));
    assert!(matches!(
        cluster_from_cert(&with_sans(&["spiffe://drbridge/cluster/Not_Valid"])),
        Err(Error::InvalidClusterName { .. })
    ));
    assert!(matches!(
        cluster_from_cert(&with_sans(&["spiffe://drbridge/cluster/a/b"])),
        Err(Error::InvalidClusterName { .. })
    ));
    assert!(matches!(
        cluster_from_cert(&with_sans(&["spiffe://other/cluster/a"])),
        Err(Error::NoClusterIdentity)
    ));
    // Other URIs beside the one cluster URI are fine.
    assert_eq!(
        cluster_from_cert(&with_sans(&[
            "spiffe://other/x",
            "spiffe://drbridge/cluster/a"
        ]))
        .unwrap(),
        name("a")
    );
    assert!(cluster_from_cert(&b"garbage".to_vec().into()).is_err());
}

#[test]
fn certificates_have_random_serials_and_requested_validity() {
    let ca = Ca::generate("ca").unwrap();
    let a = ca
        .issue_client(&name("east"), DAY)
        .unwrap()
        .cert_der()
        .unwrap();
    let b = ca
        .issue_client(&name("east"), DAY)
        .unwrap()
        .cert_der()
        .unwrap();
    let (_, a) = x509_parser::parse_x509_certificate(&a).unwrap();
    let (_, b) = x509_parser::parse_x509_certificate(&b).unwrap();
    assert_eq!(a.raw_serial().len(), 16);
    assert_ne!(a.raw_serial(), b.raw_serial());
    let lifetime = a.validity().not_after.timestamp() - a.validity().not_before.timestamp();
    // One day plus the back-dating for clock skew.
    assert_eq!(lifetime, 24 * 3600 + 5 * 60);

    // Short-lived certificates are back-dated by a tenth of their validity at most, so
    // notBefore still tells when they were issued.
    let short = ca
        .issue_client(&name("east"), std::time::Duration::from_secs(60))
        .unwrap();
    let info = drbridge_tls::cert_info_pem(short.cert_pem.as_bytes()).unwrap();
    let span = info.not_after.duration_since(info.not_before).unwrap();
    assert_eq!(span.as_secs(), 66);
}

#[cfg(unix)]
#[test]
fn issued_write_makes_the_key_private() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate("ca").unwrap();
    let issued = ca.issue_client(&name("east"), DAY).unwrap();
    let (cert, key) = issued.write(dir.path().join("sub"), "agent").unwrap();
    assert_eq!(cert, dir.path().join("sub/agent.crt"));
    assert_eq!(key, dir.path().join("sub/agent.key"));
    assert_eq!(std::fs::read_to_string(&cert).unwrap(), issued.cert_pem);
    assert_eq!(std::fs::read_to_string(&key).unwrap(), issued.key_pem);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&key), 0o600);
    // Overwriting keeps it private and leaves no temporary files behind.
    ca.issue_client(&name("east"), DAY)
        .unwrap()
        .write(dir.path().join("sub"), "agent")
        .unwrap();
    assert_eq!(mode(&key), 0o600);
    assert_eq!(
        std::fs::read_dir(dir.path().join("sub")).unwrap().count(),
        2
    );

    let paths = TlsPaths::in_dir(dir.path().join("sub"), "agent", "ca");
    assert_eq!(paths.cert, cert);
    assert_eq!(paths.ca, dir.path().join("sub/ca.crt"));
}
