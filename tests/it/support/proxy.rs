//! A real HTTP proxy on loopback for the proxy tests (issue 12 section 3): Debian's `squid`,
//! started with a configuration written here (basic authentication through squid's own
//! `basic_ncsa_auth` helper, an access log the tests read). Skipped (or a failure under
//! `OAUTH2_EXPORTER_REQUIRE_PEERS=1`) when squid is not installed; `scripts/install-peers`
//! installs it.
//!
//! Why squid and not tinyproxy: tinyproxy 1.11 (Debian 12) answers a wrong `BasicAuth` password
//! with `401 Unauthorized`, even to `CONNECT`, where RFC 9110 section 15.5.8 has a proxy send
//! `407 Proxy Authentication Required`; squid answers 407, which is what real corporate proxies
//! send and what the exporter's "proxy refused the credentials" detail is about.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::binary::scrubbed_command;
use super::peers::{find_tool, skip_or_fail};

/// The one user the proxy knows.
pub const PROXY_USER: &str = "probe";
/// Its password: with a `:` and a space so that its percent-encoding in `proxy_url` matters,
/// and long enough to be a distinct needle for the leak checks.
pub const PROXY_PASSWORD: &str = "proxy-Pa55:w0rd 9Zk";
/// `PROXY_PASSWORD` in the userinfo of a URL.
pub const PROXY_PASSWORD_ENCODED: &str = "proxy-Pa55%3Aw0rd%209Zk";
/// `openssl passwd -apr1 -salt Xq7pR2vZ 'proxy-Pa55:w0rd 9Zk'`: fixed, so no tool is needed to
/// write the password file.
const PROXY_PASSWORD_HASH: &str = "$apr1$Xq7pR2vZ$41NUSh7FjK6ADBhBby7Cl0";

/// How long squid may take to accept connections.
const START_LIMIT: Duration = Duration::from_secs(30);

pub struct Squid {
    child: Child,
    dir: tempfile::TempDir,
    pub addr: SocketAddr,
}

impl Squid {
    /// Starts squid on a free loopback port, requiring [`PROXY_USER`] / [`PROXY_PASSWORD`].
    /// `None` (after [`skip_or_fail`]) when squid or its helper is not installed.
    pub fn start(test: &str) -> Option<Squid> {
        let squid = find_tool("squid").or_else(|| {
            let sbin = PathBuf::from("/usr/sbin/squid");
            sbin.is_file().then_some(sbin)
        });
        let helper = Path::new("/usr/lib/squid/basic_ncsa_auth");
        let Some(squid) = squid.filter(|_| helper.is_file()) else {
            skip_or_fail(
                test,
                "squid (with /usr/lib/squid/basic_ncsa_auth) is not installed (run scripts/install-peers)",
            );
            return None;
        };
        let dir = tempfile::tempdir().expect("temp dir for squid");
        // Squid started as root runs as the `proxy` user: it must write its logs here.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
                .expect("chmod the squid dir");
        }
        let passwd = dir.path().join("passwd");
        std::fs::write(&passwd, format!("{PROXY_USER}:{PROXY_PASSWORD_HASH}\n")).unwrap();
        // A port the OS just handed out: squid cannot be told to pick one itself.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let d = dir.path().display();
        let config = format!(
            "http_port 127.0.0.1:{port}\n\
             pid_filename {d}/squid.pid\n\
             access_log stdio:{d}/access.log\n\
             cache_log {d}/cache.log\n\
             cache deny all\n\
             cache_mem 8 MB\n\
             coredump_dir {d}\n\
             pinger_enable off\n\
             auth_param basic program {helper} {passwd}\n\
             auth_param basic children 1 startup=1 idle=1\n\
             auth_param basic realm oauth2-exporter-test\n\
             acl authenticated proxy_auth REQUIRED\n\
             acl loopback src 127.0.0.1\n\
             http_access allow loopback authenticated\n\
             http_access deny all\n\
             via off\n\
             forwarded_for delete\n\
             shutdown_lifetime 0 seconds\n",
            helper = helper.display(),
            passwd = passwd.display(),
        );
        let config_path = dir.path().join("squid.conf");
        std::fs::write(&config_path, config).unwrap();
        let mut command = scrubbed_command(squid);
        command
            .arg("-N")
            .arg("-f")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = command.spawn().expect("spawn squid");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + START_LIMIT;
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if Instant::now() >= deadline || child.try_wait().ok().flatten().is_some() {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(dir.path().join("cache.log")).unwrap_or_default();
                panic!("squid did not accept connections within {START_LIMIT:?}:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(Squid { child, dir, addr })
    }

    /// `http://USER:PASSWORD@127.0.0.1:PORT` with `password` percent-encoded as given.
    pub fn url_with(&self, password_encoded: &str) -> String {
        format!("http://{PROXY_USER}:{password_encoded}@{}", self.addr)
    }

    /// Squid's access log so far: one line per request, with method, URL, user and result
    /// (`TCP_MISS/200`, `TCP_DENIED/407`).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// Waits (bounded) until the access log holds a line containing every one of `parts`.
    pub async fn wait_for_access(&self, parts: &[&str], limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let log = self.access_log();
            if let Some(line) = log.lines().find(|l| parts.iter().all(|p| l.contains(p))) {
                return line.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "no squid access log line with {parts:?} within {limit:?}:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Squid {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
