//! Decoding SQLite's record format (file format §2.1) into values.
//!
//! A record is a header (its own length as a varint, then one serial type
//! per column) followed by the column bodies. The salvage demands that the
//! bodies the header announces fill the payload exactly: SQLite always
//! writes records that way, and a record from a damaged page seldom does.

use crate::dbfile::read_varint;

/// One column value as stored.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    /// Text in the database's encoding, as stored.
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

impl Value {
    /// The storage class, as `typeof()` names it.
    pub fn class(&self) -> Class {
        match self {
            Value::Null => Class::Null,
            Value::Int(_) => Class::Integer,
            Value::Real(_) => Class::Real,
            Value::Text(_) => Class::Text,
            Value::Blob(_) => Class::Blob,
        }
    }
}

/// Storage class of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Null,
    Integer,
    Real,
    Text,
    Blob,
}

/// Why a record was not accepted.
pub type Reject = &'static str;

/// The most columns a record may have (SQLITE_MAX_COLUMN's hard limit).
pub const MAX_FIELDS: usize = 32767;

/// The serial types of a record, without reading the bodies: enough to
/// judge its shape cheaply.
pub fn serial_types(payload: &[u8]) -> Result<Vec<u64>, Reject> {
    let (header_len, n) = read_varint(payload).ok_or("record header runs past the payload")?;
    let header_len = usize::try_from(header_len).map_err(|_| "record header too long")?;
    if header_len < n || header_len > payload.len() {
        return Err("record header runs past the payload");
    }
    let mut types = Vec::new();
    let mut at = n;
    let mut body = 0u64;
    while at < header_len {
        let (t, n) = read_varint(&payload[at..header_len]).ok_or("record header is cut short")?;
        if t == 10 || t == 11 {
            return Err("reserved serial type");
        }
        body = body.checked_add(body_len(t)).ok_or("record too long")?;
        types.push(t);
        if types.len() > MAX_FIELDS {
            return Err("too many columns");
        }
        at += n;
    }
    if body != (payload.len() - header_len) as u64 {
        return Err("record bodies do not fill the payload");
    }
    Ok(types)
}

/// Bytes of the body of a serial type.
pub fn body_len(t: u64) -> u64 {
    match t {
        0 | 8 | 9 | 10 | 11 => 0,
        1 => 1,
        2 => 2,
        3 => 3,
        4 => 4,
        5 => 6,
        6 | 7 => 8,
        n => (n - 12) / 2,
    }
}

/// Storage class of a serial type.
pub fn class_of(t: u64) -> Class {
    match t {
        0 => Class::Null,
        1..=6 | 8 | 9 => Class::Integer,
        7 => Class::Real,
        n if n >= 12 && n % 2 == 0 => Class::Blob,
        _ => Class::Text,
    }
}

/// Decodes a whole record.
pub fn decode(payload: &[u8]) -> Result<Vec<Value>, Reject> {
    let types = serial_types(payload)?;
    let (header_len, _) = read_varint(payload).ok_or("record header runs past the payload")?;
    let mut at = header_len as usize;
    let mut values = Vec::with_capacity(types.len());
    for t in types {
        let len = body_len(t) as usize;
        // serial_types proved that the bodies fill the payload exactly.
        let b = &payload[at..at + len];
        at += len;
        values.push(match t {
            0 => Value::Null,
            1..=6 => Value::Int(signed(b)),
            7 => Value::Real(f64::from_bits(u64::from_be_bytes(
                b.try_into().map_err(|_| "bad real")?,
            ))),
            8 => Value::Int(0),
            9 => Value::Int(1),
            n if n % 2 == 0 => Value::Blob(b.to_vec()),
            _ => Value::Text(b.to_vec()),
        });
    }
    Ok(values)
}

/// A big-endian two's-complement integer of 1..=8 bytes.
fn signed(b: &[u8]) -> i64 {
    let mut v: i64 = if b.first().is_some_and(|&x| x & 0x80 != 0) {
        -1
    } else {
        0
    };
    for &x in b {
        v = (v << 8) | i64::from(x);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_serial_type() {
        // header: len 9, types NULL, 1-byte int, 6-byte int, real, 0, 1,
        // text "hi" (17), blob [7] (14)
        let mut rec = vec![9u8, 0, 1, 5, 7, 8, 9, 17, 14];
        rec.push(0xFE); // -2
        rec.extend_from_slice(&[0, 1, 0, 0, 0, 0]); // 2^32
        rec.extend_from_slice(&1.5f64.to_bits().to_be_bytes());
        rec.extend_from_slice(b"hi");
        rec.push(7);
        let v = decode(&rec).unwrap();
        assert_eq!(
            v,
            vec![
                Value::Null,
                Value::Int(-2),
                Value::Int(1 << 32),
                Value::Real(1.5),
                Value::Int(0),
                Value::Int(1),
                Value::Text(b"hi".to_vec()),
                Value::Blob(vec![7]),
            ]
        );
    }

    #[test]
    fn a_record_must_fill_its_payload_exactly() {
        assert!(decode(&[2, 1, 5]).is_ok());
        assert!(decode(&[2, 1, 5, 0]).is_err(), "a byte too many");
        assert!(decode(&[2, 1]).is_err(), "a byte too few");
        assert!(decode(&[3, 1]).is_err(), "header past the payload");
        assert!(decode(&[2, 10]).is_err(), "reserved type");
        assert!(decode(&[]).is_err());
    }
}
