//! Real proxies on loopback, each stopped when dropped: Dante (`danted`, SOCKS5)
//! and tinyproxy (HTTP `CONNECT`), with or without a user name and password.
//!
//! Both listen on 127.0.0.1 on a free port, reach only loopback destinations,
//! and write their logs in a temporary directory (`logs()`); `connections_to(port)`
//! tells how many tunnels they opened to a port, to prove a connection went
//! through them.
//!
//! Dante's `username` method checks the system's password database, so a SOCKS
//! proxy with credentials needs root: the user is created once as a system
//! account (`useradd --system`, no home, shell `nologin`, marked by its comment
//! "carteiro test SOCKS user", and expired since 1970 so that PAM logins such
//! as ssh or su refuse it, while Dante, which reads the shadow file itself,
//! accepts it), and its password is set with `chpasswd` at each start. A user
//! has one password at a time: a proxy holds a shared lock on the user while it
//! runs, and starting another with the same user but another password panics
//! (give each password its own user name). An existing account without that
//! comment is never touched.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// How long a proxy may take to accept connections.
const START_LIMIT: Duration = Duration::from_secs(15);
/// A port found free may be taken before the proxy binds it: so many tries.
const START_TRIES: usize = 3;
/// The comment that marks the system users these helpers create.
const USER_MARK: &str = "carteiro test SOCKS user";

/// Dante as a SOCKS5 server (`CONNECT` only) on 127.0.0.1.
pub struct SocksProxy {
    process: Process,
    pub port: u16,
    /// Held while the proxy runs: the user's password stays the same.
    _user_lock: Option<File>,
}

impl SocksProxy {
    /// Starts `danted`; with credentials, the client must give them (method
    /// `username`, RFC 1929), and the system user is made as the module says.
    pub async fn start(credentials: Option<(&str, &str)>) -> Self {
        let user_lock = credentials.map(|(user, password)| ensure_socks_user(user, password));
        let root = is_root();
        let binary = std::env::var("CARTEIRO_TEST_DANTED").unwrap_or_else(|_| "/usr/sbin/danted".to_owned());
        let process = Process::start("danted", |dir, port| {
            let log = dir.join("danted.log");
            let mut config = format!(
                "logoutput: {log}\n\
                 internal: 127.0.0.1 port = {port}\n\
                 external: 127.0.0.1\n\
                 clientmethod: none\n\
                 socksmethod: {method}\n",
                log = log.display(),
                method = if credentials.is_some() { "username" } else { "none" },
            );
            if root {
                // The privileged user reads the shadow file for `username`.
                config.push_str("user.privileged: root\nuser.unprivileged: nobody\n");
            }
            // Rules must span several lines: Dante 1.4 refuses them on one.
            config.push_str(
                "client pass {\n    from: 127.0.0.1/32 to: 0.0.0.0/0\n    log: connect disconnect error\n}\n\
                 socks pass {\n    from: 127.0.0.1/32 to: 127.0.0.1/32\n    command: connect\n    log: connect disconnect error\n}\n\
                 socks block {\n    from: 0.0.0.0/0 to: 0.0.0.0/0\n    log: connect error\n}\n",
            );
            let config_path = dir.join("danted.conf");
            std::fs::write(&config_path, config).unwrap();
            let mut command = Command::new(&binary);
            command.arg("-f").arg(&config_path).arg("-p").arg(dir.join("danted.pid"));
            (command, vec![log])
        })
        .await;
        let port = process.port;
        Self { process, port, _user_lock: user_lock }
    }

    /// `socks5://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("socks5://127.0.0.1:{}", self.port)
    }

    /// Dante's log and what it wrote on standard output and error.
    pub fn logs(&self) -> String {
        self.process.logs()
    }

    /// How many tunnels Dante opened to `port` (on any address): the
    /// `tcp/connect [` lines of its log, one per connection established.
    pub fn connections_to(&self, port: u16) -> usize {
        let suffix = format!(".{port}");
        self.process
            .main_log()
            .lines()
            .filter(|line| line.contains("tcp/connect [:"))
            .filter(|line| line.split_whitespace().last().is_some_and(|target| target.ends_with(&suffix)))
            .count()
    }
}

/// tinyproxy as an HTTP `CONNECT` proxy on 127.0.0.1, to any port of
/// 127.0.0.1 or localhost (other hosts get 403 Filtered).
///
/// With credentials (`BasicAuth`), a request without `Proxy-Authorization` gets
/// `407 Proxy Authentication Required`, but tinyproxy 1.11 answers a wrong user
/// or password with `401 Unauthorized` (and `WWW-Authenticate`), not 407.
pub struct HttpProxy {
    process: Process,
    pub port: u16,
}

impl HttpProxy {
    pub async fn start(credentials: Option<(&str, &str)>) -> Self {
        if let Some((user, password)) = credentials {
            let plain = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_graphic() && c != '"' && c != '#');
            assert!(
                plain(user) && plain(password),
                "tinyproxy's BasicAuth takes printable ASCII without quotes or #: {user:?}"
            );
        }
        let binary = std::env::var("CARTEIRO_TEST_TINYPROXY").unwrap_or_else(|_| "/usr/bin/tinyproxy".to_owned());
        let process = Process::start("tinyproxy", |dir, port| {
            let log = dir.join("tinyproxy.log");
            let filter = dir.join("filter");
            // Extended regular expressions on the host of the request.
            std::fs::write(&filter, "^127\\.0\\.0\\.1$\n^localhost$\n").unwrap();
            // No ConnectPort line: CONNECT to every port (the stock file allows 443 and 563 only).
            let mut config = format!(
                "Port {port}\n\
                 Listen 127.0.0.1\n\
                 Timeout 600\n\
                 LogFile \"{log}\"\n\
                 LogLevel Info\n\
                 MaxClients 100\n\
                 Allow 127.0.0.1\n\
                 DisableViaHeader Yes\n\
                 Filter \"{filter}\"\n\
                 FilterType ere\n\
                 FilterDefaultDeny Yes\n",
                log = log.display(),
                filter = filter.display(),
            );
            if let Some((user, password)) = credentials {
                config.push_str(&format!("BasicAuth {user} {password}\n"));
            }
            let config_path = dir.join("tinyproxy.conf");
            std::fs::write(&config_path, config).unwrap();
            let mut command = Command::new(&binary);
            command.arg("-d").arg("-c").arg(&config_path);
            (command, vec![log])
        })
        .await;
        let port = process.port;
        Self { process, port }
    }

    /// tinyproxy's log and what it wrote on standard output and error.
    pub fn logs(&self) -> String {
        self.process.logs()
    }

    /// How many tunnels tinyproxy opened (or tried to open) to `port`, once the
    /// request was allowed (right credentials, allowed host): its
    /// `opensock: opening connection to HOST:PORT` lines.
    pub fn connections_to(&self, port: u16) -> usize {
        let suffix = format!(":{port}");
        self.process
            .main_log()
            .lines()
            .filter_map(|line| line.split_once("opensock: opening connection to ").map(|(_, target)| target.trim()))
            .filter(|target| target.ends_with(&suffix))
            .count()
    }
}

/// A daemon in the foreground, its files in a temporary directory, stopped on drop.
struct Process {
    name: &'static str,
    child: Option<Child>,
    port: u16,
    _dir: tempfile::TempDir,
    /// The daemon's own log file(s), then its standard output and error.
    logs: Vec<PathBuf>,
}

impl Process {
    /// Writes the configuration for a free port (`configure` gives the command
    /// and the log files) and waits until the port accepts connections; tries
    /// again on another port when the first was taken meanwhile.
    async fn start(name: &'static str, configure: impl Fn(&Path, u16) -> (Command, Vec<PathBuf>)) -> Self {
        let mut last_failure = String::new();
        for _ in 0..START_TRIES {
            let dir = tempfile::Builder::new().prefix(&format!("carteiro-{name}-")).tempdir().unwrap();
            // Dante's children run as nobody; let them reach their files.
            #[cfg(unix)]
            std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
            let port = super::peers::free_port();
            let (mut command, mut logs) = configure(dir.path(), port);
            let output = dir.path().join(format!("{name}.out"));
            let out = File::create(&output).unwrap();
            let child = command
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot start {name} ({e}): run the test command of the README, which installs it")
                });
            logs.push(output);
            let mut process = Self { name, child: Some(child), port, _dir: dir, logs };
            match process.wait_listening().await {
                Ok(()) => return process,
                Err(failure) => {
                    process.stop();
                    let logs = process.logs();
                    last_failure = format!("{failure}; its logs:\n{logs}");
                    // Only a port taken meanwhile is worth another try.
                    if !(logs.contains("in use") || logs.contains("Could not create listening")) {
                        break;
                    }
                }
            }
        }
        panic!("{name} did not start: {last_failure}");
    }

    async fn wait_listening(&mut self) -> Result<(), String> {
        let started = Instant::now();
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return Err(format!("{} exited with {status} before listening on 127.0.0.1:{}", self.name, self.port));
            }
            if started.elapsed() > START_LIMIT {
                return Err(format!("{} did not listen on 127.0.0.1:{} within {START_LIMIT:?}", self.name, self.port));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The daemon's own log.
    fn main_log(&self) -> String {
        std::fs::read_to_string(&self.logs[0]).unwrap_or_default()
    }

    fn logs(&self) -> String {
        let mut all = String::new();
        for path in &self.logs {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if !text.is_empty() {
                all.push_str(&format!("--- {}\n{text}", path.display()));
                if !text.ends_with('\n') {
                    all.push('\n');
                }
            }
        }
        all
    }

    /// SIGTERM, so that Dante stops and reaps its children, then SIGKILL if it lingers.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = child.start_kill();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

fn is_root() -> bool {
    std::process::Command::new("id").arg("-u").output().map(|o| o.stdout.trim_ascii() == b"0").unwrap_or(false)
}

/// Makes `user` a system user whose password is `password` (see the module),
/// and returns the shared lock that keeps that password while the proxy runs.
fn ensure_socks_user(user: &str, password: &str) -> File {
    let valid_name = user.len() <= 32
        && user.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && user.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    assert!(valid_name, "a SOCKS user is a system user: lower-case letters, digits, _ and -, not {user:?}");
    assert!(
        !password.is_empty() && !password.contains(['\n', '\r', ':', '\0']),
        "a SOCKS password must be one line without ':' (chpasswd): {password:?}"
    );
    assert!(is_root(), "a SOCKS proxy with credentials needs root: Dante checks them against the system's users");

    let locks = std::env::temp_dir().join("carteiro-test-socks-users");
    std::fs::create_dir_all(&locks).unwrap();
    #[cfg(unix)]
    std::fs::set_permissions(&locks, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let open = |name: String| {
        std::fs::OpenOptions::new().create(true).truncate(false).read(true).write(true).open(locks.join(name)).unwrap()
    };
    // One setup at a time for this user, across test processes.
    let guard = open(format!("{user}.setup"));
    guard.lock().unwrap();
    let in_use = open(format!("{user}.inuse"));
    let record = locks.join(format!("{user}.password"));
    let wanted = sha256_hex(password);
    let current = std::fs::read_to_string(&record).unwrap_or_default();
    if current.trim() != wanted || !system_user_is_ours(user) {
        // Changing the password: nobody may be using the user.
        match in_use.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => panic!(
                "SOCKS user {user:?} is in use by another running test with another password: give each password its own user name"
            ),
            Err(std::fs::TryLockError::Error(e)) => panic!("cannot lock {}: {e}", locks.display()),
        }
        create_system_user(user);
        set_password(user, password);
        std::fs::write(&record, format!("{wanted}\n")).unwrap();
        in_use.unlock().unwrap();
    }
    in_use.lock_shared().unwrap();
    drop(guard);
    in_use
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// The user exists and bears the mark (panics if it exists without it).
fn system_user_is_ours(user: &str) -> bool {
    let out = std::process::Command::new("getent").args(["passwd", user]).output().expect("getent runs");
    if !out.status.success() {
        return false;
    }
    let entry = String::from_utf8_lossy(&out.stdout);
    let comment = entry.trim().split(':').nth(4).unwrap_or_default();
    assert_eq!(
        comment, USER_MARK,
        "the system user {user:?} exists and was not made by these tests: pick another name"
    );
    true
}

fn create_system_user(user: &str) {
    if system_user_is_ours(user) {
        return;
    }
    let out = std::process::Command::new("useradd")
        .args(["--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin"])
        .args(["--expiredate", "1970-01-02", "--comment", USER_MARK, user])
        .output()
        .expect("useradd runs");
    // Another process may have made it meanwhile (exit 9: already exists).
    assert!(
        out.status.success() || system_user_is_ours(user),
        "useradd {user} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn set_password(user: &str, password: &str) {
    let mut child = std::process::Command::new("chpasswd")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chpasswd runs");
    child.stdin.take().unwrap().write_all(format!("{user}:{password}\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "chpasswd for {user} failed: {}", String::from_utf8_lossy(&out.stderr));
}
