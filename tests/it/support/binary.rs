//! The one way tests start the real `oauth2-exporter` binary as a child process ([`Binary`], a
//! builder in the manner of ripgrep's `TestCommand`), and the one environment scrub every child
//! process gets ([`scrubbed_command`] for the others: prometheus, promtool, node, systemd-analyze, kill).
//!
//! Why one place: the scrub had drifted across eleven copies, and only one of them removed the
//! proxy variables, so with `HTTPS_PROXY` set in the environment the others sent the binary's
//! token requests through it instead of to the loopback fake. Here a child never inherits
//! - `OAUTH2_EXPORTER_*`: configuration overrides to the exporter (CI sets one for the suite);
//! - `RUST_LOG` and `NO_COLOR`: the log level and format are the test's choice (`NO_COLOR=1` is
//!   set, so a log line parses the same on a terminal);
//! - every `*_proxy` / `*_PROXY` (`HTTP_PROXY`, `https_proxy`, `ALL_PROXY`, `NO_PROXY`, ...):
//!   tests talk to loopback only, directly.
//!
//! Both pipes are drained by threads, so a chatty child never blocks on a full pipe; every wait
//! is bounded and panics with the child's output. Waits come in two flavours: `async` ones for
//! `#[tokio::test]`s (which serve their fakes on the same runtime, so they must not block it)
//! and `_blocking` ones for plain `#[test]`s.
//!
//! ```ignore
//! let mut exporter = Binary::new().config(&path).listen_loopback().spawn();
//! let addr = exporter.address().await;
//! exporter.signal(Signal::Hup);
//! exporter.wait_for_log("msg=\"configuration reloaded\"", 1).await;
//! let (status, _) = exporter.stop().await;
//! ```

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The binary under test, as cargo built it for this test run.
pub const BIN: &str = env!("CARGO_BIN_EXE_oauth2-exporter");

/// How long the child may take to listen and start probing, or a one-shot run to finish.
/// Generous: the machine has 2 cores shared with other test binaries and builds.
pub const START_LIMIT: Duration = Duration::from_secs(30);
/// How long a child may take to exit after SIGTERM in [`Running::stop`].
pub const STOP_LIMIT: Duration = Duration::from_secs(10);
/// Pause between two looks at a child's output or status.
const POLL_EVERY: Duration = Duration::from_millis(20);
/// How long the pipe readers may take to hand over the last bytes once the child exited.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// util-linux `prlimit`, which [`Binary::descriptor_limit`] runs the binary under.
const PRLIMIT: &str = "prlimit";

/// Whether `prlimit` can be run here (tests that need it go through `peers::skip_or_fail`).
pub fn prlimit_available() -> bool {
    scrubbed_command(PRLIMIT)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// True for a variable no child inherits from the test process: a proxy setting, in any case
/// (`HTTP_PROXY`, `https_proxy`, `ALL_PROXY`, `no_proxy`, ...).
pub fn is_proxy_variable(name: &OsStr) -> bool {
    name.to_string_lossy()
        .to_ascii_uppercase()
        .ends_with("_PROXY")
}

/// Removes every proxy variable of this process from `command`'s environment.
pub fn scrub_proxies(command: &mut Command) -> &mut Command {
    for (name, _) in std::env::vars_os() {
        if is_proxy_variable(&name) {
            command.env_remove(name);
        }
    }
    command
}

/// A `Command` for any other program a test runs (a peer such as prometheus or node, a tool
/// such as systemd-analyze or kill), without this process's proxy variables: peers talk to
/// loopback too.
pub fn scrubbed_command(program: impl AsRef<OsStr>) -> Command {
    let mut command = Command::new(program);
    scrub_proxies(&mut command);
    command
}

/// Runs any other program to completion with both pipes drained (so a chatty one never blocks),
/// killed and panicking after `limit`; returns its status and output. Use it on a
/// [`scrubbed_command`].
pub fn run_bounded(mut command: Command, limit: Duration) -> Output {
    let command_line = format!("{command:?}");
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {command_line}: {e}"));
    let pid = child.id();
    Running::capture(child, pid, command_line).finish(limit)
}

/// True for a variable the exporter never inherits (see the module comment).
fn is_scrubbed(name: &OsStr) -> bool {
    let upper = name.to_string_lossy().to_ascii_uppercase();
    is_proxy_variable(name)
        || upper.starts_with("OAUTH2_EXPORTER_")
        || upper == "RUST_LOG"
        || upper == "NO_COLOR"
}

/// A signal for [`Running::signal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Term,
    Hup,
    Int,
    Kill,
}

/// `TERM`, `HUP`, ...: so a message can say `SIG{signal}`.
impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Signal {
    /// The name `kill -NAME` takes.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Term => "TERM",
            Signal::Hup => "HUP",
            Signal::Int => "INT",
            Signal::Kill => "KILL",
        }
    }
}

/// How to run the binary: arguments, extra environment, working directory, an optional wrapper.
/// Finish with [`Binary::run`] (to completion) or [`Binary::spawn`] (a daemon).
#[derive(Debug, Clone, Default)]
pub struct Binary {
    wrapper: Vec<OsString>,
    descriptor_limit: Option<u64>,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    clear_env: bool,
    dir: Option<PathBuf>,
    limit: Option<Duration>,
}

impl Binary {
    /// The binary with no arguments and the scrubbed environment.
    pub fn new() -> Binary {
        Binary::default()
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Binary {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Binary
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// `--config.file PATH`.
    pub fn config(self, path: impl AsRef<OsStr>) -> Binary {
        self.arg("--config.file").arg(path)
    }

    /// `--web.listen-address 127.0.0.1:0`: the OS picks the port, [`Running::address`] reads it.
    pub fn listen_loopback(self) -> Binary {
        self.args(["--web.listen-address", "127.0.0.1:0"])
    }

    /// `--log.level LEVEL`.
    pub fn log_level(self, level: &str) -> Binary {
        self.args(["--log.level", level])
    }

    /// One variable for the child, set after the scrub (so it may even be a scrubbed name).
    pub fn env(mut self, name: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Binary {
        self.env
            .push((name.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    pub fn envs<'a>(mut self, vars: impl IntoIterator<Item = &'a (&'a str, &'a str)>) -> Binary {
        for (name, value) in vars {
            self = self.env(name, value);
        }
        self
    }

    /// Starts from an empty environment instead of the scrubbed one, as systemd and the kubelet
    /// do (nothing from cargo: its `LD_LIBRARY_PATH` would send the loader into ~/.rustup). Only
    /// `PATH` (a standard one) and `NO_COLOR=1` are set, then [`Binary::env`]'s variables.
    pub fn env_clear(mut self) -> Binary {
        self.clear_env = true;
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Binary {
        self.dir = Some(dir.as_ref().to_owned());
        self
    }

    /// Runs the binary under `argv` (e.g. `strace -f -o FILE`): the wrapper is started with the
    /// binary and its arguments appended. [`Running::pid`] is then the exporter's own pid (the
    /// wrapper's child), which is where signals go.
    pub fn wrapper<I, S>(mut self, argv: I) -> Binary
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.wrapper = argv.into_iter().map(|a| a.as_ref().to_owned()).collect();
        self
    }

    /// Runs the binary with `RLIMIT_NOFILE` at `limit`, soft and hard (so the exporter cannot
    /// raise it), through util-linux `prlimit`, which sets the limit and then execs: the pid
    /// stays the exporter's. Check [`prlimit_available`] first.
    pub fn descriptor_limit(mut self, limit: u64) -> Binary {
        self.descriptor_limit = Some(limit);
        self
    }

    /// The bound of [`Binary::run`] (default [`START_LIMIT`]).
    pub fn limit(mut self, limit: Duration) -> Binary {
        self.limit = Some(limit);
        self
    }

    /// The command line as the child sees it, for messages.
    fn describe(&self) -> String {
        let mut words: Vec<String> = self
            .wrapper
            .iter()
            .map(|w| w.to_string_lossy().into_owned())
            .collect();
        if let Some(limit) = self.descriptor_limit {
            words.insert(0, format!("{PRLIMIT} --nofile={limit}:{limit} --"));
        }
        words.push("oauth2-exporter".to_owned());
        words.extend(self.args.iter().map(|a| a.to_string_lossy().into_owned()));
        words.join(" ")
    }

    fn command(&self) -> Command {
        let mut argv: Vec<OsString> = Vec::new();
        if let Some(limit) = self.descriptor_limit {
            argv.push(PRLIMIT.into());
            argv.push(format!("--nofile={limit}:{limit}").into());
            argv.push("--".into());
        }
        argv.extend(self.wrapper.iter().cloned());
        let mut command = match argv.split_first() {
            None => Command::new(BIN),
            Some((program, rest)) => {
                let mut command = Command::new(program);
                command.args(rest).arg(BIN);
                command
            }
        };
        command.args(&self.args).stdin(Stdio::null());
        if self.clear_env {
            command.env_clear().env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            );
        } else {
            for (name, _) in std::env::vars_os() {
                if is_scrubbed(&name) {
                    command.env_remove(name);
                }
            }
        }
        command.env("NO_COLOR", "1");
        command.envs(self.env.iter().map(|(n, v)| (n, v)));
        if let Some(dir) = &self.dir {
            command.current_dir(dir);
        }
        command
    }

    /// Spawns with both pipes captured. A few tries: in a shared target directory another build
    /// may be relinking the binary at this very moment (ENOENT / ETXTBSY for a few ms).
    fn spawn_child(&self) -> Child {
        let mut command = self.command();
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut last_error = None;
        for _ in 0..10 {
            match command.spawn() {
                Ok(child) => return child,
                Err(error) => {
                    last_error = Some(error);
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
        panic!("cannot spawn `{}`: {last_error:?}", self.describe())
    }

    /// Runs to completion (killed and panicking after the [`Binary::limit`]) and returns the
    /// exit status and everything written to stdout and stderr.
    pub fn run(self) -> Output {
        let limit = self.limit.unwrap_or(START_LIMIT);
        self.spawn().finish(limit)
    }

    /// [`Binary::run`] off the async runtime, which meanwhile keeps serving the test's fakes.
    pub async fn run_async(self) -> Output {
        tokio::task::spawn_blocking(move || self.run())
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    /// `oauth2-exporter --demo` on a loopback port, working in `dir`, once it listens: the
    /// running demo and its address.
    #[cfg(feature = "demo")]
    pub fn spawn_demo(dir: &Path) -> (Running, SocketAddr) {
        let mut running = Binary::new()
            .arg("--demo")
            .listen_loopback()
            .current_dir(dir)
            .spawn();
        let addr = running.address_blocking();
        (running, addr)
    }

    /// Starts the binary and returns at once; see [`Running`] for waiting on it.
    pub fn spawn(self) -> Running {
        let child = self.spawn_child();
        let pid = if self.wrapper.is_empty() {
            child.id()
        } else {
            match child_pid(child.id()) {
                Some(pid) => pid,
                None => {
                    let mut child = child;
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("`{}`: the wrapper started no child", self.describe())
                }
            }
        };
        Running::capture(child, pid, self.describe())
    }
}

/// Copies everything `pipe` yields into `sink` on a thread, so the child never blocks on a full
/// pipe; the receiver hears once the pipe closed.
fn drain(mut pipe: impl Read + Send + 'static, sink: Arc<Mutex<Vec<u8>>>) -> Receiver<()> {
    let (done, drained) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut buffer) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buffer[..n]);
        }
        let _ = done.send(());
    });
    drained
}

/// The pid of `parent`'s child process running the exporter, from `/proc/*/stat` (polled: a
/// wrapper forks first). Only a child that already runs [`BIN`] counts: strace forks
/// short-lived children of its own to test what ptrace supports, and on a loaded machine one
/// of them can still be there when we look (issue 24: the reload signal went to it).
fn child_pid(parent: u32) -> Option<u32> {
    let exporter = std::fs::canonicalize(BIN).ok()?;
    let deadline = Instant::now() + START_LIMIT;
    while Instant::now() < deadline {
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            let runs_exporter =
                || std::fs::read_link(entry.path().join("exe")).is_ok_and(|exe| exe == exporter);
            if ppid == Some(parent) && runs_exporter() {
                return Some(pid);
            }
        }
        std::thread::sleep(POLL_EVERY);
    }
    None
}

/// The address of the exporter's `msg=listening ... address=127.0.0.1:PORT` log line.
pub fn listening_address(logs: &str) -> Option<SocketAddr> {
    logs.lines()
        .find(|line| line.split(' ').any(|field| field == "msg=listening"))?
        .split(' ')
        .find_map(|field| field.strip_prefix("address="))?
        .parse()
        .ok()
}

/// What a bounded wait does when the child has exited before the condition held.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OnExit {
    Fail,
    Fine,
}

/// The exporter as a running child process, its output collected. Killed on drop if still
/// running (the exporter itself first when it runs under a wrapper).
pub struct Running {
    child: Child,
    pid: u32,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    drained: Vec<Receiver<()>>,
    command_line: String,
}

impl Running {
    /// Takes over a child spawned with both pipes piped, draining them on threads.
    fn capture(mut child: Child, pid: u32, command_line: String) -> Running {
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let drained = vec![
            drain(
                child.stdout.take().expect("piped stdout"),
                Arc::clone(&stdout),
            ),
            drain(
                child.stderr.take().expect("piped stderr"),
                Arc::clone(&stderr),
            ),
        ];
        Running {
            child,
            pid,
            stdout,
            stderr,
            drained,
            command_line,
        }
    }

    /// Waits up to `limit` for the exit and returns the status and all output.
    fn finish(mut self, limit: Duration) -> Output {
        let (status, _) = self.exit_blocking(limit);
        Output {
            status,
            stdout: self.stdout.lock().unwrap().clone(),
            stderr: self.stderr.lock().unwrap().clone(),
        }
    }

    /// The exporter's pid (not the wrapper's).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Standard error then standard output: everything the child said so far.
    pub fn logs(&self) -> String {
        format!("{}{}", self.stderr(), self.stdout())
    }

    /// Whether the child (the wrapper, when wrapped) is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// A field of `/proc/PID/status` in KiB (`VmRSS`, `VmHWM`), `None` once the process is gone.
    pub fn memory_kib(&self, field: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        status.lines().find_map(|line| {
            line.strip_prefix(field)?
                .strip_prefix(':')?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
    }

    /// Sends `signal` to the exporter with `kill`, as an operator or systemd's ExecReload does.
    pub fn signal(&self, signal: Signal) {
        let status = scrubbed_command("kill")
            .args([format!("-{}", signal.name()), self.pid.to_string()])
            .status()
            .expect("run kill");
        assert!(
            status.success(),
            "kill -{} {}: {status}",
            signal.name(),
            self.pid
        );
    }

    /// One look for every bounded wait: `Some` once `probe` holds; a panic with `what` and the
    /// output once `deadline` passed or (with [`OnExit::Fail`]) the child exited.
    fn look<T>(
        &mut self,
        deadline: Instant,
        what: &str,
        on_exit: OnExit,
        probe: &mut impl FnMut(&mut Running) -> Option<T>,
    ) -> Option<T> {
        if let Some(found) = probe(self) {
            return Some(found);
        }
        let exited = self.child.try_wait().expect("try_wait on the child");
        if exited.is_some() && on_exit == OnExit::Fail {
            // Let the readers copy the last lines of a child that died.
            self.wait_drained();
            panic!(
                "`{}` exited ({exited:?}) before {what}; output:\n{}",
                self.command_line,
                self.logs()
            );
        }
        assert!(
            Instant::now() < deadline,
            "`{}`: no {what} in time; output:\n{}",
            self.command_line,
            self.logs()
        );
        None
    }

    fn until_blocking<T>(
        &mut self,
        limit: Duration,
        what: &str,
        on_exit: OnExit,
        mut probe: impl FnMut(&mut Running) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(found) = self.look(deadline, what, on_exit, &mut probe) {
                return found;
            }
            std::thread::sleep(POLL_EVERY);
        }
    }

    async fn until<T>(
        &mut self,
        limit: Duration,
        what: &str,
        on_exit: OnExit,
        mut probe: impl FnMut(&mut Running) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(found) = self.look(deadline, what, on_exit, &mut probe) {
                return found;
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// The address from the `msg=listening` line, once `probing started` was logged too (the
    /// signal handlers are in place by then). Panics if the child exits or takes longer than
    /// [`START_LIMIT`].
    pub async fn address(&mut self) -> SocketAddr {
        self.until(START_LIMIT, "listening line", OnExit::Fail, ready)
            .await
    }

    /// [`Running::address`] for a plain `#[test]`.
    pub fn address_blocking(&mut self) -> SocketAddr {
        self.until_blocking(START_LIMIT, "listening line", OnExit::Fail, ready)
    }

    /// Polls `GET /metrics` (with a client that ignores this process's proxies) every 50 ms until
    /// `predicate` holds and returns that scrape; panics after `limit` with `what`, the last
    /// scrape and standard error. Waits for [`Running::address`] first.
    pub async fn wait_for_metrics(
        &mut self,
        what: &str,
        limit: Duration,
        predicate: impl Fn(&str) -> bool,
    ) -> String {
        let addr = self.address().await;
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("a reqwest client");
        let deadline = Instant::now() + limit;
        loop {
            let metrics = match client.get(format!("http://{addr}/metrics")).send().await {
                Ok(response) => response.text().await.unwrap_or_default(),
                Err(error) => format!("<{error}>"),
            };
            if predicate(&metrics) {
                return metrics;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {limit:?}; last scrape:\n{}\n--- stderr ---\n{}",
                super::exposition::relevant_lines(&metrics),
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (up to [`START_LIMIT`]) until standard error holds `needle` at least `count`
    /// times; returns standard error.
    pub async fn wait_for_log(&mut self, needle: &str, count: usize) -> String {
        let what = format!("{needle:?} logged {count} times");
        self.until(START_LIMIT, &what, OnExit::Fail, |r| {
            logged(r, needle, count)
        })
        .await
    }

    /// [`Running::wait_for_log`] for a plain `#[test]`.
    pub fn wait_for_log_blocking(&mut self, needle: &str, count: usize) -> String {
        let what = format!("{needle:?} logged {count} times");
        self.until_blocking(START_LIMIT, &what, OnExit::Fail, |r| {
            logged(r, needle, count)
        })
    }

    /// Waits up to `limit` for the child to exit and for its pipes to be read to the end;
    /// returns its status and how long the wait took.
    pub async fn exit(&mut self, limit: Duration) -> (ExitStatus, Duration) {
        let started = Instant::now();
        let status = self.until(limit, "exit", OnExit::Fine, exited).await;
        self.wait_drained();
        (status, started.elapsed())
    }

    /// [`Running::exit`] for a plain `#[test]`.
    pub fn exit_blocking(&mut self, limit: Duration) -> (ExitStatus, Duration) {
        let started = Instant::now();
        let status = self.until_blocking(limit, "exit", OnExit::Fine, exited);
        self.wait_drained();
        (status, started.elapsed())
    }

    /// SIGTERM, then waits up to [`STOP_LIMIT`] for the exit; the output is complete afterwards.
    pub async fn stop(&mut self) -> (ExitStatus, Duration) {
        self.signal(Signal::Term);
        self.exit(STOP_LIMIT).await
    }

    /// [`Running::stop`] for a plain `#[test]`.
    pub fn stop_blocking(&mut self) -> (ExitStatus, Duration) {
        self.signal(Signal::Term);
        self.exit_blocking(STOP_LIMIT)
    }

    /// Waits (bounded) until both readers reached the end of their pipes.
    fn wait_drained(&mut self) {
        for drained in self.drained.drain(..) {
            let _ = drained.recv_timeout(DRAIN_LIMIT);
        }
    }
}

fn ready(running: &mut Running) -> Option<SocketAddr> {
    let stderr = running.stderr();
    if !stderr.contains("msg=\"probing started\"") {
        return None;
    }
    listening_address(&stderr)
}

fn logged(running: &mut Running, needle: &str, count: usize) -> Option<String> {
    let stderr = running.stderr();
    (stderr.matches(needle).count() >= count).then_some(stderr)
}

fn exited(running: &mut Running) -> Option<ExitStatus> {
    running.child.try_wait().expect("try_wait on the child")
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // A killed strace detaches, leaving the exporter running: kill it first (only while
            // the wrapper still runs, so the pid cannot have been reused).
            if self.pid != self.child.id() {
                let _ = scrubbed_command("kill")
                    .args(["-KILL", &self.pid.to_string()])
                    .status();
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
