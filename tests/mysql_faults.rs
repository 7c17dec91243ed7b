//! `sluicegate::mysql` against a sick MariaDB server on loopback: the server stopped under load, a
//! listener that accepts and never answers, a user out of connections, and every pooled
//! session killed under load.
//!
//! The tests use the local server that `scripts/services.sh` sets up: 127.0.0.1:3306, user
//! `root` with an empty password, database `test`, and the user `sluicegate_limited`
//! (MAX_USER_CONNECTIONS 2). Without a reachable server they say so loudly and pass, except
//! under `CI=true`, where they fail. The test that stops the server (SIGSTOP of `mariadbd`
//! itself: the only way, as MariaDB runs every session in one process) runs only under
//! `CI=true` or with `SLUICEGATE_SERVER_FAULTS=1` (`common::server_faults_allowed`), and needs root
//! beside the server; the others touch only their own pools' sessions, or no server at all.
//!
//! One test at a time (`faults::one_at_a_time`): a stopped server and session-killing rounds
//! must not meet another test's connections.
#![cfg(feature = "mysql")]

mod common;
#[path = "common/faults.rs"]
mod faults;

use std::time::Duration;

use mysql::prelude::Queryable;
use mysql::{Conn, OptsBuilder};
use sluicegate::Pool;
use sluicegate::mysql::MysqlConnectionManager;

use common::{SOON, chain, eventually, my_local, my_select_1, server_faults_allowed, skip};
use faults::{
    HungListener, LIMITED, Stopped, Twice, hung_build, hung_get, hung_pool, killed_under_load,
    names_no_answer, one_at_a_time, out_of_connections, stopped_under_load, unique,
};

/// How MariaDB's driver, through the pool, says that a host gave no answer: its own error for
/// a login that timed out, or the pool's.
const NO_ANSWER: &[&str] = &["did not finish the login", "no answer"];

/// The local server, as `user`, over TCP only (the driver would otherwise move a loopback
/// connection to the server's Unix socket, briefly holding two).
fn opts(user: &str) -> OptsBuilder {
    my_local().user(Some(user)).prefer_socket(false)
}

/// A client of the test's own, for looking at and acting on the pools' sessions.
fn admin() -> Conn {
    Conn::new(opts("root")).expect("an admin connection")
}

/// Whether the server answers; if not, says so loudly (fails under CI).
fn server(test: &str) -> bool {
    match Conn::new(opts("root").tcp_connect_timeout(Some(Duration::from_secs(5)))) {
        Ok(_) => true,
        Err(err) => {
            let why = format!("no MariaDB at 127.0.0.1:3306 ({})", chain(&err));
            skip(test, &why, "run scripts/services.sh");
            false
        }
    }
}

fn connection_id(conn: &mut Conn) -> Result<u64, String> {
    conn.query_first("SELECT CONNECTION_ID()")
        .map_err(|err| chain(&err))?
        .ok_or_else(|| "no connection id".to_string())
}

// ---- 1. The server stopped under load (gated) ----------------------------------------------

/// The server's process id, from its pid file, checked to be a MariaDB server.
fn server_pid(admin: &mut Conn) -> Result<u32, String> {
    let file: Option<String> = admin
        .query_first("SELECT @@pid_file")
        .map_err(|err| chain(&err))?;
    let file = file.ok_or("the server names no pid file")?;
    let pid: u32 = std::fs::read_to_string(&file)
        .map_err(|err| format!("cannot read {file}: {err}"))?
        .trim()
        .parse()
        .map_err(|err| format!("{file}: {err}"))?;
    let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if !matches!(name.trim(), "mariadbd" | "mysqld") {
        return Err(format!(
            "process {pid} from {file} is {name:?}, not mariadbd"
        ));
    }
    Ok(pid)
}

#[test]
fn gets_stay_within_their_timeout_while_the_server_is_stopped() {
    let test = "gets_stay_within_their_timeout_while_the_server_is_stopped";
    if !server_faults_allowed(test) {
        return;
    }
    let _serial = one_at_a_time();
    if !server(test) {
        return;
    }
    let pool = Pool::builder()
        .pool_name(unique("my-stop"))
        .max_size(4)
        .min_idle(Some(4))
        .connection_timeout(Duration::from_secs(1))
        .validation_skip_window(Duration::ZERO)
        .error_handler(Box::new(sluicegate::NopErrorHandler))
        .build(MysqlConnectionManager::new(opts("root")))
        .expect("a pool on the running server");
    let mut admin = admin();
    let stop = || {
        let pid = server_pid(&mut admin)?;
        eprintln!("{test}: stopping mariadbd ({pid})");
        Stopped::begin(&[pid])
    };
    stopped_under_load(test, pool, my_select_1, stop);
}

// ---- 2. A listener that accepts and never answers ------------------------------------------

/// The local server's settings (`my_local`), but at 127.0.0.1:`port`: a listener of the
/// test's own.
fn hung_opts(port: u16) -> OptsBuilder {
    my_local().tcp_port(port)
}

#[test]
fn a_server_that_accepts_and_never_answers_costs_no_more_than_the_timeout() {
    let _serial = one_at_a_time();
    let listener = HungListener::start();
    let port = listener.port();
    let timeout = Duration::from_secs(1);
    hung_build(MysqlConnectionManager::new(hung_opts(port)), timeout);

    let pool = hung_pool(timeout).build_unchecked(MysqlConnectionManager::new(hung_opts(port)));
    for round in 0..4 {
        let err = hung_get(&pool, timeout);
        // Even the first: the attempt gives up a little before the caller who waits for it.
        assert!(
            err.last_error().is_some(),
            "round {round}: the connect's error: {err}"
        );
    }
    assert!(listener.accepted() >= 2, "the listener was tried");
}

/// A login that never answers is named: the address, and that it gave no answer (the driver's
/// own error for a handshake that timed out names neither), from the first check-out on.
#[test]
fn a_server_that_accepts_and_never_answers_is_named() {
    let _serial = one_at_a_time();
    let listener = HungListener::start();
    let port = listener.port();
    let timeout = Duration::from_secs(1);
    let pool = hung_pool(timeout).build_unchecked(MysqlConnectionManager::new(hung_opts(port)));
    // Past the first attempt, so that the pool has its error to show.
    let _ = pool.get_timeout(timeout);
    let err = hung_get(&pool, timeout);
    names_no_answer("get_timeout", &err, port, NO_ANSWER);
    drop(pool);

    let err = hung_build(MysqlConnectionManager::new(hung_opts(port)), timeout);
    names_no_answer("build", &err, port, NO_ANSWER);
}

// ---- 3. Too many connections for the user --------------------------------------------------

#[test]
fn a_user_out_of_connections_is_a_clear_error_without_a_storm_and_the_pool_recovers() {
    let test = "a_user_out_of_connections_is_a_clear_error_without_a_storm";
    let _serial = one_at_a_time();
    if !server(test) {
        return;
    }
    out_of_connections(
        test,
        "user",
        "max_user_connections",
        || Conn::new(opts(LIMITED)),
        unique("my-limited"),
        MysqlConnectionManager::new(opts(LIMITED)),
        my_select_1,
    );
}

// ---- 4. Every pooled session killed under load --------------------------------------------

/// Kills every session in `ids` the server still lists (the pool's own, as its connections
/// reported them) and waits until they are gone; returns how many it killed.
fn kill_all(admin: &mut Conn, ids: &std::collections::HashSet<u64>) -> usize {
    if ids.is_empty() {
        return 0;
    }
    let list: Vec<String> = ids.iter().map(u64::to_string).collect();
    let alive = |admin: &mut Conn| -> Vec<u64> {
        admin
            .query(format!(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE ID IN ({})",
                list.join(",")
            ))
            .unwrap()
    };
    let victims = alive(admin);
    let mut killed = 0;
    for id in &victims {
        // Gone already (it ended meanwhile): "Unknown thread id".
        if admin.query_drop(format!("KILL CONNECTION {id}")).is_ok() {
            killed += 1;
        }
    }
    assert!(
        eventually(SOON, || alive(admin).iter().all(|id| !victims.contains(id))),
        "killed sessions outlived KILL"
    );
    killed
}

fn kill_pool(test: &str) -> Option<Pool<MysqlConnectionManager>> {
    if !server(test) {
        return None;
    }
    Some(
        Pool::builder()
            .pool_name(unique("my-kill"))
            .max_size(8)
            .min_idle(Some(8))
            .connection_timeout(Duration::from_secs(5))
            .error_handler(Box::new(sluicegate::NopErrorHandler))
            .build(MysqlConnectionManager::new(opts("root")))
            .expect("a pool on the running server"),
    )
}

#[test]
fn killing_every_pooled_session_under_load_costs_at_most_the_queries_in_flight() {
    let test = "killing_every_pooled_session_under_load";
    let _serial = one_at_a_time();
    let Some(pool) = kill_pool(test) else {
        return;
    };
    let mut admin = admin();
    killed_under_load(
        test,
        pool,
        connection_id,
        |ids| kill_all(&mut admin, ids),
        Twice::Never,
    );
}
