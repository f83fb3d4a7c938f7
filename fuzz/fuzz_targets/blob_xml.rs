//! Blob request bodies the front parses itself: Put Block List, CORS rules (Set Blob Service
//! Properties), stored access policies (Set Container ACL).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    cistern_gateway::fuzzing::blob_xml(body);
});
