//! A stop signal every long-running loop selects on: Ctrl-C, SIGTERM, or
//! `--max-runtime` trigger it; what is in flight then finishes.

use tokio::sync::watch;

#[derive(Clone)]
/// The stop signal: cheap to clone, every clone sees the same signal.
pub struct Shutdown {
    sender: std::sync::Arc<watch::Sender<bool>>,
    receiver: watch::Receiver<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        let (sender, receiver) = watch::channel(false);
        Shutdown {
            sender: std::sync::Arc::new(sender),
            receiver,
        }
    }
}

impl Shutdown {
    /// Gives the signal.
    pub fn trigger(&self) {
        self.sender.send_replace(true);
    }

    /// Whether the signal has been given.
    pub fn is_triggered(&self) -> bool {
        *self.receiver.borrow()
    }

    /// Resolves once the signal is given.
    pub async fn wait(&self) {
        let mut receiver = self.receiver.clone();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = receiver.wait_for(|stop| *stop).await;
    }

    /// Triggers on Ctrl-C or SIGTERM.
    pub fn on_signals(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            let ctrl_c = tokio::signal::ctrl_c();
            #[cfg(unix)]
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("SIGTERM handler");
            #[cfg(unix)]
            let term = term.recv();
            #[cfg(not(unix))]
            let term = std::future::pending::<Option<()>>();
            tokio::select! {
                _ = ctrl_c => {}
                _ = term => {}
            }
            tracing::info!("Stopping: finishing the requests in flight.");
            this.trigger();
        });
    }

    /// Triggers after `after`.
    pub fn after(&self, after: std::time::Duration) {
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            tracing::info!(
                ?after,
                "Maximum run time reached: finishing the requests in flight."
            );
            this.trigger();
        });
    }
}
