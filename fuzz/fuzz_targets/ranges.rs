//! `Range` and `x-ms-range` headers: whatever the S3 fast path's and the Blob front's parsers
//! accept resolves inside the object and splits into chunk spans that tile it exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|i: (&str, u64, u64)| {
    cistern_gateway::fuzzing::ranges(i.0, i.1, i.2);
});
