//! Programs beside the clusters can be suspended (a data centre going dark) and resumed
//! the same way they were first started; the state file names only what runs.

use std::path::Path;
use std::time::Duration;

use drbridge_localenv::process::pid_alive;
use drbridge_localenv::{Env, EnvState, Error, eventually};

const WAIT: Duration = Duration::from_secs(30);

fn runs(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("runs"))
        .unwrap_or_default()
        .lines()
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_suspended_program_resumes_as_it_was_started() {
    let mut env = Env::start_for_test(&["hub"]).await.expect("environment");
    let work = tempfile::tempdir().unwrap();
    let script = format!(
        "echo \"$GREETING\" >> {}/runs; exec sleep 600",
        work.path().display()
    );
    let pid = env
        .spawn(
            "operator-dr1",
            Path::new("sh"),
            &["-c".to_string(), script],
            &[("GREETING", "hello".to_string())],
        )
        .unwrap();
    eventually("the first run", WAIT, || async {
        (runs(work.path()) == 1).then_some(())
    })
    .await;

    env.suspend_process("operator-dr1").unwrap();
    assert!(!pid_alive(pid), "a suspended program is stopped");
    assert!(!env.process_names().contains(&"operator-dr1".to_string()));
    let state = EnvState::load(env.dir()).unwrap();
    assert!(
        state.extra.iter().all(|p| p.name != "operator-dr1"),
        "the state file names only what runs: {state:?}"
    );

    let again = env.resume_process("operator-dr1").unwrap();
    assert_ne!(again, pid);
    assert!(pid_alive(again));
    eventually("the second run", WAIT, || async {
        (runs(work.path()) == 2).then_some(())
    })
    .await;
    let text = std::fs::read_to_string(work.path().join("runs")).unwrap();
    assert_eq!(
        text, "hello\nhello\n",
        "same program, arguments and environment"
    );
    let state = EnvState::load(env.dir()).unwrap();
    assert!(
        state
            .extra
            .iter()
            .any(|p| p.name == "operator-dr1" && p.pid == again)
    );

    // Only a suspended program can be resumed, and only once.
    assert!(matches!(
        env.resume_process("operator-dr1"),
        Err(Error::NotSuspended { .. })
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_program_gets_no_shutdown_and_resumes() {
    let mut env = Env::start_for_test(&["hub"]).await.expect("environment");
    let work = tempfile::tempdir().unwrap();
    // It ignores SIGTERM: only a kill stops it promptly.
    let script = format!(
        "trap '' TERM; echo run >> {}/runs; while :; do sleep 1; done",
        work.path().display()
    );
    let pid = env
        .spawn(
            "agent-dr1",
            Path::new("sh"),
            &["-c".to_string(), script],
            &[],
        )
        .unwrap();
    eventually("the first run", WAIT, || async {
        (runs(work.path()) == 1).then_some(())
    })
    .await;
    let killing = std::time::Instant::now();
    env.kill_process("agent-dr1").unwrap();
    assert!(!pid_alive(pid), "a killed program is gone");
    assert!(
        killing.elapsed() < Duration::from_secs(5),
        "no shutdown grace for a crash: {:?}",
        killing.elapsed()
    );
    assert_eq!(env.suspended_names(), vec!["agent-dr1".to_string()]);
    let again = env.resume_process("agent-dr1").unwrap();
    assert!(pid_alive(again));
    eventually("the second run", WAIT, || async {
        (runs(work.path()) == 2).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crashed_api_server_comes_back_with_its_data() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, PostParams};
    let mut env = Env::start_for_test(&["hub"]).await.expect("environment");
    let cms: Api<ConfigMap> = Api::namespaced(env.client("hub").await.unwrap(), "default");
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("kept".into());
    let uid = cms
        .create(&PostParams::default(), &cm)
        .await
        .unwrap()
        .metadata
        .uid;
    let before = env.state().clusters[0].pids.clone();
    let pid = env.crash_cluster_process("hub", "kube-apiserver").unwrap();
    assert!(
        !before.values().any(|p| *p == pid),
        "a new kube-apiserver process"
    );
    assert!(matches!(
        env.crash_cluster_process("hub", "no-such"),
        Err(Error::NoSuchProcess { .. })
    ));
    // Same data and port: a fresh client finds the object as it was.
    let got = eventually("the API server answers again", WAIT, || async {
        let cms: Api<ConfigMap> = Api::namespaced(env.client("hub").await.ok()?, "default");
        cms.get("kept").await.ok()
    })
    .await;
    assert_eq!(got.metadata.uid, uid);
}
