//! The store the tests run on: SQLite in each data directory (the default),
//! or, when `CARTEIRO_TEST_DATABASE_URL` names a PostgreSQL server, a fresh
//! database per data directory, so that every installation a test makes
//! (and every CLI run on it) has its own. The databases are named after the
//! data directory (`carteiro_test_…`) and dropped with it when the test ends;
//! the test command drops any left over by an interrupted run.

use std::path::Path;
use std::process::{Command, Stdio};

use sha2::Digest;

/// The PostgreSQL server the suite runs on, if any.
pub fn postgres_server() -> Option<String> {
    let url = std::env::var("CARTEIRO_TEST_DATABASE_URL").ok().filter(|u| !u.is_empty())?;
    // Any database named in the URL is replaced by each test's own.
    let (scheme, rest) = url.split_once("://").expect("CARTEIRO_TEST_DATABASE_URL is a postgres:// URL");
    Some(format!("{scheme}://{}", rest.split(['/', '?']).next().unwrap_or_default()))
}

pub fn on_postgres() -> bool {
    postgres_server().is_some()
}

/// The arguments that put the installation of `data_dir` on the suite's store:
/// none for SQLite, `--database-url` of its own fresh database for PostgreSQL.
pub fn args(data_dir: &Path) -> Vec<String> {
    let Some(server) = postgres_server() else { return Vec::new() };
    let name = database_name(data_dir);
    // Made once per data directory: a second run (a restart, the CLI) finds it.
    let created = psql(&server, &format!("CREATE DATABASE {name}"));
    assert!(
        created
            .as_ref()
            .is_ok_and(|out| out.status.success() || String::from_utf8_lossy(&out.stderr).contains("already exists")),
        "cannot create the test database {name} on {server}: {created:?}"
    );
    // Small pools: tests run side by side, several instances each, on one server.
    vec![
        "--database-url".to_owned(),
        format!("{server}/{name}"),
        "--database-max-connections".to_owned(),
        "4".to_owned(),
    ]
}

/// Drops the database of `data_dir`, if the suite runs on PostgreSQL.
pub fn drop_database(data_dir: &Path) {
    if let Some(server) = postgres_server() {
        let _ = psql(&server, &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", database_name(data_dir)));
    }
}

/// Every byte the store of `data_dir` holds: its SQLite files, or a dump of its PostgreSQL database.
pub fn contents(data_dir: &Path) -> Vec<(String, Vec<u8>)> {
    match postgres_server() {
        None => ["carteiro.db", "carteiro.db-wal"]
            .into_iter()
            .filter_map(|name| std::fs::read(data_dir.join(name)).ok().map(|bytes| (name.to_owned(), bytes)))
            .collect(),
        Some(server) => {
            let name = database_name(data_dir);
            let dump = Command::new("pg_dump").arg(format!("{server}/{name}")).output().expect("pg_dump runs");
            assert!(dump.status.success(), "pg_dump {name}: {}", String::from_utf8_lossy(&dump.stderr));
            vec![(format!("pg_dump of {name}"), dump.stdout)]
        }
    }
}

fn database_name(data_dir: &Path) -> String {
    let digest = sha2::Sha256::digest(data_dir.as_os_str().as_encoded_bytes());
    format!("carteiro_test_{}", hex::encode(&digest[..10]))
}

fn psql(server: &str, sql: &str) -> std::io::Result<std::process::Output> {
    Command::new("psql")
        .arg(format!("{server}/postgres"))
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .stdin(Stdio::null())
        .output()
}
