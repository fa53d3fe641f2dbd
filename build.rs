//! Link options of the release binary that lower its memory (docs/decisions.md, "Memory: the
//! binary's layout"):
//! - `--symbol-ordering-file=link/symbol-order.txt`: the functions a phone runs (start, idle, a
//!   call with audio and recording, the TUI; written by `link/symbol-order.sh`) placed together
//!   at the start of `.text`, so the pages it touches are few instead of spread over the whole
//!   binary (idle RSS 9.7 → 6.2 MiB when measured). Only with LLD, which rustc uses by default
//!   on x86_64-unknown-linux-gnu since 1.90, and only when no other linker is configured.
//! - `-z pack-relative-relocs` (DT_RELR, glibc ≥ 2.36): the half a megabyte of relative
//!   relocations the loader reads at start shrinks to a few kilobytes.
//!
//! Neither changes what the program does; a symbol missing from the list only loses its place.

use std::env;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=link/symbol-order.txt");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let var = |k: &str| env::var(k).unwrap_or_default();
    if var("PROFILE") != "release"
        || var("TARGET") != "x86_64-unknown-linux-gnu"
        || !var("RUSTC_LINKER").is_empty()
    {
        return;
    }
    // Another linker chosen through flags: leave the link alone.
    let flags = var("CARGO_ENCODED_RUSTFLAGS");
    if ["linker", "link-self-contained", "fuse-ld", "link-arg"]
        .iter()
        .any(|f| flags.contains(f))
    {
        return;
    }
    if !rustc_links_with_lld() {
        return;
    }
    let order = format!("{}/link/symbol-order.txt", var("CARGO_MANIFEST_DIR"));
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    if std::path::Path::new(&order).is_file() {
        println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={order}");
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}

/// Whether this rustc links x86_64-unknown-linux-gnu with its own LLD by default (1.90 on).
fn rustc_links_with_lld() -> bool {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let Ok(out) = Command::new(rustc).arg("-vV").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(release) = text.lines().find_map(|l| l.strip_prefix("release: ")) else {
        return false;
    };
    let mut parts = release.split(['.', '-']);
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor) >= (1, 90)
}
