//! AMF0 values: the encoding of RTMP command and data messages.
//!
//! Decoding is bounded: nesting deeper than [`MAX_DEPTH`] and element counts larger than the
//! bytes left are errors, so hostile input costs at most its own length in work and memory.

use crate::Error;

/// Objects and arrays nested deeper than this are refused. Real encoders send metadata two
/// levels deep at most.
pub const MAX_DEPTH: usize = 16;

#[derive(Debug, Clone, PartialEq)]
pub enum Amf0 {
    Number(f64),
    Boolean(bool),
    String(String),
    Object(Vec<(String, Amf0)>),
    Null,
    Undefined,
    EcmaArray(Vec<(String, Amf0)>),
    StrictArray(Vec<Amf0>),
    Date(f64),
}

impl Amf0 {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Amf0::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_number(&self) -> Option<f64> {
        match self {
            Amf0::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// A property of an object or ECMA array.
    pub fn get(&self, key: &str) -> Option<&Amf0> {
        match self {
            Amf0::Object(p) | Amf0::EcmaArray(p) => {
                p.iter().find(|(k, _)| k == key).map(|(_, v)| v)
            }
            _ => None,
        }
    }
}

/// Decodes every value in `bytes`.
pub fn decode_all(mut bytes: &[u8]) -> Result<Vec<Amf0>, Error> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        out.push(decode(&mut bytes, 0)?);
    }
    Ok(out)
}

fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], Error> {
    if bytes.len() < n {
        return Err(Error::Amf("value runs past the end of the message"));
    }
    let (head, tail) = bytes.split_at(n);
    *bytes = tail;
    Ok(head)
}

fn u16_at(bytes: &mut &[u8]) -> Result<u16, Error> {
    let b = take(bytes, 2)?;
    Ok(u16::from_be_bytes([b[0], b[1]]))
}

fn u32_at(bytes: &mut &[u8]) -> Result<u32, Error> {
    let b = take(bytes, 4)?;
    Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn f64_at(bytes: &mut &[u8]) -> Result<f64, Error> {
    let b = take(bytes, 8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Ok(f64::from_be_bytes(a))
}

fn utf8(bytes: &mut &[u8], len: usize) -> Result<String, Error> {
    let b = take(bytes, len)?;
    // Lossy: a key or name with a stray byte is still usable, and never worth a refusal.
    Ok(String::from_utf8_lossy(b).into_owned())
}

fn properties(bytes: &mut &[u8], depth: usize) -> Result<Vec<(String, Amf0)>, Error> {
    let mut props = Vec::new();
    loop {
        let len = u16_at(bytes)? as usize;
        if len == 0 && bytes.first() == Some(&0x09) {
            *bytes = &bytes[1..];
            return Ok(props);
        }
        let key = utf8(bytes, len)?;
        let value = decode(bytes, depth + 1)?;
        props.push((key, value));
    }
}

fn decode(bytes: &mut &[u8], depth: usize) -> Result<Amf0, Error> {
    if depth > MAX_DEPTH {
        return Err(Error::Amf("values nested too deeply"));
    }
    let marker = take(bytes, 1)?[0];
    Ok(match marker {
        0x00 => Amf0::Number(f64_at(bytes)?),
        0x01 => Amf0::Boolean(take(bytes, 1)?[0] != 0),
        0x02 => {
            let len = u16_at(bytes)? as usize;
            Amf0::String(utf8(bytes, len)?)
        }
        0x03 => Amf0::Object(properties(bytes, depth)?),
        0x05 => Amf0::Null,
        0x06 => Amf0::Undefined,
        0x08 => {
            // The count is a hint that encoders get wrong; the end marker is what counts.
            let _count = u32_at(bytes)?;
            Amf0::EcmaArray(properties(bytes, depth)?)
        }
        0x0a => {
            let count = u32_at(bytes)? as usize;
            // Every element takes at least one byte: a count beyond that is a lie.
            if count > bytes.len() {
                return Err(Error::Amf("array longer than the message"));
            }
            let mut items = Vec::with_capacity(count);
            for _ in 0..count {
                items.push(decode(bytes, depth + 1)?);
            }
            Amf0::StrictArray(items)
        }
        0x0b => {
            let ms = f64_at(bytes)?;
            take(bytes, 2)?; // time zone, unused by the format
            Amf0::Date(ms)
        }
        0x0c | 0x0f => {
            let len = u32_at(bytes)? as usize;
            Amf0::String(utf8(bytes, len)?)
        }
        0x10 => {
            let len = u16_at(bytes)? as usize;
            take(bytes, len)?; // class name
            Amf0::Object(properties(bytes, depth)?)
        }
        _ => return Err(Error::Amf("unsupported AMF0 type marker")),
    })
}

/// Appends the encoding of `v` to `out`.
pub fn encode(v: &Amf0, out: &mut Vec<u8>) {
    match v {
        Amf0::Number(n) => {
            out.push(0x00);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Amf0::Boolean(b) => out.extend_from_slice(&[0x01, u8::from(*b)]),
        Amf0::String(s) => {
            if let Ok(len) = u16::try_from(s.len()) {
                out.push(0x02);
                out.extend_from_slice(&len.to_be_bytes());
            } else {
                out.push(0x0c);
                out.extend_from_slice(&(s.len() as u32).to_be_bytes());
            }
            out.extend_from_slice(s.as_bytes());
        }
        Amf0::Object(p) => {
            out.push(0x03);
            encode_properties(p, out);
        }
        Amf0::Null => out.push(0x05),
        Amf0::Undefined => out.push(0x06),
        Amf0::EcmaArray(p) => {
            out.push(0x08);
            out.extend_from_slice(&(p.len() as u32).to_be_bytes());
            encode_properties(p, out);
        }
        Amf0::StrictArray(items) => {
            out.push(0x0a);
            out.extend_from_slice(&(items.len() as u32).to_be_bytes());
            for i in items {
                encode(i, out);
            }
        }
        Amf0::Date(ms) => {
            out.push(0x0b);
            out.extend_from_slice(&ms.to_be_bytes());
            out.extend_from_slice(&[0, 0]);
        }
    }
}

fn encode_properties(p: &[(String, Amf0)], out: &mut Vec<u8>) {
    for (k, v) in p {
        let key = &k.as_bytes()[..k.len().min(u16::MAX as usize)];
        out.extend_from_slice(&(key.len() as u16).to_be_bytes());
        out.extend_from_slice(key);
        encode(v, out);
    }
    out.extend_from_slice(&[0, 0, 0x09]);
}

/// Builds an object from `(key, value)` pairs.
pub fn object<const N: usize>(props: [(&str, Amf0); N]) -> Amf0 {
    Amf0::Object(props.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let values = vec![
            Amf0::String("connect".into()),
            Amf0::Number(1.0),
            object([
                ("app", Amf0::String("live".into())),
                ("nested", object([("ok", Amf0::Boolean(true))])),
                ("list", Amf0::StrictArray(vec![Amf0::Null, Amf0::Undefined])),
                (
                    "ecma",
                    Amf0::EcmaArray(vec![("w".into(), Amf0::Number(1280.0))]),
                ),
                ("when", Amf0::Date(5.0)),
            ]),
        ];
        let mut bytes = Vec::new();
        for v in &values {
            encode(v, &mut bytes);
        }
        assert_eq!(decode_all(&bytes).expect("decodes"), values);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let mut bytes = Vec::new();
        for _ in 0..200_000 {
            bytes.extend_from_slice(&[0x0a, 0, 0, 0, 1]);
        }
        assert!(matches!(decode_all(&bytes), Err(Error::Amf(_))));
    }

    #[test]
    fn lying_lengths_are_errors() {
        assert!(decode_all(&[0x0a, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(decode_all(&[0x02, 0x00, 0x10, b'a']).is_err());
        assert!(decode_all(&[0x0c, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(decode_all(&[0x03, 0x00]).is_err());
        assert!(decode_all(&[0x42]).is_err());
    }
}
