//! Which HTTP client costs the runner less CPU per request: a bare hyper
//! HTTP/1.1 connection per worker (what the runner uses) or reqwest with a
//! large pool. The server runs on its own thread; all client work runs on the
//! main thread, whose CPU time is measured.
//!
//!   cargo run --release -p tps-loadtest --example client_cost

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tps_loadtest::http::{Call, Conn, Target};

const REQUESTS: u64 = 200_000;
const CONNECTIONS: usize = 64;

fn thread_cpu_secs() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the struct we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn serve() -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(format!("http://{}", listener.local_addr().unwrap())).unwrap();
            let app = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
            axum::serve(listener, app).await.unwrap();
        });
    });
    rx.recv().unwrap()
}

async fn raw_hyper(url: &str) {
    let target = Arc::new(Target::parse(url).unwrap());
    let next = Arc::new(AtomicU64::new(0));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..CONNECTIONS {
        let (target, next) = (target.clone(), next.clone());
        set.spawn(async move {
            let mut conn = Conn::open(&target, None).await.unwrap();
            let call = Call::get("/healthz");
            while next.fetch_add(1, Ordering::Relaxed) < REQUESTS {
                assert_eq!(conn.send(&call).await.unwrap().status, 200);
            }
        });
    }
    set.join_all().await;
}

async fn reqwest_pool(url: &str) {
    let client = reqwest::Client::builder().pool_max_idle_per_host(CONNECTIONS).build().unwrap();
    let next = Arc::new(AtomicU64::new(0));
    let url = format!("{url}/healthz");
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..CONNECTIONS {
        let (client, next, url) = (client.clone(), next.clone(), url.clone());
        set.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < REQUESTS {
                let r = client.get(&url).send().await.unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap();
            }
        });
    }
    set.join_all().await;
}

fn main() {
    let url = serve();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for round in 0..2 {
        for (name, which) in [("raw hyper", 0), ("reqwest", 1)] {
            let (wall, cpu) = (Instant::now(), thread_cpu_secs());
            rt.block_on(async { if which == 0 { raw_hyper(&url).await } else { reqwest_pool(&url).await } });
            let (wall, cpu) = (wall.elapsed().as_secs_f64(), thread_cpu_secs() - cpu);
            if round == 1 {
                println!(
                    "{name:>10}: {:>8.0} req/s, client CPU {:>5.2} µs/request",
                    REQUESTS as f64 / wall,
                    cpu / REQUESTS as f64 * 1e6
                );
            }
        }
    }
}
