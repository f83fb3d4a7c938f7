//! Blob Batch bodies (multipart/mixed of HTTP sub-requests) under a given boundary.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|i: (&str, &[u8])| {
    cistern_gateway::fuzzing::blob_batch(i.1, i.0);
});
