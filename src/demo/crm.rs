//! The demo's CRM: a small HTTP/1.1 server (hyper) on 127.0.0.1 that the phone's real CTI
//! engine logs in to and searches, with a page per customer for the popup's link.
//!
//! - `POST /api/login` with the form `id=…&pw=…` (the agent's {AID} and {APW}): `{"token": …}`,
//!   or 401 for other credentials.
//! - `GET /api/customers?tel=…&token=…`: the customer as `{"company", "name", "id", "note"}`;
//!   a number it does not know gives `"name": "(not in the CRM)"` and empty fields; a missing
//!   or unknown token gives 401.
//! - `GET /customers/ID` (and `/customers/?tel=…` for a caller without a record): an HTML page
//!   of the customer, every value HTML-escaped.
//! - `POST /api/calls?event=…&id=…&token=…`: a call event the phone reports (the ring and
//!   hangup accesses of `ctiphone bench fleet`): `{"ok": true}`, counted; 401 without a
//!   valid token, 400 without an event or id.
//! - `GET /`: the list of customers.
//!
//! It also serves the benchmark's ring → CTI search result measurement.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::task::JoinHandle;

/// The agent's credentials the demo CRM accepts ({AID}, {APW}).
pub const AGENT_ID: &str = "demo-agent";
pub const AGENT_PASSWORD: &str = "demo-password";

/// One customer record.
#[derive(Clone, Copy, Debug)]
pub struct Customer {
    /// The number the customer calls from, as the CRM stores it.
    pub tel: &'static str,
    pub company: &'static str,
    pub name: &'static str,
    pub id: &'static str,
    pub note: &'static str,
}

/// The known customer (calls with a display name and a P-Asserted-Identity).
pub const KNOWN: Customer = Customer {
    tel: "0311112222",
    company: "ACME Trading 株式会社",
    name: "Taro Yamada",
    id: "C-1001",
    note: "Gold plan since 2019; renewal due next month.",
};

/// A customer whose record holds hostile text: a spreadsheet formula as the company (defused
/// by `history export --csv`) and markup as the name (escaped on the customer page).
pub const HOSTILE: Customer = Customer {
    tel: "0455556666",
    company: "=HYPERLINK(\"http://evil.example\",\"Refund\")",
    name: "<script>alert('crm')</script>",
    id: "C-6666",
    note: "Caller ID and CRM record both carry hostile text: the phone shows it cleaned.",
};

/// Every record of the demo CRM.
pub const CUSTOMERS: [Customer; 3] = [
    KNOWN,
    Customer {
        tel: "0422223333",
        company: "Blue Sky Travel",
        name: "Maria Garcia",
        id: "C-1002",
        note: "Asked about group bookings.",
    },
    HOSTILE,
];

/// What the name of a number the CRM does not know reads.
pub const UNKNOWN_NAME: &str = "(not in the CRM)";

#[derive(Default)]
struct State {
    tokens: Mutex<HashSet<String>>,
    logins: AtomicUsize,
    searches: AtomicUsize,
    call_events: AtomicUsize,
}

/// A running demo CRM; it stops when dropped.
pub struct Crm {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl Drop for Crm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Crm {
    /// Starts the server on a free port of 127.0.0.1 (call inside a tokio runtime).
    pub async fn start() -> std::io::Result<Crm> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let stream = match listener.accept().await {
                    Ok((s, _)) => s,
                    Err(_) => {
                        // Out of descriptors, for instance: try again a little later.
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let st = st.clone();
                        async move { Ok::<_, Infallible>(handle(&st, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(Crm { addr, state, task })
    }

    /// The base URL, `http://127.0.0.1:PORT/` ({SVADDR} of the demo's configuration).
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Successful logins so far.
    pub fn logins(&self) -> usize {
        self.state.logins.load(Ordering::SeqCst)
    }

    /// Authorised searches so far.
    pub fn searches(&self) -> usize {
        self.state.searches.load(Ordering::SeqCst)
    }

    /// Authorised call events (`POST /api/calls`) so far.
    pub fn call_events(&self) -> usize {
        self.state.call_events.load(Ordering::SeqCst)
    }
}

/// The record of a number (digits and `+` compared; `+81` is read as a leading 0).
pub fn find(tel: &str) -> Option<&'static Customer> {
    let digits: String = tel.chars().filter(|c| c.is_ascii_digit() || *c == '+').collect();
    let national = match digits.strip_prefix("+81") {
        Some(rest) => format!("0{rest}"),
        None => digits,
    };
    CUSTOMERS.iter().find(|c| c.tel == national)
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn json_reply(status: StatusCode, v: serde_json::Value) -> Response<Full<Bytes>> {
    reply(status, "application/json", v.to_string())
}

/// The form or query pairs of a request.
fn pairs(s: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(s.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

async fn handle(st: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = pairs(req.uri().query().unwrap_or(""));
    let body = match Limited::new(req.into_body(), 64 * 1024).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return json_reply(StatusCode::PAYLOAD_TOO_LARGE, json!({"error": "body too large"})),
    };
    match (method, path.as_str()) {
        (Method::POST, "/api/login") => {
            let form = pairs(&String::from_utf8_lossy(&body));
            let field = |k: &str| get(&form, k).or_else(|| get(&query, k));
            if field("id") == Some(AGENT_ID) && field("pw") == Some(AGENT_PASSWORD) {
                let n = st.logins.fetch_add(1, Ordering::SeqCst) + 1;
                let token = format!("demo-{n}-{:08x}", rand::random::<u32>());
                if let Ok(mut t) = st.tokens.lock() {
                    t.insert(token.clone());
                }
                json_reply(StatusCode::OK, json!({"token": token}))
            } else {
                json_reply(
                    StatusCode::UNAUTHORIZED,
                    json!({"error": "unknown agent or password"}),
                )
            }
        }
        (Method::GET, "/api/customers") => {
            let authorised =
                get(&query, "token").is_some_and(|t| st.tokens.lock().is_ok_and(|tokens| tokens.contains(t)));
            if !authorised {
                return json_reply(StatusCode::UNAUTHORIZED, json!({"error": "log in first"}));
            }
            st.searches.fetch_add(1, Ordering::SeqCst);
            let tel = get(&query, "tel").unwrap_or("");
            let v = match find(tel) {
                Some(c) => json!({"company": c.company, "name": c.name, "id": c.id, "note": c.note}),
                None => json!({"company": "", "name": UNKNOWN_NAME, "id": "", "note": ""}),
            };
            json_reply(StatusCode::OK, v)
        }
        (Method::POST, "/api/calls") => {
            let form = pairs(&String::from_utf8_lossy(&body));
            let field = |k: &str| get(&form, k).or_else(|| get(&query, k));
            let authorised =
                field("token").is_some_and(|t| st.tokens.lock().is_ok_and(|tokens| tokens.contains(t)));
            if !authorised {
                return json_reply(StatusCode::UNAUTHORIZED, json!({"error": "log in first"}));
            }
            if field("event").is_none_or(str::is_empty) || field("id").is_none_or(str::is_empty) {
                return json_reply(
                    StatusCode::BAD_REQUEST,
                    json!({"error": "event and id are needed"}),
                );
            }
            st.call_events.fetch_add(1, Ordering::SeqCst);
            json_reply(StatusCode::OK, json!({"ok": true}))
        }
        (Method::GET, "/") => reply(StatusCode::OK, "text/html; charset=utf-8", index_page()),
        (Method::GET, p) if p.starts_with("/customers/") => {
            let id = p.trim_start_matches("/customers/");
            let tel = get(&query, "tel").unwrap_or("");
            match CUSTOMERS.iter().find(|c| c.id == id) {
                Some(c) => reply(StatusCode::OK, "text/html; charset=utf-8", customer_page(c)),
                None => reply(
                    StatusCode::OK,
                    "text/html; charset=utf-8",
                    page(
                        "New customer",
                        &format!(
                            "<p>No record for <b>{}</b>. A real CRM would offer to create one here.</p>",
                            escape(tel)
                        ),
                    ),
                ),
            }
        }
        _ => json_reply(StatusCode::NOT_FOUND, json!({"error": "no such page"})),
    }
}

/// Text made safe for HTML, control characters shown as U+FFFD.
pub fn escape(s: &str) -> String {
    let shown: String = s
        .chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect();
    crate::cti::form_server::html_escape(&shown)
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t} · ctiphone demo CRM</title></head>\
         <body><h1>{t}</h1>{body}<p><a href=\"/\">All customers</a></p></body></html>\n",
        t = escape(title)
    )
}

fn customer_page(c: &Customer) -> String {
    page(
        c.name,
        &format!(
            "<table><tr><th>Company</th><td>{}</td></tr><tr><th>Phone</th><td>{}</td></tr>\
             <tr><th>Customer ID</th><td>{}</td></tr><tr><th>Note</th><td>{}</td></tr></table>",
            escape(c.company),
            escape(c.tel),
            escape(c.id),
            escape(c.note)
        ),
    )
}

fn index_page() -> String {
    let rows: String = CUSTOMERS
        .iter()
        .map(|c| {
            format!(
                "<li><a href=\"/customers/{id}\">{name}</a> ({company}, {tel})</li>",
                id = escape(c.id),
                name = escape(c.name),
                company = escape(c.company),
                tel = escape(c.tel)
            )
        })
        .collect();
    page("Customers", &format!("<ul>{rows}</ul>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_with_or_without_the_country_code() {
        assert_eq!(find("0311112222").map(|c| c.id), Some("C-1001"));
        assert_eq!(find("+81311112222").map(|c| c.id), Some("C-1001"));
        assert_eq!(find("03-1111-2222").map(|c| c.id), Some("C-1001"));
        assert!(find("0698765432").is_none());
        assert!(find("").is_none());
    }

    #[test]
    fn pages_escape_every_value() {
        let p = customer_page(&HOSTILE);
        assert!(
            p.contains("&lt;script&gt;alert(&#39;crm&#39;)&lt;/script&gt;"),
            "{p}"
        );
        assert!(!p.contains("<script>"), "{p}");
        assert_eq!(escape("a\u{1b}[2Jb"), "a\u{FFFD}[2Jb");
    }
}
