//! Starvation warning, end to end: when the whole process is starved (here: stopped with
//! SIGSTOP, then continued), the reaper thread `sluice-reap-<name>` logs one warning per
//! episode that it woke up late, and an info line once it is back on schedule.
//!
//! A test cannot stop its own process, so each test re-runs this test binary as a child
//! (selecting itself by exact name, with `SLUICEGATE_STARVATION_CHILD` set). The child builds a
//! pool whose reaper sleeps 250 ms at a time, streams its log lines to stdout as they happen,
//! and waits for "go" on stdin. The parent stops and continues the child and reads what it
//! logged. Every read in the parent is bounded, and the child is killed if the parent panics.
//!
//! Lines are attributed to a stop by reading everything the child wrote while it is still
//! stopped. The machine running the tests may itself starve the child now and then (a round
//! due after 250 ms that comes after more than 375 ms is a real, if short, episode), which can
//! spoil an attempt at an episode. An attempt it spoiled is tried again, a few times at most;
//! what spoils every attempt fails the test.
//!
//! Linux only (`kill -STOP` from `/bin/sh`, `/proc/<pid>/stat`); elsewhere the tests say so
//! and pass.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use common::{FakeManager, linux_only};

/// Set (to anything) in the child's environment: the test runs as the child.
const CHILD_ENV: &str = "SLUICEGATE_STARVATION_CHILD";
/// What the child's own lines on stdout start with (the test harness prints other lines).
const PREFIX: &str = "sluicegate-starvation-child:";
/// The reaper's period in the child. Longer than the 100 ms floor the reaper judges short
/// sleeps by, so that only a wake-up over 125 ms late counts as starvation: a loaded test
/// machine delays wake-ups by tens of milliseconds now and then, which would be noise here.
const REAPER_RATE: Duration = Duration::from_millis(250);
/// How long the child stays stopped: four reaper periods, far past the 1.5x threshold.
const STOPPED_FOR: Duration = Duration::from_secs(1);
/// How many stops a stuttering episode has, how long each lasts and how long the child runs
/// between them. A run is shorter than a reaper period, so every sleep the reaper starts in
/// one is cut by the next stop, and each of its wake-ups in the episode is late (500 ms slept
/// or more, against at most 375 ms allowed).
const STUTTERS: usize = 5;
const STUTTER_STOP: Duration = Duration::from_millis(500);
const STUTTER_RUN: Duration = Duration::from_millis(20);
/// How many times the parent tries an episode that was disturbed (see the top of the file).
const ATTEMPTS: usize = 5;
/// How long the parent lets the child's reaper run in its normal rhythm before stopping it.
const RHYTHM: Duration = Duration::from_millis(500);
/// How long the parent watches the child run after an episode ended: four more reaper
/// periods in which no further warning may come.
const SETTLE: Duration = Duration::from_secs(1);
/// How soon after the child runs again its reaper warns, at the latest (it wakes up at once).
const WARNED_WITHIN: Duration = Duration::from_secs(5);
/// Bound on every wait for the child (generous: the machine is small and noisy).
const PATIENCE: Duration = Duration::from_secs(30);

#[test]
fn a_stopped_process_is_warned_about_once() {
    starvation_test(
        "a_stopped_process_is_warned_about_once",
        "starved-once",
        &[Starve::Stop],
    );
}

#[test]
fn two_stops_are_two_episodes_and_two_warnings() {
    starvation_test(
        "two_stops_are_two_episodes_and_two_warnings",
        "starved-twice",
        &[Starve::Stop, Starve::Stop],
    );
}

/// Starvation as it usually comes: the process gets a little CPU now and then, so the reaper
/// wakes up late several times in a row. That is one episode, warned about once.
#[test]
fn stuttering_starvation_is_one_episode_and_one_warning() {
    starvation_test(
        "stuttering_starvation_is_one_episode_and_one_warning",
        "starved-stutter",
        &[Starve::Stutter],
    );
}

/// One starvation episode the parent inflicts on the child.
#[derive(Debug, Clone, Copy)]
enum Starve {
    /// Stopped for `STOPPED_FOR`, then running again.
    Stop,
    /// `STUTTERS` stops of `STUTTER_STOP`, with the child running for about `STUTTER_RUN`
    /// (less than one reaper period) between them.
    Stutter,
}

/// The body of each test: the child's part when run as the child, else the parent's.
fn starvation_test(test: &str, pool: &str, episodes: &[Starve]) {
    if std::env::var_os(CHILD_ENV).is_some() {
        child(pool);
        return;
    }
    if linux_only(test, "a stopped process's state from /proc") {
        parent(test, pool, episodes);
    }
}

// ---------------------------------------------------------------------------------------------
// The child.

/// Writes every log line to stdout at once: `<PREFIX> log <LEVEL> <thread> <message>`.
struct Stream;

impl log::Log for Stream {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let thread = thread::current();
        let thread = thread.name().unwrap_or("-").replace(' ', "_");
        let message = record.args().to_string().replace('\n', "\\n");
        say(&format!("log {} {thread} {message}", record.level()));
    }

    fn flush(&self) {}
}

/// One line on stdout, flushed (errors ignored: a parent that went away is not our problem).
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{PREFIX} {line}");
    let _ = out.flush();
}

fn child(pool_name: &str) {
    static STREAM: Stream = Stream;
    log::set_logger(&STREAM).expect("the child sets the only logger");
    log::set_max_level(log::LevelFilter::Trace);
    let pool = sluicegate::Pool::builder()
        .pool_name(pool_name)
        .max_size(2)
        .reaper_rate(REAPER_RATE)
        .build(FakeManager::new())
        .expect("the child's pool builds");
    say("ready");
    // The parent stops and continues this process, then says "go" (or goes away: EOF).
    let mut go = String::new();
    let _ = std::io::stdin().lock().read_line(&mut go);
    say("done");
    drop(pool);
}

// ---------------------------------------------------------------------------------------------
// The parent.

/// What the child wrote, line by line.
#[derive(Debug)]
enum Output {
    Stdout(String),
    Stderr(String),
    /// The child closed its stdout.
    Closed,
}

/// A log line of the child's.
#[derive(Debug, Clone)]
struct LogLine {
    level: String,
    thread: String,
    message: String,
}

/// Everything read from the child so far, for assertions and failure messages.
struct Transcript {
    lines: Receiver<Output>,
    all: Vec<String>,
    logs: Vec<LogLine>,
    markers: Vec<String>,
    closed: bool,
}

impl Transcript {
    fn new(lines: Receiver<Output>) -> Transcript {
        Transcript {
            lines,
            all: Vec::new(),
            logs: Vec::new(),
            markers: Vec::new(),
            closed: false,
        }
    }

    fn take(&mut self, output: Output) {
        match output {
            Output::Stdout(line) => {
                // The harness may have started the line ("test name ... ") without ending it.
                if let Some(at) = line.find(PREFIX) {
                    let rest = line[at + PREFIX.len()..].trim_start();
                    match rest.strip_prefix("log ") {
                        Some(log) => self.logs.push(parse_log(log)),
                        None => self.markers.push(rest.to_string()),
                    }
                }
                self.all.push(format!("[stdout] {line}"));
            }
            Output::Stderr(line) => self.all.push(format!("[stderr] {line}")),
            Output::Closed => self.closed = true,
        }
    }

    /// Takes what has arrived, without waiting.
    fn drain(&mut self) {
        while let Ok(output) = self.lines.try_recv() {
            self.take(output);
        }
    }

    /// Reads until `done` holds or `within` passes; whether it holds. Panics if the child's
    /// output ends first.
    fn wait_for(
        &mut self,
        what: &str,
        within: Duration,
        mut done: impl FnMut(&Transcript) -> bool,
    ) -> bool {
        let deadline = Instant::now() + within;
        self.drain();
        while !done(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(output) => self.take(output),
                Err(RecvTimeoutError::Timeout) => return false,
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("the child's output ended before {what}\n{}", self.dump())
                }
            }
        }
        true
    }

    /// Reads until `done` holds; panics (with the transcript) after `PATIENCE`.
    fn until(&mut self, what: &str, done: impl FnMut(&Transcript) -> bool) {
        if !self.wait_for(what, PATIENCE, done) {
            panic!(
                "no {what} from the child within {PATIENCE:?}\n{}",
                self.dump()
            );
        }
    }

    fn until_marker(&mut self, marker: &str) {
        self.until(&format!("{marker:?} marker"), |t| {
            t.markers.iter().any(|m| m == marker)
        });
    }

    /// The child's log lines about `pool` (as the pool writes it: `pool "name"`).
    fn pool_logs(&self, pool: &str) -> Vec<LogLine> {
        let needle = format!("pool {pool:?}");
        self.logs
            .iter()
            .filter(|line| line.message.contains(&needle))
            .cloned()
            .collect()
    }

    fn dump(&self) -> String {
        format!(
            "--- what the child wrote ({} lines) ---\n{}\n---",
            self.all.len(),
            self.all.join("\n")
        )
    }
}

fn parse_log(text: &str) -> LogLine {
    let (level, rest) = text.split_once(' ').unwrap_or((text, ""));
    let (thread, message) = rest.split_once(' ').unwrap_or((rest, ""));
    LogLine {
        level: level.to_string(),
        thread: thread.to_string(),
        message: message.to_string(),
    }
}

fn is_starvation_warning(line: &LogLine) -> bool {
    line.level == "WARN" && line.message.contains("late")
}

fn is_back_on_schedule(line: &LogLine) -> bool {
    line.level == "INFO" && line.message.contains("back on schedule")
}

/// The child process, killed (and reaped) when the parent is done with it or panics.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // SIGKILL ends a stopped process too. Errors mean it has already exited.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl ChildGuard {
    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Waits (bounded) for the child to exit on its own.
    fn exit_status(&mut self, transcript: &Transcript) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self.0.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                Ok(None) => panic!(
                    "the child did not exit within {PATIENCE:?}\n{}",
                    transcript.dump()
                ),
                Err(err) => panic!("waiting for the child: {err}"),
            }
        }
    }
}

/// A shell that sends signals with its builtin `kill`. On a loaded machine, starting a new
/// `kill` process for each signal can take longer than a reaper period; a shell that is
/// already running does not.
struct Signaller {
    shell: Child,
    commands: ChildStdin,
    replies: Receiver<Output>,
}

impl Signaller {
    fn start() -> Signaller {
        let mut shell = Command::new("/bin/sh")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting /bin/sh to send signals");
        let (tx, replies) = mpsc::channel();
        forward(shell.stdout.take().unwrap(), tx, Output::Stdout, true);
        let commands = shell.stdin.take().unwrap();
        Signaller {
            shell,
            commands,
            replies,
        }
    }

    /// Sends `signal` (`STOP`, `CONT`) to process `pid`.
    fn send(&mut self, pid: u32, signal: &str) {
        writeln!(
            self.commands,
            "kill -{signal} {pid} 2>&1 && echo sent || echo failed"
        )
        .and_then(|()| self.commands.flush())
        .expect("writing to the signalling shell");
        let mut said = Vec::new();
        loop {
            match self.replies.recv_timeout(PATIENCE) {
                Ok(Output::Stdout(line)) if line == "sent" => return,
                Ok(Output::Stdout(line)) if line == "failed" => {
                    panic!("kill -{signal} {pid} failed: {said:?}")
                }
                Ok(Output::Stdout(line)) => said.push(line),
                other => panic!("kill -{signal} {pid}: no answer from the shell ({other:?})"),
            }
        }
    }
}

impl Drop for Signaller {
    fn drop(&mut self) {
        let _ = self.shell.kill();
        let _ = self.shell.wait();
    }
}

/// The process's state letter from `/proc/<pid>/stat` (`T` when stopped).
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ...": comm may hold spaces and parentheses, so look after the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    after.trim_start().chars().next()
}

/// Stops the whole child process (every thread, the reaper included) and waits until it is
/// stopped. Returns when it was seen stopped.
fn stop(kill: &mut Signaller, pid: u32, transcript: &Transcript) -> Instant {
    kill.send(pid, "STOP");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let state = process_state(pid);
        if state == Some('T') {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "the child (pid {pid}) did not stop: state {state:?}\n{}",
            transcript.dump()
        );
        thread::sleep(Duration::from_millis(1));
    }
}

/// Whether the reaper is on schedule by what it logged (every warning followed by a "back on
/// schedule").
fn on_schedule(logs: &[LogLine]) -> bool {
    let late = logs.iter().filter(|l| is_starvation_warning(l)).count();
    let caught_up = logs.iter().filter(|l| is_back_on_schedule(l)).count();
    late == caught_up
}

/// What a warning that does not match the stop would mean, if it kept happening: the reaper
/// measures from one round's start to the next, work included, so every stop should show.
const BLIND_SPOT: &str = "the reaper did not see the stop as it happened";

/// Starves the child as `how` says. Returns where the lines the child logs once continued
/// start in `pool`'s log, and what disturbed the episode, if anything did.
fn starve(
    kill: &mut Signaller,
    pid: u32,
    how: Starve,
    pool: &str,
    transcript: &mut Transcript,
) -> (usize, Option<String>) {
    let (stopped, runs) = match how {
        Starve::Stop => (STOPPED_FOR, 0),
        Starve::Stutter => (STUTTER_STOP, STUTTERS - 1),
    };
    stop(kill, pid, transcript);
    thread::sleep(stopped);
    // The child cannot write while stopped: what it wrote before has arrived by now.
    transcript.drain();
    let start = transcript.pool_logs(pool).len();
    let mut disturbed = (!on_schedule(&transcript.pool_logs(pool)))
        .then(|| "the reaper was already behind when the child was stopped".to_string());
    for _ in 0..runs {
        let resumed = Instant::now();
        kill.send(pid, "CONT");
        thread::sleep(STUTTER_RUN);
        // At most this long between continuing the child and seeing it stopped again.
        let ran = stop(kill, pid, transcript) - resumed;
        thread::sleep(STUTTER_STOP);
        transcript.drain();
        if disturbed.is_some() {
            continue;
        }
        if ran >= REAPER_RATE {
            disturbed = Some(format!(
                "this process was too slow to stop the child again: it ran for {ran:?}"
            ));
        } else if transcript.pool_logs(pool)[start..]
            .iter()
            .any(is_back_on_schedule)
        {
            disturbed = Some(format!(
                "\"back on schedule\" while the child was still being starved: {BLIND_SPOT}"
            ));
        }
    }
    kill.send(pid, "CONT");
    (start, disturbed)
}

/// One attempt at an episode, from a reaper on schedule: its log from the first time the child
/// was continued to `SETTLE` after the reaper caught up, or what disturbed it.
fn attempt(
    kill: &mut Signaller,
    pid: u32,
    how: Starve,
    pool: &str,
    episode: usize,
    transcript: &mut Transcript,
) -> Result<Vec<LogLine>, String> {
    transcript.until("the reaper on schedule", |t| {
        on_schedule(&t.pool_logs(pool))
    });
    // Let it sleep in its normal rhythm for a while.
    thread::sleep(RHYTHM);
    let (start, disturbed) = starve(kill, pid, how, pool, transcript);
    if let Some(why) = disturbed {
        return Err(why);
    }
    // The reaper wakes up as soon as the child runs again (its deadline is long past).
    let warned = transcript.wait_for("a warning", WARNED_WITHIN, |t| {
        t.pool_logs(pool)[start..].iter().any(is_starvation_warning)
    });
    if !warned {
        return Err(format!("no warning at all: {BLIND_SPOT}"));
    }
    let logs = transcript.pool_logs(pool);
    let first = logs[start..].iter().find(|l| is_starvation_warning(l));
    if let Some(slept) = first.and_then(|l| slept(&l.message)) {
        if slept < shortest_late_sleep(how) {
            return Err(format!(
                "the first warning is about a sleep of {slept:?}, which no stop fell into \
                 (the machine starved the child, or {BLIND_SPOT})"
            ));
        }
    }
    // The episode ends when the reaper says it is back on schedule; then it must stay quiet
    // for a while.
    transcript.until(&format!("the end of episode {episode}"), |t| {
        t.pool_logs(pool)[start..].iter().any(is_back_on_schedule)
    });
    thread::sleep(SETTLE);
    transcript.drain();
    let logs = transcript.pool_logs(pool);
    let back = start + logs[start..].iter().position(is_back_on_schedule).unwrap();
    if logs[back..].iter().any(is_starvation_warning) {
        return Err("the reaper was late again after it caught up".to_string());
    }
    Ok(logs[start..].to_vec())
}

/// The shortest sleep a warning for `how` reports: the first late wake-up ends a sleep that
/// spans at least one whole stop.
fn shortest_late_sleep(how: Starve) -> Duration {
    match how {
        Starve::Stop => STOPPED_FOR,
        Starve::Stutter => STUTTER_STOP,
    }
}

/// Forwards each line of `from` to `to`, then `Closed` if asked.
fn forward(
    from: impl Read + Send + 'static,
    to: mpsc::Sender<Output>,
    wrap: fn(String) -> Output,
    closed: bool,
) {
    thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            if to.send(wrap(line)).is_err() {
                return;
            }
        }
        if closed {
            let _ = to.send(Output::Closed);
        }
    });
}

/// A duration as the pool prints it: `250µs`, `12ms`, `3s`, `1.020s`.
fn parse_human(text: &str) -> Option<Duration> {
    if let Some(n) = text.strip_suffix("µs") {
        return n.parse().ok().map(Duration::from_micros);
    }
    if let Some(n) = text.strip_suffix("ms") {
        return n.parse().ok().map(Duration::from_millis);
    }
    let n = text.strip_suffix('s')?;
    let (secs, millis) = n.split_once('.').unwrap_or((n, "0"));
    let secs: u64 = secs.parse().ok()?;
    let millis: u64 = millis.parse().ok()?;
    Some(Duration::from_secs(secs) + Duration::from_millis(millis))
}

/// How long the warning says the reaper slept ("… slept 1.020s) …").
fn slept(warning: &str) -> Option<Duration> {
    let after = &warning[warning.find("slept ")? + "slept ".len()..];
    let token = after.split([')', ',', ' ', ':']).next()?;
    parse_human(token)
}

fn parent(test: &str, pool: &str, episodes: &[Starve]) {
    let exe = std::env::current_exe().expect("the test binary's path");
    let child = Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning the child test process");
    let mut child = ChildGuard(child);
    let (tx, rx) = mpsc::channel();
    forward(
        child.0.stdout.take().unwrap(),
        tx.clone(),
        Output::Stdout,
        true,
    );
    forward(child.0.stderr.take().unwrap(), tx, Output::Stderr, false);
    let mut stdin: ChildStdin = child.0.stdin.take().unwrap();
    let mut transcript = Transcript::new(rx);
    let pid = child.pid();
    let mut kill = Signaller::start();

    transcript.until_marker("ready");
    for (episode, &how) in (1..).zip(episodes) {
        let mut disturbances = Vec::new();
        let clean = (1..=ATTEMPTS).find_map(|n| {
            match attempt(&mut kill, pid, how, pool, episode, &mut transcript) {
                Ok(logs) => Some(logs),
                Err(why) => {
                    eprintln!("note: {test}, episode {episode}, attempt {n}: {why}; again");
                    disturbances.push(why);
                    None
                }
            }
        });
        let Some(logs) = clean else {
            panic!(
                "{test}, episode {episode} ({how:?}): every one of {ATTEMPTS} attempts was \
                 disturbed: {disturbances:#?}\n{}",
                transcript.dump()
            );
        };
        check_episode(pool, episode, how, &logs, &transcript);
    }
    writeln!(stdin, "go").expect("writing go to the child");
    stdin.flush().expect("flushing go to the child");
    transcript.until_marker("done");
    transcript.until("the end of the child's stdout", |t| t.closed);
    let status = child.exit_status(&transcript);
    assert!(
        status.success(),
        "the child failed: {status}\n{}",
        transcript.dump()
    );
}

/// What the pool logged from the first time the child was continued in an undisturbed episode
/// to `SETTLE` after it ended: one warning from the reaper thread, naming the pool and the
/// late sleep the starvation caused, then one "back on schedule", and nothing more.
fn check_episode(pool: &str, episode: usize, how: Starve, logs: &[LogLine], t: &Transcript) {
    let dump = t.dump();
    let ours: Vec<&LogLine> = logs
        .iter()
        .filter(|l| is_starvation_warning(l) || is_back_on_schedule(l))
        .collect();
    assert!(
        ours.len() == 2 && is_starvation_warning(ours[0]) && is_back_on_schedule(ours[1]),
        "episode {episode} ({how:?}): expected one warning, then one \"back on schedule\"; \
         got {ours:#?}\n{dump}"
    );
    let (warning, back) = (ours[0], ours[1]);
    let thread = format!("sluice-reap-{pool}");
    assert_eq!(
        (&warning.thread, &back.thread),
        (&thread, &thread),
        "episode {episode}: logged from the wrong thread\n{dump}"
    );
    assert!(
        warning.message.contains(&format!("pool {pool:?}")) && warning.message.contains("woke up"),
        "episode {episode}: the warning names the pool and says it woke up late: {:?}",
        warning.message
    );
    // The late sleep is one the starvation fell into, not scheduling noise.
    let slept = slept(&warning.message).unwrap_or_else(|| {
        panic!(
            "episode {episode}: no \"slept <duration>\" in the warning: {:?}",
            warning.message
        )
    });
    let shortest = shortest_late_sleep(how);
    assert!(
        slept >= shortest,
        "episode {episode}: the warning reports a sleep of {slept:?}, shorter than a stop \
         ({shortest:?})\n{dump}"
    );
}
