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
