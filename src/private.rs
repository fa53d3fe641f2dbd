//! Files only the agent can read. Jump hosts are multi-user, and the phone's files hold
//! customers (the history, its journals, the log, the shared-phonebook copy), their voices (the
//! recordings) and credentials (the configuration): every file the phone creates is mode 0600
//! and every directory 0700 whatever the umask, and existing ones are tightened at start, each
//! with a warning saying which. The process umask is 0077 too (for files libraries create);
//! the programs the phone starts for the agent get the agent's own umask back.

use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// The mode of every file the phone creates.
pub const FILE_MODE: u32 = 0o600;
/// The mode of every directory the phone creates.
pub const DIR_MODE: u32 = 0o700;
/// The permission bits that let other users in (group and others).
const OPEN_BITS: u32 = 0o077;

/// Like `create_dir_all`: creates `path` and its missing parents, each mode 0700 whatever the
/// umask. Existing directories are left as they are (see [`tighten`]).
pub fn create_dir(path: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut at = Some(path);
    while let Some(p) = at {
        if p.as_os_str().is_empty() || p.is_dir() {
            break;
        }
        missing.push(p);
        at = p.parent();
    }
    for dir in missing.into_iter().rev() {
        match fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
            // The mode given to mkdir is masked by the umask: set it for real.
            Ok(()) => fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))?,
            // Another process made it meanwhile: it is not ours to change.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Opens `path` for writing (appending with `append`, else truncating), creating it mode 0600
/// whatever the umask. An existing file keeps its mode (see [`tighten`]).
pub fn create_file(path: &Path, append: bool) -> io::Result<File> {
    let mut options = OpenOptions::new();
    if append {
        options.append(true);
    } else {
        options.write(true).truncate(true);
    }
    let mut new = options.clone();
    match new.create_new(true).mode(FILE_MODE).open(path) {
        Ok(file) => {
            // The mode given to open is masked by the umask: set it for real.
            file.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
            Ok(file)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => options.open(path),
        Err(e) => Err(e),
    }
}

/// Creates `path` empty, mode 0600 whatever the umask, unless it exists (then nothing is
/// opened: see `history::open_db` for why that matters to a database).
pub fn create_new_file(path: &Path) -> io::Result<()> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
    {
        Ok(file) => file.set_permissions(fs::Permissions::from_mode(FILE_MODE)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Writes `bytes` to a new file `path` (mode 0600), replacing an existing one.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    create_file(path, false)?.write_all(bytes)
}

/// What to do with a path of mode `mode` owned by `uid`, when we run as `euid`.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Nobody else can get in.
    Private,
    /// Ours: chmod to this mode.
    Chmod(u32),
    /// Open to others, but another user's: report, do not touch.
    NotOurs,
}

fn verdict(mode: u32, uid: u32, euid: u32) -> Verdict {
    if mode & OPEN_BITS == 0 {
        Verdict::Private
    } else if uid != euid {
        Verdict::NotOurs
    } else {
        // Only the owner's bits stay: 0644 -> 0600, 0755 -> 0700 (and no set-id bits).
        Verdict::Chmod(mode & 0o700)
    }
}

fn euid() -> u32 {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

/// If `path` (a symlink is followed: it is the path as the phone uses it) lets group or
/// others in, makes it private (files 0600, directories 0700: only the owner's bits stay) and
/// returns the warning naming the path and the old and new modes. A path that belongs to
/// another user is not changed: the warning says so. `None` when it is private or absent.
pub fn tighten(path: &Path) -> Option<String> {
    let meta = fs::metadata(path).ok()?;
    tighten_as(path, &meta)
}

fn tighten_as(path: &Path, meta: &Metadata) -> Option<String> {
    let mode = meta.mode() & 0o7777;
    let what = if meta.is_dir() { "directory" } else { "file" };
    match verdict(mode, meta.uid(), euid()) {
        Verdict::Private => None,
        Verdict::NotOurs => Some(format!(
            "{what} {} is open to other users (mode {mode:04o}) but belongs to uid {}, not to \
             this phone: not changed",
            path.display(),
            meta.uid()
        )),
        Verdict::Chmod(new) => Some(match fs::set_permissions(path, fs::Permissions::from_mode(new)) {
            Ok(()) => format!(
                "{what} {} was open to other users: mode {mode:04o} -> {new:04o}",
                path.display()
            ),
            Err(e) => format!(
                "{what} {} is open to other users (mode {mode:04o}) and cannot be made \
                 private: {e}",
                path.display()
            ),
        }),
    }
}

/// [`tighten`] for `root` and everything below it, one warning per path changed or left
/// open. Symlinks below the root are not followed (nor changed: their own mode means
/// nothing); the root is followed like [`tighten`] does.
pub fn tighten_tree(root: &Path) -> Vec<String> {
    let mut warnings = Vec::new();
    let Ok(meta) = fs::metadata(root) else {
        return warnings;
    };
    warnings.extend(tighten_as(root, &meta));
    if !meta.is_dir() {
        return warnings;
    }
    let mut dirs: Vec<PathBuf> = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                warnings.push(format!("cannot check the files in {}: {e}", dir.display()));
                continue;
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            // Not followed: a link's target is wherever it points, not the phone's file.
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.file_type().is_symlink() {
                continue;
            }
            warnings.extend(tighten_as(&path, &meta));
            if meta.is_dir() {
                dirs.push(path);
            }
        }
    }
    warnings
}

/// The umask the phone was started with; `NOT_SET` until [`restrict_umask`].
static AGENT_UMASK: AtomicU32 = AtomicU32::new(NOT_SET);
const NOT_SET: u32 = u32::MAX;

/// Sets the process umask to 0077, so files that libraries create (and any the phone forgets)
/// are private too; the old umask is kept for [`AgentUmask`]. Call it before any thread
/// starts (the umask is the whole process's).
pub fn restrict_umask() {
    // SAFETY: umask cannot fail and touches no memory.
    let old = unsafe { libc::umask(0o077) };
    let _ = AGENT_UMASK.compare_exchange(NOT_SET, old, Ordering::SeqCst, Ordering::SeqCst);
}

/// The agent's umask, once [`restrict_umask`] has replaced it.
pub fn agent_umask() -> Option<u32> {
    let m = AGENT_UMASK.load(Ordering::SeqCst);
    (m != NOT_SET).then_some(m)
}

/// Programs the phone starts for the agent (CTI commands, the browser, the password command)
/// run with the agent's umask, not the phone's 0077: what they create (a CRM's export, a
/// browser profile, a download) is theirs to share as the agent's own programs would.
pub trait AgentUmask {
    /// Restores the agent's umask in the child, between fork and exec.
    fn agent_umask(&mut self) -> &mut Self;
}

/// The hook run in the child: umask is async-signal-safe and cannot fail.
fn umask_hook(mask: u32) -> impl FnMut() -> io::Result<()> + Send + Sync + 'static {
    move || {
        // SAFETY: umask is async-signal-safe (allowed between fork and exec).
        unsafe { libc::umask(mask as libc::mode_t) };
        Ok(())
    }
}

impl AgentUmask for std::process::Command {
    fn agent_umask(&mut self) -> &mut Self {
        if let Some(mask) = agent_umask() {
            // SAFETY: the hook only calls umask, which is async-signal-safe.
            unsafe { std::os::unix::process::CommandExt::pre_exec(self, umask_hook(mask)) };
        }
        self
    }
}

impl AgentUmask for tokio::process::Command {
    fn agent_umask(&mut self) -> &mut Self {
        if let Some(mask) = agent_umask() {
            // SAFETY: the hook only calls umask, which is async-signal-safe.
            unsafe { self.pre_exec(umask_hook(mask)) };
        }
        self
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_new_file_is_created_private_and_an_existing_one_is_not_opened() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let p = tmp.path().join("db");
        create_new_file(&p).expect("created");
        assert_eq!(
            fs::metadata(&p).map(|m| m.permissions().mode() & 0o777).ok(),
            Some(0o600)
        );
        fs::write(&p, b"kept").expect("write");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).expect("chmod");
        create_new_file(&p).expect("exists: fine");
        assert_eq!(fs::read(&p).ok().as_deref(), Some(&b"kept"[..]));
        assert_eq!(
            fs::metadata(&p).map(|m| m.permissions().mode() & 0o777).ok(),
            Some(0o640)
        );
    }

    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    fn set_mode(p: &Path, m: u32) {
        fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
    }

    #[test]
    fn every_directory_created_is_0700_and_existing_ones_are_left() {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().join("a");
        fs::create_dir(&top).unwrap();
        set_mode(&top, 0o755);
        let deep = top.join("b/c/d");
        create_dir(&deep).unwrap();
        for d in ["a/b", "a/b/c", "a/b/c/d"] {
            assert_eq!(mode(&tmp.path().join(d)), 0o700, "{d}");
        }
        assert_eq!(
            mode(&top),
            0o755,
            "an existing directory is not create_dir's to change"
        );
        create_dir(&deep).unwrap();
        let file = tmp.path().join("f");
        fs::write(&file, "x").unwrap();
        assert!(
            create_dir(&file.join("sub")).is_err(),
            "a file in the way is an error"
        );
    }

    #[test]
    fn a_new_file_is_0600_an_existing_one_keeps_its_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("log");
        {
            use std::io::Write;
            let mut f = create_file(&p, true).unwrap();
            f.write_all(b"one\n").unwrap();
        }
        assert_eq!(mode(&p), 0o600);
        set_mode(&p, 0o640);
        {
            use std::io::Write;
            let mut f = create_file(&p, true).unwrap();
            f.write_all(b"two\n").unwrap();
        }
        assert_eq!(fs::read_to_string(&p).unwrap(), "one\ntwo\n", "appended");
        assert_eq!(mode(&p), 0o640);
        write(&p, b"new").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "new", "truncated");
        let q = tmp.path().join("copy");
        write(&q, b"x").unwrap();
        assert_eq!(mode(&q), 0o600);
    }

    #[test]
    fn only_open_paths_are_tightened_and_each_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("history.sqlite3");
        fs::write(&f, "x").unwrap();
        set_mode(&f, 0o644);
        let w = tighten(&f).expect("a warning");
        assert!(
            w.contains(&f.display().to_string()) && w.contains("0644 -> 0600"),
            "{w}"
        );
        assert_eq!(mode(&f), 0o600);
        assert_eq!(tighten(&f), None, "already private");
        assert_eq!(tighten(&tmp.path().join("absent")), None);
        let d = tmp.path().join("recordings");
        fs::create_dir(&d).unwrap();
        set_mode(&d, 0o775);
        let w = tighten(&d).expect("a warning");
        assert!(w.contains("directory") && w.contains("0775 -> 0700"), "{w}");
        assert_eq!(mode(&d), 0o700);
        // Owner bits stay as they were: a read-only file stays read-only.
        set_mode(&f, 0o444);
        assert!(tighten(&f).unwrap().contains("0444 -> 0400"));
    }

    #[test]
    fn another_users_path_is_reported_not_changed() {
        assert_eq!(verdict(0o600, 1000, 1000), Verdict::Private);
        assert_eq!(
            verdict(0o700, 0, 1000),
            Verdict::Private,
            "private: nothing to say"
        );
        assert_eq!(verdict(0o644, 1000, 1000), Verdict::Chmod(0o600));
        assert_eq!(verdict(0o4755, 1000, 1000), Verdict::Chmod(0o700));
        assert_eq!(verdict(0o604, 1000, 1000), Verdict::Chmod(0o600));
        assert_eq!(verdict(0o644, 0, 1000), Verdict::NotOurs);
    }

    #[test]
    fn a_tree_is_tightened_without_following_links() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("data");
        let sub = root.join("recordings");
        fs::create_dir_all(&sub).unwrap();
        let outside = tmp.path().join("outside.txt");
        fs::write(&outside, "x").unwrap();
        set_mode(&outside, 0o644);
        for (name, m) in [("history.sqlite3", 0o644), ("ctiphone.log", 0o600)] {
            fs::write(root.join(name), "x").unwrap();
            set_mode(&root.join(name), m);
        }
        fs::write(sub.join("call.wav"), "x").unwrap();
        set_mode(&sub.join("call.wav"), 0o664);
        std::os::unix::fs::symlink(&outside, sub.join("link.txt")).unwrap();
        set_mode(&sub, 0o755);
        set_mode(&root, 0o755);
        let warnings = tighten_tree(&root);
        let named = |p: &Path| warnings.iter().any(|w| w.contains(&p.display().to_string()));
        assert_eq!(warnings.len(), 4, "{warnings:#?}");
        for p in [&root, &sub, &root.join("history.sqlite3"), &sub.join("call.wav")] {
            assert!(named(p), "{} not named in {warnings:#?}", p.display());
            assert_eq!(mode(p) & OPEN_BITS, 0, "{}", p.display());
        }
        assert_eq!(mode(&outside), 0o644, "a link's target is left alone");
        assert!(tighten_tree(&root).is_empty(), "second run: nothing to do");
        assert!(tighten_tree(&tmp.path().join("absent")).is_empty());
    }
}
