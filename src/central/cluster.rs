//! A throwaway PostgreSQL cluster for `ctiphone bench fleet` and the tests: Debian's
//! `postgresql` server binaries (`/usr/lib/postgresql/N/bin`), `initdb` into a temporary
//! directory, listening on 127.0.0.1 on a port of its choosing (and a socket in that
//! directory), trust authentication for the loopback only. It can be stopped and started
//! again on the same port (an outage), and is stopped and deleted when dropped. As root the
//! server runs as the `postgres` user (PostgreSQL refuses to run as root).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A running (or stopped) throwaway cluster.
#[derive(Debug)]
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// `runuser -u postgres --` when we are root.
    as_user: Option<String>,
    running: bool,
}

/// The newest installed server's `bin` directory.
fn server_bin() -> Result<PathBuf, String> {
    let base = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(base)
        .map_err(|e| {
            format!(
                "{}: {e}: the PostgreSQL server is not installed (Debian: apt-get install -y postgresql)",
                base.display()
            )
        })?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b).ok_or_else(|| {
        format!(
            "no initdb under {}: apt-get install -y postgresql",
            base.display()
        )
    })
}

/// Hands `path` (and, `recursive`, all below it) to `user` and its group.
fn give(user: &str, path: &Path, recursive: bool) -> Result<(), String> {
    let mut c = Command::new("chown");
    if recursive {
        c.arg("-R");
    }
    let st = c
        .arg(format!("{user}:"))
        .arg(path)
        .status()
        .map_err(|e| format!("chown: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("chown {user} {}: {st}", path.display()))
    }
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

impl Cluster {
    /// Creates and starts a cluster with a database `ctiphone` owned by the superuser
    /// `ctiphone` (no password, loopback only).
    pub fn start() -> Result<Cluster, String> {
        let bin = server_bin()?;
        let dir = tempfile::Builder::new()
            .prefix("ctiphone-pg-")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        // SAFETY: geteuid has no preconditions.
        let as_user = (unsafe { libc::geteuid() } == 0).then(|| "postgres".to_owned());
        if let Some(u) = &as_user {
            give(u, dir.path(), true)?;
        }
        let mut c = Cluster {
            dir,
            bin,
            port: free_port()?,
            as_user,
            running: false,
        };
        let data = c.data();
        let out = c
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "ctiphone",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--locale=C",
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        // Small and fast: a test cluster, not a production one. fsync stays off (a stop is a
        // crash of the server, not of the machine: what it wrote to the OS survives), but
        // synchronous_commit stays on: off, a commit is acknowledged before its WAL leaves
        // the server's memory, and `stop` (immediate) loses it after the phone has deleted
        // it from its outbox (seen as a row stuck at an earlier state in `bench fleet`).
        let conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n\
             fsync = off\nsynchronous_commit = on\nfull_page_writes = off\n\
             shared_buffers = 32MB\nmax_connections = 300\nlog_min_messages = warning\n",
            c.port,
            c.dir.path().display()
        );
        let conf_path = data.join("postgresql.auto.conf");
        std::fs::write(&conf_path, conf).map_err(|e| format!("{}: {e}", conf_path.display()))?;
        c.start_again()?;
        let out = c
            .command("createdb")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &c.port.to_string(),
                "-U",
                "ctiphone",
                "ctiphone",
            ])
            .output()
            .map_err(|e| format!("createdb: {e}"))?;
        if !out.status.success() {
            return Err(format!("createdb: {}", String::from_utf8_lossy(&out.stderr)));
        }
        Ok(c)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, tool: &str) -> Command {
        let mut c = match &self.as_user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--"]).arg(self.bin.join(tool));
                c
            }
            None => Command::new(self.bin.join(tool)),
        };
        c.current_dir(self.dir.path());
        c
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgresql://ctiphone@127.0.0.1:PORT/ctiphone`
    pub fn url(&self) -> String {
        format!("postgresql://ctiphone@127.0.0.1:{}/ctiphone", self.port)
    }

    /// The server's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`: like a crash, no goodbye to
    /// the clients).
    pub fn stop(&mut self) -> Result<(), String> {
        if !self.running {
            return Ok(());
        }
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .args(["stop", "-m", "immediate", "-w"])
            .output()
            .map_err(|e| format!("pg_ctl stop: {e}"))?;
        self.running = false;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("pg_ctl stop: {}", String::from_utf8_lossy(&out.stderr)))
        }
    }

    /// Starts the server (again, on the same port) and waits until it accepts connections.
    pub fn start_again(&mut self) -> Result<(), String> {
        if self.running {
            return Ok(());
        }
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .args(["start", "-w", "-t", "30"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("pg_ctl start: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "pg_ctl start ({}): {}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr),
                self.log()
            ));
        }
        self.running = true;
        let end = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > end {
                return Err(format!(
                    "PostgreSQL did not listen on port {}:\n{}",
                    self.port,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Adds a login role `user` (allowed to write the central log) that must give
    /// `password` (SCRAM) over TCP; takes effect at once.
    pub fn add_password_user(&self, user: &str, password: &str) -> Result<(), String> {
        let safe = |s: &str| {
            s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if !safe(user) || !safe(password) {
            return Err("user and password: letters, digits, - and _ only".into());
        }
        self.psql(&format!(
            "CREATE ROLE \"{user}\" LOGIN PASSWORD '{password}'; GRANT ALL ON DATABASE ctiphone TO \"{user}\";
             GRANT CREATE ON SCHEMA public TO \"{user}\""
        ))?;
        let hba = self.data().join("pg_hba.conf");
        let text = std::fs::read_to_string(&hba).map_err(|e| format!("{}: {e}", hba.display()))?;
        let text = format!("host all {user} 127.0.0.1/32 scram-sha-256\n{text}");
        std::fs::write(&hba, text).map_err(|e| format!("{}: {e}", hba.display()))?;
        self.psql("SELECT pg_reload_conf()").map(|_| ())
    }

    /// Serves TLS with this certificate chain and key (PEM text), from the next start on:
    /// call it, then [`stop`](Self::stop) and [`start_again`](Self::start_again).
    pub fn use_tls(&self, cert_pem: &str, key_pem: &str) -> Result<(), String> {
        let data = self.data();
        for (name, text) in [("server.crt", cert_pem), ("server.key", key_pem)] {
            let path = data.join(name);
            crate::private::write(&path, text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
            if let Some(u) = &self.as_user {
                give(u, &path, false)?;
            }
        }
        let conf = data.join("postgresql.auto.conf");
        let mut text = std::fs::read_to_string(&conf).map_err(|e| format!("{}: {e}", conf.display()))?;
        text.push_str(
            "ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
",
        );
        std::fs::write(&conf, text).map_err(|e| format!("{}: {e}", conf.display()))
    }

    /// Runs SQL with `psql` (for tests and the bench: counts, setup).
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        let out = self
            .command("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "ctiphone",
                "-d",
                "ctiphone",
            ])
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("psql: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(format!("psql: {}", String::from_utf8_lossy(&out.stderr)))
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
