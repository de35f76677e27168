//! The process exit codes of capwatch, in one table: `main.rs` turns errors into them, and
//! the supervisor reads a child's code to tell a crash (worth a restart) from a failure a
//! restart cannot fix (as systemd's `RestartPreventExitStatus`).
//!
//! | code | `capwatch serve` | the dashboard (`--headless`) |
//! |---|---|---|
//! | 0 | stopped cleanly | no alert fired |
//! | 1 | crashed, or failed in a way a restart may fix | only warnings fired |
//! | 2 | bad usage or config | a critical alert fired, or the server could not be kept running |
//! | 3 | the model directory is missing or invalid | — |
//! | 4 | the ONNX Runtime library is missing or cannot be loaded | — |
//! | 5 | cannot listen: address in use, not permitted, or invalid | — |

pub const SUCCESS: u8 = 0;
pub const FAILURE: u8 = 1;
pub const CONFIG: u8 = 2;
pub const MODEL: u8 = 3;
pub const RUNTIME: u8 = 4;
pub const ADDRESS: u8 = 5;

/// Whether a server that exited with `code` would fail the same way again.
pub fn is_permanent(code: i32) -> bool {
    [CONFIG, MODEL, RUNTIME, ADDRESS].iter().any(|&permanent| i32::from(permanent) == code)
}

/// What a permanent exit code means, in a few words.
pub fn meaning(code: i32) -> &'static str {
    match u8::try_from(code) {
        Ok(CONFIG) => "bad usage or config",
        Ok(MODEL) => "the model directory is missing or invalid",
        Ok(RUNTIME) => "the ONNX Runtime library is missing or cannot be loaded",
        Ok(ADDRESS) => "cannot listen on the address",
        Ok(SUCCESS) => "stopped cleanly",
        _ => "crashed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_errors_a_restart_cannot_fix_are_permanent() {
        assert!([2, 3, 4, 5].into_iter().all(is_permanent));
        assert!(![0, 1, 6, 101, 134, -1].into_iter().any(is_permanent));
        assert_eq!(meaning(3), "the model directory is missing or invalid");
        assert_eq!(meaning(139), "crashed");
    }
}
