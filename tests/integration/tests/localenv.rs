//! The local environment starts real, independent control planes and stops
//! them again.

use std::time::Duration;

use drbridge_integration_tests::{eventually, init_logging};
use drbridge_localenv::{Env, process::pid_alive};
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};

fn ns(name: &str) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_clusters_are_real_and_independent() {
    init_logging();
    let mut env = Env::start_for_test(&["hub", "dr1", "dr2"])
        .await
        .expect("environment starts");
    assert_eq!(env.cluster_names(), ["hub", "dr1", "dr2"]);

    // A namespace made on dr1 exists only there.
    let dr1 = env.client("dr1").await.unwrap();
    let dr2 = env.client("dr2").await.unwrap();
    Api::<Namespace>::all(dr1.clone())
        .create(&PostParams::default(), &ns("only-on-dr1"))
        .await
        .unwrap();
    assert!(
        Api::<Namespace>::all(dr2.clone())
            .get_opt("only-on-dr1")
            .await
            .unwrap()
            .is_none()
    );

    // The controller-manager runs: namespaces get their default ServiceAccount,
    // and deleting a namespace empties and removes it.
    let sas: Api<ServiceAccount> = Api::namespaced(dr1.clone(), "only-on-dr1");
    eventually(
        "the default ServiceAccount",
        Duration::from_secs(30),
        || async { sas.get_opt("default").await.ok().flatten() },
    )
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(dr1.clone(), "only-on-dr1");
    cms.create(
        &PostParams::default(),
        &ConfigMap {
            metadata: ObjectMeta {
                name: Some("c".into()),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await
    .unwrap();
    Api::<Namespace>::all(dr1.clone())
        .delete("only-on-dr1", &DeleteParams::default())
        .await
        .unwrap();
    let nss = Api::<Namespace>::all(dr1.clone());
    eventually("namespace deletion", Duration::from_secs(30), || async {
        nss.get_opt("only-on-dr1")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;

    // ServiceAccount tokens are issued and accepted (the charts' RBAC is tested with them).
    let token = sas_token(&dr1, "default", "default").await;
    let server = env.server("dr1").unwrap();
    let mut cfg = kube::Config::new(server.parse().unwrap());
    cfg.root_cert = Some(vec![pem_der(
        &std::fs::read_to_string(env.dir().join("dr1/pki/ca.crt")).unwrap(),
    )]);
    cfg.auth_info.token = Some(token.into());
    let as_sa = kube::Client::try_from(cfg).unwrap();
    let err = Api::<Namespace>::all(as_sa)
        .list(&Default::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 403),
        "RBAC applies to tokens: {err}"
    );

    // A stopped cluster keeps its data and comes back on the same address.
    env.stop_cluster("dr2").unwrap();
    assert!(
        Api::<Namespace>::all(dr2.clone())
            .list(&Default::default())
            .await
            .is_err()
    );
    Api::<Namespace>::all(env.client("dr1").await.unwrap())
        .get("default")
        .await
        .unwrap();
    // A restart gets the time a first start gets.
    env.start_cluster("dr2", drbridge_localenv::READY_TIMEOUT)
        .await
        .unwrap();
    Api::<Namespace>::all(env.client("dr2").await.unwrap())
        .get("kube-system")
        .await
        .unwrap();

    // Dropping the environment stops every process.
    let pids: Vec<u32> = env.state().all_pids().into_iter().map(|(_, p)| p).collect();
    assert_eq!(pids.len(), 9);
    drop(env);
    for pid in pids {
        assert!(!pid_alive(pid), "process {pid} outlived its environment");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn parallel_environments_do_not_collide() {
    init_logging();
    let (a, b) = tokio::join!(Env::start_for_test(&["one"]), Env::start_for_test(&["one"]));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(a.server("one").unwrap(), b.server("one").unwrap());
    assert_ne!(a.dir(), b.dir());
    let ca = a.client("one").await.unwrap();
    Api::<Namespace>::all(ca)
        .create(&PostParams::default(), &ns("in-a"))
        .await
        .unwrap();
    let cb = b.client("one").await.unwrap();
    assert!(
        Api::<Namespace>::all(cb)
            .get_opt("in-a")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_clear_error() {
    let err = Env::start_for_test(&["Not_A_Name"]).await.unwrap_err();
    assert!(err.to_string().contains("invalid cluster name"), "{err}");
}

async fn sas_token(client: &kube::Client, ns: &str, name: &str) -> String {
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let tr = sas
        .create_token_request(name, &PostParams::default(), &TokenRequest::default())
        .await
        .unwrap();
    tr.status.unwrap().token.expect("a token")
}

fn pem_der(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}
