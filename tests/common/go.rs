//! The Go examples, built as their doc says (`examples/go/build`, offline against
//! Debian's Go gRPC sources), for the tests that run them as a user would.

use std::{path::Path, time::Duration};

/// Builds `examples/go/PACKAGE` into `out`; a failed build fails the test with its output.
pub async fn build_example(package: &str, out: &Path) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let built = tokio::time::timeout(
        Duration::from_secs(600),
        tokio::process::Command::new(repo.join("examples/go/build"))
            .arg(out)
            .arg(package)
            .current_dir(repo)
            .output(),
    )
    .await
    .expect("the Go example builds within 10 minutes")
    .expect("examples/go/build runs (it needs go: ./scripts/setup-clients installs it)");
    assert!(
        built.status.success(),
        "examples/go/build failed (./scripts/setup-clients installs what it needs): {}{}",
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );
}
