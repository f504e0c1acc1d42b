//! Tests of the one file-reading path (issue 17): what is refused, and that a read stuck in the
//! kernel costs its caller no more than the deadline and starts no second thread.

use super::*;

/// Makes a named pipe at `path` with `mkfifo` (no `unsafe` here for `libc::mkfifo`). The child
/// gets no environment but `PATH`: nothing of the test's, proxies included, reaches it.
pub(crate) fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo {}: {status}", path.display());
}

#[test]
fn a_named_pipe_without_a_writer_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("secret");
    mkfifo(&fifo);
    let started = Instant::now();
    let error = read(&fifo, 1024, Duration::from_secs(30)).unwrap_err();
    assert_eq!(error, ReadError::NotRegular("named pipe"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        error.to_string(),
        "not a regular file (named pipe); name a regular file or a symlink to one"
    );
}

#[test]
fn directories_devices_and_sockets_are_named_for_what_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let limit = Duration::from_secs(30);
    assert_eq!(
        read(dir.path(), 1024, limit),
        Err(ReadError::NotRegular("directory"))
    );
    assert_eq!(
        read(Path::new("/dev/null"), 1024, limit),
        Err(ReadError::NotRegular("character device"))
    );
    let socket = dir.path().join("socket");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    assert_eq!(
        read(&socket, 1024, limit),
        Err(ReadError::NotRegular("socket"))
    );
    assert_eq!(
        read(&dir.path().join("missing"), 1024, limit),
        Err(ReadError::Io(std::io::ErrorKind::NotFound))
    );
}

#[test]
fn regular_files_are_read_whole_and_capped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("file");
    std::fs::write(&path, "12345").unwrap();
    let limit = Duration::from_secs(30);
    assert_eq!(read(&path, 5, limit).unwrap(), b"12345");
    assert_eq!(read(&path, 4, limit), Err(ReadError::TooLarge(4)));
}

/// Kubernetes mounts a secret as `dir/secret -> ..data/secret`, `..data -> ..2026_11_29_...`,
/// and rotates it by swapping the `..data` link: symlinks are followed, and the next read sees
/// the new value.
#[tokio::test]
async fn kubernetes_data_links_are_followed_across_a_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("..2026_11_29_01");
    let second = dir.path().join("..2026_11_29_02");
    std::fs::create_dir(&first).unwrap();
    std::fs::create_dir(&second).unwrap();
    std::fs::write(first.join("secret"), "one").unwrap();
    std::fs::write(second.join("secret"), "two").unwrap();
    std::os::unix::fs::symlink("..2026_11_29_01", dir.path().join("..data")).unwrap();
    let secret = dir.path().join("secret");
    std::os::unix::fs::symlink("..data/secret", &secret).unwrap();
    let limit = Duration::from_secs(30);
    assert_eq!(read_async(&secret, 64, limit).await.unwrap(), b"one");
    // Swapped as the kubelet does: a new link renamed over the old one.
    std::os::unix::fs::symlink("..2026_11_29_02", dir.path().join("..data_tmp")).unwrap();
    std::fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).unwrap();
    assert_eq!(read_async(&secret, 64, limit).await.unwrap(), b"two");
}

/// The paths [`stuck_in_open`] was entered for (tests run in parallel: each counts its own).
static STUCK_READS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn stuck_reads_of(path: &Path) -> usize {
    let entered = STUCK_READS.lock().unwrap_or_else(PoisonError::into_inner);
    entered.iter().filter(|p| *p == path).count()
}

/// A stand-in for a file on a hung mount: a *blocking* open of a named pipe sits in the kernel
/// until a writer comes, exactly as an open on a dead NFS server does. (The real reader opens
/// with O_NONBLOCK and refuses pipes; this seam is the honest way to get a thread stuck in
/// `open()` without root and FUSE.)
fn stuck_in_open(path: &Path, _limit: u64) -> Result<Vec<u8>, ReadError> {
    STUCK_READS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(path.to_path_buf());
    let _ = std::fs::File::open(path);
    Err(ReadError::Io(std::io::ErrorKind::Interrupted))
}

/// Lets a thread stuck in [`stuck_in_open`] go: a writer arriving completes its open.
fn release(fifo: &Path) {
    let _writer = std::fs::OpenOptions::new().write(true).open(fifo);
}

#[test]
fn a_stalled_read_times_out_and_later_callers_join_it_instead_of_adding_threads() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("hung");
    mkfifo(&fifo);
    let deadline = Duration::from_millis(200);
    let started = Instant::now();
    let flight = take_off(&fifo, 64, stuck_in_open).unwrap();
    assert_eq!(
        flight.wait_blocking(deadline),
        Err(ReadError::TimedOut(deadline))
    );
    let waited = started.elapsed();
    assert!(
        waited >= deadline && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    // Three more callers while the first read is still stuck: they wait on it, no new thread.
    for _ in 0..3 {
        let again = take_off(&fifo, 64, stuck_in_open).unwrap();
        assert!(Arc::ptr_eq(&again, &flight));
        assert_eq!(
            again.wait_blocking(Duration::from_millis(20)),
            Err(ReadError::TimedOut(Duration::from_millis(20)))
        );
    }
    assert_eq!(stuck_reads_of(&fifo), 1);
    assert!(
        ReadError::TimedOut(deadline)
            .to_string()
            .starts_with("timed out reading (no answer within 200ms"),
        "{}",
        ReadError::TimedOut(deadline)
    );
    // Once the mount answers, the stuck read lands and leaves the table: the next caller reads
    // the file anew.
    release(&fifo);
    assert_eq!(
        flight.wait_blocking(Duration::from_secs(10)),
        Err(ReadError::Io(std::io::ErrorKind::Interrupted))
    );
    let fresh = take_off(&fifo, 64, read_now).unwrap();
    assert!(!Arc::ptr_eq(&fresh, &flight));
    assert_eq!(
        fresh.wait_blocking(Duration::from_secs(10)),
        Err(ReadError::NotRegular("named pipe"))
    );
}

/// During a probe the wait is async: it holds no worker (a timer on the one-thread runtime still
/// fires while the reader is stuck), and ends at the provider's deadline.
#[tokio::test(flavor = "current_thread")]
async fn an_async_wait_on_a_stalled_read_ends_at_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("hung");
    mkfifo(&fifo);
    let flight = take_off(&fifo, 64, stuck_in_open).unwrap();
    let deadline = Duration::from_millis(300);
    let ticks = tokio::spawn(async {
        let mut ticks = 0;
        while ticks < 20 {
            tokio::time::sleep(Duration::from_millis(1)).await;
            ticks += 1;
        }
        ticks
    });
    let started = Instant::now();
    assert_eq!(
        flight.wait(deadline).await,
        Err(ReadError::TimedOut(deadline))
    );
    let waited = started.elapsed();
    assert!(
        waited >= deadline && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    // The runtime's only thread went on running other tasks meanwhile.
    assert!(
        ticks.is_finished(),
        "another task starved while the read was stuck"
    );
    release(&fifo);
}
