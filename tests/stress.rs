//! Stress: many threads hammer a small pool over a faulty database (failing, slow and panicking
//! connects, failing and panicking validations, connections that break) with every operation
//! the API offers, checking the pool's invariants after every step; and the strict FIFO queue
//! under a stream of hand-offs, with and without failed validations on the way.

mod common;

use std::collections::HashSet;
use std::panic::{self, PanicHookInfo};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::thread;
use std::time::{Duration, Instant};

use common::{FakeConn, FakeError, FakeManager, SOON, Script, eventually};
use parking_lot::Mutex;
use sluicegate::{ManageConnection, Metrics, NopErrorHandler, Pool, PooledConnection};

/// Every panic this file scripts carries this text; the panic hook keeps them quiet.
const SCRIPTED_PANIC: &str = "sluicegate-stress: scripted panic";

/// How long each stress run hammers its pool.
const RUN_FOR: Duration = Duration::from_millis(2500);

/// Silences the scripted panics (and only those) for the whole test binary.
fn silence_scripted_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info: &PanicHookInfo<'_>| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("");
            if !message.contains(SCRIPTED_PANIC) {
                previous(info);
            }
        }));
    });
}

/// xorshift64: small, seeded, good enough to pick operations and faults.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // Spread small seeds over the state; xorshift must not start at zero.
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform enough in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What the faulty database did, counted where it happened.
#[derive(Default)]
struct Faults {
    /// Off while the pool is built, so that `build` does not race the faults.
    enabled: AtomicBool,
    connect_failed: AtomicU64,
    connect_panicked: AtomicU64,
    connect_slow: AtomicU64,
    validation_failed: AtomicU64,
    validation_panicked: AtomicU64,
    reported_broken: AtomicU64,
    has_broken_panicked: AtomicU64,
}

fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::SeqCst);
}

fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::SeqCst)
}

/// The fake database with faults rolled from a seeded generator. Only successful connects reach
/// the `FakeManager`, so its script counts exactly the connections that were opened.
struct FaultyManager {
    fake: FakeManager,
    rng: Mutex<Rng>,
    faults: Arc<Faults>,
}

impl FaultyManager {
    fn roll(&self) -> u64 {
        if self.faults.enabled.load(Ordering::SeqCst) {
            self.rng.lock().below(100)
        } else {
            u64::MAX
        }
    }
}

impl ManageConnection for FaultyManager {
    type Connection = FakeConn;
    type Error = FakeError;

    fn connect(&self) -> Result<FakeConn, FakeError> {
        let roll = self.roll();
        match roll {
            0..15 => {
                count(&self.faults.connect_failed);
                Err(FakeError::caused_by("connect failed", "FATAL: scripted"))
            }
            15..20 => {
                count(&self.faults.connect_panicked);
                panic!("{SCRIPTED_PANIC} in connect");
            }
            20..35 => {
                count(&self.faults.connect_slow);
                thread::sleep(Duration::from_millis(1 + roll % 4));
                self.fake.connect()
            }
            _ => self.fake.connect(),
        }
    }

    fn is_valid(&self, conn: &mut FakeConn) -> Result<(), FakeError> {
        match self.roll() {
            0..8 => {
                count(&self.faults.validation_failed);
                Err(FakeError::new("validation failed"))
            }
            8..10 => {
                count(&self.faults.validation_panicked);
                panic!("{SCRIPTED_PANIC} in is_valid");
            }
            _ => self.fake.is_valid(conn),
        }
    }

    fn has_broken(&self, conn: &mut FakeConn) -> bool {
        match self.roll() {
            0..4 => {
                count(&self.faults.reported_broken);
                true
            }
            4..5 => {
                count(&self.faults.has_broken_panicked);
                panic!("{SCRIPTED_PANIC} in has_broken");
            }
            _ => self.fake.has_broken(conn),
        }
    }
}

type Conn = PooledConnection<FaultyManager>;

/// What the workers did, to check the pool's counters against.
#[derive(Default)]
struct Tally {
    checkouts: AtomicU64,
    timeouts: AtomicU64,
    marked_broken: AtomicU64,
    detached: AtomicU64,
    evictions: AtomicU64,
}

/// What the workers share.
struct Ctx {
    pool: Pool<FaultyManager>,
    script: Arc<Script>,
    max_size: u32,
    /// Ids of the connections some worker holds right now.
    held: Mutex<HashSet<u64>>,
    /// Detached connections not yet dropped: counted from just before `detach` (while the pool
    /// still counts them too) until after their drop, so it never undercounts.
    detached_alive: AtomicI64,
    max_detached_alive: AtomicI64,
    tally: Tally,
    stop: AtomicBool,
}

/// The three identities every snapshot must satisfy.
fn check_metrics(m: &Metrics) {
    assert!(
        m.connections + m.opening + m.closing <= m.max_size,
        "more than max_size connections open, opening and closing: {m:#?}"
    );
    assert_eq!(
        m.connections,
        m.idle + m.in_use,
        "connections != idle + in_use: {m:#?}"
    );
    assert_eq!(
        m.created,
        u64::from(m.connections) + m.closed() + m.detached,
        "created != connections + closed + detached: {m:#?}"
    );
    assert!(
        m.waiting == 0 || m.idle == 0,
        "a connection idles while a thread waits: {m:#?}"
    );
}

impl Ctx {
    /// Checks what must hold after every step of every worker.
    fn check(&self, mine: &[Conn]) {
        let m = self.pool.metrics();
        check_metrics(&m);
        // This worker's connections are checked out while it looks.
        assert!(
            m.in_use as usize >= mine.len(),
            "{} held by this thread alone, but in_use is {}: {m:#?}",
            mine.len(),
            m.in_use
        );
        // The database never sees more than max_size connections, plus the detached ones the
        // workers still hold (both maxima only grow, so read the bounded one first).
        let max_live = self.script.max_live();
        let max_detached = self.max_detached_alive.load(Ordering::SeqCst);
        assert!(
            max_live <= i64::from(self.max_size) + max_detached,
            "the database saw {max_live} connections at once: max_size {} plus at most \
             {max_detached} detached",
            self.max_size
        );
    }

    fn receive(&self, mut conn: Conn, mine: &mut Vec<Conn>) {
        let id = conn.id;
        {
            let mut held = self.held.lock();
            assert!(
                held.insert(id),
                "connection {id} was handed to two threads at once"
            );
            assert!(
                held.len() <= self.max_size as usize,
                "{} connections checked out at once, max_size {}",
                held.len(),
                self.max_size
            );
        }
        conn.uses += 1;
        self.tally.checkouts.fetch_add(1, Ordering::SeqCst);
        mine.push(conn);
    }

    /// Unmarks `conn` as held; the caller then gives it up.
    fn let_go(&self, conn: &Conn) {
        assert!(
            self.held.lock().remove(&conn.id),
            "connection {} was not marked as held",
            conn.id
        );
    }

    fn release(&self, conn: Conn) {
        self.let_go(&conn);
        drop(conn);
    }

    fn detach(&self, conn: Conn) {
        self.let_go(&conn);
        let alive = self.detached_alive.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_detached_alive.fetch_max(alive, Ordering::SeqCst);
        let raw: FakeConn = PooledConnection::detach(conn);
        self.tally.detached.fetch_add(1, Ordering::SeqCst);
        drop(raw);
        self.detached_alive.fetch_sub(1, Ordering::SeqCst);
    }

    fn got(&self, result: Result<Conn, sluicegate::Error>, mine: &mut Vec<Conn>) {
        match result {
            Ok(conn) => self.receive(conn, mine),
            Err(err) => {
                assert!(err.is_timeout(), "a check-out failed otherwise: {err}");
                self.tally.timeouts.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// One random operation.
    fn step(&self, rng: &mut Rng, mine: &mut Vec<Conn>) {
        let pick = |rng: &mut Rng, mine: &mut Vec<Conn>| -> Option<Conn> {
            if mine.is_empty() {
                None
            } else {
                let at = rng.below(mine.len() as u64) as usize;
                Some(mine.swap_remove(at))
            }
        };
        let op = rng.below(1000);
        if op < 350 {
            // Never block while holding one: with every connection held by a thread waiting
            // for a second, the workload would deadlock on itself until the timeouts.
            for conn in mine.drain(..) {
                self.release(conn);
            }
        } else if op < 480 && mine.len() >= 2 {
            // At most two at once per thread (the second one only if one is idle).
            let conn = pick(rng, mine).expect("one to give back");
            self.release(conn);
        }
        match op {
            0..200 => self.got(self.pool.get(), mine),
            200..350 => {
                let timeout = Duration::from_millis(rng.below(30));
                self.got(self.pool.get_timeout(timeout), mine);
            }
            350..480 => {
                if let Some(conn) = self.pool.try_get() {
                    self.receive(conn, mine);
                }
            }
            480..620 => {
                if let Some(conn) = pick(rng, mine) {
                    self.release(conn);
                }
            }
            620..680 => {
                if let Some(mut conn) = pick(rng, mine) {
                    PooledConnection::mark_broken(&mut conn);
                    self.tally.marked_broken.fetch_add(1, Ordering::SeqCst);
                    self.release(conn);
                }
            }
            680..720 => {
                if let Some(conn) = pick(rng, mine) {
                    self.detach(conn);
                }
            }
            720..723 => {
                self.pool.evict_all();
                self.tally.evictions.fetch_add(1, Ordering::SeqCst);
            }
            723..850 => {
                for conn in mine.iter_mut() {
                    conn.uses += 1;
                }
                // The workload: hold what we have for a moment.
                thread::sleep(Duration::from_micros(rng.below(2500)));
            }
            850..925 => {
                let state = self.pool.state();
                assert!(
                    state.idle_connections <= state.connections
                        && state.connections <= self.max_size,
                    "{state:?}"
                );
            }
            _ => {
                let m = self.pool.metrics();
                assert_eq!(m.max_size, self.max_size);
            }
        }
    }

    fn work(&self, seed: u64, until: Instant) {
        let _stop = StopOthersOnPanic(&self.stop);
        let mut rng = Rng::new(seed);
        let mut mine = Vec::new();
        while Instant::now() < until && !self.stop.load(Ordering::SeqCst) {
            self.step(&mut rng, &mut mine);
            self.check(&mine);
        }
        for conn in mine.drain(..) {
            self.release(conn);
        }
        self.check(&mine);
    }
}

/// Stops the other workers early when this one fails.
struct StopOthersOnPanic<'a>(&'a AtomicBool);

impl Drop for StopOthersOnPanic<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

struct StressConfig {
    seed: u64,
    threads: u64,
    max_size: u32,
    validation_skip_window: Duration,
    /// Short lifetimes, idle timeouts, keepalive and leak threshold: the reaper works all the
    /// time, and more connections come and go.
    churn: bool,
}

fn stress(config: StressConfig) {
    silence_scripted_panics();
    let fake = FakeManager::new();
    let script = fake.script.clone();
    let faults = Arc::new(Faults::default());
    let manager = FaultyManager {
        fake,
        rng: Mutex::new(Rng::new(config.seed)),
        faults: faults.clone(),
    };
    let mut builder = Pool::builder()
        .pool_name("stress")
        .max_size(config.max_size)
        .min_idle(Some(2))
        .connection_timeout(Duration::from_millis(200))
        .validation_skip_window(config.validation_skip_window)
        .error_handler(Box::new(NopErrorHandler));
    if config.churn {
        builder = builder
            .max_lifetime(Some(Duration::from_millis(150)))
            .idle_timeout(Some(Duration::from_millis(40)))
            .keepalive(Some(Duration::from_millis(5)))
            .leak_detection_threshold(Some(Duration::from_millis(1)))
            .reaper_rate(Duration::from_millis(20));
    }
    let pool = builder.build(manager).expect("the pool starts");
    faults.enabled.store(true, Ordering::SeqCst);
    let ctx = Arc::new(Ctx {
        pool: pool.clone(),
        script: script.clone(),
        max_size: config.max_size,
        held: Mutex::new(HashSet::new()),
        detached_alive: AtomicI64::new(0),
        max_detached_alive: AtomicI64::new(0),
        tally: Tally::default(),
        stop: AtomicBool::new(false),
    });

    let until = Instant::now() + RUN_FOR;
    let workers: Vec<_> = (0..config.threads)
        .map(|i| {
            let ctx = ctx.clone();
            let seed = config.seed ^ (i + 1).wrapping_mul(0x0100_0000_01B3);
            thread::Builder::new()
                .name(format!("stress-{i}"))
                .spawn(move || ctx.work(seed, until))
                .expect("a worker thread")
        })
        .collect();
    let mut failure = None;
    for worker in workers {
        if let Err(panic) = worker.join() {
            failure.get_or_insert(panic);
        }
    }
    if let Some(panic) = failure {
        panic::resume_unwind(panic);
    }

    // Everyone is done: nothing is out, nobody waits, and the numbers still add up.
    let m = pool.metrics();
    check_metrics(&m);
    assert_eq!((m.waiting, m.in_use), (0, 0), "{m:#?}");
    assert!(ctx.held.lock().is_empty());
    assert_eq!(ctx.detached_alive.load(Ordering::SeqCst), 0);
    let max_detached = ctx.max_detached_alive.load(Ordering::SeqCst);
    assert!(
        script.max_live() <= i64::from(config.max_size) + max_detached,
        "the database saw {} connections at once: max_size {} plus at most {max_detached} detached",
        script.max_live(),
        config.max_size
    );

    pool.close();
    assert!(pool.is_closed());
    assert!(pool.get().unwrap_err().is_closed());
    assert!(pool.try_get().is_none());
    assert!(
        eventually(SOON, || script.live() == 0),
        "{} connections still open after close: {:#?}",
        script.live(),
        pool.metrics()
    );
    assert!(
        eventually(SOON, || {
            let m = pool.metrics();
            (m.connections, m.opening, m.closing) == (0, 0, 0)
        }),
        "{:#?}",
        pool.metrics()
    );
    let m = pool.metrics();
    check_metrics(&m);
    assert_eq!(m.created, m.closed() + m.detached, "{m:#?}");

    // The pool's counters agree with what the database and the workers saw.
    let t = &ctx.tally;
    let f = &*faults;
    assert_eq!(m.created, script.connects(), "{m:#?}");
    assert_eq!(
        m.connect_failures,
        read(&f.connect_failed) + read(&f.connect_panicked),
        "{m:#?}"
    );
    assert_eq!(
        m.closed_invalid,
        read(&f.validation_failed) + read(&f.validation_panicked),
        "{m:#?}"
    );
    assert_eq!(
        m.closed_broken,
        read(&t.marked_broken) + read(&f.reported_broken) + read(&f.has_broken_panicked),
        "{m:#?}"
    );
    assert_eq!(m.detached, read(&t.detached), "{m:#?}");
    assert_eq!(m.timeouts, read(&t.timeouts), "{m:#?}");
    // `checkouts` counts check-outs that succeeded, exactly: a connection that failed
    // validation or had expired on the way out is not one.
    assert_eq!(m.checkouts, read(&t.checkouts), "{m:#?}");

    // The faults did happen: the test did not pass by doing nothing.
    assert!(read(&t.checkouts) > 0, "{m:#?}");
    assert!(read(&f.connect_failed) > 0 && read(&f.connect_panicked) > 0);
    assert!(read(&f.connect_slow) > 0);
    assert!(m.connect_failures > 0, "{m:#?}");
    assert!(m.closed_broken > 0, "{m:#?}");
    assert!(m.detached > 0, "{m:#?}");
    assert!(read(&t.evictions) > 0 && m.closed_evicted > 0, "{m:#?}");
    if config.validation_skip_window.is_zero() {
        assert!(m.closed_invalid > 0, "{m:#?}");
    }
    if config.churn {
        // The reaper was at work too.
        assert!(m.leaks_detected > 0, "{m:#?}");
    }
}

#[test]
fn invariants_hold_under_faults_validating_every_check_out() {
    stress(StressConfig {
        seed: 0x5EED_0001,
        threads: 16,
        max_size: 4,
        validation_skip_window: Duration::ZERO,
        churn: false,
    });
}

#[test]
fn invariants_hold_under_faults_with_skip_window_and_short_lifetimes() {
    stress(StressConfig {
        seed: 0x5EED_0002,
        threads: 16,
        max_size: 4,
        validation_skip_window: Duration::from_millis(2),
        churn: true,
    });
}

#[test]
fn invariants_hold_while_the_reaper_works_on_idle_connections() {
    stress(StressConfig {
        seed: 0x5EED_0003,
        threads: 3,
        max_size: 6,
        validation_skip_window: Duration::from_millis(2),
        churn: true,
    });
}

/// One round of the queue: `waiters` threads join it one by one while the test holds the only
/// connection, then are served, each holding the connection briefly. With `failing`, validation
/// runs on every check-out and fails for some of them: a thread whose connection failed keeps
/// its place in line (the pool opens a replacement for it). Service order must be queue order.
fn fifo_round(waiters: usize, failing: &[usize]) {
    let fake = FakeManager::new();
    let script: Arc<Script> = fake.script.clone();
    let mut builder = Pool::builder()
        .max_size(1)
        .connection_timeout(SOON)
        .error_handler(Box::new(NopErrorHandler));
    if !failing.is_empty() {
        builder = builder.validation_skip_window(Duration::ZERO);
    }
    let pool = builder.build(fake).expect("the pool starts");
    let held = pool.get().expect("the only connection");
    // Validations from here on: waiter i's is the (i + 1)-th unless an earlier one failed, so
    // plan them in order of service: one failure (then a pass) for each failing waiter.
    let plan = (0..=waiters).flat_map(|i| {
        let fail = failing.contains(&i);
        let first = if fail {
            Err(FakeError::new("validation failed"))
        } else {
            Ok(())
        };
        std::iter::once(first).chain(fail.then_some(Ok(())))
    });
    script.plan_validation(plan);

    let served = Arc::new(Mutex::new(Vec::new()));
    let (first_served_tx, first_served) = crossbeam_channel::bounded(1);
    let (release_first, first_may_go) = crossbeam_channel::bounded::<()>(1);
    let mut threads = Vec::new();
    let spawn = |i: usize| {
        let pool = pool.clone();
        let served = served.clone();
        let first_served_tx = first_served_tx.clone();
        let first_may_go = first_may_go.clone();
        thread::spawn(move || {
            let mut conn = pool.get_timeout(SOON).expect("served in turn");
            let first = {
                let mut served = served.lock();
                served.push(i);
                served.len() == 1
            };
            conn.uses += 1;
            if first {
                // Hold on until the test has looked at the queue (or has failed).
                first_served_tx.send(i).unwrap();
                let _ = first_may_go.recv();
            }
            // Held briefly: the workload, not synchronisation.
            thread::yield_now();
            drop(conn);
        })
    };
    let waiting_is = |n: usize| {
        assert!(
            eventually(SOON, || pool.metrics().waiting as usize == n),
            "expected {n} waiting: {:#?}",
            pool.metrics()
        );
    };
    for i in 0..waiters {
        threads.push(spawn(i));
        // The next one starts only once this one is in line.
        waiting_is(i + 1);
    }

    drop(held);
    let first = first_served.recv_timeout(SOON).expect("someone is served");
    assert_eq!(first, 0, "the first in line was overtaken");
    // No barging: the connection is out (or handed on), never idle while others wait.
    assert!(pool.try_get().is_none());
    // A latecomer queues behind everyone already waiting.
    threads.push(spawn(waiters));
    waiting_is(waiters);
    release_first.send(()).unwrap();

    for thread in threads {
        thread.join().expect("a waiter panicked");
    }
    let expected: Vec<usize> = (0..=waiters).collect();
    assert_eq!(*served.lock(), expected, "service order != queue order");

    let m = pool.metrics();
    check_metrics(&m);
    assert_eq!((m.waiting, m.in_use, m.timeouts), (0, 0, 0), "{m:#?}");
    assert_eq!(m.closed_invalid, failing.len() as u64, "{m:#?}");
    assert_eq!(m.created, 1 + failing.len() as u64, "{m:#?}");
    if failing.is_empty() {
        // The test's own check-out, then each waiter's (and the latecomer's) after one wait.
        assert_eq!(m.checkouts, waiters as u64 + 2, "{m:#?}");
        assert_eq!(m.waited, waiters as u64 + 1, "{m:#?}");
    }
}

#[test]
fn waiters_are_served_in_queue_order() {
    for _ in 0..5 {
        fifo_round(8, &[]);
    }
}

/// A waiter whose handed connection fails validation rejoins the head of the queue in the same
/// critical section that retires the connection, so the replacement comes to it.
#[test]
fn a_waiter_whose_connection_fails_validation_keeps_its_place() {
    for _ in 0..5 {
        fifo_round(2, &[0]);
        fifo_round(8, &[0, 3, 4, 7]);
    }
}
