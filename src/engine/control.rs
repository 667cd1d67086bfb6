//! Commands that reach a run between its steps: pause, cancel, sample or evaluate now.

use crossbeam_channel::Receiver;

use super::{Command, Event};

/// Commands that arrive while a run is in progress, checked between steps.
pub struct Control<'a> {
    commands: Option<&'a Receiver<Command>>,
    pub shutdown: bool,
    pub(super) cancel: bool,
    pub(super) sample_now: bool,
    pub(super) evaluate_now: bool,
}

impl<'a> Control<'a> {
    pub fn new(commands: &'a Receiver<Command>) -> Self {
        Self {
            commands: Some(commands),
            shutdown: false,
            cancel: false,
            sample_now: false,
            evaluate_now: false,
        }
    }

    /// A control nobody can talk to (library use, tests).
    pub fn detached() -> Self {
        Self {
            commands: None,
            shutdown: false,
            cancel: false,
            sample_now: false,
            evaluate_now: false,
        }
    }

    pub(super) fn apply(&mut self, command: Command) {
        match command {
            Command::Cancel => self.cancel = true,
            Command::Shutdown => {
                self.cancel = true;
                self.shutdown = true;
            }
            Command::SampleNow => self.sample_now = true,
            Command::EvaluateNow => self.evaluate_now = true,
            // A second Start (or Continue, or a Preview) while running is ignored; Pause/Resume are handled
            // in `poll`.
            Command::Start(_)
            | Command::Continue { .. }
            | Command::Preview(_)
            | Command::Pause
            | Command::Resume => {}
        }
    }

    /// Drains pending commands; blocks while paused.
    pub(super) fn poll(&mut self, emit: &dyn Fn(Event)) {
        let Some(rx) = self.commands else { return };
        while let Ok(command) = rx.try_recv() {
            if matches!(command, Command::Pause) {
                emit(Event::Paused);
                while let Ok(c) = rx.recv() {
                    match c {
                        Command::Resume => break,
                        other => {
                            self.apply(other);
                            if self.cancel {
                                break;
                            }
                        }
                    }
                }
                emit(Event::Resumed);
            } else {
                self.apply(command);
            }
        }
    }
}
