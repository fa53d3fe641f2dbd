//! A private PulseAudio daemon for tests: a null sink `ctinull` (clocked in real time, no
//! hardware) in a temporary home, reached through `PULSE_SERVER`. The daemon sets this
//! process's environment, so a test binary using it runs one test.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Daemon {
    server: Server,
    pub dir: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.server.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("pulse.log")).unwrap_or_default()
}

/// A [`Server`] with the null sink `ctinull` that this test process uses: `PULSE_SERVER`,
/// `PULSE_RUNTIME_PATH`, `XDG_RUNTIME_DIR` (and `PULSE_COOKIE` when it made one) point at it.
pub fn start_pulseaudio() -> Daemon {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("devices-pulse-{}-{nanos}", std::process::id()));
    let server = Server::start(&dir, "ctinull", None);
    let run = dir.join("run");
    // Client environment. SAFETY: set before any other thread of this test
    // binary reads the environment (this file has a single test).
    unsafe {
        std::env::set_var("PULSE_SERVER", server.address());
        std::env::set_var("PULSE_RUNTIME_PATH", &run);
        std::env::set_var("XDG_RUNTIME_DIR", &run);
        let cookie = dir.join("home/.config/pulse/cookie");
        if cookie.exists() {
            std::env::set_var("PULSE_COOKIE", cookie);
        }
    }
    Daemon { server, dir }
}

/// A PulseAudio server of a test's own that the test process does not point at: a null sink
/// `sink` (its monitor `sink.monitor`), reachable over TCP on 127.0.0.1:`port` when a port is
/// given, always on a Unix socket `dir/run/native`. It can be killed and started again on the
/// same address ("the agent's PC" going away and coming back).
pub struct Server {
    child: Option<Child>,
    pub dir: PathBuf,
    pub sink: String,
    pub port: Option<u16>,
}

impl Server {
    pub fn start(dir: &Path, sink: &str, port: Option<u16>) -> Server {
        let mut s = Server {
            child: None,
            dir: dir.to_owned(),
            sink: sink.to_owned(),
            port,
        };
        s.restart();
        s
    }

    /// The address for `PULSE_SERVER` / `--server`: TCP when it has a port.
    pub fn address(&self) -> String {
        match self.port {
            Some(p) => format!("tcp:127.0.0.1:{p}"),
            None => format!("unix:{}", self.dir.join("run/native").display()),
        }
    }

    /// Kills the server (SIGKILL: a link that drops says nothing).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(self.dir.join("run/native"));
    }

    /// Starts it (again), and waits until it listens.
    pub fn restart(&mut self) {
        self.kill();
        match Command::new("pulseaudio").arg("--version").output() {
            Ok(o) if o.status.success() => {}
            other => panic!(
                "`pulseaudio` is not runnable ({other:?}): apt-get install -y pulseaudio pulseaudio-utils"
            ),
        }
        let home = self.dir.join("home");
        let run = self.dir.join("run");
        std::fs::create_dir_all(home.join(".config")).expect("pulse home");
        std::fs::create_dir_all(&run).expect("pulse run");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700));
        }
        let socket = run.join("native");
        let tcp = self.port.map_or_else(String::new, |p| {
            format!("load-module module-native-protocol-tcp port={p} listen=127.0.0.1 auth-anonymous=1\n")
        });
        let script = self.dir.join("server.pa");
        std::fs::write(
            &script,
            format!(
                "load-module module-null-sink sink_name={s} rate=48000\n\
                 load-module module-native-protocol-unix auth-anonymous=1 socket={}\n{tcp}\
                 set-default-sink {s}\nset-default-source {s}.monitor\n",
                socket.display(),
                s = self.sink
            ),
        )
        .expect("write pulse script");
        let child = Command::new("pulseaudio")
            .args([
                "--daemonize=no",
                "--system=false",
                "--exit-idle-time=-1",
                "--disallow-exit",
                "--use-pid-file=false",
                "-n",
                "-F",
            ])
            .arg(&script)
            .arg(format!(
                "--log-target=file:{}",
                self.dir.join("pulse.log").display()
            ))
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_RUNTIME_DIR", &run)
            .env("PULSE_RUNTIME_PATH", &run)
            .env_remove("PULSE_SERVER")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn pulseaudio");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let up = socket.exists()
                && self
                    .port
                    .is_none_or(|p| std::net::TcpStream::connect(("127.0.0.1", p)).is_ok());
            if up {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("pulseaudio exited with {status}; log:\n{}", log_of(&self.dir));
            }
            assert!(
                Instant::now() < deadline,
                "pulseaudio did not listen in 15 s; log:\n{}",
                log_of(&self.dir)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Records its sink's monitor with `parec` (8 kHz mono s16le) into `file` until the
    /// returned child is killed.
    pub fn record(&self, file: &Path) -> Child {
        let out = std::fs::File::create(file).expect("recording file");
        Command::new("parec")
            .arg(format!("--server={}", self.address()))
            .args(["-d", &format!("{}.monitor", self.sink)])
            .args([
                "--rate=8000",
                "--channels=1",
                "--format=s16le",
                "--raw",
                "--latency-msec=20",
            ])
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .expect("parec (Debian package pulseaudio-utils)")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The samples of a raw s16le recording.
pub fn samples(file: &Path) -> Vec<i16> {
    std::fs::read(file)
        .unwrap_or_default()
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}
