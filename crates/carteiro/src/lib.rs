//! carteiro, the program: API, services, store, delivery, worker and CLI
//! around the rules of `carteiro-core`.

pub mod api;
pub mod cache;
pub mod cli;
pub mod config;
pub mod console;
pub mod crypto;
pub mod delivery;
pub mod error;
pub mod i18n;
pub mod metrics;
pub mod service;
pub mod smtp_listener;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod worker;
