//! The command line (SPEC §5): serve, migrate, send, test-connection, config, admin.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, bail};
use carteiro_core::id::{CompanySlug, UserRef};
use carteiro_core::message::{ActorIn, IdIn, MailboxIn, MessageIn};
use carteiro_core::settings::SettingsDoc;
use clap::{Parser, Subcommand};

use crate::config::{DeliveryConfig, MessageArgs, ServeArgs, StoreArgs, WorkerArgs, delivery_config};
use crate::crypto::{MasterKey, StagedKeyFile};
use crate::service::master_key::NotRotated;
use crate::service::test_connection::{TestConnectionIn, run as run_test};
use crate::service::{Actor, auth, config_file, dkim, settings, submit};
use crate::startup::{App, app_state, shutdown_on_signals};
use crate::state::AppState;

#[derive(Debug, Parser)]
#[command(name = "carteiro", version, about = "A self-hosted outbound e-mail gateway for business platforms.")]
pub struct Cli {
    /// Log format.
    #[arg(long, env = "CARTEIRO_LOG_FORMAT", value_enum, default_value = "text", global = true)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API and the delivery worker (and create the first administrator on a new store).
    Serve(ServeArgs),
    /// Apply the database migrations and exit (serve applies them too).
    Migrate(StoreArgs),
    /// Queue a message from the command line, through the same path as the API.
    Send(SendArgs),
    /// Connect to the SMTP server of a level, send a test e-mail, and show every step.
    TestConnection(TestArgs),
    /// Read the layered settings; export them to a TOML file and import them back.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage administrators.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Manage a company's DKIM signing keys and see the DNS records to publish.
    #[command(subcommand)]
    Dkim(DkimCommand),
}

#[derive(Debug, clap::Args)]
pub struct SendArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    messages: MessageArgs,
    /// The company sending (its slug).
    #[arg(long)]
    company: String,
    /// A JSON message document as in the API (`-` for standard input); the other message flags are then ignored.
    #[arg(long)]
    json: Option<PathBuf>,
    /// `system` (no acting user) or `user` (needs --actor-id and --actor-address).
    #[arg(long, default_value = "system")]
    kind: String,
    /// A recipient (`ana@example.com` or `Ana <ana@example.com>`); repeat for more.
    #[arg(long)]
    to: Vec<String>,
    /// A copy recipient; repeat for more.
    #[arg(long)]
    cc: Vec<String>,
    /// A blind copy recipient (not shown in the message); repeat for more.
    #[arg(long)]
    bcc: Vec<String>,
    /// The subject line.
    #[arg(long, default_value = "")]
    subject: String,
    /// The plain-text body (`-` reads standard input).
    #[arg(long)]
    text: Option<String>,
    /// The HTML body.
    #[arg(long)]
    html: Option<String>,
    /// The acting user's id in the platform (user messages).
    #[arg(long)]
    actor_id: Option<String>,
    /// The acting user's name.
    #[arg(long)]
    actor_name: Option<String>,
    /// The acting user's e-mail address.
    #[arg(long)]
    actor_address: Option<String>,
    /// Send at this RFC 3339 time instead of now.
    #[arg(long)]
    send_at: Option<String>,
    /// Submitting again with the same key returns the first message instead of queuing another.
    #[arg(long)]
    idempotency_key: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    messages: MessageArgs,
    /// Test the company's settings (default: the global level).
    #[arg(long)]
    company: Option<String>,
    /// Test this user's settings within --company.
    #[arg(long)]
    user: Option<String>,
    /// Test these unsaved settings (a JSON settings document) instead of the saved ones.
    #[arg(long)]
    settings: Option<PathBuf>,
    /// Where to send the test e-mail.
    #[arg(long)]
    to: String,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Show every effective value of a (company, user) and the level it comes from.
    Explain {
        #[command(flatten)]
        store: StoreArgs,
        /// The company (its slug).
        #[arg(long)]
        company: String,
        /// A user of the company (the platform's user id), for the user level.
        #[arg(long)]
        user: Option<String>,
    },
    /// Write every settings level (global, each company, each user) and the companies as TOML.
    Export {
        #[command(flatten)]
        store: StoreArgs,
        /// Include the secrets (passwords, tokens), sealed with the master key: an import opens
        /// them only on an installation with the same key. Without it, secrets are left out.
        #[arg(long)]
        with_secrets: bool,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Apply a TOML file of levels (as `config export` writes it): every level is checked
    /// first, and either all are saved in one transaction or, on any error, none.
    Import {
        #[command(flatten)]
        store: StoreArgs,
        /// The file (`-` for standard input).
        file: PathBuf,
        /// Check the file and show what would change, without changing anything.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create an administrator; with --company, one who manages only that company.
    Create {
        #[command(flatten)]
        store: StoreArgs,
        /// The user name to log in with.
        #[arg(long)]
        username: String,
        /// The company (its slug) this administrator manages; without it, a platform administrator.
        #[arg(long)]
        company: Option<String>,
        /// Read the password from standard input instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a new password for an administrator (ends their sessions).
    ResetPassword {
        #[command(flatten)]
        store: StoreArgs,
        /// The administrator's user name.
        #[arg(long)]
        username: String,
        /// Read the password from standard input instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Seal every stored secret (passwords, tokens, DKIM keys, webhook secrets) with a new
    /// master key, in one transaction. Stop every carteiro on the database first.
    /// With a key file, a new key is made and replaces it; with CARTEIRO_MASTER_KEY, give
    /// the new key in CARTEIRO_NEW_MASTER_KEY and start carteiro with it afterwards.
    RotateKey {
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum DkimCommand {
    /// List a company's keys, each with the DNS TXT record to publish.
    List {
        #[command(flatten)]
        store: StoreArgs,
        /// The company (its slug).
        #[arg(long)]
        company: String,
    },
    /// Make a key (or import one with --private-key) and print the DNS TXT record to publish.
    /// The newest key of a domain signs; older ones stay until removed.
    Create {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        company: String,
        /// The selector: the DNS name is SELECTOR._domainkey.DOMAIN.
        #[arg(long)]
        selector: String,
        /// The domain of the From addresses to sign.
        #[arg(long)]
        domain: String,
        /// ed25519 or rsa (2048 bits).
        #[arg(long, default_value = "ed25519")]
        algorithm: String,
        /// A private key in PEM to import instead of making one.
        #[arg(long)]
        private_key: Option<PathBuf>,
    },
    /// Remove a key, once its selector is no longer needed.
    Remove {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        company: String,
        #[arg(long)]
        selector: String,
    },
}

/// The state of an installation that exists: a mistyped `--data-dir` must be
/// said, not turned into a new, empty installation with a new master key.
async fn installed_state(
    store: &StoreArgs,
    master_key: Option<&str>,
    delivery: DeliveryConfig,
) -> anyhow::Result<AppState> {
    let database = store.data_dir.join("carteiro.db");
    anyhow::ensure!(
        store.database_url.is_some() || database.exists(),
        "there is no carteiro installation in {}: run the command where `carteiro serve` runs, or give its --data-dir (or --database-url)",
        store.data_dir.display()
    );
    app_state(store, master_key, delivery).await
}

/// Delivery settings for commands that only read or queue.
fn defaults() -> anyhow::Result<DeliveryConfig> {
    delivery_config(&MessageArgs::default(), &WorkerArgs::default())
}

fn env_secret(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let master_key = env_secret("CARTEIRO_MASTER_KEY");
    let master_key = master_key.as_deref();
    match cli.command {
        Command::Serve(args) => {
            let app = App::build(&args, master_key, env_secret("CARTEIRO_ADMIN_PASSWORD").as_deref()).await?;
            if let Some(password) = &app.generated_admin_password {
                println!(
                    "carteiro: created the platform administrator '{}' with the password {password}\n\
                     carteiro: it is shown this once; change it with `carteiro admin reset-password --username {}`",
                    auth::FIRST_ADMIN,
                    auth::FIRST_ADMIN
                );
            }
            println!("carteiro: API on http://{}/api/v1", app.local_addr());
            println!("carteiro: console on http://{}/", app.local_addr());
            if let Some(smtp) = app.smtp_addr() {
                println!("carteiro: SMTP submission on {smtp} (STARTTLS, AUTH with a company API key)");
            }
            app.run_until_stopped(shutdown_on_signals()).await
        }
        Command::Migrate(store) => {
            crate::store::open(&store).await?;
            println!("carteiro: the database is up to date");
            Ok(())
        }
        Command::Send(args) => send(args, master_key).await,
        Command::TestConnection(args) => test_connection(args, master_key).await,
        Command::Config(ConfigCommand::Explain { store, company, user }) => {
            let state = installed_state(&store, master_key, defaults()?).await?;
            let company = CompanySlug::parse("--company", &company)?;
            let user = user.map(|u| UserRef::parse("--user", &u)).transpose()?;
            let explained = settings::explain(&state, &company, user.as_ref()).await.map_err(service_error)?;
            println!("{}", serde_json::to_string_pretty(&explained)?);
            Ok(())
        }
        Command::Config(ConfigCommand::Export { store, with_secrets, out }) => {
            let state = installed_state(&store, master_key, defaults()?).await?;
            let text = config_file::export(&state, with_secrets).await.map_err(service_error)?;
            match out {
                Some(path) => {
                    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
                    println!("carteiro: wrote the configuration to {}", path.display());
                }
                None => print!("{text}"),
            }
            Ok(())
        }
        Command::Config(ConfigCommand::Import { store, file, dry_run }) => {
            let state = installed_state(&store, master_key, defaults()?).await?;
            import(&state, &read_input(&file)?, dry_run).await
        }
        Command::Admin(AdminCommand::Create { store, username, company, password_stdin }) => {
            let state = app_state(&store, master_key, defaults()?).await?;
            let company = company.map(|c| CompanySlug::parse("--company", &c)).transpose()?;
            let (password, generated) = password(password_stdin)?;
            auth::create_admin(&state, &Actor::Cli, &username, &password, company.as_ref())
                .await
                .map_err(service_error)?;
            report_password(&username, generated.then_some(&password));
            Ok(())
        }
        Command::Dkim(command) => dkim_command(command, master_key).await,
        Command::Admin(AdminCommand::ResetPassword { store, username, password_stdin }) => {
            let state = installed_state(&store, master_key, defaults()?).await?;
            let (password, generated) = password(password_stdin)?;
            auth::reset_password(&state, &Actor::Cli, &username, &password).await.map_err(service_error)?;
            report_password(&username, generated.then_some(&password));
            Ok(())
        }
        Command::Admin(AdminCommand::RotateKey { store }) => rotate_key(&store, master_key).await,
    }
}

async fn rotate_key(store: &StoreArgs, master_key: Option<&str>) -> anyhow::Result<()> {
    let state = installed_state(store, master_key, defaults()?).await?;
    let (new, encoded) = match env_secret("CARTEIRO_NEW_MASTER_KEY") {
        Some(encoded) => (
            MasterKey::from_base64(&encoded).context(
                "CARTEIRO_NEW_MASTER_KEY must be the base64 of 32 random bytes (try: openssl rand -base64 32)",
            )?,
            encoded,
        ),
        None if master_key.is_some() => anyhow::bail!(
            "the master key comes from CARTEIRO_MASTER_KEY: give the new one in CARTEIRO_NEW_MASTER_KEY (try: openssl rand -base64 32); nothing was changed"
        ),
        None => MasterKey::generate(),
    };
    // With a key file, the new key is on disk before any secret is sealed with it.
    let staged = master_key.is_none().then(|| StagedKeyFile::write(&store.data_dir, &encoded)).transpose()?;
    match crate::service::master_key::rotate(&state, &Actor::Cli, &new).await {
        Ok(count) => {
            let secrets = if count == 1 { "1 secret" } else { &format!("{count} secrets") };
            match staged {
                Some(staged) => {
                    staged.install()?;
                    println!(
                        "carteiro: sealed {secrets} with a new master key, now in {}",
                        store.data_dir.join("master.key").display()
                    );
                }
                None => println!(
                    "carteiro: sealed {secrets} with the key in CARTEIRO_NEW_MASTER_KEY: start every carteiro with it as CARTEIRO_MASTER_KEY"
                ),
            }
            Ok(())
        }
        Err(NotRotated::Refused(e)) => {
            if let Some(staged) = staged {
                staged.discard();
            }
            Err(service_error(e).context("the master key was not rotated; nothing was changed"))
        }
        // The new key is kept: the secrets may already be sealed with it.
        Err(NotRotated::Uncertain(e)) => Err(service_error(e).context(match staged {
            Some(staged) => crate::crypto::interrupted_rotation(staged.staged_path()),
            None => "the rotation may not have finished: the secrets may be sealed with either key; find which one opens them (`carteiro config explain` with CARTEIRO_MASTER_KEY set to each)".to_owned(),
        })),
    }
}

async fn dkim_command(command: DkimCommand, master_key: Option<&str>) -> anyhow::Result<()> {
    let print = |key: &dkim::DkimKeyOut| {
        let role = if key.signing { "signs" } else { "kept until removed" };
        println!("{} ({}, {role})\n  {} TXT \"{}\"", key.selector, key.algorithm, key.dns_name, key.dns_txt);
    };
    match command {
        DkimCommand::List { store, company } => {
            let state = installed_state(&store, master_key, defaults()?).await?;
            let company = CompanySlug::parse("--company", &company)?;
            dkim::list(&state, &company).await.map_err(service_error)?.iter().for_each(print);
        }
        DkimCommand::Create { store, company, selector, domain, algorithm, private_key } => {
            let state = installed_state(&store, master_key, defaults()?).await?;
            let company = CompanySlug::parse("--company", &company)?;
            let private_key_pem = private_key
                .map(|path| std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display())))
                .transpose()?;
            let input = dkim::DkimKeyIn { selector, domain, algorithm: Some(algorithm), private_key_pem };
            let key = dkim::create(&state, &Actor::Cli, &company, &input).await.map_err(service_error)?;
            print(&key);
            println!("carteiro: publish this TXT record; messages from {} are signed from now on", key.domain);
        }
        DkimCommand::Remove { store, company, selector } => {
            let state = installed_state(&store, master_key, defaults()?).await?;
            let company = CompanySlug::parse("--company", &company)?;
            dkim::remove(&state, &Actor::Cli, &company, &selector).await.map_err(service_error)?;
            println!("carteiro: removed the DKIM key {selector} of {company}");
        }
    }
    Ok(())
}

/// `config import`: every change listed, then applied (or, with `dry_run`, not).
async fn import(state: &AppState, text: &str, dry_run: bool) -> anyhow::Result<()> {
    let plan = config_file::plan(state, text).await.map_err(|e| anyhow::anyhow!("{e:#}"))?;
    let changes = plan.changes();
    for change in &changes {
        println!("{change}");
    }
    if plan.is_empty() {
        println!("carteiro: nothing to change: the stored settings already match the file");
    } else if dry_run {
        println!("carteiro: dry run: {} changes in {}; nothing was changed", changes.len(), plan.summary());
    } else {
        config_file::apply(state, &plan, None).await.map_err(service_error)?;
        println!("carteiro: applied {} changes in {}", changes.len(), plan.summary());
    }
    Ok(())
}

fn service_error(e: crate::service::ServiceError) -> anyhow::Error {
    anyhow::anyhow!("{e:#}")
}

fn password(from_stdin: bool) -> anyhow::Result<(String, bool)> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).context("cannot read the password from standard input")?;
        Ok((line.trim_end_matches(['\r', '\n']).to_owned(), false))
    } else {
        Ok((auth::random_token(""), true))
    }
}

fn report_password(username: &str, generated: Option<&String>) {
    match generated {
        Some(p) => println!("carteiro: administrator '{username}' now has the password {p} (shown this once)"),
        None => println!("carteiro: administrator '{username}' updated"),
    }
}

fn read_input(path: &std::path::Path) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        Ok(text)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
    }
}

async fn send(args: SendArgs, master_key: Option<&str>) -> anyhow::Result<()> {
    let state: AppState =
        installed_state(&args.store, master_key, delivery_config(&args.messages, &WorkerArgs::default())?).await?;
    let company = CompanySlug::parse("--company", &args.company)?;
    let message = match &args.json {
        Some(path) => serde_json::from_str(&read_input(path)?).context("the message document is not valid")?,
        None => {
            let text = match args.text.as_deref() {
                Some("-") => Some(read_input(std::path::Path::new("-"))?),
                other => other.map(str::to_owned),
            };
            let actor = args.actor_id.map(|id| ActorIn {
                id: IdIn::Text(id),
                name: args.actor_name,
                address: args.actor_address,
            });
            MessageIn {
                kind: Some(args.kind),
                to: args.to.into_iter().map(MailboxIn::Text).collect(),
                cc: args.cc.into_iter().map(MailboxIn::Text).collect(),
                bcc: args.bcc.into_iter().map(MailboxIn::Text).collect(),
                subject: Some(args.subject),
                text,
                html: args.html,
                actor,
                send_at: args.send_at,
                idempotency_key: args.idempotency_key,
                ..MessageIn::default()
            }
        }
    };
    let accepted = submit::submit_one(&state, &company, &message).await.map_err(service_error)?;
    println!("{}", serde_json::to_string(&accepted)?);
    Ok(())
}

async fn test_connection(args: TestArgs, master_key: Option<&str>) -> anyhow::Result<()> {
    let state =
        installed_state(&args.store, master_key, delivery_config(&args.messages, &WorkerArgs::default())?).await?;
    let settings: Option<SettingsDoc> = match &args.settings {
        Some(path) => Some(serde_json::from_str(&read_input(path)?).context("the settings document is not valid")?),
        None => None,
    };
    let input = TestConnectionIn { company: args.company, user: args.user, settings, to: args.to };
    let target = input.target().map_err(|e| anyhow::anyhow!("{e}"))?;
    let report = run_test(&state, &Actor::Cli, &target, input.settings.as_ref()).await.map_err(service_error)?;
    for step in &report.steps {
        println!("{} {:<9} {:>6} ms  {}", if step.ok { "ok  " } else { "FAIL" }, step.step, step.ms, step.detail);
    }
    if let Some(hint) = &report.hint {
        println!("hint: {}", hint.en);
    }
    if !report.ok {
        bail!("the test e-mail could not be sent");
    }
    println!("the test e-mail was accepted by the server");
    Ok(())
}
