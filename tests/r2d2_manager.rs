//! `sluicegate::r2d2::R2d2Manager`: a manager written for r2d2 is pooled by sluicegate unchanged.
#![cfg(feature = "r2d2")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sluicegate::Pool;
use sluicegate::r2d2::R2d2Manager;

#[derive(Debug)]
struct Session {
    id: u64,
    broken: bool,
}

/// What an adapter crate's manager looks like: it implements r2d2's trait only, and its own
/// `Debug` prints its settings, password included.
#[derive(Debug, Default)]
struct AdapterManager {
    password: String,
    opened: Arc<AtomicU64>,
    validated: Arc<AtomicU64>,
}

impl r2d2::ManageConnection for AdapterManager {
    type Connection = Session;
    type Error = std::io::Error;

    fn connect(&self) -> Result<Session, std::io::Error> {
        let id = self.opened.fetch_add(1, Ordering::SeqCst);
        Ok(Session { id, broken: false })
    }

    fn is_valid(&self, _: &mut Session) -> Result<(), std::io::Error> {
        self.validated.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn has_broken(&self, conn: &mut Session) -> bool {
        conn.broken
    }
}

#[test]
fn an_r2d2_manager_is_pooled_and_its_connections_reused() {
    let manager = AdapterManager::default();
    let opened = manager.opened.clone();
    let validated = manager.validated.clone();
    let pool = Pool::builder()
        .max_size(2)
        .validation_skip_window(Duration::ZERO)
        .build(R2d2Manager::new(manager))
        .unwrap();
    let first = pool.get().unwrap().id;
    assert_eq!(
        pool.get().unwrap().id,
        first,
        "reused, most recently used first"
    );
    assert_eq!(opened.load(Ordering::SeqCst), 2);
    // The inner manager's is_valid ran on each check-out.
    assert_eq!(validated.load(Ordering::SeqCst), 2);
}

#[test]
fn the_inner_managers_has_broken_decides() {
    let pool = Pool::builder()
        .max_size(1)
        .build(R2d2Manager::from(AdapterManager::default()))
        .unwrap();
    let mut conn = pool.get().unwrap();
    let id = conn.id;
    conn.broken = true;
    drop(conn);
    assert_eq!(pool.metrics().closed_broken, 1);
    assert_ne!(pool.get().unwrap().id, id);
}

#[test]
fn debug_does_not_print_the_inner_managers_settings() {
    let manager = R2d2Manager::new(AdapterManager {
        password: "hunter2".into(),
        ..AdapterManager::default()
    });
    assert_eq!(manager.get_ref().password, "hunter2");
    let pool = Pool::builder().max_size(1).build(manager).unwrap();
    let printed = format!("{pool:?}");
    assert!(printed.contains("R2d2Manager"), "{printed}");
    assert!(!printed.contains("hunter2"), "{printed}");
}

/// An adapter's manager whose server refuses the login: it fails every connect with
/// `PermissionDenied`, which r2d2's trait gives no way to call permanent.
#[derive(Debug)]
struct Refusing;

impl r2d2::ManageConnection for Refusing {
    type Connection = Session;
    type Error = std::io::Error;

    fn connect(&self) -> Result<Session, std::io::Error> {
        Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "password authentication failed",
        ))
    }

    fn is_valid(&self, _: &mut Session) -> Result<(), std::io::Error> {
        Ok(())
    }

    fn has_broken(&self, _: &mut Session) -> bool {
        false
    }
}

#[test]
fn permanent_if_makes_build_fail_at_once() {
    let manager = R2d2Manager::new(Refusing)
        .permanent_if(|err: &std::io::Error| err.kind() == std::io::ErrorKind::PermissionDenied);
    let started = Instant::now();
    let err = Pool::builder()
        .connection_timeout(Duration::from_secs(30))
        .error_handler(Box::new(sluicegate::NopErrorHandler))
        .build(manager)
        .unwrap_err();
    let took = started.elapsed();
    assert!(err.is_permanent(), "{err}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(
        err.to_string().contains("password authentication failed"),
        "{err}"
    );
}

#[test]
fn without_permanent_if_build_waits_out_its_timeout() {
    let timeout = Duration::from_millis(1500);
    let started = Instant::now();
    let err = Pool::builder()
        .connection_timeout(timeout)
        .error_handler(Box::new(sluicegate::NopErrorHandler))
        .build(R2d2Manager::new(Refusing))
        .unwrap_err();
    let took = started.elapsed();
    assert!(err.is_timeout() && !err.is_permanent(), "{err}");
    assert!(took >= timeout, "{took:?}");
    assert!(
        err.to_string().contains("password authentication failed"),
        "{err}"
    );
}

#[test]
fn a_panicking_rule_counts_as_not_permanent() {
    let manager = R2d2Manager::new(Refusing).permanent_if(|_: &std::io::Error| panic!("rule bug"));
    let err = Pool::builder()
        .connection_timeout(Duration::from_millis(300))
        .error_handler(Box::new(sluicegate::NopErrorHandler))
        .build(manager)
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
}

/// What r2d2_postgres does, without the crate: its manager's error is `postgres::Error`, which
/// the default rule knows when sluicegate's `postgres` feature is on.
#[cfg(feature = "postgres")]
#[derive(Debug)]
struct PostgresAdapter(postgres::Config);

#[cfg(feature = "postgres")]
impl r2d2::ManageConnection for PostgresAdapter {
    type Connection = postgres::Client;
    type Error = postgres::Error;

    fn connect(&self) -> Result<postgres::Client, postgres::Error> {
        self.0.connect(postgres::NoTls)
    }

    fn is_valid(&self, client: &mut postgres::Client) -> Result<(), postgres::Error> {
        client.simple_query("").map(|_| ())
    }

    fn has_broken(&self, client: &mut postgres::Client) -> bool {
        client.is_closed()
    }
}

#[cfg(feature = "postgres")]
#[test]
fn a_postgres_adapters_wrong_password_fails_at_once_by_default() {
    let mut config = common::pg_config();
    if let Err(err) = config.connect(postgres::NoTls) {
        common::skip(
            "a_postgres_adapters_wrong_password_fails_at_once_by_default",
            &format!("no PostgreSQL ({err})"),
            "run scripts/services.sh",
        );
        return;
    }
    config.user("sluicegate_auth").password("wrong");
    let started = Instant::now();
    let err = Pool::builder()
        .connection_timeout(Duration::from_secs(30))
        .error_handler(Box::new(sluicegate::NopErrorHandler))
        .build(R2d2Manager::new(PostgresAdapter(config.clone())))
        .unwrap_err();
    assert!(err.is_permanent(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    config.password("sluicegate-auth-secret");
    let pool = Pool::builder()
        .max_size(1)
        .build(R2d2Manager::new(PostgresAdapter(config)))
        .unwrap();
    let user: String = pool
        .get()
        .unwrap()
        .query_one("SELECT current_user::text", &[])
        .unwrap()
        .get(0);
    assert_eq!(user, "sluicegate_auth");
}

#[test]
fn r2d2_builder_calls_compile_unchanged() {
    #[derive(Debug)]
    struct Numbered;

    impl r2d2::CustomizeConnection<Session, std::io::Error> for Numbered {
        fn on_acquire(&self, conn: &mut Session) -> Result<(), std::io::Error> {
            conn.id += 100;
            Ok(())
        }
    }

    let threads = Arc::new(scheduled_thread_pool::ScheduledThreadPool::new(1));
    let boxed: Box<dyn r2d2::CustomizeConnection<Session, std::io::Error>> = Box::new(Numbered);
    let pool = Pool::builder()
        .max_size(1)
        .thread_pool(threads.clone())
        .connection_customizer(Box::new(sluicegate::r2d2::R2d2Customizer::new(boxed)))
        .build(R2d2Manager::new(AdapterManager::default()))
        .unwrap();
    assert!(pool.get().unwrap().id >= 100);
    // The thread pool was not kept: the pool runs on threads of its own.
    assert_eq!(Arc::strong_count(&threads), 1);

    let pool = Pool::builder()
        .max_size(1)
        .connection_customizer(Box::new(r2d2::NopConnectionCustomizer))
        .build(R2d2Manager::new(AdapterManager::default()))
        .unwrap();
    assert!(pool.get().unwrap().id < 100);
}
