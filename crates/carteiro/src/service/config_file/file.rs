//! The configuration file as text: TOML in, levels and companies out, and
//! back. Pure: no store, no master key (secrets stay sealed strings here).
//!
//! ```toml
//! [global.connection]            # the global level's settings document
//! host = "smtp.example.com"
//! password_sealed = "v1:…"       # with `config export --with-secrets`
//! [global.policy]
//! default_sender_address = "noreply@example.com"
//! [companies.acme]               # a company: its name and own address
//! name = "ACME Ltda"
//! [companies.acme.connection]    # the company level
//! [companies.acme.users.42.policy]   # the level of user 42 of acme
//! ```

use std::collections::BTreeMap;
use std::fmt;

use carteiro_core::id::{CompanySlug, UserRef};
use carteiro_core::settings::{ConnectionDoc, PolicyDoc, Scope, SettingsDoc, WriteOnly, connection, oauth, proxy};
use carteiro_core::{FieldError, Secret};
use serde::de::DeserializeOwned;
use toml::{Table, Value};

/// Beside a secret's name, the key of its sealed form: `password_sealed`.
pub const SEALED_SUFFIX: &str = "_sealed";

/// Every secret a level may hold, by its path in the settings document.
pub const SECRET_PATHS: [&str; 5] =
    [connection::PASSWORD, proxy::PASSWORD, oauth::ACCESS_TOKEN, oauth::CLIENT_SECRET, oauth::REFRESH_TOKEN];

/// A mistake in the file and where it is:
/// `companies.acme.connection.timeout_s: timeout_s must be between 10 and 180, got 5`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// The dotted path of the key in the file; empty for the file as a whole.
    pub path: String,
    pub message: String,
}

impl FileError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { path: path.into(), message: message.into() }
    }

    /// A validation error of a document at `base` (a level, a company), placed in the file.
    /// The sentence names the field by its path in the document; here the path says where.
    pub fn at(base: &str, error: &FieldError) -> Self {
        let last = error.field.rsplit('.').next().unwrap_or(&error.field);
        let message = match error.message.strip_prefix(error.field.as_str()) {
            Some(rest) if !error.field.is_empty() => format!("{last}{rest}"),
            _ => error.message.clone(),
        };
        Self { path: join(base, &error.field), message }
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() { f.write_str(&self.message) } else { write!(f, "{}: {}", self.path, self.message) }
    }
}

/// `base.rest`, either side possibly empty.
pub fn join(base: &str, rest: &str) -> String {
    match (base.is_empty(), rest.is_empty()) {
        (true, _) => rest.to_owned(),
        (false, true) => base.to_owned(),
        (false, false) => format!("{base}.{rest}"),
    }
}

/// A key as TOML writes it: bare when it may be (`acme`, `42`), else quoted (`"ana.souza@acme"`).
pub fn toml_key(key: &str) -> String {
    let bare = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if bare { key.to_owned() } else { Value::String(key.to_owned()).to_string() }
}

/// How the file names a level: `global`, `companies.acme`, `companies.acme.users.42`.
pub fn level_path(scope: &Scope) -> String {
    match scope {
        Scope::Global => "global".to_owned(),
        Scope::Company(c) => company_path(c),
        Scope::User(c, u) => format!("{}.users.{}", company_path(c), toml_key(u.as_str())),
    }
}

pub fn company_path(slug: &CompanySlug) -> String {
    format!("companies.{}", toml_key(slug.as_str()))
}

/// One level as the file gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct LevelEntry {
    pub scope: Scope,
    /// Without the sealed secrets; a secret in clear stays where it was written.
    pub doc: SettingsDoc,
    /// Secrets sealed with the master key, by their path in the document (`connection.password`).
    pub sealed: BTreeMap<&'static str, String>,
}

/// A company the file names, with its name and own address when it gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompanyEntry {
    pub slug: CompanySlug,
    pub name: Option<String>,
    pub email: Option<String>,
}

/// Everything a configuration file holds, in file order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigFile {
    pub companies: Vec<CompanyEntry>,
    pub levels: Vec<LevelEntry>,
}

impl ConfigFile {
    /// Reads what the file holds, and every mistake of shape found on the way (a
    /// level with a mistake is left out; the others are still read, to be checked).
    pub fn parse(text: &str) -> (Self, Vec<FileError>) {
        let mut file = Self::default();
        let mut errors = Vec::new();
        let table: Table = match toml::from_str(text) {
            Ok(table) => table,
            Err(e) => return (file, vec![syntax_error(text, &e)]),
        };
        for (key, value) in table {
            match key.as_str() {
                "global" => {
                    if let Some(table) = expect_table("global", value, &mut errors) {
                        file.read_level(Scope::Global, table, &mut errors);
                    }
                }
                "companies" => {
                    for (slug, company) in expect_table("companies", value, &mut errors).unwrap_or_default() {
                        file.read_company(&slug, company, &mut errors);
                    }
                }
                other => errors.push(FileError::new(
                    toml_key(other),
                    "unknown table: a configuration file holds `global` and `companies`",
                )),
            }
        }
        (file, errors)
    }

    fn read_company(&mut self, key: &str, value: Value, errors: &mut Vec<FileError>) {
        let path = format!("companies.{}", toml_key(key));
        let slug = CompanySlug::parse("slug", key).map_err(|e| errors.push(FileError::new(&path, e.message)));
        let Some(mut table) = expect_table(&path, value, errors) else { return };
        let Ok(slug) = slug else { return };
        let mut text = |name: &str, table: &mut Table| match table.remove(name) {
            Some(Value::String(s)) => Some(s),
            Some(_) => {
                errors.push(FileError::new(join(&path, name), format!("{name} must be text")));
                None
            }
            None => None,
        };
        let name = text("name", &mut table);
        let email = text("email", &mut table);
        let users = table.remove("users");
        self.companies.push(CompanyEntry { slug: slug.clone(), name, email });
        self.read_level_keys(Scope::Company(slug.clone()), table, "name, email, connection, policy, users", errors);
        let Some(users) = users else { return };
        let users_path = join(&path, "users");
        for (user, value) in expect_table(&users_path, users, errors).unwrap_or_default() {
            let user_path = join(&users_path, &toml_key(&user));
            let user = UserRef::parse("user id", &user).map_err(|e| errors.push(FileError::new(&user_path, e.message)));
            if let (Some(table), Ok(user)) = (expect_table(&user_path, value, errors), user) {
                self.read_level(Scope::User(slug.clone(), user), table, errors);
            }
        }
    }

    /// A table that is a level by itself (`global`, a user): it needs one of its blocks.
    fn read_level(&mut self, scope: Scope, table: Table, errors: &mut Vec<FileError>) {
        if !table.contains_key("connection") && !table.contains_key("policy") {
            errors.push(FileError::new(
                level_path(&scope),
                "a level needs a connection or a policy table (`policy = {}` inherits every field)",
            ));
        }
        self.read_level_keys(scope, table, "connection, policy", errors);
    }

    /// The `connection` and `policy` of a level; no other key is allowed. A table
    /// with neither is no level (a company given by its name only).
    fn read_level_keys(&mut self, scope: Scope, mut table: Table, allowed: &str, errors: &mut Vec<FileError>) {
        let path = level_path(&scope);
        let connection = table.remove("connection");
        let policy = table.remove("policy");
        for key in table.keys() {
            errors.push(FileError::new(join(&path, &toml_key(key)), format!("unknown key: expected one of {allowed}")));
        }
        if connection.is_none() && policy.is_none() {
            return;
        }
        let before = errors.len();
        let mut sealed = BTreeMap::new();
        let connection = connection.and_then(|mut value| {
            take_sealed(&path, &mut value, &mut sealed, errors);
            deserialize::<ConnectionDoc>(&join(&path, "connection"), value, errors)
        });
        let policy = policy.and_then(|value| deserialize::<PolicyDoc>(&join(&path, "policy"), value, errors));
        if errors.len() == before {
            self.levels.push(LevelEntry { scope, doc: SettingsDoc { connection, policy }, sealed });
        }
    }
}

fn expect_table(path: &str, value: Value, errors: &mut Vec<FileError>) -> Option<Table> {
    match value {
        Value::Table(table) => Some(table),
        other => {
            errors.push(FileError::new(path, format!("must be a table, got {}", other.type_str())));
            None
        }
    }
}

/// Where a secret sits in a connection table: the tables above it, and its own name.
fn secret_place(path: &'static str) -> (Vec<&'static str>, &'static str) {
    let mut parts: Vec<&'static str> = path.split('.').skip(1).collect();
    let name = parts.pop().expect("a secret path names a field");
    (parts, name)
}

fn table_at<'a>(mut table: &'a mut Table, parents: &[&str]) -> Option<&'a mut Table> {
    for parent in parents {
        table = table.get_mut(*parent)?.as_table_mut()?;
    }
    Some(table)
}

/// Takes the `…_sealed` keys out of a connection table, by the secret's path.
fn take_sealed(
    level: &str,
    connection: &mut Value,
    sealed: &mut BTreeMap<&'static str, String>,
    errors: &mut Vec<FileError>,
) {
    let Some(table) = connection.as_table_mut() else { return };
    for secret in SECRET_PATHS {
        let (parents, name) = secret_place(secret);
        let Some(table) = table_at(table, &parents) else { continue };
        let sealed_key = format!("{name}{SEALED_SUFFIX}");
        let Some(value) = table.remove(&sealed_key) else { continue };
        let at = join(level, &format!("{secret}{SEALED_SUFFIX}"));
        let in_clear = table.get(name).and_then(Value::as_str).is_some_and(|v| !v.is_empty());
        match value {
            Value::String(_) if in_clear => {
                errors.push(FileError::new(at, format!("give either {name} or {sealed_key}, not both")));
            }
            Value::String(value) => {
                sealed.insert(secret, value);
            }
            _ => errors.push(FileError::new(at, format!("{sealed_key} must be text, as `config export` writes it"))),
        }
    }
}

/// A block of a level, or the first mistake of shape in it. A secret's value is never echoed.
fn deserialize<T: DeserializeOwned>(path: &str, value: Value, errors: &mut Vec<FileError>) -> Option<T> {
    let error = match serde_path_to_error::deserialize::<_, T>(value) {
        Ok(doc) => return Some(doc),
        Err(e) => e,
    };
    let inner = error.path().to_string();
    let at = if inner == "." { path.to_owned() } else { join(path, &inner) };
    let last = at.rsplit('.').next().unwrap_or_default();
    let message = if SECRET_PATHS.iter().any(|s| s.ends_with(&format!(".{last}"))) {
        format!("{last} must be text")
    } else {
        error.inner().message().to_owned()
    };
    errors.push(FileError::new(at, message));
    None
}

/// A TOML syntax error: its line and column, never the line itself (it may hold a secret).
fn syntax_error(text: &str, error: &toml::de::Error) -> FileError {
    let place = error.span().map(|span| {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().unwrap_or_default().chars().count() + 1;
        format!(" at line {line}, column {column}")
    });
    FileError::new("", format!("the file is not valid TOML{}: {}", place.unwrap_or_default(), error.message()))
}

/// Puts an opened secret into the document at its path, as if typed there.
pub fn set_secret(doc: &mut SettingsDoc, path: &str, secret: &Secret) {
    let value = Some(WriteOnly(secret.expose().to_owned()));
    let connection = doc.connection.get_or_insert_default();
    match path {
        connection::PASSWORD => connection.password = value,
        proxy::PASSWORD => connection.proxy.get_or_insert_default().password = value,
        oauth::ACCESS_TOKEN => connection.oauth.get_or_insert_default().access_token = value,
        oauth::CLIENT_SECRET => connection.oauth.get_or_insert_default().client_secret = value,
        oauth::REFRESH_TOKEN => connection.oauth.get_or_insert_default().refresh_token = value,
        _ => {}
    }
}

/// The document with every secret taken out: what may be written to a file.
fn without_secrets(doc: &SettingsDoc) -> SettingsDoc {
    let mut doc = doc.clone();
    if let Some(c) = doc.connection.as_mut() {
        c.password = None;
        if let Some(p) = c.proxy.as_mut() {
            p.password = None;
        }
        if let Some(o) = c.oauth.as_mut() {
            o.access_token = None;
            o.client_secret = None;
            o.refresh_token = None;
        }
    }
    doc
}

const HEADER: &str = "\
# carteiro configuration: the settings levels (global, each company, each user)
# and the companies. Apply it with `carteiro config import FILE` (add --dry-run
# to see the differences first) or `carteiro serve --config FILE`. A level
# written here replaces the stored one; levels left out are kept as they are.
";
const WITHOUT_SECRETS: &str = "\
# Secrets are left out: a level that leaves one out keeps the stored one while
# its server (or proxy, or token endpoint) and user name stay the same.
";
const WITH_SECRETS: &str = "\
# The *_sealed values are secrets sealed with this installation's master key,
# each for its own level and field: they open only with the same key.
";

/// The file `config export` writes: every company (name, address, level, users) and every level.
pub fn render(
    companies: &[CompanyEntry],
    levels: &[LevelEntry],
    with_secrets: bool,
) -> Result<String, toml::ser::Error> {
    let mut root = Table::new();
    let mut by_company: BTreeMap<&str, Table> = BTreeMap::new();
    for company in companies {
        let mut table = Table::new();
        if let Some(name) = &company.name {
            table.insert("name".to_owned(), Value::String(name.clone()));
        }
        if let Some(email) = &company.email {
            table.insert("email".to_owned(), Value::String(email.clone()));
        }
        by_company.insert(company.slug.as_str(), table);
    }
    for level in levels {
        let table = level_table(level)?;
        match &level.scope {
            Scope::Global => {
                root.insert("global".to_owned(), Value::Table(table));
            }
            Scope::Company(c) => by_company.entry(c.as_str()).or_default().extend(table),
            Scope::User(c, u) => {
                let users = by_company.entry(c.as_str()).or_default().entry("users").or_insert(Table::new().into());
                if let Some(users) = users.as_table_mut() {
                    users.insert(u.as_str().to_owned(), Value::Table(table));
                }
            }
        }
    }
    // The users of a company come after its own level.
    for table in by_company.values_mut() {
        if let Some(users) = table.remove("users") {
            table.insert("users".to_owned(), users);
        }
    }
    if !by_company.is_empty() {
        let companies = by_company.into_iter().map(|(slug, table)| (slug.to_owned(), Value::Table(table))).collect();
        root.insert("companies".to_owned(), Value::Table(companies));
    }
    let note = if with_secrets { WITH_SECRETS } else { WITHOUT_SECRETS };
    Ok(format!("{HEADER}{note}\n{}", toml::to_string_pretty(&root)?))
}

/// A level's `connection` and `policy`, with its sealed secrets beside the fields they stand for.
fn level_table(level: &LevelEntry) -> Result<Table, toml::ser::Error> {
    let doc = without_secrets(&level.doc);
    let mut table = Table::new();
    if let Some(connection) = &doc.connection {
        let mut value = Value::try_from(connection)?;
        if let Some(connection) = value.as_table_mut() {
            for (path, sealed) in &level.sealed {
                let (parents, name) = secret_place(path);
                if let Some(table) = table_at(connection, &parents) {
                    table.insert(format!("{name}{SEALED_SUFFIX}"), Value::String(sealed.clone()));
                }
            }
        }
        table.insert("connection".to_owned(), value);
    }
    if let Some(policy) = &doc.policy {
        table.insert("policy".to_owned(), Value::try_from(policy)?);
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acme() -> CompanySlug {
        CompanySlug::parse("slug", "acme").unwrap()
    }

    fn user(id: &str) -> UserRef {
        UserRef::parse("user", id).unwrap()
    }

    #[test]
    fn levels_are_named_by_their_place_in_the_file() {
        assert_eq!(level_path(&Scope::Global), "global");
        assert_eq!(level_path(&Scope::Company(acme())), "companies.acme");
        assert_eq!(level_path(&Scope::User(acme(), user("42"))), "companies.acme.users.42");
        assert_eq!(
            level_path(&Scope::User(acme(), user("ana.souza@acme"))),
            r#"companies.acme.users."ana.souza@acme""#
        );
        assert_eq!(toml_key("a\"b"), r#"'a"b'"#);
    }

    #[test]
    fn a_field_error_is_placed_in_the_file_without_repeating_the_field() {
        let e = FieldError::new("connection.timeout_s", "connection.timeout_s must be between 10 and 180, got 5");
        assert_eq!(
            FileError::at("companies.acme", &e).to_string(),
            "companies.acme.connection.timeout_s: timeout_s must be between 10 and 180, got 5"
        );
        let e = FieldError::new("name", "the name is odd");
        assert_eq!(FileError::at("companies.acme", &e).to_string(), "companies.acme.name: the name is odd");
    }

    #[test]
    fn reads_levels_companies_and_sealed_secrets() {
        let (file, errors) = ConfigFile::parse(
            r#"
            [global.connection]
            host = "smtp.example.com"
            port = 587
            password_sealed = "v1:abc"
            [global.policy]
            [companies.acme]
            name = "ACME Ltda"
            [companies.acme.users."ana.souza".connection]
            host = "smtp.acme.example"
            proxy = { enabled = true, password_sealed = "v1:def" }
            [companies.beta.policy]
            force_default_sender = true
            "#,
        );
        assert_eq!(errors, []);
        let scopes: Vec<String> = file.levels.iter().map(|l| level_path(&l.scope)).collect();
        assert_eq!(scopes, ["global", r#"companies.acme.users."ana.souza""#, "companies.beta"]);
        assert_eq!(file.levels[0].sealed, BTreeMap::from([(connection::PASSWORD, "v1:abc".to_owned())]));
        assert_eq!(file.levels[0].doc.connection.as_ref().unwrap().port, Some(587));
        assert_eq!(file.levels[0].doc.policy, Some(PolicyDoc::default()));
        assert_eq!(file.levels[1].sealed, BTreeMap::from([(proxy::PASSWORD, "v1:def".to_owned())]));
        assert_eq!(file.companies.len(), 2);
        assert_eq!(file.companies[0].name.as_deref(), Some("ACME Ltda"));
        assert_eq!(file.companies[1].name, None, "beta is named by its slug only");
    }

    #[test]
    fn every_mistake_of_shape_is_named_by_its_path() {
        let (file, errors) = ConfigFile::parse(
            r#"
            [global.connection]
            port = "587"
            [companies.acme.connection]
            hots = "x"
            [companies.acme.users.42.connection]
            password = 1234
            [companies.Bad.policy]
            [companies.beta]
            nmae = "Beta"
            [companies.gamma.users.7]
            [elsewhere]
            "#,
        );
        let said: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            said,
            [
                "global.connection.port: invalid type: string \"587\", expected i64",
                "companies.acme.connection.hots: unknown field `hots`, expected one of `enabled`, `transport`, `host`, `port`, `security`, `auth_enabled`, `auth_mechanism`, `username`, `password`, `password_set`, `timeout_s`, `max_sessions`, `rate_per_minute`, `tls_verify`, `tls_ca_pem`, `proxy`, `oauth`, `sendmail_command`, `pickup_dir`",
                "companies.acme.users.42.connection.password: password must be text",
                "companies.Bad: slug must be 2 to 63 characters of a-z, 0-9 and '-', starting with a letter or digit, got \"Bad\"",
                "companies.beta.nmae: unknown key: expected one of name, email, connection, policy, users",
                "companies.gamma.users.7: a level needs a connection or a policy table (`policy = {}` inherits every field)",
                "elsewhere: unknown table: a configuration file holds `global` and `companies`",
            ]
        );
        assert!(file.levels.is_empty(), "{file:?}");
    }

    #[test]
    fn a_syntax_error_gives_its_place_but_not_the_line() {
        let (_, errors) = ConfigFile::parse("[global.connection]\npassword = \"hunter2\n");
        assert_eq!(errors.len(), 1);
        let said = errors[0].to_string();
        assert!(said.starts_with("the file is not valid TOML at line 2, column "), "{said}");
        assert!(!said.contains("hunter2"), "{said}");
    }

    #[test]
    fn a_secret_is_given_either_in_clear_or_sealed() {
        let (_, errors) = ConfigFile::parse("[global.connection]\npassword = \"x\"\npassword_sealed = \"v1:abc\"\n");
        assert_eq!(
            errors,
            [FileError::new("global.connection.password_sealed", "give either password or password_sealed, not both")]
        );
    }

    #[test]
    fn renders_what_it_reads_back_without_any_secret_in_clear() {
        let mut doc = SettingsDoc {
            connection: Some(ConnectionDoc {
                host: Some("smtp.example.com".into()),
                port: Some(465),
                password_set: Some(true),
                ..Default::default()
            }),
            policy: Some(PolicyDoc { default_sender_name: Some("ACME".into()), ..Default::default() }),
        };
        set_secret(&mut doc, connection::PASSWORD, &Secret::new("hunter2"));
        let levels = vec![
            LevelEntry {
                scope: Scope::Global,
                doc: doc.clone(),
                sealed: BTreeMap::from([(connection::PASSWORD, "v1:sealed".to_owned())]),
            },
            LevelEntry { scope: Scope::User(acme(), user("ana@acme")), doc: doc.clone(), sealed: BTreeMap::new() },
        ];
        let companies = vec![CompanyEntry { slug: acme(), name: Some("ACME Ltda".into()), email: None }];

        let text = render(&companies, &levels, true).unwrap();

        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("[companies.acme.users.\"ana@acme\".connection]"), "{text}");
        let (file, errors) = ConfigFile::parse(&text);
        assert_eq!(errors, []);
        assert_eq!(file.companies, companies);
        let expected = without_secrets(&doc);
        assert_eq!(file.levels[0].doc, expected);
        assert_eq!(file.levels[0].sealed, levels[0].sealed);
        assert_eq!(file.levels[1].scope, levels[1].scope);
        assert_eq!(file.levels[1].doc, expected);
    }

    #[test]
    fn an_opened_secret_goes_back_to_its_field() {
        let mut doc = SettingsDoc::default();
        for path in SECRET_PATHS {
            set_secret(&mut doc, path, &Secret::new(path));
        }
        let c = doc.connection.unwrap();
        assert_eq!(c.password, Some(WriteOnly(connection::PASSWORD.into())));
        assert_eq!(c.proxy.unwrap().password, Some(WriteOnly(proxy::PASSWORD.into())));
        let o = c.oauth.unwrap();
        assert_eq!(o.access_token, Some(WriteOnly(oauth::ACCESS_TOKEN.into())));
        assert_eq!(o.client_secret, Some(WriteOnly(oauth::CLIENT_SECRET.into())));
        assert_eq!(o.refresh_token, Some(WriteOnly(oauth::REFRESH_TOKEN.into())));
    }
}
