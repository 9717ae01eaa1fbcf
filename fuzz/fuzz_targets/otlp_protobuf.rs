//! OTLP protobuf bodies: the shape measure, the decoder and the conversion to model spans
//! must never panic, and what decodes must have been measured.

#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let limits = otlp::DecodeLimits::default();
    let shape = otlp::measure_protobuf(bytes);
    if let Ok(request) = otlp::decode_protobuf(bytes) {
        assert!(
            shape.is_ok() || matches!(shape, Err(otlp::DecodeError::TooDeep { .. })),
            "prost decoded a body the measure refused: {shape:?}"
        );
        let _ = otlp::convert(request, &limits);
    }
    let _ = otlp::decompress(bytes, otlp::ContentEncoding::Gzip, &limits);
});
