//! Trace and span ids as newtypes over their raw bytes, with the lowercase hex form that the
//! OTLP JSON mapping and spanblame's API use.

use std::fmt;

/// A 16-byte W3C trace id. The all-zero id is invalid in OTLP and never constructed here.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TraceId([u8; 16]);

/// An 8-byte span id. The all-zero id is invalid in OTLP and never constructed here.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpanId([u8; 8]);

/// Why a byte string or hex string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseIdError {
    /// The id has the wrong number of bytes (OTLP: 16 for traces, 8 for spans).
    Length { expected_bytes: usize, actual_bytes: usize },
    /// Every byte is zero, which OTLP defines as invalid.
    AllZero,
    /// The text is not hexadecimal.
    NotHex,
}

impl fmt::Display for ParseIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseIdError::Length { expected_bytes, actual_bytes } => {
                write!(f, "expected {expected_bytes} bytes, got {actual_bytes}")
            }
            ParseIdError::AllZero => f.write_str("id is all zeros"),
            ParseIdError::NotHex => f.write_str("id is not hexadecimal"),
        }
    }
}

impl std::error::Error for ParseIdError {}

macro_rules! id_type {
    ($name:ident, $len:literal) => {
        impl $name {
            /// Number of bytes in this id.
            pub const LEN: usize = $len;

            /// Accepts exactly `LEN` bytes, not all zero.
            pub fn from_slice(bytes: &[u8]) -> Result<Self, ParseIdError> {
                let array: [u8; $len] = bytes.try_into().map_err(|_| ParseIdError::Length {
                    expected_bytes: $len,
                    actual_bytes: bytes.len(),
                })?;
                Self::from_bytes(array)
            }

            /// Accepts `LEN` bytes, not all zero.
            pub fn from_bytes(bytes: [u8; $len]) -> Result<Self, ParseIdError> {
                if bytes == [0; $len] {
                    return Err(ParseIdError::AllZero);
                }
                Ok(Self(bytes))
            }

            /// Parses hex in either case, as OTLP/JSON allows.
            pub fn from_hex(text: &str) -> Result<Self, ParseIdError> {
                let text = text.as_bytes();
                if text.len() != 2 * $len {
                    return Err(ParseIdError::Length {
                        expected_bytes: $len,
                        actual_bytes: text.len() / 2,
                    });
                }
                let mut bytes = [0u8; $len];
                for (byte, pair) in bytes.iter_mut().zip(text.chunks_exact(2)) {
                    *byte = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
                }
                Self::from_bytes(bytes)
            }

            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// Lowercase hex, the form the API prints.
            pub fn to_hex(&self) -> String {
                const DIGITS: &[u8; 16] = b"0123456789abcdef";
                let mut out = String::with_capacity(2 * $len);
                for byte in self.0 {
                    out.push(DIGITS[usize::from(byte >> 4)] as char);
                    out.push(DIGITS[usize::from(byte & 0xf)] as char);
                }
                out
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }
    };
}

id_type!(TraceId, 16);
id_type!(SpanId, 8);

fn hex_digit(c: u8) -> Result<u8, ParseIdError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(ParseIdError::NotHex),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_in_either_case() {
        let id = TraceId::from_hex("5B8EFFF798038103D269B633813FC60C").unwrap();
        assert_eq!(id.to_hex(), "5b8efff798038103d269b633813fc60c");
        assert_eq!(TraceId::from_hex(&id.to_hex()).unwrap(), id);
    }

    #[test]
    fn rejects_wrong_length_zero_and_non_hex() {
        assert_eq!(
            TraceId::from_slice(&[1; 8]),
            Err(ParseIdError::Length { expected_bytes: 16, actual_bytes: 8 })
        );
        assert_eq!(SpanId::from_bytes([0; 8]), Err(ParseIdError::AllZero));
        assert_eq!(SpanId::from_hex("zz00000000000001"), Err(ParseIdError::NotHex));
    }
}
