//! Where a phone's daemon can be found: its directory under `$XDG_RUNTIME_DIR/ctiphone/`
//! (0700, ours, no symlink), its socket and its PID file, named per configuration file so
//! that two configurations (two accounts) are two daemons and one configuration is one.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::Digest;

/// One daemon's files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paths {
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub pid: PathBuf,
}

/// The directory daemons live in: `$XDG_RUNTIME_DIR/ctiphone`, or `/tmp/ctiphone-UID` where
/// there is no runtime directory (a jump host without a login manager).
pub fn runtime_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d).join("ctiphone"),
        // SAFETY: geteuid cannot fail.
        None => std::env::temp_dir().join(format!("ctiphone-{}", unsafe { libc::geteuid() })),
    }
}

impl Paths {
    /// The daemon of the configuration file `config` (`None`: the default one). The name is
    /// `phone` for the default configuration, else `phone-` and a hash of the file's full path.
    pub fn for_config(config: Option<&Path>) -> Paths {
        let default = crate::config::default_path();
        let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        let name = match config {
            Some(p) if default.as_deref().map(canonical) != Some(canonical(p)) => {
                let hash = sha2::Sha256::digest(canonical(p).as_os_str().as_encoded_bytes());
                let hex: String = hash.iter().take(6).map(|b| format!("{b:02x}")).collect();
                format!("phone-{hex}")
            }
            _ => "phone".to_owned(),
        };
        let dir = runtime_dir();
        Paths {
            socket: dir.join(format!("{name}.sock")),
            pid: dir.join(format!("{name}.pid")),
            dir,
        }
    }

    /// Creates the directory (0700) or checks the one there: a directory (not a symlink) of
    /// ours; one open to others is tightened, with a warning in the result.
    pub fn prepare(&self) -> Result<Vec<String>, String> {
        let shown = self.dir.display();
        if let Some(parent) = self.dir.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        match std::fs::DirBuilder::new().mode(0o700).create(&self.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("{shown}: {e}")),
        }
        let meta = std::fs::symlink_metadata(&self.dir).map_err(|e| format!("{shown}: {e}"))?;
        // SAFETY: geteuid cannot fail.
        let me = unsafe { libc::geteuid() };
        if !meta.is_dir() {
            return Err(format!(
                "{shown}: not a directory (a symlink or a file is in its place)"
            ));
        }
        if meta.uid() != me {
            return Err(format!(
                "{shown}: owned by uid {}, not by this user ({me})",
                meta.uid()
            ));
        }
        let mut warnings = Vec::new();
        let mode = meta.mode() & 0o777;
        if mode != 0o700 {
            std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| format!("{shown}: {e}"))?;
            warnings.push(format!("{shown} was open to others ({mode:03o}): now 700"));
        }
        Ok(warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_name_per_configuration_file() {
        let a = Paths::for_config(Some(Path::new("/etc/ctiphone/a.toml")));
        let b = Paths::for_config(Some(Path::new("/etc/ctiphone/b.toml")));
        assert_ne!(a.socket, b.socket);
        assert_eq!(a, Paths::for_config(Some(Path::new("/etc/ctiphone/a.toml"))));
        let name = a.socket.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        assert!(name.starts_with("phone-") && name.ends_with(".sock"), "{name}");
        assert_eq!(a.socket.parent(), Some(a.dir.as_path()));
        assert_eq!(a.pid.with_extension("sock"), a.socket);
    }

    #[test]
    fn a_directory_open_to_others_is_tightened_and_a_symlink_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let p = Paths {
            dir: tmp.path().join("ctiphone"),
            socket: tmp.path().join("ctiphone/phone.sock"),
            pid: tmp.path().join("ctiphone/phone.pid"),
        };
        assert_eq!(p.prepare(), Ok(vec![]));
        let mode = std::fs::metadata(&p.dir).map(|m| m.mode() & 0o777).ok();
        assert_eq!(mode, Some(0o700));
        std::fs::set_permissions(&p.dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let w = p.prepare().expect("prepared");
        assert!(w.len() == 1 && w[0].contains("755"), "{w:?}");
        let link = Paths {
            dir: tmp.path().join("link"),
            ..p.clone()
        };
        std::os::unix::fs::symlink(&p.dir, &link.dir).expect("symlink");
        assert!(link.prepare().is_err_and(|e| e.contains("not a directory")));
    }
}
