//! `sluicegate::mysql` against a real MariaDB (or MySQL) server on 127.0.0.1.
//!
//! The server is the one the `SLUICEGATE_MY_HOST`, `_PORT`, `_USER`, `_PASSWORD` and `_DATABASE`
//! settings name (`common::Server::mysql` reads them), by default the local one that
//! `scripts/services.sh` sets up. Without a reachable server the tests say so loudly and pass,
//! except under `CI=true`, where they fail.
#![cfg(feature = "mysql")]

mod common;

use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use mysql::{Conn, OptsBuilder};
use sluicegate::Pool;
use sluicegate::mysql::MysqlConnectionManager;

use common::{
    SOON, capture_logs, check_refused, check_wrong_password, env, eventually, linux_only, my_local,
    my_opts, skip, unused_port,
};

/// The server's settings, or `None` (with a loud message) when it cannot be reached outside CI.
fn server(test: &str) -> Option<OptsBuilder> {
    match Conn::new(my_opts()) {
        Ok(_) => Some(my_opts()),
        Err(err) => {
            skip(
                test,
                &format!("no MariaDB ({err})"),
                "run scripts/services.sh",
            );
            None
        }
    }
}

/// [`server`], for a test that counts on the pool's look at a connection's socket (the only
/// way it finds a killed session without a round trip): Linux only.
fn server_to_look_at(test: &str) -> Option<OptsBuilder> {
    if linux_only(test, "the pool's look at a connection's socket") {
        server(test)
    } else {
        None
    }
}

fn session_id(conn: &mut Conn) -> u64 {
    conn.query_first("SELECT CONNECTION_ID()").unwrap().unwrap()
}

#[test]
fn round_trip_and_reuse() {
    let Some(opts) = server("round_trip_and_reuse") else {
        return;
    };
    let pool = Pool::builder()
        .max_size(2)
        .build(MysqlConnectionManager::new(opts))
        .unwrap();
    let first = session_id(&mut pool.get().unwrap());
    let mut conn = pool.get().unwrap();
    assert_eq!(session_id(&mut conn), first, "the same session, reused");
    let two: Option<i32> = conn.query_first("SELECT 1 + 1").unwrap();
    assert_eq!(two, Some(2));
}

/// Kills session `victim` from another connection and waits until the server has ended it,
/// which on loopback means its goodbye is already on the victim's socket.
fn kill(opts: &OptsBuilder, victim: u64) {
    let mut admin = Conn::new(opts.clone()).unwrap();
    admin.query_drop(format!("KILL {victim}")).unwrap();
    assert!(
        eventually(SOON, || {
            let alive: Option<u64> = admin
                .query_first(format!(
                    "SELECT ID FROM information_schema.PROCESSLIST WHERE ID = {victim}"
                ))
                .unwrap();
            alive.is_none()
        }),
        "session {victim} outlived KILL"
    );
}

#[test]
fn a_session_killed_while_checked_out_is_closed_on_return_without_a_round_trip() {
    let Some(opts) = server_to_look_at("a_session_killed_while_checked_out") else {
        return;
    };
    let pool = Pool::builder()
        .max_size(1)
        .build(MysqlConnectionManager::new(opts.clone()))
        .unwrap();
    let mut conn = pool.get().unwrap();
    let victim = session_id(&mut conn);
    kill(&opts, victim);
    drop(conn);
    assert_eq!(
        pool.metrics().closed_broken,
        1,
        "has_broken saw the dead socket"
    );
    let mut fresh = pool.get_timeout(SOON).unwrap();
    assert_ne!(session_id(&mut fresh), victim);
}

#[test]
fn a_session_killed_while_idle_is_never_handed_out_even_inside_the_skip_window() {
    let Some(opts) = server_to_look_at("a_session_killed_while_idle") else {
        return;
    };
    // With an hour's skip window the check-out never validates with a round trip: only the
    // look at the socket can find the dead session.
    let pool = Pool::builder()
        .max_size(1)
        .validation_skip_window(Duration::from_secs(3600))
        .build(MysqlConnectionManager::new(opts.clone()))
        .unwrap();
    let victim = session_id(&mut pool.get().unwrap());
    kill(&opts, victim);
    let mut conn = pool.get_timeout(SOON).unwrap();
    let live: Option<u64> = conn
        .query_first("SELECT CONNECTION_ID()")
        .expect("the first query on the connection handed out after the kill");
    assert_ne!(live, Some(victim));
    assert_eq!(pool.metrics().closed_broken, 1);
}

#[test]
fn a_wrong_password_fails_at_once_with_the_servers_reason_and_is_never_shown() {
    let Some(opts) = server("a_wrong_password_fails_at_once") else {
        return;
    };
    capture_logs();
    let secret = "not-the-password-9Kd";
    let opts = opts.user(Some("sluicegate_auth")).pass(Some(secret));
    let started = Instant::now();
    let result = Pool::builder()
        .pool_name("my-wrong-password")
        .connection_timeout(Duration::from_secs(60))
        .build(MysqlConnectionManager::new(opts.clone()));
    let debug = format!("{:?}", MysqlConnectionManager::new(opts));
    check_wrong_password(
        result,
        started,
        "Access denied",
        secret,
        &debug,
        "my-wrong-password",
    );
}

#[test]
fn nothing_listening_is_a_clear_error_within_the_timeout() {
    let opts = my_local().tcp_port(unused_port());
    let timeout = Duration::from_millis(500);
    let started = Instant::now();
    let result = Pool::builder()
        .connection_timeout(timeout)
        .error_handler(Box::new(sluicegate::NopErrorHandler))
        .build(MysqlConnectionManager::new(opts));
    check_refused(result, started, timeout);
}

/// Whether session state left by one borrower reaches the next: a session variable, a user
/// variable, a temporary table.
fn state_leaks(recycling: bool) -> (bool, bool, bool) {
    let pool = Pool::builder()
        .max_size(1)
        .build(MysqlConnectionManager::new(my_opts()).with_recycling(recycling))
        .unwrap();
    pool.get()
        .unwrap()
        .query_drop(
            "SET SESSION sql_mode = 'ANSI_QUOTES'; SET @borrower = 1; \
             CREATE TEMPORARY TABLE scratch (x INT)",
        )
        .unwrap();
    let mut conn = pool.get().unwrap();
    let mode: String = conn
        .query_first("SELECT @@SESSION.sql_mode")
        .unwrap()
        .unwrap();
    let var: Option<Option<i64>> = conn.query_first("SELECT @borrower").unwrap();
    let table = conn.query_drop("SELECT * FROM scratch").is_ok();
    (mode == "ANSI_QUOTES", var.flatten().is_some(), table)
}

#[test]
fn recycling_gives_each_borrower_a_clean_session() {
    if server("recycling_gives_each_borrower_a_clean_session").is_none() {
        return;
    }
    assert_eq!(
        state_leaks(false),
        (true, true, true),
        "without recycling, state leaks"
    );
    assert_eq!(
        state_leaks(true),
        (false, false, false),
        "with recycling, it does not"
    );
}

/// TLS through the `mysql-rustls` feature, against the certificate `scripts/services.sh` gives
/// the local server (`SLUICEGATE_MY_TLS_CA` points elsewhere).
#[cfg(feature = "mysql-rustls")]
#[test]
fn tls_sessions_are_reused_and_a_killed_one_is_still_seen_under_tls() {
    let Some(opts) = server_to_look_at("tls_sessions") else {
        return;
    };
    let ca = env("SLUICEGATE_MY_TLS_CA", "/etc/mysql/sluicegate-tls/ca.pem");
    if !std::path::Path::new(&ca).exists() {
        let why = format!("no server certificate at {ca}");
        skip("tls_sessions", &why, "run scripts/services.sh");
        return;
    }
    let tls = mysql::SslOpts::default().with_root_cert_path(Some(std::path::PathBuf::from(ca)));
    // On loopback the driver moves to the server's Unix socket, which TLS does not cover.
    let opts = opts.ssl_opts(tls).prefer_socket(false);
    let pool = Pool::builder()
        .max_size(1)
        .validation_skip_window(Duration::from_secs(3600))
        .build(MysqlConnectionManager::new(opts.clone()))
        .unwrap();
    let mut conn = pool.get().unwrap();
    let cipher: Option<(String, String)> = conn
        .query_first("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        .unwrap();
    assert!(
        cipher.as_ref().is_some_and(|(_, value)| !value.is_empty()),
        "the session is encrypted: {cipher:?}"
    );
    let first = session_id(&mut conn);
    drop(conn);
    // Whatever TLS leaves on the wire after the handshake must not look like a dead session.
    for _ in 0..5 {
        assert_eq!(session_id(&mut pool.get().unwrap()), first);
    }
    assert_eq!(pool.metrics().closed_broken, 0);
    kill(&opts, first);
    let mut conn = pool.get_timeout(SOON).unwrap();
    let live: Option<u64> = conn
        .query_first("SELECT CONNECTION_ID()")
        .expect("the first query after the kill");
    assert_ne!(live, Some(first));
    assert_eq!(pool.metrics().closed_broken, 1);
}
