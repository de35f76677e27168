//! Files for the infrastructure an operator already runs: Prometheus alerting rules and a
//! Grafana dashboard, both derived from the config so their thresholds match the
//! dashboard's, and Kubernetes objects sized from the model as it loads here
//! ([`measure`]). Generation and measuring only; `main.rs` writes the files.

pub mod grafana;
pub mod kubernetes;
pub mod measure;
pub mod prometheus_rules;
