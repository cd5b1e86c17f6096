//! End-to-end mTLS over loopback: tonic + `incoming` on the hub side, `connect_channel` or raw
//! rustls on the agent side, certificates from `pki` per test.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use drbridge_tls::pki::Ca;
use drbridge_tls::rustls::{self, ClientConfig, RootCertStore};
use drbridge_tls::rustls_pki_types::pem::PemObject;
use drbridge_tls::rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use drbridge_tls::{MtlsConnector, ServerTls, TlsPaths};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

#[tokio::test]
async fn handler_sees_the_cluster_from_the_client_cert() {
    let pki = Pki::new();
    let hub = Hub::start(ServerTls::new(pki.hub()).unwrap()).await;

    assert_eq!(hub.who_am_i(&pki.agent("east")).await.unwrap(), "east");
    assert_eq!(hub.who_am_i(&pki.agent("west-2")).await.unwrap(), "west-2");
    // The hub cert also carries 127.0.0.1, so an IP server name works too.
    assert_eq!(
        hub.who_am_i_as("127.0.0.1", &pki.agent("east"))
            .await
            .unwrap(),
        "east"
    );
    hub.stop().await;
}

#[tokio::test]
async fn client_cert_from_another_ca_is_refused() {
    let pki = Pki::new();
    let hub = Hub::start(ServerTls::new(pki.hub()).unwrap()).await;

    // Trusts the right CA for the hub, but its own cert comes from another CA.
    let other = Ca::generate("other CA").unwrap();
    let issued = other.issue_client(&name("east"), DAY).unwrap();
    let paths = pki.write(&issued, "intruder");
    let err = hub.who_am_i(&paths).await.unwrap_err();
    assert!(!err.is_empty());

    // The hub keeps serving.
    assert_eq!(hub.who_am_i(&pki.agent("east")).await.unwrap(), "east");
    hub.stop().await;
}

#[tokio::test]
async fn server_cert_not_matching_server_name_is_refused_by_the_client() {
    let pki = Pki::new();
    let hub = Hub::start(ServerTls::new(pki.hub()).unwrap()).await;
    let agent = pki.agent("east");

    let err = hub
        .who_am_i_as("not-the-hub.drbridge.test", &agent)
        .await
        .unwrap_err();
    assert!(err.contains("not valid for name"), "{err}");

    // A hub cert from a CA the agent does not trust is refused too.
    let other = Ca::generate("other CA").unwrap();
    let rogue = other.issue_server(&[HUB_NAME], &[], DAY).unwrap();
    let rogue_paths = {
        let dir = tempfile::tempdir().unwrap();
        rogue.write(dir.path(), "hub").unwrap();
        std::fs::write(dir.path().join("ca.crt"), pki.ca.cert_pem()).unwrap();
        (TlsPaths::in_dir(dir.path(), "hub", "ca"), dir)
    };
    let rogue_hub = Hub::start(ServerTls::new(rogue_paths.0.clone()).unwrap()).await;
    let err = rogue_hub.who_am_i(&agent).await.unwrap_err();
    assert!(err.contains("UnknownIssuer"), "{err}");

    hub.stop().await;
    rogue_hub.stop().await;
}

#[tokio::test]
async fn tls12_only_client_is_refused() {
    let pki = Pki::new();
    let hub = Hub::start(ServerTls::new(pki.hub()).unwrap()).await;
    let agent = pki.agent("east");

    let config = client_config(&agent, &[&rustls::version::TLS12]);
    let tcp = TcpStream::connect(hub.addr).await.unwrap();
    let err = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(HUB_NAME).unwrap(), tcp)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("ProtocolVersion"),
        "unexpected error: {err}"
    );

    // The same credentials over TLS 1.3 work, and the hub still serves.
    let config = client_config(&agent, &[&rustls::version::TLS13]);
    let tcp = TcpStream::connect(hub.addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(HUB_NAME).unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(hub.who_am_i(&agent).await.unwrap(), "east");
    hub.stop().await;
}

#[tokio::test]
async fn client_cert_without_cluster_uri_is_refused() {
    let pki = Pki::new();
    let (addr, mut peers, task) = raw_incoming(ServerTls::new(pki.hub()).unwrap()).await;
    let hub = Hub::start(ServerTls::new(pki.hub()).unwrap()).await;

    // Valid chain and clientAuth usage, but only a DNS SAN.
    let paths = pki.write(
        &custom_client_cert(&pki.ca, |params| {
            params.subject_alt_names = vec![rcgen::SanType::DnsName("east".try_into().unwrap())];
        }),
        "no-uri",
    );
    assert!(hub.who_am_i(&paths).await.is_err());
    // Two cluster URIs are as bad as none.
    let two = pki.write(
        &custom_client_cert(&pki.ca, |params| {
            params.subject_alt_names = vec![
                rcgen::SanType::URI("spiffe://drbridge/cluster/east".try_into().unwrap()),
                rcgen::SanType::URI("spiffe://drbridge/cluster/west".try_into().unwrap()),
            ];
        }),
        "two-uris",
    );
    assert!(hub.who_am_i(&two).await.is_err());

    // At the TLS level the agent sees the hub's alert on its first read (TLS 1.3 verifies the
    // client certificate after the client has finished its side of the handshake).
    for paths in [&paths, &two] {
        let mut tls = MtlsConnector::new(paths.clone(), HUB_NAME)
            .unwrap()
            .connect(&format!("https://{addr}").parse().unwrap())
            .await
            .unwrap();
        let mut buf = [0u8; 1];
        let err = tls.read(&mut buf).await.unwrap_err();
        assert!(err.to_string().contains("CertificateUnknown"), "{err}");
    }
    // ... and the stream of connections goes on: the next good client comes out of it.
    MtlsConnector::new(pki.agent("west"), HUB_NAME)
        .unwrap()
        .connect(&format!("https://{addr}").parse().unwrap())
        .await
        .unwrap();
    let peer = tokio::time::timeout(DEADLINE, peers.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(peer.cluster.as_str(), "west");

    assert_eq!(hub.who_am_i(&pki.agent("east")).await.unwrap(), "east");
    hub.stop().await;
    task.abort();
}

#[tokio::test]
async fn rotated_server_cert_is_used_by_the_next_connection() {
    let pki = Pki::new();
    let hub_paths = pki.hub();
    let first = std::fs::read(&hub_paths.cert).unwrap();
    let hub = Hub::start(ServerTls::new(hub_paths.clone()).unwrap()).await;
    let agent = pki.agent("east");
    let uri = hub.endpoint().parse().unwrap();
    let connector = MtlsConnector::new(agent.clone(), HUB_NAME).unwrap();

    let served = |tls: &tokio_rustls::client::TlsStream<TcpStream>| {
        tls.get_ref().1.peer_certificates().unwrap()[0].clone()
    };
    let tls = connector.connect(&uri).await.unwrap();
    assert_eq!(served(&tls), pem_cert(&first));

    // Rotate in place, as cert-manager would.
    let rotated = pki.hub_cert();
    pki.write(&rotated, "hub");
    let tls2 = connector.connect(&uri).await.unwrap();
    assert_eq!(served(&tls2), rotated.cert_der().unwrap());
    assert_ne!(served(&tls2), pem_cert(&first));
    assert_eq!(hub.who_am_i(&agent).await.unwrap(), "east");

    // A half-done rotation (new cert, old key) keeps the last good config.
    let next = pki.hub_cert();
    std::fs::write(&hub_paths.cert, &next.cert_pem).unwrap();
    let tls3 = connector.connect(&uri).await.unwrap();
    assert_eq!(served(&tls3), rotated.cert_der().unwrap());
    std::fs::write(&hub_paths.key, &next.key_pem).unwrap();
    let tls4 = connector.connect(&uri).await.unwrap();
    assert_eq!(served(&tls4), next.cert_der().unwrap());

    drop((tls, tls2, tls3, tls4));
    hub.stop().await;
}

#[tokio::test]
async fn rotated_client_cert_is_used_by_the_next_connection() {
    let pki = Pki::new();
    let (addr, mut peers, task) = raw_incoming(ServerTls::new(pki.hub()).unwrap()).await;
    let uri = format!("https://{addr}").parse().unwrap();
    let paths = pki.agent("east");
    let connector = MtlsConnector::new(paths.clone(), HUB_NAME).unwrap();

    let _a = connector.connect(&uri).await.unwrap();
    let peer = tokio::time::timeout(DEADLINE, peers.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(peer.cluster.as_str(), "east");

    // Overwrite the same files with a cert for another cluster: the same connector picks it up.
    pki.ca
        .issue_client(&name("west"), DAY)
        .unwrap()
        .write(pki.path(), "east")
        .unwrap();
    let _b = connector.connect(&uri).await.unwrap();
    let peer = tokio::time::timeout(DEADLINE, peers.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(peer.cluster.as_str(), "west");
    task.abort();
}

#[tokio::test]
async fn hung_tcp_client_does_not_block_a_good_one() {
    let pki = Pki::new();
    // A long timeout, so only concurrency (not the timeout) lets the good client through.
    let tls = ServerTls::new(pki.hub())
        .unwrap()
        .with_handshake_timeout(Duration::from_secs(3600));
    let hub = Hub::start(tls).await;

    // One connection that says nothing, one that stops in the middle of a ClientHello.
    let _silent = TcpStream::connect(hub.addr).await.unwrap();
    let mut partial = TcpStream::connect(hub.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut partial, &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();

    let answer = tokio::time::timeout(DEADLINE, hub.who_am_i(&pki.agent("east")))
        .await
        .expect("a hung client blocked the good one");
    assert_eq!(answer.unwrap(), "east");
    hub.stop().await;
}

#[tokio::test]
async fn handshake_timeout_drops_a_silent_client() {
    let pki = Pki::new();
    let tls = ServerTls::new(pki.hub())
        .unwrap()
        .with_handshake_timeout(Duration::from_millis(200));
    let hub = Hub::start(tls).await;

    let mut silent = TcpStream::connect(hub.addr).await.unwrap();
    let mut buf = [0u8; 16];
    // The hub closes the connection: EOF (or a reset), well before the deadline.
    let read = tokio::time::timeout(DEADLINE, silent.read(&mut buf))
        .await
        .expect("silent client was not dropped");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");

    assert_eq!(hub.who_am_i(&pki.agent("east")).await.unwrap(), "east");
    hub.stop().await;
}

#[tokio::test]
async fn connect_channel_reports_bad_input() {
    let pki = Pki::new();
    let agent = pki.agent("east");
    let opts = opts();
    let err = drbridge_tls::connect_channel("http://127.0.0.1:1", HUB_NAME, &agent, opts.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(err, drbridge_tls::Error::InvalidEndpoint { .. }),
        "{err}"
    );
    let err =
        drbridge_tls::connect_channel("https://127.0.0.1:1", "not a name!", &agent, opts.clone())
            .await
            .unwrap_err();
    assert!(
        matches!(err, drbridge_tls::Error::InvalidServerName { .. }),
        "{err}"
    );
    let missing = TlsPaths::new(pki.path().join("nope.crt"), &agent.key, &agent.ca);
    let err =
        drbridge_tls::connect_channel("https://127.0.0.1:1", HUB_NAME, &missing, opts.clone())
            .await
            .unwrap_err();
    assert!(matches!(err, drbridge_tls::Error::Io { .. }), "{err}");
    assert!(ServerTls::new(missing).is_err());
    // Lazy channels do not dial until used.
    drbridge_tls::lazy_channel("https://127.0.0.1:1", HUB_NAME, &agent, opts).unwrap();
}

fn pem_cert(pem: &[u8]) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem).unwrap()
}

/// A client config with the agent's credentials, limited to `versions`.
fn client_config(
    paths: &TlsPaths,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(&paths.ca).unwrap() {
        roots.add(ca.unwrap()).unwrap();
    }
    let chain = CertificateDer::pem_file_iter(&paths.cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&paths.key).unwrap();
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    config
}

/// A clientAuth certificate from `ca` whose parameters `edit` adjusts.
fn custom_client_cert(
    ca: &Ca,
    edit: impl FnOnce(&mut rcgen::CertificateParams),
) -> drbridge_tls::pki::Issued {
    let issuer = rcgen::Issuer::from_ca_cert_pem(
        ca.cert_pem(),
        rcgen::KeyPair::from_pem(ca.key_pem()).unwrap(),
    )
    .unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2100, 1, 1);
    edit(&mut params);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    drbridge_tls::pki::Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

#[tokio::test]
async fn refused_clients_are_logged_with_reason_and_peer_address() {
    // current_thread runtime: the handshake tasks run on this thread and see this subscriber.
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || LineWriter(tx.clone()))
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let pki = Pki::new();
    let hub = Hub::start(ServerTls::new(pki.hub()).unwrap()).await;
    let other = Ca::generate("other CA").unwrap();
    let intruder = pki.write(&other.issue_client(&name("east"), DAY).unwrap(), "intruder");
    let tls = MtlsConnector::new(intruder, HUB_NAME)
        .unwrap()
        .connect(&hub.endpoint().parse().unwrap())
        .await
        .unwrap();
    let peer = tls.get_ref().0.local_addr().unwrap().to_string();

    let line = tokio::time::timeout(DEADLINE, async {
        loop {
            let line = lines.recv().await.unwrap();
            if line.contains(&peer) {
                return line;
            }
        }
    })
    .await
    .expect("no log line for the refused client");
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("TLS handshake failed"), "{line}");
    assert!(line.contains("UnknownIssuer"), "{line}");
    hub.stop().await;
}

struct LineWriter(tokio::sync::mpsc::UnboundedSender<String>);

impl std::io::Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = self.0.send(String::from_utf8_lossy(buf).into_owned());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn peer_identity_carries_the_serial_and_expiry_of_the_client_cert() {
    let pki = Pki::new();
    let (addr, mut peers, task) = raw_incoming(ServerTls::new(pki.hub()).unwrap()).await;
    let uri = format!("https://{addr}").parse().unwrap();
    let issued = pki.ca.issue_client(&name("east"), DAY).unwrap();
    let info = drbridge_tls::cert_info_pem(issued.cert_pem.as_bytes()).unwrap();
    assert_eq!(info.cluster.as_str(), "east");
    assert_eq!(info.serial.len(), 32, "16-byte serial: {}", info.serial);
    let paths = pki.write(&issued, "east");
    let _conn = MtlsConnector::new(paths, HUB_NAME)
        .unwrap()
        .connect(&uri)
        .await
        .unwrap();
    let peer = tokio::time::timeout(DEADLINE, peers.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(peer.serial, info.serial);
    assert_eq!(peer.not_after, info.not_after);
    let left = peer
        .not_after
        .duration_since(std::time::SystemTime::now())
        .unwrap();
    assert!(
        left > DAY - Duration::from_secs(60) && left <= DAY,
        "{left:?}"
    );
    task.abort();
}

/// A server-only listener (the hub's join endpoint) serves clients without a certificate,
/// and they still verify the server.
#[tokio::test]
async fn server_only_tls_needs_no_client_cert_but_the_client_verifies_the_server() {
    use drbridge_tls::{connect_channel_without_client_cert, incoming_server_only};
    use tonic::transport::Server;

    let pki = Pki::new();
    let tls = ServerTls::server_only(pki.hub()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(
        Server::builder()
            .add_service(WhoAmI)
            .serve_with_incoming(incoming_server_only(listener, tls)),
    );
    let endpoint = format!("https://{addr}");
    let ca = pki.path().join("ca.crt");
    let channel = connect_channel_without_client_cert(&endpoint, HUB_NAME, &ca, opts())
        .await
        .unwrap();
    // The call reaches the handler, which finds no cluster identity on such a connection.
    let err = who_am_i(channel).await.unwrap_err();
    assert!(err.contains("Unauthenticated"), "{err}");

    // A client trusting another CA refuses the server.
    let other = Pki::new();
    let err = connect_channel_without_client_cert(
        &endpoint,
        HUB_NAME,
        &other.path().join("ca.crt"),
        opts(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err}");

    // And the mutual-TLS listener refuses a client without a certificate.
    let hub = Hub::start(ServerTls::new(pki.hub()).unwrap()).await;
    let result = async {
        let channel =
            connect_channel_without_client_cert(&hub.endpoint(), HUB_NAME, &ca, opts()).await?;
        Ok::<_, drbridge_tls::Error>(who_am_i(channel).await)
    }
    .await;
    assert!(!matches!(result, Ok(Ok(_))), "{result:?}");
    hub.stop().await;
    server.abort();
}
