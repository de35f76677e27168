//! The wire types that the server and the monitor both speak, so that neither imports the
//! other: injected faults (`/chaos`), drift (`/drift`), shadow agreement (`/health`). The
//! dashboard's records carry them too. Types, their checks and how they read; no I/O.

pub mod drift;
pub mod faults;
pub mod shadow;
