//! CTI engine benchmarks: template expansion (the manual's Google example, a nested hash
//! template) and a whole `ring` (auth once, search, ring access) against a loopback CRM,
//! measured as the engine's own overhead: total time minus the server's handling time.

use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use criterion::{Criterion, criterion_group, criterion_main};
use ctiphone::app::{CallEvent, CallParams};
use ctiphone::config::Config;
use ctiphone::cti::exec::BrowserEnv;
use ctiphone::cti::template::{self, Template};
use ctiphone::cti::vars::{Identity, Vars};
use ctiphone::cti::{Engine, Options, Plan};

fn vars() -> Vars {
    let id = Identity {
        aid: "agent7".into(),
        apw: "pw".into(),
        ext: "201".into(),
        svaddr: "https://crm/".into(),
    };
    let p = CallParams::incoming("call-1", "+81 3-1234-5678", "0312345678");
    Vars::new(&id, &p, chrono::Local::now().naive_local())
}

fn expansion(c: &mut Criterion) {
    let v = vars();
    let google = Template::parse("https://www.google.com/search?q={TEL}", &|_| true).unwrap();
    c.bench_function("expand google example (url)", |b| {
        b.iter(|| template::url(&black_box(&google).pieces(&v), false).unwrap())
    });
    let nested = Template::parse(
        "{SVADDR}login?id={AID}&sig=MD5(UPPERCASE({AID}){DATE-YYYY}{DATE-MM}{DATE-DD})&h=SHA256(LOWERCASE({TEL}){ID})",
        &|_| true,
    )
    .unwrap();
    c.bench_function("expand nested hash template (url)", |b| {
        b.iter(|| template::url(&black_box(&nested).pieces(&v), false).unwrap())
    });
}

/// A loopback CRM that adds up the time its handlers take.
async fn crm(handling: Arc<Mutex<Duration>>) -> String {
    let app = Router::new().fallback(move |uri: axum::http::Uri| {
        let handling = handling.clone();
        async move {
            let start = Instant::now();
            let body = if uri.path() == "/login" {
                r#"{"token":"t1"}"#.to_owned()
            } else {
                r#"{"company":"ACME","name":"Taro","id":"C-42"}"#.to_owned()
            };
            *handling.lock().unwrap() += start.elapsed();
            body
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    format!("http://{addr}")
}

fn fire_ring(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let handling = Arc::new(Mutex::new(Duration::ZERO));
    let url = rt.block_on(crm(handling.clone()));
    let text = format!(
        "[cti]\ntarget = \"custom\"\nserver_address = \"{url}/\"\nnumbers = [{{ number = \"0312345678\" }}]\n\
         [cti.auth]\nmethod = \"post\"\ntemplate = \"{{SVADDR}}login?id={{AID}}\"\ncaptures = {{ T = \"json:/token\" }}\n\
         [cti.search]\nmethod = \"get\"\ntemplate = \"{{SVADDR}}search?tel={{TEL}}&t={{T}}\"\n\
         captures = {{ COMPANY = \"json:/company\", NAME = \"json:/name\", EXT_ID = \"json:/id\" }}\n\
         [cti.ring]\nmethod = \"get\"\ntemplate = \"{{SVADDR}}ring/{{EXT_ID}}?tel={{TEL}}\"\n"
    );
    let config = Config::parse(&text, None).unwrap();
    let plan = Plan::compile(&config).unwrap();
    let options = Options {
        browser: BrowserEnv {
            graphical: false,
            command: vec![],
        },
        ..Options::default()
    };
    let engine = Engine::new(&config, plan, options);
    let mut n = 0u64;
    c.bench_function("cti fire ring: engine overhead (total - server handling)", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                *handling.lock().unwrap() = Duration::ZERO;
                let start = Instant::now();
                for _ in 0..iters {
                    n += 1;
                    let ev =
                        CallEvent::ring(CallParams::incoming(&format!("b{n}"), "0311112222", "0312345678"));
                    let r = engine.dispatch(ev).await.unwrap();
                    assert!(r.ok());
                }
                start.elapsed().saturating_sub(*handling.lock().unwrap())
            })
        })
    });
}

criterion_group!(benches, expansion, fire_ring);
criterion_main!(benches);
