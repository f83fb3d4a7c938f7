//! What origins answer: S3 ListObjects (V1 and V2) and Azure List Blobs pages, S3 error
//! documents under any status.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|i: (u16, &str)| {
    cistern_gateway::fuzzing::origin_xml(i.1, i.0);
});
