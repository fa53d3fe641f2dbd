//! The compiled integration: every configured access checked and parsed once, at load
//! (templates, command words, bodies, capture rules), so nothing about a template can fail at
//! ring time. Problems come back as located [`Diagnostic`]s.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::time::Duration;

use crate::config::{AccessConfig, Config, Diagnostic, Method, content_origin};

use super::capture::Capture;
use super::template::{Node, Template, TemplateError};

/// Parameters that every template may use (spec §5, plus the history and recording ones).
pub const BUILTIN_PARAMS: &[&str] = &[
    "TEL",
    "TELNAME",
    "CALLED",
    "CALLEDNAME",
    "ID",
    "SVADDR",
    "AID",
    "APW",
    "EXT",
    "SFID",
    "SFSID",
    "SFAPI",
    "DATE-YYYY",
    "DATE-MM",
    "DATE-DD",
    "DATE-HH",
    "DATE-II",
    "DATE-SS",
    "COMPANY",
    "NAME",
    "EXT_ID",
    "CODE1",
    "CODE2",
    "REC_PATH",
    "REC_FILE",
    "DURATION",
    "RESULT",
    "STATUS",
    "REASON",
    "WRAPUP",
    "SECURE",
];

/// Built-in names a capture may set: the CRM values, and the agent-status names (configs
/// written before they existed may capture a `STATUS` of the CRM's own; in the `[cti.status]`
/// access the agent's values are used).
const CAPTURABLE: &[&str] = &[
    "COMPANY", "NAME", "EXT_ID", "CODE1", "CODE2", "STATUS", "REASON", "WRAPUP",
];

/// One access, ready to run.
#[derive(Clone, Debug)]
pub struct Access {
    pub name: &'static str,
    pub method: Method,
    /// The URL template (HTTP and browser methods).
    pub url: Option<Template>,
    /// The explicit body template (POST methods); without it the URL's query is the body.
    pub body: Option<Template>,
    /// One template per argument (command method); the first is the program.
    pub argv: Vec<Template>,
    pub captures: Vec<super::capture::Capture>,
    /// CUS-8.
    pub delay: Duration,
    /// CUS-10.
    pub only_if_answered: bool,
}

impl Access {
    /// Every parameter any part of the access uses.
    pub fn params(&self) -> BTreeSet<&str> {
        self.url
            .iter()
            .chain(self.body.iter())
            .chain(self.argv.iter())
            .flat_map(|t| t.params())
            .collect()
    }
}

/// The compiled custom integration.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub accesses: BTreeMap<&'static str, Access>,
    /// Variables the auth access captures: secrets (SAF-3), kept for the session.
    pub auth_vars: BTreeSet<String>,
    /// Variables the search access captures, kept per call.
    pub search_vars: BTreeSet<String>,
}

/// The whole check of a configuration text, as `ctiphone check-config` runs it: the file's
/// structure, then (unless the TOML itself is broken) every access's templates and captures.
/// Returns what could be read and every problem, in file order.
pub fn check(text: &str, path: Option<std::path::PathBuf>) -> (Config, Plan, Vec<Diagnostic>) {
    let (config, mut problems) = Config::parse_partial(text, path);
    let syntax = problems.iter().any(|p| p.message.starts_with("invalid TOML"));
    let plan = if syntax {
        Plan::default()
    } else {
        Plan::compile(&config).unwrap_or_else(|more| {
            problems.extend(more);
            Plan::default()
        })
    };
    crate::config::sort(&mut problems);
    (config, plan, problems)
}

impl Plan {
    pub fn get(&self, name: &str) -> Option<&Access> {
        self.accesses.get(name)
    }

    /// Checks and compiles every access of the configuration.
    pub fn compile(config: &Config) -> Result<Self, Vec<Diagnostic>> {
        let text = &config.source.text;
        let mut problems = Vec::new();
        let mut plan = Plan::default();
        // Capture variables first: they are parameters of every template.
        let mut user_vars = BTreeSet::new();
        for (name, access) in &config.cti.accesses {
            for var in access.captures.keys() {
                let v = var.get_ref();
                if !valid_var(v) {
                    problems.push(Diagnostic::at(
                        var.span(),
                        format!("invalid variable name `{v}`, expected letters, digits and `_`, starting with a letter"),
                    ));
                } else if BUILTIN_PARAMS.contains(&v.as_str()) && !CAPTURABLE.contains(&v.as_str()) {
                    problems.push(Diagnostic::at(
                        var.span(),
                        format!("`{v}` is a call parameter and cannot be captured, expected a new name or one of COMPANY, NAME, EXT_ID, CODE1, CODE2, STATUS, REASON, WRAPUP"),
                    ));
                }
                user_vars.insert(v.clone());
                match name.as_str() {
                    "auth" => plan.auth_vars.insert(v.clone()),
                    _ => plan.search_vars.insert(v.clone()),
                };
            }
        }
        let known = |n: &str| BUILTIN_PARAMS.contains(&n) || user_vars.contains(n);
        for (name, cfg) in &config.cti.accesses {
            let Some(&name) = crate::config::ACCESS_NAMES.iter().find(|n| **n == name.as_str()) else {
                continue;
            };
            if let Some(access) = compile_access(name, cfg, text, &known, &mut problems) {
                plan.accesses.insert(name, access);
            }
        }
        if problems.is_empty() {
            Ok(plan)
        } else {
            Err(problems)
        }
    }
}

fn valid_var(v: &str) -> bool {
    let mut chars = v.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn compile_access(
    name: &'static str,
    cfg: &AccessConfig,
    text: &str,
    known: &dyn Fn(&str) -> bool,
    problems: &mut Vec<Diagnostic>,
) -> Option<Access> {
    let method = *cfg.method.get_ref();
    let tpl = cfg.template.get_ref();
    let tspan = cfg.template.span();
    let before = problems.len();
    let mut access = Access {
        name,
        method,
        url: None,
        body: None,
        argv: Vec::new(),
        captures: Vec::new(),
        // `nan` is valid TOML: it is reported by the config check, and must not panic here.
        delay: Duration::try_from_secs_f64(cfg.delay_seconds().clamp(0.0, 3600.0)).unwrap_or(Duration::ZERO),
        only_if_answered: cfg.only_if_answered(),
    };
    if tpl.trim().is_empty() {
        problems.push(Diagnostic::at(
            tspan.clone(),
            format!("`[cti.{name}]` has an empty `template`"),
        ));
        return None;
    }
    if method == Method::Command {
        match shell_words::split(tpl) {
            Err(_) => problems.push(Diagnostic::at(
                tspan.clone(),
                "the command line has an unclosed quote, expected matching `'` or `\"`",
            )),
            Ok(words) => {
                for (i, word) in words.iter().enumerate() {
                    // Locate the word in the template when it is written there verbatim.
                    let shift = tpl.find(word.as_str());
                    match Template::parse(word, known) {
                        Ok(t) => {
                            if i == 0 && t.nodes().iter().any(|n| !matches!(n, Node::Text(_))) {
                                problems.push(Diagnostic::at(
                                    tspan.clone(),
                                    "the program (first word of the command) must be written literally, expected a path, not a parameter or function",
                                ));
                            }
                            access.argv.push(t);
                        }
                        Err(errs) => located(errs, text, &tspan, tpl, shift, problems),
                    }
                }
            }
        }
    } else {
        match Template::parse(tpl, known) {
            Ok(t) => {
                let starts_ok = match t.nodes().first() {
                    Some(Node::Text(s)) => s.starts_with("http://") || s.starts_with("https://"),
                    Some(Node::Param(p)) => p == "SVADDR",
                    _ => false,
                };
                if !starts_ok {
                    problems.push(Diagnostic::at(
                        tspan.clone(),
                        format!("method `{}` needs a URL, expected the template to start with `http://`, `https://` or `{{SVADDR}}`", method.name()),
                    ));
                }
                access.url = Some(t);
            }
            Err(errs) => located(errs, text, &tspan, tpl, Some(0), problems),
        }
    }
    if let Some(body) = &cfg.body {
        match Template::parse(body.get_ref(), known) {
            Ok(t) => access.body = Some(t),
            Err(errs) => located(errs, text, &body.span(), body.get_ref(), Some(0), problems),
        }
    }
    if method.is_browser() && !cfg.captures.is_empty() {
        problems.push(Diagnostic::at(
            tspan,
            format!(
                "`captures` need a reply, and method `{}` has none, expected `get`, `post` or `command`",
                method.name()
            ),
        ));
    }
    for (var, rule) in &cfg.captures {
        match Capture::parse(var.get_ref(), rule.get_ref()) {
            Ok(c) => access.captures.push(c),
            Err(e) => problems.push(Diagnostic::at(
                rule.span(),
                format!("capture `{}`: {e}", var.get_ref()),
            )),
        }
    }
    (problems.len() == before).then_some(access)
}

/// Turns template errors into file diagnostics, pointing inside the string where possible.
fn located(
    errs: Vec<TemplateError>,
    text: &str,
    span: &Range<usize>,
    value: &str,
    shift: Option<usize>,
    problems: &mut Vec<Diagnostic>,
) {
    let origin = content_origin(text, span, value);
    for e in errs {
        let at = match (origin, shift) {
            (Some(o), Some(s)) => o + s + e.offset,
            _ => span.start,
        };
        problems.push(Diagnostic::at(at..at + 1, format!("template: {}", e.message)));
    }
}
