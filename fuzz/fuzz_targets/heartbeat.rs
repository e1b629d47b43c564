//! `decode_heartbeat` on arbitrary bytes, as a peer (or anyone holding the token) could send them.
//! A rejection must be a `HeartbeatError` whose Display is one line; an accepted status must name
//! the expected peer and encode back into a heartbeat that is accepted again.
#![no_main]

use jenkins_ha::daemon::peer::{decode_heartbeat, MAX_HEARTBEAT};
use libfuzzer_sys::fuzz_target;

const PEER: &str = "jenkins02";

fuzz_target!(|data: &[u8]| {
    match decode_heartbeat(data, &[PEER]) {
        Ok(status) => {
            assert!(data.len() <= MAX_HEARTBEAT);
            assert_eq!(status.name, PEER);
            let encoded = serde_json::to_vec(&status).expect("an accepted status encodes");
            if encoded.len() <= MAX_HEARTBEAT {
                let again = decode_heartbeat(&encoded, &[PEER]).expect("a re-encoded status decodes");
                assert_eq!(again.name, PEER);
                assert_eq!(again.term, status.term);
                assert_eq!(again.role, status.role);
            }
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(
                !shown.contains(['\n', '\r']),
                "a heartbeat error must be one line: {shown:?}"
            );
        }
    }
});
