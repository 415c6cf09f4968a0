//! The token a read sends: the broker's for the target range, merged with what this process
//! saw, as one segment.
//!
//! Why one segment: a session token has one segment per partition key range; Cosmos rejects
//! headers that grow too large, the newer gateway rejects composite tokens, and the SDKs send
//! only the target range's segment. So does the wrapper whenever it knows the target range
//! (see [`crate::range_ids`]); otherwise it sends the broker's token only when it is small
//! enough (`max_unscoped_segments`, default 1). The broker's own part is kept beside what is
//! sent: it is what a DiscardToken names if the read fails on it.

use azure_data_cosmos::PartitionKey;
use azure_data_cosmos::feed::FeedRange;
use session_token::{PkRangeId, SessionToken};
use tokenbroker_client::TokenBrokerClient;

use crate::generation::Generation;
use crate::range_ids::Target;

/// A token to send with a read.
pub(crate) struct ReadToken {
    /// The header value sent.
    pub(crate) sent: SessionToken,
    /// The broker's segments that went into it (the target's own, or its parents' after a
    /// split), as the broker returned them; `None` when only this process's own went in.
    pub(crate) from_broker: Option<SessionToken>,
}

/// The bounds (EPK range) of the physical partition holding the key, from the SDK's routing map
/// (cached by the SDK).
pub(crate) async fn bounds(
    generation: &Generation,
    partition_key: &PartitionKey,
) -> Option<FeedRange> {
    let mut ranges = generation
        .container
        .feed_range_from_partition_key(partition_key.clone(), None)
        .await
        .ok()?;
    if ranges.len() == 1 {
        ranges.pop()
    } else {
        None
    }
}

/// The token to send with a read of `key`, or `None` to let the SDK send its own.
///
/// When the target range is known, exactly one segment is sent: the target's, merged from the
/// broker's and this process's, or, when the target has none yet (just split), its parents'
/// merged and re-keyed under the target's id, as the SDKs do. When it is not known, the
/// broker's token is sent (merged with this process's for the same ranges) only if it has at
/// most `max_unscoped_segments` segments.
pub(crate) async fn for_read(
    broker: &TokenBrokerClient,
    generation: &Generation,
    key: &str,
    partition_key_json: &str,
    partition_key: &PartitionKey,
    max_unscoped_segments: usize,
) -> Option<ReadToken> {
    let target = match bounds(generation, partition_key).await {
        Some(bounds) => generation.range_ids.target(partition_key_json, &bounds),
        None => None,
    };
    let ranges = target.as_ref().map(Target::ranges).unwrap_or_default();
    let returned = broker
        .token_for_read(generation.scope.as_str(), key, &ranges)
        .await?;
    let returned = match SessionToken::parse(&returned) {
        Ok(token) => token,
        Err(error) => {
            tracing::warn!(%error, scope = %generation.scope, "the broker's token does not parse: reading with the SDK's own token");
            return None;
        }
    };
    let (sent, from_broker) = match &target {
        Some(target) => {
            let seen = match generation.local_tokens.get(&ranges) {
                Some(local) => returned.merge(&local).unwrap_or_else(|_| returned.clone()),
                None => returned.clone(),
            };
            let used = used_for_target(&returned, &seen, target);
            (rekey_for_target(&seen, target)?, used)
        }
        None => (
            generation.local_tokens.merged_into(returned.clone()),
            Some(returned),
        ),
    };
    // A composite token for a range we cannot name is not sent: the newer gateway rejects
    // composites, and a segment of another range buys nothing. The SDK's own token is used
    // instead (normal session semantics).
    if target.is_none() && sent.len() > max_unscoped_segments {
        tracing::debug!(
            segments = sent.len(),
            "target range not known and the token spans several ranges: reading with the SDK's own token"
        );
        return None;
    }
    Some(ReadToken { sent, from_broker })
}

/// The broker's segments that a read for `target` sends, given everything known (`seen`): the
/// target's own when known (the broker's, if it has one), otherwise the parents' the broker has.
fn used_for_target(
    returned: &SessionToken,
    seen: &SessionToken,
    target: &Target,
) -> Option<SessionToken> {
    if seen.get(&target.id).is_some() {
        return returned.filter(&[target.id.as_str()]);
    }
    returned.filter(&target.parents)
}

/// The one segment to send for `target`: its own token if `token` has one, otherwise its
/// parents' merged, under the target's id. `None` when `token` has neither.
fn rekey_for_target(token: &SessionToken, target: &Target) -> Option<SessionToken> {
    let id = PkRangeId::new(&target.id).ok()?;
    let segment = match token.get(&target.id) {
        Some(own) => own.clone(),
        None => {
            let mut parents = target
                .parents
                .iter()
                .filter_map(|p| token.get(p).map(|t| (p, t)));
            let (_, first) = parents.next()?;
            parents.fold(first.clone(), |acc, (range, parent)| {
                acc.merge(parent, range).unwrap_or(acc)
            })
        }
    };
    SessionToken::from_segments([(id, segment)])
}
