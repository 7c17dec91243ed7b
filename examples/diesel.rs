//! diesel on a sluicegate pool, written as for `diesel::r2d2`: only the `use` of the pool's names
//! differs. Threads insert through `&mut conn`, a failed transaction rolls back, a pool with
//! diesel's `TestCustomizer` commits nothing, and a wrong password fails at once.
//!
//! ```text
//! cargo run --example diesel --features diesel-postgres [-- postgres://user@host/db]
//! ```
//!
//! Default: `postgres://postgres@127.0.0.1/test`, the server `scripts/services.sh` sets up.
use std::thread;
use std::time::{Duration, Instant};

use diesel::prelude::*;
// With r2d2: `use diesel::r2d2::{ConnectionManager, Pool, PoolError, PooledConnection, ...};`
use sluicegate::diesel::{ConnectionManager, Pool, PoolError, PooledConnection, TestCustomizer};

type Conn = PooledConnection<ConnectionManager<PgConnection>>;

fn add_note(conn: &mut Conn, table: &str, body: &str) -> QueryResult<usize> {
    diesel::sql_query(format!("INSERT INTO {table} (body) VALUES ($1)"))
        .bind::<diesel::sql_types::Text, _>(body)
        .execute(conn)
}

fn count(conn: &mut Conn, table: &str) -> QueryResult<i64> {
    diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(&format!(
        "(SELECT count(*) FROM {table})"
    )))
    .get_result(conn)
}

fn pool(url: &str, customized: bool) -> Result<Pool<ConnectionManager<PgConnection>>, PoolError> {
    let builder = Pool::builder()
        .max_size(4)
        .connection_timeout(Duration::from_secs(5));
    let builder = if customized {
        builder.connection_customizer(Box::new(TestCustomizer))
    } else {
        builder
    };
    builder.build(ConnectionManager::new(url))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1/test".to_owned());
    let table = format!("sluicegate_example_{}", std::process::id());
    let pool = pool(&url, false)?;
    diesel::sql_query(format!("CREATE TABLE {table} (id serial, body text)"))
        .execute(&mut pool.get()?)?;

    let workers: Vec<_> = (0..4)
        .map(|i| {
            let (pool, table) = (pool.clone(), table.clone());
            thread::spawn(
                move || -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
                    let mut conn = pool.get()?;
                    add_note(&mut conn, &table, &format!("from thread {i}"))?;
                    // The insert is rolled back with the failed division.
                    let failed = conn.transaction(|conn| {
                        add_note(conn, &table, "rolled back")?;
                        diesel::sql_query("SELECT 1/0").execute(conn)
                    });
                    assert!(failed.is_err());
                    Ok(())
                },
            )
        })
        .collect();
    for worker in workers {
        worker.join().unwrap().map_err(|e| e.to_string())?;
    }
    println!("{} notes committed", count(&mut pool.get()?, &table)?);

    let tests = self::pool(&url, true)?;
    let mut conn = tests.get()?;
    add_note(&mut conn, &table, "never committed")?;
    println!(
        "test pool: its connection sees {}, the others {}",
        count(&mut conn, &table)?,
        count(&mut pool.get()?, &table)?
    );
    // Its test transaction holds a lock on the table until the connection closes, with its pool.
    drop(conn);
    drop(tests);
    diesel::sql_query(format!("DROP TABLE {table}")).execute(&mut pool.get()?)?;

    // The same server and database as a role whose password this is not.
    let rest = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
    let server = rest.rsplit_once('@').map_or(rest, |(_, server)| server);
    let wrong = format!("postgres://sluicegate_auth:wrong@{server}");
    let started = Instant::now();
    if let Err(err) = self::pool(&wrong, false) {
        println!("wrong password, after {:?}: {err}", started.elapsed());
    }
    Ok(())
}
