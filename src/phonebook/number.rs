//! Phone numbers as the phonebook matches them: separators dropped, full-width digits made
//! ASCII, and numbers of the agent's own country written in their national form, so that
//! `+81 3-1234-5678`, `0081312345678` and `03 (1234) 5678` are one number.

use unicode_normalization::UnicodeNormalization;

/// How numbers of the agent's country are written ([`crate::config::PhonebookConfig`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Numbering {
    /// The country calling code, e.g. "81"; "" = no country rewriting.
    pub country_code: String,
    /// The international call prefix, e.g. "00" or "010".
    pub international_prefix: String,
    /// The national trunk prefix, e.g. "0".
    pub trunk_prefix: String,
}

impl Numbering {
    pub fn from_config(c: &crate::config::PhonebookConfig) -> Self {
        Self {
            country_code: c.country_code.clone(),
            international_prefix: c.international_prefix.clone(),
            trunk_prefix: c.trunk_prefix.clone(),
        }
    }

    /// The form a number is matched in. Digits only (with a leading `+` for numbers of
    /// other countries); something that is not a phone number (a SIP user name) is kept,
    /// lower-cased, without its separators.
    pub fn normalize(&self, raw: &str) -> String {
        // NFKC turns full-width digits and signs (０３－１２３４) into ASCII.
        let s: String = raw.trim().nfkc().collect();
        let s = s
            .strip_prefix("tel:")
            .or_else(|| s.strip_prefix("TEL:"))
            .unwrap_or(&s);
        // A tel: URI or a dial string may carry parameters: `;ext=`, `;phone-context=`.
        let s = s.split(';').next().unwrap_or(s);
        let kept: String = s
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.' | '/' | '\u{a0}' | '\t'))
            .collect();
        let (plus, digits) = match kept.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, kept.as_str()),
        };
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
            return kept.to_lowercase();
        }
        let international = if plus {
            Some(digits)
        } else if !self.international_prefix.is_empty() {
            digits.strip_prefix(self.international_prefix.as_str())
        } else {
            None
        };
        let Some(intl) = international else {
            return digits.to_owned();
        };
        if !self.country_code.is_empty()
            && let Some(national) = intl.strip_prefix(self.country_code.as_str())
        {
            // `+81 (0)3…` keeps its trunk prefix; `+81 3…` gets it.
            if national.starts_with(self.trunk_prefix.as_str()) {
                return national.to_owned();
            }
            return format!("{}{national}", self.trunk_prefix);
        }
        format!("+{intl}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn japan() -> Numbering {
        Numbering {
            country_code: "81".into(),
            international_prefix: "010".into(),
            trunk_prefix: "0".into(),
        }
    }

    #[test]
    fn the_forms_of_one_japanese_number_are_one_number() {
        let n = japan();
        for form in [
            "+81 3-1234-5678",
            "+81312345678",
            "+81 (0)3 1234 5678",
            "010 81 3 1234 5678",
            "03-1234-5678",
            "(03) 1234-5678",
            "0312345678",
            "０３－１２３４－５６７８",
            "tel:+81-3-1234-5678",
            "+81-3-1234-5678;ext=12",
        ] {
            assert_eq!(n.normalize(form), "0312345678", "{form}");
        }
    }

    #[test]
    fn other_countries_and_names_stay_apart() {
        let n = japan();
        assert_eq!(n.normalize("+1 (555) 010-0199"), "+15550100199");
        assert_eq!(n.normalize("010 1 555 0100199"), "+15550100199");
        assert_eq!(n.normalize("1001"), "1001");
        assert_eq!(n.normalize("Alice.Smith"), "alicesmith");
        assert_eq!(n.normalize(""), "");
        assert_eq!(n.normalize("+"), "+");
        // No country configured: separators only.
        let plain = Numbering::default();
        assert_eq!(plain.normalize("+81 3-1234-5678"), "+81312345678");
        assert_eq!(plain.normalize("03-1234-5678"), "0312345678");
    }
}
