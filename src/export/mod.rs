//! Files for the monitoring stack an operator already runs: Prometheus alerting rules and
//! a Grafana dashboard, both derived from the config so their thresholds match the
//! dashboard's. Generation only; `main.rs` writes the files.

pub mod grafana;
pub mod prometheus_rules;
