//! `parse_term_file` on arbitrary bytes. The input is `<term>\n<file content>`: the first line is
//! the term (a decimal u64) whose file is being read, the rest is that file's content.
//! A Valid result must be of the requested term and name a node, and must survive being written
//! back (serde_json) and read again; anything else is Garbage of the requested term, with a
//! one-line reason.
#![no_main]

use jenkins_ha::io::lease::{parse_term_file, TermFile};
use libfuzzer_sys::{fuzz_target, Corpus};

fuzz_target!(|data: &[u8]| -> Corpus {
    let Some(newline) = data.iter().position(|b| *b == b'\n') else {
        return Corpus::Reject;
    };
    let Some(term) = std::str::from_utf8(&data[..newline])
        .ok()
        .and_then(|t| t.parse::<u64>().ok())
    else {
        return Corpus::Reject;
    };
    let bytes = &data[newline + 1..];
    let file = parse_term_file(term, bytes);
    assert_eq!(file.term(), term);
    match file {
        TermFile::Valid(record) => {
            assert_eq!(record.term, term);
            assert!(!record.node.is_empty());
            let encoded = serde_json::to_vec(&record).expect("a record encodes");
            assert_eq!(
                parse_term_file(term, &encoded),
                TermFile::Valid(record),
                "a record read back differs"
            );
        }
        TermFile::Garbage { why, .. } => {
            // `why` is shown in `status` and `history`: one line.
            assert!(!why.is_empty());
            assert!(
                !why.contains(['\n', '\r']),
                "a garbage reason must be one line: {why:?}"
            );
        }
    }
    Corpus::Keep
});
