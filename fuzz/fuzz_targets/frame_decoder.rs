//! Any bytes as one WebSocket frame: the CBOR decoder and a fresh server session must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    grapevine_server::fuzzing::decode_frame(data);
});
