//! carteiro's rules, free of I/O: every type here is parsed once at the edge
//! (API, console, SMTP listener, CLI) and carried inward already valid.
//!
//! No tokio, no database, no network: the crate boundary keeps the rules
//! fast to test and a clean target for fuzzers.

pub mod address;
pub mod delivery;
pub mod error;
pub mod id;
pub mod message;
pub mod rate;
pub mod retry;
pub mod secret;
pub mod sender;
pub mod settings;
pub mod status;

pub use address::{EmailAddress, Mailbox};
pub use error::{FieldError, FieldErrors};
pub use secret::Secret;
