//! Getting messages out: MIME building, TLS settings and the SMTP session.

pub mod mime;
pub mod smtp;
pub mod tls;
