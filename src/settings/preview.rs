//! The Custom integration pane's live preview: a template expanded for a sample call, with the
//! configuration's identity and the CTI engine's parameters and encoders.

use std::collections::BTreeSet;

use crate::app::CallParams;
use crate::config::{Config, Method};
use crate::cti::plan::BUILTIN_PARAMS;
use crate::cti::template::{self, Template};
use crate::cti::vars::{Identity, Vars};

/// The sample call of [`preview`]: {TEL}.
pub const SAMPLE_TEL: &str = "0312345678";
/// {TELNAME} of the sample call.
pub const SAMPLE_TELNAME: &str = "山田 太郎";
/// {CALLED} of the sample call.
pub const SAMPLE_CALLED: &str = "0120000111";
/// {ID} of the sample call.
pub const SAMPLE_ID: &str = "sample-call";

/// The expansion of `template` for a sample call, for the Custom integration pane's live
/// preview: raw text, secrets masked, or the template error with its position. `method` picks
/// the context (a `command` template shows its argv words joined with " | ").
///
/// The sample call: {TEL} 0312345678, {TELNAME} 山田 太郎, {CALLED} 0120000111, {ID}
/// sample-call, now; {AID}, {APW} (masked), {EXT} and {SVADDR} from the configuration; the auth
/// access's captures masked, the search's empty.
pub fn preview(config: &Config, method: Method, template: &str) -> Result<String, String> {
    let mut captured = BTreeSet::new();
    let mut secret = BTreeSet::new();
    for (name, access) in &config.cti.accesses {
        for var in access.captures.keys() {
            captured.insert(var.get_ref().clone());
            if name == "auth" {
                secret.insert(var.get_ref().clone());
            }
        }
    }
    let known = |n: &str| BUILTIN_PARAMS.contains(&n) || captured.contains(n);
    let mut params = CallParams::incoming(SAMPLE_ID, SAMPLE_TEL, SAMPLE_CALLED);
    params.telname = SAMPLE_TELNAME.to_owned();
    let mut vars = Vars::new(
        &Identity::from_config(config),
        &params,
        chrono::Local::now().naive_local(),
    );
    for v in &secret {
        vars.set(v, "", true);
    }
    let errors = |errs: Vec<template::TemplateError>| {
        errs.into_iter().map(|e| e.message).collect::<Vec<_>>().join("; ")
    };
    // Errors are reported against the template as written, positions included.
    let whole = Template::parse(template, &known).map_err(errors)?;
    if method != Method::Command {
        return Ok(template::raw(&whole.pieces(&vars), true));
    }
    let words = shell_words::split(template)
        .map_err(|_| "the command line has an unclosed quote, expected matching `'` or `\"`".to_owned())?;
    let mut shown = Vec::with_capacity(words.len());
    for (i, word) in words.iter().enumerate() {
        let t = Template::parse(word, &known).map_err(|e| format!("word {}: {}", i + 1, errors(e)))?;
        shown.push(template::raw(&t.pieces(&vars), true));
    }
    Ok(shown.join(" | "))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::edit::Editor;

    fn config() -> Config {
        let ed = Editor::from_text(
            &super::super::tests::example(),
            PathBuf::from("/nonexistent/c.toml"),
        )
        .unwrap();
        super::super::validate(&ed).unwrap().0
    }

    #[test]
    fn preview_expands_a_sample_call_with_secrets_masked() {
        let config = config();
        let got = preview(
            &config,
            Method::Get,
            "{SVADDR}x?tel={TEL}&n={TELNAME}&c={CALLED}&id={ID}&a={AID}&pw={APW}&t={TOKEN}&e={EXT}",
        )
        .unwrap();
        assert_eq!(
            got,
            "https://crm.example:8000/x?tel=0312345678&n=山田 太郎&c=0120000111&id=sample-call&a=agent201&pw=***&t=***&e=201"
        );
        let got = preview(
            &config,
            Method::Command,
            "/usr/bin/logger -t 'cti x' -- {TEL} {TELNAME}",
        )
        .unwrap();
        assert_eq!(got, "/usr/bin/logger | -t | cti x | -- | 0312345678 | 山田 太郎");
        let err = preview(&config, Method::BrowserGet, "https://x/?q={NOPE}").unwrap_err();
        assert!(err.contains("unknown parameter `{NOPE}` at position 14"), "{err}");
        let err = preview(&config, Method::Command, "/bin/echo MD5({TEL}").unwrap_err();
        assert!(err.contains("position 14"), "{err}");
        assert!(preview(&config, Method::Command, "/bin/echo 'x").is_err());
        assert!(
            preview(&config, Method::Get, "https://x/?h=MD5({APW})")
                .unwrap()
                .ends_with("h=***")
        );
    }
}
