//! Records the locked versions of the engines so every report names what it measured.

use std::{env, fs, path::Path};

fn locked_version(lock: &str, name: &str) -> String {
    let tag = format!("name = \"{name}\"\nversion = \"");
    lock.find(&tag)
        .and_then(|at| {
            let rest = &lock[at + tag.len()..];
            rest.find('"').map(|end| rest[..end].to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

fn main() {
    let lock_path =
        Path::new(&env::var("CARGO_MANIFEST_DIR").expect("set by cargo")).join("Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock_path.display());
    let lock = fs::read_to_string(&lock_path).unwrap_or_default();
    for name in ["redb", "fjall", "lsm-tree", "okaywal"] {
        let var = format!("{}_VERSION", name.replace('-', "_").to_uppercase());
        println!("cargo:rustc-env={var}={}", locked_version(&lock, name));
    }
}
