//! A private PulseAudio daemon for tests: a null sink `ctinull` (clocked in real time, no
//! hardware) in a temporary home, reached through `PULSE_SERVER`. The daemon sets this
//! process's environment, so a test binary using it runs one test.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Daemon {
    child: Child,
    pub dir: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("pulse.log")).unwrap_or_default()
}

pub fn start_pulseaudio() -> Daemon {
    match Command::new("pulseaudio").arg("--version").output() {
        Ok(o) if o.status.success() => {}
        other => panic!(
            "`pulseaudio` is not runnable ({other:?}): this test needs the PulseAudio \
             server. Install the Debian packages: apt-get install -y pulseaudio \
             pulseaudio-utils libpulse-dev libasound2-dev pkg-config"
        ),
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("devices-pulse-{}-{nanos}", std::process::id()));
    let home = dir.join("home");
    let run = dir.join("run");
    std::fs::create_dir_all(home.join(".config")).expect("create temp home");
    std::fs::create_dir_all(&run).expect("create temp runtime dir");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).expect("chmod runtime dir");
    }
    let socket = run.join("native");
    let script = dir.join("test.pa");
    std::fs::write(
        &script,
        format!(
            "load-module module-null-sink sink_name=ctinull rate=48000\n\
             load-module module-native-protocol-unix auth-anonymous=1 socket={}\n\
             set-default-sink ctinull\n\
             set-default-source ctinull.monitor\n",
            socket.display()
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
        .arg(format!("--log-target=file:{}", dir.join("pulse.log").display()))
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_RUNTIME_DIR", &run)
        .env("PULSE_RUNTIME_PATH", &run)
        .env_remove("PULSE_SERVER")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .current_dir(&dir)
        .spawn()
        .expect("spawn pulseaudio (Debian package `pulseaudio`)");
    let mut daemon = Daemon { child, dir };
    let deadline = Instant::now() + Duration::from_secs(15);
    while !socket.exists() {
        if let Ok(Some(status)) = daemon.child.try_wait() {
            panic!("pulseaudio exited with {status}; log:\n{}", log_of(&daemon.dir));
        }
        if Instant::now() > deadline {
            panic!("pulseaudio socket did not appear; log:\n{}", log_of(&daemon.dir));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Client environment. SAFETY: set before any other thread of this test
    // binary reads the environment (this file has a single test).
    unsafe {
        std::env::set_var("PULSE_SERVER", format!("unix:{}", socket.display()));
        std::env::set_var("PULSE_RUNTIME_PATH", &run);
        std::env::set_var("XDG_RUNTIME_DIR", &run);
        let cookie = home.join(".config/pulse/cookie");
        if cookie.exists() {
            std::env::set_var("PULSE_COOKIE", cookie);
        }
    }
    daemon
}
