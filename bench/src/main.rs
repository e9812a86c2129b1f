//! `carteiro-bench run` submits N messages of about 2 KB to carteiro (in
//! batches, or one by one from several concurrent clients), then waits until
//! Postfix's smtp-sink has received every one of them, and prints what it
//! measured as one JSON line: acceptance rate, time until the sink had
//! everything, end-to-end rate and carteiro's peak RSS.
//!
//! Given several `--url`s (instances sharing one PostgreSQL database), the
//! submissions are spread over them: batch requests in turn, single-submission
//! clients each on one; the run is configured through the first.
//!
//! With `--neighbour silent|down`, a second company's messages wait on a server
//! that accepts connections and never answers, or that refuses them, while
//! the measured company sends: its rate is the one without a neighbour if the
//! companies' lanes are truly apart.
//!
//! `carteiro-bench wait` only waits for the sink to count N messages, for the
//! runs that other tools feed.
//!
//! Arrivals are read from smtp-sink's own counter (`-c`, written to a file):
//! reading its last bytes costs next to nothing, so the measuring does not
//! steal the CPU it measures.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::{Parser, ValueEnum};
use serde_json::{Value, json};

#[derive(Parser)]
enum Command {
    Run(Args),
    Wait {
        /// smtp-sink's standard output (run with `-c`).
        #[arg(long)]
        sink_out: PathBuf,
        #[arg(long)]
        count: usize,
        #[arg(long, default_value_t = 600)]
        timeout_s: u64,
    },
}

#[derive(clap::Args)]
struct Args {
    /// carteiro's base URL; repeat it for instances sharing one database.
    #[arg(long, required = true)]
    url: Vec<String>,
    /// The password of carteiro's `admin`, to configure the run.
    #[arg(long)]
    admin_password: String,
    /// The sink's port on 127.0.0.1: the global level's server.
    #[arg(long)]
    sink_port: u16,
    /// Bundle e-mails to send (the policy's `bundle_enabled`).
    #[arg(long)]
    bundle: bool,
    /// SMTP sessions carteiro may open to the sink at once.
    #[arg(long, default_value_t = 20)]
    max_sessions: u16,
    /// How many messages.
    #[arg(long, default_value_t = 20_000)]
    count: usize,
    /// How to submit them.
    #[arg(long, value_enum, default_value = "batch")]
    mode: Mode,
    /// Messages per batch request.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Concurrent clients for single submissions.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Approximate size of each message body, in bytes.
    #[arg(long, default_value_t = 2048)]
    size: usize,
    /// smtp-sink's standard output (run with `-c`).
    #[arg(long)]
    sink_out: PathBuf,
    /// carteiro's process id, for its peak RSS; repeat it for several instances (their peaks are added).
    #[arg(long, required = true)]
    pid: Vec<u32>,
    /// Only measure acceptance: schedule the messages a day ahead and do not wait for the sink.
    #[arg(long)]
    accept_only: bool,
    /// Only measure delivery: schedule every message this many seconds ahead
    /// (once all are accepted) and time delivery from then.
    #[arg(long)]
    deliver_after_s: Option<u64>,
    /// Give up waiting for the sink after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_s: u64,
    /// A second company whose server fails during the run.
    #[arg(long, value_enum, default_value = "none")]
    neighbour: Neighbour,
    /// How many messages the failing neighbour has waiting.
    #[arg(long, default_value_t = 2000)]
    neighbour_count: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Neighbour {
    None,
    /// Accepts connections and never says a word.
    Silent,
    /// Nothing listens: connections are refused.
    Down,
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Batch,
    Single,
}

fn message(n: usize, size: usize, send_at: Option<&str>) -> Value {
    let line = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\n";
    let text = line.repeat(size / line.len() + 1);
    let mut message = json!({
        "kind": "system",
        "to": [format!("cliente{n}@example.com")],
        "subject": format!("Bench message {n}"),
        "text": text,
    });
    if let Some(at) = send_at {
        message["send_at"] = json!(at);
    }
    message
}

/// The last `mesg=N` smtp-sink's counter wrote.
fn sink_count(out: &PathBuf) -> usize {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(out) else { return 0 };
    let _ = file.seek(SeekFrom::End(-128));
    let mut tail = String::new();
    let _ = file.read_to_string(&mut tail);
    tail.rsplit("mesg=").next().and_then(|n| n.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()).unwrap_or(0)
}

async fn wait_for_sink(out: &PathBuf, count: usize, deadline: Instant) -> anyhow::Result<()> {
    while sink_count(out) < count {
        if Instant::now() > deadline {
            bail!("the sink has {} of {count} messages", sink_count(out));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

fn peak_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).context("no VmHWM")?;
    Ok(line.split_whitespace().nth(1).context("VmHWM value")?.parse()?)
}

async fn post(client: &reqwest::Client, url: &str, key: &str, body: &Value) -> anyhow::Result<Value> {
    let response = client.post(url).bearer_auth(key).json(body).send().await?;
    let status = response.status();
    let body: Value = response.json().await?;
    ensure!(status.as_u16() == 202, "carteiro answered {status}: {body}");
    Ok(body)
}

/// Points carteiro's global level at the sink and makes a company; the admin's token and the company's API key.
async fn configure(client: &reqwest::Client, args: &Args) -> anyhow::Result<(String, String)> {
    let api = format!("{}/api/v1", args.url[0]);
    let login: Value = client
        .post(format!("{api}/login"))
        .json(&json!({"username": "admin", "password": args.admin_password}))
        .send()
        .await?
        .json()
        .await?;
    let token = login["token"].as_str().context("login")?.to_owned();
    let settings = json!({
        "connection": {"host": "127.0.0.1", "port": args.sink_port, "timeout_s": 30, "max_sessions": args.max_sessions},
        "policy": {"default_sender_enabled": true, "default_sender_address": "bench@example.com", "bundle_enabled": args.bundle}
    });
    let put = client.put(format!("{api}/settings/global")).bearer_auth(&token).json(&settings).send().await?;
    ensure!(put.status().is_success(), "settings: {}", put.text().await?);
    let key = create_company(client, &api, &token, "bench").await?;
    Ok((token, key))
}

/// Makes a company; its API key.
async fn create_company(client: &reqwest::Client, api: &str, token: &str, slug: &str) -> anyhow::Result<String> {
    let company = client
        .post(format!("{api}/companies"))
        .bearer_auth(token)
        .json(&json!({"slug": slug, "name": slug}))
        .send()
        .await?;
    ensure!(company.status().is_success(), "company: {}", company.text().await?);
    let key: Value =
        client.post(format!("{api}/companies/{slug}/api-keys")).bearer_auth(token).send().await?.json().await?;
    Ok(key["key"].as_str().context("api key")?.to_owned())
}

/// A company whose own server fails as `--neighbour` says, with `--neighbour-count` messages queued for it.
/// The returned listener (for `silent`) must live as long as the run.
async fn failing_neighbour(
    client: &reqwest::Client,
    args: &Args,
    token: &str,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let silent = match args.neighbour {
        Neighbour::None => return Ok(None),
        Neighbour::Down => {
            drop(listener);
            None
        }
        Neighbour::Silent => Some(tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        })),
    };
    let api = format!("{}/api/v1", args.url[0]);
    let key = create_company(client, &api, token, "neighbour").await?;
    // The shortest timeout there is: A's sessions time out, and its messages are deferred, during the run.
    let settings = json!({"connection": {
        "enabled": true, "host": "127.0.0.1", "port": port, "timeout_s": 10, "max_sessions": args.max_sessions
    }});
    let put =
        client.put(format!("{api}/companies/neighbour/settings")).bearer_auth(token).json(&settings).send().await?;
    ensure!(put.status().is_success(), "neighbour settings: {}", put.text().await?);
    for start in (0..args.neighbour_count).step_by(1000) {
        let messages: Vec<Value> =
            (start..(start + 1000).min(args.neighbour_count)).map(|n| message(n, args.size, None)).collect();
        post(client, &format!("{api}/messages/batch"), &key, &json!({"messages": messages})).await?;
    }
    Ok(silent)
}

async fn submit(client: &reqwest::Client, args: &Args, key: &str, send_at: Option<String>) -> anyhow::Result<()> {
    match args.mode {
        Mode::Batch => {
            let urls: Vec<String> = args.url.iter().map(|u| format!("{u}/api/v1/messages/batch")).collect();
            for (request, start) in (0..args.count).step_by(args.batch).enumerate() {
                let url = &urls[request % urls.len()];
                let messages: Vec<Value> = (start..(start + args.batch).min(args.count))
                    .map(|n| message(n, args.size, send_at.as_deref()))
                    .collect();
                let answer = post(client, url, key, &json!({"messages": messages})).await?;
                let refused = answer["results"]
                    .as_array()
                    .context("results")?
                    .iter()
                    .filter(|r| r.get("error").is_some())
                    .count();
                ensure!(refused == 0, "{refused} messages were refused: {answer}");
            }
        }
        Mode::Single => {
            let next = Arc::new(AtomicUsize::new(0));
            let mut clients = Vec::new();
            for c in 0..args.clients {
                let url = format!("{}/api/v1/messages", args.url[c % args.url.len()]);
                let (client, key, next, count, size) =
                    (client.clone(), key.to_owned(), next.clone(), args.count, args.size);
                let send_at = send_at.clone();
                clients.push(tokio::spawn(async move {
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= count {
                            return anyhow::Ok(());
                        }
                        post(&client, &url, &key, &message(n, size, send_at.as_deref())).await?;
                    }
                }));
            }
            for client in clients {
                client.await??;
            }
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = match Command::parse() {
        Command::Run(args) => args,
        Command::Wait { sink_out, count, timeout_s } => {
            return wait_for_sink(&sink_out, count, Instant::now() + Duration::from_secs(timeout_s)).await;
        }
    };
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    let (token, key) = configure(&client, &args).await?;
    let _neighbour = failing_neighbour(&client, &args, &token).await?;
    let before = sink_count(&args.sink_out);
    let mut started = Instant::now();
    let send_at = if args.accept_only {
        Some("2100-01-01T00:00:00Z".to_owned())
    } else {
        let rfc3339 = &time::format_description::well_known::Rfc3339;
        let ahead = args.deliver_after_s.map(|s| time::OffsetDateTime::now_utc() + Duration::from_secs(s));
        ahead.map(|at| at.format(rfc3339)).transpose()?
    };
    submit(&client, &args, &key, send_at).await?;
    let accepted = started.elapsed();
    if let Some(s) = args.deliver_after_s {
        // Delivery is timed from the moment the messages became due.
        let due = started + Duration::from_secs(s);
        ensure!(Instant::now() < due, "submitting took longer than --deliver-after-s");
        tokio::time::sleep_until(due.into()).await;
        started = due;
    }
    if args.accept_only {
        println!(
            "{}",
            json!({"count": args.count, "accept_s": accepted.as_secs_f64(), "accept_per_s": args.count as f64 / accepted.as_secs_f64()})
        );
        return Ok(());
    }
    wait_for_sink(&args.sink_out, before + args.count, started + Duration::from_secs(args.timeout_s)).await?;
    let delivered = started.elapsed();
    let n = args.count as f64;
    println!(
        "{}",
        json!({
            "count": args.count,
            "accept_s": accepted.as_secs_f64(),
            "accept_per_s": n / accepted.as_secs_f64(),
            "delivered_s": delivered.as_secs_f64(),
            "e2e_per_s": n / delivered.as_secs_f64(),
            "peak_rss_mib": args.pid.iter().map(|&pid| peak_rss_kib(pid)).sum::<anyhow::Result<u64>>()? as f64 / 1024.0,
        })
    );
    Ok(())
}
