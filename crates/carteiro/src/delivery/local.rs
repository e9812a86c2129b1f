//! The transports that hand a message to this machine instead of an SMTP
//! server: a local MTA's `sendmail`, a pickup directory an MTA watches, or
//! carteiro's own store (capture, for development and staging).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use carteiro_core::delivery::{Failure, Reply, Stage, Transaction};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::transcript::{Transcript, within};
use super::{Outgoing, transfer_time};

/// The most of `sendmail`'s error output kept in an attempt.
const MAX_STDERR: usize = 2000;

/// sysexits.h codes after which the same message will never be taken:
/// EX_DATAERR, EX_NOUSER. Anything else can pass or be fixed, and is
/// retried: EX_TEMPFAIL, a missing binary, a usage error from the settings,
/// EX_NOHOST (also what a relay whose name does not resolve gives).
const PERMANENT_EXITS: [i32; 2] = [65, 67];

#[derive(Debug, Clone)]
pub enum Local {
    /// The program and its arguments, run without a shell.
    Sendmail {
        command: Vec<String>,
    },
    Pickup {
        dir: PathBuf,
    },
    Capture,
}

impl Local {
    /// Hands one message over within `timeout` (plus time for its size), recording the step in `log`.
    pub async fn send(
        &self,
        o: &Outgoing<'_>,
        timeout: Duration,
        log: &mut Transcript,
    ) -> Result<Transaction, Failure> {
        let started = Instant::now();
        let limit = timeout + transfer_time(o.raw.len());
        let handed = within(limit, Stage::Handoff, async {
            match self {
                Self::Sendmail { command } => sendmail(command, o).await,
                Self::Pickup { dir } => pickup(dir, o).await,
                // The message's bytes are already stored (GET /api/v1/messages/{id}/raw).
                Self::Capture => Ok(Reply::new(250, "kept in carteiro (capture): nothing leaves")),
            }
        })
        .await;
        log.record(Stage::Handoff, started, &handed, ToString::to_string);
        let reply = handed?;
        Ok(Transaction { rcpt: o.to.iter().map(|_| Ok(reply.clone())).collect(), data: Some(Ok(reply)) })
    }
}

/// Pipes the message to `sendmail`. `-t` (recipients from the headers) is
/// dropped: the recipients go on the command line, so that Bcc recipients and
/// those already delivered are handled by carteiro, not by headers; the
/// envelope sender goes with `-f`.
async fn sendmail(command: &[String], o: &Outgoing<'_>) -> Result<Reply, Failure> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| Failure::Settings { detail: "connection.sendmail_command is empty".to_owned() })?;
    let mut args: Vec<String> = args.iter().filter_map(|a| without_t(a)).collect();
    if !args.iter().any(|a| a == "-i" || a == "-oi") {
        // A line holding only "." must not end the message.
        args.push("-i".to_owned());
    }
    args.extend(["-f", o.envelope_from, "--"].map(str::to_owned));
    args.extend(o.to.iter().map(|to| (*to).to_owned()));

    let mut child = Command::new(program)
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Failure::Handoff { permanent: false, detail: format!("cannot run {program}: {e}") })?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // sendmail reads lines with the local convention: LF, not SMTP's CRLF.
    let input = lf_lines(o.raw);
    let write = async move {
        let written = stdin.write_all(&input).await;
        drop(stdin);
        written
    };
    let (written, output) = tokio::join!(write, child.wait_with_output());
    let output =
        output.map_err(|e| Failure::Handoff { permanent: false, detail: format!("{program} did not finish: {e}") })?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stderr = stderr.trim();
    let said = match stderr.char_indices().nth(MAX_STDERR) {
        Some((cut, _)) => format!(": {}…", &stderr[..cut]),
        None if stderr.is_empty() => String::new(),
        None => format!(": {stderr}"),
    };
    match (output.status.code(), written) {
        (Some(0), Ok(())) => Ok(Reply::new(250, format!("{program} took the message (exit status 0){said}"))),
        (Some(0), Err(e)) => Err(Failure::Handoff {
            permanent: false,
            detail: format!("{program} exited 0 before reading the whole message: {e}"),
        }),
        (Some(code), _) => Err(Failure::Handoff {
            permanent: PERMANENT_EXITS.contains(&code),
            detail: format!("{program} exited with status {code}{said}"),
        }),
        (None, _) => {
            Err(Failure::Handoff { permanent: false, detail: format!("{program} was killed by a signal{said}") })
        }
    }
}

/// `arg` without the `-t` flag, alone (`-t`) or among other flags that take
/// no value (`-ti`, `-it`); `None` when nothing is left.
fn without_t(arg: &str) -> Option<String> {
    let flags = arg.strip_prefix('-').filter(|f| !f.is_empty() && f.chars().all(|c| c == 't' || c == 'i'));
    match flags {
        Some(flags) => {
            let kept: String = flags.chars().filter(|c| *c != 't').collect();
            (!kept.is_empty()).then(|| format!("-{kept}"))
        }
        None => Some(arg.to_owned()),
    }
}

fn lf_lines(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, &byte) in raw.iter().enumerate() {
        if !(byte == b'\r' && raw.get(i + 1) == Some(&b'\n')) {
            out.push(byte);
        }
    }
    out
}

/// Writes `{id}.eml` into `dir` so that a watcher never sees half a file: a
/// hidden temporary file, flushed to disk, then renamed. The envelope leads
/// as `X-Sender`/`X-Receiver` lines (what IIS's pickup directory and
/// Exchange's replay directory read), so that Bcc recipients, whom no
/// header names, are not lost to a reader that honours them.
async fn pickup(dir: &Path, o: &Outgoing<'_>) -> Result<Reply, Failure> {
    let mut content = format!("X-Sender: {}\r\n", o.envelope_from).into_bytes();
    for to in &o.to {
        content.extend_from_slice(format!("X-Receiver: {to}\r\n").as_bytes());
    }
    content.extend_from_slice(o.raw);
    let (dir, id) = (dir.to_owned(), o.id.to_owned());
    let written = tokio::task::spawn_blocking(move || write_atomically(&dir, &id, &content)).await;
    let written =
        written.map_err(|e| Failure::Handoff { permanent: false, detail: format!("the writer stopped: {e}") })?;
    match written {
        Ok(path) => Ok(Reply::new(250, format!("written to {}", path.display()))),
        Err((path, e)) => {
            Err(Failure::Handoff { permanent: false, detail: format!("cannot write {}: {e}", path.display()) })
        }
    }
}

fn write_atomically(dir: &Path, id: &str, content: &[u8]) -> Result<PathBuf, (PathBuf, std::io::Error)> {
    // Unique: an earlier attempt of the same message (a lost lease) may still be writing.
    let temporary = dir.join(format!(".{id}.{}.tmp", uuid::Uuid::now_v7()));
    let path = dir.join(format!("{id}.eml"));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create_new(&temporary)?;
        file.write_all(content)?;
        file.sync_all()
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&temporary);
        return Err((temporary, e));
    }
    std::fs::rename(&temporary, &path).map_err(|e| (path.clone(), e))?;
    // The rename itself must survive a crash too.
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| (dir.to_owned(), e))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_t_flag_goes_alone_or_in_a_cluster_and_the_rest_stays() {
        assert_eq!(without_t("-t"), None);
        assert_eq!(without_t("-ti").as_deref(), Some("-i"));
        assert_eq!(without_t("-it").as_deref(), Some("-i"));
        assert_eq!(without_t("-oi").as_deref(), Some("-oi"));
        assert_eq!(without_t("-C/etc/postfix-out").as_deref(), Some("-C/etc/postfix-out"));
        assert_eq!(without_t("--").as_deref(), Some("--"));
    }

    #[test]
    fn crlf_becomes_lf_and_lone_bytes_stay() {
        assert_eq!(lf_lines(b"a\r\nb\rc\n\r\n"), b"a\nb\rc\n\n");
    }
}
