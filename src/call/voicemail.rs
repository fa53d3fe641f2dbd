//! The voicemail light (RFC 3842): what a `message-summary` NOTIFY body says. Hostile bodies
//! (huge counts, junk lines, no `Messages-Waiting`) give a clear `None` or saturated figures,
//! never a panic.

/// The mailbox as the server reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mailbox {
    pub waiting: bool,
    /// New and old voice messages (`Voice-Message: new/old`), 0 when not given.
    pub new: u32,
    pub old: u32,
}

/// Reads an `application/simple-message-summary` body; `None` without the mandatory
/// `Messages-Waiting` line.
pub fn parse(body: &str) -> Option<Mailbox> {
    let mut waiting = None;
    let (mut new, mut old) = (0u32, 0u32);
    for line in body.lines().take(64) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "messages-waiting" => {
                waiting = match value.to_ascii_lowercase().as_str() {
                    "yes" => Some(true),
                    "no" => Some(false),
                    _ => None,
                }
            }
            "voice-message" => {
                // new/old [(urgent-new/urgent-old)]
                let counts = value.split_whitespace().next().unwrap_or("");
                if let Some((n, o)) = counts.split_once('/') {
                    new = count(n);
                    old = count(o);
                }
            }
            _ => {}
        }
    }
    Some(Mailbox {
        waiting: waiting?,
        new,
        old,
    })
}

/// A message count; digits beyond u32 saturate.
fn count(s: &str) -> u32 {
    let s = s.trim();
    if s.is_empty() || !s.chars().all(|c| c.is_ascii_digit()) {
        return 0;
    }
    s.parse().unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_3842_bodies() {
        let b = "Messages-Waiting: yes\r\nMessage-Account: sip:alice@vmail.example.com\r\nVoice-Message: 2/8 (0/2)\r\n";
        assert_eq!(
            parse(b),
            Some(Mailbox {
                waiting: true,
                new: 2,
                old: 8
            })
        );
        assert_eq!(
            parse("messages-waiting: no\n"),
            Some(Mailbox {
                waiting: false,
                new: 0,
                old: 0
            })
        );
    }

    #[test]
    fn hostile_bodies_give_none_or_saturate() {
        assert_eq!(parse(""), None);
        assert_eq!(parse("Voice-Message: 1/1\r\n"), None);
        assert_eq!(parse("Messages-Waiting: maybe\r\n"), None);
        let huge = parse("Messages-Waiting: yes\r\nVoice-Message: 99999999999999999999/-3\r\n").unwrap();
        assert_eq!((huge.new, huge.old), (u32::MAX, 0));
        let junk = "\u{1b}[2J\r\nMessages-Waiting: yes\r\nVoice-Message: x/y\r\n";
        assert_eq!(parse(junk).map(|m| (m.new, m.old)), Some((0, 0)));
    }
}
