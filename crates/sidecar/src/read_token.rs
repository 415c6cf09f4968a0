//! The session token a brokered read carries: the application's own, with the broker's segment
//! for the target range merged in.
//!
//! Why merged and not replaced: the application's SDK keeps the tokens of everything its own
//! process wrote and read (per range, merged, the .NET, Java, Python and JavaScript SDKs alike),
//! and replacing its header with the broker's alone could send an older token than the SDK's
//! own (a PutToken that was lost, a broker that restarted empty). Merging by the SDKs' rules
//! gives a token that covers both, so the read is never less fresh than without the sidecar.
//!
//! Why one segment from the broker: the SDKs send the target range's segment only (Python) or
//! the container's composite (JavaScript); the newer gateway rejects composites, and a segment
//! of another range buys nothing. The target range is the one that last served the key here
//! (learned from responses). Without it, the broker's token is used only if it has exactly one
//! segment. Other segments the application sent are kept as sent.
//!
//! Why the application's header does not name the target: Python sends the target's segment
//! only, but JavaScript sends the container's composite, which early on often has one segment,
//! of another range (measured on the emulator: a read of a key in range 3 sent `0:0#567`; taking
//! range 0 as the target dropped the broker's segment of range 3 and the read was stale). The
//! broker's single segment for the key names the range the key's writes went to, which is the
//! target unless the range split since (then the child's answer teaches the new range).

use session_token::SessionToken;

/// A header value to send, and the broker's part of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadToken {
    /// The `x-ms-session-token` value to send.
    pub header: String,
    /// The broker's segment that went into it (what a DiscardToken names if the read fails on
    /// it).
    pub from_broker: String,
}

/// The header to send for a read, or `None` to forward the application's header untouched
/// (the broker has nothing for the target, its token does not parse or does not merge with the
/// application's, or the application's token already covers it).
pub fn compose(app_header: Option<&str>, broker: &str, target: Option<&str>) -> Option<ReadToken> {
    let broker = SessionToken::parse(broker).ok()?;
    let broker = match target {
        Some(range) => broker.filter(&[range])?,
        None if broker.len() == 1 => broker,
        None => return None,
    };
    let app = match app_header.map(str::trim).filter(|h| !h.is_empty()) {
        Some(header) => Some(SessionToken::parse(header).ok()?),
        None => None,
    };
    let header = match &app {
        Some(app) => {
            if broker.is_covered_by(app) {
                return None;
            }
            app.merge(&broker).ok()?
        }
        None => broker.clone(),
    };
    Some(ReadToken {
        header: header.to_string(),
        from_broker: broker.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_an_application_token_the_brokers_target_segment_is_sent() {
        let read = compose(None, "0:1#50#1=50,3:1#9#1=9", Some("3")).unwrap();
        assert_eq!(read.header, "3:1#9#1=9");
        assert_eq!(read.from_broker, "3:1#9#1=9");
        assert_eq!(
            compose(None, "0:1#50", Some("3")),
            None,
            "nothing for the target"
        );
    }

    #[test]
    fn an_unknown_target_takes_a_single_segment_only() {
        assert_eq!(compose(None, "0:1#50", None).unwrap().header, "0:1#50");
        assert_eq!(compose(None, "0:1#50,1:1#7", None), None);
    }

    #[test]
    fn merges_with_the_applications_own_and_keeps_its_other_segments() {
        let read = compose(Some("0:1#40#1=60,2:1#5"), "0:1#50#1=55", Some("0")).unwrap();
        assert_eq!(read.header, "0:1#50#1=60,2:1#5");
        assert_eq!(read.from_broker, "0:1#50#1=55");
        assert_eq!(
            compose(Some("0:1#70#1=70"), "0:1#50#1=50", Some("0")),
            None,
            "the application's token already covers the broker's"
        );
    }

    #[test]
    fn never_sends_what_it_cannot_merge_or_parse() {
        assert_eq!(compose(Some("garbage"), "0:1#50", Some("0")), None);
        assert_eq!(compose(None, "garbage", Some("0")), None);
        assert_eq!(
            compose(Some("0:5"), "0:1#50", Some("0")),
            None,
            "simple and vector"
        );
    }

    proptest::proptest! {
        /// Whatever the inputs, what is sent covers the application's own token (the read is
        /// never less fresh than without the sidecar) and the broker's part.
        #[test]
        fn what_is_sent_covers_both(
            app in proptest::collection::btree_map(0u8..3, (0u64..100, 0u64..100), 1..3),
            broker in (0u8..3, 0u64..100, 0u64..100),
        ) {
            let app_header: String = app
                .iter()
                .map(|(r, (g, l))| format!("{r}:1#{g}#0={l}"))
                .collect::<Vec<_>>()
                .join(",");
            let broker_header = format!("{}:1#{}#0={}", broker.0, broker.1, broker.2);
            let target = broker.0.to_string();
            if let Some(read) = compose(Some(&app_header), &broker_header, Some(&target)) {
                let sent = SessionToken::parse(&read.header).unwrap();
                proptest::prop_assert!(SessionToken::parse(&app_header).unwrap().is_covered_by(&sent));
                proptest::prop_assert!(SessionToken::parse(&read.from_broker).unwrap().is_covered_by(&sent));
            } else {
                let app = SessionToken::parse(&app_header).unwrap();
                let broker = SessionToken::parse(&broker_header).unwrap();
                proptest::prop_assert!(broker.is_covered_by(&app), "only skipped when already covered");
            }
        }
    }
}
