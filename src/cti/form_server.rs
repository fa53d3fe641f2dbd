//! The one-shot loopback page server of browser_post (MET-3): each POST is an auto-submitting
//! form page served once from `http://127.0.0.1:PORT/post/<token>` (a 128-bit random token),
//! then gone; a page not fetched within its lifetime is gone too. Nothing is written to disk,
//! so browsers with a private `/tmp` (snap-confined Firefox and Chromium) can open it, and a
//! pinned port can be forwarded over SSH to the agent's own browser. Everything else the
//! server is asked (other paths, methods, tokens, oversized or malformed requests, slow
//! clients) gets an error status or a closed connection, within fixed time limits.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// How long a page waits for its one fetch.
pub const PAGE_KEEP: Duration = Duration::from_secs(10);
/// Connections served at once (a browser needs one or two); more wait in the listen queue.
const MAX_CONNECTIONS: usize = 32;
/// The request head must arrive within this time…
const HEAD_TIME: Duration = Duration::from_secs(2);
/// …and the whole exchange within this one.
const CONNECTION_TIME: Duration = Duration::from_secs(5);
/// The largest request head read (hyper's smallest buffer); larger ones get 431.
const MAX_HEAD: usize = 8192;
/// The path every page is served under.
const PREFIX: &str = "/post/";

/// One auto-submitting form page, ready to serve.
#[derive(Clone, Debug)]
pub struct FormPage {
    html: Bytes,
    csp: HeaderValue,
}

impl FormPage {
    /// The page that POSTs the form-encoded `body` to `action` as soon as it loads. The
    /// action must be an http or https URL: the page's security policy allows the form to go
    /// to its origin only.
    pub fn new(action: &str, body: &str) -> Result<Self, String> {
        let origin = form_action_source(action)?;
        let nonce = format!("{:032x}", rand::random::<u128>());
        let csp = format!(
            "default-src 'none'; script-src 'nonce-{nonce}'; form-action {origin}; base-uri 'none'; frame-ancestors 'none'"
        );
        let csp = HeaderValue::from_str(&csp)
            .map_err(|_| "the form's URL cannot be put in a page policy".to_owned())?;
        Ok(Self {
            html: Bytes::from(form_html(action, body, &nonce)),
            csp,
        })
    }

    /// The page's HTML.
    pub fn html(&self) -> &str {
        std::str::from_utf8(&self.html).unwrap_or_default()
    }

    /// Its `Content-Security-Policy`.
    pub fn policy(&self) -> &str {
        self.csp.to_str().unwrap_or_default()
    }
}

/// The CSP source that lets the form go to `action`: its origin (`https://crm.example:8443`).
fn form_action_source(action: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(action).map_err(|e| format!("browser_post needs an absolute URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "browser_post needs an http or https URL, not `{}:`",
            url.scheme()
        ));
    }
    match url.host_str() {
        // CSP host sources have no syntax for IPv6 literals: the scheme is the tightest
        // source that still lets the form go there.
        Some(h) if h.starts_with('[') => Ok(format!("{}:", url.scheme())),
        Some(_) => Ok(url.origin().ascii_serialization()),
        None => Err("browser_post needs a URL with a host".to_owned()),
    }
}

/// Escapes text for HTML attribute values and content.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The HTML of a page that POSTs `body`'s pairs to `action` on load; the one script carries
/// `nonce`, the only script the page's policy runs.
fn form_html(action: &str, body: &str, nonce: &str) -> String {
    let mut page = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>ctiphone</title></head>\n<body>\n",
    );
    page.push_str(&format!(
        "<form method=\"post\" action=\"{}\" accept-charset=\"utf-8\">\n",
        html_escape(action)
    ));
    for (k, v) in form_urlencoded::parse(body.as_bytes()) {
        page.push_str(&format!(
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">\n",
            html_escape(&k),
            html_escape(&v)
        ));
    }
    page.push_str("<noscript><button type=\"submit\">Continue</button></noscript>\n</form>\n");
    page.push_str(&format!(
        "<script nonce=\"{nonce}\">document.forms[0].submit()</script>\n</body></html>\n"
    ));
    page
}

struct Waiting {
    page: FormPage,
    until: Instant,
}

/// The pages waiting for their fetch, by token.
struct Pages {
    map: Mutex<HashMap<String, Waiting>>,
    /// Signalled whenever a page leaves.
    left: Notify,
}

impl Pages {
    /// Takes the page of `token` if it is still there and not expired.
    fn take(&self, token: &str) -> Option<FormPage> {
        let w = self.map.lock().ok()?.remove(token)?;
        self.left.notify_waiters();
        (Instant::now() < w.until).then_some(w.page)
    }

    /// Drops expired pages; the time the next one expires, if any page is left.
    fn purge(&self) -> Option<Instant> {
        let now = Instant::now();
        let Ok(mut map) = self.map.lock() else {
            return None;
        };
        let before = map.len();
        map.retain(|_, w| w.until > now);
        if map.len() != before {
            self.left.notify_waiters();
        }
        map.values().map(|w| w.until).min()
    }
}

/// A running page server on a loopback address.
pub struct FormServer {
    addr: SocketAddr,
    keep: Duration,
    pages: Arc<Pages>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for FormServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FormServer").field("addr", &self.addr).finish()
    }
}

impl Drop for FormServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FormServer {
    /// Listens on `listen` (a loopback address; port 0 picks a free one); each page waits
    /// `keep` for its fetch. Call inside a tokio runtime.
    pub async fn start(listen: SocketAddr, keep: Duration) -> std::io::Result<Self> {
        if !listen.ip().is_loopback() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{listen} is not a loopback address"),
            ));
        }
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let pages = Arc::new(Pages {
            map: Mutex::new(HashMap::new()),
            left: Notify::new(),
        });
        let task = tokio::spawn(serve(listener, pages.clone()));
        Ok(Self {
            addr,
            keep,
            pages,
            task,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves `page` once; its URL. The URL holds only the token, never the form.
    pub fn offer(&self, page: FormPage) -> String {
        let token = format!("{:032x}", rand::random::<u128>());
        let until = Instant::now() + self.keep;
        if let Ok(mut map) = self.pages.map.lock() {
            map.insert(token.clone(), Waiting { page, until });
        }
        format!("http://{}{PREFIX}{token}", self.addr)
    }

    /// Pages not fetched yet and not expired.
    pub fn waiting(&self) -> usize {
        self.pages.purge();
        self.pages.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Waits until every page was fetched or expired (at most `keep`), then stops listening
    /// and drops every connection.
    pub async fn stop(mut self) {
        loop {
            let left = self.pages.left.notified();
            tokio::pin!(left);
            left.as_mut().enable();
            let Some(next) = self.pages.purge() else {
                break;
            };
            tokio::select! {
                () = left => {}
                () = tokio::time::sleep_until(next) => {}
            }
        }
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

/// Accepts connections until aborted; aborting drops every connection with it.
async fn serve(listener: tokio::net::TcpListener, pages: Arc<Pages>) {
    let mut conns = JoinSet::new();
    let mut sweep = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            accepted = listener.accept(), if conns.len() < MAX_CONNECTIONS => {
                let stream = match accepted {
                    Ok((s, _)) => s,
                    Err(_) => {
                        // Out of descriptors, for instance: try again a little later.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let pages = pages.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let pages = pages.clone();
                        async move { Ok::<_, Infallible>(answer(&pages, &req)) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEAD_TIME)
                        .max_buf_size(MAX_HEAD)
                        .keep_alive(false)
                        .serve_connection(TokioIo::new(stream), svc);
                    let _ = tokio::time::timeout(CONNECTION_TIME, conn).await;
                });
            }
            Some(_) = conns.join_next() => {}
            _ = sweep.tick() => {
                // Secrets of pages nobody fetched do not stay in memory.
                pages.purge();
            }
        }
    }
}

fn answer(pages: &Pages, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let page = match (req.method(), req.uri().path().strip_prefix(PREFIX)) {
        (&Method::GET, Some(token)) => pages.take(token),
        _ => None,
    };
    let Some(page) = page else {
        return reply(StatusCode::NOT_FOUND, "not found\n");
    };
    let mut r = reply(StatusCode::OK, page.html);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CONTENT_SECURITY_POLICY, page.csp);
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const LOOPBACK: &str = "127.0.0.1:0";

    async fn server(keep: Duration) -> FormServer {
        FormServer::start(LOOPBACK.parse().unwrap(), keep).await.unwrap()
    }

    fn page(n: usize) -> FormPage {
        FormPage::new(
            "https://crm.example:8443/in?x=1",
            &format!("n={n}&name=%E5%B1%B1%E7%94%B0"),
        )
        .unwrap()
    }

    async fn get(url: &str) -> reqwest::Response {
        reqwest::Client::new().get(url).send().await.unwrap()
    }

    /// Sends raw bytes on a fresh connection; what came back before the server closed it.
    async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = s.write_all(bytes).await;
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(8), s.read_to_end(&mut out)).await;
        assert!(read.is_ok(), "the server kept the connection open");
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn a_page_is_served_once_with_its_headers_then_404() {
        let s = server(PAGE_KEEP).await;
        let p = page(1);
        let url = s.offer(p.clone());
        let token = url.strip_prefix(&format!("http://{}/post/", s.addr())).unwrap();
        assert_eq!(token.len(), 32, "128 random bits");
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(!url.contains("n=1") && !url.contains("crm.example"), "{url}");
        assert_eq!(s.waiting(), 1);

        let r = get(&url).await;
        assert_eq!(r.status(), 200);
        let h = r.headers().clone();
        assert_eq!(h["content-type"], "text/html; charset=utf-8");
        assert_eq!(h["cache-control"], "no-store");
        assert_eq!(h["referrer-policy"], "no-referrer");
        let csp = h["content-security-policy"].to_str().unwrap().to_owned();
        assert_eq!(csp, p.policy());
        assert!(csp.starts_with("default-src 'none'; script-src 'nonce-"), "{csp}");
        assert!(csp.contains("; form-action https://crm.example:8443;"), "{csp}");
        let body = r.text().await.unwrap();
        assert_eq!(body, p.html());
        let nonce = csp.split("'nonce-").nth(1).unwrap().split('\'').next().unwrap();
        assert!(body.contains(&format!(
            "<script nonce=\"{nonce}\">document.forms[0].submit()</script>"
        )));
        assert!(
            body.contains("<input type=\"hidden\" name=\"name\" value=\"山田\">"),
            "{body}"
        );
        assert_eq!(s.waiting(), 0);

        let again = get(&url).await;
        assert_eq!(again.status(), 404);
        assert_eq!(again.headers()["cache-control"], "no-store");
        // Every page has its own token and nonce.
        let other = s.offer(page(1));
        assert_ne!(other, url);
        assert_ne!(page(1).policy(), p.policy());
        assert_eq!(get(&other).await.status(), 200);
        s.stop().await;
    }

    #[tokio::test]
    async fn a_page_not_fetched_in_time_is_gone() {
        let s = server(Duration::from_millis(300)).await;
        let url = s.offer(page(1));
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(get(&url).await.status(), 404);
        // Expired pages leave memory even when nobody asks for them.
        let _late = s.offer(page(2));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(s.pages.map.lock().unwrap().len(), 0);
    }

    #[tokio::test]
    async fn wrong_tokens_paths_and_methods_get_404_and_leave_the_page() {
        let s = server(PAGE_KEEP).await;
        let url = s.offer(page(1));
        let token = url.rsplit('/').next().unwrap().to_owned();
        let base = format!("http://{}", s.addr());
        let client = reqwest::Client::new();
        let mut wrong = vec![
            format!("{base}/"),
            format!("{base}/post/"),
            format!("{base}/post"),
            format!("{base}/favicon.ico"),
            format!("{base}/post/{}", "0".repeat(32)),
            format!("{base}/post/{}", &token[..31]),
            format!("{base}/post/{token}0"),
            format!("{base}/post/{token}/"),
            format!("{base}/POST/{token}"),
            format!("{base}/post/{}", token.to_uppercase()),
            format!("{base}//post/{token}"),
            format!("{base}/x/../post/{token}x"),
        ];
        wrong.retain(|u| *u != url);
        for u in &wrong {
            assert_eq!(client.get(u).send().await.unwrap().status(), 404, "{u}");
        }
        for m in ["POST", "HEAD", "PUT", "DELETE", "OPTIONS"] {
            let r = client
                .request(reqwest::Method::from_bytes(m.as_bytes()).unwrap(), &url)
                .body("a=1")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 404, "{m}");
        }
        assert_eq!(s.waiting(), 1, "none of them used the page");
        assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    }

    #[tokio::test]
    async fn concurrent_pages_each_go_to_their_own_fetch() {
        let s = server(PAGE_KEEP).await;
        let urls: Vec<String> = (0..40).map(|n| s.offer(page(n))).collect();
        let fetches = urls.iter().enumerate().map(|(n, u)| {
            let u = u.clone();
            async move {
                let r = get(&u).await;
                assert_eq!(r.status(), 200);
                let body = r.text().await.unwrap();
                assert!(body.contains(&format!("name=\"n\" value=\"{n}\"")), "{n}: {body}");
            }
        });
        futures_join(fetches).await;
        assert_eq!(s.waiting(), 0);
        // Two fetches of one page at once: exactly one gets it.
        let url = s.offer(page(99));
        let (a, b) = tokio::join!(get(&url), get(&url));
        let mut codes = [a.status().as_u16(), b.status().as_u16()];
        codes.sort_unstable();
        assert_eq!(codes, [200, 404]);
    }

    /// Runs the futures at once (spawned on the runtime).
    async fn futures_join(fs: impl Iterator<Item = impl std::future::Future<Output = ()> + Send + 'static>) {
        let handles: Vec<_> = fs.map(tokio::spawn).collect();
        for h in handles {
            h.await.unwrap();
        }
    }

    #[tokio::test]
    async fn hostile_requests_get_errors_within_the_time_limits() {
        let s = server(PAGE_KEEP).await;
        let url = s.offer(page(1));
        let token = url.rsplit('/').next().unwrap().to_owned();
        let addr = s.addr();
        // Not HTTP at all.
        let r = raw(addr, b"\x00\x01\x02 hello\r\n\r\n").await;
        assert!(r.is_empty() || r.starts_with("HTTP/1.1 400"), "{r}");
        // A request line without a version, a header without a colon.
        let r = raw(addr, format!("GET /post/{token}\r\n\r\n").as_bytes()).await;
        assert!(r.is_empty() || r.starts_with("HTTP/1.1 400"), "{r}");
        let r = raw(
            addr,
            format!("GET /post/{token} HTTP/1.1\r\nbogus\r\n\r\n").as_bytes(),
        )
        .await;
        assert!(r.is_empty() || r.starts_with("HTTP/1.1 400"), "{r}");
        // A head larger than the limit.
        let big = format!(
            "GET /post/{token} HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(20_000)
        );
        let r = raw(addr, big.as_bytes()).await;
        assert!(r.is_empty() || r.starts_with("HTTP/1.1 431"), "{r}");
        // A huge body announced on a GET is never read.
        let r = raw(
            addr,
            b"GET /nothing HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\nabc",
        )
        .await;
        assert!(r.starts_with("HTTP/1.1 404"), "{r}");
        assert_eq!(s.waiting(), 1, "no hostile request used the page");

        // Slow clients: a head that never ends is cut off at the head limit.
        let start = std::time::Instant::now();
        let r = raw(addr, b"GET /post/").await;
        assert!(r.is_empty() || r.starts_with("HTTP/1.1 408"), "{r}");
        let t = start.elapsed();
        assert!(
            t >= HEAD_TIME - Duration::from_millis(100) && t < HEAD_TIME + Duration::from_secs(2),
            "{t:?}"
        );

        // A flood of idle connections takes every slot: one more waits until the flood timed
        // out, then is answered.
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let start = std::time::Instant::now();
        assert_eq!(get(&url).await.status(), 200);
        let t = start.elapsed();
        assert!(t > HEAD_TIME - Duration::from_millis(300), "{t:?}");
        // The idle ones were closed by the server.
        for mut c in idle {
            let mut rest = Vec::new();
            let closed = tokio::time::timeout(Duration::from_secs(1), c.read_to_end(&mut rest)).await;
            assert!(closed.is_ok(), "an idle connection is still open");
        }
    }

    #[tokio::test]
    async fn only_loopback_addresses_are_served() {
        let e = FormServer::start("0.0.0.0:0".parse().unwrap(), PAGE_KEEP)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        assert_eq!(e.to_string(), "0.0.0.0:0 is not a loopback address");
        let s = FormServer::start("[::1]:0".parse().unwrap(), PAGE_KEEP)
            .await
            .unwrap();
        let url = s.offer(page(1));
        assert!(url.starts_with("http://[::1]:"), "{url}");
        assert_eq!(get(&url).await.status(), 200);
    }

    #[tokio::test]
    async fn stop_waits_for_waiting_pages_then_closes_the_port() {
        let s = server(Duration::from_millis(400)).await;
        let addr = s.addr();
        let url = s.offer(page(1));
        // A page fetched: stop returns at once.
        let fetched = s.offer(page(2));
        assert_eq!(get(&fetched).await.status(), 200);
        let fetch = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            get(&url).await.status()
        });
        let start = std::time::Instant::now();
        s.stop().await;
        let t = start.elapsed();
        assert_eq!(
            fetch.await.unwrap(),
            200,
            "the page was still served while stopping"
        );
        assert!(
            t >= Duration::from_millis(90) && t < Duration::from_millis(400),
            "{t:?}"
        );
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "still listening"
        );
        // A page nobody fetches holds the stop for its lifetime only.
        let s = server(Duration::from_millis(300)).await;
        let _ = s.offer(page(3));
        let start = std::time::Instant::now();
        s.stop().await;
        let t = start.elapsed();
        assert!(
            t >= Duration::from_millis(250) && t < Duration::from_millis(800),
            "{t:?}"
        );
    }

    #[test]
    fn pages_escape_every_value_and_go_only_to_http() {
        let p = FormPage::new("https://h/p?a=1&b=\"x\"", "name=%22%3E%3Cscript%3E&tel=%2B1").unwrap();
        let page = p.html();
        assert!(
            page.contains("action=\"https://h/p?a=1&amp;b=&quot;x&quot;\""),
            "{page}"
        );
        assert!(page.contains("name=\"name\" value=\"&quot;&gt;&lt;script&gt;\""));
        assert!(page.contains("value=\"+1\""));
        assert!(!page.contains("<script>"));
        assert_eq!(page.matches("<script").count(), 1, "only the nonce'd script");
        assert!(p.policy().contains("; form-action https://h;"), "{}", p.policy());
        let v6 = FormPage::new("http://[::1]:8080/crm", "").unwrap();
        assert!(v6.policy().contains("; form-action http:;"), "{}", v6.policy());
        for bad in [
            "file:///etc/passwd",
            "javascript:alert(1)",
            "data:text/html,x",
            "crm/in",
            "",
        ] {
            let e = FormPage::new(bad, "a=1").unwrap_err();
            assert!(e.starts_with("browser_post needs an"), "{bad}: {e}");
        }
    }
}
