//! The one way the exporter reads a file (configuration, web configuration, secret, password,
//! CA bundle, client certificate and key): regular files only, size-capped, off the async
//! workers, with a deadline.
//!
//! Why: a secret path that is a named pipe without a writer, or sits on a hung NFS, CSI or FUSE
//! mount, blocks `open()` or `read()` for ever. Read on the async runtime (one worker) that froze
//! the whole daemon; read during start-up it froze the process before it could act on SIGTERM.
//! Here:
//!
//! - the file is opened with `O_NONBLOCK` (a pipe without a writer then opens at once) and
//!   refused unless it is a regular file once symlinks are followed, so Kubernetes' `..data`
//!   links keep working while a pipe, socket, directory or device is named for what it is;
//! - the read runs on a plain detached thread, and the caller stops waiting at its deadline
//!   ([`ReadError::TimedOut`]). A thread stuck in the kernel cannot be cancelled, but a detached
//!   `std` thread neither blocks the runtime's shutdown nor keeps the process alive;
//! - at most one read per file is in flight: a caller arriving while one is running (or stuck)
//!   waits for that one instead of starting another, so a hung mount costs one thread per
//!   configured path however many probe cycles and reloads ask for it, never one per attempt.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// How long loading the configuration waits for one file (a configuration file, a secret
/// resolved at load, a certificate). A local file answers in microseconds; a hung mount never.
/// Short enough that start-up, `--config.check` and a reload fail with "timed out reading"
/// rather than appear to hang, long enough for a slow network filesystem.
pub const CONFIG_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a file could not be read. Never contains the file's contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("{}", describe_io(*.0))]
    Io(std::io::ErrorKind),
    #[error("not a regular file ({0}); name a regular file or a symlink to one")]
    NotRegular(&'static str),
    #[error("larger than {0} bytes")]
    TooLarge(u64),
    #[error("timed out reading (no answer within {}; a hung mount or a stalled file system?)", humantime::format_duration(*.0))]
    TimedOut(Duration),
    #[error("cannot start a thread to read it")]
    NoThread,
}

/// Reads the whole file at `path` (at most `limit` bytes), waiting at most `deadline`. Blocks the
/// calling thread: for configuration loading, which runs off the async workers.
pub fn read(path: &Path, limit: u64, deadline: Duration) -> Result<Vec<u8>, ReadError> {
    let flight = take_off(path, limit, read_now)?;
    flight.wait_blocking(deadline)
}

/// [`read`] for async code: waits without holding an async worker.
pub async fn read_async(path: &Path, limit: u64, deadline: Duration) -> Result<Vec<u8>, ReadError> {
    let flight = take_off(path, limit, read_now)?;
    flight.wait(deadline).await
}

/// An I/O failure in words a person expects ("no such file", not "entity not found").
pub fn describe_io(kind: std::io::ErrorKind) -> String {
    match kind {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        other => other.to_string(),
    }
}

/// What reads a file on the reader thread (a seam: tests put a reader that is stuck in the
/// kernel in its place).
type Reader = fn(&Path, u64) -> Result<Vec<u8>, ReadError>;

/// The read itself, on a reader thread: open without blocking, refuse what is not a regular
/// file, read at most `limit + 1` bytes.
fn read_now(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    #[cfg(test)]
    count_read(path);
    let file = match open(path) {
        Ok(file) => file,
        Err(error) => {
            // A socket cannot be opened at all (ENXIO): say what it is rather than "no such
            // device or address".
            if let Ok(metadata) = std::fs::metadata(path) {
                if !metadata.is_file() {
                    return Err(ReadError::NotRegular(type_name(&metadata.file_type())));
                }
            }
            return Err(ReadError::Io(error.kind()));
        }
    };
    let metadata = file
        .metadata()
        .map_err(|error| ReadError::Io(error.kind()))?;
    if !metadata.is_file() {
        return Err(ReadError::NotRegular(type_name(&metadata.file_type())));
    }
    if metadata.len() > limit {
        return Err(ReadError::TooLarge(limit));
    }
    let mut contents = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut contents)
        .map_err(|error| ReadError::Io(error.kind()))?;
    // A file that grew between the size check and the read is still capped.
    if contents.len() as u64 > limit {
        return Err(ReadError::TooLarge(limit));
    }
    Ok(contents)
}

fn open(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    // Without O_NONBLOCK, opening a named pipe waits for a writer, possibly for ever. On a
    // regular file the flag changes nothing.
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.custom_flags(libc::O_NONBLOCK);
    }
    options.open(path)
}

/// What a file that is not a regular file is, in the words `ls -l` and `stat` use.
fn type_name(file_type: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        if file_type.is_fifo() {
            return "named pipe";
        }
        if file_type.is_socket() {
            return "socket";
        }
        if file_type.is_char_device() {
            return "character device";
        }
        if file_type.is_block_device() {
            return "block device";
        }
    }
    if file_type.is_dir() {
        "directory"
    } else {
        "special file"
    }
}

/// A read that was started and has or has not landed; every caller asking for the same file
/// meanwhile waits on it.
#[derive(Default)]
struct Flight {
    outcome: Mutex<Option<Result<Arc<Vec<u8>>, ReadError>>>,
    /// Wakes blocking waiters.
    landed: Condvar,
    /// Wakes async waiters.
    landed_async: tokio::sync::Notify,
}

/// A file and the cap it is read with (the same file read with two caps is two reads).
type FlightKey = (PathBuf, u64);

/// The reads in flight. Process-wide on purpose: the threads they stand for are.
fn flights() -> &'static Mutex<HashMap<FlightKey, Arc<Flight>>> {
    static FLIGHTS: OnceLock<Mutex<HashMap<FlightKey, Arc<Flight>>>> = OnceLock::new();
    FLIGHTS.get_or_init(Default::default)
}

/// Joins the read of `path` in flight, or starts one on a new detached thread.
fn take_off(path: &Path, limit: u64, reader: Reader) -> Result<Arc<Flight>, ReadError> {
    let key = (path.to_path_buf(), limit);
    let mut table = flights().lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(flight) = table.get(&key) {
        return Ok(Arc::clone(flight));
    }
    let flight = Arc::new(Flight::default());
    // Registered before the thread starts, and removed by that thread under the same lock, so
    // the entry for a path is always the read running for it.
    table.insert(key.clone(), Arc::clone(&flight));
    let landing = Arc::clone(&flight);
    let thread_key = key.clone();
    let spawned = std::thread::Builder::new()
        .name("file-read".to_string())
        .spawn(move || {
            let outcome = reader(&thread_key.0, thread_key.1).map(Arc::new);
            // Out of the table first: a caller arriving after this read ended starts a fresh
            // one (a rotated secret is read anew), never reuses this outcome.
            flights()
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&thread_key);
            *landing
                .outcome
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(outcome);
            landing.landed.notify_all();
            landing.landed_async.notify_waiters();
        });
    match spawned {
        // Dropping the handle detaches the thread.
        Ok(_detached) => Ok(flight),
        Err(_) => {
            table.remove(&key);
            Err(ReadError::NoThread)
        }
    }
}

impl Flight {
    fn landed(&self) -> Option<Result<Vec<u8>, ReadError>> {
        let outcome = self.outcome.lock().unwrap_or_else(PoisonError::into_inner);
        outcome.as_ref().map(|outcome| {
            outcome
                .as_ref()
                .map(|bytes| bytes.to_vec())
                .map_err(Clone::clone)
        })
    }

    fn wait_blocking(&self, deadline: Duration) -> Result<Vec<u8>, ReadError> {
        let until = Instant::now() + deadline;
        let mut outcome = self.outcome.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(outcome) = outcome.as_ref() {
                return outcome
                    .as_ref()
                    .map(|bytes| bytes.to_vec())
                    .map_err(Clone::clone);
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ReadError::TimedOut(deadline));
            }
            outcome = self
                .landed
                .wait_timeout(outcome, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    async fn wait(&self, deadline: Duration) -> Result<Vec<u8>, ReadError> {
        let landing = async {
            loop {
                // Registered before looking, so a landing between the look and the wait is not
                // missed.
                let notified = self.landed_async.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if let Some(outcome) = self.landed() {
                    return outcome;
                }
                notified.await;
            }
        };
        tokio::time::timeout(deadline, landing)
            .await
            .unwrap_or(Err(ReadError::TimedOut(deadline)))
    }
}

/// Reads of each path so far (unit tests only): lets a test show a file is read once a cycle
/// (issue 22). Keyed by path, so tests running at once in their own directories do not mix.
#[cfg(test)]
fn reads() -> &'static Mutex<HashMap<PathBuf, usize>> {
    static READS: OnceLock<Mutex<HashMap<PathBuf, usize>>> = OnceLock::new();
    READS.get_or_init(Default::default)
}

#[cfg(test)]
fn count_read(path: &Path) {
    *reads()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(path.to_path_buf())
        .or_default() += 1;
}

/// How many times `path` has been read (unit tests only).
#[cfg(test)]
pub(crate) fn reads_of(path: &Path) -> usize {
    reads()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(path)
        .copied()
        .unwrap_or(0)
}

#[cfg(test)]
pub(crate) mod tests;
