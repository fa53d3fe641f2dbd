//! Running one access: the five methods (MET-1…5). HTTP GET/POST through reqwest with the
//! reply kept for captures; OS commands spawned directly with their argv in their own process
//! group and killed with it at the timeout; browser methods handed to `$BROWSER` or
//! `xdg-open` (a POST as a one-shot page of the loopback [`FormServer`]), or returned as a
//! link when there is no graphical session. Every access is bounded by the integration
//! timeout (BAS-4).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::AsyncReadExt;

use crate::app::ActionReport;
use crate::config::Method;
use crate::private::AgentUmask as _;

use super::capture::apply_all;
use super::form_server::{FormPage, FormServer, PAGE_KEEP};
use super::plan::Access;
use super::template::{self, DataError, Lookup};

/// Replies and command output are read up to this size; larger ones cannot be captured.
pub const MAX_REPLY: usize = 1024 * 1024;
/// Where the form page server listens unless `[cti] form_listen` pins it: a free port.
pub const FORM_LISTEN: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// How browser methods reach a browser.
#[derive(Clone, Debug)]
pub struct BrowserEnv {
    /// A graphical session is available (DISPLAY or WAYLAND_DISPLAY, and not over SSH).
    pub graphical: bool,
    /// The browser command: `$BROWSER` split into words, else `xdg-open`.
    pub command: Vec<String>,
}

impl BrowserEnv {
    /// Reads the process environment.
    pub fn from_env() -> Self {
        let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
        let graphical = (set("DISPLAY") || set("WAYLAND_DISPLAY")) && !set("SSH_CONNECTION");
        let command = std::env::var("BROWSER")
            .ok()
            .and_then(|b| shell_words::split(&b).ok())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| vec!["xdg-open".to_owned()]);
        Self { graphical, command }
    }
}

/// The result of one access: its report and what it captured.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub report: ActionReport,
    pub captured: BTreeMap<String, String>,
}

/// Runs accesses. Cheap to share: one HTTP connection pool for the whole engine.
#[derive(Debug)]
pub struct Runner {
    /// Built on first use: a phone whose integration never calls HTTP never loads TLS roots.
    http: std::sync::OnceLock<reqwest::Client>,
    pub timeout: Duration,
    browser: BrowserEnv,
    /// `[cti] form_listen`: the page server's address when the admin pinned it.
    form_listen: Option<SocketAddr>,
    /// The browser_post page server, started by the first browser_post.
    forms: tokio::sync::Mutex<Option<FormServer>>,
}

/// What one access sends, built from its templates.
enum Request {
    Http {
        post: bool,
        url: String,
        body: Option<String>,
    },
    Browser {
        post: bool,
        url: String,
        body: Option<String>,
    },
    Command {
        argv: Vec<String>,
    },
}

impl Runner {
    /// A runner; `form_listen` pins the address of the browser_post page server (else a
    /// free port of 127.0.0.1).
    pub fn new(timeout: Duration, browser: BrowserEnv, form_listen: Option<SocketAddr>) -> Self {
        Self {
            http: std::sync::OnceLock::new(),
            timeout,
            browser,
            form_listen,
            forms: tokio::sync::Mutex::new(None),
        }
    }

    /// Waits until every browser_post page was fetched or expired (at most [`PAGE_KEEP`]),
    /// then stops the page server.
    pub async fn shutdown(&self) {
        let server = self.forms.lock().await.take();
        if let Some(s) = server {
            s.stop().await;
        }
    }

    /// Offers a browser_post page on the page server, starting it if needed; the page's URL.
    async fn offer_form(&self, action: &str, body: &str) -> Result<String, String> {
        let page = FormPage::new(action, body)?;
        let mut server = self.forms.lock().await;
        let server = match &mut *server {
            Some(s) => s,
            empty => {
                let listen = self.form_listen.unwrap_or(FORM_LISTEN);
                let started = FormServer::start(listen, PAGE_KEEP)
                    .await
                    .map_err(|e| format!("cannot serve the form page on {listen}: {e}"))?;
                empty.insert(started)
            }
        };
        Ok(server.offer(page))
    }

    /// Builds what the access sends, once with real values and once masked for reports.
    fn build(access: &Access, vars: &dyn Lookup, mask: bool) -> Result<Request, DataError> {
        let post = access.method.is_post();
        let url_and_body = || -> Result<(String, Option<String>), DataError> {
            let pieces = access.url.as_ref().map(|t| t.pieces(vars)).unwrap_or_default();
            if !post {
                return Ok((template::url(&pieces, mask)?, None));
            }
            match &access.body {
                Some(b) => Ok((
                    template::url(&pieces, mask)?,
                    Some(template::form_body(&b.pieces(vars), mask)),
                )),
                None => {
                    let (before, query) = template::split_query(&pieces);
                    Ok((
                        template::url(&before, mask)?,
                        Some(template::form_body(&query, mask)),
                    ))
                }
            }
        };
        Ok(match access.method {
            Method::Get | Method::Post => {
                let (url, body) = url_and_body()?;
                Request::Http { post, url, body }
            }
            Method::BrowserGet | Method::BrowserPost => {
                let (url, body) = url_and_body()?;
                Request::Browser { post, url, body }
            }
            Method::Command => Request::Command {
                argv: access
                    .argv
                    .iter()
                    .map(|w| template::raw(&w.pieces(vars), mask))
                    .collect(),
            },
        })
    }

    /// Runs one access with these values. Never panics and never takes longer than the
    /// timeout plus the time to kill a command.
    pub async fn run(&self, access: &Access, vars: &dyn Lookup) -> Outcome {
        let start = Instant::now();
        let mut report = ActionReport {
            access: access.name.to_owned(),
            method: access.method.name().to_owned(),
            target: serde_json::Value::Null,
            ok: false,
            status: None,
            ms: 0,
            error: None,
            link: None,
        };
        let mut captured = BTreeMap::new();
        let built =
            Self::build(access, vars, false).and_then(|real| Ok((real, Self::build(access, vars, true)?)));
        let (real, shown) = match built {
            Ok(pair) => pair,
            Err(DataError(e)) => {
                report.error = Some(format!("not sent: {e}"));
                report.ms = elapsed_ms(start);
                return Outcome { report, captured };
            }
        };
        report.target = match &shown {
            Request::Http { url, body, .. } | Request::Browser { url, body, .. } => match body {
                Some(b) => json!({ "url": url, "body": b }),
                None => json!(url),
            },
            Request::Command { argv } => json!(argv),
        };
        let result = match real {
            Request::Http { post, url, body } => self.http(post, &url, body).await,
            Request::Command { argv } => self.command(&argv).await,
            Request::Browser { post, url, body } => {
                let (shown_url, secret) = match &shown {
                    Request::Browser { url, body, .. } => (
                        url.clone(),
                        url.contains(template::MASK)
                            || body.as_deref().is_some_and(|b| b.contains(template::MASK)),
                    ),
                    _ => (String::new(), false),
                };
                self.browser(post, url, body, (shown_url, secret), &mut report)
                    .await
            }
        };
        match result {
            Ok((status, body)) => {
                report.status = status;
                report.ok = true;
                if !access.captures.is_empty() {
                    match body {
                        Some(Reply::Whole(bytes)) => {
                            let text = String::from_utf8_lossy(&bytes);
                            let (vals, errors) = apply_all(&access.captures, &text);
                            captured = vals;
                            if !errors.is_empty() {
                                report.ok = false;
                                report.error = Some(errors.join("; "));
                            }
                        }
                        Some(Reply::TooLarge) => {
                            report.ok = false;
                            report.error = Some(format!(
                                "capture: the reply is larger than {} KiB, not read",
                                MAX_REPLY / 1024
                            ));
                        }
                        None => {}
                    }
                }
            }
            Err((status, e)) => {
                report.status = status;
                report.error = Some(e);
            }
        }
        report.ms = elapsed_ms(start);
        Outcome { report, captured }
    }

    fn client(&self) -> &reqwest::Client {
        self.http.get_or_init(|| {
            crate::http_client::builder()
                .user_agent(concat!("ctiphone/", env!("CARGO_PKG_VERSION")))
                .redirect(reqwest::redirect::Policy::limited(10))
                .connect_timeout(self.timeout)
                .build()
                .unwrap_or_default()
        })
    }

    async fn http(&self, post: bool, url: &str, body: Option<String>) -> RunResult {
        let client = self.client();
        let req = if post {
            client
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body.unwrap_or_default())
        } else {
            client.get(url)
        };
        // How far the reply came, for the timeout's message: none yet (-1), else its bytes.
        let progress = std::sync::atomic::AtomicI64::new(-1);
        let work = async {
            // Errors never carry the URL: it may hold secrets (SAF-3) and the report has it masked.
            let mut resp = req.send().await.map_err(|e| (None, http_error(e)))?;
            progress.store(0, std::sync::atomic::Ordering::Relaxed);
            let status = resp.status();
            let code = Some(i64::from(status.as_u16()));
            let mut buf = Vec::new();
            let mut too_large = false;
            while let Some(chunk) = resp.chunk().await.map_err(|e| (code, http_error(e)))? {
                if buf.len() + chunk.len() > MAX_REPLY {
                    too_large = true;
                    break;
                }
                buf.extend_from_slice(&chunk);
                progress.store(
                    i64::try_from(buf.len()).unwrap_or(i64::MAX),
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
            if !status.is_success() {
                return Err((code, format!("HTTP {status}")));
            }
            Ok((
                code,
                Some(if too_large {
                    Reply::TooLarge
                } else {
                    Reply::Whole(buf)
                }),
            ))
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r,
            Err(_) => {
                let why = match progress.load(std::sync::atomic::Ordering::Relaxed) {
                    n if n < 0 => "no answer".to_owned(),
                    1 => "the reply was still coming after 1 byte".to_owned(),
                    n => format!("the reply was still coming after {n} bytes"),
                };
                Err((None, format!("timeout after {} s: {why}", fmt_secs(self.timeout))))
            }
        }
    }

    async fn command(&self, argv: &[String]) -> RunResult {
        let Some((program, args)) = argv.split_first() else {
            return Err((None, "empty command".to_owned()));
        };
        if let Some(bad) = argv.iter().position(|a| a.contains('\0')) {
            return Err((None, format!("argument {bad} holds a NUL byte; not run")));
        }
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .agent_umask()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| (None, format!("cannot run `{program}`: {e}")))?;
        let pid = child.id();
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let work = async {
            let out = async {
                let mut buf = Vec::new();
                if let Some(s) = stdout.as_mut() {
                    let _ = s.take(MAX_REPLY as u64 + 1).read_to_end(&mut buf).await;
                }
                buf
            };
            let err = async {
                let mut buf = Vec::new();
                if let Some(s) = stderr.as_mut() {
                    let _ = s.take(4096).read_to_end(&mut buf).await;
                }
                buf
            };
            let (out, err) = tokio::join!(out, err);
            let status = child.wait().await;
            (out, err, status)
        };
        let result = tokio::time::timeout(self.timeout, work).await;
        // The group goes in every case: nothing the command started outlives its access.
        if let Some(pid) = pid {
            kill_group(pid);
        }
        match result {
            Err(_) => Err((
                None,
                format!("timeout after {} s; command killed", fmt_secs(self.timeout)),
            )),
            Ok((_, _, Err(e))) => Err((None, format!("cannot wait for `{program}`: {e}"))),
            Ok((out, err, Ok(status))) => {
                let code = status.code().map(i64::from);
                if status.success() {
                    let reply = if out.len() > MAX_REPLY {
                        Reply::TooLarge
                    } else {
                        Reply::Whole(out)
                    };
                    Ok((code, Some(reply)))
                } else {
                    let first = String::from_utf8_lossy(&err)
                        .lines()
                        .next()
                        .unwrap_or("")
                        .to_owned();
                    let why = match code {
                        Some(c) => format!("exit code {c}"),
                        None => "killed by a signal".to_owned(),
                    };
                    Err((
                        code,
                        if first.is_empty() {
                            why
                        } else {
                            format!("{why}: {first}")
                        },
                    ))
                }
            }
        }
    }

    async fn browser(
        &self,
        post: bool,
        url: String,
        body: Option<String>,
        (shown_url, secret): (String, bool),
        report: &mut ActionReport,
    ) -> RunResult {
        if !self.browser.graphical {
            // No browser here (an SSH session): the result is the link for the popup.
            if post && self.form_listen.is_some() {
                // The admin pinned the page server's port to forward it (`ssh -L`): the link
                // is the one-shot page, a real POST whose URL holds no value at all.
                let link = self
                    .offer_form(&url, body.as_deref().unwrap_or(""))
                    .await
                    .map_err(|e| (None, e))?;
                report.link = Some(link);
                return Ok((None, None));
            }
            // Else a POST becomes a GET of the URL with the form as its query: a port picked at
            // random cannot be forwarded beforehand.
            let link = if post {
                match body.as_deref() {
                    Some(b) if !b.is_empty() => format!("{url}?{b}"),
                    _ => url,
                }
            } else {
                url
            };
            if secret {
                report.link = Some(shown_url);
                return Err((
                    None,
                    "no graphical session, and the link would hold a secret: not shown".to_owned(),
                ));
            }
            report.link = Some(link);
            return Ok((None, None));
        }
        let target = if post {
            self.offer_form(&url, body.as_deref().unwrap_or(""))
                .await
                .map_err(|e| (None, e))?
        } else {
            url
        };
        let mut argv = self.browser.command.clone();
        match argv.iter_mut().find(|w| w.contains("%s")) {
            Some(w) => *w = w.replace("%s", &target),
            None => argv.push(target),
        }
        let Some((program, args)) = argv.split_first() else {
            return Err((None, "no browser command".to_owned()));
        };
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .agent_umask()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| (None, format!("cannot start the browser `{program}`: {e}")))?;
        match tokio::time::timeout(self.timeout, child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok((status.code().map(i64::from), None)),
            Ok(Ok(status)) => {
                let code = status.code().map(i64::from);
                Err((code, format!("the browser `{program}` failed ({status})")))
            }
            Ok(Err(e)) => Err((None, format!("cannot wait for the browser: {e}"))),
            Err(_) => {
                // A browser that stays in the foreground is fine: reap it whenever it exits.
                tokio::spawn(async move {
                    let _ = child.wait().await;
                });
                Ok((None, None))
            }
        }
    }
}

enum Reply {
    Whole(Vec<u8>),
    TooLarge,
}

type RunResult = Result<(Option<i64>, Option<Reply>), (Option<i64>, String)>;

fn elapsed_ms(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn fmt_secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0}")
    } else {
        format!("{s}")
    }
}

/// An HTTP error as the agent reads it (the popup has room for a line or two): what failed
/// and why, the TLS or connection cause first rather than reqwest's layers ("error sending
/// request: client error (Connect): …"). Never the URL: it may hold secrets (SAF-3) and the
/// report has it masked.
pub(crate) fn http_error(e: reqwest::Error) -> String {
    let e = e.without_url();
    let chain = || std::iter::successors(Some(&e as &dyn std::error::Error), |c| c.source());
    // rustls' error travels inside io::Errors (nested: tokio-rustls, then hyper-util), which
    // hide it from `source()`.
    let tls = chain().find_map(|c| {
        let mut cur: &(dyn std::error::Error + 'static) = c;
        loop {
            if let Some(t) = cur.downcast_ref::<rustls::Error>() {
                return Some(t);
            }
            cur = cur.downcast_ref::<std::io::Error>()?.get_ref()?;
        }
    });
    if let Some(t) = tls {
        let hint = match t {
            rustls::Error::InvalidMessage(_) => " (not a TLS server?)",
            _ => "",
        };
        return format!("TLS: {t}{hint}");
    }
    if e.is_redirect() {
        return format!(
            "redirect: {}",
            chain().last().map(|c| c.to_string()).unwrap_or_default()
        );
    }
    if e.is_connect() {
        let root = chain().last().map(|c| c.to_string()).unwrap_or_default();
        return format!("cannot connect: {root}");
    }
    error_chain(&e)
}

/// An error with its causes, on one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    crate::errors::chain(e)
}

fn kill_group(pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: killpg only sends a signal; a stale group id is harmless (ESRCH).
        unsafe {
            libc::killpg(pid, libc::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get_error(url: &str) -> String {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .unwrap();
        http_error(client.get(url).send().await.expect_err("the request fails"))
    }

    /// A loopback server answering every connection with `reply`, then closing it.
    async fn answering(reply: &'static [u8]) -> std::net::SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 4096];
                let _ = tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await;
                let _ = s.write_all(reply).await;
                let _ = s.shutdown().await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn http_errors_say_the_cause_first_and_never_the_url() {
        // A plain HTTP server spoken to as https.
        let plain = answering(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n").await;
        let tls = get_error(&format!("https://{plain}/s?token=secret")).await;
        assert!(tls.starts_with("TLS: received corrupt message"), "{tls}");
        assert!(tls.ends_with("(not a TLS server?)"), "{tls}");
        // Nothing listens.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let refused = get_error(&format!("http://127.0.0.1:{port}/s?token=secret")).await;
        assert!(
            refused.starts_with("cannot connect: ") && refused.contains("refused"),
            "{refused}"
        );
        // A redirect loop.
        let looping = answering(b"HTTP/1.1 302 Found\r\nlocation: /again\r\ncontent-length: 0\r\n\r\n").await;
        let redirect = get_error(&format!("http://{looping}/s?token=secret")).await;
        assert_eq!(redirect, "redirect: too many redirects");
        for e in [tls, refused, redirect] {
            assert!(!e.contains("secret") && !e.contains("127.0.0.1"), "{e}");
        }
    }
}
