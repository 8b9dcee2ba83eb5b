//! [`LocalCluster`]: a scheduler and workers in this process, on 127.0.0.1 and ephemeral ports.
//!
//! For trying zask, for `zask local`, and for tests and benchmarks that do not need separate
//! processes. The sockets are real ZeroMQ TCP sockets, as in a distributed cluster.

use std::time::Duration;

use zask_client::{Client, ClientOptions};
use zask_core::security::Secret;
use zask_scheduler::{Scheduler, SchedulerOptions};
use zask_worker::{Registry, Worker, WorkerOptions};

/// Why a local cluster could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The scheduler did not start.
    #[error("scheduler: {0}")]
    Scheduler(#[from] zask_scheduler::Error),
    /// A worker did not start.
    #[error("worker: {0}")]
    Worker(#[from] zask_worker::Error),
    /// The client could not connect.
    #[error("client: {0}")]
    Client(#[from] zask_client::Error),
}

/// A scheduler and `n` workers running in this process.
pub struct LocalCluster {
    workers: Vec<Worker>,
    scheduler: Scheduler,
    secret: Option<Secret>,
}

impl LocalCluster {
    /// Starts a scheduler and `nworkers` workers of `nthreads` threads with the standard
    /// library, and waits until every worker has registered.
    pub fn start(nworkers: usize, nthreads: u32) -> Result<LocalCluster, Error> {
        LocalCluster::start_with(nworkers, nthreads, Registry::with_stdlib())
    }

    /// Like [`LocalCluster::start`], with workers offering `registry`'s functions.
    pub fn start_with(
        nworkers: usize,
        nthreads: u32,
        registry: Registry,
    ) -> Result<LocalCluster, Error> {
        LocalCluster::start_secured(nworkers, nthreads, registry, None)
    }

    /// Like [`LocalCluster::start_with`], every connection (clients' too) authenticated and
    /// encrypted with `secret` when there is one.
    pub fn start_secured(
        nworkers: usize,
        nthreads: u32,
        registry: Registry,
        secret: Option<Secret>,
    ) -> Result<LocalCluster, Error> {
        let scheduler = Scheduler::start(SchedulerOptions {
            host: "127.0.0.1".into(),
            secret: secret.clone(),
            ..SchedulerOptions::default()
        })?;
        let mut workers = Vec::with_capacity(nworkers);
        for _ in 0..nworkers {
            let mut options = WorkerOptions::new(scheduler.address_to_workers());
            options.host = "127.0.0.1".into();
            options.nthreads = nthreads.max(1);
            options.registry = registry.clone();
            options.secret = secret.clone();
            workers.push(Worker::start(options)?);
        }
        let cluster = LocalCluster {
            workers,
            scheduler,
            secret,
        };
        cluster
            .client()?
            .wait_for_workers(nworkers, Duration::from_secs(30))?;
        Ok(cluster)
    }

    /// A new client connected to this cluster's scheduler.
    pub fn client(&self) -> Result<Client, zask_client::Error> {
        let options = ClientOptions {
            secret: self.secret.clone(),
            ..ClientOptions::default()
        };
        Client::connect_with(self.scheduler.address_to_clients(), options)
    }

    /// The scheduler's address for clients.
    pub fn address_to_clients(&self) -> &str {
        self.scheduler.address_to_clients()
    }

    /// The scheduler's address for workers.
    pub fn address_to_workers(&self) -> &str {
        self.scheduler.address_to_workers()
    }

    /// Stops the workers, then the scheduler.
    pub fn close(self) {
        for w in &self.workers {
            w.close();
        }
        self.scheduler.close();
    }
}
