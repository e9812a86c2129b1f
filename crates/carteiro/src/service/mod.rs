//! The use cases, shared by the API, the CLI and (later) the console and the
//! SMTP listener. They parse nothing from the wire themselves beyond the
//! documents of SPEC §7, and they never format HTTP.

pub mod auth;
pub mod config_file;
pub mod dkim;
pub mod master_key;
pub mod messages;
pub mod settings;
pub mod submit;
pub mod tenants;
pub mod test_connection;
pub mod throttle;
pub mod webhooks;

use carteiro_core::FieldErrors;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Invalid(FieldErrors),
    /// Something the caller named does not exist (or is not theirs to see).
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The request is valid but cannot be carried out as things stand.
    #[error("{message}")]
    Unprocessable { code: &'static str, field: Option<String>, message: String },
    /// The request is valid but not this caller's to make (a company
    /// administrator choosing what only a platform administrator may), by field.
    #[error("{0}")]
    Forbidden(FieldErrors),
    #[error("the user name or password is wrong")]
    BadCredentials,
    /// Too many wrong passwords for this user name lately.
    #[error("too many failed logins for this user name: try again in {seconds} seconds")]
    Throttled { seconds: u64 },
    #[error("{0}")]
    Unavailable(String),
    /// The database's disk is full.
    #[error("the database's disk is full: {0}")]
    Full(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict => Self::Conflict("it already exists".to_owned()),
            StoreError::Unavailable(why) => Self::Unavailable(why),
            StoreError::Full(why) => Self::Full(why),
            StoreError::Other(e) => Self::Internal(e),
        }
    }
}

impl From<carteiro_core::FieldError> for ServiceError {
    fn from(error: carteiro_core::FieldError) -> Self {
        Self::Invalid(error.into())
    }
}

impl From<FieldErrors> for ServiceError {
    fn from(errors: FieldErrors) -> Self {
        Self::Invalid(errors)
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;

/// Who is acting: for the audit log, and for what only the platform may do.
#[derive(Debug, Clone)]
pub enum Actor {
    /// An administrator through the API, with the scope they manage.
    Admin(auth::Admin),
    /// The operator at the host's command line (or its configuration file).
    Cli,
    System,
}

impl Actor {
    pub fn label(&self) -> String {
        match self {
            Self::Admin(admin) => format!("admin:{}", admin.username),
            Self::Cli => "cli".to_owned(),
            Self::System => "carteiro".to_owned(),
        }
    }

    /// Whether it may make carteiro act on its own host (run a program, write
    /// files, call a local port): the operator and platform administrators
    /// may; a company administrator, a tenant, may not.
    pub fn may_act_on_the_host(&self) -> bool {
        match self {
            Self::Admin(admin) => admin.is_platform(),
            Self::Cli | Self::System => true,
        }
    }
}
