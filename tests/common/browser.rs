//! What the browser tests (tests/console.rs, tests/console_auth.rs) need to find: the repo,
//! Debian's Chromium and a Node with playwright-core. A missing one fails the test,
//! naming what installs it; it never skips.

use std::path::{Path, PathBuf};

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Debian's Chromium (`$WECHAT_QR_CHROMIUM` to use another).
pub fn chromium() -> PathBuf {
    let path = std::env::var_os("WECHAT_QR_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        path.exists(),
        "{} not found: run ./scripts/test (scripts/setup-clients installs Debian's chromium)",
        path.display()
    );
    path
}

/// The machine's Node, with `playwright-core` in `node_modules/`.
pub fn node_with_playwright() -> PathBuf {
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|output| output.status.success()),
        "node not found: install Node.js 20, then run ./scripts/test"
    );
    let playwright = repo().join("node_modules/playwright-core");
    assert!(
        playwright.exists(),
        "{} not found: run ./scripts/test, which runs npm ci",
        playwright.display()
    );
    PathBuf::from("node")
}
