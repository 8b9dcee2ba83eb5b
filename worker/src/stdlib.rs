//! The standard library: functions every worker has, so graphs can do arithmetic, build and
//! reduce lists, and test the cluster (sleep, fail, allocate bytes) without custom code.
//!
//! The functions are raw ([`Registry::register_raw`]) so they can be polymorphic and avoid serde
//! conversions. Their semantics follow Python's (what dask users expect):
//!
//! - Numbers: integers stay integers and a float operand makes the result a float; `bool`s count
//!   as the integers 0 and 1. Integer arithmetic is checked: overflow is an error, as is a
//!   division by zero (integer or float).
//! - `floordiv` and `mod` round towards negative infinity (the result of `mod` has the divisor's
//!   sign), for integers and floats alike.
//! - Truthiness (for `filter`): nil, false, 0, 0.0 and empty str/bytes/list/map are false.
//!
//! Every error names the function (`add: cannot add str and int`). `docs/functions.md` lists the
//! functions with their arguments, results and errors.

use std::cmp::Ordering;
use std::time::Duration;

use zask_core::value::{TooDeep, MAX_NESTING};
use zask_core::Value;

use crate::registry::{Args, Registry};

/// The most items `range` builds (a larger range is almost certainly a mistake, and would take
/// gigabytes).
const MAX_RANGE_LEN: i128 = 100_000_000;
/// The longest `sleep` (one day).
const MAX_SLEEP_SECONDS: f64 = 86_400.0;
/// The most bytes `zeros` allocates (4 GiB).
const MAX_ZEROS: i64 = 4 * 1024 * 1024 * 1024;

/// Registers the standard library on `registry` (what [`Registry::with_stdlib`] starts from),
/// replacing any functions with the same names.
pub fn register_stdlib(registry: &mut Registry) {
    for op in [
        Op::Add,
        Op::Sub,
        Op::Mul,
        Op::Div,
        Op::FloorDiv,
        Op::Mod,
        Op::Pow,
    ] {
        registry.register_raw(op.name(), move |_, args| {
            let [a, b] = args.exactly(op.name())?;
            binary(op, a, b)
        });
    }
    registry
        .register_raw("neg", |_, args| {
            let [x] = args.exactly("neg")?;
            match number(&x) {
                Some(Num::Int(i)) => i
                    .checked_neg()
                    .map(Value::Int)
                    .ok_or_else(|| format!("neg: integer overflow in -({i})")),
                Some(Num::Float(f)) => Ok(Value::Float(-f)),
                None => Err(format!("neg: cannot negate {}", x.type_name())),
            }
        })
        .register_raw("inc", |_, args| {
            let [x] = args.exactly("inc")?;
            step("inc", &x, 1)
        })
        .register_raw("dec", |_, args| {
            let [x] = args.exactly("dec")?;
            step("dec", &x, -1)
        })
        .register_raw("sum", |_, args| {
            let [list] = args.exactly("sum")?;
            sum(list_arg("sum", &list)?)
        })
        .register_raw("mean", |_, args| {
            let [list] = args.exactly("mean")?;
            mean(list_arg("mean", &list)?)
        })
        .register_raw("min", |_, args| {
            let [list] = args.exactly("min")?;
            extreme("min", list, Ordering::Less)
        })
        .register_raw("max", |_, args| {
            let [list] = args.exactly("max")?;
            extreme("max", list, Ordering::Greater)
        })
        .register_raw("len", |_, args| {
            let [x] = args.exactly("len")?;
            let n = match &x {
                Value::List(l) => l.len(),
                Value::Str(s) => s.chars().count(),
                Value::Bytes(b) => b.len(),
                Value::Map(m) => m.len(),
                other => return Err(format!("len: {} has no length", other.type_name())),
            };
            Ok(Value::from(n))
        })
        .register_raw("list", |_, args| {
            if !args.kwargs.is_empty() {
                return Err("list takes no keyword arguments".to_string());
            }
            Ok(Value::List(args.args))
        })
        .register_raw("range", |_, args| {
            let args = args.between("range", 1, 3)?;
            range(&args)
        })
        .register_raw("concat", |_, args| {
            let [lists] = args.exactly("concat")?;
            concat(lists)
        })
        .register_raw("getitem", |_, args| {
            let [container, index] = args.exactly("getitem")?;
            getitem(container, &index)
        })
        .register_raw("identity", |_, args| {
            let [x] = args.exactly("identity")?;
            Ok(x)
        })
        .register_raw("map", |registry, args| {
            let [f, list] = args.exactly("map")?;
            let (f, items) = function_and_list(registry, "map", &f, list)?;
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                out.push(call1(registry, "map", f, i, item)?);
            }
            Ok(Value::List(out))
        })
        .register_raw("filter", |registry, args| {
            let [f, list] = args.exactly("filter")?;
            let (f, items) = function_and_list(registry, "filter", &f, list)?;
            let mut out = Vec::new();
            for (i, item) in items.into_iter().enumerate() {
                if truthy(&call1(registry, "filter", f, i, item.clone())?) {
                    out.push(item);
                }
            }
            Ok(Value::List(out))
        })
        .register_raw("reduce", |registry, args| {
            let mut args = args.between("reduce", 2, 3)?;
            let initial = if args.len() == 3 { args.pop() } else { None };
            let [f, list]: [Value; 2] = args
                .try_into()
                .map_err(|_| "reduce takes 2 or 3 arguments".to_string())?;
            let (f, items) = function_and_list(registry, "reduce", &f, list)?;
            let mut items = items.into_iter().enumerate();
            let mut acc = match initial {
                Some(initial) => initial,
                None => match items.next() {
                    Some((_, first)) => first,
                    None => return Err("reduce: empty list and no initial value".to_string()),
                },
            };
            // The accumulator must not grow deeper than a value may (`reduce("list", ...)`
            // nests one level per item), or whatever touches it next, dropping it included,
            // would recurse a million levels. Walking it at every step would make a reduce
            // quadratic, so its nesting is bounded instead, taking a function's result to
            // nest at most one level deeper than its arguments, and measured only when that
            // bound passes the limit. (The task's result is measured in full anyway.)
            let too_deep =
                |i: usize, e: TooDeep| format!("reduce: the result of {f} on item {i}: {e}");
            let mut bound = acc.nesting(MAX_NESTING).map_err(|e| too_deep(0, e))?;
            for (i, item) in items {
                let item_nesting = item.nesting(MAX_NESTING).map_err(|e| too_deep(i, e))?;
                acc = registry
                    .call(f, Args::positional(vec![acc, item]))
                    .map_err(|e| format!("reduce: {f} failed on item {i}: {e}"))?;
                bound = bound.max(item_nesting) + 1;
                if bound > MAX_NESTING {
                    bound = acc.nesting(MAX_NESTING).map_err(|e| too_deep(i, e))?;
                }
            }
            Ok(acc)
        })
        .register_raw("is_even", |_, args| {
            let [x] = args.exactly("is_even")?;
            match number(&x) {
                Some(Num::Int(i)) => Ok(Value::Bool(i % 2 == 0)),
                _ => Err(format!("is_even: expected an int, got {}", x.type_name())),
            }
        })
        .register_raw("sleep", |_, args| {
            let mut args = args.between("sleep", 1, 2)?;
            let value = if args.len() == 2 {
                args.pop().unwrap_or_default()
            } else {
                Value::Nil
            };
            let seconds = args.pop().unwrap_or_default();
            std::thread::sleep(sleep_duration(&seconds)?);
            Ok(value)
        })
        .register_raw("fail", |_, args| {
            let [message] = args.exactly("fail")?;
            Err(match message {
                Value::Str(s) => s,
                other => other.to_string(),
            })
        })
        .register_raw("zeros", |_, args| {
            let [n] = args.exactly("zeros")?;
            let n = match number(&n) {
                Some(Num::Int(n)) => n,
                _ => return Err(format!("zeros: expected an int, got {}", n.type_name())),
            };
            if !(0..=MAX_ZEROS).contains(&n) {
                return Err(format!(
                    "zeros: size {n} is out of range (0 to {MAX_ZEROS} bytes)"
                ));
            }
            let n = usize::try_from(n)
                .map_err(|_| format!("zeros: {n} bytes do not fit in memory on this worker"))?;
            Ok(Value::Bytes(vec![0; n].into()))
        })
        .register_raw("nbytes", |_, args| {
            let [x] = args.exactly("nbytes")?;
            Ok(Value::from(x.nbytes()))
        });
}

/// A number taken from a value: an integer (bools included) or a float.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    fn to_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }
}

/// The value as a number, if it is one (`true`/`false` are 1 and 0, as in Python).
fn number(v: &Value) -> Option<Num> {
    match v {
        Value::Int(i) => Some(Num::Int(*i)),
        Value::Bool(b) => Some(Num::Int(i64::from(*b))),
        Value::Float(f) => Some(Num::Float(*f)),
        _ => None,
    }
}

/// Python truthiness.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Nil => false,
        Value::Bool(b) => *b,
        Value::Int(i) => *i != 0,
        Value::Float(f) => *f != 0.0,
        Value::Str(s) => !s.is_empty(),
        Value::Bytes(b) => !b.is_empty(),
        Value::List(l) => !l.is_empty(),
        Value::Map(m) => !m.is_empty(),
    }
}

/// The binary numeric functions.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    FloorDiv,
    Mod,
    Pow,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Add => "add",
            Op::Sub => "sub",
            Op::Mul => "mul",
            Op::Div => "div",
            Op::FloorDiv => "floordiv",
            Op::Mod => "mod",
            Op::Pow => "pow",
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Op::Add => "+",
            Op::Sub => "-",
            Op::Mul => "*",
            Op::Div => "/",
            Op::FloorDiv => "//",
            Op::Mod => "%",
            Op::Pow => "**",
        }
    }

    fn type_error(self, a: &str, b: &str) -> String {
        let what = match self {
            Op::Add => format!("cannot add {a} and {b}"),
            Op::Sub => format!("cannot subtract {b} from {a}"),
            Op::Mul => format!("cannot multiply {a} by {b}"),
            Op::Div | Op::FloorDiv => format!("cannot divide {a} by {b}"),
            Op::Mod => format!("cannot take {a} modulo {b}"),
            Op::Pow => format!("cannot raise {a} to the power of {b}"),
        };
        format!("{}: {what}", self.name())
    }

    fn overflow(self, a: i64, b: i64) -> String {
        format!(
            "{}: integer overflow in {a} {} {b}",
            self.name(),
            self.symbol()
        )
    }

    fn by_zero(self) -> String {
        match self {
            Op::Mod => "mod: modulo by zero".to_string(),
            _ => format!("{}: division by zero", self.name()),
        }
    }
}

fn binary(op: Op, a: Value, b: Value) -> Result<Value, String> {
    match (number(&a), number(&b)) {
        (Some(Num::Int(x)), Some(Num::Int(y))) => int_binary(op, x, y),
        (Some(x), Some(y)) => float_binary(op, x.to_f64(), y.to_f64()).map(Value::Float),
        _ => {
            let (ta, tb) = (a.type_name(), b.type_name());
            match (op, a, b) {
                (Op::Add, Value::Str(mut x), Value::Str(y)) => {
                    x.push_str(&y);
                    Ok(Value::Str(x))
                }
                (Op::Add, Value::List(mut x), Value::List(y)) => {
                    x.extend(y);
                    Ok(Value::List(x))
                }
                (Op::Add, Value::Bytes(x), Value::Bytes(y)) => {
                    let mut joined = Vec::with_capacity(x.len() + y.len());
                    joined.extend_from_slice(&x);
                    joined.extend_from_slice(&y);
                    Ok(Value::Bytes(joined.into()))
                }
                _ => Err(op.type_error(ta, tb)),
            }
        }
    }
}

fn int_binary(op: Op, x: i64, y: i64) -> Result<Value, String> {
    let checked = |r: Option<i64>| r.map(Value::Int).ok_or_else(|| op.overflow(x, y));
    match op {
        Op::Add => checked(x.checked_add(y)),
        Op::Sub => checked(x.checked_sub(y)),
        Op::Mul => checked(x.checked_mul(y)),
        Op::Div => {
            if y == 0 {
                Err(op.by_zero())
            } else {
                Ok(Value::Float(x as f64 / y as f64))
            }
        }
        Op::FloorDiv => {
            if y == 0 {
                return Err(op.by_zero());
            }
            let q = x.checked_div(y).ok_or_else(|| op.overflow(x, y))?;
            // Truncation rounded towards zero; Python rounds towards negative infinity.
            if x % y != 0 && ((x < 0) != (y < 0)) {
                Ok(Value::Int(q - 1))
            } else {
                Ok(Value::Int(q))
            }
        }
        Op::Mod => {
            if y == 0 {
                return Err(op.by_zero());
            }
            // `checked_rem` fails only for i64::MIN % -1, which is 0.
            let r = x.checked_rem(y).unwrap_or(0);
            if r != 0 && ((r < 0) != (y < 0)) {
                Ok(Value::Int(r + y))
            } else {
                Ok(Value::Int(r))
            }
        }
        Op::Pow => {
            if y >= 0 {
                let result = match u32::try_from(y) {
                    Ok(e) => x.checked_pow(e),
                    // Huge exponents only work for bases whose powers do not grow.
                    Err(_) => match x {
                        0 => Some(0),
                        1 => Some(1),
                        -1 => Some(if y % 2 == 0 { 1 } else { -1 }),
                        _ => None,
                    },
                };
                checked(result)
            } else {
                float_binary(op, x as f64, y as f64).map(Value::Float)
            }
        }
    }
}

fn float_binary(op: Op, x: f64, y: f64) -> Result<f64, String> {
    match op {
        Op::Add => Ok(x + y),
        Op::Sub => Ok(x - y),
        Op::Mul => Ok(x * y),
        Op::Div => {
            if y == 0.0 {
                Err(op.by_zero())
            } else {
                Ok(x / y)
            }
        }
        Op::FloorDiv | Op::Mod => {
            if y == 0.0 {
                return Err(op.by_zero());
            }
            let (div, rem) = python_float_divmod(x, y);
            Ok(if op == Op::FloorDiv { div } else { rem })
        }
        Op::Pow => {
            if x == 0.0 && y < 0.0 {
                return Err("pow: zero cannot be raised to a negative power".to_string());
            }
            if x < 0.0 && y.is_finite() && y.fract() != 0.0 {
                return Err(format!(
                    "pow: a negative number cannot be raised to a fractional power ({x} ** {y})"
                ));
            }
            let result = x.powf(y);
            if result.is_infinite() && x.is_finite() && y.is_finite() {
                return Err(format!("pow: float overflow in {x} ** {y}"));
            }
            Ok(result)
        }
    }
}

/// Python's `divmod` for floats (CPython's `_float_div_mod`): the floored quotient and a
/// remainder with the divisor's sign. `y` is not zero.
fn python_float_divmod(x: f64, y: f64) -> (f64, f64) {
    let mut rem = x % y;
    let mut div = (x - rem) / y;
    if rem != 0.0 {
        if (y < 0.0) != (rem < 0.0) {
            rem += y;
            div -= 1.0;
        }
    } else {
        rem = 0.0_f64.copysign(y);
    }
    let floordiv = if div != 0.0 {
        let mut floordiv = div.floor();
        if div - floordiv > 0.5 {
            floordiv += 1.0;
        }
        floordiv
    } else {
        0.0_f64.copysign(x / y)
    };
    (floordiv, rem)
}

/// `inc` and `dec`.
fn step(name: &str, x: &Value, by: i64) -> Result<Value, String> {
    match number(x) {
        Some(Num::Int(i)) => i
            .checked_add(by)
            .map(Value::Int)
            .ok_or_else(|| format!("{name}: integer overflow ({i})")),
        Some(Num::Float(f)) => Ok(Value::Float(f + by as f64)),
        None => Err(format!("{name}: expected a number, got {}", x.type_name())),
    }
}

fn list_arg<'a>(name: &str, v: &'a Value) -> Result<&'a [Value], String> {
    match v {
        Value::List(l) => Ok(l),
        other => Err(format!(
            "{name}: expected a list, got {}",
            other.type_name()
        )),
    }
}

fn item_number(name: &str, i: usize, v: &Value) -> Result<Num, String> {
    number(v).ok_or_else(|| format!("{name}: item {i} is {}, not a number", v.type_name()))
}

fn sum(items: &[Value]) -> Result<Value, String> {
    let mut total = Num::Int(0);
    for (i, item) in items.iter().enumerate() {
        total = match (total, item_number("sum", i, item)?) {
            (Num::Int(a), Num::Int(b)) => Num::Int(
                a.checked_add(b)
                    .ok_or_else(|| format!("sum: integer overflow at item {i}"))?,
            ),
            (a, b) => Num::Float(a.to_f64() + b.to_f64()),
        };
    }
    Ok(match total {
        Num::Int(i) => Value::Int(i),
        Num::Float(f) => Value::Float(f),
    })
}

fn mean(items: &[Value]) -> Result<Value, String> {
    if items.is_empty() {
        return Err("mean: empty list".to_string());
    }
    let mut total = 0.0;
    for (i, item) in items.iter().enumerate() {
        total += item_number("mean", i, item)?.to_f64();
    }
    Ok(Value::Float(total / items.len() as f64))
}

/// Orders two values for `min`/`max`: numbers by value, strings lexicographically.
fn compare(name: &str, a: &Value, b: &Value) -> Result<Option<Ordering>, String> {
    match (number(a), number(b), a, b) {
        (Some(Num::Int(x)), Some(Num::Int(y)), _, _) => Ok(Some(x.cmp(&y))),
        (Some(x), Some(y), _, _) => Ok(x.to_f64().partial_cmp(&y.to_f64())),
        (_, _, Value::Str(x), Value::Str(y)) => Ok(Some(x.cmp(y))),
        _ => Err(format!(
            "{name}: cannot compare {} and {}",
            a.type_name(),
            b.type_name()
        )),
    }
}

/// `min` (`want` = Less) and `max` (`want` = Greater): the first extreme item, as in Python.
fn extreme(name: &str, list: Value, want: Ordering) -> Result<Value, String> {
    let Value::List(items) = list else {
        return Err(format!("{name}: expected a list, got {}", list.type_name()));
    };
    let mut items = items.into_iter();
    let Some(mut best) = items.next() else {
        return Err(format!("{name}: empty list"));
    };
    if number(&best).is_none() && !matches!(best, Value::Str(_)) {
        return Err(format!(
            "{name}: cannot compare {} values",
            best.type_name()
        ));
    }
    for item in items {
        if compare(name, &item, &best)? == Some(want) {
            best = item;
        }
    }
    Ok(best)
}

fn int_arg(name: &str, what: &str, v: &Value) -> Result<i64, String> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::Bool(b) => Ok(i64::from(*b)),
        other => Err(format!(
            "{name}: {what} must be an int, got {}",
            other.type_name()
        )),
    }
}

fn range(args: &[Value]) -> Result<Value, String> {
    let (start, stop, step) = match args {
        [stop] => (0, int_arg("range", "stop", stop)?, 1),
        [start, stop] => (
            int_arg("range", "start", start)?,
            int_arg("range", "stop", stop)?,
            1,
        ),
        [start, stop, step] => (
            int_arg("range", "start", start)?,
            int_arg("range", "stop", stop)?,
            int_arg("range", "step", step)?,
        ),
        _ => return Err(format!("range takes 1 to 3 arguments, got {}", args.len())),
    };
    if step == 0 {
        return Err("range: step must not be zero".to_string());
    }
    let (start, stop, step) = (i128::from(start), i128::from(stop), i128::from(step));
    let len = if step > 0 && start < stop {
        (stop - start + step - 1) / step
    } else if step < 0 && start > stop {
        (start - stop - step - 1) / -step
    } else {
        0
    };
    if len > MAX_RANGE_LEN {
        return Err(format!(
            "range: {len} items is too many (at most {MAX_RANGE_LEN})"
        ));
    }
    // Every item lies between start and stop, so it fits in an i64.
    let items = (0..len)
        .map(|i| Value::Int((start + i * step) as i64))
        .collect();
    Ok(Value::List(items))
}

fn concat(lists: Value) -> Result<Value, String> {
    let Value::List(lists) = lists else {
        return Err(format!(
            "concat: expected a list of lists, got {}",
            lists.type_name()
        ));
    };
    let mut total = 0;
    for (i, list) in lists.iter().enumerate() {
        match list {
            Value::List(l) => total += l.len(),
            other => {
                return Err(format!(
                    "concat: item {i} is {}, not a list",
                    other.type_name()
                ))
            }
        }
    }
    let mut out = Vec::with_capacity(total);
    for list in lists {
        if let Value::List(l) = list {
            out.extend(l);
        }
    }
    Ok(Value::List(out))
}

/// Resolves a Python-style index (negative counts from the end) into `0..len`.
fn resolve_index(index: &Value, len: usize, kind: &str) -> Result<usize, String> {
    let i = int_arg("getitem", "the index", index)?;
    let len_i = i64::try_from(len).unwrap_or(i64::MAX);
    let resolved = if i < 0 { i.checked_add(len_i) } else { Some(i) };
    match resolved {
        Some(r) if (0..len_i).contains(&r) => usize::try_from(r)
            .map_err(|_| format!("getitem: index {i} out of range for {kind} of length {len}")),
        _ => Err(format!(
            "getitem: index {i} out of range for {kind} of length {len}"
        )),
    }
}

fn getitem(container: Value, index: &Value) -> Result<Value, String> {
    match container {
        Value::List(mut items) => {
            let i = resolve_index(index, items.len(), "list")?;
            Ok(items.swap_remove(i))
        }
        Value::Str(s) => {
            let len = s.chars().count();
            let i = resolve_index(index, len, "str")?;
            Ok(s.chars()
                .nth(i)
                .map(|c| Value::Str(c.to_string()))
                .unwrap_or_default())
        }
        Value::Bytes(b) => {
            let i = resolve_index(index, b.len(), "bytes")?;
            Ok(b.get(i)
                .map(|&byte| Value::Int(i64::from(byte)))
                .unwrap_or_default())
        }
        Value::Map(entries) => entries
            .into_iter()
            .find(|(k, _)| k == index)
            .map(|(_, v)| v)
            .ok_or_else(|| format!("getitem: key {index} not found in map")),
        other => Err(format!(
            "getitem: cannot index {} (expected a list, str, bytes or map)",
            other.type_name()
        )),
    }
}

/// The `(function name, list)` arguments of map/filter/reduce, checked.
fn function_and_list<'a>(
    registry: &Registry,
    name: &str,
    f: &'a Value,
    list: Value,
) -> Result<(&'a str, Vec<Value>), String> {
    let Value::Str(f) = f else {
        return Err(format!(
            "{name}: the first argument must be a function name (str), got {}",
            f.type_name()
        ));
    };
    if !registry.contains(f) {
        return Err(format!(
            "{name}: no function named {f:?} is registered on this worker"
        ));
    }
    match list {
        Value::List(items) => Ok((f, items)),
        other => Err(format!(
            "{name}: the second argument must be a list, got {}",
            other.type_name()
        )),
    }
}

/// Calls `f(item)` for map/filter; errors say which item failed (0-based index).
fn call1(registry: &Registry, name: &str, f: &str, i: usize, item: Value) -> Result<Value, String> {
    let value = registry
        .call(f, Args::positional(vec![item]))
        .map_err(|e| format!("{name}: {f} failed on item {i}: {e}"))?;
    match value.nesting(MAX_NESTING) {
        Ok(_) => Ok(value),
        Err(e) => {
            value.dismantle();
            Err(format!("{name}: the result of {f} on item {i}: {e}"))
        }
    }
}

fn sleep_duration(seconds: &Value) -> Result<Duration, String> {
    let s = number(seconds)
        .ok_or_else(|| {
            format!(
                "sleep: seconds must be a number, got {}",
                seconds.type_name()
            )
        })?
        .to_f64();
    if s.is_nan() || !(0.0..=MAX_SLEEP_SECONDS).contains(&s) {
        return Err(format!(
            "sleep: {s} seconds is out of range (0 to {MAX_SLEEP_SECONDS})"
        ));
    }
    Ok(Duration::from_secs_f64(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn call(name: &str, args: Vec<Value>) -> Result<Value, String> {
        Registry::with_stdlib()
            .call(name, Args::positional(args))
            .map_err(|e| e.to_string())
    }

    fn ok(name: &str, args: Vec<Value>) -> Value {
        match call(name, args) {
            Ok(v) => v,
            Err(e) => panic!("{name} failed: {e}"),
        }
    }

    fn err(name: &str, args: Vec<Value>) -> String {
        match call(name, args) {
            Ok(v) => panic!("{name} succeeded with {v}"),
            Err(e) => e,
        }
    }

    fn i(x: i64) -> Value {
        Value::Int(x)
    }
    fn f(x: f64) -> Value {
        Value::Float(x)
    }
    fn s(x: &str) -> Value {
        Value::from(x)
    }
    fn ints(xs: &[i64]) -> Value {
        Value::List(xs.iter().map(|&x| Value::Int(x)).collect())
    }
    fn list(xs: Vec<Value>) -> Value {
        Value::List(xs)
    }

    #[test]
    fn every_documented_function_is_registered() {
        let names = Registry::with_stdlib().names();
        let expected = [
            "add", "concat", "dec", "div", "fail", "filter", "floordiv", "getitem", "identity",
            "inc", "is_even", "len", "list", "map", "max", "mean", "min", "mod", "mul", "nbytes",
            "neg", "pow", "range", "reduce", "sleep", "sub", "sum", "zeros",
        ];
        assert_eq!(names, expected);
    }

    #[test]
    fn add_sub_mul() {
        assert_eq!(ok("add", vec![i(1), i(2)]), i(3));
        assert_eq!(ok("add", vec![i(1), f(0.5)]), f(1.5));
        assert_eq!(ok("add", vec![f(0.5), i(1)]), f(1.5));
        assert_eq!(ok("add", vec![Value::Bool(true), i(1)]), i(2));
        assert_eq!(ok("add", vec![s("ab"), s("cd")]), s("abcd"));
        assert_eq!(ok("add", vec![ints(&[1]), ints(&[2, 3])]), ints(&[1, 2, 3]));
        assert_eq!(
            ok(
                "add",
                vec![Value::Bytes(vec![1].into()), Value::Bytes(vec![2].into())]
            ),
            Value::Bytes(vec![1, 2].into())
        );
        assert_eq!(
            err("add", vec![s("a"), i(1)]),
            "add: cannot add str and int"
        );
        assert_eq!(
            err("add", vec![ints(&[]), s("a")]),
            "add: cannot add list and str"
        );
        assert_eq!(
            err("add", vec![Value::Nil, i(1)]),
            "add: cannot add nil and int"
        );
        assert_eq!(
            err("add", vec![i(i64::MAX), i(1)]),
            "add: integer overflow in 9223372036854775807 + 1"
        );
        assert_eq!(ok("sub", vec![i(1), i(3)]), i(-2));
        assert_eq!(ok("sub", vec![f(1.5), i(1)]), f(0.5));
        assert_eq!(
            err("sub", vec![s("a"), i(1)]),
            "sub: cannot subtract int from str"
        );
        assert!(err("sub", vec![i(i64::MIN), i(1)]).starts_with("sub: integer overflow"));
        assert_eq!(ok("mul", vec![i(6), i(7)]), i(42));
        assert_eq!(ok("mul", vec![i(2), f(0.25)]), f(0.5));
        assert!(err("mul", vec![i(i64::MAX), i(2)]).starts_with("mul: integer overflow"));
        assert_eq!(
            err("mul", vec![s("a"), i(3)]),
            "mul: cannot multiply str by int"
        );
    }

    #[test]
    fn wrong_argument_counts() {
        assert_eq!(err("inc", vec![]), "inc takes 1 argument, got 0");
        assert_eq!(err("add", vec![i(1)]), "add takes 2 arguments, got 1");
        assert_eq!(err("range", vec![]), "range takes 1 to 3 arguments, got 0");
        assert_eq!(
            err("sleep", vec![i(0), i(1), i(2)]),
            "sleep takes 1 or 2 arguments, got 3"
        );
        assert_eq!(
            err("reduce", vec![s("add")]),
            "reduce takes 2 or 3 arguments, got 1"
        );
        let kwargs = Args {
            args: vec![i(1), i(2)],
            kwargs: vec![("x".to_string(), i(1))],
        };
        for name in ["add", "list", "range"] {
            assert_eq!(
                Registry::with_stdlib()
                    .call(name, kwargs.clone())
                    .map_err(|e| e.to_string()),
                Err(format!("{name} takes no keyword arguments"))
            );
        }
    }

    #[test]
    fn div() {
        assert_eq!(ok("div", vec![i(7), i(2)]), f(3.5));
        assert_eq!(ok("div", vec![i(4), i(2)]), f(2.0));
        assert_eq!(ok("div", vec![f(1.0), i(4)]), f(0.25));
        assert_eq!(err("div", vec![i(1), i(0)]), "div: division by zero");
        assert_eq!(err("div", vec![f(1.0), f(0.0)]), "div: division by zero");
        assert_eq!(
            err("div", vec![i(1), Value::Bool(false)]),
            "div: division by zero"
        );
        assert_eq!(
            err("div", vec![i(1), s("x")]),
            "div: cannot divide int by str"
        );
    }

    #[test]
    fn floordiv_and_mod_floor_like_python() {
        // Python: 7 // 2 == 3, -7 // 2 == -4, 7 // -2 == -4, -7 // -2 == 3
        assert_eq!(ok("floordiv", vec![i(7), i(2)]), i(3));
        assert_eq!(ok("floordiv", vec![i(-7), i(2)]), i(-4));
        assert_eq!(ok("floordiv", vec![i(7), i(-2)]), i(-4));
        assert_eq!(ok("floordiv", vec![i(-7), i(-2)]), i(3));
        assert_eq!(ok("floordiv", vec![i(-6), i(2)]), i(-3));
        // Python: 7 % 3 == 1, -7 % 3 == 2, 7 % -3 == -2, -7 % -3 == -1
        assert_eq!(ok("mod", vec![i(7), i(3)]), i(1));
        assert_eq!(ok("mod", vec![i(-7), i(3)]), i(2));
        assert_eq!(ok("mod", vec![i(7), i(-3)]), i(-2));
        assert_eq!(ok("mod", vec![i(-7), i(-3)]), i(-1));
        assert_eq!(ok("mod", vec![i(6), i(3)]), i(0));
        assert_eq!(ok("mod", vec![i(i64::MIN), i(-1)]), i(0));
        assert!(err("floordiv", vec![i(i64::MIN), i(-1)]).starts_with("floordiv: integer overflow"));
        assert_eq!(ok("floordiv", vec![i(i64::MIN), i(1)]), i(i64::MIN));
        // Python: 7.5 // 2 == 3.0, -7.5 // 2 == -4.0, 7.5 % -2 == -0.5, -7.5 % 2 == 0.5
        assert_eq!(ok("floordiv", vec![f(7.5), i(2)]), f(3.0));
        assert_eq!(ok("floordiv", vec![f(-7.5), i(2)]), f(-4.0));
        assert_eq!(ok("mod", vec![f(7.5), i(-2)]), f(-0.5));
        assert_eq!(ok("mod", vec![f(-7.5), i(2)]), f(0.5));
        assert_eq!(ok("mod", vec![f(-1e-20), f(1.0)]), f(1.0));
        assert_eq!(
            err("floordiv", vec![i(1), i(0)]),
            "floordiv: division by zero"
        );
        assert_eq!(
            err("floordiv", vec![f(1.0), f(0.0)]),
            "floordiv: division by zero"
        );
        assert_eq!(err("mod", vec![i(1), i(0)]), "mod: modulo by zero");
        assert_eq!(err("mod", vec![f(1.0), f(0.0)]), "mod: modulo by zero");
        assert_eq!(
            err("mod", vec![s("a"), i(0)]),
            "mod: cannot take str modulo int"
        );
    }

    #[test]
    fn pow() {
        assert_eq!(ok("pow", vec![i(2), i(10)]), i(1024));
        assert_eq!(ok("pow", vec![i(-3), i(3)]), i(-27));
        assert_eq!(ok("pow", vec![i(5), i(0)]), i(1));
        assert_eq!(ok("pow", vec![i(2), i(-1)]), f(0.5));
        assert_eq!(ok("pow", vec![i(4), f(0.5)]), f(2.0));
        assert_eq!(ok("pow", vec![f(1.5), i(2)]), f(2.25));
        assert_eq!(ok("pow", vec![i(1), i(i64::MAX)]), i(1));
        assert_eq!(ok("pow", vec![i(-1), i(i64::MAX)]), i(-1));
        assert_eq!(ok("pow", vec![i(-1), i(1 << 40)]), i(1));
        assert_eq!(ok("pow", vec![i(0), i(1 << 40)]), i(0));
        assert!(err("pow", vec![i(2), i(63)]).starts_with("pow: integer overflow"));
        assert!(err("pow", vec![i(2), i(1 << 40)]).starts_with("pow: integer overflow"));
        assert_eq!(ok("pow", vec![i(2), i(62)]), i(1 << 62));
        assert_eq!(
            err("pow", vec![i(0), i(-1)]),
            "pow: zero cannot be raised to a negative power"
        );
        assert_eq!(
            err("pow", vec![f(0.0), f(-0.5)]),
            "pow: zero cannot be raised to a negative power"
        );
        assert!(err("pow", vec![i(-8), f(0.5)]).starts_with("pow: a negative number"));
        assert!(err("pow", vec![f(10.0), i(400)]).starts_with("pow: float overflow"));
        assert_eq!(ok("pow", vec![f(-2.0), f(2.0)]), f(4.0));
        assert_eq!(
            err("pow", vec![s("2"), i(2)]),
            "pow: cannot raise str to the power of int"
        );
    }

    #[test]
    fn unary() {
        assert_eq!(ok("neg", vec![i(3)]), i(-3));
        assert_eq!(ok("neg", vec![f(1.5)]), f(-1.5));
        assert_eq!(ok("neg", vec![Value::Bool(true)]), i(-1));
        assert!(err("neg", vec![i(i64::MIN)]).starts_with("neg: integer overflow"));
        assert_eq!(err("neg", vec![s("a")]), "neg: cannot negate str");
        assert_eq!(ok("inc", vec![i(1)]), i(2));
        assert_eq!(ok("inc", vec![f(1.5)]), f(2.5));
        assert_eq!(ok("dec", vec![i(1)]), i(0));
        assert_eq!(ok("dec", vec![f(0.5)]), f(-0.5));
        assert!(err("inc", vec![i(i64::MAX)]).starts_with("inc: integer overflow"));
        assert!(err("dec", vec![i(i64::MIN)]).starts_with("dec: integer overflow"));
        assert_eq!(err("inc", vec![s("a")]), "inc: expected a number, got str");
        assert_eq!(
            err("dec", vec![Value::Nil]),
            "dec: expected a number, got nil"
        );
    }

    #[test]
    fn sum_and_mean() {
        assert_eq!(ok("sum", vec![ints(&[])]), i(0));
        assert_eq!(ok("sum", vec![ints(&[1, 2, 3])]), i(6));
        assert_eq!(ok("sum", vec![list(vec![i(1), f(0.5), i(2)])]), f(3.5));
        assert_eq!(
            ok(
                "sum",
                vec![list(vec![Value::Bool(true), Value::Bool(true)])]
            ),
            i(2)
        );
        assert_eq!(
            err("sum", vec![list(vec![i(1), s("x")])]),
            "sum: item 1 is str, not a number"
        );
        assert_eq!(err("sum", vec![i(1)]), "sum: expected a list, got int");
        assert_eq!(
            err("sum", vec![ints(&[i64::MAX, 1])]),
            "sum: integer overflow at item 1"
        );
        assert_eq!(ok("mean", vec![ints(&[1, 2])]), f(1.5));
        assert_eq!(ok("mean", vec![list(vec![f(1.0), i(3)])]), f(2.0));
        assert_eq!(
            ok("mean", vec![ints(&[i64::MAX, i64::MAX])]),
            f(i64::MAX as f64)
        );
        assert_eq!(err("mean", vec![ints(&[])]), "mean: empty list");
        assert_eq!(
            err("mean", vec![list(vec![Value::Nil])]),
            "mean: item 0 is nil, not a number"
        );
    }

    #[test]
    fn min_and_max() {
        assert_eq!(ok("min", vec![ints(&[3, 1, 2])]), i(1));
        assert_eq!(ok("max", vec![ints(&[3, 1, 2])]), i(3));
        assert_eq!(ok("max", vec![list(vec![i(1), f(2.5), i(2)])]), f(2.5));
        assert_eq!(ok("min", vec![list(vec![i(1), f(1.0)])]), i(1)); // the first of equals
        assert_eq!(ok("min", vec![list(vec![s("b"), s("a"), s("c")])]), s("a"));
        assert_eq!(ok("max", vec![list(vec![s("b")])]), s("b"));
        assert_eq!(
            ok("max", vec![ints(&[i64::MAX - 1, i64::MAX])]),
            i(i64::MAX)
        );
        assert_eq!(err("min", vec![ints(&[])]), "min: empty list");
        assert_eq!(err("max", vec![ints(&[])]), "max: empty list");
        assert_eq!(
            err("max", vec![list(vec![i(1), s("a")])]),
            "max: cannot compare str and int"
        );
        assert_eq!(
            err("min", vec![list(vec![Value::Nil])]),
            "min: cannot compare nil values"
        );
        assert_eq!(err("min", vec![i(1)]), "min: expected a list, got int");
    }

    #[test]
    fn len() {
        assert_eq!(ok("len", vec![ints(&[1, 2, 3])]), i(3));
        assert_eq!(ok("len", vec![s("héllo")]), i(5));
        assert_eq!(ok("len", vec![Value::Bytes(vec![0; 7].into())]), i(7));
        assert_eq!(
            ok(
                "len",
                vec![Value::Map(vec![(s("a"), i(1)), (s("b"), i(2))])]
            ),
            i(2)
        );
        assert_eq!(err("len", vec![i(1)]), "len: int has no length");
    }

    #[test]
    fn list_range_concat_identity() {
        assert_eq!(ok("list", vec![]), list(vec![]));
        assert_eq!(ok("list", vec![i(1), s("a")]), list(vec![i(1), s("a")]));
        assert_eq!(ok("range", vec![i(4)]), ints(&[0, 1, 2, 3]));
        assert_eq!(ok("range", vec![i(2), i(5)]), ints(&[2, 3, 4]));
        assert_eq!(ok("range", vec![i(0), i(10), i(3)]), ints(&[0, 3, 6, 9]));
        assert_eq!(ok("range", vec![i(5), i(0), i(-2)]), ints(&[5, 3, 1]));
        assert_eq!(ok("range", vec![i(-3)]), ints(&[]));
        assert_eq!(ok("range", vec![i(5), i(0)]), ints(&[]));
        assert_eq!(
            ok("range", vec![i(i64::MAX - 1), i(i64::MAX)]),
            ints(&[i64::MAX - 1])
        );
        assert_eq!(
            ok("range", vec![i(i64::MIN), i(i64::MAX), i(i64::MAX)]),
            ints(&[i64::MIN, -1, i64::MAX - 1])
        );
        assert_eq!(
            err("range", vec![i(0), i(1), i(0)]),
            "range: step must not be zero"
        );
        assert_eq!(
            err("range", vec![i(0), i(i64::MAX)]),
            "range: 9223372036854775807 items is too many (at most 100000000)"
        );
        assert_eq!(
            err("range", vec![i(100_000_001), i(0), i(-1)]),
            "range: 100000001 items is too many (at most 100000000)"
        );
        assert_eq!(
            err("range", vec![f(1.0)]),
            "range: stop must be an int, got float"
        );
        assert_eq!(
            ok(
                "concat",
                vec![list(vec![ints(&[1, 2]), ints(&[]), ints(&[3])])]
            ),
            ints(&[1, 2, 3])
        );
        assert_eq!(ok("concat", vec![list(vec![])]), list(vec![]));
        assert_eq!(
            ok("concat", vec![list(vec![list(vec![ints(&[1])])])]),
            list(vec![ints(&[1])])
        );
        assert_eq!(
            err("concat", vec![list(vec![ints(&[1]), i(2)])]),
            "concat: item 1 is int, not a list"
        );
        assert_eq!(
            err("concat", vec![i(1)]),
            "concat: expected a list of lists, got int"
        );
        assert_eq!(ok("identity", vec![s("x")]), s("x"));
    }

    #[test]
    fn getitem() {
        let l = ints(&[10, 20, 30]);
        assert_eq!(ok("getitem", vec![l.clone(), i(0)]), i(10));
        assert_eq!(ok("getitem", vec![l.clone(), i(2)]), i(30));
        assert_eq!(ok("getitem", vec![l.clone(), i(-1)]), i(30));
        assert_eq!(ok("getitem", vec![l.clone(), i(-3)]), i(10));
        assert_eq!(
            err("getitem", vec![l.clone(), i(3)]),
            "getitem: index 3 out of range for list of length 3"
        );
        assert_eq!(
            err("getitem", vec![l.clone(), i(-4)]),
            "getitem: index -4 out of range for list of length 3"
        );
        assert_eq!(
            err("getitem", vec![l.clone(), i(i64::MIN)]),
            format!(
                "getitem: index {} out of range for list of length 3",
                i64::MIN
            )
        );
        assert_eq!(
            err("getitem", vec![l, s("a")]),
            "getitem: the index must be an int, got str"
        );
        assert_eq!(ok("getitem", vec![s("héllo"), i(1)]), s("é"));
        assert_eq!(ok("getitem", vec![s("héllo"), i(-1)]), s("o"));
        assert_eq!(
            err("getitem", vec![s(""), i(0)]),
            "getitem: index 0 out of range for str of length 0"
        );
        assert_eq!(
            ok("getitem", vec![Value::Bytes(vec![1, 255].into()), i(1)]),
            i(255)
        );
        let m = Value::Map(vec![(s("a"), i(1)), (i(2), s("two"))]);
        assert_eq!(ok("getitem", vec![m.clone(), s("a")]), i(1));
        assert_eq!(ok("getitem", vec![m.clone(), i(2)]), s("two"));
        assert_eq!(
            err("getitem", vec![m, s("b")]),
            "getitem: key \"b\" not found in map"
        );
        assert_eq!(
            err("getitem", vec![i(1), i(0)]),
            "getitem: cannot index int (expected a list, str, bytes or map)"
        );
    }

    #[test]
    fn map_filter_reduce() {
        assert_eq!(
            ok("map", vec![s("inc"), ints(&[1, 2, 3])]),
            ints(&[2, 3, 4])
        );
        assert_eq!(ok("map", vec![s("inc"), ints(&[])]), ints(&[]));
        assert_eq!(
            err("map", vec![s("inc"), list(vec![i(1), i(2), i(3), s("x")])]),
            "map: inc failed on item 3: inc: expected a number, got str"
        );
        assert_eq!(
            err("map", vec![s("nope"), ints(&[1])]),
            "map: no function named \"nope\" is registered on this worker"
        );
        assert_eq!(
            err("map", vec![i(1), ints(&[1])]),
            "map: the first argument must be a function name (str), got int"
        );
        assert_eq!(
            err("map", vec![s("inc"), i(1)]),
            "map: the second argument must be a list, got int"
        );
        assert_eq!(
            ok("filter", vec![s("is_even"), ints(&[1, 2, 3, 4])]),
            ints(&[2, 4])
        );
        assert_eq!(
            ok(
                "filter",
                vec![
                    s("identity"),
                    list(vec![
                        Value::Nil,
                        Value::Bool(false),
                        i(0),
                        f(0.0),
                        s(""),
                        Value::Bytes(vec![].into()),
                        list(vec![]),
                        Value::Map(vec![]),
                        i(1),
                        s("a"),
                        f(-0.5),
                        list(vec![Value::Nil]),
                    ])
                ]
            ),
            list(vec![i(1), s("a"), f(-0.5), list(vec![Value::Nil])])
        );
        assert!(truthy(&f(f64::NAN)));
        assert!(!truthy(&f(-0.0)));
        assert!(truthy(&Value::Map(vec![(Value::Nil, Value::Nil)])));
        assert_eq!(
            err("filter", vec![s("is_even"), list(vec![i(2), f(1.5)])]),
            "filter: is_even failed on item 1: is_even: expected an int, got float"
        );
        assert_eq!(ok("reduce", vec![s("add"), ints(&[1, 2, 3, 4])]), i(10));
        assert_eq!(ok("reduce", vec![s("sub"), ints(&[10, 1, 2])]), i(7));
        assert_eq!(ok("reduce", vec![s("add"), ints(&[1, 2]), i(100)]), i(103));
        assert_eq!(ok("reduce", vec![s("add"), ints(&[]), i(5)]), i(5));
        assert_eq!(ok("reduce", vec![s("add"), ints(&[7])]), i(7));
        assert_eq!(
            ok(
                "reduce",
                vec![s("add"), list(vec![ints(&[1]), ints(&[2])]), list(vec![])]
            ),
            ints(&[1, 2])
        );
        assert_eq!(
            err("reduce", vec![s("add"), ints(&[])]),
            "reduce: empty list and no initial value"
        );
        assert_eq!(
            err("reduce", vec![s("add"), list(vec![i(1), i(2), s("x")])]),
            "reduce: add failed on item 2: add: cannot add int and str"
        );
        assert_eq!(
            err("reduce", vec![s("inc"), ints(&[1, 2])]),
            "reduce: inc failed on item 1: inc takes 1 argument, got 2"
        );
    }

    /// `reduce("list", range(1000000))` nests one level per item: refused as soon as it
    /// passes the limit, with an error, instead of overflowing the stack of whatever touches
    /// it next (it killed every worker it was sent to).
    #[test]
    fn reduce_refuses_an_accumulator_nested_too_deep() {
        let items = Value::List((0..1_000_000).map(Value::Int).collect());
        let err = err("reduce", vec![s("list"), items]);
        assert!(
            err.contains("reduce") && err.contains("nests more than 512"),
            "{err}"
        );
        // A flat accumulator is not bothered.
        let items = Value::List((0..10_000).map(Value::Int).collect());
        assert_eq!(ok("reduce", vec![s("add"), items]), i(49_995_000));
        // Nor is one that grows wide: concatenating 100,000 one-item lists stays linear in
        // the checking (it was walked whole at every step: minutes).
        let items = Value::List((0..100_000).map(|x| Value::List(vec![i(x)])).collect());
        let start = std::time::Instant::now();
        let Value::List(all) = ok("reduce", vec![s("add"), items]) else {
            panic!("a list")
        };
        assert_eq!(all.len(), 100_000);
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn map_reaches_user_functions_and_reports_their_panics() {
        let mut registry = Registry::with_stdlib();
        registry
            .register("square", |x: i64| x * x)
            .register("boom", |_: i64| -> i64 { panic!("kaboom") });
        let args = Args::positional(vec![s("square"), ints(&[1, 2, 3])]);
        assert_eq!(registry.call("map", args), Ok(ints(&[1, 4, 9])));
        let args = Args::positional(vec![s("boom"), ints(&[1])]);
        assert_eq!(
            registry.call("map", args).map_err(|e| e.to_string()),
            Err("map: boom failed on item 0: panicked: kaboom".to_string())
        );
    }

    #[test]
    fn is_even() {
        assert_eq!(ok("is_even", vec![i(4)]), Value::Bool(true));
        assert_eq!(ok("is_even", vec![i(-3)]), Value::Bool(false));
        assert_eq!(ok("is_even", vec![i(0)]), Value::Bool(true));
        assert_eq!(ok("is_even", vec![i(i64::MIN)]), Value::Bool(true));
        assert_eq!(
            err("is_even", vec![f(2.0)]),
            "is_even: expected an int, got float"
        );
    }

    #[test]
    fn sleep() {
        let start = Instant::now();
        assert_eq!(ok("sleep", vec![f(0.02)]), Value::Nil);
        assert!(start.elapsed() >= Duration::from_millis(20));
        assert_eq!(ok("sleep", vec![i(0), s("done")]), s("done"));
        assert!(err("sleep", vec![i(-1)]).starts_with("sleep: -1 seconds is out of range"));
        assert!(err("sleep", vec![f(f64::NAN)]).starts_with("sleep: NaN seconds is out of range"));
        assert!(err("sleep", vec![f(86_400.5)]).contains("out of range"));
        assert!(err("sleep", vec![f(f64::INFINITY)]).contains("out of range"));
        assert_eq!(
            err("sleep", vec![s("1")]),
            "sleep: seconds must be a number, got str"
        );
    }

    #[test]
    fn fail() {
        assert_eq!(err("fail", vec![s("it broke")]), "it broke");
        assert_eq!(err("fail", vec![i(3)]), "3");
        assert_eq!(err("fail", vec![ints(&[1, 2])]), "[1,2]");
        assert_eq!(err("fail", vec![]), "fail takes 1 argument, got 0");
    }

    #[test]
    fn zeros_and_nbytes() {
        assert_eq!(ok("zeros", vec![i(3)]), Value::Bytes(vec![0, 0, 0].into()));
        assert_eq!(ok("zeros", vec![i(0)]), Value::Bytes(vec![].into()));
        assert_eq!(
            err("zeros", vec![i(-1)]),
            "zeros: size -1 is out of range (0 to 4294967296 bytes)"
        );
        assert!(err("zeros", vec![i(MAX_ZEROS + 1)]).contains("out of range"));
        assert_eq!(
            err("zeros", vec![f(1.0)]),
            "zeros: expected an int, got float"
        );
        assert_eq!(ok("nbytes", vec![ok("zeros", vec![i(1000)])]), i(1000));
        assert_eq!(ok("nbytes", vec![ints(&[1, 2])]), i(24));
        assert_eq!(ok("nbytes", vec![Value::Nil]), i(1));
    }

    #[test]
    fn python_float_divmod_matches_cpython() {
        // Values printed by CPython's divmod.
        assert_eq!(python_float_divmod(7.0, 2.0), (3.0, 1.0));
        assert_eq!(python_float_divmod(-7.0, 2.0), (-4.0, 1.0));
        assert_eq!(python_float_divmod(7.0, -2.0), (-4.0, -1.0));
        assert_eq!(
            python_float_divmod(0.1, 0.01),
            (10.0, 3.469446951953614e-18)
        );
        assert_eq!(python_float_divmod(7.5, -2.0), (-4.0, -0.5));
        let (d, m) = python_float_divmod(-0.0, 5.0);
        assert!(d == 0.0 && d.is_sign_negative() && m == 0.0 && m.is_sign_positive());
        let (_, m) = python_float_divmod(4.0, -2.0);
        assert!(m == 0.0 && m.is_sign_negative());
    }
}
