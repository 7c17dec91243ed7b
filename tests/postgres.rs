//! `sluicegate::postgres` against a real PostgreSQL server on 127.0.0.1.
//!
//! The server is the one the `SLUICEGATE_PG_HOST`, `_PORT`, `_USER`, `_PASSWORD` and `_DATABASE`
//! settings name (`common::Server::postgres` reads them), by default the local one that
//! `scripts/services.sh` sets up. Without a reachable server the tests say so loudly and pass,
//! except under `CI=true`, where they fail.
#![cfg(feature = "postgres")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use postgres::tls::{MakeTlsConnect, NoTlsError, NoTlsStream};
use postgres::{Config, NoTls, Socket};
use sluicegate::Pool;
use sluicegate::postgres::PostgresConnectionManager;

use common::{
    capture_logs, check_refused, check_wrong_password, live_session_after_a_kill, pg_config,
    pg_local, skip, unused_port,
};

/// The server's settings, or `None` (with a loud message) when it cannot be reached outside CI.
fn server(test: &str) -> Option<Config> {
    let config = pg_config();
    match config.connect(NoTls) {
        Ok(_) => Some(config),
        Err(err) => {
            let why = format!("no PostgreSQL at {:?} ({err})", config.get_hosts());
            skip(test, &why, "run scripts/services.sh");
            None
        }
    }
}

fn manager(config: Config) -> PostgresConnectionManager<NoTls> {
    PostgresConnectionManager::new(config, NoTls)
}

fn backend_pid(client: &mut postgres::Client) -> i32 {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0)
}

#[test]
fn round_trip_and_reuse() {
    let Some(config) = server("round_trip_and_reuse") else {
        return;
    };
    let pool = Pool::builder().max_size(2).build(manager(config)).unwrap();
    let first = backend_pid(&mut pool.get().unwrap());
    let mut conn = pool.get().unwrap();
    assert_eq!(backend_pid(&mut conn), first, "the same session, reused");
    let two: i32 = conn.query_one("SELECT 1 + 1", &[]).unwrap().get(0);
    assert_eq!(two, 2);
}

#[test]
fn a_session_killed_on_the_server_costs_at_most_one_error() {
    let Some(config) = server("a_session_killed_on_the_server_costs_at_most_one_error") else {
        return;
    };
    let pool = Pool::builder()
        .max_size(1)
        .error_handler(Box::new(sluicegate::NopErrorHandler))
        .build(manager(config.clone()))
        .unwrap();
    let victim = backend_pid(&mut pool.get().unwrap());
    let mut admin = config.connect(NoTls).unwrap();
    admin
        .execute("SELECT pg_terminate_backend($1)", &[&victim])
        .unwrap();
    let live = live_session_after_a_kill(&pool, |conn| {
        conn.query_one("SELECT pg_backend_pid()", &[])
            .map(|row| row.get::<_, i32>(0))
    });
    assert_ne!(live, victim);
}

#[test]
fn a_wrong_password_fails_at_once_with_the_servers_reason_and_is_never_shown() {
    let Some(mut config) = server("a_wrong_password_fails_at_once") else {
        return;
    };
    capture_logs();
    let secret = "not-the-password-7Qx";
    config.user("sluicegate_auth").password(secret);
    let started = Instant::now();
    let result = Pool::builder()
        .pool_name("pg-wrong-password")
        .connection_timeout(Duration::from_secs(60))
        .build(manager(config.clone()));
    let debug = format!("{:?}", manager(config));
    check_wrong_password(
        result,
        started,
        "password authentication failed",
        secret,
        &debug,
        "pg-wrong-password",
    );
}

#[test]
fn nothing_listening_is_a_clear_error_within_the_timeout() {
    let config = pg_local(unused_port());
    let timeout = Duration::from_millis(500);
    let started = Instant::now();
    let result = Pool::builder()
        .connection_timeout(timeout)
        .error_handler(Box::new(sluicegate::NopErrorHandler))
        .build(manager(config));
    check_refused(result, started, timeout);
}

/// Whether session state left by one borrower reaches the next: a setting, a temporary table.
fn state_leaks(recycling: bool) -> (bool, bool) {
    let pool = Pool::builder()
        .max_size(1)
        .build(manager(pg_config()).with_recycling(recycling))
        .unwrap();
    {
        let mut conn = pool.get().unwrap();
        conn.batch_execute(
            "SET application_name = 'borrower-1'; CREATE TEMP TABLE scratch (x int)",
        )
        .unwrap();
    }
    let mut conn = pool.get().unwrap();
    let name: String = conn.query_one("SHOW application_name", &[]).unwrap().get(0);
    let table: bool = conn
        .query_one("SELECT to_regclass('pg_temp.scratch') IS NOT NULL", &[])
        .unwrap()
        .get(0);
    (name == "borrower-1", table)
}

#[test]
fn recycling_gives_each_borrower_a_clean_session() {
    if server("recycling_gives_each_borrower_a_clean_session").is_none() {
        return;
    }
    assert_eq!(
        state_leaks(false),
        (true, true),
        "without recycling, state leaks"
    );
    assert_eq!(
        state_leaks(true),
        (false, false),
        "with recycling, it does not"
    );
}

/// A user's TLS connector: delegates to `NoTls`, counting the connections it was asked to
/// secure, to show the pool passes the connector through unchanged.
#[derive(Clone, Default)]
struct CountingTls(Arc<AtomicUsize>);

impl MakeTlsConnect<Socket> for CountingTls {
    type Stream = NoTlsStream;
    type TlsConnect = NoTls;
    type Error = NoTlsError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<NoTls, NoTlsError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        <NoTls as MakeTlsConnect<Socket>>::make_tls_connect(&mut NoTls, domain)
    }
}

#[test]
fn a_users_tls_connector_secures_every_pooled_connection() {
    let Some(config) = server("a_users_tls_connector") else {
        return;
    };
    let tls = CountingTls::default();
    let pool = Pool::builder()
        .max_size(3)
        .build(PostgresConnectionManager::new(config, tls.clone()))
        .unwrap();
    assert_eq!(pool.state().connections, 3);
    assert_eq!(tls.0.load(Ordering::SeqCst), 3);
    let mut conn = pool.get().unwrap();
    assert!(backend_pid(&mut conn) > 0);
}
