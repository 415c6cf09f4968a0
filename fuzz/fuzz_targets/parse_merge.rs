//! Arbitrary bytes through the parser and the merge: nothing panics, and whatever parses keeps
//! the invariants (canonical round trip, symmetric merge, merge result covers both inputs, and
//! the two sides joined into one header, where ranges may repeat, when it parses, covers the
//! left side and every single segment of both).
#![no_main]

use libfuzzer_sys::fuzz_target;
use session_token::SessionToken;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (left, right) = text.split_once('|').unwrap_or((&text, ""));
    let a = SessionToken::parse(left);
    let b = SessionToken::parse(right);
    for t in [&a, &b].into_iter().flatten() {
        let canonical = t.to_string();
        assert_eq!(SessionToken::parse(&canonical).as_ref(), Ok(t));
    }
    if let (Ok(a), Ok(b)) = (a, b) {
        if let Ok(joined) = SessionToken::parse(&format!("{left},{right}")) {
            // Not `b` as a whole: `b` merges its own repeated ranges before meeting `a`'s, and
            // the merge is not associative when a region returns at a later version.
            assert!(a.is_covered_by(&joined));
            for segment in left.split(',').chain(right.split(',')) {
                if let Ok(single) = SessionToken::parse(segment) {
                    assert!(single.is_covered_by(&joined));
                }
            }
        }
        match (a.merge(&b), b.merge(&a)) {
            (Ok(ab), Ok(ba)) => {
                assert_eq!(ab, ba);
                assert!(a.is_covered_by(&ab) && b.is_covered_by(&ab));
            }
            (Err(_), Err(_)) => {}
            (x, y) => panic!("asymmetric merge: {x:?} / {y:?}"),
        }
    }
});
