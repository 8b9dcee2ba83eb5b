//! Tests of collecting results (see `gather.rs`): a `get_data` goes to another holder when its
//! worker dies or lost the value.

use super::*;

#[test]
fn gather_sent_to_a_dead_worker_is_redirected() {
    let mut sim = Sim::new();
    let t0 = sim.now;
    sim.worker(b"w1", FUNCS, 1);
    sim.worker(b"w2", FUNCS, 1);
    sim.get(b"c1", 1, &independent(1), "a0", true);
    sim.run();
    assert_eq!(sim.s.who_has("a0"), vec![addr(b"w1")]);
    sim.get(b"c1", 2, &Graph::new(), "a0", false);
    assert_eq!(sim.get_data.len(), 1);
    // w1 dies before answering.
    sim.kill(b"w1");
    heartbeat(&mut sim.s, b"w2", t0 + secs(9));
    sim.now = t0 + secs(12);
    let out = tick(&mut sim.s, sim.now);
    sim.absorb(out);
    sim.run();
    assert_eq!(sim.result(b"c1", 2), ints(&[("a0", 1)]));
    assert_eq!(sim.s.who_has("a0"), vec![addr(b"w2")]);
}

#[test]
fn gather_missing_on_one_holder_asks_another() {
    let mut s = state();
    let t0 = Instant::now();
    register(&mut s, b"w1", FUNCS, 1, t0);
    get(&mut s, b"c1", 1, &independent(1), "a0", true, t0);
    report(&mut s, b"w1", vec![done("a0", Value::Int(1))], t0);
    // w2 holds a copy too (it registers with one, restarted on its disk store). (A worker
    // that re-registers is taken at its word only for what it is known to hold: see
    // `a_stale_registration_does_not_bring_back_a_released_copy`.)
    let mut msg = register_msg(b"w2", FUNCS, 1);
    if let FromWorker::Register { has, .. } = &mut msg {
        has.push(info(&s, "a0", 8));
    }
    send(&mut s, b"w2", msg, t0);
    assert_eq!(s.who_has("a0"), vec![addr(b"w1"), addr(b"w2")]);
    let out = get(&mut s, b"c1", 2, &Graph::new(), "a0", false, t0);
    let (route, request) = out
        .to_workers
        .iter()
        .find_map(|(r, m)| match m {
            ToWorker::GetData(GetDataBody { request, .. }) => Some((r.clone(), *request)),
            _ => None,
        })
        .expect("a get_data");
    let other: &[u8] = if route == b"w1" { b"w2" } else { b"w1" };
    let answer = FromWorker::Data(DataBody {
        request,
        items: Vec::new(),
        missing: vec!["a0".into()],
    });
    let out = send(&mut s, &route, answer, t0);
    assert!(
        out.compute.is_empty(),
        "another copy exists: no recomputation"
    );
    let request = out
        .to_workers
        .iter()
        .find_map(|(r, m)| match m {
            ToWorker::GetData(GetDataBody { request, keys }) if r == other && keys == &["a0"] => {
                Some(*request)
            }
            _ => None,
        })
        .expect("asked the other holder");
    assert_eq!(s.who_has("a0"), vec![addr(other)]);
    let answer = FromWorker::Data(DataBody {
        request,
        items: vec![KeyData::inline("a0".into(), Value::Int(1))],
        missing: Vec::new(),
    });
    let out = send(&mut s, other, answer, t0);
    assert_eq!(result_of(&out, b"c1", 2), Some(ints(&[("a0", 1)])));
}
