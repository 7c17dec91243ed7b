//! `sluicegate::postgres` over TLS against a real PostgreSQL server on 127.0.0.1: rustls with the
//! ring provider (through tokio-postgres-rustls, no OpenSSL), `sslmode=require`, trusting only
//! the CA that signed the server's certificate.
//!
//! The server is the one of tests/postgres.rs (the `SLUICEGATE_PG_*` settings), and
//! `SLUICEGATE_PG_TLS_CA` (`/etc/postgresql-common/sluicegate-tls/ca.pem`) the CA certificate
//! to trust: the local service and CA that `scripts/services.sh` sets up. Without a server that
//! speaks TLS with a certificate from that CA, the tests say so loudly and pass, except under
//! `CI=true`, where they fail.
#![cfg(feature = "postgres")]

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use postgres::config::SslMode;
use postgres::{Client, Config};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use sluicegate::Pool;
use sluicegate::postgres::PostgresConnectionManager;
use tokio_postgres_rustls::MakeRustlsConnect;

use common::{
    SOON, all_logged, capture_logs, check_wrong_password, env, eventually, pg_config, skip,
};

/// The user `scripts/services.sh` makes give its password (scram-sha-256 from 127.0.0.1).
const AUTH_USER: &str = "sluicegate_auth";
const AUTH_PASSWORD: &str = "sluicegate-auth-secret";

/// The server of tests/postgres.rs (`common::pg_config`), over TLS only.
fn config() -> Config {
    let mut config = pg_config();
    config.ssl_mode(SslMode::Require);
    config
}

/// A connector that trusts the certificates in `roots` and no others.
fn connector(roots: RootCertStore) -> MakeRustlsConnect {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports rustls's default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    MakeRustlsConnect::new(config)
}

/// A connector that trusts the CA certificates in the PEM file at `path`.
fn trusting(path: &str) -> Result<MakeRustlsConnect, String> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).map_err(|err| format!("{path}: {err}"))?;
    for cert in certs {
        let cert = cert.map_err(|err| format!("{path}: {err}"))?;
        roots.add(cert).map_err(|err| format!("{path}: {err}"))?;
    }
    if roots.is_empty() {
        return Err(format!("{path}: no certificate"));
    }
    Ok(connector(roots))
}

fn manager(config: Config, tls: MakeRustlsConnect) -> PostgresConnectionManager<MakeRustlsConnect> {
    PostgresConnectionManager::new(config, tls)
}

/// The server's settings and a connector trusting its CA, or `None` (with a loud message) when
/// there is no server that does TLS with a certificate from that CA, outside CI.
fn server(test: &str) -> Option<(Config, MakeRustlsConnect)> {
    let ca = env(
        "SLUICEGATE_PG_TLS_CA",
        "/etc/postgresql-common/sluicegate-tls/ca.pem",
    );
    let tls = match trusting(&ca) {
        Ok(tls) => tls,
        Err(err) => {
            skip(
                test,
                &format!("no CA certificate ({err})"),
                "run scripts/services.sh",
            );
            return None;
        }
    };
    let config = config();
    match config.connect(tls.clone()) {
        Ok(_) => Some((config, tls)),
        Err(err) => {
            // The driver's `Display` leaves the TLS layer's reason to `source()`.
            let mut reason = err.to_string();
            let mut cause = std::error::Error::source(&err);
            while let Some(inner) = cause {
                reason = format!("{reason}: {inner}");
                cause = inner.source();
            }
            let why = format!(
                "no PostgreSQL at {:?} with TLS under the CA in {ca} ({reason})",
                config.get_hosts()
            );
            skip(test, &why, "run scripts/services.sh");
            None
        }
    }
}

/// Whether the server sees the session `client` is on as encrypted, and the session's pid.
fn encrypted(client: &mut Client) -> (bool, i32) {
    let row = client
        .query_one(
            "SELECT ssl, pid FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .unwrap();
    (row.get(0), row.get(1))
}

#[test]
fn every_pooled_connection_is_encrypted() {
    let Some((config, tls)) = server("every_pooled_connection_is_encrypted") else {
        return;
    };
    let pool = Pool::builder()
        .max_size(3)
        .build(manager(config, tls))
        .unwrap();
    assert_eq!(pool.state().connections, 3);
    let mut conns: Vec<_> = (0..3).map(|_| pool.get_timeout(SOON).unwrap()).collect();
    assert_eq!(pool.state().idle_connections, 0, "all three checked out");
    let mut sessions = HashSet::new();
    for conn in &mut conns {
        let (ssl, pid) = encrypted(conn);
        assert!(ssl, "session {pid} is not encrypted");
        sessions.insert(pid);
    }
    assert_eq!(sessions.len(), 3, "three sessions at once: {sessions:?}");
    drop(conns);
    // Back from the pool (validated over TLS on the way out), still one of the three.
    let mut conn = pool.get().unwrap();
    let (ssl, pid) = encrypted(&mut conn);
    assert!(ssl && sessions.contains(&pid), "session {pid}, ssl {ssl}");
}

#[test]
fn the_servers_certificate_is_verified() {
    let Some((mut config, tls)) = server("the_servers_certificate_is_verified") else {
        return;
    };
    // The certificate names localhost as well as 127.0.0.1.
    let mut by_name = config.clone();
    by_name.host("localhost");
    let pool = Pool::builder()
        .max_size(1)
        .build(manager(by_name, tls))
        .unwrap();
    assert!(encrypted(&mut pool.get().unwrap()).0);

    // A connector that trusts no CA is refused by its own check of the server's certificate.
    config.connect_timeout(Duration::from_secs(2));
    let timeout = Duration::from_millis(500);
    let started = Instant::now();
    let result = Pool::builder()
        .max_size(1)
        .connection_timeout(timeout)
        .error_handler(Box::new(sluicegate::NopErrorHandler))
        .build(manager(config, connector(RootCertStore::empty())));
    let Err(err) = result else {
        panic!("a connector that trusts no CA connected");
    };
    assert!(started.elapsed() < timeout + SOON, "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");
}

#[test]
fn the_password_user_over_tls_never_shows_its_password() {
    let Some((mut config, tls)) = server("the_password_user_over_tls") else {
        return;
    };
    capture_logs();
    config.user(AUTH_USER).password(AUTH_PASSWORD);
    let pool = Pool::builder()
        .pool_name("pg-tls-auth")
        .max_size(2)
        .build(manager(config.clone(), tls.clone()))
        .unwrap();
    let mut conn = pool.get().unwrap();
    let row = conn
        .query_one(
            "SELECT current_user::text, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), AUTH_USER);
    assert!(
        row.get::<_, bool>(1),
        "the password user's session is encrypted"
    );

    // A timeout, with both connections out.
    let _other = pool.get().unwrap();
    let Err(timed_out) = pool.get_timeout(Duration::from_millis(50)) else {
        panic!("a third connection from a pool of two");
    };
    assert!(timed_out.is_timeout(), "{timed_out}");

    // The password accepted, then a database that does not exist: permanent, and logged.
    let mut elsewhere = config.clone();
    elsewhere.dbname("sluicegate_no_such_database");
    let Err(missing) = Pool::builder()
        .pool_name("pg-tls-auth-no-db")
        .connection_timeout(Duration::from_secs(60))
        .build(manager(elsewhere, tls.clone()))
    else {
        panic!("connected to a database that does not exist");
    };
    assert!(missing.is_permanent(), "{missing}");
    assert!(missing.to_string().contains("does not exist"), "{missing}");

    // Every line captured in this binary (the error handler's lines name no pool), once the
    // error handler, which runs after `build` has its answer, has logged the missing database.
    let logged_missing = || {
        all_logged()
            .iter()
            .any(|(_, line)| line.contains("sluicegate_no_such_database"))
    };
    assert!(
        eventually(SOON, logged_missing),
        "the error handler logged the missing database"
    );
    let lines = all_logged().into_iter().map(|(_, line)| line);
    let shown = [
        format!("{pool:?}"),
        format!("{:?}", manager(config, tls)),
        timed_out.to_string(),
        format!("{timed_out:?}"),
        missing.to_string(),
        format!("{missing:?}"),
    ];
    for text in shown.into_iter().chain(lines) {
        assert!(
            !text.contains(AUTH_PASSWORD),
            "the password shows in: {text}"
        );
    }
}

#[test]
fn a_wrong_password_over_tls_fails_at_once_and_is_never_shown() {
    let Some((mut config, tls)) = server("a_wrong_password_over_tls") else {
        return;
    };
    capture_logs();
    let secret = "not-the-password-over-tls-3Kp";
    config.user(AUTH_USER).password(secret);
    let started = Instant::now();
    let result = Pool::builder()
        .pool_name("pg-tls-wrong-password")
        .connection_timeout(Duration::from_secs(60))
        .build(manager(config.clone(), tls.clone()));
    let debug = format!("{:?}", manager(config, tls));
    check_wrong_password(
        result,
        started,
        "password authentication failed",
        secret,
        &debug,
        "pg-tls-wrong-password",
    );
    // The error handler's line names no pool, so `check_wrong_password` cannot pick it out:
    // wait for it, then look at every line.
    let refused = format!("password authentication failed for user \"{AUTH_USER}\"");
    let logged_refusal = || all_logged().iter().any(|(_, line)| line.contains(&refused));
    assert!(
        eventually(SOON, logged_refusal),
        "the error handler logged the refusal"
    );
    for (_, line) in all_logged() {
        assert!(!line.contains(secret), "{line}");
    }
}
