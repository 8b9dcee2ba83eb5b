//! The original design's seed example: one client stores a Bag on the scheduler, another
//! (in another process, on another machine) fetches and computes it.
//!
//! ```text
//! cargo run --example bag -- store tcp://127.0.0.1:8787 numbers
//! cargo run --example bag -- fetch tcp://127.0.0.1:8787 numbers
//! ```
//!
//! `store` builds `Bag::from_sequence(0..5, 2).map("inc")` and stores it as a collection;
//! `fetch` gets it back and prints one JSON object: its kind, partitions, keys, items and sum.

use zask::{Bag, Client};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(action), Some(address), Some(name)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!("usage: bag store|fetch SCHEDULER_ADDRESS NAME");
        std::process::exit(2);
    };
    if let Err(e) = run(action, address, name) {
        eprintln!("bag: error: {e}");
        std::process::exit(1);
    }
}

fn run(action: &str, address: &str, name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::connect(address)?;
    match action {
        "store" => {
            let bag = Bag::from_sequence(0..5, 2).map("inc");
            let replaced = client.set_collection(name, &bag.to_collection())?;
            println!(
                "{}",
                serde_json::json!({"stored": name, "replaced": replaced, "keys": bag.keys()})
            );
        }
        "fetch" => {
            let collection = client.get_collection(name)?;
            let bag = Bag::from_collection(&collection)?;
            let items: Vec<serde_json::Value> =
                bag.compute(&client)?.iter().map(|v| v.to_json()).collect();
            let sum = bag.sum().compute(&client)?;
            println!(
                "{}",
                serde_json::json!({
                    "kind": collection.kind,
                    "npartitions": bag.npartitions(),
                    "keys": bag.keys(),
                    "items": items,
                    "sum": sum.to_json(),
                })
            );
        }
        other => return Err(format!("unknown action {other:?}: use store or fetch").into()),
    }
    Ok(())
}
