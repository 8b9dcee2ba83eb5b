//! Tests at scale: long chains and wide graphs run and leave nothing behind, without deep
//! recursion.

use super::*;

#[test]
fn chain_of_a_thousand_tasks() {
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 2);
    sim.worker(b"w2", FUNCS, 2);
    let mut g = Graph::new();
    g.insert("c0", task("inc", (0,)));
    for i in 1..1000 {
        g.insert(format!("c{i}"), task("inc", (key(format!("c{}", i - 1)),)));
    }
    sim.get(b"c1", 1, &g, "c999", false);
    sim.run();
    assert_eq!(sim.result(b"c1", 1), ints(&[("c999", 1000)]));
    assert_eq!(sim.dispatched.len(), 1000);
    // Intermediates go as the chain advances: at most a couple held at any time, so at the
    // end all but the last link's input are released.
    let released: HashSet<&str> = sim.released.iter().map(|(_, k)| k.as_str()).collect();
    for i in 0..998 {
        assert!(released.contains(format!("c{i}").as_str()), "c{i} released");
    }
}

#[test]
fn chain_of_a_thousand_tasks_leaves_nothing() {
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 2);
    let mut g = Graph::new();
    g.insert("c0", task("inc", (0,)));
    for i in 1..1000 {
        g.insert(format!("c{i}"), task("inc", (key(format!("c{}", i - 1)),)));
    }
    sim.get(b"c1", 1, &g, "c999", false);
    sim.run();
    assert_eq!(sim.result(b"c1", 1), ints(&[("c999", 1000)]));
    sim.assert_clean();
}

fn wide_graph(n: usize) -> Graph {
    let mut g = independent(n);
    g.insert(
        "total",
        task("sum", (list((0..n).map(|i| key(format!("a{i}")))),)),
    );
    g
}

#[test]
fn ten_thousand_tasks_and_a_sum() {
    let n = 10_000;
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 4);
    sim.worker(b"w2", FUNCS, 4);
    sim.worker(b"w3", &["inc"], 2);
    sim.get(b"c1", 1, &wide_graph(n), "total", false);
    sim.run();
    let expected = (1..=n as i64).sum::<i64>();
    assert_eq!(sim.result(b"c1", 1), ints(&[("total", expected)]));
    assert_eq!(sim.dispatched.len(), n + 1);
    assert!(
        sim.dispatched.iter().any(|(r, _)| r == b"w3"),
        "every worker took part"
    );
    let (route, _) = sim.dispatched.iter().find(|(_, k)| k == "total").unwrap();
    assert_ne!(route, b"w3", "w3 has no sum");
    assert_eq!(sim.s.graph_count(), 0);
}

#[test]
fn ten_thousand_tasks_and_a_sum_leave_nothing() {
    let n = 10_000;
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 4);
    sim.worker(b"w2", FUNCS, 4);
    sim.get(b"c1", 1, &wide_graph(n), "total", false);
    sim.run();
    assert_eq!(
        sim.result(b"c1", 1),
        ints(&[("total", (1..=n as i64).sum())])
    );
    sim.assert_clean();
}

#[test]
fn forgetting_a_very_long_chain_does_not_overflow_the_stack() {
    // Each task keeps its lineage (and, through it, its inputs'): forgetting the last link of
    // a long chain drops the whole lineage at once.
    let n = 100_000;
    let mut sim = Sim::new();
    sim.worker(b"w1", FUNCS, 1);
    let mut g = Graph::new();
    g.insert("l0", task("inc", (0,)));
    for i in 1..n {
        g.insert(format!("l{i}"), task("inc", (key(format!("l{}", i - 1)),)));
    }
    let last = format!("l{}", n - 1);
    sim.get(b"c1", 1, &g, last.as_str(), false);
    sim.run();
    assert_eq!(sim.result(b"c1", 1), ints(&[(last.as_str(), n as i64)]));
    sim.assert_clean();
}
