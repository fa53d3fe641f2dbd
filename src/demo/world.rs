//! The demo's loopback world: its directory, the configuration written there (a template
//! for real use, valid for `ctiphone check-config`), the CRM and the caller.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::caller::{self, Caller};
use super::crm::{self, Crm};

/// The number the demo's caller dials: the phone's target number ({CALLED}).
pub const CALLED: &str = "0120000111";

/// The CTI part of the demo's configuration: the agent, the target number, and the auth,
/// search and click accesses against the CRM at `crm_url` (`http://HOST:PORT/`).
pub fn cti_config(crm_url: &str) -> String {
    let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
    format!(
        r#"[agent]
# {{AID}} and {{APW}}: what the CRM's login takes.
id = {aid}
password = {apw}

[cti]
# Run the integration (Basic pane, BAS-1) for calls to the ticked numbers (TGT-1..3).
target = "custom"
numbers = [{{ number = "0120-000-111", enabled = true }}]
# {{SVADDR}}: the CRM.
server_address = {url}
timeout_seconds = 3

# Custom integration pane. Log in once (CUS-1/2); TOKEN is a secret, shown as ***.
[cti.auth]
method = "post"
template = "{{SVADDR}}api/login?id={{AID}}&pw={{APW}}"
captures = {{ TOKEN = "json:/token" }}

# Look the caller up on every ring (CUS-3/4): the popup shows COMPANY, NAME, EXT_ID.
[cti.search]
method = "get"
template = "{{SVADDR}}api/customers?tel={{TEL}}&token={{TOKEN}}"
captures = {{ COMPANY = "json:/company", NAME = "json:/name", EXT_ID = "json:/id" }}

# Enter on the popup (CUS-5) opens the customer's page; with no graphical session the
# popup shows it as a link (OSC 8) that `y` copies (OSC 52).
[cti.click]
method = "browser_get"
template = "{{SVADDR}}customers/{{EXT_ID}}?tel={{TEL}}"
"#,
        aid = q(crm::AGENT_ID),
        apw = q(crm::AGENT_PASSWORD),
        url = q(crm_url),
    )
}

/// The whole demo configuration: a phone taking direct calls on `listen`, the speaker as
/// output, and [`cti_config`].
pub fn config_text(crm_url: &str, listen: SocketAddr, dir: &Path) -> String {
    let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
    format!(
        r#"# ctiphone demo configuration: a template for real use. Check a copy with
#   ctiphone check-config --config FILE
# The demo's call history and log are in {data} (it sets XDG_DATA_HOME).

[account]
# No PBX: take direct calls on 127.0.0.1. For a real PBX set uri, username, password and
# registrar (see config.example.toml).
uri = "sip:agent@127.0.0.1"
registrar = ""
listen = {listen}
display_name = "Demo agent"

[audio]
# The agent's microphone stays off in the demo; the caller's sample plays on the speaker
# (no sound card: the null device, with a warning).
input = "null"
output = ""

[popup]
size = "large"
display_seconds = 0

{cti}"#,
        data = dir.join("data").display(),
        listen = q(&listen.to_string()),
        cti = cti_config(crm_url),
    )
}

/// What the demo runs beside the phone.
pub struct World {
    pub config_path: PathBuf,
    pub config_text: String,
    pub crm: Crm,
    pub caller: Caller,
}

/// A free UDP port of 127.0.0.1 (bound and released).
pub fn free_port() -> Result<u16, String> {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free UDP port on 127.0.0.1: {e}"))
}

impl World {
    /// Starts the CRM, writes the configuration and the caller's audio sample into `dir`, and
    /// starts the caller dialling the phone at `phone` every `interval`.
    pub async fn start(dir: &Path, phone: SocketAddr, interval: Duration) -> Result<World, String> {
        crate::private::create_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let crm = Crm::start()
            .await
            .map_err(|e| format!("the demo CRM cannot start: {e}"))?;
        let config_text = config_text(&crm.url(), phone, dir);
        let config_path = dir.join("config.toml");
        crate::private::write(&config_path, config_text.as_bytes())
            .map_err(|e| format!("{}: {e}", config_path.display()))?;
        let sample = dir.join("caller-sample.wav");
        caller::write_sample(&sample)?;
        let caller = Caller::start(caller::Settings {
            phone,
            called: CALLED.to_owned(),
            sample,
            first_after: Duration::from_secs(2),
            interval,
            ring_for: Duration::from_secs(30),
            talk_for: Duration::from_secs(30),
        })
        .await?;
        Ok(World {
            config_path,
            config_text,
            crm,
            caller,
        })
    }

    /// Stops the caller (hanging up) and the CRM.
    pub async fn stop(self) {
        self.caller.stop().await;
        drop(self.crm);
    }
}
