//! The phone's settings as the front ends use them: the configuration file (`config`) together
//! with the CTI integration compiled from it (`cti::Plan`). Loading a checked configuration,
//! and checking and saving the settings panes' edits, need both, so they live here, above
//! `config` and `cti`: `config` imports nothing of the crate above it, and the editor
//! (`config::edit`) only splices text and locates problems. [`preview`] expands a template for
//! the Custom integration pane.

mod preview;

use std::path::PathBuf;

use crate::config::edit::{Editor, Problem};
use crate::config::{self, Config, ConfigError, Diagnostic};
use crate::cti::Plan;
use crate::cti::plan::check;

pub use preview::{SAMPLE_CALLED, SAMPLE_ID, SAMPLE_TEL, SAMPLE_TELNAME, preview};

/// A checked configuration and its compiled integration. Without `--config`, the default
/// file is used when it exists; when it does not, defaults are used unless `required`.
pub fn load(path: Option<&PathBuf>, required: bool) -> Result<(Config, Plan), ConfigError> {
    let file = path.cloned().or_else(config::default_path);
    let (config, plan, problems) = match &file {
        Some(p) if path.is_some() || required || p.exists() => {
            let text = std::fs::read_to_string(p).map_err(|e| ConfigError {
                file: p.display().to_string(),
                text: String::new(),
                problems: vec![Diagnostic::nowhere(format!("cannot read the file: {e}"))],
            })?;
            check(&text, Some(p.clone()))
        }
        None if required => {
            return Err(ConfigError {
                file: "config".to_owned(),
                text: String::new(),
                problems: vec![Diagnostic::nowhere("no configuration file: give --config FILE")],
            });
        }
        _ => (Config::default(), Plan::default(), Vec::new()),
    };
    if problems.is_empty() {
        Ok((config, plan))
    } else {
        Err(ConfigError {
            file: config.source.name(),
            text: config.source.text.clone(),
            problems,
        })
    }
}

/// Checks the edited text exactly as `ctiphone check-config` does
/// (`Config::parse_partial` + `cti::Plan::compile`): every problem with its dotted key path
/// when the diagnostic's place names one, and its `LINE:COL`.
pub fn validate(editor: &Editor) -> Result<(Config, Plan), Vec<Problem>> {
    let (config, plan, problems) = check(editor.as_str(), Some(editor.path().to_path_buf()));
    if problems.is_empty() {
        return Ok((config, plan));
    }
    Err(problems.iter().map(|d| editor.problem(d)).collect())
}

/// Validates, then writes the file atomically ([`Editor::write`]); nothing is written when
/// validation fails.
pub fn save(editor: &Editor) -> Result<PathBuf, Vec<Problem>> {
    validate(editor)?;
    editor.write().map_err(|p| vec![p])
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::edit::Value;

    pub(super) fn example() -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn the_example_file_loads_and_compiles() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
        let (config, plan) = load(Some(&path), true).expect("the example is valid");
        assert_eq!(config.cti.accesses.len(), config::ACCESS_NAMES.len());
        assert_eq!(plan.auth_vars.iter().collect::<Vec<_>>(), vec!["TOKEN"]);
        assert!(plan.get("answer").is_some_and(|a| a.delay.as_secs() == 2));
        assert!(plan.get("hangup").is_some_and(|a| a.only_if_answered));
    }

    #[test]
    fn loading_reports_a_missing_file_and_template_errors_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.toml");
        let err = load(Some(&missing), false).unwrap_err();
        assert_eq!(err.problems.len(), 1);
        assert!(
            err.problems[0].message.starts_with("cannot read the file: "),
            "{err}"
        );

        let path = dir.path().join("c.toml");
        let text = "[cti.ring]\nmethod = \"get\"\ntemplate = \"https://h/?q={TEL\"\n";
        std::fs::write(&path, text).unwrap();
        let err = load(Some(&path), true).unwrap_err();
        let rendered = err.problems[0].render("c.toml", text);
        // `{` is the 14th character of the value, which starts at column 13.
        assert!(
            rendered.starts_with("c.toml:3:26: template: unbalanced `{` at position 14"),
            "{rendered}"
        );
    }

    #[test]
    fn a_valid_edit_is_saved_with_its_plan() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, example()).unwrap();
        let mut ed = Editor::open(&path).unwrap();
        ed.set(
            "cti.ring.template",
            Some(Value::Text("https://crm.example/?tel={TEL}".into())),
        )
        .unwrap();
        let (_, plan) = validate(&ed).unwrap();
        assert!(plan.get("ring").is_some());
        assert_eq!(save(&ed).unwrap(), path);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), ed.text());
    }

    #[test]
    fn invalid_values_are_refused_with_their_key_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let original = example();
        std::fs::write(&path, &original).unwrap();

        let mut ed = Editor::open(&path).unwrap();
        ed.set(
            "cti.ring.template",
            Some(Value::Text("https://x/?q={NOPE}".into())),
        )
        .unwrap();
        let problems = save(&ed).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key.as_deref(), Some("cti.ring.template"));
        assert!(
            problems[0].message.contains("unknown parameter `{NOPE}`"),
            "{problems:?}"
        );
        let line = ed.text().lines().position(|l| l.contains("{NOPE}")).unwrap() + 1;
        // The column points at the `{` of the unknown parameter.
        let col = "template = \"https://x/?q=".len() + 1;
        assert!(
            problems[0].message.starts_with(&format!("{line}:{col}: ")),
            "{problems:?}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), original);

        let mut ed = Editor::open(&path).unwrap();
        ed.set("popup.size", Some(Value::Text("huge".into()))).unwrap();
        ed.set("cti.timeout_seconds", Some(Value::Int(0))).unwrap();
        ed.set(
            "audio.codecs",
            Some(Value::List(vec!["PCMU".into(), "GSM".into()])),
        )
        .unwrap();
        ed.set("media.rtp_timeout_seconds", Some(Value::Int(7200)))
            .unwrap();
        let problems = save(&ed).unwrap_err();
        let keys: Vec<Option<&str>> = problems.iter().map(|p| p.key.as_deref()).collect();
        assert_eq!(
            keys,
            vec![
                Some("cti.timeout_seconds"),
                Some("audio.codecs"),
                Some("media.rtp_timeout_seconds"),
                Some("popup.size")
            ],
            "{problems:?}"
        );
        assert!(problems[3].message.contains("huge"), "{problems:?}");
        assert!(problems[2].message.contains("7200"), "{problems:?}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), original);
    }
}
