//! Reading msgpack without decoding it: skipping values, finding a map's fields and an array's
//! items as byte slices.
//!
//! Used where the ordinary decoder is too all-or-nothing: a `report` or `compute` holding one
//! item that cannot be decoded (a value nested too deep, a malformed node) is taken apart item
//! by item, so only that item fails (its key is read from its bytes) and the rest are taken;
//! a header is checked to be a map with an `op` string before anything else is decoded; a big
//! graph is split for two threads (`get_split`). Nothing here recurses: nesting costs a
//! counter, not stack.

use rmp::Marker;

/// Moves `rd` past one msgpack value without building it; `None` if it is malformed,
/// truncated, or an extension type (not a zask value).
pub fn skip(rd: &mut &[u8]) -> Option<()> {
    // Values still to skip: containers add their items to it (no recursion).
    let mut pending: u64 = 1;
    while pending > 0 {
        pending -= 1;
        let marker = rmp::decode::read_marker(rd).ok()?;
        let (bytes, items) = match marker {
            Marker::FixPos(_) | Marker::FixNeg(_) | Marker::Null | Marker::True | Marker::False => {
                (0, 0)
            }
            Marker::U8 | Marker::I8 => (1, 0),
            Marker::U16 | Marker::I16 => (2, 0),
            Marker::U32 | Marker::I32 | Marker::F32 => (4, 0),
            Marker::U64 | Marker::I64 | Marker::F64 => (8, 0),
            Marker::FixStr(n) => (n as usize, 0),
            Marker::Str8 | Marker::Bin8 => (length(rd, 1)?, 0),
            Marker::Str16 | Marker::Bin16 => (length(rd, 2)?, 0),
            Marker::Str32 | Marker::Bin32 => (length(rd, 4)?, 0),
            Marker::FixArray(n) => (0, n as u64),
            Marker::Array16 => (0, length(rd, 2)? as u64),
            Marker::Array32 => (0, length(rd, 4)? as u64),
            Marker::FixMap(n) => (0, 2 * n as u64),
            Marker::Map16 => (0, 2 * length(rd, 2)? as u64),
            Marker::Map32 => (0, 2 * length(rd, 4)? as u64),
            _ => return None, // Extension types and the reserved marker.
        };
        *rd = rd.get(bytes..)?;
        // Each item takes at least a byte: a count beyond what is left is malformed.
        if items > rd.len() as u64 {
            return None;
        }
        pending += items;
    }
    Some(())
}

/// Reads a big-endian length of `width` bytes.
fn length(rd: &mut &[u8], width: usize) -> Option<usize> {
    let bytes = rd.get(..width)?;
    *rd = rd.get(width..)?;
    Some(bytes.iter().fold(0usize, |n, b| (n << 8) | *b as usize))
}

/// The bytes of the value at the start of `rd` (and moves `rd` past it).
pub fn take_value<'a>(rd: &mut &'a [u8]) -> Option<&'a [u8]> {
    let start = *rd;
    skip(rd)?;
    start.get(..start.len() - rd.len())
}

/// The fields of the map at the start of `bytes`, as (name, value bytes), in order; a field
/// whose name is not a string is given as `None`. `None` if `bytes` does not start with a
/// well-formed map.
pub fn map_fields(bytes: &[u8]) -> Option<Vec<(Option<&str>, &[u8])>> {
    let mut rd = bytes;
    let count = rmp::decode::read_map_len(&mut rd).ok()?;
    let mut fields = Vec::with_capacity((count as usize).min(64));
    for _ in 0..count {
        let name = take_field_name(&mut rd)?;
        fields.push((name, take_value(&mut rd)?));
    }
    Some(fields)
}

/// Takes the name of a map field off the front of `rd`: `Some(None)` for a name that is not
/// a string (skipped); `None` if `rd` does not start with a well-formed value.
pub(crate) fn take_field_name<'a>(rd: &mut &'a [u8]) -> Option<Option<&'a str>> {
    match rmp::decode::read_str_from_slice(*rd) {
        Ok((name, rest)) => {
            *rd = rest;
            Some(Some(name))
        }
        Err(_) => {
            skip(rd)?;
            Some(None)
        }
    }
}

/// The value bytes of field `name` of the map at the start of `bytes` (its first occurrence).
pub fn field<'a>(bytes: &'a [u8], name: &str) -> Option<&'a [u8]> {
    map_fields(bytes)?
        .into_iter()
        .find(|(n, _)| *n == Some(name))
        .map(|(_, v)| v)
}

/// The string value of field `name` of the map at the start of `bytes` (a message item's
/// `key`, read from an item that does not decode whole).
pub fn str_field<'a>(bytes: &'a [u8], name: &str) -> Option<&'a str> {
    field(bytes, name).and_then(as_str)
}

/// The string at the start of `bytes`.
pub fn as_str(bytes: &[u8]) -> Option<&str> {
    rmp::decode::read_str_from_slice(bytes).ok().map(|(s, _)| s)
}

/// The items of the array at the start of `bytes`, each as its bytes.
pub fn array_items(bytes: &[u8]) -> Option<Vec<&[u8]>> {
    let mut rd = bytes;
    let count = rmp::decode::read_array_len(&mut rd).ok()?;
    if count as usize > rd.len() {
        return None;
    }
    (0..count).map(|_| take_value(&mut rd)).collect()
}

/// What is wrong with a message header, before its fields are looked at: it must be a map
/// with an `op` string. `Ok(op)` when it is. (Fields before `op` are skipped; zask writes `op`
/// first, so a header holding a million-node graph costs nothing more to check.)
pub fn header_op(header: &[u8]) -> Result<&str, String> {
    let not_a_map = || {
        format!(
            "a message header is a msgpack map with an \"op\" string naming the message, got {}",
            describe(header)
        )
    };
    let mut rd = header;
    let count = rmp::decode::read_map_len(&mut rd).map_err(|_| not_a_map())?;
    for _ in 0..count {
        let name = take_field_name(&mut rd).ok_or_else(not_a_map)?;
        if name == Some("op") {
            return as_str(rd).ok_or_else(|| {
                format!(
                    "\"op\" names the message and must be a string, got {}",
                    describe(rd)
                )
            });
        }
        skip(&mut rd).ok_or_else(not_a_map)?;
    }
    Err("the message header has no \"op\" field naming the message".to_string())
}

/// A short description of the msgpack value at the start of `bytes` ("an array", "an int").
pub fn describe(bytes: &[u8]) -> &'static str {
    let Some(&first) = bytes.first() else {
        return "nothing";
    };
    match Marker::from_u8(first) {
        Marker::FixPos(_)
        | Marker::FixNeg(_)
        | Marker::U8
        | Marker::U16
        | Marker::U32
        | Marker::U64
        | Marker::I8
        | Marker::I16
        | Marker::I32
        | Marker::I64 => "an int",
        Marker::F32 | Marker::F64 => "a float",
        Marker::Null => "nil",
        Marker::True | Marker::False => "a bool",
        Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32 => "a string",
        Marker::Bin8 | Marker::Bin16 | Marker::Bin32 => "bytes",
        Marker::FixArray(_) | Marker::Array16 | Marker::Array32 => "an array",
        Marker::FixMap(_) | Marker::Map16 | Marker::Map32 => "a malformed map",
        _ => "something that is not msgpack",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Value;

    fn enc(v: &Value) -> Vec<u8> {
        rmp_serde::to_vec(v).unwrap()
    }

    #[test]
    fn skip_passes_every_kind_and_deep_nesting_without_recursion() {
        let mut deep = Value::Int(1);
        for _ in 0..100_000 {
            deep = Value::List(vec![deep]);
        }
        let values = vec![
            Value::Nil,
            Value::Bool(true),
            Value::Int(-5),
            Value::Int(1 << 40),
            Value::Float(1.5),
            Value::Str("x".repeat(300)),
            Value::Bytes(vec![1; 70_000].into()),
            Value::Map(vec![(Value::Int(1), Value::from("a"))]),
        ];
        for v in &values {
            let bytes = enc(v);
            let mut rd = &bytes[..];
            skip(&mut rd).unwrap();
            assert!(rd.is_empty(), "{v:?}");
        }
        // (Encoded by hand: the encoder itself recurses.)
        let mut bytes = vec![0x91u8; 100_000];
        bytes.push(0x01);
        let mut rd = &bytes[..];
        skip(&mut rd).unwrap();
        assert!(rd.is_empty());
        deep.dismantle();
        // Truncated, or counts beyond what is there.
        assert!(skip(&mut &[0x92u8, 0x01][..]).is_none());
        assert!(skip(&mut &[0xddu8, 0xff, 0xff, 0xff, 0xff][..]).is_none());
        assert!(skip(&mut &[0xd9u8, 0x05, b'a'][..]).is_none());
    }

    #[test]
    fn fields_items_and_ops_are_found_by_name() {
        let header = enc(&Value::Map(vec![
            (Value::from("request"), Value::Int(3)),
            (Value::from("op"), Value::from("status")),
            (Value::Int(7), Value::from("not a name")),
            (
                Value::from("items"),
                Value::List(vec![Value::Int(1), Value::from("two")]),
            ),
        ]));
        assert_eq!(header_op(&header), Ok("status"));
        let fields = map_fields(&header).unwrap();
        assert_eq!(fields.len(), 4);
        assert_eq!(fields[2].0, None);
        let items = array_items(field(&header, "items").unwrap()).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(as_str(items[1]), Some("two"));
        assert!(field(&header, "nope").is_none());

        let err = header_op(&enc(&Value::from(vec![1, 2, 3]))).unwrap_err();
        assert!(err.contains("map") && err.contains("an array"), "{err}");
        let err =
            header_op(&enc(&Value::Map(vec![(Value::from("op"), Value::Int(7))]))).unwrap_err();
        assert!(
            err.contains("must be a string") && err.contains("an int"),
            "{err}"
        );
        let err = header_op(&enc(&Value::Map(vec![]))).unwrap_err();
        assert!(err.contains("no \"op\""), "{err}");
    }
}
