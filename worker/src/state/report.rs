//! Telling the scheduler what finished: reports collected, sent in batches, and held back
//! until what they say is stored is durable; answers to the scheduler's task checks.

use std::time::{Duration, Instant};

use rustc_hash::FxHashSet as HashSet;
use zask_core::frames;
use zask_core::protocol::{ErrorKind, FromWorker, KeyInfo, ReportBody, TaskDone, TaskFailed};
use zask_core::{DefHash, Value};

use super::{WorkerState, REPORT_DELAY};

/// A report this large goes at once: small enough that the scheduler refills a worker long
/// before its queue runs dry (it holds up to ~1,000 tiny tasks per thread), large enough
/// that a report costs little per task.
pub(crate) const REPORT_BATCH: usize = 256;
/// How long one turn of the loop waits for a disk store's flush before it goes on (the report
/// waiting for it is sent at a later turn).
const FLUSH_WAIT: Duration = Duration::from_millis(10);
/// How long a forced report (one a task check asked for, or the last before closing) waits
/// for the store's flush.
const FORCED_FLUSH_WAIT: Duration = Duration::from_secs(2);

/// What a report to the scheduler will carry.
#[derive(Default)]
pub(crate) struct Report {
    pub(crate) done: Vec<TaskDone>,
    pub(crate) values: Vec<Option<Value>>,
    pub(crate) failed: Vec<TaskFailed>,
    pub(crate) acquired: Vec<KeyInfo>,
}

impl Report {
    /// Adds a task done (`value`: its value, when the scheduler wants it sent).
    pub(crate) fn push_done(
        &mut self,
        key: String,
        hash: DefHash,
        nbytes: u64,
        duration_us: u64,
        value: Option<Value>,
    ) {
        self.done.push(TaskDone {
            key,
            hash,
            nbytes,
            duration_us,
            data: None,
        });
        self.values.push(value);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.done.is_empty() && self.failed.is_empty() && self.acquired.is_empty()
    }

    fn len(&self) -> usize {
        self.done.len() + self.failed.len() + self.acquired.len()
    }

    /// The `report` message, its values packed into blobs.
    fn into_message(self) -> (FromWorker, Vec<Vec<u8>>) {
        let mut blobs = Vec::new();
        let done = self
            .done
            .into_iter()
            .zip(self.values)
            .map(|(mut d, v)| {
                d.data = v.map(|v| frames::pack(v, &mut blobs));
                d
            })
            .collect();
        let msg = FromWorker::Report(ReportBody {
            done,
            failed: self.failed,
            acquired: self.acquired,
        });
        (msg, blobs)
    }
}

impl WorkerState {
    /// Reports task `key` (of definition `hash`, when known) failed.
    pub(crate) fn fail(
        &mut self,
        key: &str,
        hash: Option<DefHash>,
        kind: ErrorKind,
        function: Option<String>,
        message: String,
        missing: Option<String>,
    ) {
        self.report.failed.push(TaskFailed {
            key: key.to_string(),
            hash,
            kind,
            function,
            message,
            missing,
        });
    }

    /// The scheduler asks whether these tasks (each with the definition it assigned) are
    /// here: those done here whose report was lost are reported again; the others, neither
    /// known nor failing, are answered `unknown`.
    pub(crate) fn check_tasks(&mut self, request: u64, keys: Vec<(String, DefHash)>, now: Instant) {
        let mut unknown = Vec::new();
        // Failures not sent yet are not unknown: they are reported next.
        let failing: HashSet<(String, DefHash)> = self
            .report
            .failed
            .iter()
            .chain(self.awaiting.iter().flat_map(|(r, _)| r.failed.iter()))
            .filter_map(|f| Some((f.key.clone(), f.hash?)))
            .collect();
        for (key, hash) in keys {
            if failing.contains(&(key.clone(), hash)) {
                continue;
            }
            // Only the definition asked about counts (one of another definition here is a
            // task taken back, which the scheduler gives anew if it is unknown).
            if self.tasks.get(&key).is_some_and(|t| t.hash == hash) {
                continue;
            }
            match self.store.held(&key).filter(|held| held.hash == hash) {
                // Done here, and its report lost: reported again.
                Some(held) => self.report.push_done(key, held.hash, held.nbytes, 0, None),
                None => unknown.push(key),
            }
        }
        // What is reported again goes first.
        self.send_report(true, now);
        self.send(FromWorker::TaskStatus { request, unknown }, Vec::new());
    }

    /// Sends what finished, unless (and `force` is false) tasks are still running here and
    /// the report is young and small: then it waits for company, up to `REPORT_DELAY`.
    pub(crate) fn send_report(&mut self, force: bool, now: Instant) {
        if self.awaiting.is_none() {
            if self.report.is_empty() {
                return;
            }
            let since = *self.report_since.get_or_insert(now);
            let busy = self.running > 0 || !self.ready.is_empty();
            let small = self.report.len() < REPORT_BATCH;
            if !force && busy && small && now.saturating_duration_since(since) < REPORT_DELAY {
                return;
            }
            self.report_since = None;
            let report = std::mem::take(&mut self.report);
            self.awaiting = Some((report, self.store.writes()));
        }
        let Some((_, upto)) = &self.awaiting else {
            return;
        };
        // A value is reported stored once it is durable; a slow flush holds the report back
        // (the loop goes on serving, heartbeating, and asks again at its next turn).
        let wait = if force { FORCED_FLUSH_WAIT } else { FLUSH_WAIT };
        match self.store.flush(*upto, wait) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => log::error!("cannot make stored results durable: {e}"),
        }
        if let Some((report, _)) = self.awaiting.take() {
            let (msg, blobs) = report.into_message();
            self.send(msg, blobs);
        }
        if force && !self.report.is_empty() {
            // What came in while the closed report waited (it then waits no longer).
            self.send_report(true, now);
        }
    }

    /// Before closing: everything not reported is, after one bounded flush.
    pub(crate) fn flush_reports_for_close(&mut self) {
        if self.awaiting.is_none() && self.report.is_empty() {
            return;
        }
        match self.store.flush(self.store.writes(), FORCED_FLUSH_WAIT) {
            Ok(true) => {}
            Ok(false) => log::warn!("closing before stored results are durable"),
            Err(e) => log::error!("cannot make stored results durable: {e}"),
        }
        if let Some((report, _)) = self.awaiting.take() {
            let (msg, blobs) = report.into_message();
            self.send(msg, blobs);
        }
        let report = std::mem::take(&mut self.report);
        if !report.is_empty() {
            let (msg, blobs) = report.into_message();
            self.send(msg, blobs);
        }
    }
}
