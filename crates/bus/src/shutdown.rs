//! Graceful shutdown signal.
//!
//! Every service stops the same way: on SIGTERM or SIGINT it stops taking input, finishes what
//! is in flight, commits and flushes. This is the one shared trigger they all watch; it is a
//! cloneable handle over a `watch` channel so any number of tasks can wait on it.

use tokio::sync::watch;

/// A cloneable shutdown flag that can be awaited.
#[derive(Clone, Debug)]
pub struct Shutdown {
    tx: std::sync::Arc<watch::Sender<bool>>,
    rx: watch::Receiver<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A flag triggered only by [`Shutdown::trigger`].
    pub fn new() -> Self {
        let (tx, rx) = watch::channel(false);
        Self { tx: std::sync::Arc::new(tx), rx }
    }

    /// A flag that SIGTERM or SIGINT (Ctrl-C) triggers. Must be called inside a Tokio runtime.
    pub fn on_signals() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let s = Self::new();
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let trigger = s.clone();
        tokio::spawn(async move {
            let which = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            tracing::info!(signal = which, "shutdown requested: finishing in-flight work");
            trigger.trigger();
        });
        Ok(s)
    }

    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once shutdown is triggered (immediately if it already was).
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        // An error means every sender is gone, which cannot happen while `self` holds one.
        let _ = rx.wait_for(|v| *v).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn trigger_wakes_every_clone() {
        let s = Shutdown::new();
        let c = s.clone();
        assert!(!c.is_triggered());
        let waiter = tokio::spawn(async move { c.wait().await });
        s.trigger();
        waiter.await.unwrap();
        assert!(s.is_triggered());
        s.wait().await; // already triggered: returns at once
    }
}
