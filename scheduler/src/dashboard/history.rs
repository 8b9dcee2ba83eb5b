//! What the dashboard keeps between observations (the latest one, throughput over the last
//! minutes, the tasks finished over the last minute) and the JSON documents made of it
//! (`/api/...`, described in `docs/dashboard.md`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{json, Value};

use super::SchedulerInfo;
use crate::state::stats::{FinishedTask, Observation};

/// How far back the throughput goes.
const THROUGHPUT_SPAN: Duration = Duration::from_secs(300);
/// How far back the task stream goes.
const STREAM_SPAN: Duration = Duration::from_secs(60);
/// Tasks kept for the task stream at most.
const STREAM_MAX: usize = 10_000;
/// Tasks taken into the stream from one observation at most (evenly sampled beyond).
const STREAM_PER_OBSERVATION: usize = 500;
/// Observations further apart than this leave a gap in the throughput (nobody watched).
const GAP: Duration = Duration::from_secs(2);
/// Tasks the API returns of the stream at most (the newest).
pub(super) const STREAM_SERVED: usize = 5_000;

/// One point of the throughput chart.
#[derive(Debug, Clone, Serialize)]
struct Rate {
    time_unix_ms: f64,
    completed_per_s: f64,
    failed_per_s: f64,
}

/// One task of the stream, in wall-clock time.
#[derive(Debug, Clone, Serialize)]
struct StreamTask {
    worker: Arc<str>,
    function: String,
    start_unix_ms: f64,
    end_unix_ms: f64,
    #[serde(skip)]
    ended: Instant,
}

/// The latest observation and what is kept of the earlier ones.
#[derive(Debug, Default)]
pub(crate) struct History {
    latest: Option<Arc<Observation>>,
    taken: Option<Instant>,
    taken_wall: Option<SystemTime>,
    busy: Duration,
    busy_before: Option<(Instant, Duration)>,
    busy_fraction: f64,
    rss: u64,
    totals_before: Option<(Instant, u64, u64)>,
    throughput: VecDeque<(Instant, Rate)>,
    stream: VecDeque<StreamTask>,
}

fn unix_ms(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

impl History {
    /// When the latest observation was taken.
    pub(super) fn taken(&self) -> Option<Instant> {
        self.taken
    }

    /// The latest observation, the loop's busy time so far, and the memory (for metrics).
    pub(super) fn observed(&self) -> Option<super::Observed> {
        Some((self.latest.clone()?, self.busy, self.rss))
    }

    /// A new observation, taken at `now` (`wall` on the clock), with the loop's busy time so
    /// far and the process's memory.
    pub(super) fn add(
        &mut self,
        mut observation: Observation,
        now: Instant,
        wall: SystemTime,
        busy: Duration,
        rss: u64,
    ) {
        if let Some((t, b)) = self.busy_before {
            let span = now.saturating_duration_since(t);
            if span >= Duration::from_millis(900) {
                let worked = busy.saturating_sub(b);
                self.busy_fraction = (worked.as_secs_f64() / span.as_secs_f64()).min(1.0);
                self.busy_before = Some((now, busy));
            }
        } else {
            self.busy_before = Some((now, busy));
        }
        self.busy = busy;
        self.rss = rss;
        if let Some((t, completed, failed)) = self.totals_before {
            let secs = now.saturating_duration_since(t).as_secs_f64();
            // (After a gap nobody watched, no point: it would average over the gap.)
            if secs > 0.0 && secs <= GAP.as_secs_f64() {
                let per_s = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
                self.throughput.push_back((
                    now,
                    Rate {
                        time_unix_ms: unix_ms(wall),
                        completed_per_s: per_s(observation.completed_total, completed),
                        failed_per_s: per_s(observation.failed_total, failed),
                    },
                ));
            }
        }
        self.totals_before = Some((now, observation.completed_total, observation.failed_total));
        while self
            .throughput
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > THROUGHPUT_SPAN)
        {
            self.throughput.pop_front();
        }
        let finished = std::mem::take(&mut observation.finished);
        self.add_stream(finished, now, wall);
        self.latest = Some(Arc::new(observation));
        self.taken = Some(now);
        self.taken_wall = Some(wall);
    }

    fn add_stream(&mut self, finished: Vec<FinishedTask>, now: Instant, wall: SystemTime) {
        let step = finished.len().div_ceil(STREAM_PER_OBSERVATION).max(1);
        for f in finished.into_iter().step_by(step) {
            let end = wall.checked_sub(f.ended_ago).unwrap_or(wall);
            let start = end.checked_sub(f.duration).unwrap_or(end);
            self.stream.push_back(StreamTask {
                worker: f.worker,
                function: f.function,
                start_unix_ms: unix_ms(start),
                end_unix_ms: unix_ms(end),
                ended: now.checked_sub(f.ended_ago).unwrap_or(now),
            });
        }
        while self.stream.len() > STREAM_MAX
            || self
                .stream
                .front()
                .is_some_and(|t| now.saturating_duration_since(t.ended) > STREAM_SPAN)
        {
            self.stream.pop_front();
        }
    }

    /// `/api/scheduler`.
    pub(super) fn scheduler(&self, info: &SchedulerInfo) -> Value {
        let clients = self.latest.as_ref().map_or(0, |o| o.clients);
        json!({
            "id": info.id,
            "address_to_workers": info.address_to_workers,
            "address_to_clients": info.address_to_clients,
            "time_unix_ms": self.taken_wall.map_or(0.0, unix_ms),
            "uptime_s": info_uptime(info),
            "loop_busy": self.busy_fraction,
            "loop_busy_seconds_total": self.busy.as_secs_f64(),
            "rss_bytes": self.rss,
            "clients": clients,
        })
    }

    /// `/api/workers`.
    pub(super) fn workers(&self) -> Value {
        let Some(o) = &self.latest else {
            return json!([]);
        };
        Value::Array(
            o.workers
                .iter()
                .map(|w| {
                    let s = &w.summary;
                    json!({
                        "address": s.address, "worker_id": s.worker_id, "pid": s.pid,
                        "nthreads": s.nthreads, "processing": s.processing, "keys": s.keys,
                        "nbytes": s.nbytes, "last_seen_ms": s.last_seen_ms,
                        "retiring": w.retiring,
                    })
                })
                .collect(),
        )
    }

    /// `/api/computations`.
    pub(super) fn computations(&self) -> Value {
        let Some(o) = &self.latest else {
            return json!([]);
        };
        Value::Array(
            o.computations
                .iter()
                .map(|c| {
                    json!({
                        "id": c.id, "kind": c.kind, "client": c.client,
                        "age_s": c.age_ms as f64 / 1000.0, "total": c.total, "done": c.done,
                        "failed": c.failed, "waiting": c.waiting,
                    })
                })
                .collect(),
        )
    }

    /// `/api/throughput`.
    pub(super) fn throughput(&self) -> Value {
        serde_json::to_value(self.throughput.iter().map(|(_, r)| r).collect::<Vec<_>>())
            .unwrap_or(Value::Null)
    }

    /// `/api/task-stream`: the newest [`STREAM_SERVED`] tasks, oldest first.
    pub(super) fn task_stream(&self) -> String {
        serde_json::to_string(&self.served_stream()).unwrap_or_else(|_| "[]".to_string())
    }

    fn served_stream(&self) -> Vec<&StreamTask> {
        let skip = self.stream.len().saturating_sub(STREAM_SERVED);
        self.stream.iter().skip(skip).collect()
    }

    /// `/api/functions`.
    pub(super) fn functions(&self) -> Value {
        let Some(o) = &self.latest else {
            return json!([]);
        };
        Value::Array(
            o.functions
                .iter()
                .map(|f| {
                    let mean = if f.completed == 0 {
                        0.0
                    } else {
                        f.duration_sum_us as f64 / f.completed as f64 / 1e6
                    };
                    json!({"name": f.name, "completed": f.completed, "failed": f.failed,
                           "mean_duration_s": mean})
                })
                .collect(),
        )
    }

    /// `/api/snapshot`: everything (written straight from the history, the task stream being
    /// most of it).
    pub(super) fn snapshot(&self, info: &SchedulerInfo) -> String {
        #[derive(Serialize)]
        struct Snapshot<'a> {
            scheduler: Value,
            tasks: Value,
            held: Value,
            transfer_bytes_total: u64,
            workers: Value,
            computations: Value,
            computations_total: u64,
            throughput: Vec<&'a Rate>,
            task_stream: Vec<&'a StreamTask>,
            functions: Value,
        }
        let none = Observation::default();
        let o = self.latest.as_deref().unwrap_or(&none);
        let snapshot = Snapshot {
            scheduler: self.scheduler(info),
            tasks: json!({
                "waiting": o.tasks.waiting, "ready": o.tasks.ready,
                "processing": o.tasks.processing, "memory": o.tasks.memory,
                "erred": o.tasks.erred, "completed_total": o.completed_total,
                "failed_total": o.failed_total,
            }),
            held: json!({"keys": o.held_keys, "bytes": o.held_bytes}),
            transfer_bytes_total: o.transfer_bytes_total,
            workers: self.workers(),
            computations: self.computations(),
            computations_total: o.computations_total,
            throughput: self.throughput.iter().map(|(_, r)| r).collect(),
            task_stream: self.served_stream(),
            functions: self.functions(),
        };
        serde_json::to_string(&snapshot).unwrap_or_else(|_| "{}".to_string())
    }
}

fn info_uptime(info: &SchedulerInfo) -> f64 {
    info.started.elapsed().as_secs_f64()
}
