//! A whole `sync` message whose changes are written inflated and sent as they stand, framed, deflated (chunk type 2)
//! or as a saved document, through the server's guard, Automerge's apply, the decision and the reply: must never
//! panic, and never take more memory or time than the document limits allow.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: {
        // The server catches a panic inside Automerge's apply and refuses the message (`sync::apply_caught`), so
        // such a panic must not abort here either; any other panic still reaches libFuzzer's wrapper, which aborts.
        std::panic::set_hook(Box::new(|_| {}));
    },
    |data: &[u8]| {
        grapevine_server::fuzzing::sync_message(data);
    }
);
