//! From request bytes to an `ExportTraceServiceRequest`: capped gzip decompression and the
//! protobuf and JSON decoders.

use std::borrow::Cow;
use std::io::Read;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use crate::{DecodeError, DecodeLimits};

/// Smallest decompression allowance, so tiny bodies are not refused by the ratio cap alone.
const MIN_DECOMPRESSED_ALLOWANCE_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentEncoding {
    Identity,
    Gzip,
}

impl ContentEncoding {
    /// Parses a `Content-Encoding` header value (absent means identity).
    pub fn parse(header: Option<&str>) -> Result<ContentEncoding, DecodeError> {
        match header.map(str::trim) {
            None | Some("") | Some("identity") => Ok(ContentEncoding::Identity),
            Some(value) if value.eq_ignore_ascii_case("gzip") => Ok(ContentEncoding::Gzip),
            Some(other) => Err(DecodeError::UnsupportedEncoding(other.to_owned())),
        }
    }
}

/// The most a compressed body of `len` bytes may inflate to.
pub fn decompressed_allowance(len: usize, limits: &DecodeLimits) -> usize {
    len.saturating_mul(limits.max_decompression_ratio)
        .max(MIN_DECOMPRESSED_ALLOWANCE_BYTES)
        .min(limits.max_body_bytes)
}

/// Returns the body decompressed, refusing anything beyond the caps before it is in memory.
pub fn decompress<'a>(
    body: &'a [u8],
    encoding: ContentEncoding,
    limits: &DecodeLimits,
) -> Result<Cow<'a, [u8]>, DecodeError> {
    if body.len() > limits.max_body_bytes {
        return Err(DecodeError::BodyTooLarge { limit_bytes: limits.max_body_bytes });
    }
    match encoding {
        ContentEncoding::Identity => Ok(Cow::Borrowed(body)),
        ContentEncoding::Gzip => {
            let allowance = decompressed_allowance(body.len(), limits);
            // Sized for the whole allowance once (what the caller reserved); pages never
            // written are never resident.
            let mut out = Vec::with_capacity(allowance + 1);
            // Read one byte past the allowance: if it arrives, the body is over the cap.
            let mut reader = flate2::read::MultiGzDecoder::new(body).take(allowance as u64 + 1);
            reader.read_to_end(&mut out).map_err(|e| DecodeError::Gzip(e.to_string()))?;
            if out.len() > allowance {
                return Err(DecodeError::DecompressedTooLarge {
                    limit_bytes: allowance,
                    max_ratio: limits.max_decompression_ratio,
                });
            }
            Ok(Cow::Owned(out))
        }
    }
}

pub fn decode_protobuf(bytes: &[u8]) -> Result<ExportTraceServiceRequest, DecodeError> {
    ExportTraceServiceRequest::decode(bytes).map_err(|e| DecodeError::Protobuf(e.to_string()))
}

pub fn decode_json(bytes: &[u8]) -> Result<ExportTraceServiceRequest, DecodeError> {
    let request: ExportTraceServiceRequest =
        serde_json::from_slice(bytes).map_err(|e| DecodeError::Json(e.to_string()))?;
    // serde ignores unknown keys, so a snake_case body parses as an empty request. Refuse it
    // rather than answer 200 to data we silently dropped.
    if request.resource_spans.is_empty() && contains(bytes, b"\"resource_spans\"") {
        return Err(DecodeError::SnakeCaseJson);
    }
    Ok(request)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}
