//! SIGTERM ends `shutdown_signal`. Its own test binary, because the handler stays installed
//! for the life of the process.
#![cfg(unix)]

use std::time::Duration;

#[tokio::test]
async fn sigterm_resolves_shutdown_signal() {
    let signal = drbridge_runtime::shutdown_signal();
    tokio::pin!(signal);
    // Poll once so the handlers are installed before the signal is sent.
    tokio::select! {
        biased;
        () = &mut signal => panic!("resolved without a signal"),
        () = std::future::ready(()) => {}
    }
    let status = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    tokio::time::timeout(Duration::from_secs(30), signal)
        .await
        .expect("SIGTERM did not resolve shutdown_signal");
}
