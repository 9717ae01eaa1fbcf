//! Zipkin v2 JSON bodies: the shape measure, the decoder and the conversion to model spans
//! must never panic, and what decodes was measured.

#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let limits = otlp::DecodeLimits::default();
    let Ok(shape) = otlp::measure_zipkin(bytes) else { return };
    if let Ok(request) = otlp::decode_zipkin(bytes) {
        let spans: usize =
            request.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum();
        assert_eq!(spans as u64, shape.num_spans, "the measure counts every decoded span");
        let _ = otlp::convert(request, &limits);
    }
});
