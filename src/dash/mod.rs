//! The monitoring side of capwatch (issue 4, in progress): statistics over probe results
//! and threshold alerts. Pure logic so far; the supervisor, prober, event loop and terminal
//! UI will build on these.
//!
//! Layout: [`stats`] (rolling window and session totals), [`alerts`] (rule state machines).

pub mod alerts;
pub mod stats;
