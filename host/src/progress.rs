//! [`Display`]: `eval`'s progress line on stderr (events/s, bytes read of the total, alerts
//! so far), drawn with `indicatif` from an [`eval::Progress`](crate::eval::Progress) that
//! the run updates. `eval` starts it only when stderr is a terminal.

use std::sync::Arc;
use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::eval::Progress;

/// How often the line is redrawn.
const TICK: Duration = Duration::from_millis(250);

/// A progress line, redrawn by its own thread until [`Display::finish`].
pub struct Display {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl Display {
    /// Starts drawing `progress` on stderr, of `total` bytes when known.
    pub fn start(progress: Arc<Progress>, total: Option<u64>) -> Self {
        let (stop, stopped) = channel::<()>();
        let thread = std::thread::spawn(move || {
            let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr_with_hz(4));
            // The bar takes the width the text leaves, so the line never wraps.
            let template = match total {
                Some(_) => "{bytes}/{total_bytes} {msg} {wide_bar}",
                None => "{spinner} {msg}",
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style);
            }
            let started = Instant::now();
            loop {
                let events = progress.events();
                let seconds = started.elapsed().as_secs_f64().max(1e-3);
                bar.set_message(format!(
                    "{events} events ({:.0}/s), {} alerts",
                    events as f64 / seconds,
                    progress.alerts()
                ));
                bar.set_position(progress.bytes_read());
                match stopped.recv_timeout(TICK) {
                    Err(RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            bar.finish_and_clear();
        });
        Display { stop, thread }
    }

    /// Stops and clears the line (the summary follows).
    pub fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}
