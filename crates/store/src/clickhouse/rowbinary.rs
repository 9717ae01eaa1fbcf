//! ClickHouse's `RowBinary` format: what inserts send and queries read back.
//!
//! Integers are little-endian, strings and arrays are a LEB128 length then the bytes or the
//! elements, `FixedString(N)` is N raw bytes, and a tuple is its elements one after another.
//! The reader checks every length against what is left, so a short or corrupt answer is an
//! error, never a panic or a huge allocation.

/// Appends rows column by column, in the table's column order.
#[derive(Default)]
pub(crate) struct RowWriter {
    pub(crate) bytes: Vec<u8>,
}

impl RowWriter {
    pub(crate) fn u8(&mut self, v: u8) {
        self.bytes.push(v);
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn i64(&mut self, v: i64) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn i32(&mut self, v: i32) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    /// A `FixedString(N)`: exactly the bytes, no length.
    pub(crate) fn fixed(&mut self, v: &[u8]) {
        self.bytes.extend_from_slice(v);
    }

    /// A `String` (any bytes).
    pub(crate) fn string(&mut self, v: &[u8]) {
        self.len(v.len());
        self.bytes.extend_from_slice(v);
    }

    /// The length of an `Array` whose elements follow.
    pub(crate) fn len(&mut self, mut n: usize) {
        while n >= 0x80 {
            self.bytes.push((n as u8) | 0x80);
            n >>= 7;
        }
        self.bytes.push(n as u8);
    }
}

/// A `RowBinary` answer that ended early or held an impossible length.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a RowBinary answer from ClickHouse is malformed ({0})")]
pub(crate) struct Malformed(pub(crate) &'static str);

/// Reads values in the order the query selected them.
pub(crate) struct RowReader<'a> {
    rest: &'a [u8],
}

impl<'a> RowReader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> RowReader<'a> {
        RowReader { rest: bytes }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if n > self.rest.len() {
            return Err(Malformed("a value runs past the end"));
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Malformed> {
        let bytes = self.take(N)?;
        let mut out = [0; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, Malformed> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub(crate) fn i64(&mut self) -> Result<i64, Malformed> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    pub(crate) fn i32(&mut self) -> Result<i32, Malformed> {
        Ok(i32::from_le_bytes(self.array()?))
    }

    pub(crate) fn fixed<const N: usize>(&mut self) -> Result<[u8; N], Malformed> {
        self.array()
    }

    /// The length of a string or array; at most what is left, as every element takes a byte.
    pub(crate) fn len(&mut self) -> Result<usize, Malformed> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let [byte] = self.array::<1>()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return usize::try_from(value)
                    .ok()
                    .filter(|&n| n <= self.rest.len())
                    .ok_or(Malformed("a length exceeds the answer"));
            }
        }
        Err(Malformed("a length does not end"))
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let n = self.len()?;
        self.take(n)
    }

    pub(crate) fn string(&mut self) -> Result<String, Malformed> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| Malformed("a string is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn values_round_trip() {
        let mut w = RowWriter::default();
        w.u8(7);
        w.u64(u64::MAX);
        w.i64(-5);
        w.i32(i32::MIN);
        w.fixed(&[1, 2, 3, 4]);
        w.string(&vec![b'x'; 300]);
        w.len(2);
        let mut r = RowReader::new(&w.bytes);
        assert_eq!(r.take(1).unwrap(), &[7]);
        assert_eq!(r.u64().unwrap(), u64::MAX);
        assert_eq!(r.i64().unwrap(), -5);
        assert_eq!(r.i32().unwrap(), i32::MIN);
        assert_eq!(r.fixed::<4>().unwrap(), [1, 2, 3, 4]);
        assert_eq!(r.string().unwrap(), "x".repeat(300));
        assert_eq!(r.len(), Err(Malformed("a length exceeds the answer")));
    }

    proptest! {
        #[test]
        fn any_answer_reads_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = RowReader::new(&bytes);
            while !r.is_empty() {
                if r.string().is_err() && r.u64().is_err() {
                    break;
                }
            }
        }
    }
}
