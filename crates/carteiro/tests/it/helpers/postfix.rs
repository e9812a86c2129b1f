//! A Postfix instance of its own, stopped on drop: its configuration and
//! queue in a temporary directory, no listener, relaying everything that its
//! `sendmail` is given to an SMTP peer on loopback. Needs root (Postfix's
//! master runs as root and its daemons as the `postfix` user).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

const MASTER: &str = "/usr/lib/postfix/sbin/master";

pub struct Postfix {
    dir: tempfile::TempDir,
    master: Child,
}

impl Postfix {
    /// Starts an instance relaying to `[127.0.0.1]:relay_port`.
    pub async fn start(relay_port: u16) -> Self {
        // Postfix writes its log only under the prefixes it is told, and its daemons read the queue as `postfix`.
        let dir = tempfile::Builder::new().prefix("carteiro-postfix-").tempdir_in("/tmp").unwrap();
        let root = dir.path();
        std::fs::set_permissions(root, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        std::fs::create_dir(root.join("queue")).unwrap();
        std::fs::create_dir(root.join("data")).unwrap();
        run("chown", &["postfix", root.join("data").to_str().unwrap()]);
        std::fs::write(root.join("main.cf"), main_cf(root, relay_port)).unwrap();
        std::fs::write(root.join("master.cf"), MASTER_CF).unwrap();
        // `check` makes the queue's directories with their owners and modes.
        run("postfix", &["-c", root.to_str().unwrap(), "check"]);

        let master = Command::new(MASTER)
            .args(["-d", "-c", root.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // The master kills its process group when it stops: its own, not the tests'.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("Postfix's master starts: run the test command of the README, which installs Postfix");
        let postfix = Self { dir, master };
        let started = Instant::now();
        while !postfix.log().contains("daemon started") {
            assert!(started.elapsed() < Duration::from_secs(15), "Postfix did not start; its log:\n{}", postfix.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        postfix
    }

    /// The `sendmail_command` that hands messages to this instance.
    pub fn sendmail_command(&self) -> String {
        format!("/usr/sbin/sendmail -C {} -t -i", self.dir.path().display())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        if let Some(pid) = self.master.id() {
            // SIGTERM: the master stops its daemons before it exits.
            let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        }
    }
}

fn run(program: &str, args: &[&str]) {
    let status = std::process::Command::new(program).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status();
    assert!(status.is_ok_and(|s| s.success()), "{program} {args:?} failed");
}

fn main_cf(root: &Path, relay_port: u16) -> String {
    let root = root.display();
    format!(
        "compatibility_level = 3.6\n\
         queue_directory = {root}/queue\n\
         data_directory = {root}/data\n\
         maillog_file = {root}/maillog\n\
         maillog_file_prefixes = /tmp\n\
         mail_owner = postfix\n\
         setgid_group = postdrop\n\
         myhostname = postfix.carteiro.test\n\
         mydestination =\n\
         inet_interfaces = loopback-only\n\
         inet_protocols = ipv4\n\
         master_service_disable = inet\n\
         relayhost = [127.0.0.1]:{relay_port}\n\
         smtp_tls_security_level = none\n"
    )
}

/// The daemons a relay needs, none chrooted.
const MASTER_CF: &str = "\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
";
