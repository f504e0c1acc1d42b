//! The benchmark driver's engine (issue 6): generates a configuration of N providers, starts the
//! load target, the exporter (a built binary) and, when available, Debian's
//! `prometheus-blackbox-exporter` with one `oauth2` module per provider against the same target;
//! drives blackbox's `/probe` at the exporter's probe rate; scrapes the exporter's `/metrics` as
//! Prometheus would; samples `/proc` for CPU and memory; and turns it all into one [`Report`].
//!
//! Everything is on loopback and bounded: the run lasts `duration` plus bounded start and stop
//! phases, the target refuses requests beyond a budget, and the blackbox driver stops at a probe
//! count. Shared by `examples/bench.rs` (the command) and `tests/it/bench_smoke.rs` (CI's smoke
//! run).
//!
//! How each number is measured is documented on [`Report`] and in BENCHMARKS.md.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::{bare, target};

// ---------------------------------------------------------------------------------------------
// What to run.

/// One scenario: N providers probed every `interval`, measured for `duration`.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub providers: usize,
    pub interval: Duration,
    /// From the moment the exporter is ready; must be at least two intervals. The first interval
    /// is the warm-up (start times are spread over it); the rest is the measured window.
    pub duration: Duration,
    /// How often `/metrics` is scraped (gzip, as Prometheus does) during the run.
    pub scrape_every: Duration,
    /// How the target's token endpoints misbehave (issue 16); `None` for the healthy run.
    pub fault: target::Fault,
    /// Run the exporter under `prlimit --nofile=N:N` (systemd's default soft limit is 1 024);
    /// `None`: it inherits the harness's limit.
    pub exporter_nofile: Option<u64>,
}

/// How the load target and the bare client lane are started.
pub enum Launch {
    /// A separate process (`program args...`): the target prints its [`target::Bound`] as one
    /// JSON line, the bare client `ready`.
    Command { program: PathBuf, args: Vec<String> },
    /// A thread of this process (the smoke test, which has no example binary to start).
    #[allow(dead_code)] // constructed by tests/it/bench_smoke.rs only
    InProcess,
}

/// Whether blackbox_exporter takes part.
pub enum Blackbox {
    Off { why: String },
    Binary(PathBuf),
}

impl Blackbox {
    /// `prometheus-blackbox-exporter` from PATH, or `Off` saying why not.
    pub fn from_path() -> Blackbox {
        let name = "prometheus-blackbox-exporter";
        std::env::var_os("PATH")
            .and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join(name))
                    .find(|candidate| candidate.is_file())
            })
            .map(Blackbox::Binary)
            .unwrap_or_else(|| Blackbox::Off {
                why: format!("{name} is not on PATH (apt-get install {name})"),
            })
    }
}

pub struct Setup {
    pub exporter: PathBuf,
    pub target: Launch,
    /// The bare reqwest client lane (issue 15): the CPU and memory baseline.
    pub bare: Launch,
    pub blackbox: Blackbox,
    /// Progress lines on standard error.
    pub verbose: bool,
}

// ---------------------------------------------------------------------------------------------
// Child processes.

/// A child process, killed (by its id, through `Child::kill`) when dropped; standard error is
/// drained by a thread that keeps the last lines for diagnostics and, when asked, every line in a
/// file.
pub struct Proc {
    name: &'static str,
    child: Child,
    tail: Arc<Mutex<VecDeque<String>>>,
}

const TAIL_LINES: usize = 30;

impl Proc {
    /// Starts `command` with standard error piped; `on_line` sees every line of it, and `log`,
    /// when given, receives every line (a fault run's failures are explained by lines long gone
    /// from the tail).
    pub fn spawn(
        name: &'static str,
        mut command: Command,
        log: Option<&Path>,
        on_line: impl Fn(&str) + Send + 'static,
    ) -> anyhow::Result<Proc> {
        let mut log = match log {
            Some(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                }
                let file = std::fs::File::create(path)
                    .with_context(|| format!("cannot create {}", path.display()))?;
                Some(std::io::LineWriter::new(file))
            }
            None => None,
        };
        command.stdin(Stdio::null()).stderr(Stdio::piped());
        // Everything here talks to loopback: a proxy from the environment (HTTPS_PROXY,
        // ALL_PROXY, ...) would put a third process into the numbers, or fail the run.
        for (name, _) in std::env::vars_os() {
            if name
                .to_string_lossy()
                .to_ascii_uppercase()
                .ends_with("_PROXY")
            {
                command.env_remove(name);
            }
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {name} ({:?})", command.get_program()))?;
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(stderr) = child.stderr.take() {
            let tail = Arc::clone(&tail);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    on_line(&line);
                    if let Some(writer) = log.as_mut() {
                        use std::io::Write as _;
                        // A full disk loses the log, not the run.
                        if writeln!(writer, "{line}").is_err() {
                            log = None;
                        }
                    }
                    if let Ok(mut tail) = tail.lock() {
                        if tail.len() == TAIL_LINES {
                            tail.pop_front();
                        }
                        tail.push_back(line);
                    }
                }
            });
        }
        Ok(Proc { name, child, tail })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The first line the process prints on its standard output (piped), within `within`: how
    /// the load target and the bare client say they are ready.
    fn first_line(&mut self, within: Duration) -> anyhow::Result<String> {
        let stdout = self
            .child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("{}: no stdout", self.name))?;
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        receiver
            .recv_timeout(within)
            .map_err(|_| anyhow!("{} printed nothing within {within:?}", self.name))
    }

    /// Fails if the process has exited, with its last lines of standard error.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Ok(Some(status)) = self.child.try_wait() {
            bail!("{} exited ({status}):\n{}", self.name, self.tail());
        }
        Ok(())
    }

    fn tail(&self) -> String {
        self.tail
            .lock()
            .map(|tail| tail.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The running load target, in a process or a thread of this one.
pub enum TargetHandle {
    Process(Proc),
    Thread {
        cancel: CancellationToken,
        thread: Option<std::thread::JoinHandle<()>>,
    },
}

impl TargetHandle {
    fn pid(&self) -> Option<u32> {
        match self {
            TargetHandle::Process(proc) => Some(proc.pid()),
            TargetHandle::Thread { .. } => None,
        }
    }
}

impl Drop for TargetHandle {
    fn drop(&mut self) {
        if let TargetHandle::Thread { cancel, thread } = self {
            cancel.cancel();
            if let Some(thread) = thread.take() {
                let _ = thread.join();
            }
        }
    }
}

pub fn start_target(
    launch: &Launch,
    options: &target::Options,
) -> anyhow::Result<(TargetHandle, target::Bound)> {
    match launch {
        Launch::Command { program, args } => {
            let mut command = Command::new(program);
            command
                .args(args)
                .args(options.to_args())
                .stdout(Stdio::piped());
            let mut proc = Proc::spawn("load target", command, None, |_| {})?;
            let line = proc.first_line(Duration::from_secs(30))?;
            let bound = serde_json::from_str(line.trim()).with_context(|| {
                format!(
                    "the load target printed {line:?} instead of its ports:\n{}",
                    proc.tail()
                )
            })?;
            Ok((TargetHandle::Process(proc), bound))
        }
        Launch::InProcess => {
            let cancel = CancellationToken::new();
            let (sender, receiver) = std::sync::mpsc::channel();
            let options = options.clone();
            let stop = cancel.clone();
            let thread = std::thread::spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = sender.send(Err(error.to_string()));
                        return;
                    }
                };
                runtime.block_on(async move {
                    match target::Target::bind(options).await {
                        Ok(bound) => {
                            let _ = sender.send(Ok(bound.bound.clone()));
                            bound.serve(stop).await;
                        }
                        Err(error) => {
                            let _ = sender.send(Err(error.to_string()));
                        }
                    }
                });
            });
            let handle = TargetHandle::Thread {
                cancel,
                thread: Some(thread),
            };
            let bound = receiver
                .recv_timeout(Duration::from_secs(30))
                .map_err(|_| anyhow!("the in-process target did not start in 30 s"))?
                .map_err(|error| anyhow!("the in-process target failed: {error}"))?;
            Ok((handle, bound))
        }
    }
}

/// The running bare client lane, in a process or a thread of this one.
enum BareHandle {
    Process {
        proc: Proc,
        /// The last failure count it printed.
        failures: Arc<std::sync::atomic::AtomicU64>,
    },
    Thread {
        cancel: CancellationToken,
        tid: u32,
        failures: Arc<bare::Failures>,
        thread: Option<std::thread::JoinHandle<()>>,
    },
}

impl BareHandle {
    /// Where its CPU time (and, for a process, its memory) is read.
    fn source(&self) -> Sampled {
        match self {
            BareHandle::Process { proc, .. } => Sampled::Process(proc.pid()),
            BareHandle::Thread { tid, .. } => Sampled::Thread(*tid),
        }
    }

    fn failures(&self) -> u64 {
        match self {
            BareHandle::Process { failures, .. } => {
                failures.load(std::sync::atomic::Ordering::Relaxed)
            }
            BareHandle::Thread { failures, .. } => failures.count(),
        }
    }
}

impl Drop for BareHandle {
    fn drop(&mut self) {
        if let BareHandle::Thread { cancel, thread, .. } = self {
            cancel.cancel();
            if let Some(thread) = thread.take() {
                let _ = thread.join();
            }
        }
    }
}

fn start_bare(launch: &Launch, options: bare::Options) -> anyhow::Result<BareHandle> {
    match launch {
        Launch::Command { program, args } => {
            let mut command = Command::new(program);
            command
                .args(args)
                .args(options.to_args())
                .stdout(Stdio::piped());
            let failures = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let counted = Arc::clone(&failures);
            let mut proc = Proc::spawn("bare client", command, None, move |line| {
                if let Some(count) = line
                    .strip_prefix("bare client: failures ")
                    .and_then(|n| n.trim().parse().ok())
                {
                    counted.store(count, std::sync::atomic::Ordering::Relaxed);
                }
            })?;
            let line = proc.first_line(Duration::from_secs(60))?;
            if line.trim() != "ready" {
                bail!(
                    "the bare client printed {line:?} instead of ready:\n{}",
                    proc.tail()
                );
            }
            Ok(BareHandle::Process { proc, failures })
        }
        Launch::InProcess => {
            let cancel = CancellationToken::new();
            let (tid, failures, thread) = bare::run_in_thread(options, cancel.clone())?;
            Ok(BareHandle::Thread {
                cancel,
                tid,
                failures,
                thread: Some(thread),
            })
        }
    }
}

// ---------------------------------------------------------------------------------------------
// /proc.

/// CPU time (user + system, all threads) and memory of one process.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    pub cpu: Duration,
    pub rss_kib: u64,
    pub hwm_kib: u64,
    /// Open descriptors (entries of `/proc/PID/fd`).
    pub fds: u64,
}

pub fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .filter(|&ticks| ticks > 0)
        .unwrap_or(100)
}

/// What a sample is read from: another process, or one thread of this one (its CPU time only:
/// its memory is this process's).
#[derive(Debug, Clone, Copy)]
enum Sampled {
    Process(u32),
    Thread(u32),
}

impl Sampled {
    fn sample(self, ticks: u64) -> Option<ProcSample> {
        match self {
            Sampled::Process(pid) => proc_sample(Some(pid), ticks),
            Sampled::Thread(tid) => proc_dir_sample(&format!("/proc/self/task/{tid}"), ticks),
        }
    }

    fn has_own_memory(self) -> bool {
        matches!(self, Sampled::Process(_))
    }
}

pub fn proc_sample(pid: Option<u32>, ticks: u64) -> Option<ProcSample> {
    let dir = match pid {
        Some(pid) => format!("/proc/{pid}"),
        None => "/proc/self".to_string(),
    };
    proc_dir_sample(&dir, ticks)
}

fn proc_dir_sample(dir: &str, ticks: u64) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at field 3 (state);
    // utime and stime are fields 14 and 15.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let status = std::fs::read_to_string(format!("{dir}/status")).ok()?;
    let kib = |key: &str| -> Option<u64> {
        status
            .lines()
            .find(|line| line.starts_with(key))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some(ProcSample {
        cpu: Duration::from_micros((utime + stime) * 1_000_000 / ticks),
        rss_kib: kib("VmRSS:")?,
        hwm_kib: kib("VmHWM:")?,
        fds: std::fs::read_dir(format!("{dir}/fd")).map_or(0, |entries| entries.count() as u64),
    })
}

/// Busy and total jiffies of the whole machine (`/proc/stat`).
fn system_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let values: Vec<u64> = line
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3)? + values.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP, so that time to first byte and body size are exactly what went over the wire.

pub struct HttpAnswer {
    pub status: u16,
    pub headers: String,
    pub body: Vec<u8>,
    pub ttfb: Duration,
    pub total: Duration,
}

async fn http_get(
    addr: SocketAddr,
    path: &str,
    gzip: bool,
    deadline: Duration,
) -> anyhow::Result<HttpAnswer> {
    let exchange = async {
        let started = Instant::now();
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let encoding = if gzip {
            "Accept-Encoding: gzip\r\n"
        } else {
            ""
        };
        stream
            .write_all(
                format!(
                    "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{encoding}\r\n"
                )
                .as_bytes(),
            )
            .await?;
        let mut chunk = vec![0u8; 256 * 1024];
        let first = stream.read(&mut chunk).await?;
        if first == 0 {
            bail!("connection closed without an answer");
        }
        let ttfb = started.elapsed();
        let mut raw = chunk[..first].to_vec();
        loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            raw.extend_from_slice(&chunk[..n]);
        }
        let total = started.elapsed();
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| anyhow!("no end of headers"))?;
        let headers = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
        let status = headers
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("bad status line"))?;
        let mut body = raw[split + 4..].to_vec();
        if headers.contains("transfer-encoding: chunked") {
            body = dechunk(&body)?;
        }
        Ok(HttpAnswer {
            status,
            headers,
            body,
            ttfb,
            total,
        })
    };
    tokio::time::timeout(deadline, exchange)
        .await
        .map_err(|_| anyhow!("GET {path} took longer than {deadline:?}"))?
}

fn dechunk(mut data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| anyhow!("bad chunk"))?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(data.get(..size).ok_or_else(|| anyhow!("short chunk"))?);
        data = data.get(size + 2..).ok_or_else(|| anyhow!("short chunk"))?;
    }
}

pub async fn wait_for_status(addr: SocketAddr, path: &str, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(answer) = http_get(addr, path, false, Duration::from_secs(5)).await
            && answer.status == 200
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{addr}{path} did not answer 200 within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Configurations.

fn provider_name(index: usize) -> String {
    format!("p{index}")
}

pub fn exporter_config(scenario: &Scenario, lane: &target::LaneAddrs) -> String {
    let mut text = String::with_capacity(scenario.providers * 320);
    let _ = writeln!(
        text,
        "# Generated by the benchmark harness: {} providers on the load target.\n\
         [defaults]\ninterval = \"{}s\"\ntimeout = \"10s\"\n",
        scenario.providers,
        scenario.interval.as_secs_f64()
    );
    for index in 0..scenario.providers {
        let name = provider_name(index);
        let (id, secret) = target::credentials(index);
        // Token per cycle (reuse off, the default) and HTTP Basic: what blackbox does per probe.
        let _ = writeln!(
            text,
            "[providers.{name}.token]\nurl = \"{}\"\nclient_id = \"{id}\"\nclient_secret = \"{secret}\"\n\
             auth_method = \"client_secret_basic\"\n[providers.{name}.canary]\nurl = \"{}\"\n",
            lane.token_url(index),
            lane.api_url(index)
        );
    }
    text
}

/// One blackbox module per provider (a module holds one set of credentials), plus two that show
/// what blackbox reports for a rejected secret and for an unreachable token endpoint.
fn blackbox_config(providers: usize, lane: &target::LaneAddrs, closed_port: u16) -> String {
    let module = |text: &mut String, name: &str, id: &str, secret: &str, token_url: &str| {
        let _ = writeln!(
            text,
            "  {name}:\n    prober: http\n    timeout: 10s\n    http:\n      preferred_ip_protocol: ip4\n      \
             valid_status_codes: [200]\n      oauth2:\n        client_id: \"{id}\"\n        \
             client_secret: \"{secret}\"\n        token_url: \"{token_url}\""
        );
    };
    let mut text = String::with_capacity(providers * 300);
    text.push_str("# Generated by the benchmark harness.\nmodules:\n");
    for index in 0..providers {
        let (id, secret) = target::credentials(index);
        module(
            &mut text,
            &provider_name(index),
            &id,
            &secret,
            &lane.token_url(index),
        );
    }
    let (id, _) = target::credentials(0);
    module(&mut text, "bad_secret", &id, "wrong", &lane.token_url(0));
    let (id, secret) = target::credentials(0);
    module(
        &mut text,
        "token_down",
        &id,
        &secret,
        &format!("http://127.0.0.1:{closed_port}/p/0/token"),
    );
    text
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    std::io::Write::write_all(&mut file, text.as_bytes())?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Driving blackbox at the exporter's probe rate.

#[derive(Debug, Default)]
struct BlackboxDrive {
    sent: u64,
    succeeded: u64,
    failed: u64,
    /// How late the driver sent probes against their schedule (its own pacing), ms.
    driver_late_ms: Vec<f64>,
    /// blackbox's `probe_duration_seconds`, ms.
    durations_ms: Vec<f64>,
    errors: Vec<String>,
}

/// A small xorshift generator: spread start times like the exporter does, without a crate.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Rng(nanos | 1)
    }

    fn below(&mut self, bound: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let nanos = bound.as_nanos().max(1) as u64;
        Duration::from_nanos(self.0 % nanos)
    }
}

/// Probes every provider through blackbox's `/probe` once per interval, first probes spread over
/// the first interval, until `until` or `max_probes`. At most `concurrency` probes in flight.
#[allow(clippy::too_many_arguments)]
async fn drive_blackbox(
    blackbox: SocketAddr,
    lane: target::LaneAddrs,
    providers: usize,
    interval: Duration,
    start: tokio::time::Instant,
    until: tokio::time::Instant,
    max_probes: u64,
    concurrency: usize,
) -> BlackboxDrive {
    let results = Arc::new(Mutex::new(BlackboxDrive::default()));
    let client = match reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .timeout(Duration::from_secs(30))
        .build()
    {
        Ok(client) => client,
        Err(error) => {
            return BlackboxDrive {
                errors: vec![format!("cannot build an HTTP client: {error}")],
                ..Default::default()
            };
        }
    };
    let mut rng = Rng::seeded();
    let mut schedule: Vec<(Duration, usize)> = (0..providers)
        .map(|index| (rng.below(interval), index))
        .collect();
    schedule.sort();
    let slots = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut sent = 0u64;
    'rounds: for round in 0u32.. {
        for &(offset, index) in &schedule {
            let due = start + offset + interval * round;
            // The clock too: when blackbox falls behind (a silent token endpoint holds each
            // probe for its whole timeout), the schedule would keep it probing long after.
            if due >= until || sent >= max_probes || tokio::time::Instant::now() >= until {
                break 'rounds;
            }
            tokio::time::sleep_until(due).await;
            let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
                break 'rounds;
            };
            let late = tokio::time::Instant::now().saturating_duration_since(due);
            sent += 1;
            let url = format!(
                "http://{blackbox}/probe?{}",
                url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("module", &provider_name(index))
                    .append_pair("target", &lane.api_url(index))
                    .finish()
            );
            let client = client.clone();
            let results = Arc::clone(&results);
            tokio::spawn(async move {
                let _permit = permit;
                let outcome = async {
                    let response = client.get(&url).send().await?;
                    let status = response.status();
                    let text = response.text().await?;
                    Ok::<_, reqwest::Error>((status, text))
                }
                .await;
                let Ok(mut results) = results.lock() else {
                    return;
                };
                results.driver_late_ms.push(late.as_secs_f64() * 1e3);
                match outcome {
                    Ok((status, text)) if status.is_success() => {
                        let value = |name: &str| {
                            text.lines()
                                .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
                                .and_then(|v| v.trim().parse::<f64>().ok())
                        };
                        if value("probe_success") == Some(1.0) {
                            results.succeeded += 1;
                        } else {
                            results.failed += 1;
                        }
                        if let Some(seconds) = value("probe_duration_seconds") {
                            results.durations_ms.push(seconds * 1e3);
                        }
                    }
                    Ok((status, _)) => {
                        results.failed += 1;
                        if results.errors.len() < 5 {
                            results.errors.push(format!("/probe answered {status}"));
                        }
                    }
                    Err(error) => {
                        results.failed += 1;
                        if results.errors.len() < 5 {
                            results.errors.push(format!("/probe failed: {error}"));
                        }
                    }
                }
            });
        }
    }
    // Wait for the probes in flight (each bounded by the client's timeout).
    let _ = tokio::time::timeout(
        Duration::from_secs(40),
        slots.acquire_many(concurrency as u32),
    )
    .await;
    let mut results = results
        .lock()
        .map(|mut r| std::mem::take(&mut *r))
        .unwrap_or_default();
    results.sent = sent;
    results
}

// ---------------------------------------------------------------------------------------------
// Scrapes.

#[derive(Debug, Clone)]
pub struct ScrapeSample {
    pub ttfb: Duration,
    pub total: Duration,
    pub bytes: usize,
    /// The exporter's CPU time during the scrape (probing in the same moment included).
    pub cpu: Duration,
    pub in_window: bool,
}

/// How long a scrape may take: a minute, and a second more per 1 000 providers (the plain page
/// is about 3 KB per provider, 300 MB at 100 000, read here whole).
fn scrape_limit(providers: usize) -> Duration {
    Duration::from_secs(60 + providers as u64 / 1000)
}

async fn measured_scrape(
    exporter: SocketAddr,
    pid: u32,
    ticks: u64,
    gzip: bool,
    limit: Duration,
) -> anyhow::Result<(ScrapeSample, Vec<u8>)> {
    let before = proc_sample(Some(pid), ticks).unwrap_or_default();
    let answer = http_get(exporter, "/metrics", gzip, limit).await?;
    let after = proc_sample(Some(pid), ticks).unwrap_or_default();
    if answer.status != 200 {
        bail!("/metrics answered {}", answer.status);
    }
    if gzip && !answer.headers.contains("content-encoding: gzip") {
        bail!("/metrics ignored Accept-Encoding: gzip");
    }
    Ok((
        ScrapeSample {
            ttfb: answer.ttfb,
            total: answer.total,
            bytes: answer.body.len(),
            cpu: after.cpu.saturating_sub(before.cpu),
            in_window: false,
        },
        answer.body,
    ))
}

/// What the exporter's final `/metrics` says about one provider.
#[derive(Debug, Clone, Default)]
struct Exported {
    success: Option<f64>,
    token_requests: f64,
    token_sum: f64,
    token_count: f64,
    canary_sum: f64,
    canary_count: f64,
}

fn parse_exposition(text: &str, providers: usize) -> Vec<Exported> {
    let mut out = vec![Exported::default(); providers];
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(brace) = line.find('{') else {
            continue;
        };
        let name = &line[..brace];
        let Some(start) = line.find("provider=\"p") else {
            continue;
        };
        let rest = &line[start + "provider=\"p".len()..];
        let Some(index) = rest
            .split('"')
            .next()
            .and_then(|i| i.parse::<usize>().ok())
            .filter(|&i| i < providers)
        else {
            continue;
        };
        let Some(value) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        let entry = &mut out[index];
        match name {
            "oauth2_probe_success" => entry.success = Some(value),
            "oauth2_token_requests_total" => entry.token_requests = value,
            "oauth2_token_request_duration_seconds_sum" => entry.token_sum = value,
            "oauth2_token_request_duration_seconds_count" => entry.token_count = value,
            "oauth2_canary_request_duration_seconds_sum" => entry.canary_sum = value,
            "oauth2_canary_request_duration_seconds_count" => entry.canary_count = value,
            _ => {}
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The target's records.

#[derive(Debug, Clone, Copy)]
struct Seen {
    lane: usize,
    token: bool,
    provider: usize,
    arrival_ns: u64,
    handling_ns: u64,
    status: u16,
}

fn parse_records(text: &str) -> Vec<Seen> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split(' ');
            Some(Seen {
                lane: f.next()?.parse().ok()?,
                token: f.next()? == "t",
                provider: f.next()?.parse().ok()?,
                arrival_ns: f.next()?.parse().ok()?,
                handling_ns: f.next()?.parse().ok()?,
                status: f.next()?.parse().ok()?,
            })
        })
        .collect()
}

#[derive(Debug, Clone, Default, serde::Serialize)]
struct LaneCounters {
    token_connections: u64,
    api_connections: u64,
    token_requests: u64,
    api_requests: u64,
    rejected: u64,
}

async fn target_counters(control: SocketAddr) -> anyhow::Result<(Vec<LaneCounters>, u64)> {
    let answer = http_get(control, "/counters", false, Duration::from_secs(30)).await?;
    let value: serde_json::Value = serde_json::from_slice(&answer.body)?;
    let number =
        |v: &serde_json::Value, key: &str| v.get(key).and_then(|n| n.as_u64()).unwrap_or(0);
    let lanes = value
        .get("lanes")
        .and_then(|l| l.as_array())
        .ok_or_else(|| anyhow!("no lanes in /counters"))?
        .iter()
        .map(|lane| LaneCounters {
            token_connections: number(lane, "token_connections"),
            api_connections: number(lane, "api_connections"),
            token_requests: number(lane, "token_requests"),
            api_requests: number(lane, "api_requests"),
            rejected: number(lane, "rejected"),
        })
        .collect();
    Ok((lanes, number(&value, "refused")))
}

// ---------------------------------------------------------------------------------------------
// Statistics.

/// p50 / p99 / max of a sample, by nearest rank.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Quantiles {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub count: usize,
}

fn quantiles(values: &[f64]) -> Option<Quantiles> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank =
        |q: f64| sorted[((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1];
    Some(Quantiles {
        p50: rank(0.50),
        p99: rank(0.99),
        max: sorted[sorted.len() - 1],
        count: sorted.len(),
    })
}

fn median(values: &[f64]) -> Option<f64> {
    quantiles(values).map(|q| q.p50)
}

/// Lateness of each cycle against its due time, ms, from the target's arrival times of one
/// lane's token requests: for consecutive requests of a provider, `gap - interval`. Under
/// tokio's `MissedTickBehavior::Delay` a tick late by more than 5 ms moves the schedule, so the
/// next due time is the late tick plus the interval: the gap then measures each cycle's own
/// lateness (within 5 ms), and lateness does not accumulate in it.
fn lateness_ms(records: &[Seen], lane: usize, providers: usize, interval: Duration) -> Vec<f64> {
    let mut arrivals: Vec<Vec<u64>> = vec![Vec::new(); providers];
    for r in records.iter().filter(|r| r.lane == lane && r.token) {
        arrivals[r.provider].push(r.arrival_ns);
    }
    let interval_ns = interval.as_nanos() as f64;
    let mut late = Vec::new();
    for mut times in arrivals {
        times.sort_unstable();
        for pair in times.windows(2) {
            late.push(((pair[1] - pair[0]) as f64 - interval_ns) / 1e6);
        }
    }
    late
}

/// Per provider: the exporter's mean reported latency minus the target's mean handling time of
/// the same requests, ms. Only providers whose request counts line up (a cycle still in flight
/// at the scrape is left out) take part.
fn fidelity_ms(records: &[Seen], exported: &[Exported], token: bool) -> (Vec<f64>, Vec<f64>) {
    let mut handled: Vec<Vec<(u64, u64)>> = vec![Vec::new(); exported.len()];
    for r in records.iter().filter(|r| r.lane == 0 && r.token == token) {
        handled[r.provider].push((r.arrival_ns, r.handling_ns));
    }
    let mut overhead = Vec::new();
    let mut handling = Vec::new();
    for (seen, exported) in handled.iter_mut().zip(exported) {
        seen.sort_unstable();
        let (sum, count) = if token {
            (exported.token_sum, exported.token_count as usize)
        } else {
            (exported.canary_sum, exported.canary_count as usize)
        };
        if count == 0 || !(count == seen.len() || count + 1 == seen.len()) {
            continue;
        }
        let target_mean_ns =
            seen[..count].iter().map(|(_, h)| *h as f64).sum::<f64>() / count as f64;
        handling.extend(seen[..count].iter().map(|(_, h)| *h as f64 / 1e6));
        overhead.push((sum / count as f64) * 1e3 - target_mean_ns / 1e6);
    }
    (overhead, handling)
}

// ---------------------------------------------------------------------------------------------
// The report.

/// One process's resource use over the measured window.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Resources {
    /// CPU time (utime + stime) from start to the beginning of the window (loading the
    /// configuration and the first interval's probes), s.
    pub startup_cpu_s: f64,
    /// CPU time in the window, s.
    pub window_cpu_s: f64,
    /// Average share of one core in the window, %.
    pub cpu_share_pct: f64,
    /// Median VmRSS over the 1 s samples in the window, MiB.
    pub rss_steady_mib: f64,
    /// VmHWM at the end of the window (before the final scrapes), MiB.
    pub rss_peak_window_mib: f64,
    /// VmHWM at the very end (after the final scrapes), MiB.
    pub rss_peak_mib: f64,
}

/// One client's view from the target.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Traffic {
    /// Token requests that arrived in the window: one per probe cycle.
    pub cycles_in_window: u64,
    pub token_requests: u64,
    pub canary_requests: u64,
    pub token_connections: u64,
    pub api_connections: u64,
    pub rejected: u64,
    /// Cycle lateness as seen by the target, ms (for blackbox: the driver's pacing).
    pub lateness_ms: Option<Quantiles>,
}

impl Traffic {
    fn token_connections_per_1000(&self) -> Option<f64> {
        (self.token_requests > 0)
            .then(|| self.token_connections as f64 * 1000.0 / self.token_requests as f64)
    }

    fn api_connections_per_1000(&self) -> Option<f64> {
        (self.canary_requests > 0)
            .then(|| self.api_connections as f64 * 1000.0 / self.canary_requests as f64)
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ScrapeStats {
    pub during_run: usize,
    pub gzip_ttfb_ms: Option<Quantiles>,
    pub gzip_total_ms: Option<Quantiles>,
    pub plain_ttfb_ms: Option<f64>,
    pub plain_total_ms: Option<f64>,
    pub plain_bytes: usize,
    pub gzip_bytes: usize,
    /// Median exporter CPU per scrape, ms.
    pub cpu_per_scrape_ms: Option<f64>,
    /// Exporter CPU spent in the window's scrapes, s.
    pub window_scrape_cpu_s: f64,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Fidelity {
    /// Exporter-reported token latency minus the target's handling time, per provider, ms.
    pub token_overhead_ms: Option<Quantiles>,
    pub canary_overhead_ms: Option<Quantiles>,
    /// The target's own handling time of the exporter's token requests, ms.
    pub target_token_handling_ms: Option<Quantiles>,
    pub providers_compared: usize,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BlackboxSide {
    pub version: String,
    pub resources: Resources,
    pub traffic: Traffic,
    pub probes_sent: u64,
    pub probes_succeeded: u64,
    pub probes_failed: u64,
    /// blackbox's own `probe_duration_seconds`, ms.
    pub probe_duration_ms: Option<Quantiles>,
    pub errors: Vec<String>,
    /// What blackbox answers for a good probe, a rejected secret and a dead token endpoint.
    pub views: Vec<(String, Vec<String>)>,
}

/// The bare reqwest client lane (issue 15): the same two requests per cycle and nothing else.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BareSide {
    pub resources: Resources,
    pub traffic: Traffic,
    /// Cycles that failed (the run is then invalid).
    pub failures: u64,
    /// Providers the target saw a token and a canary request from on this lane (status 200).
    pub providers_seen: usize,
    /// It ran in a process of its own (its memory is measured); in a thread of the driver
    /// (the smoke test) only its CPU time is.
    pub own_memory: bool,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub load_before: String,
    pub load_after: String,
    /// Share of all cores busy in the window (every process), %.
    pub busy_pct: f64,
    /// Of that, what none of the benchmark's processes used, % of all cores.
    pub others_pct: f64,
    pub target_cpu_share_pct: Option<f64>,
    pub driver_cpu_share_pct: f64,
}

/// Everything one run measured. The window is `[interval, duration]` after the exporter became
/// ready: by then every provider has started (first cycles are spread over the first interval).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    pub providers: usize,
    /// The token endpoints' fault (issue 16): "none" for the healthy run.
    pub fault: String,
    /// The exporter's descriptor limit when the harness set one.
    pub exporter_nofile: Option<u64>,
    /// Most descriptors open at once (1 s samples), exporter and blackbox.
    pub exporter_peak_fds: u64,
    pub blackbox_peak_fds: Option<u64>,
    /// The exporter's token failures in the final scrape, summed over providers, by reason.
    pub exporter_token_failures: BTreeMap<String, f64>,
    /// Slowest gzip scrape during the run, ms.
    pub scrape_max_ms: Option<f64>,
    pub interval_s: f64,
    pub duration_s: f64,
    pub window_s: f64,
    pub exporter_revision: String,
    pub exporter: Resources,
    pub exporter_traffic: Traffic,
    /// Providers whose last cycle succeeded (probe_success 1) in the final scrape.
    pub providers_ok: usize,
    /// Providers the target saw a token and a canary request from (exporter lane, status 200).
    pub providers_seen: usize,
    pub exporter_warnings: u64,
    pub scrape: ScrapeStats,
    pub fidelity: Fidelity,
    /// VmRSS right after the final plain-text scrape, MiB (issue 15: a plain scrape streams).
    pub exporter_rss_after_plain_mib: Option<f64>,
    pub bare: Option<BareSide>,
    pub blackbox: Option<BlackboxSide>,
    pub blackbox_skipped: Option<String>,
    pub machine: Machine,
    pub refused_by_target: u64,
    /// Where the exporter's whole log was kept (fault runs).
    pub exporter_log: Option<String>,
    /// How the exporter came back once the fault ended (fault runs).
    pub recovery: Option<Recovery>,
}

/// After a fault run the target is healed (`GET /heal`) and the exporter's plain `/metrics` is
/// read every few seconds until every provider's last cycle succeeded, or the bound passed.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Recovery {
    /// Seconds from the heal to the scrape that showed every provider succeeding; `None` if that
    /// never happened within `bound_s`.
    pub all_recovered_s: Option<f64>,
    /// Providers whose last cycle succeeded in the last scrape read.
    pub providers_recovered: usize,
    pub bound_s: f64,
    /// Slowest plain scrape while recovering (the page is parsed; no gzip), ms.
    pub scrape_max_ms: f64,
    /// Scrapes read while recovering.
    pub scrapes: usize,
}

/// A table cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Value(String),
    /// Not measurable for this side, with the reason shown.
    NotApplicable(&'static str),
    /// Should have been measured and was not.
    Missing,
}

impl Cell {
    fn show(&self) -> String {
        match self {
            Cell::Value(text) => text.clone(),
            Cell::NotApplicable(why) => why.to_string(),
            Cell::Missing => "MISSING".to_string(),
        }
    }
}

fn cell(value: Option<String>) -> Cell {
    value.map(Cell::Value).unwrap_or(Cell::Missing)
}

fn q3(q: Option<Quantiles>, unit: &str) -> Option<String> {
    q.map(|q| format!("{:.1} / {:.1} / {:.1} {unit}", q.p50, q.p99, q.max))
}

fn q2(q: Option<Quantiles>, unit: &str) -> Option<String> {
    q.map(|q| format!("{:.2} / {:.2} {unit}", q.p50, q.p99))
}

pub struct Row {
    pub measure: &'static str,
    pub exporter: Cell,
    /// The bare reqwest client lane, and the exporter's figure divided by its figure.
    pub bare: Cell,
    pub bare_ratio: Cell,
    pub blackbox: Cell,
    pub ratio: Cell,
}

impl Report {
    fn cpu_per_1000_ms(resources: &Resources, cycles: u64) -> Option<f64> {
        (cycles > 0).then(|| resources.window_cpu_s * 1e3 * 1000.0 / cycles as f64)
    }

    /// The exporter's CPU per 1 000 cycles without the scrapes in the window, ms.
    fn probing_cpu_per_1000_ms(&self) -> Option<f64> {
        let cycles = self.exporter_traffic.cycles_in_window;
        (cycles > 0).then(|| {
            (self.exporter.window_cpu_s - self.scrape.window_scrape_cpu_s).max(0.0) * 1e6
                / cycles as f64
        })
    }

    /// The table, one row per measure; blackbox cells say why they are empty.
    pub fn rows(&self) -> Vec<Row> {
        let bb = self.blackbox.as_ref();
        let bare = self.bare.as_ref();
        let skipped = || Cell::NotApplicable("not run");
        let bb_cell = |value: Option<String>| match bb {
            Some(_) => cell(value),
            None => skipped(),
        };
        let bare_cell = |value: Option<String>| match bare {
            Some(_) => cell(value),
            None => skipped(),
        };
        let ratio = |a: Option<f64>, b: Option<f64>| match (bb, a, b) {
            (None, _, _) => skipped(),
            (Some(_), Some(a), Some(b)) if b > 0.0 => Cell::Value(format!("{:.2}", a / b)),
            _ => Cell::Missing,
        };
        let bare_ratio = |a: Option<f64>, b: Option<f64>| match (bare, a, b) {
            (None, _, _) => skipped(),
            (Some(_), Some(a), Some(b)) if b > 0.0 => Cell::Value(format!("{:.2}", a / b)),
            _ => Cell::Missing,
        };
        let none = || Cell::NotApplicable("");
        // The bare lane's memory is this process's when it runs in a thread (the smoke test).
        let bare_memory = |value: Option<f64>, format: fn(f64) -> String| match bare {
            Some(b) if !b.own_memory => Cell::NotApplicable("in the driver's process"),
            _ => bare_cell(value.map(format)),
        };
        let bare_memory_ratio = |a: f64, b: Option<f64>| match bare {
            Some(b) if !b.own_memory => Cell::NotApplicable(""),
            _ => bare_ratio(Some(a), b),
        };
        let exporter_cpu =
            Self::cpu_per_1000_ms(&self.exporter, self.exporter_traffic.cycles_in_window);
        let exporter_probing = self.probing_cpu_per_1000_ms();
        let bb_cpu =
            bb.and_then(|b| Self::cpu_per_1000_ms(&b.resources, b.traffic.cycles_in_window));
        let bare_cpu =
            bare.and_then(|b| Self::cpu_per_1000_ms(&b.resources, b.traffic.cycles_in_window));
        let per_provider_kib = |mib: f64| mib * 1024.0 / self.providers.max(1) as f64;
        let exporter_kib = per_provider_kib(self.exporter.rss_steady_mib);
        let bare_kib = bare.map(|b| per_provider_kib(b.resources.rss_steady_mib));
        let bb_kib = bb.map(|b| per_provider_kib(b.resources.rss_steady_mib));
        let steady = self.exporter.rss_steady_mib.max(1e-9);
        let mut rows = vec![
            Row {
                measure: "probe cycles in window (token requests seen by target)",
                exporter: Cell::Value(self.exporter_traffic.cycles_in_window.to_string()),
                bare: bare_cell(bare.map(|b| b.traffic.cycles_in_window.to_string())),
                bare_ratio: none(),
                blackbox: bb_cell(bb.map(|b| b.traffic.cycles_in_window.to_string())),
                ratio: none(),
            },
            Row {
                measure: "providers OK (exporter: last cycle; bare: seen / failed cycles; blackbox: probes OK / sent)",
                exporter: Cell::Value(format!("{} / {}", self.providers_ok, self.providers)),
                bare: bare_cell(
                    bare.map(|b| format!("{} / {} failed", b.providers_seen, b.failures)),
                ),
                bare_ratio: none(),
                blackbox: bb_cell(
                    bb.map(|b| format!("{} / {}", b.probes_succeeded, b.probes_sent)),
                ),
                ratio: none(),
            },
            Row {
                measure: "CPU per 1 000 cycles, ms (exporter incl. its /metrics scrapes)",
                exporter: cell(exporter_cpu.map(|v| format!("{v:.0}"))),
                bare: bare_cell(bare_cpu.map(|v| format!("{v:.0}"))),
                bare_ratio: bare_ratio(exporter_cpu, bare_cpu),
                blackbox: bb_cell(bb_cpu.map(|v| format!("{v:.0}"))),
                ratio: ratio(exporter_cpu, bb_cpu),
            },
            Row {
                measure: "CPU per 1 000 cycles, ms, probing only (scrapes subtracted)",
                exporter: cell(exporter_probing.map(|v| format!("{v:.0}"))),
                bare: bare_cell(bare_cpu.map(|v| format!("{v:.0}"))),
                bare_ratio: bare_ratio(exporter_probing, bare_cpu),
                blackbox: bb_cell(bb_cpu.map(|v| format!("{v:.0}"))),
                ratio: ratio(exporter_probing, bb_cpu),
            },
            Row {
                measure: "average CPU share of one core in window",
                exporter: Cell::Value(format!("{:.2} %", self.exporter.cpu_share_pct)),
                bare: bare_cell(bare.map(|b| format!("{:.2} %", b.resources.cpu_share_pct))),
                bare_ratio: bare_ratio(
                    Some(self.exporter.cpu_share_pct),
                    bare.map(|b| b.resources.cpu_share_pct),
                ),
                blackbox: bb_cell(bb.map(|b| format!("{:.2} %", b.resources.cpu_share_pct))),
                ratio: ratio(
                    Some(self.exporter.cpu_share_pct),
                    bb.map(|b| b.resources.cpu_share_pct),
                ),
            },
            Row {
                measure: "CPU before the window (start-up and first interval), s",
                exporter: Cell::Value(format!("{:.2}", self.exporter.startup_cpu_s)),
                bare: bare_cell(bare.map(|b| format!("{:.2}", b.resources.startup_cpu_s))),
                bare_ratio: none(),
                blackbox: bb_cell(bb.map(|b| format!("{:.2}", b.resources.startup_cpu_s))),
                ratio: none(),
            },
            Row {
                measure: "RSS steady (median in window), MiB",
                exporter: Cell::Value(format!("{:.1}", self.exporter.rss_steady_mib)),
                bare: bare_memory(bare.map(|b| b.resources.rss_steady_mib), |v| {
                    format!("{v:.1}")
                }),
                bare_ratio: bare_memory_ratio(
                    self.exporter.rss_steady_mib,
                    bare.map(|b| b.resources.rss_steady_mib),
                ),
                blackbox: bb_cell(bb.map(|b| format!("{:.1}", b.resources.rss_steady_mib))),
                ratio: ratio(
                    Some(self.exporter.rss_steady_mib),
                    bb.map(|b| b.resources.rss_steady_mib),
                ),
            },
            Row {
                measure: "RSS steady per provider, KiB",
                exporter: Cell::Value(format!("{exporter_kib:.2}")),
                bare: bare_memory(bare_kib, |v| format!("{v:.2}")),
                bare_ratio: bare_memory_ratio(exporter_kib, bare_kib),
                blackbox: bb_cell(bb_kib.map(|v| format!("{v:.2}"))),
                ratio: ratio(Some(exporter_kib), bb_kib),
            },
            Row {
                measure: "RSS peak (VmHWM) at window end / after final scrapes, MiB",
                exporter: Cell::Value(format!(
                    "{:.1} / {:.1}",
                    self.exporter.rss_peak_window_mib, self.exporter.rss_peak_mib
                )),
                bare: bare_memory(bare.map(|b| b.resources.rss_peak_mib), |v| {
                    format!("{v:.1}")
                }),
                bare_ratio: none(),
                blackbox: bb_cell(bb.map(|b| {
                    format!(
                        "{:.1} / {:.1}",
                        b.resources.rss_peak_window_mib, b.resources.rss_peak_mib
                    )
                })),
                ratio: ratio(
                    Some(self.exporter.rss_peak_mib),
                    bb.map(|b| b.resources.rss_peak_mib),
                ),
            },
            Row {
                measure: "exporter: start-up peak ÷ steady RSS; RSS after the final plain scrape ÷ steady",
                exporter: cell(self.exporter_rss_after_plain_mib.map(|after| {
                    format!(
                        "{:.2}; {:.2} ({after:.1} MiB)",
                        self.exporter.rss_peak_window_mib / steady,
                        after / steady
                    )
                })),
                bare: none(),
                bare_ratio: none(),
                blackbox: none(),
                ratio: none(),
            },
            Row {
                measure: "cycle lateness p50 / p99 / max (target's view; blackbox: driver pacing)",
                exporter: cell(q3(self.exporter_traffic.lateness_ms, "ms")),
                bare: bare_cell(bare.and_then(|b| q3(b.traffic.lateness_ms, "ms"))),
                bare_ratio: none(),
                blackbox: bb_cell(bb.and_then(|b| q3(b.traffic.lateness_ms, "ms"))),
                ratio: none(),
            },
            Row {
                measure: "new TCP connections per 1 000 token requests",
                exporter: cell(
                    self.exporter_traffic
                        .token_connections_per_1000()
                        .map(|v| format!("{v:.1}")),
                ),
                bare: bare_cell(
                    bare.and_then(|b| b.traffic.token_connections_per_1000())
                        .map(|v| format!("{v:.1}")),
                ),
                bare_ratio: none(),
                blackbox: bb_cell(
                    bb.and_then(|b| b.traffic.token_connections_per_1000())
                        .map(|v| format!("{v:.1}")),
                ),
                ratio: none(),
            },
            Row {
                measure: "new TCP connections per 1 000 canary requests",
                exporter: cell(
                    self.exporter_traffic
                        .api_connections_per_1000()
                        .map(|v| format!("{v:.1}")),
                ),
                bare: bare_cell(
                    bare.and_then(|b| b.traffic.api_connections_per_1000())
                        .map(|v| format!("{v:.1}")),
                ),
                bare_ratio: none(),
                blackbox: bb_cell(
                    bb.and_then(|b| b.traffic.api_connections_per_1000())
                        .map(|v| format!("{v:.1}")),
                ),
                ratio: none(),
            },
        ];
        // Rows only the exporter (and for one, blackbox) has.
        let exporter_only = |measure: &'static str, exporter: Cell, blackbox: Cell| Row {
            measure,
            exporter,
            bare: none(),
            bare_ratio: none(),
            blackbox,
            ratio: none(),
        };
        rows.extend([
            exporter_only(
                "token latency: reported minus target handling, p50 / p99 per provider",
                cell(q2(self.fidelity.token_overhead_ms, "ms")),
                Cell::NotApplicable("not reported (token step hidden)"),
            ),
            exporter_only(
                "canary latency: reported minus target handling, p50 / p99 per provider",
                cell(q2(self.fidelity.canary_overhead_ms, "ms")),
                Cell::NotApplicable("only probe total"),
            ),
            exporter_only(
                "probe duration as reported, p50 / p99 (blackbox probe_duration_seconds)",
                Cell::NotApplicable("see rows above"),
                bb_cell(bb.and_then(|b| q2(b.probe_duration_ms, "ms"))),
            ),
            exporter_only(
                "target's own token handling time, p50 / p99",
                cell(q2(self.fidelity.target_token_handling_ms, "ms")),
                Cell::NotApplicable(""),
            ),
            exporter_only(
                "/metrics gzip scrapes during run: TTFB p50 / p99 / max",
                cell(q3(self.scrape.gzip_ttfb_ms, "ms")),
                Cell::NotApplicable("no per-provider page"),
            ),
            exporter_only(
                "/metrics gzip scrapes during run: total p50 / p99 / max",
                cell(q3(self.scrape.gzip_total_ms, "ms")),
                Cell::NotApplicable(""),
            ),
            exporter_only(
                "/metrics plain after run: TTFB / total",
                cell(
                    self.scrape
                        .plain_ttfb_ms
                        .zip(self.scrape.plain_total_ms)
                        .map(|(a, b)| format!("{a:.1} / {b:.1} ms")),
                ),
                Cell::NotApplicable(""),
            ),
            exporter_only(
                "/metrics size plain / gzip",
                cell(
                    (self.scrape.plain_bytes > 0 && self.scrape.gzip_bytes > 0).then(|| {
                        format!(
                            "{:.2} MiB / {:.2} MiB",
                            self.scrape.plain_bytes as f64 / 1048576.0,
                            self.scrape.gzip_bytes as f64 / 1048576.0
                        )
                    }),
                ),
                Cell::NotApplicable(""),
            ),
            exporter_only(
                "exporter CPU per gzip scrape (median)",
                cell(self.scrape.cpu_per_scrape_ms.map(|v| format!("{v:.0} ms"))),
                Cell::NotApplicable(""),
            ),
            exporter_only(
                "machine: all cores busy in window / of which other processes",
                Cell::Value(format!(
                    "{:.0} % / {:.0} % of {} cores",
                    self.machine.busy_pct, self.machine.others_pct, self.machine.nproc
                )),
                Cell::NotApplicable("same machine"),
            ),
        ]);
        rows
    }

    /// Cells that should hold a value and do not.
    pub fn missing(&self) -> Vec<String> {
        let mut missing = Vec::new();
        for row in self.rows() {
            for (side, c) in [
                ("exporter", &row.exporter),
                ("bare", &row.bare),
                ("exporter ÷ bare", &row.bare_ratio),
                ("blackbox", &row.blackbox),
                ("ratio", &row.ratio),
            ] {
                if *c == Cell::Missing {
                    missing.push(format!("{side}: {}", row.measure));
                }
            }
        }
        missing
    }

    /// Reasons the run is not a valid measurement.
    pub fn problems(&self) -> Vec<String> {
        if self.fault != "none" {
            return self.fault_problems();
        }
        let mut problems = self.missing();
        if self.providers_ok != self.providers {
            problems.push(format!(
                "only {} of {} providers' last cycle succeeded",
                self.providers_ok, self.providers
            ));
        }
        if self.providers_seen != self.providers {
            problems.push(format!(
                "the target saw token and canary requests from {} of {} providers",
                self.providers_seen, self.providers
            ));
        }
        if self.refused_by_target > 0 {
            problems.push(format!(
                "the target refused {} requests (request budget exhausted)",
                self.refused_by_target
            ));
        }
        if self.exporter_traffic.rejected > 0 {
            problems.push(format!(
                "the target rejected {} exporter requests",
                self.exporter_traffic.rejected
            ));
        }
        if let Some(b) = &self.bare {
            if b.failures > 0 {
                problems.push(format!("{} bare client cycles failed", b.failures));
            }
            if b.providers_seen != self.providers {
                problems.push(format!(
                    "the target saw token and canary requests from {} of {} providers on the bare lane",
                    b.providers_seen, self.providers
                ));
            }
        }
        if let Some(b) = &self.blackbox {
            if b.probes_failed > 0 {
                problems.push(format!(
                    "{} of {} blackbox probes failed: {:?}",
                    b.probes_failed, b.probes_sent, b.errors
                ));
            }
        }
        problems
    }

    /// Under a fault every probe fails by design; what must hold instead: no failure blamed on
    /// the connection (`connect`: the exporter ran out of descriptors), no scrape over a second.
    fn fault_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(connects) = self.exporter_token_failures.get("connect")
            && *connects > 0.0
        {
            problems.push(format!("{connects} token failures reported as connect"));
        }
        if self.scrape_max_ms.is_some_and(|ms| ms >= 1000.0) {
            problems.push(format!(
                "a scrape took {:.0} ms",
                self.scrape_max_ms.unwrap_or_default()
            ));
        }
        if let Some(recovery) = &self.recovery
            && recovery.all_recovered_s.is_none()
        {
            problems.push(format!(
                "only {} of {} providers recovered within {:.0} s of the fault's end",
                recovery.providers_recovered, self.providers, recovery.bound_s
            ));
        }
        problems
    }

    /// The report as Markdown: a heading line, the table, and what blackbox answered.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "N = {} providers, interval {} s, run {} s (window {:.1} s after a warm-up of one interval), exporter {}",
            self.providers, self.interval_s, self.duration_s, self.window_s, self.exporter_revision
        );
        let _ = writeln!(
            out,
            "fault: {}; exporter descriptor limit {}; peak descriptors: exporter {}, blackbox {}; slowest scrape {}; exporter token failures by reason: {}",
            self.fault,
            self.exporter_nofile
                .map_or_else(|| "inherited".to_string(), |n| n.to_string()),
            self.exporter_peak_fds,
            self.blackbox_peak_fds
                .map_or_else(|| "-".to_string(), |n| n.to_string()),
            self.scrape_max_ms
                .map_or_else(|| "-".to_string(), |ms| format!("{ms:.0} ms")),
            if self.exporter_token_failures.is_empty() {
                "none".to_string()
            } else {
                self.exporter_token_failures
                    .iter()
                    .map(|(reason, n)| format!("{reason} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
        if let Some(r) = &self.recovery {
            let _ = writeln!(
                out,
                "recovery after the fault: {} of {} providers succeeding {}; slowest plain scrape meanwhile {:.0} ms ({} scrapes)",
                r.providers_recovered,
                self.providers,
                r.all_recovered_s.map_or_else(
                    || format!("(not all within {:.0} s)", r.bound_s),
                    |s| format!("{s:.1} s after the heal")
                ),
                r.scrape_max_ms,
                r.scrapes
            );
        }
        if let Some(path) = &self.exporter_log {
            let _ = writeln!(out, "exporter log: {path}");
        }
        match &self.blackbox {
            Some(b) => {
                let _ = writeln!(out, "blackbox: {}", b.version);
            }
            None => {
                let _ = writeln!(
                    out,
                    "blackbox: not run ({})",
                    self.blackbox_skipped.as_deref().unwrap_or("off")
                );
            }
        }
        let _ = writeln!(
            out,
            "load average before / after: {} / {}; target CPU {}; driver CPU {:.1} % of one core\n",
            self.machine.load_before,
            self.machine.load_after,
            self.machine
                .target_cpu_share_pct
                .map(|v| format!("{v:.1} % of one core"))
                .unwrap_or_else(|| "in the driver's process".into()),
            self.machine.driver_cpu_share_pct
        );
        out.push_str(
            "| measure | oauth2-exporter | bare reqwest client | exporter ÷ bare | blackbox_exporter | exporter ÷ blackbox |\n",
        );
        out.push_str("|---|---|---|---|---|---|\n");
        for row in self.rows() {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                row.measure,
                row.exporter.show(),
                row.bare.show(),
                row.bare_ratio.show(),
                row.blackbox.show(),
                row.ratio.show()
            );
        }
        if let Some(b) = &self.blackbox {
            out.push_str("\nWhat blackbox answers on /probe (non-comment lines):\n");
            for (case, lines) in &b.views {
                let _ = writeln!(out, "- {case}: `{}`", lines.join("`, `"));
            }
        }
        let problems = self.problems();
        if !problems.is_empty() {
            out.push_str("\nPROBLEMS (the run is not a valid measurement):\n");
            for problem in problems {
                let _ = writeln!(out, "- {problem}");
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// The run.

/// The target's lanes: the exporter's, the bare client's, and blackbox's when it runs.
const BARE_LANE: usize = 1;
const BLACKBOX_LANE: usize = 2;

struct Snapshot {
    at: Instant,
    unix_ns: u64,
    exporter: ProcSample,
    blackbox: Option<ProcSample>,
    target: Option<ProcSample>,
    /// In a thread of the driver (the smoke test), its CPU is also the driver's.
    bare: Option<ProcSample>,
    driver: ProcSample,
    system: (u64, u64),
}

fn snapshot(
    ticks: u64,
    exporter: u32,
    blackbox: Option<u32>,
    target: Option<u32>,
    bare: Sampled,
) -> Snapshot {
    Snapshot {
        bare: bare.sample(ticks),
        at: Instant::now(),
        unix_ns: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
        exporter: proc_sample(Some(exporter), ticks).unwrap_or_default(),
        blackbox: blackbox.and_then(|pid| proc_sample(Some(pid), ticks)),
        target: target.and_then(|pid| proc_sample(Some(pid), ticks)),
        driver: proc_sample(None, ticks).unwrap_or_default(),
        system: system_jiffies().unwrap_or_default(),
    }
}

/// One 1 s sample of every measured process.
#[derive(Clone)]
struct MemorySample {
    at: Instant,
    exporter: ProcSample,
    blackbox: Option<ProcSample>,
    bare: Option<ProcSample>,
}

fn share_pct(cpu: Duration, wall: Duration) -> f64 {
    cpu.as_secs_f64() * 100.0 / wall.as_secs_f64().max(1e-9)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn say(setup: &Setup, text: impl AsRef<str>) {
    if setup.verbose {
        eprintln!("bench: {}", text.as_ref());
    }
}

/// Ends the target's fault and reads the exporter's plain `/metrics` every 5 s until every
/// provider's last cycle succeeded, for at most one interval plus two timeouts plus 10 s (a cycle
/// started during the fault ends by its timeout; the next one, within an interval, succeeds).
async fn measure_recovery(
    control: SocketAddr,
    exporter: SocketAddr,
    scenario: &Scenario,
) -> anyhow::Result<Recovery> {
    let healed = http_get(control, "/heal", false, Duration::from_secs(30)).await?;
    if healed.status != 200 {
        bail!("the target answered {} to /heal", healed.status);
    }
    let started = Instant::now();
    let bound = scenario.interval + Duration::from_secs(30);
    let mut recovery = Recovery {
        bound_s: bound.as_secs_f64(),
        ..Recovery::default()
    };
    loop {
        let answer = http_get(exporter, "/metrics", false, Duration::from_secs(30)).await?;
        recovery.scrapes += 1;
        recovery.scrape_max_ms = recovery.scrape_max_ms.max(answer.total.as_secs_f64() * 1e3);
        let text = String::from_utf8_lossy(&answer.body);
        recovery.providers_recovered = parse_exposition(&text, scenario.providers)
            .iter()
            .filter(|e| e.success == Some(1.0))
            .count();
        if recovery.providers_recovered == scenario.providers {
            recovery.all_recovered_s = Some(started.elapsed().as_secs_f64());
            return Ok(recovery);
        }
        if started.elapsed() >= bound {
            return Ok(recovery);
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Runs one scenario end to end. Every process it started is stopped when it returns.
pub async fn run(scenario: &Scenario, setup: &Setup) -> anyhow::Result<Report> {
    if scenario.duration < scenario.interval * 2 {
        bail!("the run must last at least two intervals");
    }
    let ticks = clock_ticks_per_second();
    let work = tempfile::tempdir()?;
    let rounds =
        (scenario.duration.as_secs_f64() / scenario.interval.as_secs_f64()).ceil() as u64 + 1;
    let per_client = scenario.providers as u64 * rounds;
    let blackbox_on = matches!(setup.blackbox, Blackbox::Binary(_));
    // Lane 0 is the exporter's, 1 the bare client's, 2 blackbox's (when it runs).
    let lanes: Vec<String> = if blackbox_on {
        vec!["exporter".into(), "bare".into(), "blackbox".into()]
    } else {
        vec!["exporter".into(), "bare".into()]
    };
    let target_options = target::Options {
        providers: scenario.providers,
        lanes: lanes.clone(),
        token_lifetime: 3600,
        fault: scenario.fault,
        // Token + canary per cycle per client, with room for retries and the extra probes.
        max_requests: per_client * 2 * lanes.len() as u64 * 2 + 1000,
    };
    say(
        setup,
        format!(
            "starting the load target ({} providers)",
            scenario.providers
        ),
    );
    let (target_handle, bound) = start_target(&setup.target, &target_options)?;
    let exporter_lane = bound.lanes[0].clone();

    // blackbox first: its start-up (parsing one module per provider) must not eat into the
    // exporter's first interval.
    let mut blackbox_proc = None;
    let mut blackbox_addr = None;
    let mut blackbox_version = String::new();
    if let (Blackbox::Binary(program), Some(lane)) =
        (&setup.blackbox, bound.lanes.get(BLACKBOX_LANE))
    {
        let closed_port = free_port()?;
        let config_path = work.path().join("blackbox.yml");
        write_private(
            &config_path,
            &blackbox_config(scenario.providers, lane, closed_port),
        )?;
        blackbox_version = Command::new(program)
            .arg("--version")
            .output()
            .map(|out| {
                let text = [out.stdout, out.stderr].concat();
                String::from_utf8_lossy(&text)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .unwrap_or_default();
        let port = free_port()?;
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let mut command = Command::new(program);
        command
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null());
        say(setup, format!("starting blackbox on {addr}"));
        let mut proc = Proc::spawn("blackbox_exporter", command, None, |_| {})?;
        if let Err(error) = wait_for_status(addr, "/-/healthy", Duration::from_secs(120)).await {
            proc.check_running()?;
            return Err(error);
        }
        blackbox_addr = Some(addr);
        blackbox_proc = Some(proc);
    }

    // The exporter.
    let config_path = work.path().join("exporter.toml");
    write_private(&config_path, &exporter_config(scenario, &exporter_lane))?;
    // prlimit sets the limit and execs: the pid stays the exporter's.
    let mut command = match scenario.exporter_nofile {
        None => Command::new(&setup.exporter),
        Some(limit) => {
            let mut command = Command::new("prlimit");
            command
                .arg(format!("--nofile={limit}:{limit}"))
                .arg("--")
                .arg(&setup.exporter);
            command
        }
    };
    command
        .arg("--config.file")
        .arg(&config_path)
        .args(["--web.listen-address", "127.0.0.1:0", "--log.level", "info"])
        .stdout(Stdio::null());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("OAUTH2_EXPORTER_") {
            command.env_remove(name);
        }
    }
    let (address_sender, address_receiver) = std::sync::mpsc::channel::<String>();
    let address_sender = Mutex::new(Some(address_sender));
    let warnings = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let warning_counter = Arc::clone(&warnings);
    // Under a fault, every line of the exporter's log is kept next to the binary (under target/),
    // so that each reported reason can be traced to the failures that produced it.
    let exporter_log = (scenario.fault != target::Fault::None).then(|| {
        let dir = setup
            .exporter
            .parent()
            .map_or_else(|| PathBuf::from("bench-logs"), |dir| dir.join("bench-logs"));
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        dir.join(format!(
            "exporter-{}-{}-{stamp}.log",
            scenario.fault.as_str(),
            scenario.providers
        ))
    });
    if let Some(path) = &exporter_log {
        say(setup, format!("the exporter's log: {}", path.display()));
    }
    say(setup, "starting the exporter");
    let mut exporter_proc = Proc::spawn(
        "oauth2-exporter",
        command,
        exporter_log.as_deref(),
        move |line| {
            if line.contains("msg=listening")
                && let Some(address) = line
                    .split_whitespace()
                    .find_map(|field| field.strip_prefix("address="))
                && let Ok(mut sender) = address_sender.lock()
                && let Some(sender) = sender.take()
            {
                let _ = sender.send(address.to_string());
            }
            if line.contains("level=warn") || line.contains("level=error") {
                warning_counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        },
    )?;
    let exporter_addr: SocketAddr = match address_receiver.recv_timeout(Duration::from_secs(120)) {
        Ok(address) => address.parse()?,
        Err(_) => {
            exporter_proc.check_running()?;
            bail!(
                "the exporter did not log its address:\n{}",
                exporter_proc.tail()
            );
        }
    };
    wait_for_status(exporter_addr, "/-/ready", Duration::from_secs(120)).await?;
    // The bare client starts as the exporter is ready: both lanes' first cycles are spread over
    // the same first interval, the warm-up before the window.
    say(setup, "starting the bare client lane");
    let bare_handle = start_bare(
        &setup.bare,
        bare::Options {
            token: bound.lanes[BARE_LANE].token,
            api: bound.lanes[BARE_LANE].api,
            providers: scenario.providers,
            interval: scenario.interval,
        },
    )?;
    let bare_source = bare_handle.source();
    let exporter_pid = exporter_proc.pid();
    let blackbox_pid = blackbox_proc.as_ref().map(Proc::pid);
    let target_pid = target_handle.pid();
    let revision = Command::new(&setup.exporter)
        .arg("--version")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .unwrap_or_default();

    // t0: probing has started.
    let load_before = load_average();
    let t0 = tokio::time::Instant::now();
    let window_start = t0 + scenario.interval;
    let end = t0 + scenario.duration;
    say(
        setup,
        format!(
            "exporter ready on {exporter_addr}; measuring for {:?}",
            scenario.duration
        ),
    );

    let stop = CancellationToken::new();
    // 1 s samples of memory.
    let samples: Arc<Mutex<Vec<MemorySample>>> = Arc::default();
    let sampler = {
        let samples = Arc::clone(&samples);
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let exporter = proc_sample(Some(exporter_pid), ticks).unwrap_or_default();
                let blackbox = blackbox_pid.and_then(|pid| proc_sample(Some(pid), ticks));
                let bare = bare_source.sample(ticks);
                if let Ok(mut samples) = samples.lock() {
                    samples.push(MemorySample {
                        at: Instant::now(),
                        exporter,
                        blackbox,
                        bare,
                    });
                }
            }
        })
    };
    // Scrapes every `scrape_every`, gzip, as Prometheus would.
    let scraper = {
        let stop = stop.clone();
        let every = scenario.scrape_every;
        let limit = scrape_limit(scenario.providers);
        tokio::spawn(async move {
            let mut scrapes: Vec<(Instant, Instant, anyhow::Result<ScrapeSample>)> = Vec::new();
            let mut next = t0 + every;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep_until(next) => {}
                }
                let started = Instant::now();
                let result = measured_scrape(exporter_addr, exporter_pid, ticks, true, limit)
                    .await
                    .map(|(sample, _)| sample);
                scrapes.push((started, Instant::now(), result));
                next += every;
            }
            scrapes
        })
    };
    let driver = blackbox_addr.map(|addr| {
        let lane = bound.lanes[BLACKBOX_LANE].clone();
        let providers = scenario.providers;
        let interval = scenario.interval;
        tokio::spawn(drive_blackbox(
            addr, lane, providers, interval, t0, end, per_client, 512,
        ))
    });

    // The window.
    let mut watch = tokio::time::interval(Duration::from_secs(1));
    while tokio::time::Instant::now() < window_start {
        watch.tick().await;
        exporter_proc.check_running()?;
    }
    let w0 = snapshot(ticks, exporter_pid, blackbox_pid, target_pid, bare_source);
    say(setup, "warm-up done; window starts");
    while tokio::time::Instant::now() < end {
        tokio::select! {
            _ = watch.tick() => {}
            _ = tokio::time::sleep_until(end) => {}
        }
        exporter_proc.check_running()?;
        if let Some(proc) = blackbox_proc.as_mut() {
            proc.check_running()?;
        }
    }
    let w1 = snapshot(ticks, exporter_pid, blackbox_pid, target_pid, bare_source);
    let load_after = load_average();
    say(setup, "window over; final scrapes");
    stop.cancel();
    let _ = sampler.await;
    let scrapes = scraper.await.unwrap_or_default();
    let drive = match driver {
        Some(task) => Some(task.await.unwrap_or_default()),
        None => None,
    };

    // Final scrapes: plain (parsed for fidelity and success) and gzip (size).
    let limit = scrape_limit(scenario.providers);
    let (plain, plain_body) =
        measured_scrape(exporter_addr, exporter_pid, ticks, false, limit).await?;
    // What the plain scrape left resident (issue 15: it streams, so next to nothing).
    let rss_after_plain = proc_sample(Some(exporter_pid), ticks).map(|s| mib(s.rss_kib));
    let (gzip, _) = measured_scrape(exporter_addr, exporter_pid, ticks, true, limit).await?;
    let end_exporter = proc_sample(Some(exporter_pid), ticks).unwrap_or_default();
    let end_blackbox = blackbox_pid.and_then(|pid| proc_sample(Some(pid), ticks));
    let end_bare = bare_source.sample(ticks);
    let text = String::from_utf8_lossy(&plain_body);
    let exported = parse_exposition(&text, scenario.providers);

    let (counters, refused) = target_counters(bound.control).await?;
    let records_answer =
        http_get(bound.control, "/records", false, Duration::from_secs(120)).await?;
    let records = parse_records(&String::from_utf8_lossy(&records_answer.body));

    // What blackbox reports, for a good probe and two failures.
    let mut views = Vec::new();
    if let Some(addr) = blackbox_addr {
        let lane = &bound.lanes[BLACKBOX_LANE];
        for (case, module) in [
            ("good credentials", "p0"),
            (
                "rejected secret (token endpoint answers 401 invalid_client)",
                "bad_secret",
            ),
            ("token endpoint refuses connections", "token_down"),
        ] {
            let query = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("module", module)
                .append_pair("target", &lane.api_url(0))
                .finish();
            let lines = match http_get(
                addr,
                &format!("/probe?{query}"),
                false,
                Duration::from_secs(30),
            )
            .await
            {
                Ok(answer) => String::from_utf8_lossy(&answer.body)
                    .lines()
                    .filter(|line| !line.starts_with('#'))
                    .filter(|line| !line.starts_with("probe_http_duration_seconds"))
                    .map(str::to_string)
                    .collect(),
                Err(error) => vec![format!("error: {error}")],
            };
            views.push((case.to_string(), lines));
        }
    }

    // Recovery (faults only), after everything above has been read from the faulty state.
    let recovery = if scenario.fault == target::Fault::None {
        None
    } else {
        say(
            setup,
            "fault over (target healed); waiting for every provider to recover",
        );
        Some(measure_recovery(bound.control, exporter_addr, scenario).await?)
    };

    // Analysis.
    let window = w1.at - w0.at;
    let unix_to_target = |unix: u64| unix.saturating_sub(bound.started_unix_ns);
    let (win_lo, win_hi) = (unix_to_target(w0.unix_ns), unix_to_target(w1.unix_ns));
    let traffic = |lane: usize| {
        let lane_counters = counters.get(lane).cloned().unwrap_or_default();
        let late = lateness_ms(&records, lane, scenario.providers, scenario.interval);
        Traffic {
            cycles_in_window: records
                .iter()
                .filter(|r| r.lane == lane && r.token && (win_lo..win_hi).contains(&r.arrival_ns))
                .count() as u64,
            token_requests: lane_counters.token_requests,
            canary_requests: lane_counters.api_requests,
            token_connections: lane_counters.token_connections,
            api_connections: lane_counters.api_connections,
            rejected: lane_counters.rejected,
            lateness_ms: quantiles(&late),
        }
    };
    let all_samples = samples.lock().map(|s| s.clone()).unwrap_or_default();
    let in_window: Vec<_> = all_samples
        .iter()
        .filter(|sample| sample.at >= w0.at && sample.at <= w1.at)
        .collect();
    let resources = |a: ProcSample, b: ProcSample, end: ProcSample, steady: Vec<f64>| Resources {
        startup_cpu_s: a.cpu.as_secs_f64(),
        window_cpu_s: b.cpu.saturating_sub(a.cpu).as_secs_f64(),
        cpu_share_pct: share_pct(b.cpu.saturating_sub(a.cpu), window),
        rss_steady_mib: median(&steady).unwrap_or(mib(b.rss_kib)),
        rss_peak_window_mib: mib(b.hwm_kib),
        rss_peak_mib: mib(end.hwm_kib.max(b.hwm_kib)),
    };
    let exporter = resources(
        w0.exporter,
        w1.exporter,
        end_exporter,
        in_window.iter().map(|s| mib(s.exporter.rss_kib)).collect(),
    );

    let mut scrape = ScrapeStats {
        plain_ttfb_ms: Some(plain.ttfb.as_secs_f64() * 1e3),
        plain_total_ms: Some(plain.total.as_secs_f64() * 1e3),
        plain_bytes: plain.bytes,
        gzip_bytes: gzip.bytes,
        ..Default::default()
    };
    let mut gzip_ttfb = Vec::new();
    let mut gzip_total = Vec::new();
    let mut scrape_cpu = Vec::new();
    for (started, ended, result) in &scrapes {
        match result {
            Ok(sample) => {
                let mut sample = sample.clone();
                sample.in_window = *started >= w0.at && *ended <= w1.at;
                gzip_ttfb.push(sample.ttfb.as_secs_f64() * 1e3);
                gzip_total.push(sample.total.as_secs_f64() * 1e3);
                scrape_cpu.push(sample.cpu.as_secs_f64() * 1e3);
                if sample.in_window {
                    scrape.window_scrape_cpu_s += sample.cpu.as_secs_f64();
                }
            }
            Err(error) => bail!("a scrape during the run failed: {error:#}"),
        }
    }
    scrape_cpu.push(gzip.cpu.as_secs_f64() * 1e3);
    scrape.during_run = scrapes.len();
    scrape.gzip_ttfb_ms = quantiles(&gzip_ttfb).or(quantiles(&[gzip.ttfb.as_secs_f64() * 1e3]));
    scrape.gzip_total_ms = quantiles(&gzip_total).or(quantiles(&[gzip.total.as_secs_f64() * 1e3]));
    scrape.cpu_per_scrape_ms = median(&scrape_cpu);

    let (token_overhead, token_handling) = fidelity_ms(&records, &exported, true);
    let (canary_overhead, _) = fidelity_ms(&records, &exported, false);
    let fidelity = Fidelity {
        providers_compared: token_overhead.len(),
        token_overhead_ms: quantiles(&token_overhead),
        canary_overhead_ms: quantiles(&canary_overhead),
        target_token_handling_ms: quantiles(&token_handling),
    };

    let providers_seen = |lane: usize| {
        let mut seen_token = vec![false; scenario.providers];
        let mut seen_api = vec![false; scenario.providers];
        for r in records.iter().filter(|r| r.lane == lane && r.status == 200) {
            if r.token {
                seen_token[r.provider] = true;
            } else {
                seen_api[r.provider] = true;
            }
        }
        seen_token
            .iter()
            .zip(&seen_api)
            .filter(|(t, a)| **t && **a)
            .count()
    };
    let bare = BareSide {
        resources: resources(
            w0.bare.unwrap_or_default(),
            w1.bare.unwrap_or_default(),
            end_bare.unwrap_or_default(),
            in_window
                .iter()
                .filter_map(|s| s.bare.map(|b| mib(b.rss_kib)))
                .collect(),
        ),
        traffic: traffic(BARE_LANE),
        failures: bare_handle.failures(),
        providers_seen: providers_seen(BARE_LANE),
        own_memory: bare_source.has_own_memory(),
    };
    let providers_ok = exported
        .iter()
        .filter(|e| e.success == Some(1.0) && e.token_requests >= 1.0)
        .count();

    let blackbox = match (drive, blackbox_pid) {
        (Some(drive), Some(_)) => Some(BlackboxSide {
            version: blackbox_version,
            resources: resources(
                w0.blackbox.unwrap_or_default(),
                w1.blackbox.unwrap_or_default(),
                end_blackbox.unwrap_or_default(),
                in_window
                    .iter()
                    .filter_map(|s| s.blackbox.map(|b| mib(b.rss_kib)))
                    .collect(),
            ),
            traffic: {
                let mut t = traffic(BLACKBOX_LANE);
                // The blackbox lane's pacing is the driver's: keep the target's view, which
                // includes blackbox's own delay before it sends the token request.
                if t.lateness_ms.is_none() {
                    t.lateness_ms = quantiles(&drive.driver_late_ms);
                }
                t
            },
            probes_sent: drive.sent,
            probes_succeeded: drive.succeeded,
            probes_failed: drive.failed,
            probe_duration_ms: quantiles(&drive.durations_ms),
            errors: drive.errors,
            views,
        }),
        _ => None,
    };

    let ours = |s: &Snapshot| {
        let bare = match bare_source {
            Sampled::Process(_) => s.bare.unwrap_or_default().cpu,
            Sampled::Thread(_) => Duration::ZERO, // counted in the driver's
        };
        s.exporter.cpu
            + s.blackbox.unwrap_or_default().cpu
            + s.target.unwrap_or_default().cpu
            + bare
            + s.driver.cpu
    };
    let (busy, total) = (
        w1.system.0.saturating_sub(w0.system.0),
        w1.system.1.saturating_sub(w0.system.1),
    );
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let busy_pct = busy as f64 * 100.0 / total.max(1) as f64;
    let ours_pct = share_pct(ours(&w1).saturating_sub(ours(&w0)), window) / nproc as f64;
    let machine = Machine {
        nproc,
        load_before,
        load_after,
        busy_pct,
        others_pct: (busy_pct - ours_pct).max(0.0),
        target_cpu_share_pct: w0
            .target
            .zip(w1.target)
            .map(|(a, b)| share_pct(b.cpu.saturating_sub(a.cpu), window)),
        driver_cpu_share_pct: share_pct(w1.driver.cpu.saturating_sub(w0.driver.cpu), window),
    };

    let exporter_peak_fds = all_samples
        .iter()
        .map(|s| s.exporter.fds)
        .max()
        .unwrap_or(0);
    let blackbox_peak_fds = all_samples
        .iter()
        .filter_map(|s| s.blackbox.map(|b| b.fds))
        .max();
    let mut exporter_token_failures = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("oauth2_token_request_failures_total{")
            && let Some((labels, value)) = rest.rsplit_once("} ")
            && let Some(reason) = labels
                .split(',')
                .find_map(|l| l.strip_prefix("reason=\""))
                .and_then(|r| r.strip_suffix('"'))
            && let Ok(value) = value.parse::<f64>()
        {
            *exporter_token_failures
                .entry(reason.to_string())
                .or_insert(0.0) += value;
        }
    }
    let report = Report {
        providers: scenario.providers,
        fault: scenario.fault.as_str().to_string(),
        exporter_nofile: scenario.exporter_nofile,
        exporter_peak_fds,
        blackbox_peak_fds,
        exporter_token_failures,
        scrape_max_ms: gzip_total
            .iter()
            .copied()
            .chain([gzip.total.as_secs_f64() * 1e3])
            .reduce(f64::max),
        interval_s: scenario.interval.as_secs_f64(),
        duration_s: scenario.duration.as_secs_f64(),
        window_s: window.as_secs_f64(),
        exporter_revision: revision,
        exporter,
        exporter_traffic: traffic(0),
        providers_ok,
        providers_seen: providers_seen(0),
        exporter_warnings: warnings.load(std::sync::atomic::Ordering::Relaxed),
        scrape,
        fidelity,
        exporter_rss_after_plain_mib: rss_after_plain,
        bare: Some(bare),
        blackbox,
        blackbox_skipped: match &setup.blackbox {
            Blackbox::Off { why } => Some(why.clone()),
            Blackbox::Binary(_) => None,
        },
        machine,
        refused_by_target: refused,
        exporter_log: exporter_log.map(|path| path.display().to_string()),
        recovery,
    };
    drop(bare_handle);
    drop(exporter_proc);
    drop(blackbox_proc);
    drop(target_handle);
    Ok(report)
}
