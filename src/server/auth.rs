//! API keys (`service.auth`): the keys come from an environment variable or a file (several at
//! once, so a new key can be added before the old one is retired; a file is re-read when it
//! changes); the routes that caption or change the server answer `401` without one of them.
//! Keys are compared in constant time and are never logged, recorded or echoed. This module
//! checks requests; it chooses no status code.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::{ApiError, KeyProblem};
use crate::config::AuthConfig;

/// How often, at most, a keys file is looked at for a change.
const KEYS_FILE_CHECK: Duration = Duration::from_secs(1);

/// The accepted keys.
pub struct ApiKeys {
    keys: RwLock<Vec<Vec<u8>>>,
    /// The file the keys came from, when they came from one, and when it was last looked at.
    file: Option<KeysFile>,
}

struct KeysFile {
    auth: AuthConfig,
    path: PathBuf,
    /// When the file was last looked at, and its modification time then.
    seen: Mutex<(Instant, Option<SystemTime>)>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeys({} keys)", self.keys.read().unwrap_or_else(PoisonError::into_inner).len())
    }
}

fn modified(path: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|meta| meta.modified()).ok()
}

impl ApiKeys {
    /// The keys `auth` names, read through `env`; an unset or empty source is an error that
    /// names the source (never a value).
    pub fn read(auth: &AuthConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
        let file = auth.keys_file.clone().map(|path| KeysFile {
            auth: auth.clone(),
            seen: Mutex::new((Instant::now(), modified(&path))),
            path,
        });
        let keys = auth.read_keys(env)?;
        Ok(Self { keys: RwLock::new(keys.into_iter().map(String::into_bytes).collect()), file })
    }

    /// Whether `presented` is one of the keys. Every key is compared, in constant time.
    pub fn accepts(&self, presented: &[u8]) -> bool {
        self.reload_if_changed();
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        let mut found = subtle::Choice::from(0);
        for key in keys.iter() {
            found |= key.as_slice().ct_eq(presented);
        }
        found.into()
    }

    /// Re-reads the keys file when its modification time changed (looked at once a second at
    /// most). A file that cannot be read or holds no key keeps the keys in force, with a warning.
    fn reload_if_changed(&self) {
        let Some(file) = &self.file else { return };
        let mut seen = file.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.0.elapsed() < KEYS_FILE_CHECK {
            return;
        }
        let now_modified = modified(&file.path);
        *seen = (Instant::now(), seen.1);
        if now_modified == seen.1 {
            return;
        }
        match file.auth.read_keys(&|_| None) {
            Ok(keys) => {
                seen.1 = now_modified;
                *self.keys.write().unwrap_or_else(PoisonError::into_inner) =
                    keys.into_iter().map(String::into_bytes).collect();
                tracing::info!(file = %file.path.display(), keys = keys_len(&self.keys), "API keys reloaded");
            }
            Err(reason) => tracing::warn!(%reason, "API keys file changed but cannot be used; the keys in force stay"),
        }
    }
}

fn keys_len(keys: &RwLock<Vec<Vec<u8>>>) -> usize {
    keys.read().unwrap_or_else(PoisonError::into_inner).len()
}

/// Lets the request through when it carries `Authorization: Bearer <one of the keys>` (or when
/// the server has no keys); otherwise answers 401 and counts the refusal.
pub async fn require_key(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let Some(keys) = &state.api_keys else { return next.run(request).await };
    let problem = match bearer(request.headers()) {
        None => Some(KeyProblem::Missing),
        Some(token) if !keys.accepts(token) => Some(KeyProblem::Invalid),
        Some(_) => None,
    };
    match problem {
        None => next.run(request).await,
        Some(problem) => {
            state.metrics.auth_rejected.get_or_create(&super::metrics::AuthLabels { reason: problem.label() }).inc();
            ApiError::Unauthorized(problem).into_response()
        }
    }
}

/// The routes that need a key unless `protect_all` says every route does.
const PROTECTED: [&str; 4] = ["/caption", "/drift", "/drift/baseline", "/chaos"];

/// Adds the bearer scheme to an OpenAPI document, and to each protected operation its
/// `security` requirement and `401` answer.
pub fn document_security(document: &mut serde_json::Value, protect_all: bool) {
    use serde_json::json;
    document["components"]["securitySchemes"]["bearerAuth"] =
        json!({"type": "http", "scheme": "bearer", "description": "One of the keys in service.auth.keys_env"});
    let Some(paths) = document.get_mut("paths").and_then(serde_json::Value::as_object_mut) else { return };
    for (path, item) in paths.iter_mut() {
        if !protect_all && !PROTECTED.contains(&path.as_str()) {
            continue;
        }
        let Some(operations) = item.as_object_mut() else { continue };
        for operation in operations.values_mut().filter(|operation| operation.is_object()) {
            operation["security"] = json!([{"bearerAuth": []}]);
            operation["responses"]["401"] = json!({
                "description": "No API key, or not one of the server's",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
            });
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(text: &str) -> Result<ApiKeys, String> {
        let auth = AuthConfig::default();
        ApiKeys::read(&auth, &|var| (var == auth.keys_env).then(|| text.to_owned()))
    }

    #[test]
    fn any_listed_key_is_accepted_and_nothing_else() {
        let keys = keys(" old-key , new-key ").unwrap();
        assert!(keys.accepts(b"old-key") && keys.accepts(b"new-key"));
        for wrong in [&b""[..], b"old", b"old-key ", b"new-keyx", b"OLD-KEY"] {
            assert!(!keys.accepts(wrong), "{wrong:?}");
        }
        assert_eq!(format!("{keys:?}"), "ApiKeys(2 keys)", "no key in Debug output");
    }

    #[test]
    fn an_empty_variable_is_an_error_that_names_it_and_no_value() {
        let error = keys(" , ").unwrap_err();
        assert!(error.contains("CAPWATCH_API_KEYS"), "{error}");
    }

    #[test]
    fn a_keys_file_is_reread_when_it_changes_and_a_broken_one_keeps_the_keys() {
        let dir = std::env::temp_dir().join(format!("capwatch-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys");
        std::fs::write(&path, "# rotated monthly\nfirst-key\n").unwrap();
        let auth = AuthConfig { keys_file: Some(path.clone()), ..AuthConfig::default() };
        let keys = ApiKeys::read(&auth, &|_| None).unwrap();
        assert!(keys.accepts(b"first-key") && !keys.accepts(b"# rotated monthly"));
        let age = |keys: &ApiKeys| keys.file.as_ref().unwrap().seen.lock().unwrap().0 -= KEYS_FILE_CHECK * 2;

        std::fs::write(&path, "first-key, second-key").unwrap();
        let later = SystemTime::now() + Duration::from_secs(5);
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(later).unwrap();
        age(&keys);
        assert!(keys.accepts(b"second-key") && keys.accepts(b"first-key"));

        std::fs::write(&path, "\n").unwrap();
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(later + Duration::from_secs(5)).unwrap();
        age(&keys);
        assert!(keys.accepts(b"second-key"), "an empty file keeps the keys in force");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_a_bearer_header_carries_a_token() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            bearer(&headers).map(<[u8]>::to_vec)
        };
        assert_eq!(with("Bearer abc"), Some(b"abc".to_vec()));
        assert_eq!(with("bearer abc"), Some(b"abc".to_vec()));
        assert_eq!(with("Basic abc"), None);
        assert_eq!(with("Bearer"), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }
}
