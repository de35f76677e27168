//! The probe contract: how to ask the watched service for its health and for a caption,
//! and where the answer keeps the caption — from a preset (`capwatch`, `fastapi`,
//! `hf-inference`) with the config's overrides, and header values read from the
//! environment once, at start. Pure data after [`ProbeContract::resolve`]; secrets are kept
//! out of `Debug` and of every message.

use std::fmt;

use crate::config::{HealthMethod, ServiceContractConfig, ServicePreset, Upload};

/// The environment variable the monitor takes a capwatch server's API key from (`--url`).
pub const API_KEY_ENV: &str = "CAPWATCH_API_KEY";
/// Everything the prober needs to talk to one service.
#[derive(Clone, PartialEq)]
pub struct ProbeContract {
    /// `capwatch`, `fastapi`, `hf-inference`, or `<preset> + overrides`.
    pub shape: String,
    /// The service is `capwatch serve` as its preset describes it (no overrides): it has
    /// `/drift` and, when started with `--chaos`, `/chaos`.
    pub speaks_capwatch: bool,
    pub health_method: HealthMethod,
    pub health_path: String,
    pub caption_path: String,
    pub upload: Upload,
    pub multipart_field: String,
    pub caption_pointer: String,
    pub model_time_pointers: Vec<String>,
    pub server_time_pointer: Option<String>,
    /// JSON pointer to the time the request waited in the server's queue, in ms (its service
    /// time is the total less this).
    pub queue_time_pointer: Option<String>,
    /// Header names and values (values are secrets).
    pub headers: Vec<(String, String)>,
}

impl fmt::Debug for ProbeContract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("ProbeContract")
            .field("shape", &self.shape)
            .field("health", &(self.health_method, &self.health_path))
            .field("caption_path", &self.caption_path)
            .field("upload", &(self.upload, &self.multipart_field))
            .field("caption_pointer", &self.caption_pointer)
            .field("headers", &names)
            .finish_non_exhaustive()
    }
}

/// A contract that cannot be used: the error names the config key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    #[error(
        "monitoring.service.headers[{index}].env: environment variable {var} is not set (it must hold the value of the {header} header)"
    )]
    MissingHeaderValue { index: usize, var: String, header: String },
    #[error(
        "monitoring.service.{key}: {value:?} is not a JSON pointer (it starts with `/`, e.g. /caption or /0/generated_text)"
    )]
    BadPointer { key: &'static str, value: String },
    #[error("monitoring.service.{key}: {value:?} is not a path (it starts with `/`)")]
    BadPath { key: &'static str, value: String },
}

impl ProbeContract {
    /// The preset's contract, without overrides.
    pub fn preset(preset: ServicePreset) -> Self {
        let (caption_path, upload, caption_pointer, model_times, server_time, queue_time) = match preset {
            ServicePreset::Capwatch => (
                "/caption",
                Upload::Raw,
                "/caption",
                vec!["/timings_ms/encoder".to_owned(), "/timings_ms/decoder".to_owned()],
                Some("/timings_ms/total".to_owned()),
                Some("/timings_ms/queue".to_owned()),
            ),
            ServicePreset::Fastapi => ("/caption", Upload::Multipart, "/caption", Vec::new(), None, None),
            ServicePreset::HfInference => ("/", Upload::Raw, "/0/generated_text", Vec::new(), None, None),
        };
        Self {
            shape: preset.name().to_owned(),
            speaks_capwatch: preset == ServicePreset::Capwatch,
            health_method: HealthMethod::Get,
            health_path: "/health".to_owned(),
            caption_path: caption_path.to_owned(),
            upload,
            multipart_field: "file".to_owned(),
            caption_pointer: caption_pointer.to_owned(),
            model_time_pointers: model_times,
            server_time_pointer: server_time,
            queue_time_pointer: queue_time,
            headers: Vec::new(),
        }
    }

    /// The contract sending `Authorization: Bearer <key>` on every request (a capwatch server
    /// with `service.auth`), unless an `Authorization` header is configured already.
    pub fn with_api_key(mut self, key: Option<String>) -> Self {
        let configured = self.headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("authorization"));
        if let Some(key) = key.filter(|_| !configured) {
            self.headers.push(("Authorization".to_owned(), format!("Bearer {key}")));
        }
        self
    }

    /// The configured contract; header values come from `env` (the process environment).
    pub fn resolve(
        config: &ServiceContractConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ContractError> {
        let mut contract = Self::preset(config.preset);
        let path = |key: &'static str, value: &Option<String>| match value {
            Some(value) if !value.starts_with('/') => Err(ContractError::BadPath { key, value: value.clone() }),
            other => Ok(other.clone()),
        };
        let pointer = |key: &'static str, value: &String| {
            if value.starts_with('/') {
                Ok(value.clone())
            } else {
                Err(ContractError::BadPointer { key, value: value.clone() })
            }
        };
        let mut overridden = false;
        let mut set = |target: &mut String, value: Option<String>| {
            if let Some(value) = value {
                overridden |= *target != value;
                *target = value;
            }
        };
        set(&mut contract.health_path, path("health_path", &config.health_path)?);
        set(&mut contract.caption_path, path("caption_path", &config.caption_path)?);
        set(&mut contract.multipart_field, config.multipart_field.clone());
        set(
            &mut contract.caption_pointer,
            config.caption_pointer.as_ref().map(|p| pointer("caption_pointer", p)).transpose()?,
        );
        if let Some(method) = config.health_method {
            overridden |= contract.health_method != method;
            contract.health_method = method;
        }
        if let Some(upload) = config.upload {
            overridden |= contract.upload != upload;
            contract.upload = upload;
        }
        if let Some(pointers) = &config.model_time_pointers {
            contract.model_time_pointers =
                pointers.iter().map(|p| pointer("model_time_pointers", p)).collect::<Result<_, _>>()?;
            overridden = true;
        }
        if let Some(server_time) = &config.server_time_pointer {
            contract.server_time_pointer = Some(pointer("server_time_pointer", server_time)?);
            overridden = true;
        }
        if let Some(queue_time) = &config.queue_time_pointer {
            contract.queue_time_pointer = Some(pointer("queue_time_pointer", queue_time)?);
            overridden = true;
        }
        for (index, header) in config.headers.iter().enumerate() {
            let value = env(&header.env).filter(|v| !v.is_empty()).ok_or_else(|| {
                ContractError::MissingHeaderValue { index, var: header.env.clone(), header: header.name.clone() }
            })?;
            contract.headers.push((header.name.clone(), format!("{}{value}", header.prefix)));
        }
        if overridden {
            contract.shape = format!("{} + overrides", config.preset.name());
            contract.speaks_capwatch = false;
        }
        // A capwatch server with API keys: the key in `CAPWATCH_API_KEY`, when that is set.
        if config.preset == ServicePreset::Capwatch {
            contract = contract.with_api_key(env(API_KEY_ENV).filter(|key| !key.is_empty()));
        }
        Ok(contract)
    }

    /// `text` with every header value replaced, for anything shown or logged.
    pub fn redact(&self, text: &str) -> String {
        self.headers.iter().fold(text.to_owned(), |text, (_, value)| {
            if value.is_empty() { text } else { text.replace(value.as_str(), "[redacted]") }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HeaderFromEnv;

    #[test]
    fn presets_and_overrides() {
        let hf = ProbeContract::preset(ServicePreset::HfInference);
        assert_eq!(
            (hf.caption_path.as_str(), hf.caption_pointer.as_str(), hf.upload),
            ("/", "/0/generated_text", Upload::Raw)
        );
        let config = ServiceContractConfig {
            preset: ServicePreset::Fastapi,
            multipart_field: Some("image".to_owned()),
            headers: vec![HeaderFromEnv {
                name: "Authorization".to_owned(),
                env: "TOKEN".to_owned(),
                prefix: "Bearer ".to_owned(),
            }],
            ..ServiceContractConfig::default()
        };
        let env = |var: &str| (var == "TOKEN").then(|| "s3cret".to_owned());
        let contract = ProbeContract::resolve(&config, &env).unwrap();
        assert_eq!(contract.shape, "fastapi + overrides");
        assert_eq!(contract.headers, vec![("Authorization".to_owned(), "Bearer s3cret".to_owned())]);
        assert!(!format!("{contract:?}").contains("s3cret"));
        assert_eq!(contract.redact("401: bad token Bearer s3cret"), "401: bad token [redacted]");

        // Only capwatch's own preset, as it is, has /drift and /chaos to follow.
        assert!(ProbeContract::preset(ServicePreset::Capwatch).speaks_capwatch && !hf.speaks_capwatch);
        let capwatch_moved =
            ServiceContractConfig { caption_path: Some("/v2/caption".to_owned()), ..ServiceContractConfig::default() };
        assert!(!ProbeContract::resolve(&capwatch_moved, &env).unwrap().speaks_capwatch);
        assert!(ProbeContract::resolve(&ServiceContractConfig::default(), &env).unwrap().speaks_capwatch);
    }

    #[test]
    fn errors_name_the_key() {
        let missing = ServiceContractConfig {
            headers: vec![HeaderFromEnv {
                name: "X-Api-Key".to_owned(),
                env: "NOPE".to_owned(),
                prefix: String::new(),
            }],
            ..ServiceContractConfig::default()
        };
        let err = ProbeContract::resolve(&missing, &|_| None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "monitoring.service.headers[0].env: environment variable NOPE is not set (it must hold the value of the X-Api-Key header)"
        );
        let bad =
            ServiceContractConfig { caption_pointer: Some("caption".to_owned()), ..ServiceContractConfig::default() };
        assert!(
            ProbeContract::resolve(&bad, &|_| None)
                .unwrap_err()
                .to_string()
                .starts_with("monitoring.service.caption_pointer")
        );
    }
}
