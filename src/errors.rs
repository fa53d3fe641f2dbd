//! Errors as people read them: an error followed by its causes on one line, each cause
//! that adds something (a TLS alert, the OS error under an I/O error), for logs and events.

/// `e` and its sources, joined by `: `, a cause left out when the text so far already says it.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error with a message and an optional cause.
    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);

    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for E {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn causes_join_on_one_line_without_repeats() {
        let alert = E("invalid peer certificate: Expired", None);
        let tls = E("TLS handshake failed", Some(Box::new(alert)));
        let connect = E("cannot connect to 127.0.0.1:5061", Some(Box::new(tls)));
        assert_eq!(
            chain(&connect),
            "cannot connect to 127.0.0.1:5061: TLS handshake failed: invalid peer certificate: Expired"
        );
        // A cause the text already says is not repeated.
        let inner = E("refused", None);
        let outer = E("connect: refused", Some(Box::new(inner)));
        assert_eq!(chain(&outer), "connect: refused");
    }
}
