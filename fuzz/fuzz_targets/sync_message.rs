//! A whole `sync` message whose changes are written inflated and sent as they stand, framed, deflated (chunk type 2)
//! or as a saved document, through the server's guard, Automerge's apply, the decision and the reply: must never
//! panic, and never take more memory or time than the document limits allow.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    grapevine_server::fuzzing::sync_message(data);
});
