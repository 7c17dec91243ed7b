//! The database server restarting while a pool is under load, for tests/postgres_restart.rs and
//! tests/mysql_restart.rs (no other test binary includes this file).
//!
//! The server is stopped and started with `scripts/services.sh stop|start <server>`; an
//! [`Outage`] guard starts it again if the test fails halfway, so it is never left down for the
//! tests that follow. Each restart test is a test binary of its own: cargo runs test binaries
//! one after another, so no other test meets the outage.

use std::fs::{self, File};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use sluicegate::{ManageConnection, Pool};

use crate::common::{SOON, chain, eventually};

#[path = "load.rs"]
mod load;

use load::{BACK, DOWN, Event, Get, Load};

/// Threads looping check-out and query: more than the pool's connections, so some of them
/// wait in line when the pool runs dry.
const WORKERS: usize = 6;

/// How much longer than `connection_timeout` a failed check-out may take on a loaded machine.
const SLACK: Duration = Duration::from_secs(5);

/// Once the server answers again, every thread must have a working connection within the
/// pool's `connection_timeout` and this much more (a loaded machine).
const RECOVERY_SLACK: Duration = Duration::from_secs(1);

/// What a test needs to know about a server.
pub struct Server {
    /// As `scripts/services.sh` names it: `postgres` or `mariadb`.
    pub name: &'static str,
    /// The reasons a check-out may give while the server is down or coming back, lowercase:
    /// its error must contain one of them.
    pub reasons: &'static [&'static str],
    /// A query error after which the driver cannot yet tell that the session is over, so the
    /// pool may hand the connection out once more (its next query fails too, and then it is
    /// retired). `None`: a connection whose query failed is never handed out again.
    pub fails_twice_after: Option<&'static str>,
    /// Whether the server answers a query now: a connection of the test's own (not the
    /// pool's), given a second at most. How the test tells when the server is back.
    pub answers: fn() -> bool,
}

/// Runs `scripts/services.sh <action> <server>`; on failure, says what it printed.
fn services(action: &str, server: &str) -> Result<(), String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/services.sh");
    // The output goes to a file, not a pipe: a server the script starts may keep the
    // descriptors it inherited, and a pipe would then never reach its end.
    let log = std::env::temp_dir().join(format!(
        "sluicegate-services-{}-{action}-{server}.log",
        std::process::id()
    ));
    let run = || -> std::io::Result<_> {
        let file = File::create(&log)?;
        Command::new(script)
            .args([action, server])
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .status()
    };
    let status = run();
    let output = fs::read_to_string(&log).unwrap_or_default();
    let _ = fs::remove_file(&log);
    match status {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(format!(
            "`scripts/services.sh {action} {server}` failed ({status}): {}",
            output.trim()
        )),
        Err(err) => Err(format!("cannot run {script}: {err}")),
    }
}

/// Says loudly that `test` did not run because it cannot stop and start the server, and why;
/// under `CI=true`, fails instead.
fn skip(test: &str, why: &str) {
    crate::common::skip(
        test,
        &format!("cannot stop and start the server ({why})"),
        "run it as root on a machine scripts/services.sh manages",
    );
}

/// A server this test stopped. [`Outage::end`] starts it again; so does dropping the guard,
/// when the test fails before that.
struct Outage {
    server: &'static str,
    over: bool,
}

impl Outage {
    fn begin(server: &'static str) -> Result<Outage, String> {
        let outage = Outage {
            server,
            over: false,
        };
        services("stop", server)?;
        Ok(outage)
    }

    fn end(mut self) -> Result<(), String> {
        services("start", self.server)?;
        self.over = true;
        Ok(())
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        if !self.over {
            if let Err(why) = services("start", self.server) {
                eprintln!(
                    "\n!!! {} IS DOWN: starting it again failed: {why} !!!\n",
                    self.server
                );
            }
        }
    }
}

/// The test: `pool` (built once the test knows it can restart the server) under load from
/// [`WORKERS`] threads, each looping `get` and `query`; the server stops, then starts again.
///
/// - During the outage every failed check-out returns within `connection_timeout` (and
///   [`SLACK`]) with one of `server.reasons` in its error and a `last_error`, and no thread
///   hangs.
/// - Once the server is back (a connection of the test's own answers, `server.answers`),
///   with nothing done to the pool, every thread gets a connection that answers within
///   `connection_timeout` and [`RECOVERY_SLACK`], nothing fails any more, and the pool
///   refills to `min_idle`, every connection of which answers.
/// - Failures happen only between the stop and the recovery; a query may fail on a connection
///   that died in the outage, but that connection is never handed out again (once, for a
///   driver with `server.fails_twice_after`).
pub fn restart_under_load<M: ManageConnection>(
    test: &str,
    server: &Server,
    pool: impl FnOnce() -> Pool<M>,
    query: fn(&mut M::Connection) -> Result<(), String>,
) {
    if !crate::common::server_faults_allowed(test) {
        return;
    }
    let t0 = Instant::now();
    // Up (started if it was down), and the script can manage it.
    if let Err(why) = services("start", server.name) {
        skip(test, &why);
        return;
    }
    let pool = pool();
    let timeout = pool.connection_timeout();
    let min_idle = pool.min_idle().unwrap_or_else(|| pool.max_size());
    let load = Load::start(&pool, WORKERS, query);
    load.wait_for_each(SOON, "answered a query before the outage");

    load.enter(DOWN);
    let stop_began = Instant::now();
    let outage = match Outage::begin(server.name) {
        Ok(outage) => outage,
        Err(why) => {
            skip(test, &why);
            return;
        }
    };
    let stopped = Instant::now();
    // Watches for the server to answer again, and moves the workers to BACK at that moment
    // (the start script goes on with its setup for a while after).
    let (up_tx, up) = crossbeam_channel::bounded(1);
    {
        let (phase, done, answers) = (load.phase.clone(), load.done.clone(), server.answers);
        thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                if answers() {
                    phase.store(BACK, Ordering::SeqCst);
                    let _ = up_tx.send(Instant::now());
                    return;
                }
                thread::sleep(Duration::from_millis(20));
            }
        });
    }
    // The pool runs dry (connections die, connects are refused): every thread's check-outs
    // fail, each within the timeout.
    load.wait_for_each(
        timeout + SLACK + SOON,
        "had a check-out fail during the outage",
    );

    let start_began = Instant::now();
    if let Err(why) = outage.end() {
        panic!("{why}");
    }
    let back = Instant::now();
    let up: Instant = up
        .recv_timeout(SOON)
        .expect("the server answers once its start script is done");
    let recovered = load
        .wait_for_each(
            timeout + SOON,
            "had a check-out and query succeed after the restart",
        )
        .into_iter()
        .filter_map(|event| match event {
            Event::Recovered(at) => Some(at),
            _ => None,
        })
        .max()
        .expect("every worker recovered");

    let records = load.finish(timeout + SLACK + SOON);

    // Refilled to min_idle without anyone asking, and every one of those connections works.
    assert!(
        eventually(SOON, || {
            let state = pool.state();
            state.connections == min_idle && state.idle_connections == min_idle
        }),
        "the pool did not refill to min_idle {min_idle}: {:?}",
        pool.metrics()
    );
    let mut held: Vec<_> = (0..min_idle)
        .map(|_| pool.get_timeout(SOON).expect("a check-out after recovery"))
        .collect();
    for conn in &mut held {
        query(conn).expect("a query after recovery");
    }
    drop(held);

    let mut problems = Vec::new();
    let mut reasons = std::collections::BTreeSet::new();
    let mut longest_failed_get = Duration::ZERO;
    let mut a_failed_get = None;
    for record in &records {
        let at = |when: Instant| when.saturating_duration_since(stop_began);
        if record.failed() && (record.began < stop_began || record.began > recovered) {
            problems.push(format!(
                "worker {} failed outside the outage: check-out began {:?} after the stop \
                 began (recovered at {:?})",
                record.worker,
                at(record.began),
                at(recovered),
            ));
        }
        let Err(err) = &record.outcome else {
            continue;
        };
        let took = record.took();
        longest_failed_get = longest_failed_get.max(took);
        if took > timeout + SLACK {
            problems.push(format!(
                "a failed check-out took {took:?}, connection_timeout is {timeout:?}: {err}"
            ));
        }
        let text = err.to_string();
        let lower = text.to_lowercase();
        a_failed_get.get_or_insert_with(|| text.clone());
        if err.is_closed()
            || err.last_error().is_none()
            || !server.reasons.iter().any(|reason| lower.contains(reason))
        {
            problems.push(format!(
                "a failed check-out does not say why (none of {:?}): {text}",
                server.reasons
            ));
        }
        if let Some(last) = err.last_error() {
            reasons.insert(format!("check-out: {}", chain(last)));
        }
    }
    // A connection whose query failed is not handed out again: that was its last use (but for
    // `fails_twice_after`: then one more use, which failed too).
    let mut uses: std::collections::HashMap<u64, Vec<&Get<()>>> = Default::default();
    for record in &records {
        if let (Ok(conn), Some(result)) = (&record.outcome, &record.query) {
            uses.entry(*conn).or_default().push(record);
            if let Err(err) = result {
                reasons.insert(format!("query: {err}"));
            }
        }
    }
    for (conn, mut uses) in uses {
        uses.sort_by_key(|r| r.got);
        if let Some(i) = uses.iter().position(|r| r.failed()) {
            let error = |r: &Get<()>| match &r.query {
                Some(Err(e)) => Some(e.to_lowercase()),
                _ => None,
            };
            let excused = server.fails_twice_after.is_some_and(|known| {
                uses.len() == i + 2
                    && error(uses[i]).is_some_and(|e| e.contains(known))
                    && error(uses[i + 1]).is_some()
            });
            if i + 1 < uses.len() && !excused {
                let described: Vec<String> = uses[i..]
                    .iter()
                    .map(|r| {
                        let result = error(r).unwrap_or_else(|| "answered".into());
                        let at = r.got.saturating_duration_since(stop_began);
                        format!("{at:?} after the stop began, worker {}: {result}", r.worker)
                    })
                    .collect();
                problems.push(format!(
                    "connection {conn} was handed out again after its query failed:\n    {}",
                    described.join("\n    ")
                ));
            }
        }
    }

    let count = |f: fn(&Get<()>) -> bool| records.iter().filter(|r| f(r)).count();
    let first_answer = records
        .iter()
        .filter(|r| !r.failed() && r.got > stopped)
        .map(|r| r.got)
        .min()
        .expect("answers after the outage");
    eprintln!(
        "{test}: {} check-outs ({} failed, {} queries failed); stopping took {:?}, the \
         server was then down {:?} before the start began; the start took {:?}; the first \
         answer came {:?} after the start began; the server answered the test {:?} after the \
         start began, and every thread had a working connection {:?} after that ({:?} after \
         the start script ended); longest failed check-out {longest_failed_get:?} (timeout {timeout:?}); \
         {:?} in all\n\
         errors seen:\n  {}\n\
         a failed check-out said: {}\n{:?}",
        records.len(),
        count(|r| r.outcome.is_err()),
        count(|r| matches!(r.query, Some(Err(_)))),
        stopped - stop_began,
        start_began - stopped,
        back - start_began,
        first_answer.saturating_duration_since(start_began),
        up.saturating_duration_since(start_began),
        recovered.saturating_duration_since(up),
        recovered.saturating_duration_since(back),
        t0.elapsed(),
        reasons.into_iter().collect::<Vec<_>>().join("\n  "),
        a_failed_get.unwrap_or_default(),
        pool.metrics(),
    );
    let recovery = recovered.saturating_duration_since(up);
    if recovery > timeout + RECOVERY_SLACK {
        problems.push(format!(
            "every thread had a working connection only {recovery:?} after the server \
             answered again (connection_timeout {timeout:?}, slack {RECOVERY_SLACK:?})"
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
