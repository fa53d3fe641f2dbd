//! The outputs a caller-controlled value reaches, each checked for one value of the hostile
//! caller-ID corpus: a URL (query and path), a form body and a real command's argv through the
//! CTI engine and a loopback CRM; the log; the call history; the recording's file name; the
//! clipboard's OSC 52 payload. `tests/cti_safety.rs` and `tests/hostile_outputs.rs` share them.
//! Every check panics with the corpus id on failure; each returns once the value passed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ctiphone::app::{CallEvent, CallParams, Event, Logged};
use ctiphone::cti::FireReport;

pub use super::controls::raw_control;
use super::{Crm, engine, no_browser, pairs, recorded, recorder};

/// The file a successful injection would create.
pub const CANARY: &str = "/tmp/ctiphone-pwned";

/// The call's parameters: `value` as {TEL} and {TELNAME}.
pub fn params(call: &str, value: &str) -> CallParams {
    let mut p = CallParams::incoming(call, value, "0312345678");
    p.telname = value.to_owned();
    p
}

/// The first error of a report, cut short (corpus values can be 64 KiB).
pub fn error(r: &FireReport) -> String {
    let e = r.actions.iter().find_map(|a| a.error.clone()).unwrap_or_default();
    e.chars().take(200).collect()
}

/// A URL longer than the engine sends ("over the limit"): the value percent-encoded three
/// times over its length.
pub fn too_long(value: &str) -> bool {
    value.len() * 3 > ctiphone::cti::template::MAX_URL
}

/// The CTI engine on a loopback CRM with one access per output: ring GETs a URL with the
/// value in its query, answer one with the value as a path segment, click POSTs a form, hangup
/// runs the argv recorder with `-- {TEL} {TELNAME} 'end word'`.
pub struct CtiOutputs {
    pub crm: Crm,
    pub engine: ctiphone::cti::Engine,
    argv_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl CtiOutputs {
    pub async fn start() -> Self {
        let crm = Crm::start().await;
        let dir = tempfile::tempdir().unwrap();
        let argv_file = dir.path().join("argv.jsonl");
        let text = format!(
            r#"[cti]
target = "custom"
timeout_seconds = 5
server_address = "{url}/"
numbers = [{{ number = "0312345678" }}]
[cti.ring]
method = "get"
template = "{{SVADDR}}q?tel={{TEL}}&name={{TELNAME}}&x=1#frag"
[cti.click]
method = "post"
template = "{{SVADDR}}f?tel={{TEL}}&name={{TELNAME}}"
[cti.answer]
method = "get"
template = "{{SVADDR}}p/{{TELNAME}}/end"
[cti.hangup]
method = "command"
template = "'{rec}' '{out}' -- {{TEL}} {{TELNAME}} 'end word'"
"#,
            url = crm.url(),
            rec = recorder().display(),
            out = argv_file.display()
        );
        let engine = engine(&text, None, no_browser());
        Self {
            crm,
            engine,
            argv_file,
            _dir: dir,
        }
    }

    /// The ring access: the URL's query has exactly the template's three parameters, the
    /// value byte-exact in two of them (a value too long for a URL: a clear error, nothing
    /// sent). Also runs the engine's `ring` with the value (for the log).
    pub async fn url_query(&self, id: &str, call: &str, value: &str) {
        let before = self.crm.seen_path("/q").len();
        let r = self
            .engine
            .dispatch(CallEvent::ring(params(call, value)))
            .await
            .unwrap();
        if too_long(value) {
            assert!(!r.ok(), "{id}");
            assert!(error(&r).contains("over the limit"), "{id}: {}", error(&r));
            assert_eq!(self.crm.seen_path("/q").len(), before, "{id}: nothing sent");
            return;
        }
        assert!(r.ok(), "{id}: {}", error(&r));
        let seen = self.crm.seen_path("/q");
        let q = seen.last().unwrap().query.clone().unwrap();
        assert_eq!(
            pairs(q.as_bytes()),
            vec![
                ("tel".into(), value.to_owned()),
                ("name".into(), value.to_owned()),
                ("x".into(), "1".into())
            ],
            "{id}"
        );
    }

    /// The answer access: the value is one path segment, byte-exact; a `.` or `..` segment is
    /// refused and nothing sent.
    pub async fn url_path(&self, id: &str, call: &str, value: &str) {
        let before = self.crm.seen().len();
        let r = self
            .engine
            .dispatch(CallEvent::answer(params(call, value)))
            .await
            .unwrap();
        if too_long(value) {
            assert!(!r.ok(), "{id}");
            assert!(error(&r).contains("over the limit"), "{id}: {}", error(&r));
            assert_eq!(self.crm.seen().len(), before, "{id}: nothing sent");
        } else if value == ".." || value == "." {
            assert!(!r.ok(), "{id}: a `..` segment must be refused");
            assert!(error(&r).starts_with("not sent"), "{id}: {}", error(&r));
            assert_eq!(self.crm.seen().len(), before, "{id}: nothing sent");
        } else {
            assert!(r.ok(), "{id}: {}", error(&r));
            let last = self.crm.seen().pop().unwrap();
            let segs: Vec<_> = last.path.split('/').collect();
            assert_eq!(segs.len(), 4, "{id}: {}", last.path);
            assert_eq!((segs[1], segs[3]), ("p", "end"), "{id}");
            let decoded = percent_encoding::percent_decode_str(segs[2]).decode_utf8_lossy();
            assert_eq!(decoded, value, "{id}");
        }
    }

    /// The click access (a POST): the form body has exactly two pairs, the value byte-exact.
    pub async fn form(&self, id: &str, call: &str, value: &str) {
        let r = self
            .engine
            .dispatch(CallEvent::click(params(call, value)))
            .await
            .unwrap();
        assert!(r.ok(), "{id}: {}", error(&r));
        let seen = self.crm.seen_path("/f");
        assert_eq!(
            pairs(&seen.last().unwrap().body),
            vec![
                ("tel".into(), value.to_owned()),
                ("name".into(), value.to_owned())
            ],
            "{id}"
        );
    }

    /// The hangup access (a real command, no shell): exactly `-- VALUE VALUE 'end word'`
    /// after the output file, byte-exact; a value with a NUL byte is refused, nothing run.
    pub async fn argv(&self, id: &str, call: &str, value: &str) {
        let runs = || std::fs::read(&self.argv_file).map_or(0, |b| b.iter().filter(|c| **c == b'\n').count());
        let before = runs();
        let r = self
            .engine
            .dispatch(CallEvent::hangup(params(call, value), true))
            .await
            .unwrap();
        if value.contains('\0') {
            assert!(!r.ok(), "{id}");
            assert!(error(&r).contains("NUL byte"), "{id}: {}", error(&r));
            assert_eq!(runs(), before, "{id}: nothing ran");
            return;
        }
        assert!(r.ok(), "{id}: {}", error(&r));
        assert_eq!(runs(), before + 1, "{id}: one run");
        let got = recorded(&self.argv_file);
        let want = ["--", value, value, "end word"];
        let argv = &got.last().unwrap().0;
        assert!(
            argv.len() == want.len() && argv.iter().zip(want).all(|(a, b)| a == b),
            "{id}: argv differs ({} elements)",
            argv.len()
        );
    }
}

/// Panics when the canary file exists: an injection ran.
pub fn assert_no_canary() {
    assert!(
        !Path::new(CANARY).exists(),
        "the canary file {CANARY} was created: an injection ran"
    );
}

/// The phone's log lines, as its front ends write them (`ctiphone::logging::subscriber` at
/// INFO), captured in memory for this whole test process.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogCapture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    /// Installs the capture as the process's subscriber (once per test binary).
    pub fn install() -> Self {
        let cap = LogCapture::default();
        let writer = cap.clone();
        let sub = ctiphone::logging::subscriber(move || writer.clone(), tracing::Level::INFO);
        tracing::subscriber::set_global_default(sub).expect("one subscriber per test binary");
        cap
    }

    /// Everything logged so far, as bytes.
    pub fn bytes(&self) -> Vec<u8> {
        self.0.lock().unwrap().clone()
    }

    /// The log lines that name `call` (its `call=` field).
    pub fn lines_of(&self, call: &str) -> Vec<String> {
        let needle = format!("call={call} ");
        String::from_utf8_lossy(&self.bytes())
            .split('\n')
            .filter(|l| l.contains(&needle))
            .map(str::to_owned)
            .collect()
    }

    /// The engine's `CTI ring` line for `call` carries the value escaped on that one line,
    /// and no line of the log holds a raw control character.
    pub fn check(&self, id: &str, call: &str, value: &str) {
        let lines = self.lines_of(call);
        let ring: Vec<&String> = lines.iter().filter(|l| l.contains("CTI ring")).collect();
        assert_eq!(ring.len(), 1, "{id}: one `CTI ring` line for {call}: {lines:?}");
        let want = format!("tel={} ", Logged(value));
        assert!(
            ring[0].contains(&want),
            "{id}: the log line does not carry the value escaped: {:?}",
            ring[0].chars().take(300).collect::<String>()
        );
        let all = self.bytes();
        let text = std::str::from_utf8(&all).unwrap_or_else(|e| panic!("{id}: the log is not UTF-8: {e}"));
        if let Some((n, c)) = text
            .split('\n')
            .enumerate()
            .find_map(|(n, l)| l.chars().find(|c| raw_control(*c)).map(|c| (n, c)))
        {
            panic!("{id}: log line {n} holds a raw U+{:04X}", u32::from(c));
        }
    }
}

/// The call history: the value stored and read back byte-exact as number and name.
pub fn history(h: &ctiphone::history::History, id: &str, call: &str, value: &str) {
    h.record(&Event::Call(CallEvent::ring(params(call, value))))
        .unwrap_or_else(|e| panic!("{id}: {e}"));
    let row = h
        .get(call)
        .unwrap_or_else(|e| panic!("{id}: {e}"))
        .unwrap_or_else(|| panic!("{id}: no history row"));
    assert!(
        row.tel == value && row.telname == value,
        "{id}: not read back byte-exact"
    );
}

/// The recording: its file name from the default template and from one with {TELNAME} is
/// one plain name (no `/`, no control, not hidden, no `..`, at most 255 bytes), and the
/// recording is written as that file right in `dir`, nowhere else.
pub fn recording(dir: &Path, id: &str, call: &str, value: &str) {
    use ctiphone::cti::template::Template;
    use ctiphone::cti::vars::{Identity, Vars};
    use ctiphone::media::record::{DEFAULT_NAME, Recorder, file_name};
    let now = chrono::NaiveDate::from_ymd_opt(2026, 11, 25)
        .unwrap()
        .and_hms_opt(9, 8, 7)
        .unwrap();
    let vars = Vars::new(&Identity::default(), &params(call, value), now);
    for template in [DEFAULT_NAME, "{TELNAME}-{TEL}.wav"] {
        let t = Template::parse(template, &|_| true).unwrap_or_else(|_| panic!("{template}"));
        let name = file_name(&t, &vars);
        assert!(
            !name.contains(['/', '\\', '\0'])
                && !name.chars().any(raw_control)
                && !name.starts_with('.')
                && !name.contains("..")
                && name.len() <= 255,
            "{id}: unsafe file name {name:?}"
        );
        let before: Vec<_> = std::fs::read_dir(dir).unwrap().collect();
        let mut r = Recorder::create(dir, &name, 8000).unwrap_or_else(|e| panic!("{id}: {e}"));
        r.write(&[1; 160], &[2; 160]).unwrap();
        let path = r.finish().unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(path.parent(), Some(dir), "{id}: written outside the directory");
        assert!(path.is_file(), "{id}");
        let after: Vec<_> = std::fs::read_dir(dir).unwrap().collect();
        assert_eq!(after.len(), before.len() + 1, "{id}: one new file");
        std::fs::remove_file(&path).unwrap();
    }
}

/// Decodes standard base64 (with padding); None on any other byte.
pub fn base64_decode(s: &[u8]) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    if !s.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    for chunk in s.chunks(4) {
        let pad = chunk.iter().rev().take_while(|c| **c == b'=').count();
        if pad > 2 {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = (n << 6) | val(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}
