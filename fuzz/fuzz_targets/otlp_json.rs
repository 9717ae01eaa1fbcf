//! OTLP/JSON bodies: the shape measure, the decoder and the conversion to model spans must
//! never panic.

#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let limits = otlp::DecodeLimits::default();
    let _ = otlp::measure_json(bytes);
    if let Ok(request) = otlp::decode_json(bytes) {
        let _ = otlp::convert(request, &limits);
    }
});
