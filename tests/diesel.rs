//! `sluicegate::diesel`: diesel's `PgConnection` pooled by sluicegate, used as diesel users use
//! r2d2's pooled connections, against the local PostgreSQL server.
//!
//! The server is the one of tests/postgres.rs (the `SLUICEGATE_PG_*` settings, read by
//! `common::Server::postgres`), by default the local one `scripts/services.sh` sets up with the
//! role `sluicegate_auth`, password `sluicegate-auth-secret`. Without a reachable server the
//! tests say so loudly and pass, except under `CI=true`, where they fail.
#![cfg(feature = "diesel-postgres")]

mod common;

use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::result::{ConnectionError, Error as QueryError};
use sluicegate::diesel::{ConnectionManager, Pool, PooledConnection, TestCustomizer};
use sluicegate::r2d2::{R2d2Customizer, R2d2Manager, refuses_login};

use common::{SOON, Server, capture_logs, check_refused, check_wrong_password, skip, unused_port};

diesel::table! {
    items (id) {
        id -> Integer,
        name -> Text,
    }
}

/// The test server's URL, as `user` with `password` if given, else as configured.
fn url_as(user: Option<(&str, &str)>) -> String {
    let mut server = Server::postgres();
    if let Some((user, password)) = user {
        server.user = user.to_string();
        server.password = Some(password.to_string());
    }
    server.url()
}

/// The server's URL, or `None` (with a loud message) when it cannot be reached outside CI.
fn server(test: &str) -> Option<String> {
    let url = url_as(None);
    match PgConnection::establish(&url) {
        Ok(_) => Some(url),
        Err(err) => {
            skip(
                test,
                &format!("no PostgreSQL for diesel ({err})"),
                "run scripts/services.sh",
            );
            None
        }
    }
}

/// A one-connection pool: temporary tables live in its one session.
fn pool_of_one(url: &str) -> Pool<ConnectionManager<PgConnection>> {
    Pool::builder()
        .max_size(1)
        .build(ConnectionManager::new(url))
        .unwrap()
}

/// Creates the session's temporary `items` table, with `names` in it.
fn temporary_items(conn: &mut PooledConnection<ConnectionManager<PgConnection>>, names: &[&str]) {
    // `SimpleConnection` on the pooled connection itself.
    diesel::connection::SimpleConnection::batch_execute(
        conn,
        "CREATE TEMPORARY TABLE items (id serial PRIMARY KEY, name text NOT NULL)",
    )
    .unwrap();
    for name in names {
        diesel::insert_into(items::table)
            .values(items::name.eq(*name))
            .execute(conn)
            .unwrap();
    }
}

fn names(conn: &mut PooledConnection<ConnectionManager<PgConnection>>) -> Vec<String> {
    items::table
        .select(items::name)
        .order(items::id)
        .load(conn)
        .unwrap()
}

#[test]
fn queries_take_the_pooled_connection_as_diesels_own() {
    let Some(url) = server("queries_take_the_pooled_connection_as_diesels_own") else {
        return;
    };
    let pool = pool_of_one(&url);
    let mut conn = pool.get().unwrap();
    temporary_items(&mut conn, &["ada", "grace"]);

    // `load` with `&mut conn`, as with r2d2.
    let rows: Vec<(i32, String)> = items::table.order(items::id).load(&mut conn).unwrap();
    assert_eq!(rows, vec![(1, "ada".to_owned()), (2, "grace".to_owned())]);
    let count: i64 = items::table.count().get_result(&mut conn).unwrap();
    assert_eq!(count, 2);
    // A raw query with `RunQueryDsl::load` spelled out.
    #[derive(QueryableByName, Debug, PartialEq)]
    struct Sum {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        total: i32,
    }
    let sum: Vec<Sum> =
        RunQueryDsl::load(diesel::sql_query("SELECT 40 + 2 AS total"), &mut conn).unwrap();
    assert_eq!(sum, vec![Sum { total: 42 }]);
    // `update ... get_result` goes through the same traits.
    let renamed: String = diesel::update(items::table.filter(items::id.eq(2)))
        .set(items::name.eq("hopper"))
        .returning(items::name)
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(renamed, "hopper");
    drop(conn);

    // The same session comes back, its temporary table with it.
    assert_eq!(names(&mut pool.get().unwrap()), ["ada", "hopper"]);
    assert_eq!(pool.metrics().created, 1);
}

#[test]
fn transactions_commit_and_roll_back_on_the_pooled_connection() {
    let Some(url) = server("transactions_commit_and_roll_back_on_the_pooled_connection") else {
        return;
    };
    let pool = pool_of_one(&url);
    let mut conn = pool.get().unwrap();
    temporary_items(&mut conn, &[]);

    conn.transaction(|conn| {
        diesel::insert_into(items::table)
            .values(items::name.eq("kept"))
            .execute(conn)
    })
    .unwrap();
    let err = conn
        .transaction::<(), QueryError, _>(|conn| {
            diesel::insert_into(items::table)
                .values(items::name.eq("rolled back"))
                .execute(conn)?;
            Err(QueryError::RollbackTransaction)
        })
        .unwrap_err();
    assert!(matches!(err, QueryError::RollbackTransaction), "{err}");
    // A nested transaction (a savepoint) on the pooled connection.
    conn.transaction(|conn| {
        conn.transaction::<(), QueryError, _>(|conn| {
            diesel::insert_into(items::table)
                .values(items::name.eq("inner"))
                .execute(conn)?;
            Err(QueryError::RollbackTransaction)
        })
        .unwrap_err();
        diesel::insert_into(items::table)
            .values(items::name.eq("outer"))
            .execute(conn)
    })
    .unwrap();
    assert_eq!(names(&mut conn), ["kept", "outer"]);
    // `test_transaction` rolls everything back.
    conn.test_transaction::<_, QueryError, _>(|conn| {
        diesel::delete(items::table).execute(conn)?;
        Ok(())
    });
    assert_eq!(names(&mut conn), ["kept", "outer"]);
    drop(conn);
    // No transaction was left open: diesel's `has_broken` did not retire the connection.
    assert_eq!(pool.metrics().closed_broken, 0);
    assert_eq!(names(&mut pool.get().unwrap()), ["kept", "outer"]);
}

#[test]
fn a_connection_left_inside_a_transaction_is_not_reused() {
    let Some(url) = server("a_connection_left_inside_a_transaction_is_not_reused") else {
        return;
    };
    let pool = pool_of_one(&url);
    let mut conn = pool.get().unwrap();
    // What a transaction abandoned halfway leaves behind (diesel's own `transaction` always
    // ends what it began).
    type Pooled = PooledConnection<ConnectionManager<PgConnection>>;
    <<Pooled as Connection>::TransactionManager as diesel::connection::TransactionManager<
        Pooled,
    >>::begin_transaction(&mut conn)
    .unwrap();
    drop(conn);
    assert_eq!(pool.metrics().closed_broken, 1);
}

/// A table every connection sees (unlike a temporary one), for checking what was committed.
struct SharedTable {
    admin: PgConnection,
    name: String,
}

impl SharedTable {
    fn new(url: &str, test: &str) -> SharedTable {
        let mut admin = PgConnection::establish(url).unwrap();
        let name = format!("sluicegate_diesel_{test}_{}", std::process::id());
        diesel::sql_query(format!(
            "CREATE TABLE {name} (id serial PRIMARY KEY, name text NOT NULL)"
        ))
        .execute(&mut admin)
        .unwrap();
        SharedTable { admin, name }
    }

    fn insert(&self, conn: &mut impl diesel::Connection<Backend = diesel::pg::Pg>) {
        diesel::sql_query(format!("INSERT INTO {} (name) VALUES ('x')", self.name))
            .execute(conn)
            .unwrap();
    }

    /// Rows visible from outside, with `conn`'s own view alongside.
    fn committed(&mut self) -> i64 {
        diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(&format!(
            "(SELECT count(*) FROM {})",
            self.name
        )))
        .get_result(&mut self.admin)
        .unwrap()
    }
}

impl Drop for SharedTable {
    fn drop(&mut self) {
        let _ = diesel::sql_query(format!("DROP TABLE IF EXISTS {}", self.name))
            .execute(&mut self.admin);
    }
}

#[test]
fn the_test_customizer_keeps_everything_uncommitted() {
    let Some(url) = server("the_test_customizer_keeps_everything_uncommitted") else {
        return;
    };
    let mut table = SharedTable::new(&url, "customizer");
    let pool = Pool::builder()
        .max_size(1)
        .connection_customizer(Box::new(TestCustomizer))
        .build(ConnectionManager::<PgConnection>::new(&url))
        .unwrap();
    for _ in 0..3 {
        let mut conn = pool.get().unwrap();
        table.insert(&mut conn);
        // A transaction inside the test transaction is a savepoint.
        conn.transaction(|conn| {
            table.insert(conn);
            Ok::<_, QueryError>(())
        })
        .unwrap();
    }
    // The one connection saw its own six rows; nobody else saw any.
    let own: i64 = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(&format!(
        "(SELECT count(*) FROM {})",
        table.name
    )))
    .get_result(&mut pool.get().unwrap())
    .unwrap();
    assert_eq!(own, 6);
    assert_eq!(table.committed(), 0);
    // The open test transaction did not make the connection count as broken.
    assert_eq!(pool.metrics().created, 1);
    assert_eq!(pool.metrics().closed_broken, 0);
}

#[test]
fn an_r2d2_customizer_boxed_as_a_trait_object_goes_through_the_adapter() {
    let Some(url) = server("an_r2d2_customizer_boxed_as_a_trait_object_goes_through_the_adapter")
    else {
        return;
    };
    let mut table = SharedTable::new(&url, "boxed");
    let customizer: Box<dyn diesel::r2d2::CustomizeConnection<PgConnection, diesel::r2d2::Error>> =
        Box::new(TestCustomizer);
    // diesel's own manager inside `R2d2Manager`: the other way to pool diesel connections.
    let pool = sluicegate::Pool::builder()
        .max_size(1)
        .connection_customizer(Box::new(R2d2Customizer::new(customizer)))
        .build(R2d2Manager::new(diesel::r2d2::ConnectionManager::<
            PgConnection,
        >::new(&url)))
        .unwrap();
    table.insert(&mut pool.get().unwrap());
    assert_eq!(table.committed(), 0);
}

#[test]
fn begin_test_transaction_on_the_pooled_connection() {
    let Some(url) = server("begin_test_transaction_on_the_pooled_connection") else {
        return;
    };
    let mut table = SharedTable::new(&url, "begin");
    let pool = pool_of_one(&url);
    let mut conn = pool.get().unwrap();
    conn.begin_test_transaction().unwrap();
    table.insert(&mut conn);
    assert_eq!(table.committed(), 0);
}

#[test]
fn a_wrong_password_fails_build_at_once() {
    if server("a_wrong_password_fails_build_at_once").is_none() {
        return;
    }
    capture_logs();
    let secret = "sluicegate-wrong-password";
    let url = url_as(Some(("sluicegate_auth", secret)));
    let manager = ConnectionManager::<PgConnection>::new(&url);
    let manager_debug = format!("{manager:?}");
    let started = Instant::now();
    let result = Pool::builder()
        .pool_name("diesel-wrong-password")
        .connection_timeout(Duration::from_secs(30))
        .build(manager);
    check_wrong_password(
        result,
        started,
        "password authentication failed",
        secret,
        &manager_debug,
        "diesel-wrong-password",
    );

    // diesel's own manager in `R2d2Manager` knows it too, by default.
    let started = Instant::now();
    let err = sluicegate::Pool::builder()
        .connection_timeout(Duration::from_secs(30))
        .error_handler(Box::new(sluicegate::NopErrorHandler))
        .build(R2d2Manager::new(diesel::r2d2::ConnectionManager::<
            PgConnection,
        >::new(&url)))
        .unwrap_err();
    assert!(err.is_permanent(), "{err}");
    assert!(started.elapsed() < SOON, "{:?}", started.elapsed());

    // The right password of the same role works: the rule is not a blanket refusal.
    let right = url_as(Some(("sluicegate_auth", "sluicegate-auth-secret")));
    let pool = Pool::builder()
        .max_size(1)
        .build(ConnectionManager::<PgConnection>::new(right))
        .unwrap();
    let user: String = diesel::select(diesel::dsl::sql::<diesel::sql_types::Text>(
        "current_user::text",
    ))
    .get_result(&mut pool.get().unwrap())
    .unwrap();
    assert_eq!(user, "sluicegate_auth");
}

#[test]
fn an_unknown_database_fails_build_at_once() {
    if server("an_unknown_database_fails_build_at_once").is_none() {
        return;
    }
    let url = Server {
        database: "sluicegate_no_such_database".to_string(),
        ..Server::postgres()
    }
    .url();
    let started = Instant::now();
    let err = Pool::builder()
        .connection_timeout(Duration::from_secs(30))
        .error_handler(Box::new(sluicegate::NopErrorHandler))
        .build(ConnectionManager::<PgConnection>::new(url))
        .unwrap_err();
    assert!(err.is_permanent(), "{err}");
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert!(started.elapsed() < SOON, "{:?}", started.elapsed());
}

#[test]
fn nothing_listening_is_waited_for() {
    let url = format!("postgres://postgres@127.0.0.1:{}/test", unused_port());
    let timeout = Duration::from_secs(1);
    let started = Instant::now();
    let result = Pool::builder()
        .connection_timeout(timeout)
        .error_handler(Box::new(sluicegate::NopErrorHandler))
        .build(ConnectionManager::<PgConnection>::new(url));
    check_refused(result, started, timeout);
}

#[test]
fn what_counts_as_a_refused_login() {
    let bad = |text: &str| {
        diesel::r2d2::Error::ConnectionError(ConnectionError::BadConnection(text.to_owned()))
    };
    for permanent in [
        "connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  password \
         authentication failed for user \"app\"",
        "FATAL:  role \"app\" does not exist",
        "FATAL:  database \"app\" does not exist",
        "FATAL:  no pg_hba.conf entry for host \"10.0.0.1\", user \"app\"",
        "fe_sendauth: no password supplied",
        "ERROR:  no such database: app",
        "Access denied for user 'app'@'localhost' (using password: YES)",
        "Unknown database 'app'",
    ] {
        assert!(refuses_login(&bad(permanent)), "{permanent}");
    }
    for passing in [
        "connection to server at \"127.0.0.1\", port 5432 failed: Connection refused",
        "FATAL:  sorry, too many clients already",
        "FATAL:  the database system is starting up",
        "FATAL:  the database system is shutting down",
        "FATAL:  terminating connection due to administrator command",
        "timeout expired",
        "ERROR:  no more connections allowed (max_client_conn)",
    ] {
        assert!(!refuses_login(&bad(passing)), "{passing}");
    }
    let url = diesel::r2d2::Error::ConnectionError(ConnectionError::InvalidConnectionUrl(
        "invalid connection string".into(),
    ));
    assert!(refuses_login(&url));
    // A failed ping is never a refused login.
    assert!(!refuses_login(&diesel::r2d2::Error::QueryError(
        QueryError::NotFound
    )));
}
