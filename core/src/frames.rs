//! Framing: how a message becomes ZeroMQ frames and back.
//!
//! `[routing id]` (ROUTER sockets only) `header` `blob 0` `blob 1` ... The header is the
//! message encoded with `rmp_serde::to_vec_named`; blobs hold large values referenced by
//! [`Data::frame`]. Values pack themselves with [`pack`] and unpack with [`unpack`].

use std::sync::atomic::{AtomicUsize, Ordering};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::protocol::Data;
use crate::value::{Bytes, Value};

/// Values whose estimated size is at least this travel in a blob frame rather than inline.
pub const INLINE_LIMIT: u64 = 16 * 1024;

/// Encoding or decoding frames failed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// A message without its header frame.
    #[error("message has no header frame")]
    NoHeader,
    /// The header is not the message expected (see [`crate::protocol::Message::decode`] for
    /// errors that tell the cases apart).
    #[error("cannot decode message header: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    /// The message cannot be encoded (a value serde cannot write as msgpack).
    #[error("cannot encode message: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    /// A [`Data`] names a blob frame the message does not have.
    #[error("message refers to blob frame {0}, which it does not have")]
    MissingFrame(u32),
    /// A message names a blob frame for a second value (no sender does: each value gets
    /// frames of its own).
    #[error("message refers to blob frame {0} for more than one value")]
    Reused(u32),
    /// The value in a blob frame cannot be decoded.
    #[error("cannot decode value in blob frame {0}: {1}")]
    Blob(u32, rmp_serde::decode::Error),
    /// Sending or receiving failed.
    #[error("zmq: {0}")]
    Zmq(#[from] zmq::Error),
}

/// An encoded message: the header and its blob frames, ready to send.
#[derive(Debug, Default)]
pub struct Frames {
    /// The header: the message, msgpack-encoded.
    pub header: Vec<u8>,
    /// The blob frames, in the order [`Data::frame`] numbers them.
    pub blobs: Vec<Vec<u8>>,
}

/// The largest frame a value is carried in on an encrypted connection (see
/// [`set_max_frame`]): 1 MiB. CURVE encrypts a frame whole before sending any of it, so a
/// 64 MiB value in one frame is encrypted, then sent, then decrypted, one after the other; in
/// frames of 1 MiB the receiver decrypts one while the sender encrypts the next.
pub const ENCRYPTED_FRAME: usize = 1 << 20;

/// The largest frame a value is carried in, in this process (no limit until
/// [`set_max_frame`] sets one).
static MAX_FRAME: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Carries large values in frames of at most `bytes` from now on, in this process (set to
/// [`ENCRYPTED_FRAME`] when connections are encrypted). A receiver joins the frames of one
/// value whatever this says; unencrypted, one frame per value is faster (it is sent from
/// memory as it is, and received without a copy).
pub fn set_max_frame(bytes: usize) {
    MAX_FRAME.store(bytes.max(1), Ordering::Relaxed);
}

fn max_frame() -> usize {
    MAX_FRAME.load(Ordering::Relaxed)
}

/// A value in frames from `first` on: `Data` naming them.
fn framed(first: usize, frames: usize, raw: bool) -> Data {
    Data {
        value: Value::Nil,
        frame: Some(first as u32),
        raw,
        extra_frames: frames.saturating_sub(1) as u32,
    }
}

/// Puts `value` into a [`Data`]: inline when small, else appended to `blobs` (raw for bytes).
pub fn pack(value: Value, blobs: &mut Vec<Vec<u8>>) -> Data {
    pack_in(value, blobs, max_frame())
}

/// [`pack`], in frames of at most `limit` bytes.
fn pack_in(value: Value, blobs: &mut Vec<Vec<u8>>, limit: usize) -> Data {
    if value.nbytes() < INLINE_LIMIT {
        return Data {
            value,
            frame: None,
            raw: false,
            extra_frames: 0,
        };
    }
    let first = blobs.len();
    let (encoded, raw) = match value {
        // No copy when this is the value's only reference (a fresh result) and fits a frame.
        Value::Bytes(b) => (Vec::from(b), true),
        other => match rmp_serde::to_vec(&other) {
            Ok(encoded) => (encoded, false),
            // Encoding a Value cannot fail; if it ever did, inline keeps the data.
            Err(_) => {
                return Data {
                    value: other,
                    frame: None,
                    raw: false,
                    extra_frames: 0,
                }
            }
        },
    };
    if encoded.len() <= limit {
        blobs.push(encoded);
    } else {
        blobs.extend(encoded.chunks(limit).map(<[u8]>::to_vec));
    }
    framed(first, blobs.len() - first, raw)
}

/// As [`pack`], for [`send_shared`]: a large bytes value goes into `blobs` as it is (shared
/// with whoever else holds it, a worker's store: no copy, its frames slices of it); other
/// large values are encoded into frames of their own.
pub fn pack_shared(value: Value, blobs: &mut Vec<Bytes>) -> Data {
    pack_shared_in(value, blobs, max_frame())
}

/// [`pack_shared`], in frames of at most `limit` bytes.
fn pack_shared_in(value: Value, blobs: &mut Vec<Bytes>, limit: usize) -> Data {
    let first = blobs.len();
    match value {
        Value::Bytes(b) if b.len() as u64 >= INLINE_LIMIT => {
            let mut at = 0;
            while at < b.len() {
                let end = b.len().min(at.saturating_add(limit));
                blobs.push(b.slice(at..end));
                at = end;
            }
            framed(first, blobs.len() - first, true)
        }
        other => {
            let mut owned = Vec::new();
            let mut data = pack_in(other, &mut owned, limit);
            if data.frame.is_some() {
                data.frame = Some(first as u32);
                blobs.extend(owned.into_iter().map(Bytes::from));
            }
            data
        }
    }
}

/// Sends a message like [`send`], its blob frames sharing memory with values still in use (a
/// 64 MiB value in a worker's store is not copied to be served): ZeroMQ holds a reference to
/// each until it has sent it, then drops it (on its own I/O thread).
pub fn send_shared(
    socket: &mut zmq::Socket,
    route: Option<&[u8]>,
    header: Vec<u8>,
    blobs: Vec<Bytes>,
) -> Result<(), FrameError> {
    // (A raw pointer: the `zmq` crate gives it only through `&mut`.)
    let raw_socket = socket.as_mut_ptr();
    send_parts(socket, route, header, blobs, |socket, blob, flags| {
        if blob.is_empty() {
            socket.send(&b""[..], flags)
        } else {
            send_bytes(raw_socket, blob, flags)
        }
    })
}

/// Sends one frame over `bytes` (not empty) without copying it, on the socket `raw_socket`
/// points to. The `zmq` crate hands ZeroMQ only buffers it owns outright (a `Vec`), so this
/// frame is made with `zmq-sys`: `zmq_msg_init_data` with a release callback that drops our
/// reference.
fn send_bytes(
    raw_socket: *mut std::os::raw::c_void,
    bytes: Bytes,
    flags: i32,
) -> Result<(), zmq::Error> {
    use std::os::raw::c_void;
    /// ZeroMQ is done with the frame: drop the reference it held.
    unsafe extern "C" fn release(_data: *mut c_void, hint: *mut c_void) {
        // SAFETY: `hint` is the `Box<Bytes>` leaked in `send_bytes`; ZeroMQ calls this once.
        drop(unsafe { Box::from_raw(hint as *mut Bytes) });
    }
    let len = bytes.len();
    // Read only by ZeroMQ; it stays valid while the `Bytes` in `hint` lives (a `Bytes`'s data
    // never moves with it).
    let data = bytes.as_ptr() as *mut c_void;
    let hint = Box::into_raw(Box::new(bytes));
    let mut msg = std::mem::MaybeUninit::<zmq_sys::zmq_msg_t>::uninit();
    // SAFETY: `msg` is initialised by `zmq_msg_init_data` before any other use. On success
    // ZeroMQ owns `hint` and calls `release` exactly once, after sending or when the message
    // is closed; if initialisation fails it does not take it, and it is dropped here.
    unsafe {
        let rc = zmq_sys::zmq_msg_init_data(msg.as_mut_ptr(), data, len, Some(release), hint as _);
        if rc != 0 {
            drop(Box::from_raw(hint));
            return Err(zmq::Error::from_raw(zmq_sys::zmq_errno()));
        }
        if zmq_sys::zmq_msg_send(msg.as_mut_ptr(), raw_socket, flags) == -1 {
            let error = zmq::Error::from_raw(zmq_sys::zmq_errno());
            zmq_sys::zmq_msg_close(msg.as_mut_ptr());
            return Err(error);
        }
    }
    Ok(())
}

/// A received blob frame: anything that is bytes and can become a [`Bytes`] (for free when
/// it already is one: see [`to_bytes`]).
pub trait Blob: std::ops::Deref<Target = [u8]> {
    /// The frame's content as `Bytes` (a copy, except for `Bytes` itself).
    fn bytes(&self) -> Bytes {
        Bytes::copy_from_slice(self)
    }
}

impl Blob for Vec<u8> {}
impl Blob for zmq::Message {}
impl Blob for Bytes {
    fn bytes(&self) -> Bytes {
        self.clone()
    }
}

/// A received frame as `Bytes`, without copying it: the ZeroMQ message becomes the owner of
/// the bytes (a 64 MiB value travels from the socket to the store and into a task as is).
pub fn to_bytes(message: zmq::Message) -> Bytes {
    struct Owned(zmq::Message);
    impl AsRef<[u8]> for Owned {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }
    Bytes::from_owner(Owned(message))
}

/// Takes the value out of a [`Data`], reading its blob frame (or frames) if it has one.
pub fn unpack<B: Blob>(data: Data, blobs: &[B]) -> Result<Value, FrameError> {
    let Some(index) = data.frame else {
        return Ok(data.value);
    };
    let blob = blobs
        .get(index as usize)
        .ok_or(FrameError::MissingFrame(index))?;
    if data.extra_frames == 0 {
        return if data.raw {
            Ok(Value::Bytes(blob.bytes()))
        } else {
            rmp_serde::from_slice(blob).map_err(|e| FrameError::Blob(index, e))
        };
    }
    // A value in several frames: joined (one copy; they arrived decrypted apart).
    let last = index
        .checked_add(data.extra_frames)
        .ok_or(FrameError::MissingFrame(u32::MAX))?;
    let parts = blobs
        .get(index as usize..=last as usize)
        .ok_or(FrameError::MissingFrame(last))?;
    let mut joined = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        joined.extend_from_slice(part);
    }
    if data.raw {
        Ok(Value::Bytes(joined.into()))
    } else {
        rmp_serde::from_slice(&joined).map_err(|e| FrameError::Blob(index, e))
    }
}

/// Unpacks the values of one received message, each blob frame for one value at the most: a
/// message that named the same frames for many values would make the receiver copy (or
/// decode) them as many times, gigabytes of work for a few bytes of header each.
pub struct Unpacker<'a, B: Blob> {
    blobs: &'a [B],
    used: Vec<bool>,
}

impl<'a, B: Blob> Unpacker<'a, B> {
    /// An unpacker of the values of the message whose blob frames are `blobs`.
    pub fn new(blobs: &'a [B]) -> Unpacker<'a, B> {
        Unpacker {
            blobs,
            used: vec![false; blobs.len()],
        }
    }

    /// Takes the value out of `data` (see [`unpack`]); an error if its frames were taken for
    /// another value of the message.
    pub fn unpack(&mut self, data: Data) -> Result<Value, FrameError> {
        if let Some(first) = data.frame {
            let last = first.saturating_add(data.extra_frames);
            for index in first..=last {
                match self.used.get_mut(index as usize) {
                    Some(true) => return Err(FrameError::Reused(index)),
                    Some(used) => *used = true,
                    None => return Err(FrameError::MissingFrame(index)),
                }
            }
        }
        unpack(data, self.blobs)
    }

    /// Brings `data`'s value inline, in place (see [`Unpacker::unpack`]).
    pub fn inline(&mut self, data: &mut Data) -> Result<(), FrameError> {
        let value = self.unpack(std::mem::take(data))?;
        data.value = value;
        Ok(())
    }
}

/// Encodes a message header (field names included, so other languages read it as a map).
pub fn encode<T: Serialize>(header: &T, blobs: Vec<Vec<u8>>) -> Result<Frames, FrameError> {
    Ok(Frames {
        header: rmp_serde::to_vec_named(header)?,
        blobs,
    })
}

/// Decodes a message header.
pub fn decode<T: DeserializeOwned>(header: &[u8]) -> Result<T, FrameError> {
    Ok(rmp_serde::from_slice(header)?)
}

/// The `op` of a message header when it is the map's first entry (as zask writes it), without
/// decoding the rest (a cheap look; [`crate::protocol::Message::decode`] finds the `op`
/// anywhere).
pub fn peek_op(header: &[u8]) -> Option<&str> {
    let mut rd: &[u8] = header;
    rmp::decode::read_map_len(&mut rd).ok()?;
    let (key, rest) = rmp::decode::read_str_from_slice(rd).ok()?;
    if key != "op" {
        return None;
    }
    rmp::decode::read_str_from_slice(rest)
        .ok()
        .map(|(op, _)| op)
}

/// Sends `frames` on `socket`, preceded by `route` on ROUTER sockets. Never blocks: a peer that
/// cannot take the message (gone, or its queue full) makes this return an error.
pub fn send(socket: &zmq::Socket, route: Option<&[u8]>, frames: Frames) -> Result<(), FrameError> {
    send_parts(
        socket,
        route,
        frames.header,
        frames.blobs,
        |socket, blob, flags| socket.send(zmq::Message::from(blob), flags),
    )
}

/// The parts of one message, without blocking: `[route]` `header` `blob 0` ..., each blob
/// sent by `send_blob` with the flags that keep the parts one message.
fn send_parts<B>(
    socket: &zmq::Socket,
    route: Option<&[u8]>,
    header: Vec<u8>,
    blobs: Vec<B>,
    mut send_blob: impl FnMut(&zmq::Socket, B, i32) -> Result<(), zmq::Error>,
) -> Result<(), FrameError> {
    if let Some(route) = route {
        socket.send(route, zmq::SNDMORE | zmq::DONTWAIT)?;
    }
    let more = if blobs.is_empty() { 0 } else { zmq::SNDMORE };
    socket.send(header, more | zmq::DONTWAIT)?;
    let n = blobs.len();
    for (i, blob) in blobs.into_iter().enumerate() {
        let flag = if i + 1 < n { zmq::SNDMORE } else { 0 };
        send_blob(socket, blob, flag | zmq::DONTWAIT)?;
    }
    Ok(())
}

/// Receives one whole multipart message without blocking; `None` when none is waiting.
pub fn recv(socket: &zmq::Socket) -> Result<Option<Vec<zmq::Message>>, FrameError> {
    let mut parts = Vec::with_capacity(2);
    match socket.recv_msg(zmq::DONTWAIT) {
        Ok(m) => parts.push(m),
        Err(zmq::Error::EAGAIN) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    while socket.get_rcvmore()? {
        parts.push(socket.recv_msg(0)?);
    }
    Ok(Some(parts))
}

/// The total size of a received message's frames, in bytes.
pub fn total_size(parts: &[zmq::Message]) -> usize {
    parts.iter().map(|p| p.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shared frame reaches the other end intact, next to an encoded one and an inline
    /// value, and ZeroMQ gives its reference back once the frame is gone (the value's owner
    /// is alone with it again).
    #[test]
    fn shared_frames_arrive_whole_and_are_released() {
        let ctx = zmq::Context::new();
        let mut tx = ctx.socket(zmq::PAIR).unwrap();
        let rx = ctx.socket(zmq::PAIR).unwrap();
        rx.bind("inproc://shared-frames").unwrap();
        tx.connect("inproc://shared-frames").unwrap();
        let kept: Bytes = (0..100_000u32).map(|i| i as u8).collect::<Vec<u8>>().into();
        let list = Value::List(vec![Value::Str("x".repeat(20_000))]);
        let mut blobs = Vec::new();
        let items = vec![
            pack_shared(Value::Bytes(kept.clone()), &mut blobs),
            pack_shared(Value::Int(3), &mut blobs),
            pack_shared(list.clone(), &mut blobs),
        ];
        assert_eq!(blobs.len(), 2);
        assert_eq!(
            blobs[0].as_ptr(),
            kept.as_ptr(),
            "the value itself, not a copy"
        );
        send_shared(&mut tx, None, b"header".to_vec(), blobs).unwrap();

        let mut parts = vec![rx.recv_msg(0).unwrap()];
        while parts.last().is_some_and(|m| m.get_more()) {
            parts.push(rx.recv_msg(0).unwrap());
        }
        assert_eq!(&parts[0][..], b"header");
        let received: Vec<Value> = items
            .into_iter()
            .map(|d| unpack(d, &parts[1..]).unwrap())
            .collect();
        assert_eq!(
            received,
            vec![Value::Bytes(kept.clone()), Value::Int(3), list]
        );
        drop((received, parts));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !kept.is_unique() {
            assert!(
                std::time::Instant::now() < deadline,
                "ZeroMQ kept its reference"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn small_values_stay_inline_large_ones_get_frames() {
        let mut blobs = Vec::new();
        let small = pack(Value::Int(3), &mut blobs);
        assert_eq!(small.frame, None);
        let big_bytes = pack(Value::Bytes(vec![7; 100_000].into()), &mut blobs);
        assert_eq!((big_bytes.frame, big_bytes.raw), (Some(0), true));
        let big_list = pack(
            Value::List(vec![Value::Str("x".repeat(20_000))]),
            &mut blobs,
        );
        assert_eq!((big_list.frame, big_list.raw), (Some(1), false));
        assert_eq!(unpack(small, &blobs).unwrap(), Value::Int(3));
        assert_eq!(
            unpack(big_bytes, &blobs).unwrap(),
            Value::Bytes(vec![7; 100_000].into())
        );
        assert_eq!(
            unpack(big_list, &blobs).unwrap(),
            Value::List(vec![Value::Str("x".repeat(20_000))])
        );
        let dangling = Data {
            value: Value::Nil,
            frame: Some(9),
            raw: true,
            extra_frames: 0,
        };
        assert!(matches!(
            unpack(dangling, &blobs),
            Err(FrameError::MissingFrame(9))
        ));
    }

    /// A frame named for two values of one message is refused (it would be copied or decoded
    /// once per value).
    #[test]
    fn a_frame_serves_one_value_of_a_message() {
        let mut blobs = Vec::new();
        let d = pack(Value::Bytes(vec![1; 50_000].into()), &mut blobs);
        let mut unpacker = Unpacker::new(&blobs);
        assert!(unpacker.unpack(d.clone()).is_ok());
        assert!(matches!(unpacker.unpack(d), Err(FrameError::Reused(0))));
        let out_of_range = Data {
            frame: Some(0),
            extra_frames: 5,
            ..Data::default()
        };
        assert!(Unpacker::new(&blobs).unpack(out_of_range).is_err());
    }

    /// On encrypted connections a large value travels in several frames, joined again.
    #[test]
    fn large_values_in_several_frames_come_back_whole() {
        let bytes = Value::Bytes((0..250_000u32).map(|i| i as u8).collect::<Vec<u8>>().into());
        let list = Value::List((0..20_000).map(Value::Int).collect());
        let limit = 64 << 10;
        let mut owned = Vec::new();
        let a = pack_in(bytes.clone(), &mut owned, limit);
        let b = pack_in(list.clone(), &mut owned, limit);
        assert_eq!((a.frame, a.extra_frames, a.raw), (Some(0), 3, true));
        assert_eq!(b.frame, Some(4));
        assert!(owned.iter().all(|f| f.len() <= limit));
        assert_eq!(unpack(a, &owned).unwrap(), bytes);
        assert_eq!(unpack(b, &owned).unwrap(), list);
        // Shared: slices of the value, no copy.
        let mut shared = Vec::new();
        let c = pack_shared_in(bytes.clone(), &mut shared, limit);
        assert_eq!((c.extra_frames, shared.len()), (3, 4));
        assert_eq!(unpack(c.clone(), &shared).unwrap(), bytes);
        // Frames missing at the end: an error, not a shorter value.
        assert!(matches!(
            unpack(c.clone(), &shared[..3]),
            Err(FrameError::MissingFrame(3))
        ));
        let huge = Data {
            extra_frames: u32::MAX,
            ..c
        };
        assert!(unpack(huge, &shared).is_err());
        // The header field appears only when a value spans frames.
        let one = pack_in(bytes.clone(), &mut Vec::new(), usize::MAX);
        assert_eq!(one.extra_frames, 0);
        let header = rmp_serde::to_vec_named(&one).unwrap();
        assert!(!header.windows(12).any(|w| w == b"extra_frames"));
    }

    #[test]
    fn peek_op_reads_the_first_entry_only() {
        use crate::protocol::FromClient;
        let frames = encode(&FromClient::Status { request: 5 }, vec![]).unwrap();
        assert_eq!(peek_op(&frames.header), Some("status"));
        let other_order = rmp_serde::to_vec_named(&Value::Map(vec![
            (Value::from("request"), Value::Int(1)),
            (Value::from("op"), Value::from("status")),
        ]))
        .unwrap();
        assert_eq!(peek_op(&other_order), None);
        assert_eq!(peek_op(b"garbage"), None);
    }

    #[test]
    fn headers_are_maps_with_an_op_field() {
        use crate::protocol::FromClient;
        let msg = FromClient::Status { request: 5 };
        let frames = encode(&msg, vec![]).unwrap();
        let as_value: Value = rmp_serde::from_slice(&frames.header).unwrap();
        assert_eq!(as_value.get("op"), Some(&Value::Str("status".into())));
        assert_eq!(as_value.get("request"), Some(&Value::Int(5)));
        let back: FromClient = decode(&frames.header).unwrap();
        assert_eq!(back, msg);
    }
}
