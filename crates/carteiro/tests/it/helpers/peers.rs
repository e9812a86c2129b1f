//! Real SMTP peers, each stopped when dropped: aiosmtpd (scriptable, TLS,
//! AUTH), Postfix's smtp-sink (volume) and a server that never answers.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::certs::TestCertificates;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Python that has aiosmtpd: `CARTEIRO_TEST_PYTHON`, else the test venv the test command makes.
pub fn python() -> PathBuf {
    match std::env::var_os("CARTEIRO_TEST_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => repo_root().join(".venv-test/bin/python"),
    }
}

/// One message as the peer received it.
#[derive(Debug, Clone)]
pub struct PeerMessage {
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    pub data: Vec<u8>,
    pub auth_user: Option<String>,
    pub tls: bool,
    /// The SMTP session (the client's port) that carried it.
    pub session: u64,
}

impl PeerMessage {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }

    /// The first header of that name, unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let text = self.text();
        let head = text.split("\r\n\r\n").next().unwrap_or_default().replace("\r\n ", " ").replace("\r\n\t", " ");
        head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

/// aiosmtpd, driven by `tests/peers/smtp_peer.py`.
pub struct SmtpPeer {
    _child: Child,
    pub port: u16,
    events: mpsc::UnboundedReceiver<Value>,
}

impl SmtpPeer {
    /// Starts the peer with its command-line flags (see the script).
    pub async fn start(args: &[&str]) -> Self {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/smtp_peer.py");
        let mut child = Command::new(python())
            .arg(script)
            .args(["--port", "0"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("cannot start the aiosmtpd peer: run the test command of the README, which installs it");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (tx, mut events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(serde_json::from_str::<Value>(&line).expect("peer events are JSON")).is_err() {
                    break;
                }
            }
        });
        let ready = tokio::time::timeout(Duration::from_secs(20), events.recv())
            .await
            .expect("the peer did not start")
            .expect("the peer exited");
        assert_eq!(ready["event"], "ready");
        let port = ready["port"].as_u64().unwrap() as u16;
        Self { _child: child, port, events }
    }

    pub async fn plain() -> Self {
        Self::start(&[]).await
    }

    /// STARTTLS with a certificate for localhost, and AUTH for `user:pass` required.
    pub async fn starttls(certs: &TestCertificates, credentials: &str) -> Self {
        Self::start(&[
            "--mode",
            "starttls",
            "--cert",
            certs.cert_path.to_str().unwrap(),
            "--key",
            certs.key_path.to_str().unwrap(),
            "--auth",
            credentials,
            "--require-auth",
        ])
        .await
    }

    pub async fn implicit_tls(certs: &TestCertificates) -> Self {
        Self::start(&[
            "--mode",
            "implicit",
            "--cert",
            certs.cert_path.to_str().unwrap(),
            "--key",
            certs.key_path.to_str().unwrap(),
        ])
        .await
    }

    /// The next event of any kind (`message`, `data_refused`).
    pub async fn next_event(&mut self, limit: Duration) -> Value {
        tokio::time::timeout(limit, self.events.recv())
            .await
            .expect("no event from the peer in time")
            .expect("the peer exited")
    }

    /// The next accepted message, skipping refusals.
    pub async fn next_message(&mut self, limit: Duration) -> PeerMessage {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .expect("no message reached the peer in time")
                .expect("the peer exited");
            if event["event"] == "message" {
                return message(&event);
            }
        }
    }

    /// Every message received so far, without waiting.
    pub fn received(&mut self) -> Vec<PeerMessage> {
        let mut out = Vec::new();
        while let Ok(event) = self.events.try_recv() {
            if event["event"] == "message" {
                out.push(message(&event));
            }
        }
        out
    }
}

fn message(event: &Value) -> PeerMessage {
    PeerMessage {
        mail_from: event["mail_from"].as_str().unwrap_or_default().to_owned(),
        rcpt_tos: event["rcpt_tos"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect(),
        data: base64::engine::general_purpose::STANDARD.decode(event["data_b64"].as_str().unwrap()).unwrap(),
        auth_user: event["auth_user"].as_str().map(str::to_owned),
        tls: event["tls"].as_bool().unwrap_or(false),
        session: event["session"].as_u64().unwrap_or(0),
    }
}

/// A free TCP port on loopback (for peers that cannot pick port 0 themselves).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Postfix's `smtp-sink`: accepts everything, writes one file per message and counts them.
pub struct SmtpSink {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl SmtpSink {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// With extra smtp-sink flags (fault injection: `-r`, `-f`, `-q`, `-w` …).
    pub async fn start_with(flags: &[&str]) -> Self {
        Self::start_on(free_port(), flags).await
    }

    /// On a given port (where another sink stopped), with extra flags.
    pub async fn start_on(port: u16, flags: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let dumps = dir.path().join("messages");
        std::fs::create_dir(&dumps).unwrap();
        #[cfg(unix)]
        std::fs::set_permissions(&dumps, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        let counter = std::fs::File::create(dir.path().join("counter")).unwrap();
        let binary = std::env::var("CARTEIRO_TEST_SMTP_SINK").unwrap_or_else(|_| "/usr/sbin/smtp-sink".to_owned());
        let mut command = Command::new(binary);
        // As root, smtp-sink must drop its privileges.
        if nix_is_root() {
            command.args(["-u", "nobody"]);
        }
        let child = command
            .args(flags)
            .arg("-c")
            .arg("-d")
            .arg(format!("{}/m.", dumps.display()))
            .arg(format!("127.0.0.1:{port}"))
            .arg("256")
            .stdout(counter)
            .kill_on_drop(true)
            .spawn()
            .expect("cannot start smtp-sink: run the test command of the README, which installs Postfix");
        super::eventually(Duration::from_secs(10), "smtp-sink to listen", || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok().map(drop)
        })
        .await;
        Self { child, port, dir }
    }

    /// Stops the sink and waits until it has let go of its port.
    pub async fn stop(mut self) {
        self.child.kill().await.unwrap();
    }

    /// How many messages the sink has received (one file each).
    pub fn count(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("messages")).map(|entries| entries.count()).unwrap_or(0)
    }

    /// How many messages the sink has accepted, by its own counter (`-c`): unlike
    /// `count`, exact however many arrive (dump files are named at random).
    pub fn counted(&self) -> usize {
        let counter = std::fs::read_to_string(self.dir.path().join("counter")).unwrap_or_default();
        let counts = counter.split("mesg=").skip(1);
        counts.filter_map(|n| n.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()).max().unwrap_or(0)
    }
}

fn nix_is_root() -> bool {
    std::process::Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0")).unwrap_or(false)
}

/// A server that accepts connections and never says a word.
pub struct SilentServer {
    pub port: u16,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl SilentServer {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(socket);
            }
        });
        Self { port, accepted, task }
    }

    /// How many connections it has accepted (and left hanging).
    pub fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
