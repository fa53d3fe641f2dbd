//! Response formats (CUS-2, CUS-4): capture rules that read variables from a CRM reply or a
//! command's standard output: `json:/pointer`, `regex:PATTERN` (one group), `line:KEY`
//! (`KEY=value` lines).

use std::collections::BTreeMap;

/// How one variable is read from a reply.
#[derive(Clone, Debug)]
pub enum Rule {
    Json(String),
    Regex(regex::Regex),
    Line(String),
}

/// One capture: a variable and its rule.
#[derive(Clone, Debug)]
pub struct Capture {
    pub var: String,
    pub rule: Rule,
}

impl Capture {
    /// Parses `json:/p`, `regex:PAT` or `line:KEY`; the error says what is expected.
    pub fn parse(var: &str, rule: &str) -> Result<Self, String> {
        let rule = if let Some(p) = rule.strip_prefix("json:") {
            if !(p.is_empty() || p.starts_with('/')) {
                return Err(format!(
                    "JSON pointer `{p}` must start with `/` (e.g. `json:/data/0/company`)"
                ));
            }
            Rule::Json(p.to_owned())
        } else if let Some(p) = rule.strip_prefix("regex:") {
            let re = regex::Regex::new(p).map_err(|e| {
                format!(
                    "invalid regular expression: {}",
                    crate::config::one_line(&e.to_string())
                )
            })?;
            if re.captures_len() < 2 {
                return Err(format!(
                    "regular expression `{p}` needs one capture group `( )` holding the value"
                ));
            }
            Rule::Regex(re)
        } else if let Some(k) = rule.strip_prefix("line:") {
            if k.is_empty() || k.contains('=') || k.contains('\n') {
                return Err("`line:` needs a key without `=` (it reads a `KEY=value` line)".to_owned());
            }
            Rule::Line(k.to_owned())
        } else {
            return Err(format!(
                "invalid capture rule `{rule}`, expected `json:/pointer`, `regex:PATTERN` or `line:KEY`"
            ));
        };
        Ok(Self {
            var: var.to_owned(),
            rule,
        })
    }

    /// Reads the variable from a reply body.
    pub fn apply(
        &self,
        body: &str,
        json: &mut Option<Result<serde_json::Value, String>>,
    ) -> Result<String, String> {
        match &self.rule {
            Rule::Json(pointer) => {
                let doc = json.get_or_insert_with(|| {
                    serde_json::from_str(body).map_err(|e| format!("the reply is not valid JSON ({e})"))
                });
                let doc = doc.as_ref().map_err(Clone::clone)?;
                match doc.pointer(pointer) {
                    None => Err(format!("JSON pointer `{pointer}` not found in the reply")),
                    Some(serde_json::Value::String(s)) => Ok(s.clone()),
                    Some(serde_json::Value::Null) => Ok(String::new()),
                    Some(v) => Ok(v.to_string()),
                }
            }
            Rule::Regex(re) => re
                .captures(body)
                .and_then(|c| c.get(1))
                .map(|m| m.as_str().to_owned())
                .ok_or_else(|| format!("regular expression `{}` did not match the reply", re.as_str())),
            Rule::Line(key) => body
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once('=')?;
                    (k.trim() == key).then(|| v.trim().to_owned())
                })
                .ok_or_else(|| format!("no `{key}=` line in the reply")),
        }
    }
}

/// Applies every capture; returns the values found and one message per capture that failed
/// (a reply that is not JSON at all is one message naming every `json:` capture).
pub fn apply_all(captures: &[Capture], body: &str) -> (BTreeMap<String, String>, Vec<String>) {
    let mut json = None;
    let mut vars = BTreeMap::new();
    let mut errors = Vec::new();
    // The captures the unparseable reply failed, and where their one message goes.
    let mut not_json: Vec<&str> = Vec::new();
    let mut not_json_at = 0;
    for c in captures {
        match c.apply(body, &mut json) {
            Ok(v) => {
                vars.insert(c.var.clone(), v);
            }
            Err(_) if matches!(c.rule, Rule::Json(_)) && matches!(json, Some(Err(_))) => {
                if not_json.is_empty() {
                    not_json_at = errors.len();
                }
                not_json.push(&c.var);
            }
            Err(e) => errors.push(format!("capture {}: {e}", c.var)),
        }
    }
    if let Some(Err(e)) = &json {
        errors.insert(not_json_at, format!("capture {}: {e}", not_json.join(", ")));
    }
    (vars, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_rule_kinds_read_values() {
        let caps = [
            Capture::parse("COMPANY", "json:/data/0/company").unwrap(),
            Capture::parse("N", "json:/n").unwrap(),
            Capture::parse("TOKEN", "regex:token=([a-z0-9]+)").unwrap(),
        ];
        let (v, e) = apply_all(
            &caps,
            r#"{"data":[{"company":"ACME 株式会社"}],"n":42,"x":"token=abc1"}"#,
        );
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(v["COMPANY"], "ACME 株式会社");
        assert_eq!(v["N"], "42");
        assert_eq!(v["TOKEN"], "abc1");
        let line = Capture::parse("SID", "line:session").unwrap();
        let (v, _) = apply_all(&[line], "ok\nsession = xyz\n");
        assert_eq!(v["SID"], "xyz");
    }

    #[test]
    fn failures_say_what_went_wrong() {
        let caps = [
            Capture::parse("A", "json:/a").unwrap(),
            Capture::parse("L", "line:l").unwrap(),
            Capture::parse("B", "json:/b").unwrap(),
        ];
        let (v, e) = apply_all(&caps, "{broken");
        assert!(v.is_empty());
        // A reply that is not JSON: said once for every `json:` capture.
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with("capture A, B: the reply is not valid JSON ("),
            "{e:?}"
        );
        assert_eq!(e[1], "capture L: no `l=` line in the reply");
        let (_, e) = apply_all(&caps[..1], "{broken");
        assert!(
            e[0].starts_with("capture A: the reply is not valid JSON"),
            "{e:?}"
        );
        let (_, e) = apply_all(&caps[..1], "{}");
        assert_eq!(e, vec!["capture A: JSON pointer `/a` not found in the reply"]);
    }

    #[test]
    fn bad_rules_are_refused_with_what_is_expected() {
        assert!(
            Capture::parse("A", "xpath://a")
                .unwrap_err()
                .contains("expected `json:/pointer`")
        );
        assert!(
            Capture::parse("A", "regex:abc")
                .unwrap_err()
                .contains("capture group")
        );
        assert!(
            Capture::parse("A", "regex:(")
                .unwrap_err()
                .contains("invalid regular expression")
        );
        assert!(
            Capture::parse("A", "json:a")
                .unwrap_err()
                .contains("must start with `/`")
        );
    }
}
