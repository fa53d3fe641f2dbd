//! Where the central log is and how to reach it: `[history] central`, a `postgresql://` URL
//! (no password in it: `central_password_command` prints it), `sslmode` (`disable`, `prefer`
//! — the default —, `require`, `verify-ca`, `verify-full`) and `sslrootcert` (a PEM file; else
//! the system's trust store). Over TLS the server's certificate is always verified, chain and
//! host name, whatever the mode says (rustls does not skip it): `require` is as strict as
//! `verify-full`. Connections time out after 10 s and send TCP keepalives, so an unreachable
//! or silent server is noticed, never waited on forever.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::config::SslMode;

use super::tls::LazyTls;

/// How long a connection attempt may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A checked central-log target.
#[derive(Clone, Debug)]
pub struct Target {
    config: tokio_postgres::Config,
    /// The URL as written, for messages (it holds no password).
    pub shown: String,
    ssl: SslMode,
    password_command: String,
    /// The TLS settings, built at the first handshake (the system's trust store is read
    /// once, and only when the server takes TLS).
    tls: LazyTls,
}

/// Parses and checks `url` (errors name what is wrong, never a password).
pub fn parse(url: &str, password_command: &str) -> Result<Target, String> {
    let url = url.trim();
    let rest = url
        .strip_prefix("postgresql://")
        .or_else(|| url.strip_prefix("postgres://"))
        .ok_or("expected a URL such as \"postgresql://user@host/db\"")?;
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("expected a URL without spaces or control characters".into());
    }
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    if let Some((userinfo, _)) = authority.rsplit_once('@')
        && userinfo.contains(':')
    {
        return Err(
            "the URL holds a password: put it in no file, give `central_password_command` instead".into(),
        );
    }
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, q),
        None => (url, ""),
    };
    let mut ssl = SslMode::Prefer;
    let mut rootcert = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "sslmode" => {
                ssl = match v {
                    "disable" => SslMode::Disable,
                    "prefer" | "allow" => SslMode::Prefer,
                    "require" | "verify-ca" | "verify-full" => SslMode::Require,
                    other => {
                        return Err(format!(
                            "sslmode `{other}`: expected disable, prefer, require, verify-ca or verify-full"
                        ));
                    }
                }
            }
            "sslrootcert" => {
                let path = percent_encoding::percent_decode_str(v)
                    .decode_utf8_lossy()
                    .into_owned();
                rootcert = Some(std::path::PathBuf::from(path));
            }
            "password" => {
                return Err("the URL holds a password: give `central_password_command` instead".into());
            }
            _ => kept.push(pair),
        }
    }
    let cleaned = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let mut config: tokio_postgres::Config = cleaned.parse().map_err(|e| describe(&e))?;
    if config.get_hosts().is_empty() {
        return Err("the URL names no host, expected \"postgresql://user@host/db\"".into());
    }
    if config.get_user().is_none() {
        return Err("the URL names no user, expected \"postgresql://user@host/db\"".into());
    }
    config.ssl_mode(ssl);
    config.connect_timeout(CONNECT_TIMEOUT);
    config.keepalives(true);
    config.keepalives_idle(Duration::from_secs(30));
    if config.get_application_name().is_none() {
        config.application_name("ctiphone");
    }
    Ok(Target {
        config,
        shown: url.to_owned(),
        ssl,
        password_command: password_command.trim().to_owned(),
        tls: LazyTls::new(rootcert),
    })
}

impl Target {
    /// Connects (running `central_password_command` first when there is one); the
    /// connection's task runs on the current runtime until the client is dropped or the
    /// server goes away.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, String> {
        self.open(None).await
    }

    /// Connects and listens on `channel`: each notification's payload comes out of the
    /// receiver, which closes when the connection ends (the server went away or the client
    /// was dropped).
    pub async fn listen(
        &self,
        channel: &str,
    ) -> Result<(tokio_postgres::Client, mpsc::UnboundedReceiver<String>), String> {
        let (tx, rx) = mpsc::unbounded_channel();
        let client = self.open(Some(tx)).await?;
        // The channel is a constant of ours, quoted as an identifier all the same.
        let sql = format!("LISTEN \"{}\"", channel.replace('"', "\"\""));
        client.batch_execute(&sql).await.map_err(|e| describe(&e))?;
        Ok((client, rx))
    }

    async fn open(
        &self,
        notes: Option<mpsc::UnboundedSender<String>>,
    ) -> Result<tokio_postgres::Client, String> {
        let mut config = self.config.clone();
        if !self.password_command.is_empty() {
            let pw = crate::call::config::run_secret_command(
                "[history] central_password_command",
                &self.password_command,
            )
            .await?;
            config.password(pw);
        }
        let connecting = async {
            if self.ssl == SslMode::Disable {
                let (client, conn) = config
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map_err(|e| describe(&e))?;
                drive(conn, notes);
                Ok(client)
            } else {
                let (client, conn) = config.connect(self.tls.clone()).await.map_err(|e| describe(&e))?;
                drive(conn, notes);
                Ok(client)
            }
        };
        tokio::time::timeout(CONNECT_TIMEOUT + Duration::from_secs(2), connecting)
            .await
            .map_err(|_| format!("no answer from {} in {} s", self.shown, CONNECT_TIMEOUT.as_secs()))?
    }
}

/// Runs a connection on its own task until it ends. With `notes`, its messages are read one
/// by one (`poll_message`) and notifications' payloads sent there; the sender is dropped
/// when the connection ends, which is how a listener learns it is gone.
fn drive<S, T>(mut conn: tokio_postgres::Connection<S, T>, notes: Option<mpsc::UnboundedSender<String>>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let Some(notes) = notes else {
            let _ = conn.await;
            return;
        };
        while let Some(m) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
            match m {
                Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                    // A listener gone is no reason to end the connection: its client may
                    // still be in use.
                    let _ = notes.send(n.payload().to_owned());
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!("central log: connection ended: {}", describe(&e));
                    break;
                }
            }
        }
    });
}

/// A PostgreSQL error with its server message when there is one (tokio-postgres's own
/// `Display` says only "db error").
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(inner) = src {
                s.push_str(": ");
                s.push_str(&inner.to_string());
                src = inner.source();
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        let t = parse("postgresql://agent@db.example:5433/cc?sslmode=verify-full", "").unwrap();
        assert_eq!(t.ssl, SslMode::Require);
        assert_eq!(t.config.get_user(), Some("agent"));
        assert_eq!(t.config.get_dbname(), Some("cc"));
        assert_eq!(t.config.get_ports(), [5433]);
        assert_eq!(parse("postgres://a@h/d", "").unwrap().ssl, SslMode::Prefer);
        assert_eq!(
            parse("postgres://a@h/d?sslmode=disable", "").unwrap().ssl,
            SslMode::Disable
        );
        for (bad, why) in [
            ("mysql://a@h/d", "expected a URL"),
            ("postgresql://a:secret@h/d", "password"),
            ("postgresql://a@h/d?password=secret", "password"),
            ("postgresql://a@h/d?sslmode=maybe", "sslmode `maybe`"),
            ("postgresql://a@h/d?bogus=1", "bogus"),
            ("postgresql://a@h/d x", "spaces"),
            ("postgresql://h/d", "no user"),
        ] {
            let e = parse(bad, "").expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
            assert!(
                !e.contains("secret"),
                "{bad}: the password is in the message: {e}"
            );
        }
    }
}
