//! A thread-per-request HTTP server on a sluicegate pool, with the pool's metrics served to
//! Prometheus: `GET /users/<id>` answers from SQLite through the pool, `GET /metrics` renders
//! every `sluicegate_*` series in Prometheus's text format (the recorder is
//! `metrics-exporter-prometheus`, fed by sluicegate's feature `metrics`).
//!
//! Run: `cargo run --release --features metrics --example http_server`, then
//! `curl http://127.0.0.1:8080/users/7` and `curl http://127.0.0.1:8080/metrics`. Options:
//! `--addr 127.0.0.1:PORT` (loopback only), and `--self-test`, which serves on a free port,
//! sends itself a few hundred requests, checks the answers and the metrics, and exits: 0 when
//! all is well.
//!
//! The database is SQLite in memory, created and filled at start-up: no server needed.

use std::error::Error;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use rusqlite::OptionalExtension;
use sluicegate::Pool;
use sluicegate::sqlite::SqliteConnectionManager;
use tiny_http::{Header, Method, Request, Response, Server};

type SqlitePool = Pool<SqliteConnectionManager>;
type BoxError = Box<dyn Error + Send + Sync>;

const USAGE: &str = "usage: http_server [--addr 127.0.0.1:PORT] [--self-test]";
/// The pool's name: the `pool` label of every series it publishes.
const POOL_NAME: &str = "http";
const USERS: i64 = 100;
/// Bucket bounds for the `sluicegate_*_seconds` histograms: 100 µs to 10 s.
const SECONDS_BUCKETS: [f64; 6] = [0.000_1, 0.001, 0.01, 0.1, 1.0, 10.0];

enum Mode {
    Serve(SocketAddr),
    SelfTest,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|arg| arg == "-h" || arg == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let mode = match parse_args(args.into_iter()) {
        Ok(mode) => mode,
        Err(message) => {
            eprintln!("http_server: {message} ({USAGE})");
            return ExitCode::from(2);
        }
    };
    match run(mode) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("http_server: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Mode, String> {
    let mut mode = Mode::Serve(SocketAddr::from(([127, 0, 0, 1], 8080)));
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--addr" => {
                let value = args.next().ok_or("--addr needs an address")?;
                let addr: SocketAddr = value
                    .parse()
                    .map_err(|_| format!("--addr: {value:?} is not an IP address and port"))?;
                // An example server has no business being reachable from other machines.
                if !addr.ip().is_loopback() {
                    return Err(format!("--addr: {addr} is not a loopback address"));
                }
                mode = Mode::Serve(addr);
            }
            "--self-test" => mode = Mode::SelfTest,
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    Ok(mode)
}

fn run(mode: Mode) -> Result<(), BoxError> {
    // The recorder goes in first: a pool binds its histograms to the recorder installed when
    // it is built (its gauges and counters would find a later one, its histograms would not).
    // sluicegate's histograms (all in seconds) are rendered as Prometheus histograms, with these
    // bucket bounds, rather than as the exporter's default summaries: buckets add up across
    // instances, and a dashboard can take any quantile from them.
    let prometheus = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Prefix("sluicegate_".into()), &SECONDS_BUCKETS)?
        .install_recorder()?;
    // Without the exporter's own HTTP listener nothing runs its upkeep, which drains the
    // samples recorded since the last scrape; this does, so they cannot pile up unscraped.
    let upkeep = prometheus.clone();
    thread::spawn(move || {
        loop {
            thread::sleep(Duration::from_secs(5));
            upkeep.run_upkeep();
        }
    });

    let pool = Pool::builder()
        .pool_name(POOL_NAME)
        // The pool, not the number of request threads, bounds the work on the database:
        // requests beyond four wait in line for a connection, first come, first served.
        .max_size(4)
        // A request that cannot get a connection in 2 s gets a 503 rather than hanging.
        .connection_timeout(Duration::from_secs(2))
        // One in-memory database shared by the pool's connections. Its connections share a
        // cache whose table locks are not waited for, which suits this read-only service; a
        // service that writes would use a file in WAL mode (see SqliteConnectionManager).
        .build(SqliteConnectionManager::memory())?;
    pool.get()?.execute_batch(&format!(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL);
         WITH RECURSIVE n(id) AS (SELECT 1 UNION ALL SELECT id + 1 FROM n WHERE id < {USERS})
         INSERT INTO users SELECT id, 'user ' || id, 'user' || id || '@example.com' FROM n;"
    ))?;

    match mode {
        Mode::Serve(addr) => {
            let server = Server::http(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
            println!("listening on http://{addr}: try /users/7 and /metrics (Ctrl-C stops)");
            serve(&server, &pool, &prometheus);
            Err("the listener failed".into())
        }
        Mode::SelfTest => self_test(&pool, &prometheus),
    }
}

/// Hands each request to a thread of its own (tiny_http reads them on threads of its own and
/// queues them here), until the server is unblocked or its listener fails. Each thread blocks
/// on the pool and the database as it likes. The scope waits for the threads, so when this
/// returns every request has been answered.
fn serve(server: &Server, pool: &SqlitePool, prometheus: &PrometheusHandle) {
    thread::scope(|scope| {
        for request in server.incoming_requests() {
            scope.spawn(move || handle(request, pool, prometheus));
        }
    });
}

fn handle(request: Request, pool: &SqlitePool, prometheus: &PrometheusHandle) {
    let url = request.url();
    let (status, content_type, body) = if *request.method() != Method::Get {
        (405, "text/plain", "only GET here\n".to_owned())
    } else if url == "/metrics" {
        // Prometheus's text format, rendered from the recorder on each scrape.
        let text = prometheus.render();
        (200, "text/plain; version=0.0.4; charset=utf-8", text)
    } else if let Some(id) = url.strip_prefix("/users/") {
        get_user(pool, id)
    } else {
        (404, "text/plain", "not found\n".to_owned())
    };
    let content_type = Header::from_bytes("Content-Type", content_type).expect("a valid header");
    let response = Response::from_string(body)
        .with_status_code(status)
        .with_header(content_type);
    // An error here means the client went away; there is no one left to tell.
    let _ = request.respond(response);
}

fn get_user(pool: &SqlitePool, id: &str) -> (u16, &'static str, String) {
    const JSON: &str = "application/json";
    let Ok(id) = id.parse::<i64>() else {
        return (
            400,
            JSON,
            r#"{"error": "a user id is a number"}"#.to_owned(),
        );
    };
    // `conn` goes back to the pool when it drops, at the end of this function: before the
    // response is written, so a slow client never holds a connection.
    let conn = match pool.get() {
        Ok(conn) => conn,
        Err(e) => {
            // The error says which pool, how long this request waited, and how busy the pool
            // was: the log line to look for when requests start to fail.
            eprintln!("http_server: {e}");
            return (503, JSON, r#"{"error": "busy, try again"}"#.to_owned());
        }
    };
    let user = conn
        .query_row("SELECT name, email FROM users WHERE id = ?1", [id], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })
        .optional();
    // The names and emails are this example's own, with nothing to escape; a real service
    // would build its JSON with serde_json.
    match user {
        Ok(Some((name, email))) => (
            200,
            JSON,
            format!(r#"{{"id": {id}, "name": "{name}", "email": "{email}"}}"#),
        ),
        Ok(None) => (404, JSON, format!(r#"{{"error": "no user {id}"}}"#)),
        Err(e) => {
            eprintln!("http_server: user {id}: {e}");
            (500, JSON, r#"{"error": "database error"}"#.to_owned())
        }
    }
}

// ---- --self-test: the server against itself, bounded in time, for CI ----------------------

/// Twice the pool's connections; with queries this quick, few requests find all four busy.
const CLIENTS: usize = 8;
const REQUESTS_PER_CLIENT: usize = 50;
/// How long any one socket operation may take before the self-test gives up.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the whole self-test may take before the process exits, failed, whatever it is
/// doing: it must never hang CI.
const SELF_TEST_LIMIT: Duration = Duration::from_secs(60);

fn self_test(pool: &SqlitePool, prometheus: &PrometheusHandle) -> Result<(), BoxError> {
    thread::spawn(|| {
        thread::sleep(SELF_TEST_LIMIT);
        eprintln!("http_server: self-test still running after {SELF_TEST_LIMIT:?}; giving up");
        std::process::exit(1);
    });
    let server = Server::http("127.0.0.1:0")?;
    let addr = server.server_addr().to_ip().ok_or("not listening on IP")?;

    let started = Instant::now();
    let (statuses, elapsed, metrics_text) = thread::scope(|scope| {
        scope.spawn(|| serve(&server, pool, prometheus));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|client| scope.spawn(move || run_client(addr, client)))
            .collect();
        let statuses: Result<Vec<u16>, BoxError> = clients
            .into_iter()
            .map(|client| {
                client
                    .join()
                    .unwrap_or_else(|_| Err("a client panicked".into()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|per_client| per_client.concat());
        let elapsed = started.elapsed();
        let metrics_text = statuses.as_ref().ok().map(|_| scrape(addr, pool));
        // Stops `serve` (which then waits for the requests in flight); without it this scope
        // would never end, so it comes before any `?`.
        server.unblock();
        (statuses, elapsed, metrics_text)
    });
    let statuses = statuses?;
    let metrics_text = metrics_text.expect("scraped when every request succeeded")?;

    let ok = statuses.iter().filter(|&&status| status == 200).count();
    let not_found = statuses.iter().filter(|&&status| status == 404).count();
    println!(
        "self-test: {} requests from {CLIENTS} client threads in {:.2} s ({:.0} requests/s): \
         {ok} × 200, {not_found} × 404, as expected",
        statuses.len(),
        elapsed.as_secs_f64(),
        statuses.len() as f64 / elapsed.as_secs_f64(),
    );
    let label = format!("{{pool=\"{POOL_NAME}\"}}");
    // `scrape` waited for the check-out counter; the wait histogram is checked here.
    let series = |name: &str| sample(&metrics_text, &format!("{name}{label}"));
    let fast = format!("sluicegate_wait_seconds_bucket{{pool=\"{POOL_NAME}\",le=\"0.001\"}}");
    let (Some(checkouts), Some(waits), Some(fast)) = (
        series("sluicegate_checkouts_total"),
        series("sluicegate_wait_seconds_count"),
        sample(&metrics_text, &fast),
    ) else {
        return Err(
            format!("/metrics lacks a series of pool {POOL_NAME:?}:\n{metrics_text}").into(),
        );
    };
    println!(
        "/metrics: sluicegate_checkouts_total{label} {checkouts}, \
         sluicegate_wait_seconds_count{label} {waits}, of which {fast} within 1 ms"
    );
    let m = pool.metrics();
    println!(
        "pool {POOL_NAME:?}: {} connections, {} check-outs, {} waited for a connection, {} timeouts",
        m.connections, m.checkouts, m.waited, m.timeouts
    );
    pool.close();
    println!("self-test passed; server and pool shut down");
    Ok(())
}

/// One client thread: `REQUESTS_PER_CLIENT` requests for users, some of whom do not exist.
/// Returns the statuses, each checked against what the server should have answered.
fn run_client(addr: SocketAddr, client: usize) -> Result<Vec<u16>, BoxError> {
    let mut statuses = Vec::with_capacity(REQUESTS_PER_CLIENT);
    for i in 0..REQUESTS_PER_CLIENT {
        // Ids 1 to USERS + 10, in the same order on every run.
        let id = (client * REQUESTS_PER_CLIENT + i) as i64 % (USERS + 10) + 1;
        let (status, body) = http_get(addr, &format!("/users/{id}"))?;
        let expected = if id <= USERS { 200 } else { 404 };
        if status != expected || (status == 200 && !body.contains(&format!(r#""id": {id},"#))) {
            return Err(
                format!("GET /users/{id}: expected {expected}, got {status}: {body}").into(),
            );
        }
        statuses.push(status);
    }
    Ok(statuses)
}

/// Fetches /metrics until the published check-out counter has caught up with the pool's own
/// (sluicegate publishes gauges and counters about once a second), and returns it.
fn scrape(addr: SocketAddr, pool: &SqlitePool) -> Result<String, BoxError> {
    let name = format!("sluicegate_checkouts_total{{pool=\"{POOL_NAME}\"}}");
    let checkouts = pool.metrics().checkouts as f64;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, text) = http_get(addr, "/metrics")?;
        if status != 200 {
            return Err(format!("GET /metrics: {status}").into());
        }
        if sample(&text, &name) == Some(checkouts) {
            return Ok(text);
        }
        if Instant::now() > deadline {
            return Err(format!("/metrics has no {name} {checkouts} after 5 s:\n{text}").into());
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// One request in plain HTTP/1.1, by hand. `Connection: close` has the server close the
/// connection after its response, so the response ends where the stream does.
fn http_get(addr: SocketAddr, path: &str) -> io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let malformed = || io::Error::new(io::ErrorKind::InvalidData, "malformed HTTP response");
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(malformed)?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .ok_or_else(malformed)?;
    Ok((status, body.to_owned()))
}

/// The value of the sample `series` (name and labels, as rendered) in Prometheus's text format.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}
