//! carteiro's integration tests: the real binary, a fresh data directory per
//! test, and real peers (aiosmtpd, Postfix's smtp-sink) that stop on drop.

mod helpers;

mod access;
mod cli;
mod config_file;
mod console;
mod crash;
mod delivery;
mod disk;
mod dkim;
mod faults;
mod hostile;
mod lanes;
mod master_key;
mod message_correctness;
mod messages_api;
mod metrics;
mod oauth;
mod openapi;
mod protocol;
mod proxies;
mod scale_out;
mod secrets;
mod settings_api;
mod smtp_listener;
mod test_connection;
mod transports;
mod webhooks;
