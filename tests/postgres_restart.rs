//! `sluicegate::postgres` while the PostgreSQL server restarts under load: check-outs during the
//! outage fail within `connection_timeout` with the server's reason, and the pool recovers on
//! its own once the server is back (the checks are in `common/restart.rs`).
//!
//! The test stops and starts the local server with `scripts/services.sh stop|start postgres`,
//! so it needs root (or passwordless sudo) on a machine that script manages, and uses that
//! server: 127.0.0.1:5432, user `postgres`, database `test` (the `SLUICEGATE_PG_*` settings of
//! tests/postgres.rs do not apply). It is a test binary of its own, so that no other test meets
//! the outage. It runs only under `CI=true` or with `SLUICEGATE_SERVER_FAULTS=1`
//! (`common::server_faults_allowed`): otherwise it says so loudly and passes. When it cannot
//! stop and start the server it says so loudly and passes, except under `CI=true`, where it
//! fails.
#![cfg(feature = "postgres")]

mod common;
#[path = "common/restart.rs"]
mod restart;

use std::time::Duration;

use postgres::NoTls;
use sluicegate::Pool;
use sluicegate::postgres::PostgresConnectionManager;

use common::{pg_local, pg_select_1};
use restart::{Server, restart_under_load};

const POSTGRES: Server = Server {
    name: "postgres",
    reasons: &[
        // Connects while it is down.
        "connection refused",
        // Connects while it stops or starts.
        "shutting down",
        "starting up",
        // Validating a session it terminated (fast shutdown): the server's message, or the
        // driver's when the server's did not arrive.
        "terminating connection",
        "connection closed",
        "error communicating with the server",
    ],
    // The synchronous client reads its socket only inside a call. When the server ends a
    // session in the middle of a query, the query fails with "FATAL: terminating connection
    // due to administrator command", but the end of the stream that follows is not read yet:
    // `is_closed`, and so `has_broken`, still say the connection is open, and the pool takes
    // it back. Inside the skip window the next borrower gets it unchecked and fails with
    // "connection closed" (or a reset); `has_broken` then retires it. `postgres::Client` has
    // no cheap way to look for the end of the stream: a non-blocking poll of its notifications
    // does not read the socket, and one with a zero timeout takes a millisecond.
    fails_twice_after: Some("terminating connection"),
    answers,
};

/// Whether the server answers a client of the test's own.
fn answers() -> bool {
    pg_local(5432)
        .connect_timeout(Duration::from_secs(1))
        .connect(NoTls)
        .and_then(|mut client| client.simple_query("SELECT 1"))
        .is_ok()
}

fn pool() -> Pool<PostgresConnectionManager<NoTls>> {
    let mut config = pg_local(5432);
    config.connect_timeout(Duration::from_secs(5));
    Pool::builder()
        .pool_name("pg-restart")
        .max_size(4)
        .min_idle(Some(4))
        .connection_timeout(Duration::from_secs(2))
        .error_handler(Box::new(sluicegate::NopErrorHandler))
        .build(PostgresConnectionManager::new(config, NoTls))
        .expect("a pool on the running server")
}

#[test]
fn the_pool_recovers_on_its_own_from_a_server_restart_under_load() {
    restart_under_load(
        "the_pool_recovers_on_its_own_from_a_server_restart_under_load",
        &POSTGRES,
        pool,
        pg_select_1,
    );
}
