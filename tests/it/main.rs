//! The integration tests, one binary: real servers on 127.0.0.1:0 with the bundled model,
//! the real `capwatch` executable as a child process, a real pseudo-terminal, local receivers
//! for notifications. Each module tests one part end to end; `common` holds the helpers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

mod ab;
mod api;
mod auth;
mod chaos;
mod default_model;
mod demo;
mod discovery;
mod docs;
mod drift_server;
mod drill;
mod faults;
mod foreign;
mod fuzz;
mod headless;
mod instances;
mod kubernetes;
mod limits;
mod notify;
mod parity;
mod plan;
mod prober;
mod process;
mod prometheus;
mod report_html;
mod schema;
mod start_failures;
mod supervisor;
mod tls;
mod tui;
mod variants;
