//! Waiting for SIGINT or SIGTERM. Callers decide what "shutting down" means.

/// Resolves on the first SIGINT (Ctrl+C) or SIGTERM, and names it.
pub async fn signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            (Ok(mut interrupt), Ok(mut terminate)) => tokio::select! {
                _ = interrupt.recv() => "SIGINT",
                _ = terminate.recv() => "SIGTERM",
            },
            _ => {
                // Installing handlers only fails when the runtime has no signal driver;
                // fall back to Ctrl+C.
                match tokio::signal::ctrl_c().await {
                    Ok(()) => "SIGINT",
                    Err(_) => std::future::pending().await,
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        match tokio::signal::ctrl_c().await {
            Ok(()) => "Ctrl+C",
            Err(_) => std::future::pending().await,
        }
    }
}
