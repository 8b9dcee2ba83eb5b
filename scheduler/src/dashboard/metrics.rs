//! `/metrics`: the latest observation in Prometheus's text exposition format, written by
//! `prometheus-client`'s encoder (names and labels in `docs/dashboard.md`).
//!
//! The counters live in the scheduler's state (kept as events happen), so they are read out
//! here as constant metrics of one observation ([`Collector`]), not updated per task through
//! the crate's atomics.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::Observed;
use crate::state::stats::DURATION_BUCKETS_US;

/// The content type of the text format.
pub(super) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One observation, as metrics.
#[derive(Debug)]
struct Snapshot(Observed);

/// The text of `/metrics` for `observed`.
pub(super) fn encode(observed: Observed) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot(observed)));
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)?;
    Ok(text)
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: impl prometheus_client::encoding::EncodeGaugeValue,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: impl prometheus_client::encoding::EncodeCounterValue,
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(value);
    c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (o, busy, rss) = &self.0;
        let e = &mut encoder;

        let mut m = e.encode_descriptor(
            "zask_tasks",
            "Tasks the scheduler tracks, by state.",
            None,
            MetricType::Gauge,
        )?;
        for (state, n) in [
            ("waiting", o.tasks.waiting),
            ("ready", o.tasks.ready),
            ("processing", o.tasks.processing),
            ("memory", o.tasks.memory),
            ("erred", o.tasks.erred),
        ] {
            ConstGauge::new(n).encode(m.encode_family(&[("state", state)])?)?;
        }

        let mut m = e.encode_descriptor(
            "zask_tasks_completed",
            "Tasks finished on workers since the scheduler started, by function.",
            None,
            MetricType::Counter,
        )?;
        for f in &o.functions {
            ConstCounter::new(f.completed).encode(m.encode_family(&[("function", &*f.name)])?)?;
        }
        let mut m = e.encode_descriptor(
            "zask_tasks_failed",
            "Tasks workers reported failed since the scheduler started, by function.",
            None,
            MetricType::Counter,
        )?;
        for f in &o.functions {
            ConstCounter::new(f.failed).encode(m.encode_family(&[("function", &*f.name)])?)?;
        }
        let mut m = e.encode_descriptor(
            "zask_task_duration_seconds",
            "How long finished tasks ran on their workers, by function.",
            None,
            MetricType::Histogram,
        )?;
        for f in &o.functions {
            let buckets: Vec<(f64, u64)> = DURATION_BUCKETS_US
                .iter()
                .map(|&us| us as f64 / 1e6)
                .chain([f64::INFINITY])
                .zip(f.buckets.iter().copied())
                .collect();
            m.encode_family(&[("function", &*f.name)])?
                .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                    f.duration_sum_us as f64 / 1e6,
                    f.completed,
                    &buckets,
                    None,
                )?;
        }

        gauge(
            e,
            "zask_workers",
            "Registered workers.",
            o.workers.len() as u64,
        )?;
        let threads: u64 = o
            .workers
            .iter()
            .map(|w| u64::from(w.summary.nthreads))
            .sum();
        gauge(
            e,
            "zask_worker_threads",
            "Threads of the registered workers.",
            threads,
        )?;
        let mut m = e.encode_descriptor(
            "zask_worker_processing_tasks",
            "Tasks assigned to each worker and not reported yet.",
            None,
            MetricType::Gauge,
        )?;
        for w in &o.workers {
            let labels = [("worker", w.summary.address.as_str())];
            ConstGauge::new(w.summary.processing).encode(m.encode_family(&labels)?)?;
        }
        let mut m = e.encode_descriptor(
            "zask_worker_held_bytes",
            "Bytes of values each worker holds.",
            None,
            MetricType::Gauge,
        )?;
        for w in &o.workers {
            let labels = [("worker", w.summary.address.as_str())];
            ConstGauge::new(w.summary.nbytes).encode(m.encode_family(&labels)?)?;
        }
        gauge(e, "zask_clients", "Clients heard from recently.", o.clients)?;
        gauge(
            e,
            "zask_computations",
            "Computations in flight (gets, and clients holding futures).",
            o.computations_total,
        )?;
        gauge(e, "zask_held_keys", "Keys held on workers.", o.held_keys)?;
        gauge(
            e,
            "zask_held_bytes",
            "Bytes held on workers (each copy counted).",
            o.held_bytes,
        )?;
        counter(
            e,
            "zask_transfer_bytes",
            "Bytes workers fetched from each other since the scheduler started.",
            o.transfer_bytes_total,
        )?;
        counter(
            e,
            "zask_scheduler_loop_busy_seconds",
            "Time the scheduler's loop spent working (not waiting for messages).",
            busy.as_secs_f64(),
        )?;
        gauge(
            e,
            "process_resident_memory_bytes",
            "Resident memory of the scheduler process.",
            *rss,
        )?;
        Ok(())
    }
}
