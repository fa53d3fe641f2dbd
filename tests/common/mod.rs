//! Shared test parts: a real HTTP CRM on 127.0.0.1 that records every request, config
//! builders, and the hostile caller-ID corpus.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

pub mod calls;
pub mod capture;
#[allow(clippy::duplicate_mod)]
pub mod controls;
pub mod netns;
pub mod outputs;
pub mod peers;
pub mod private;
pub mod pulse;
pub mod rtp;
pub mod wire;

/// One request as the server received it, bytes untouched.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub body: Vec<u8>,
    pub content_type: Option<String>,
}

#[derive(Default)]
struct State {
    seen: Mutex<Vec<Seen>>,
    logins: AtomicUsize,
}

/// A loopback CRM. Paths: `/login` (a new token each time, slowly: 100 ms), `/search`
/// (a customer record), `/slow` (never answers), `/drip` (a 200 whose JSON body comes at
/// 1 byte/s), `/big` (10 MiB), `/broken` (broken JSON), `/status/N`, `/loop` (redirects to
/// itself), anything else: `ok`.
pub struct Crm {
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl Crm {
    pub async fn start() -> Self {
        let state = Arc::new(State::default());
        let st = state.clone();
        let app = Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let st = st.clone();
            async move { handle(st, method, uri, headers, body).await }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    pub fn seen_path(&self, path: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.path == path).collect()
    }

    pub fn logins(&self) -> usize {
        self.state.logins.load(Ordering::SeqCst)
    }
}

async fn handle(st: Arc<State>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_owned();
    st.seen.lock().unwrap().push(Seen {
        method: method.to_string(),
        path: path.clone(),
        query: uri.query().map(str::to_owned),
        body: body.to_vec(),
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    });
    match path.as_str() {
        "/login" => {
            let n = st.logins.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            format!("{{\"token\":\"tok-{n}\"}}").into_response()
        }
        "/search" => {
            r#"{"company":"ACME 株式会社","name":"Taro Yamada","id":"C-42","rank":7}"#.into_response()
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            "late".into_response()
        }
        "/drip" => Body::new(Drip::new(br#"{"company":"ACME","name":"Taro"}"#)).into_response(),
        "/big" => Body::from(vec![b'x'; 10 * 1024 * 1024]).into_response(),
        "/broken" => r#"{"company": "ACME", "name": "#.into_response(),
        "/loop" => (StatusCode::FOUND, [(header::LOCATION, "/loop")], "").into_response(),
        p if p.starts_with("/status/") => {
            let code = p["/status/".len()..].parse().unwrap_or(500);
            (
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                "status",
            )
                .into_response()
        }
        _ => "ok".into_response(),
    }
}

/// A response body that sends its bytes one per second (headers at once).
struct Drip {
    left: std::collections::VecDeque<u8>,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl Drip {
    fn new(bytes: &[u8]) -> Self {
        Self {
            left: bytes.iter().copied().collect(),
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
        }
    }
}

impl hyper::body::Body for Drip {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        if self.left.is_empty() {
            return std::task::Poll::Ready(None);
        }
        if self.sleep.as_mut().poll(cx).is_pending() {
            return std::task::Poll::Pending;
        }
        let next = tokio::time::Instant::now() + Duration::from_secs(1);
        self.sleep.as_mut().reset(next);
        let b = self.left.pop_front().unwrap_or(b' ');
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from(vec![b])))))
    }
}

/// A TLS server on 127.0.0.1 with a self-signed certificate no client trusts (made with
/// rcgen for 127.0.0.1 and localhost). It completes handshakes for clients that skip
/// verification and answers them `ok`; a verifying client fails its handshake. Returns the
/// address; the server runs on the current runtime.
pub async fn untrusted_tls_server() -> SocketAddr {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("self-signed certificate");
    serve_tls(vec![ck.cert.der().clone()], ck.signing_key.serialize_der()).await
}

/// A CA of the test's own and a server certificate it signed for 127.0.0.1 and localhost.
#[allow(dead_code)]
pub struct TestPki {
    pub ca_pem: String,
    pub cert: rcgen::Certificate,
    pub key: rcgen::KeyPair,
}

/// Makes a [`TestPki`].
#[allow(dead_code)]
pub fn test_pki() -> TestPki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "ctiphone test CA");
    let ca_cert = ca.self_signed(&ca_key).expect("CA cert");
    let issuer = Issuer::from_params(&ca, &ca_key);
    let key = KeyPair::generate().expect("server key");
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("params");
    params.distinguished_name.push(DnType::CommonName, "127.0.0.1");
    let cert = params.signed_by(&key, &issuer).expect("server cert");
    TestPki {
        ca_pem: ca_cert.pem(),
        cert,
        key,
    }
}

/// A CA of the test's own that issues server certificates for any names, valid or expired
/// (the TLS failure tests).
#[allow(dead_code)]
pub struct TestCa {
    pub pem: String,
    params: rcgen::CertificateParams,
    key: rcgen::KeyPair,
}

#[allow(dead_code)]
impl TestCa {
    pub fn new(name: &str) -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let pem = params.self_signed(&key).expect("CA cert").pem();
        TestCa { pem, params, key }
    }

    /// A server certificate for `names` (DNS names or IP addresses) and its key, as PEM;
    /// `expired`: valid in 2020 only.
    pub fn issue(&self, names: &[&str], expired: bool) -> (String, String) {
        use rcgen::{CertificateParams, DnType, Issuer, KeyPair};
        let issuer = Issuer::from_params(&self.params, &self.key);
        let key = KeyPair::generate().expect("server key");
        let mut params = CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .expect("params");
        params.distinguished_name.push(DnType::CommonName, names[0]);
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 12, 31);
        }
        let cert = params.signed_by(&key, &issuer).expect("server cert");
        (cert.pem(), key.serialize_pem())
    }
}

/// An HTTPS server on 127.0.0.1 answering `ok` with a certificate for 127.0.0.1 signed by a
/// CA of the test's own: its address and the CA's certificate (PEM), for `SSL_CERT_FILE`.
#[allow(dead_code)]
pub async fn tls_server_of_a_test_ca() -> (SocketAddr, String) {
    let pki = test_pki();
    let addr = serve_tls(vec![pki.cert.der().clone()], pki.key.serialize_der()).await;
    (addr, pki.ca_pem)
}

async fn serve_tls(
    chain: Vec<tokio_rustls::rustls::pki_types::CertificateDer<'static>>,
    key: Vec<u8>,
) -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.into());
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server certificate");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                let _ = tls.read(&mut buf).await;
                let _ = tls
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

/// Parses a form-encoded string into its pairs, decoding bytes exactly.
pub fn pairs(s: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(s)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The hostile caller-ID corpus: (id, field, value) with `\xNN`, `\e` and `\\` decoded.
pub fn hostile() -> Vec<(String, String, String)> {
    let text = include_str!("../fixtures/hostile-callerid.tsv");
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut cols = l.split('\t');
            let id = cols.next().unwrap_or_default().to_owned();
            let field = cols.next().unwrap_or_default().to_owned();
            let value = decode(cols.next().unwrap_or_default());
            (id, field, value)
        })
        .collect()
}

/// Decodes the corpus' escapes into bytes, then into text as a SIP stack would (lossy UTF-8).
pub fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            match b[i + 1] {
                b'x' if i + 3 < b.len() => {
                    if let Ok(v) = u8::from_str_radix(&s[i + 2..i + 4], 16) {
                        out.push(v);
                        i += 4;
                        continue;
                    }
                }
                b'e' => {
                    out.push(0x1b);
                    i += 2;
                    continue;
                }
                b'\\' => {
                    out.push(b'\\');
                    i += 2;
                    continue;
                }
                _ => {}
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The argv recorder script.
pub fn recorder() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/argv-recorder.py")
}

/// Lines the recorder wrote: each record's argv decoded to strings, and the raw record.
pub fn recorded(file: &std::path::Path) -> Vec<(Vec<String>, serde_json::Value)> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("recorder line");
            let argv = v["argv"]
                .as_array()
                .expect("argv")
                .iter()
                .map(|h| {
                    let h = h.as_str().unwrap();
                    let bytes: Vec<u8> = (0..h.len())
                        .step_by(2)
                        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
                        .collect();
                    String::from_utf8(bytes).expect("utf-8 argv")
                })
                .collect();
            (argv, v)
        })
        .collect()
}

/// An engine on a config text, with a fixed browser set-up.
pub fn engine(
    text: &str,
    bus: Option<ctiphone::app::Bus>,
    browser: ctiphone::cti::exec::BrowserEnv,
) -> ctiphone::cti::Engine {
    let config = ctiphone::config::Config::parse(text, None).unwrap_or_else(|e| panic!("config: {e}"));
    let plan = ctiphone::cti::Plan::compile(&config).unwrap_or_else(|e| {
        panic!(
            "plan: {:?}",
            e.iter().map(|d| d.render("t", text)).collect::<Vec<_>>()
        )
    });
    ctiphone::cti::Engine::new(
        &config,
        plan,
        ctiphone::cti::Options {
            bus,
            browser,
            clock: Box::new(|| {
                chrono::NaiveDate::from_ymd_opt(2026, 11, 25)
                    .unwrap()
                    .and_hms_opt(9, 5, 7)
                    .unwrap()
            }),
        },
    )
}

pub fn no_browser() -> ctiphone::cti::exec::BrowserEnv {
    ctiphone::cti::exec::BrowserEnv {
        graphical: false,
        command: vec!["/bin/false".into()],
    }
}

pub fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A mono 16-bit WAV of a sine tone.
pub fn tone(path: &std::path::Path, freq: f64, rate: u32, secs: u32) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("tone file");
    for i in 0..rate * secs {
        let v = (f64::from(i) * 2.0 * std::f64::consts::PI * freq / f64::from(rate)).sin() * 12000.0;
        w.write_sample(v as i16).expect("write");
    }
    w.finalize().expect("finalize");
}

/// One channel of a WAV file (mono or stereo, integer or float samples), with its rate.
pub fn wav_channel(path: &std::path::Path, ch: usize) -> (Vec<i16>, u32) {
    let mut r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = r.spec();
    let n = usize::from(spec.channels);
    let samples: Vec<i16> = match spec.sample_format {
        hound::SampleFormat::Int => r.samples::<i16>().filter_map(Result::ok).collect(),
        hound::SampleFormat::Float => r
            .samples::<f32>()
            .filter_map(Result::ok)
            .map(|f| (f * 32767.0) as i16)
            .collect(),
    };
    (
        samples.iter().skip(ch).step_by(n).copied().collect(),
        spec.sample_rate,
    )
}
