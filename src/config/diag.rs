//! Configuration diagnostics: a problem found in a config file, located by byte span and
//! rendered as `FILE:LINE:COL: message`.

use std::fmt;
use std::ops::Range;

/// One problem in a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// Byte range in the file's text; `None` when the problem has no place (a missing file).
    pub span: Option<Range<usize>>,
    /// What is wrong and what is expected.
    pub message: String,
}

impl Diagnostic {
    pub fn at(span: Range<usize>, message: impl Into<String>) -> Self {
        Self {
            span: Some(span),
            message: message.into(),
        }
    }

    pub fn nowhere(message: impl Into<String>) -> Self {
        Self {
            span: None,
            message: message.into(),
        }
    }

    /// Renders the diagnostic against the file's name and text.
    pub fn render(&self, file: &str, text: &str) -> String {
        match &self.span {
            Some(span) => {
                let (line, col) = line_col(text, span.start);
                format!("{file}:{line}:{col}: {}", self.message)
            }
            None => format!("{file}: {}", self.message),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

/// All the problems found in one file, rendered one per line.
#[derive(Clone, Debug)]
pub struct ConfigError {
    pub file: String,
    pub text: String,
    pub problems: Vec<Diagnostic>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            f.write_str(&p.render(&self.file, &self.text))?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_are_one_based_and_count_characters() {
        let text = "a = 1\n# 日本\nbad = x\n";
        assert_eq!(line_col(text, 0), (1, 1));
        let off = text.find("bad").unwrap();
        assert_eq!(line_col(text, off), (3, 1));
        let off = text.find('x').unwrap();
        assert_eq!(line_col(text, off), (3, 7));
        let off = text.find('本').unwrap();
        assert_eq!(line_col(text, off), (2, 4));
    }
}
