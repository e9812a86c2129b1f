//! A `carteiro serve` process on a fresh data directory, reached over HTTP.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const ADMIN_PASSWORD: &str = "admin-password-for-tests";

/// Fast timings for tests: retries in a fraction of a second, short leases.
const TEST_FLAGS: &[&str] = &[
    "--poll-ms",
    "50",
    "--retry-first-delay-s",
    "0.2",
    "--retry-max-delay-s",
    "1",
    "--lease-s",
    "3",
    "--shutdown-grace-s",
    "5",
];

pub struct Carteiro {
    child: Option<Child>,
    dir: tempfile::TempDir,
    database: Database,
    extra: Vec<String>,
    env: Vec<(String, String)>,
    pub base: String,
    pub http: reqwest::Client,
    pub token: String,
}

/// Where an instance keeps its data.
#[derive(Debug, Clone)]
pub enum Database {
    /// The suite's store for its own data directory (see `store`).
    Own,
    /// The database of another instance's data directory: instances of one installation.
    SharedWith(PathBuf),
    /// A PostgreSQL database the test runs itself.
    Url(String),
}

/// A company and one of its API keys.
#[derive(Debug, Clone)]
pub struct Company {
    pub slug: String,
    pub key: String,
}

impl Carteiro {
    pub async fn start() -> Self {
        Self::start_with(&[], &[]).await
    }

    /// Starts with extra `serve` flags and environment variables.
    pub async fn start_with(extra: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_on(Database::Own, extra, env).await
    }

    /// Starts on `database`, with extra `serve` flags and environment variables.
    pub async fn start_on(database: Database, extra: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_prepared(database, extra, env, |_| {}).await
    }

    /// Starts once `prepare` has readied the place of the data directory (which does not exist yet).
    pub async fn start_prepared(
        database: Database,
        extra: &[&str],
        env: &[(&str, &str)],
        prepare: impl FnOnce(&std::path::Path),
    ) -> Self {
        let mut app = Self {
            child: None,
            dir: tempfile::tempdir().unwrap(),
            database,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            base: String::new(),
            http: super::http_client(),
            token: String::new(),
        };
        prepare(&app.data_dir());
        app.launch().await;
        app.token = app.login("admin", ADMIN_PASSWORD).await.expect("the first administrator can log in");
        app
    }

    fn store_args(&self) -> Vec<String> {
        match &self.database {
            Database::Own => super::store::args(&self.data_dir()),
            Database::SharedWith(dir) => super::store::args(dir),
            Database::Url(url) => vec!["--database-url".to_owned(), url.clone()],
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("carteiro.log")
    }

    /// Everything the process wrote to standard error (its log), over all its runs.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    async fn launch(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_carteiro"))
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(self.data_dir())
            .args(self.store_args())
            .args(TEST_FLAGS)
            .args(&self.extra)
            .env("CARTEIRO_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("CARTEIRO_HOSTNAME", "carteiro.test")
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("the carteiro binary starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let address = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(rest) = line.strip_prefix("carteiro: API on http://") {
                    return rest.trim_end_matches("/api/v1").to_owned();
                }
            }
            panic!(
                "carteiro exited before listening; its log:\n{}",
                std::fs::read_to_string(self.log_path()).unwrap_or_default()
            );
        })
        .await
        .expect("carteiro did not start in time");
        // Keep draining standard output so the process never blocks on it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.base = format!("http://{address}");
        self.child = Some(child);
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }

    /// Sends SIGTERM and waits for the exit.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = child.id().unwrap().to_string();
        std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .expect("carteiro stops after SIGTERM")
            .unwrap()
    }

    /// Sets an environment variable for the next start (and the CLI).
    pub fn set_env(&mut self, name: &str, value: &str) {
        self.env.retain(|(k, _)| k != name);
        self.env.push((name.to_owned(), value.to_owned()));
    }

    /// Starts again on the same data directory.
    pub async fn restart(&mut self) {
        self.kill().await;
        self.launch().await;
        self.token = self.login("admin", ADMIN_PASSWORD).await.unwrap();
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn login(&self, username: &str, password: &str) -> Option<String> {
        let (status, body) = self
            .call(Method::POST, "/api/v1/login", None, Some(json!({"username": username, "password": password})))
            .await;
        (status == StatusCode::OK).then(|| body["token"].as_str().unwrap().to_owned())
    }

    /// A JSON call with an optional bearer token; the body of the answer as JSON (or `null`).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, self.url(path));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("carteiro answers");
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// A call as the platform administrator.
    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call(method, path, Some(&self.token), body).await
    }

    pub async fn set_global(&self, doc: Value) -> Value {
        let (status, body) = self.admin(Method::PUT, "/api/v1/settings/global", Some(doc)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    pub async fn set_company_settings(&self, company: &Company, doc: Value) -> Value {
        let (status, body) =
            self.admin(Method::PUT, &format!("/api/v1/companies/{}/settings", company.slug), Some(doc)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// Creates a company (with an e-mail address) and an API key for it.
    pub async fn create_company(&self, slug: &str) -> Company {
        let (status, body) = self
            .admin(
                Method::POST,
                "/api/v1/companies",
                Some(json!({"slug": slug, "name": format!("{slug} Ltda"), "email": format!("contato@{slug}.example")})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, body) = self.admin(Method::POST, &format!("/api/v1/companies/{slug}/api-keys"), None).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        Company { slug: slug.to_owned(), key: body["key"].as_str().unwrap().to_owned() }
    }

    /// Points the global level at a plain SMTP server on loopback, with a default sender.
    pub async fn use_server(&self, port: u16) {
        self.set_global(json!({
            "connection": {"host": "127.0.0.1", "port": port, "timeout_s": 10},
            "policy": {"default_sender_enabled": true, "default_sender_name": "Plataforma", "default_sender_address": "noreply@plataforma.example"}
        }))
        .await;
    }

    pub async fn submit(&self, company: &Company, message: Value) -> (StatusCode, Value) {
        self.call(Method::POST, "/api/v1/messages", Some(&company.key), Some(message)).await
    }

    /// Submits and expects a 202; the message's id.
    pub async fn send(&self, company: &Company, message: Value) -> String {
        let (status, body) = self.submit(company, message).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    pub async fn message(&self, company: &Company, id: &str) -> Value {
        let (status, body) = self.call(Method::GET, &format!("/api/v1/messages/{id}"), Some(&company.key), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// The company's messages as the list API returns them for `query` (`status=sent&limit=1000`).
    pub async fn messages(&self, company: &Company, query: &str) -> Vec<Value> {
        let (status, body) =
            self.call(Method::GET, &format!("/api/v1/messages?{query}"), Some(&company.key), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body.as_array().expect("a list of messages").clone()
    }

    /// Waits until the message reaches `status`, and returns it.
    pub async fn wait_for_status(&self, company: &Company, id: &str, status: &str, limit: Duration) -> Value {
        let mut last = Value::Null;
        let found = tokio::time::timeout(limit, async {
            loop {
                let message = self.message(company, id).await;
                if message["status"] == status {
                    return message;
                }
                last = message;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        found.unwrap_or_else(|_| panic!("message {id} did not become {status} within {limit:?}; last seen: {last:#}"))
    }

    /// Runs the carteiro CLI on this instance's data directory.
    pub async fn cli(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        use tokio::io::AsyncWriteExt;
        let mut child = Command::new(env!("CARGO_BIN_EXE_carteiro"))
            .args(args)
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(self.store_args())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("CARTEIRO_HOSTNAME", "carteiro.test")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.unwrap_or_default().as_bytes()).await.unwrap();
        drop(input);
        tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("the CLI finishes")
            .unwrap()
    }
}

impl Drop for Carteiro {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        if let Database::Own = self.database {
            super::store::drop_database(&self.data_dir());
        }
    }
}

/// A plain user message from Ana to the given recipients.
pub fn user_message(to: &[&str]) -> Value {
    json!({
        "kind": "user", "to": to, "subject": "Tarefa 17 movida", "text": "A tarefa 17 foi movida.",
        "actor": {"id": "42", "name": "Ana Souza", "address": "ana@acme.example"}
    })
}

/// A system message to the given recipients.
pub fn system_message(to: &[&str]) -> Value {
    json!({"kind": "system", "to": to, "subject": "Recuperação de senha", "text": "Use o código 123456."})
}
