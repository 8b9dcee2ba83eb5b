//! Futures: submit tasks one at a time, chain them, take results as they finish, cancel.
//!
//! ```text
//! cargo run --release --example futures
//! ```
//!
//! Runs a whole cluster in this process (`LocalCluster`: a scheduler and two workers on
//! 127.0.0.1); against a running cluster, connect with `Client::connect(address)` instead.

use std::time::Duration;

use zask::{as_completed, wait, LocalCluster, Value, WaitMode};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cluster = LocalCluster::start(2, 1)?;
    let client = cluster.client()?;

    // One task; a second one that uses its result (resolved on the scheduler: the value
    // goes from worker to worker, never through this process).
    let x = client.submit("inc", (1,))?;
    let y = client.submit("add", (&x, 10))?;
    println!("{} = {}", y.key(), y.result()?);

    // The same call names the same key, shared by every client.
    let again = client.submit("inc", (1,))?;
    assert_eq!(again.key(), x.key());

    // Many at once; results in the order they finish.
    let futures = client.map("inc", (0..10).map(Value::from))?;
    let mut total = 0;
    for (future, value) in as_completed(futures).with_results() {
        let value = value?;
        println!("{} finished: {value}", future.key());
        if let Value::Int(i) = value {
            total += i;
        }
    }
    println!("total = {total}");

    // Options: priority, retries, a key of our own.
    let urgent = client
        .task("add", (40, 2))
        .priority(10)
        .retries(2)
        .key("the-answer")
        .submit()?;
    println!("{} = {}", urgent.key(), urgent.result()?);

    // A failure reaches the future and whatever depends on it.
    let bad = client.submit("fail", ("on purpose",))?;
    let after = client.submit("inc", (&bad,))?;
    println!("bad: {}", bad.result().unwrap_err());
    println!("after: {}", after.result().unwrap_err());

    // Cancel a long task: it stops holding its worker thread at once.
    let slow = client.task("sleep", (30,)).pure(false).submit()?;
    let quick = client.submit("inc", (41,))?;
    let first = wait(
        vec![slow.clone(), quick.clone()],
        Duration::from_secs(10),
        WaitMode::FirstCompleted,
    );
    println!("first done: {:?}", first.done);
    slow.cancel();
    println!("slow: {}", slow.result().unwrap_err());

    // Dropping the futures releases their values from the workers.
    drop((x, y, again, urgent, bad, after, slow, quick, first));
    cluster.close();
    Ok(())
}
