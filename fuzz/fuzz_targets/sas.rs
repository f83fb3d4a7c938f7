//! Azure SAS as the Blob front checks it: parsed from arbitrary query pairs, then its kind,
//! window, network restrictions, permissions and signature checked against arbitrary targets;
//! a SAS whose signature is the HMAC of its own string-to-sign always verifies.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use cistern_auth::sas::{self, ResourceType, Sas, Target};
use cistern_auth::sharedkey;
use libfuzzer_sys::{arbitrary, fuzz_target};

#[derive(Debug, arbitrary::Arbitrary)]
struct Input {
    pairs: Vec<(String, String)>,
    container: Option<String>,
    blob: Option<String>,
    level: u8,
    permission: Option<String>,
    ip: Option<[u8; 4]>,
    https: bool,
    secs: u32,
}

const KEY: &[u8] = b"fuzzing-account-key-0123456789ab";

fuzz_target!(|i: Input| {
    let _ = sas::present(&i.pairs);
    for (_, v) in &i.pairs {
        let _ = sas::parse_time(v);
    }
    let Ok(s) = Sas::parse(&i.pairs) else {
        return;
    };
    let _ = s.kind();
    let now = time::OffsetDateTime::from_unix_timestamp(i64::from(i.secs)).expect("u32 seconds");
    let _ = s.check_window(now);
    let target = Target {
        container: i.container.as_deref(),
        blob: i.blob.as_deref(),
        resource_type: match i.level % 3 {
            0 => ResourceType::Service,
            1 => ResourceType::Container,
            _ => ResourceType::Object,
        },
        permission: i.permission.as_deref(),
        client_ip: i.ip.map(|o| IpAddr::V4(Ipv4Addr::from(o))),
        https: i.https,
        now,
    };
    let _ = s.check_network(&target);
    let _ = s.check(&target);
    let (c, b) = (
        i.container.as_deref().unwrap_or(""),
        i.blob.as_deref().unwrap_or(""),
    );
    let _ = s.verify("acct", c, b, &[KEY.to_vec()]);
    if let Ok(sts) = s.string_to_sign("acct", c, b) {
        // The same SAS signed with the key verifies.
        let mut pairs: Vec<(String, String)> = i
            .pairs
            .iter()
            .filter(|(k, _)| k != "sig")
            .cloned()
            .collect();
        pairs.push(("sig".into(), sharedkey::hmac_b64(KEY, &sts)));
        let signed = Sas::parse(&pairs).expect("a parsed SAS parses with another sig");
        assert!(
            signed.verify("acct", c, b, &[KEY.to_vec()]).is_ok(),
            "{sts:?}"
        );
        assert!(signed
            .verify("acct", c, b, &[b"another-key".to_vec()])
            .is_err());
    }
});
