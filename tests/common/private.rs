//! Issue 17 checks on a phone's files: walks directories (not following symlinks) and lists
//! every path that lets group or others in, so a test can assert there is none.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Every path at or below each of `roots` (absent roots are skipped) with its permission
/// bits; symlinks are listed but not followed.
pub fn walk(roots: &[PathBuf]) -> Vec<(PathBuf, u32)> {
    let mut out = Vec::new();
    let mut todo: Vec<PathBuf> = roots.iter().filter(|r| r.exists()).cloned().collect();
    while let Some(p) = todo.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        out.push((p.clone(), meta.mode() & 0o7777));
        if meta.is_dir() {
            let entries = std::fs::read_dir(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            todo.extend(entries.map(|e| e.expect("directory entry").path()));
        }
    }
    out.sort();
    out
}

/// The paths below `roots` that group or others may read, write or enter (symlinks aside:
/// their own mode means nothing), as `MODE PATH` lines.
pub fn offenders(roots: &[PathBuf]) -> Vec<String> {
    walk(roots)
        .into_iter()
        .filter(|(p, mode)| {
            mode & 0o077 != 0 && !std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
        })
        .map(|(p, mode)| format!("{mode:04o} {}", p.display()))
        .collect()
}

/// Panics, listing each offender, if anything below `roots` is open to group or others;
/// `what` says when (for the failure message). Returns every path checked.
#[track_caller]
pub fn assert_private(roots: &[PathBuf], what: &str) -> Vec<PathBuf> {
    let bad = offenders(roots);
    let all: Vec<PathBuf> = walk(roots).into_iter().map(|(p, _)| p).collect();
    assert!(
        bad.is_empty(),
        "{what}: {} path(s) open to group or others:\n{}\n(checked {} paths under {roots:?})",
        bad.len(),
        bad.join("\n"),
        all.len()
    );
    all
}

/// The mode bits of `path` (not following a symlink).
pub fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .mode()
        & 0o7777
}
