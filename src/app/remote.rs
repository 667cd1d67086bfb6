//! The workbench's link to a `lethe serve` (the device menu's *Remote…* entry): connecting
//! and the round-trip probes run on background threads, polled once per frame, so a slow or
//! dead server never stalls a frame.

use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, bounded};

use crate::backend::remote::{self, RemoteStatus};

/// How often a connected server's round trip is measured again.
const PING_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq)]
pub enum LinkState {
    /// Nothing asked for yet.
    Idle,
    Connecting {
        url: String,
        since: Instant,
    },
    Connected(RemoteStatus),
    /// Connecting failed, or a connected server stopped answering.
    Failed(String),
}

/// The *Remote…* dialog's fields and the connection it made.
pub struct RemoteLink {
    pub dialog_open: bool,
    pub url_field: String,
    /// Kept in memory only, never in the settings or a run's config.
    pub token_field: String,
    pub state: LinkState,
    connecting: Option<Receiver<Result<RemoteStatus, String>>>,
    probing: Option<(Instant, Receiver<Result<f64, String>>)>,
    last_probe: Option<Instant>,
}

impl Default for RemoteLink {
    fn default() -> Self {
        Self {
            dialog_open: false,
            url_field: "ws://127.0.0.1:7878".into(),
            token_field: std::env::var(remote::TOKEN_ENV).unwrap_or_default(),
            state: LinkState::Idle,
            connecting: None,
            probing: None,
            last_probe: None,
        }
    }
}

impl RemoteLink {
    /// Starts connecting to the address in the dialog (refused at once if it is malformed).
    pub fn connect(&mut self) {
        let url = match remote::parse_url(&self.url_field) {
            Ok(url) => url,
            Err(e) => {
                self.state = LinkState::Failed(e);
                return;
            }
        };
        let token = Some(self.token_field.trim().to_string()).filter(|t| !t.is_empty());
        let (tx, rx) = bounded(1);
        let target = url.clone();
        std::thread::spawn(move || {
            let _ = tx.send(remote::connect(&target, token.as_deref()));
        });
        self.connecting = Some(rx);
        self.probing = None;
        self.state = LinkState::Connecting {
            url,
            since: Instant::now(),
        };
    }

    /// Collects a finished connect or probe and starts the next probe when one is due.
    /// Returns the server once a connect succeeds (the caller selects it as the device).
    pub fn poll(&mut self) -> Option<RemoteStatus> {
        let mut connected = None;
        if let Some(result) = self.connecting.as_ref().and_then(|rx| rx.try_recv().ok()) {
            self.connecting = None;
            self.last_probe = Some(Instant::now());
            match result {
                Ok(status) => {
                    self.state = LinkState::Connected(status.clone());
                    connected = Some(status);
                }
                Err(e) => self.state = LinkState::Failed(e),
            }
        }
        self.collect_probe();
        self.start_probe_if_due();
        connected
    }

    fn collect_probe(&mut self) {
        let Some((_, rx)) = &self.probing else {
            return;
        };
        let Ok(result) = rx.try_recv() else {
            return;
        };
        self.probing = None;
        self.last_probe = Some(Instant::now());
        self.state = match (result, &self.state) {
            (Ok(ms), LinkState::Connected(status)) => LinkState::Connected(RemoteStatus {
                latency_ms: ms,
                ..status.clone()
            }),
            (Ok(_), other) => other.clone(),
            (Err(e), _) => LinkState::Failed(format!("the server stopped answering: {e}")),
        };
    }

    fn start_probe_if_due(&mut self) {
        let due = self.last_probe.is_none_or(|t| t.elapsed() >= PING_EVERY);
        if !matches!(self.state, LinkState::Connected(_)) || self.probing.is_some() || !due {
            return;
        }
        let (tx, rx) = bounded(1);
        std::thread::spawn(move || {
            let _ = tx.send(remote::ping());
        });
        self.probing = Some((Instant::now(), rx));
    }

    /// Whether a background request is outstanding (the frame loop keeps repainting).
    pub fn busy(&self) -> bool {
        self.connecting.is_some() || self.probing.is_some()
    }

    /// One line for the status bar and the dialog.
    pub fn describe(&self) -> String {
        match &self.state {
            LinkState::Idle => "not connected".into(),
            LinkState::Connecting { url, since } => {
                format!(
                    "connecting to {url} … {:.0} s",
                    since.elapsed().as_secs_f64()
                )
            }
            LinkState::Connected(status) => {
                let silent = self
                    .probing
                    .as_ref()
                    .map(|(since, _)| since.elapsed())
                    .filter(|waited| *waited > Duration::from_secs(3));
                match silent {
                    Some(waited) => format!(
                        "{} — no answer for {:.0} s",
                        status.describe(),
                        waited.as_secs_f64()
                    ),
                    None => format!(
                        "{} — {:.2} ms round trip",
                        status.describe(),
                        status.latency_ms
                    ),
                }
            }
            LinkState::Failed(e) => format!("remote: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_address_fails_at_once_without_a_thread() {
        let mut link = RemoteLink {
            url_field: "http://gpu:7878".into(),
            ..RemoteLink::default()
        };
        link.connect();
        assert!(!link.busy());
        assert!(matches!(&link.state, LinkState::Failed(e) if e.contains("ws://host:port")));
    }

    #[test]
    fn an_unreachable_server_fails_in_the_background_and_the_frame_loop_never_waits() {
        // Nothing listens on a port just released by the OS.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut link = RemoteLink {
            url_field: format!("ws://127.0.0.1:{port}"),
            ..RemoteLink::default()
        };
        link.connect();
        let started = Instant::now();
        assert!(link.poll().is_none(), "connect cannot finish synchronously");
        assert!(started.elapsed() < Duration::from_millis(100));
        assert!(link.describe().starts_with("connecting to"));
        while link.busy() && started.elapsed() < Duration::from_secs(60) {
            assert!(link.poll().is_none());
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(
            matches!(&link.state, LinkState::Failed(e) if e.contains("cannot be reached")),
            "{:?}",
            link.state
        );
    }
}
