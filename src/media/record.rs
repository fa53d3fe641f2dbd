//! Call recording (REC-1): a stereo WAV, the agent on the left and the customer on the right,
//! written as `NAME.part` and renamed to `NAME` when the call ends, so a crash never leaves a
//! half file that looks complete. File names come from a template whose caller-controlled
//! parts are made safe for a file name.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::cti::template::{PieceKind, Template};
use crate::cti::vars::Vars;

/// The default name template (the configuration's default `[recording] name`).
pub use crate::config::DEFAULT_RECORDING_NAME as DEFAULT_NAME;
/// The longest part a caller value may take in a file name (characters).
const MAX_PART: usize = 48;

/// A caller-controlled value made safe as part of a file name: no path separators, no `..`,
/// no control or shell-special bytes, bounded length (cut values end with a short hash so
/// distinct long values stay distinct).
pub fn sanitize(value: &str) -> String {
    let mut s: String = value
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || "+-_.@=".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    while s.contains("..") {
        s = s.replace("..", "_");
    }
    let s = s.trim_start_matches('.').to_owned();
    if s.chars().count() > MAX_PART {
        let hash = Sha256::digest(value.as_bytes());
        let tag: String = hash.iter().take(4).map(|b| format!("{b:02x}")).collect();
        let head: String = s.chars().take(MAX_PART - 9).collect();
        return format!("{head}~{tag}");
    }
    if s.is_empty() { "_".to_owned() } else { s }
}

/// Expands the name template: literal text as written, every parameter value sanitized.
pub fn file_name(template: &Template, vars: &Vars) -> String {
    let name: String = template
        .pieces(vars)
        .iter()
        .map(|p| match p.kind {
            PieceKind::Literal => p.text.replace(['/', '\0'], "_"),
            _ => sanitize(&p.text),
        })
        .collect();
    let name = name.trim_start_matches('.').to_owned();
    if name.is_empty() {
        "recording.wav".to_owned()
    } else {
        name
    }
}

/// A recording in progress.
pub struct Recorder {
    writer: Option<hound::WavWriter<BufWriter<File>>>,
    part: PathBuf,
    path: PathBuf,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").field("path", &self.path).finish()
    }
}

impl Recorder {
    /// Starts `dir/name` (as `name.part`, mode 0600), stereo 16-bit at `rate`. The directory is
    /// created (mode 0700).
    pub fn create(dir: &Path, name: &str, rate: u32) -> Result<Self, String> {
        crate::private::create_dir(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut path = dir.join(name);
        // Never overwrite an earlier recording.
        let mut n = 1;
        while path.exists() || part_of(&path).exists() {
            n += 1;
            path = dir.join(format!("{}-{n}.wav", name.trim_end_matches(".wav")));
        }
        let part = part_of(&path);
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        // The customer's voice: mode 0600.
        let writer = crate::private::create_file(&part, false)
            .map_err(hound::Error::from)
            .and_then(|f| hound::WavWriter::new(BufWriter::new(f), spec))
            .map_err(|e| format!("cannot write {}: {e}", part.display()))?;
        Ok(Self {
            writer: Some(writer),
            part,
            path,
        })
    }

    /// The file name the recording will have.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one frame of each side (the shorter side is padded with silence).
    pub fn write(&mut self, agent: &[i16], customer: &[i16]) -> Result<(), String> {
        let Some(w) = self.writer.as_mut() else {
            return Ok(());
        };
        let n = agent.len().max(customer.len());
        for i in 0..n {
            w.write_sample(agent.get(i).copied().unwrap_or(0))
                .map_err(|e| e.to_string())?;
            w.write_sample(customer.get(i).copied().unwrap_or(0))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Closes the file and gives it its final name.
    pub fn finish(mut self) -> Result<PathBuf, String> {
        if let Some(w) = self.writer.take() {
            w.finalize()
                .map_err(|e| format!("cannot finish {}: {e}", self.part.display()))?;
        }
        std::fs::rename(&self.part, &self.path)
            .map_err(|e| format!("cannot rename {}: {e}", self.part.display()))?;
        Ok(self.path.clone())
    }
}

fn part_of(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".part");
    PathBuf::from(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::CallParams;
    use crate::cti::vars::Identity;

    #[test]
    fn caller_values_cannot_escape_the_directory() {
        assert_eq!(sanitize("../../etc/passwd"), "____etc_passwd");
        assert_eq!(sanitize(".."), "_");
        assert_eq!(sanitize("+81 3-1234"), "+81_3-1234");
        assert_eq!(sanitize("a\u{1b}[2J\nb"), "a__2J_b");
        assert_eq!(sanitize(""), "_");
        let long = "9".repeat(5000);
        let s = sanitize(&long);
        assert!(s.chars().count() <= MAX_PART, "{s}");
        assert_ne!(s, sanitize(&"9".repeat(4999)), "cut values stay distinct");
    }

    #[test]
    fn names_come_from_the_template() {
        let t = Template::parse(DEFAULT_NAME, &|_| true).unwrap();
        let mut p = CallParams::incoming("abc@host/../x", "../0311112222", "1");
        p.telname = "x".into();
        let now = chrono::NaiveDate::from_ymd_opt(2026, 11, 25)
            .unwrap()
            .and_hms_opt(9, 8, 7)
            .unwrap();
        let v = Vars::new(&Identity::default(), &p, now);
        assert_eq!(file_name(&t, &v), "20261125-090807___0311112222_abc@host___x.wav");
    }

    #[test]
    fn a_recording_is_a_part_file_until_finished() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Recorder::create(dir.path(), "call.wav", 8000).unwrap();
        r.write(&[1000; 160], &[-1000; 160]).unwrap();
        assert!(dir.path().join("call.wav.part").exists());
        assert!(!dir.path().join("call.wav").exists());
        let path = r.finish().unwrap();
        assert_eq!(path, dir.path().join("call.wav"));
        let mut rd = hound::WavReader::open(&path).unwrap();
        assert_eq!(rd.spec().channels, 2);
        let s: Vec<i16> = rd.samples::<i16>().map(Result::unwrap).collect();
        assert_eq!((s.len(), s[0], s[1]), (320, 1000, -1000));
        // A second recording with the same name does not overwrite the first.
        let r2 = Recorder::create(dir.path(), "call.wav", 8000).unwrap();
        assert_eq!(r2.path(), dir.path().join("call-2.wav"));
    }
}
