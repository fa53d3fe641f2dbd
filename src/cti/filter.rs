//! Which calls the integration runs for: the target setting (BAS-1), skipping internal calls
//! (BAS-2), the checked target numbers (TGT-1…3) and the system number (TGT-4).

use crate::app::{CallParams, Direction};
use crate::config::{Config, Target, TargetNumber};

/// The filter's settings, taken from the configuration.
#[derive(Clone, Debug)]
pub struct Filter {
    pub target: Target,
    pub skip_internal: bool,
    pub internal_pattern: regex::Regex,
    pub system_number: String,
    pub extension: String,
    pub numbers: Vec<TargetNumber>,
}

/// A number with spaces, hyphens, dots and parentheses removed.
pub fn normalize(number: &str) -> String {
    number
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect()
}

impl Filter {
    pub fn from_config(config: &Config) -> Self {
        Self {
            target: config.cti.target,
            skip_internal: config.cti.skip_internal,
            internal_pattern: config.cti.internal_pattern.clone(),
            system_number: config.cti.system_number.clone(),
            extension: config.account.extension.clone(),
            numbers: config.cti.numbers.clone(),
        }
    }

    fn checked(&self, number: &str) -> bool {
        let n = normalize(number);
        !n.is_empty()
            && self
                .numbers
                .iter()
                .any(|t| t.enabled && normalize(&t.number) == n)
    }

    /// `Ok` when CTI runs for this call, else the reason it is skipped.
    pub fn check(&self, params: &CallParams) -> Result<(), String> {
        if self.target == Target::None {
            return Err("integration target is `none`".to_owned());
        }
        let tel = params.tel.trim();
        match params.direction {
            Direction::Incoming => {
                if !self.system_number.is_empty() && normalize(tel) == normalize(&self.system_number) {
                    // TGT-4: monitoring calls pop up when the own extension is checked.
                    return if !self.extension.is_empty() && self.checked(&self.extension) {
                        Ok(())
                    } else {
                        Err(format!(
                            "call from the system number {tel}: the own extension is not a checked target number"
                        ))
                    };
                }
                if self.skip_internal && self.internal_pattern.is_match(tel) {
                    return Err(format!("internal call from {tel} (skip_internal)"));
                }
                if !self.checked(&params.called) {
                    return Err(format!(
                        "called number {} is not a checked target number",
                        params.called
                    ));
                }
                Ok(())
            }
            Direction::Outgoing => {
                if self.skip_internal && self.internal_pattern.is_match(tel) {
                    return Err(format!("internal call to {tel} (skip_internal)"));
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter() -> Filter {
        Filter {
            target: Target::Custom,
            skip_internal: true,
            internal_pattern: regex::Regex::new("^[0-9]{2,5}$").unwrap(),
            system_number: "9999".into(),
            extension: "201".into(),
            numbers: vec![
                TargetNumber {
                    number: "03-1234-5678".into(),
                    enabled: true,
                },
                TargetNumber {
                    number: "0312340000".into(),
                    enabled: false,
                },
                TargetNumber {
                    number: "201".into(),
                    enabled: true,
                },
            ],
        }
    }

    #[test]
    fn target_numbers_decide_incoming_calls() {
        let f = filter();
        assert!(
            f.check(&CallParams::incoming("1", "09011112222", "0312345678"))
                .is_ok()
        );
        let e = f
            .check(&CallParams::incoming("1", "09011112222", "0312340000"))
            .unwrap_err();
        assert!(e.contains("not a checked target number"));
        // TGT-3: calls to the own extension, when it is checked.
        assert!(f.check(&CallParams::incoming("1", "09011112222", "201")).is_ok());
    }

    #[test]
    fn internal_calls_are_skipped_but_the_system_number_follows_the_extension() {
        let mut f = filter();
        assert!(
            f.check(&CallParams::incoming("1", "305", "0312345678"))
                .unwrap_err()
                .contains("internal")
        );
        assert!(f.check(&CallParams::incoming("1", "9999", "201")).is_ok());
        f.numbers[2].enabled = false;
        assert!(
            f.check(&CallParams::incoming("1", "9999", "201"))
                .unwrap_err()
                .contains("system number")
        );
        f.skip_internal = false;
        assert!(f.check(&CallParams::incoming("1", "305", "0312345678")).is_ok());
    }

    #[test]
    fn target_none_skips_everything() {
        let mut f = filter();
        f.target = Target::None;
        assert!(f.check(&CallParams::outgoing("1", "0312345678")).is_err());
        f.target = Target::Custom;
        assert!(f.check(&CallParams::outgoing("1", "0312345678")).is_ok());
        assert!(f.check(&CallParams::outgoing("1", "305")).is_err());
    }
}
