//! `sluicegate::mysql` while the MariaDB server restarts under load: check-outs during the outage
//! fail within `connection_timeout` with the server's reason, and the pool recovers on its own
//! once the server is back (the checks are in `common/restart.rs`).
//!
//! The test stops and starts the local server with `scripts/services.sh stop|start mariadb`,
//! so it needs root (or passwordless sudo) on a machine that script manages, and uses that
//! server: 127.0.0.1:3306, user `root` with an empty password, database `test` (the
//! `SLUICEGATE_MY_*` settings of tests/mysql.rs do not apply). It is a test binary of its own, so
//! that no other test meets the outage. It runs only under `CI=true` or with
//! `SLUICEGATE_SERVER_FAULTS=1` (`common::server_faults_allowed`): otherwise it says so loudly and
//! passes. When it cannot stop and start the server it says so loudly and passes, except under
//! `CI=true`, where it fails.
#![cfg(feature = "mysql")]

mod common;
#[path = "common/restart.rs"]
mod restart;

use std::time::Duration;

use mysql::Conn;
use mysql::prelude::Queryable;
use sluicegate::Pool;
use sluicegate::mysql::MysqlConnectionManager;

use common::{my_local, my_select_1};
use restart::{Server, restart_under_load};

const MARIADB: Server = Server {
    name: "mariadb",
    reasons: &[
        // Connects while it is down.
        "connection refused",
        // Connects while it stops, and sessions it closed: the server's message ("Server
        // shutdown in progress"), or the driver's when it did not arrive.
        "shutdown",
        "broken pipe",
        "connection reset",
        "failed to fill whole buffer",
    ],
    // `has_broken` polls the socket, so a session the server ended is retired as it comes
    // back.
    fails_twice_after: None,
    answers,
};

/// Whether the server answers a client of the test's own.
fn answers() -> bool {
    let opts = my_local()
        .tcp_connect_timeout(Some(Duration::from_secs(1)))
        .read_timeout(Some(Duration::from_secs(1)))
        .write_timeout(Some(Duration::from_secs(1)));
    Conn::new(opts)
        .and_then(|mut conn| conn.query_drop("SELECT 1"))
        .is_ok()
}

fn pool() -> Pool<MysqlConnectionManager> {
    let opts = my_local().tcp_connect_timeout(Some(Duration::from_secs(5)));
    Pool::builder()
        .pool_name("my-restart")
        .max_size(4)
        .min_idle(Some(4))
        .connection_timeout(Duration::from_secs(2))
        .error_handler(Box::new(sluicegate::NopErrorHandler))
        .build(MysqlConnectionManager::new(opts))
        .expect("a pool on the running server")
}

#[test]
fn the_pool_recovers_on_its_own_from_a_server_restart_under_load() {
    restart_under_load(
        "the_pool_recovers_on_its_own_from_a_server_restart_under_load",
        &MARIADB,
        pool,
        my_select_1,
    );
}
