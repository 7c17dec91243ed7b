//! Sick servers on loopback, for tests/postgres_faults.rs and tests/mysql_faults.rs (no other
//! test binary includes this file): a listener that accepts and never answers and the checks
//! of a pool on it, the check of a login out of connections, server processes stopped with
//! SIGSTOP (and always continued), and the checks of a pool under load (common/load.rs) while
//! its server is stopped or its sessions are killed.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use sluicegate::{ManageConnection, Pool};

use crate::common::{SOON, chain, linux_only, skip};

#[path = "load.rs"]
mod load;

use load::{BACK, Load};

/// How long a stopped server (or backend) stays stopped: other people's tests share it.
pub const STOP_FOR: Duration = Duration::from_secs(3);

/// How much longer than its timeout a `get` may take while the server is stopped.
pub const GET_SLACK: Duration = Duration::from_millis(200);

/// One test at a time in a fault test binary: a stopped server or a session-killing round must
/// not meet another test's connections, and the PostgreSQL driver tells its new socket apart
/// only while no other thread of the process connects to the same server at the same instant.
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A name no other pool or test on this machine uses.
pub fn unique(what: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "sluicegate-{what}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A TCP listener on 127.0.0.1 that accepts connections and holds them without ever writing a
/// byte: a server that is up as far as TCP goes and never answers a login. Stops (and closes
/// what it holds) when dropped.
pub struct HungListener {
    port: u16,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HungListener {
    pub fn start() -> HungListener {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (accepted, stop) = (accepted.clone(), stop.clone());
            thread::spawn(move || {
                let mut held: Vec<TcpStream> = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            held.push(stream);
                            accepted.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(_) => thread::sleep(Duration::from_millis(2)),
                    }
                }
            })
        };
        HungListener {
            port,
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for HungListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// How much longer than its timeout a `build` or `get` that fails may take: on a server that
/// never answers, or as a login out of connections.
pub const FAILED_SLACK: Duration = Duration::from_millis(500);

/// A pool wanting one connection, each check-out and connect given `timeout`: for a server
/// that never answers.
pub fn hung_pool<M: ManageConnection>(timeout: Duration) -> sluicegate::Builder<M> {
    Pool::builder()
        .max_size(2)
        .min_idle(Some(1))
        .connection_timeout(timeout)
        .error_handler(Box::new(sluicegate::NopErrorHandler))
}

/// Checks an error from a pool whose only host never answers: a timeout, within `timeout`
/// and [`FAILED_SLACK`] of `started`.
pub fn within_timeout(what: &str, err: &sluicegate::Error, started: Instant, timeout: Duration) {
    let took = started.elapsed();
    let text = err.to_string();
    eprintln!("{what} failed after {took:?}: {text}");
    assert!(
        took <= timeout + FAILED_SLACK,
        "{what} took {took:?}: {text}"
    );
    assert!(err.is_timeout(), "{what}: {text}");
}

/// Builds a [`hung_pool`] on `manager`, whose only host never answers, and checks that it
/// fails [`within_timeout`]; returns the error.
pub fn hung_build<M: ManageConnection>(manager: M, timeout: Duration) -> sluicegate::Error {
    let started = Instant::now();
    let Err(err) = hung_pool(timeout).build(manager) else {
        panic!("a pool built on a server that never answers");
    };
    within_timeout("build", &err, started, timeout);
    err
}

/// Checks out of `pool`, whose only host never answers, and checks that `get_timeout`
/// fails [`within_timeout`]; returns the error.
pub fn hung_get<M: ManageConnection>(pool: &Pool<M>, timeout: Duration) -> sluicegate::Error {
    let started = Instant::now();
    let Err(err) = pool.get_timeout(timeout) else {
        panic!("a connection from a server that never answers");
    };
    within_timeout("get_timeout", &err, started, timeout);
    err
}

/// Checks that `err` names 127.0.0.1:`port` and says it gave no answer, in one of the words
/// of `says`.
pub fn names_no_answer(what: &str, err: &sluicegate::Error, port: u16, says: &[&str]) {
    let text = err.to_string();
    let address = format!("127.0.0.1:{port}");
    assert!(text.contains(&address), "{what} names {address}: {text}");
    assert!(
        says.iter().any(|words| text.contains(words)),
        "{what} says the server did not answer ({says:?}): {text}"
    );
}

/// The login with room for 2 connections at once that scripts/services.sh creates: a role
/// with `CONNECTION LIMIT 2` in PostgreSQL, a user with `MAX_USER_CONNECTIONS 2` in MariaDB.
pub const LIMITED: &str = "sluicegate_limited";

/// The check that a login out of connections is a clear error without a storm, and that the
/// pool recovers. `hold` connects as [`LIMITED`] with a client of the test's own; `login`
/// says what [`LIMITED`] is to the server (`role`, `user`), and `reason` how the server
/// refuses a connection beyond its limit.
///
/// - Two clients of `hold` take the login's room (or the test skips), and a third is refused
///   with `reason`.
/// - A pool `pool_name` on `manager` (connecting as [`LIMITED`]) then fails a check-out within
///   its `connection_timeout` (1 s) and [`FAILED_SLACK`], with a timeout that is not
///   permanent and whose last error carries `reason`.
/// - Its connect attempts back off: 1 to 20 in two seconds.
/// - Once the two clients leave, a check-out and `query` succeed within 3 s.
pub fn out_of_connections<M: ManageConnection, H, E: std::error::Error + 'static>(
    test: &str,
    login: &str,
    reason: &str,
    hold: impl Fn() -> Result<H, E>,
    pool_name: String,
    manager: M,
    query: fn(&mut M::Connection) -> Result<(), String>,
) {
    let mut holders = Vec::new();
    for _ in 0..2 {
        match hold() {
            Ok(client) => holders.push(client),
            Err(err) => {
                let why = format!("cannot connect as {LIMITED} ({})", chain(&err));
                skip(test, &why, "run scripts/services.sh");
                return;
            }
        }
    }
    // The login is full: a third client of its own is refused.
    let refused = hold().err().map(|err| chain(&err)).unwrap_or_default();
    assert!(
        refused.contains(reason),
        "{LIMITED} must allow 2 connections (run scripts/services.sh): {refused}"
    );

    let timeout = Duration::from_secs(1);
    let pool = Pool::builder()
        .pool_name(pool_name)
        .max_size(2)
        .min_idle(Some(1))
        .connection_timeout(timeout)
        .error_handler(Box::new(sluicegate::NopErrorHandler))
        .build_unchecked(manager);
    let started = Instant::now();
    let Err(err) = pool.get_timeout(timeout) else {
        panic!("a connection beyond the {login}'s limit");
    };
    let took = started.elapsed();
    assert!(
        took <= timeout + FAILED_SLACK,
        "get_timeout took {took:?}: {err}"
    );
    assert!(err.is_timeout() && !err.is_permanent(), "{err}");
    let last = err.last_error().map(|e| chain(e)).unwrap_or_default();
    assert!(last.contains(reason), "the server's reason: {last} ({err})");

    // Back-off: a handful of attempts in two seconds, not hundreds.
    let before = pool.metrics().connect_failures;
    thread::sleep(Duration::from_secs(2));
    let attempts = pool.metrics().connect_failures - before;
    eprintln!("{test}: {attempts} failed connects in 2 s; the get said: {err}");
    assert!(
        (1..=20).contains(&attempts),
        "{attempts} connect attempts in 2 s"
    );

    drop(holders);
    let released = Instant::now();
    let mut recovered = None;
    while released.elapsed() < SOON {
        if let Ok(mut conn) = pool.get_timeout(Duration::from_millis(500)) {
            query(&mut conn)
                .unwrap_or_else(|err| panic!("a query once the {login} has room: {err}"));
            recovered = Some(released.elapsed());
            break;
        }
    }
    let recovered = recovered.expect("the pool recovered once the other clients left");
    eprintln!("{test}: served {recovered:?} after the other clients left");
    assert!(
        recovered <= Duration::from_secs(3),
        "recovered {recovered:?} after the {login} had room"
    );
}

/// Sends `signal` (`STOP`, `CONT`) to `pids` with kill(1).
fn signal(signal: &str, pids: &[u32]) -> Result<(), String> {
    let output = Command::new("kill")
        .arg(format!("-{signal}"))
        .args(pids.iter().map(u32::to_string))
        .stdin(Stdio::null())
        .output()
        .map_err(|err| format!("cannot run kill: {err}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "kill -{signal} {pids:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Processes this test stopped with SIGSTOP. [`Stopped::end`] continues them; so does dropping
/// the guard, when the test fails halfway. Should this test process die without unwinding
/// (killed), a watchdog of its own session continues any of them still stopped a few seconds
/// after [`STOP_FOR`].
pub struct Stopped {
    pids: Vec<u32>,
    watchdog: Option<Child>,
    over: bool,
}

impl Stopped {
    /// Stops `pids` (SIGSTOP).
    pub fn begin(pids: &[u32]) -> Result<Stopped, String> {
        assert!(!pids.is_empty(), "nothing to stop");
        let list: Vec<String> = pids.iter().map(u32::to_string).collect();
        // Continues only processes still stopped, so a pid reused meanwhile is left alone.
        let script = format!(
            "sleep {}; for p in {}; do if grep -q '^State:[[:space:]]*T' /proc/$p/status \
             2>/dev/null; then kill -CONT $p; fi; done",
            STOP_FOR.as_secs() + 5,
            list.join(" ")
        );
        let watchdog = Command::new("setsid")
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .or_else(|_| {
                Command::new("sh")
                    .args(["-c", &script])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
            })
            .map_err(|err| format!("cannot start the watchdog: {err}"))?;
        let stopped = Stopped {
            pids: pids.to_vec(),
            watchdog: Some(watchdog),
            over: false,
        };
        // The guard exists before the signal: whatever happens now, they are continued.
        signal("STOP", pids)?;
        Ok(stopped)
    }

    /// Continues them (SIGCONT).
    pub fn end(mut self) -> Result<(), String> {
        self.over = true;
        self.resume()
    }

    fn resume(&mut self) -> Result<(), String> {
        let result = signal("CONT", &self.pids);
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
        result
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if !self.over {
            if let Err(why) = self.resume() {
                eprintln!(
                    "\n!!! processes {:?} MAY STILL BE STOPPED: {why}; run kill -CONT {:?} !!!\n",
                    self.pids, self.pids
                );
            }
        }
    }
}

/// Threads looping get + query.
pub const WORKERS: usize = 8;

/// What `stopped_under_load` measured.
pub struct StopReport {
    pub gets: usize,
    pub failed: usize,
    pub longest_get_during_stop: Duration,
    pub longest_get: Duration,
}

/// `pool` under load from [`WORKERS`] threads looping `get` and `query`; `stop` stops server
/// processes (SIGSTOP) for [`STOP_FOR`], then they are continued.
///
/// - Every `get` returns within the pool's `connection_timeout` plus [`GET_SLACK`], before,
///   during and after the stop (a query held up by a stopped process is not a `get`, and is
///   not measured).
/// - No query fails, and no `get` that ended before the stop; those that fail are timeouts
///   whose message says why: the pool's counts, and the driver's last error when there is one
///   (the reasons seen are printed).
/// - Once the processes continue, every thread gets a connection that answers, and no `get`
///   that begins more than a `connection_timeout` after that fails.
///
/// `None` (after a loud message, or a failure under CI) when `stop` could not stop anything.
pub fn stopped_under_load<M: ManageConnection>(
    test: &str,
    pool: Pool<M>,
    query: fn(&mut M::Connection) -> Result<(), String>,
    stop: impl FnOnce() -> Result<Stopped, String>,
) -> Option<StopReport> {
    // The watchdog that continues what the test stopped reads /proc, as does `stop` itself.
    if !linux_only(test, "the processes' states from /proc") {
        return None;
    }
    let timeout = pool.connection_timeout();
    let load = Load::start(&pool, WORKERS, query);
    load.wait_for_each(SOON, "answered a query before the stop");

    // The load stays UP through the stop: this test waits for no failure.
    let stop_began = Instant::now();
    let stopped = match stop() {
        Ok(stopped) => stopped,
        Err(why) => {
            skip(test, &why, "run it as root beside the server");
            return None;
        }
    };
    let stopped_at = Instant::now();
    thread::sleep(STOP_FOR);
    let resume_began = Instant::now();
    stopped.end().expect("SIGCONT");
    let resumed = Instant::now();
    load.enter(BACK);
    load.wait_for_each(
        timeout + SOON,
        "had a get and query succeed after the processes continued",
    );
    let gets = load.finish(timeout + SOON);

    let mut problems = Vec::new();
    let mut longest_get = Duration::ZERO;
    let mut longest_get_during_stop = Duration::ZERO;
    let mut failed = 0;
    let mut failures_by_reason = std::collections::BTreeMap::<String, usize>::new();
    let at = |when: Instant| {
        let ms = |d: Duration| d.as_millis() as i64;
        if when >= stop_began {
            ms(when - stop_began)
        } else {
            -ms(stop_began - when)
        }
    };
    for get in &gets {
        let took = get.took();
        longest_get = longest_get.max(took);
        if get.got > stop_began && get.began < resumed {
            longest_get_during_stop = longest_get_during_stop.max(took);
        }
        if took > timeout + GET_SLACK {
            problems.push(format!(
                "worker {}: a get began {} ms after the stop began and took {:?} (timeout \
                 {timeout:?}): {}",
                get.worker,
                at(get.began),
                took,
                match &get.outcome {
                    Ok(id) => format!("got connection {id}"),
                    Err(err) => err.to_string(),
                },
            ));
        }
        if let Some(Err(err)) = &get.query {
            problems.push(format!(
                "worker {}: a query failed (get began {} ms after the stop began): {err}",
                get.worker,
                at(get.began)
            ));
        }
        let Err(err) = &get.outcome else {
            continue;
        };
        failed += 1;
        // A get that began just before the stop may meet it (a validation on a backend
        // stopped meanwhile); one that ended before it must not fail.
        if get.got <= stop_began {
            problems.push(format!(
                "worker {}: a get failed before the stop: {err}",
                get.worker
            ));
        }
        if get.began > resumed + timeout {
            problems.push(format!(
                "worker {}: a get failed {} ms after the stop began, {:?} after the processes \
                 continued: {err}",
                get.worker,
                at(get.began),
                get.began - resumed
            ));
        }
        let reason = match err.last_error() {
            Some(last) => format!("last error: {}", chain(last)),
            None => "no last error".to_string(),
        };
        if !err.is_timeout() || !err.to_string().contains("connections in use") {
            problems.push(format!(
                "worker {}: a get failed with something else than a timeout that gives the \
                 pool's counts: {err}",
                get.worker
            ));
        }
        *failures_by_reason.entry(reason).or_default() += 1;
    }
    eprintln!(
        "{test}: {} gets, {failed} failed; stopped for {:?} ({} ms to stop, {} ms to \
         continue); longest get {longest_get:?} overall, {longest_get_during_stop:?} during \
         the stop (timeout {timeout:?}); failed gets by reason:\n  {}\n{:?}",
        gets.len(),
        resume_began - stop_began,
        (stopped_at - stop_began).as_millis(),
        (resumed - resume_began).as_millis(),
        failures_by_reason
            .iter()
            .map(|(reason, n)| format!("{n} x {reason}"))
            .collect::<Vec<_>>()
            .join("\n  "),
        pool.metrics(),
    );
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
    Some(StopReport {
        gets: gets.len(),
        failed,
        longest_get_during_stop,
        longest_get,
    })
}

/// One check-out and its query, as a kill test's worker saw them.
struct Use {
    conn: u64,
    got: Instant,
    ended: Instant,
    /// The server's id for the session (PostgreSQL's backend pid, MariaDB's connection id).
    result: Result<u64, String>,
}

/// One round of kills.
struct Round {
    issued: Instant,
    /// Once every killed session was gone from the server's list.
    gone: Instant,
    killed: usize,
}

/// What `killed_under_load` counted.
pub struct KillReport {
    pub killed: usize,
    pub errors: usize,
    pub killed_in_use: usize,
    pub failed_twice: usize,
}

/// How strict [`killed_under_load`] is about a connection that fails a second time.
#[derive(Clone, Copy)]
pub enum Twice {
    /// Never: a killed session is never handed out again.
    Never,
    /// Tolerated (and counted) when the first failure contained this text, and the second
    /// came on the next use: the driver's known window (see the PostgreSQL test).
    After(&'static str),
}

/// `pool` (of `WORKERS` connections) under load from [`WORKERS`] threads looping `get` and
/// `session` (a query that returns the session's id on the server), each pausing a
/// millisecond between check-outs so that connections sit idle part of the time. Every ~300
/// ms, 8 times, `kill` ends the pool's sessions (given the ids the workers have seen so far)
/// and returns once they are gone, with how many it killed.
///
/// - No `get` fails.
/// - A connection's first failed query is on a connection checked out before its session was
///   gone (killed while in use, or while being checked out): a session killed while idle
///   costs nothing.
/// - No connection fails twice (but see [`Twice`]), so at most one error per session killed
///   while in use, and no more errors than kills.
/// - The pool serves afterwards.
pub fn killed_under_load<M: ManageConnection>(
    test: &str,
    pool: Pool<M>,
    session: fn(&mut M::Connection) -> Result<u64, String>,
    mut kill: impl FnMut(&std::collections::HashSet<u64>) -> usize,
    twice: Twice,
) -> KillReport {
    use std::collections::{BTreeMap, HashMap, HashSet};

    let seen = Arc::new(Mutex::new(HashSet::<u64>::new()));
    let query = {
        let seen = seen.clone();
        move |conn: &mut M::Connection| {
            let result = session(conn);
            if let Ok(id) = &result {
                seen.lock().unwrap().insert(*id);
            }
            result
        }
    };
    let load = Load::start(&pool, WORKERS, query);
    load.wait_for_each(SOON, "answered a query before the kills");

    let mut rounds = Vec::new();
    for _ in 0..8 {
        thread::sleep(Duration::from_millis(300));
        let issued = Instant::now();
        let known = seen.lock().unwrap().clone();
        let killed = kill(&known);
        rounds.push(Round {
            issued,
            gone: Instant::now(),
            killed,
        });
    }
    let (mut uses, mut get_errors) = (Vec::new(), Vec::new());
    for get in load.finish(pool.connection_timeout() + SOON) {
        match get.outcome {
            Ok(conn) => uses.push(Use {
                conn,
                got: get.got,
                ended: get.ended,
                result: get.query.expect("a query on each connection checked out"),
            }),
            Err(err) => get_errors.push(err.to_string()),
        }
    }
    uses.sort_by_key(|u| u.got);
    let mut conn = pool
        .get_timeout(SOON)
        .expect("a connection after the kills");
    session(&mut conn).expect("a query after the kills");
    drop(conn);

    let killed: usize = rounds.iter().map(|r| r.killed).sum();
    let mut problems = Vec::new();
    let mut by_conn: HashMap<u64, Vec<&Use>> = HashMap::new();
    let (mut in_use, mut errors) = (0, 0);
    let mut reasons = BTreeMap::<String, usize>::new();
    let round_of = |u: &Use| rounds.iter().rposition(|r| r.issued <= u.ended);
    for u in &uses {
        let earlier = by_conn.entry(u.conn).or_default();
        let failed_before = earlier.iter().any(|e| e.result.is_err());
        earlier.push(u);
        let Err(err) = &u.result else {
            continue;
        };
        errors += 1;
        *reasons.entry(err.clone()).or_default() += 1;
        if failed_before {
            // A second failure of the same connection: judged below.
            continue;
        }
        // The round that ended this session: the last one issued before the query failed.
        match round_of(u) {
            None => problems.push(format!(
                "connection {}: a query failed before any kill: {err}",
                u.conn
            )),
            // Checked out before that round's sessions were all gone: in use when killed.
            Some(i) if u.got <= rounds[i].gone => in_use += 1,
            Some(i) => problems.push(format!(
                "connection {}: checked out {:?} after round {i}'s sessions were gone (killed \
                 while idle, handed out anyway); its query failed: {err}",
                u.conn,
                u.got - rounds[i].gone
            )),
        }
    }
    let (mut failed_twice, mut excused) = (0, 0);
    for (conn, uses) in &by_conn {
        let Some(first) = uses.iter().position(|u| u.result.is_err()) else {
            continue;
        };
        let later = &uses[first + 1..];
        let failed_again = later.iter().filter(|u| u.result.is_err()).count();
        if failed_again == 0 {
            continue;
        }
        failed_twice += 1;
        let first_error = uses[first].result.as_ref().unwrap_err();
        let tolerated = match twice {
            Twice::Never => false,
            // The very next use failed too, and the connection was not used again.
            Twice::After(known) => {
                first_error.contains(known) && later.len() == 1 && later[0].result.is_err()
            }
        };
        if tolerated {
            excused += 1;
            continue;
        }
        let described: Vec<String> = uses[first..]
            .iter()
            .map(|u| {
                let round = round_of(u);
                let since = round.map(|i| u.got.saturating_duration_since(rounds[i].issued));
                format!(
                    "checked out {since:?} after round {round:?} began, query took {:?}: {}",
                    u.ended - u.got,
                    match &u.result {
                        Ok(id) => format!("answered (session {id})"),
                        Err(err) => err.clone(),
                    }
                )
            })
            .collect();
        problems.push(format!(
            "connection {conn} failed more than once (a killed session handed out again):\n    {}",
            described.join("\n    ")
        ));
    }
    if !get_errors.is_empty() {
        problems.push(format!(
            "{} gets failed, first: {}",
            get_errors.len(),
            get_errors[0]
        ));
    }
    eprintln!(
        "{test}: {} rounds killed {killed} sessions ({:?}); {} check-outs; {errors} queries \
         failed: {in_use} on sessions killed while checked out, so about {} sessions killed \
         while idle cost nothing; {failed_twice} connections failed twice ({excused} of them \
         tolerated as the driver's known window); {} gets failed; errors:\n  {}\n{:?}",
        rounds.len(),
        rounds.iter().map(|r| r.killed).collect::<Vec<_>>(),
        uses.len(),
        killed.saturating_sub(in_use),
        get_errors.len(),
        reasons
            .iter()
            .map(|(reason, n)| format!("{n} x {reason}"))
            .collect::<Vec<_>>()
            .join("\n  "),
        pool.metrics(),
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        errors <= killed + excused,
        "{errors} errors for {killed} kills"
    );
    KillReport {
        killed,
        errors,
        killed_in_use: in_use,
        failed_twice,
    }
}
