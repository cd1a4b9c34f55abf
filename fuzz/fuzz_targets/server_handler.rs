//! Any sequence of frames after a valid join, through the server's message handler (session, Automerge sync,
//! extraction, validation, geotagging, write-back): must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    grapevine_server::fuzzing::handle_frames(data);
});
