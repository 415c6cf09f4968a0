//! The broker's RPCs and the gRPC status names: the one vocabulary of metric labels, span names
//! and span attributes.
//!
//! Why an enum and a name table here: the service, the metrics and the spans all name methods
//! and status codes; naming them once keeps the labels a fixed set (never caller data) and the
//! status names those of the gRPC specification (`OK`, `INVALID_ARGUMENT`...), which dashboards
//! and alerts written for other gRPC servers already use.

use tonic::Code;

/// One of the broker's RPCs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    PutToken,
    GetToken,
    MergeToken,
    DiscardToken,
}

impl Method {
    /// Every method, in the order of the proto.
    pub const ALL: [Method; 4] = [
        Method::PutToken,
        Method::GetToken,
        Method::MergeToken,
        Method::DiscardToken,
    ];

    /// The method's name, as in the proto (`PutToken`): the `method` label, `rpc.method`.
    pub fn name(self) -> &'static str {
        match self {
            Method::PutToken => "PutToken",
            Method::GetToken => "GetToken",
            Method::MergeToken => "MergeToken",
            Method::DiscardToken => "DiscardToken",
        }
    }

    /// The full gRPC method name (`tokenbroker.v1.TokenBroker/PutToken`): the span name.
    pub fn span_name(self) -> &'static str {
        match self {
            Method::PutToken => "tokenbroker.v1.TokenBroker/PutToken",
            Method::GetToken => "tokenbroker.v1.TokenBroker/GetToken",
            Method::MergeToken => "tokenbroker.v1.TokenBroker/MergeToken",
            Method::DiscardToken => "tokenbroker.v1.TokenBroker/DiscardToken",
        }
    }

    /// A dense index (0..4), for tables of per-method series.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Every gRPC status code, in the order of their numbers (0..=16).
pub const CODES: [Code; 17] = [
    Code::Ok,
    Code::Cancelled,
    Code::Unknown,
    Code::InvalidArgument,
    Code::DeadlineExceeded,
    Code::NotFound,
    Code::AlreadyExists,
    Code::PermissionDenied,
    Code::ResourceExhausted,
    Code::FailedPrecondition,
    Code::Aborted,
    Code::OutOfRange,
    Code::Unimplemented,
    Code::Internal,
    Code::Unavailable,
    Code::DataLoss,
    Code::Unauthenticated,
];

/// The status code's name in the gRPC specification (`doc/statuscodes.md`): `OK`,
/// `INVALID_ARGUMENT`, `UNAVAILABLE`... The `code` label.
pub fn status_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use tokenbroker_proto::v1::SERVICE_NAME;

    use super::*;

    #[test]
    fn span_names_are_the_full_method_names() {
        for method in Method::ALL {
            assert_eq!(
                method.span_name(),
                format!("{SERVICE_NAME}/{}", method.name())
            );
        }
    }

    #[test]
    fn indexes_are_dense_in_proto_order() {
        for (i, method) in Method::ALL.into_iter().enumerate() {
            assert_eq!(method.index(), i);
        }
    }

    #[test]
    fn codes_are_in_number_order_with_the_specification_names() {
        for (number, code) in CODES.into_iter().enumerate() {
            assert_eq!(code as usize, number);
        }
        let names: Vec<_> = CODES.into_iter().map(status_name).collect();
        assert_eq!(
            names.join(" "),
            "OK CANCELLED UNKNOWN INVALID_ARGUMENT DEADLINE_EXCEEDED NOT_FOUND ALREADY_EXISTS \
             PERMISSION_DENIED RESOURCE_EXHAUSTED FAILED_PRECONDITION ABORTED OUT_OF_RANGE \
             UNIMPLEMENTED INTERNAL UNAVAILABLE DATA_LOSS UNAUTHENTICATED"
        );
    }
}
