//! A real stalled mount for tests/it/unreadable_files.rs: a FUSE file system served by the test
//! process (through `fuser`, no libfuse) whose one regular file, `secret`, answers lookups,
//! attributes and opens at once but parks every read until [`StalledMount::release`], as a hung
//! NFS, CSI secrets-store or FUSE secret tool does.
//!
//! Reads go through the page cache (no direct I/O) and opens keep it (`FOPEN_KEEP_CACHE`): the
//! kernel then sends the read as asynchronous readahead and the reading thread waits on the page
//! killably, as on a hung NFS mount, so a process giving up on the read can still exit. (A
//! synchronous FUSE request already handed to a server that ignores interrupts, as `fuser` does,
//! holds even an exiting process in the kernel until answered: no program can help that.)
//!
//! Unmounted on drop, panics included: parked reads are answered, then `fusermount3 -u -z`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, INodeNo, LockOwner, MountOption,
    OpenFlags, ReplyAttr, ReplyData, ReplyEntry, ReplyOpen, Request,
};

use crate::support::binary::scrubbed_command;

/// The one file's inode (the root directory is 1).
const SECRET_INODE: u64 = 2;
/// Attributes are cached this long; short so nothing outlives a test.
const TTL: Duration = Duration::from_secs(1);
/// Bound on `fusermount3 -u -z`, which returns at once unless the machine is in trouble.
const UNMOUNT_LIMIT: Duration = Duration::from_secs(10);

/// Reads waiting for the release, and whether it came.
#[derive(Default)]
struct Gate {
    released: bool,
    parked: Vec<(ReplyData, u64, u32)>,
    /// Every read that reached the server, parked or answered: proves the stall was hit.
    reads: usize,
}

struct StallFs {
    contents: Vec<u8>,
    gate: Arc<Mutex<Gate>>,
}

fn attr(ino: u64, kind: FileType, size: u64) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind,
        perm: if kind == FileType::Directory {
            0o755
        } else {
            0o600
        },
        nlink: if kind == FileType::Directory { 2 } else { 1 },
        uid: 0,
        gid: 0,
        rdev: 0,
        flags: 0,
        blksize: 4096,
    }
}

impl StallFs {
    fn attr_of(&self, ino: u64) -> Option<FileAttr> {
        match ino {
            1 => Some(attr(1, FileType::Directory, 0)),
            SECRET_INODE => Some(attr(
                SECRET_INODE,
                FileType::RegularFile,
                self.contents.len() as u64,
            )),
            _ => None,
        }
    }
}

fn slice(contents: &[u8], offset: u64, size: u32) -> &[u8] {
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(contents.len());
    let end = start.saturating_add(size as usize).min(contents.len());
    &contents[start..end]
}

impl Filesystem for StallFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.attr_of(SECRET_INODE) {
            Some(found) if u64::from(parent) == 1 && name == "secret" => {
                reply.entry(&TTL, &found, fuser::Generation(0));
            }
            _ => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.attr_of(u64::from(ino)) {
            Some(found) => reply.attr(&TTL, &found),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // Keep the cache: without it every open invalidates the page a parked read holds
        // locked, which waits uninterruptibly; with it a second reader waits killably.
        reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE);
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let mut gate = self.gate.lock().unwrap_or_else(PoisonError::into_inner);
        gate.reads += 1;
        if gate.released {
            reply.data(slice(&self.contents, offset, size));
        } else {
            // Answered later, by the release: the server loop goes on serving everything else.
            gate.parked.push((reply, offset, size));
        }
    }
}

/// A mounted [`StallFs`]; see the module documentation.
pub struct StalledMount {
    dir: PathBuf,
    contents: Vec<u8>,
    gate: Arc<Mutex<Gate>>,
    session: Option<fuser::BackgroundSession>,
}

impl StalledMount {
    /// Mounts on a new directory `parent/mount` serving `contents` (once released). `Err` says
    /// why this machine cannot (no `/dev/fuse`, no `fusermount3`, mounting refused).
    pub fn mount(parent: &Path, contents: &str) -> Result<StalledMount, String> {
        if !Path::new("/dev/fuse").exists() {
            return Err("no /dev/fuse on this machine".to_string());
        }
        if crate::support::peers::find_tool("fusermount3").is_none() {
            return Err(
                "fusermount3 not on PATH (Debian's fuse3; run scripts/install-peers)".into(),
            );
        }
        let dir = parent.join("mount");
        std::fs::create_dir(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let gate = Arc::new(Mutex::new(Gate::default()));
        let fs = StallFs {
            contents: contents.as_bytes().to_vec(),
            gate: Arc::clone(&gate),
        };
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            MountOption::FSName("oauth2-exporter-stalled".to_string()),
            MountOption::RO,
            MountOption::NoDev,
            MountOption::NoSuid,
        ];
        let session = fuser::spawn_mount(fs, &dir, &config)
            .map_err(|e| format!("cannot mount a FUSE file system on {}: {e}", dir.display()))?;
        Ok(StalledMount {
            dir,
            contents: contents.as_bytes().to_vec(),
            gate,
            session: Some(session),
        })
    }

    /// The regular file whose reads stall.
    pub fn file(&self) -> PathBuf {
        self.dir.join("secret")
    }

    /// How many reads reached the server so far.
    pub fn reads(&self) -> usize {
        self.gate
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .reads
    }

    /// Answers every parked read, and every later one at once: the mount is healthy again.
    pub fn release(&self) {
        let parked = {
            let mut gate = self.gate.lock().unwrap_or_else(PoisonError::into_inner);
            gate.released = true;
            std::mem::take(&mut gate.parked)
        };
        for (reply, offset, size) in parked {
            // A read whose reader died meanwhile is answered into the void: harmless.
            reply.data(slice(&self.contents, offset, size));
        }
    }
}

impl Drop for StalledMount {
    fn drop(&mut self) {
        self.release();
        // Lazy: detached now even if some process still has the file open.
        let unmounted = scrubbed_command("fusermount3")
            .args(["-u", "-z"])
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map(|mut child| {
                let until = Instant::now() + UNMOUNT_LIMIT;
                loop {
                    match child.try_wait() {
                        Ok(Some(status)) => return status.success(),
                        Ok(None) if Instant::now() < until => {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        _ => {
                            let _ = child.kill();
                            let _ = child.wait();
                            return false;
                        }
                    }
                }
            })
            .unwrap_or(false);
        if !unmounted {
            eprintln!("warning: fusermount3 -u -z {} failed", self.dir.display());
        }
        // Its own unmount now finds nothing mounted; its server thread ends with the
        // connection and is not joined here (it is detached).
        drop(self.session.take());
    }
}
