//! When a read that carried the broker's token is made once more without it.
//!
//! Why: the broker path may only make reads fresher, never make them fail. A token the
//! container cannot serve (ahead of it after a restore or a lost failover, another
//! container's, a deleted container's) fails the read: measured with `azure_data_cosmos`
//! 1.0.0 on its emulator, the service answers 404/1002 in every region and the SDK gives up
//! within milliseconds with **503/20310** (ClientReadSessionNotAvailable); after a
//! recreation an SDK client answers **400/1024** (CollectionRidMismatch) and then refuses
//! explicit tokens for the replacement with a client-side **400**. Each of these, on a read
//! whose token came from the broker, is answered by one more read without the broker's token
//! (the SDK's own session semantics), and that result is returned. A 400 of any kind counts:
//! with the caller's own options unchanged, only the token the wrapper added can have made the
//! request bad. Throttling (429), timeouts and other 5xx are not the token's doing and are
//! returned as they are.

use azure_data_cosmos::CosmosError;

/// A read's failure that the broker's token may have caused.
pub(crate) fn is_unservable(error: &CosmosError) -> bool {
    let status = error.status();
    status.is_read_session_not_available()
        || is_client_read_session_not_available(error)
        || status.is_bad_request()
}

/// 503/20310: the SDK's verdict after 404/1002 answers in every region it tried.
fn is_client_read_session_not_available(error: &CosmosError) -> bool {
    let status = error.status();
    status.is_service_unavailable() && status.sub_status().is_some_and(|s| s.value() == 20310)
}

/// The failure says the container was recreated: 400/1024 (CollectionRidMismatch), or the SDK
/// refusing to carry explicit tokens to the replacement container (a 400 whose message says
/// so; `azure_data_cosmos` 1.0.0 gives it no sub-status).
pub(crate) fn is_recreation(error: &CosmosError) -> bool {
    let status = error.status();
    status.is_bad_request()
        && (status.sub_status().is_some_and(|s| s.value() == 1024)
            || error.to_string().contains("was recreated"))
}

/// The answer of a read made without the broker's token counts as served: a success, or an
/// answer that says something about the item (404 other than 1002, 409, 412).
pub(crate) fn served<T>(result: &azure_data_cosmos::Result<T>) -> bool {
    match result {
        Ok(_) => true,
        Err(error) => {
            let status = error.status();
            (status.is_not_found() && !status.is_read_session_not_available())
                || status.is_conflict()
                || status.is_precondition_failed()
        }
    }
}
