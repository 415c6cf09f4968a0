//! One stored key, compactly: its bytes in the shard's arena, its 16-byte slot in the table.
//!
//! Why not a `StoreKey` and a `SessionToken`: two `String`s and a `BTreeMap` of `BTreeMap`s cost
//! about 1,500 bytes of heap for a two-range, two-region token (one B-tree node per map, one
//! allocation per string, allocator rounding on each). The canonical header value is what
//! callers send and receive anyway, parses back to the same token (the session-token crate
//! guarantees it), and is about 57 bytes for such a token; with the scope and key beside it a
//! key is one run of bytes in the arena ([`super::arena`]), with no allocator header. The token
//! is parsed again when it is read or merged, which is what the Redis stores do with every
//! value too.
//!
//! Record bytes: scope length and key length (each a little-endian `u32`), the scope, the key,
//! then the token. The slot holds where the record is, its expiry (seconds on the store's
//! clock) and 32 bits of the key's hash, so that growing or shrinking the table and sweeping it
//! never read the records.

use session_token::SessionToken;

use crate::storage::{StoreError, StoreKey};

const HEADER: usize = 8;

/// A key's slot in its shard's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Slot {
    /// Where the record starts in the arena, and its length.
    pub(super) at: u32,
    pub(super) len: u32,
    /// The first second (on the store's clock) at which the record is expired.
    pub(super) expires: u32,
    /// The low 32 bits of the key's hash (see `shards::table_hash`).
    pub(super) tag: u32,
}

impl Slot {
    pub(super) fn is_expired(&self, now: u32) -> bool {
        now >= self.expires
    }
}

fn len_u32(len: usize) -> Result<u32, StoreError> {
    u32::try_from(len)
        .map_err(|_| StoreError::Unavailable("a key too long for the in-memory store".into()))
}

/// A record about to be written: its parts, in order.
pub(super) struct Encoded<'a> {
    header: [u8; HEADER],
    parts: [&'a [u8]; 3],
    len: u32,
}

impl<'a> Encoded<'a> {
    pub(super) fn new(key: &'a StoreKey, token: &'a str) -> Result<Self, StoreError> {
        let (scope, k) = (key.scope.as_bytes(), key.key.as_bytes());
        let mut header = [0u8; HEADER];
        header[..4].copy_from_slice(&len_u32(scope.len())?.to_le_bytes());
        header[4..].copy_from_slice(&len_u32(k.len())?.to_le_bytes());
        let len = len_u32(HEADER + scope.len() + k.len() + token.len())?;
        Ok(Self {
            header,
            parts: [scope, k, token.as_bytes()],
            len,
        })
    }

    pub(super) fn len(&self) -> u32 {
        self.len
    }

    /// Writes the record into `out`, which is exactly `len()` bytes long.
    pub(super) fn write_to(&self, out: &mut [u8]) {
        let mut at = 0;
        for part in std::iter::once(&self.header[..]).chain(self.parts) {
            if let Some(dst) = out.get_mut(at..at + part.len()) {
                dst.copy_from_slice(part);
            }
            at += part.len();
        }
    }
}

/// A record read from the arena.
pub(super) struct View<'a>(pub(super) &'a [u8]);

impl View<'_> {
    fn word(&self, at: usize) -> usize {
        let mut le = [0u8; 4];
        if let Some(b) = self.0.get(at..at + 4) {
            le.copy_from_slice(b);
        }
        u32::from_le_bytes(le) as usize
    }

    pub(super) fn is_for(&self, key: &StoreKey) -> bool {
        let (scope, k) = (self.word(0), self.word(4));
        scope == key.scope.len()
            && k == key.key.len()
            && self.0.get(HEADER..HEADER + scope) == Some(key.scope.as_bytes())
            && self.0.get(HEADER + scope..HEADER + scope + k) == Some(key.key.as_bytes())
    }

    /// Where the token starts within the record.
    pub(super) fn token_start(&self) -> usize {
        HEADER + self.word(0) + self.word(4)
    }

    /// The stored token, parsed.
    pub(super) fn token(&self) -> Result<SessionToken, StoreError> {
        let text = self
            .0
            .get(self.token_start()..)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or_default();
        // Only canonical token text is ever written, so this cannot fail; a store that cannot
        // read its own value says so rather than panic.
        SessionToken::parse(text)
            .map_err(|e| StoreError::Unavailable(format!("in-memory store: bad stored token: {e}")))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_record_names_its_key_and_holds_its_token() {
        let key = StoreKey::new("acct/db/orders", "user-1");
        let token = "0:1#123456#0=123456#1=123450,1:1#654321#0=654321#1=654320";
        let encoded = Encoded::new(&key, token).unwrap();
        assert_eq!(encoded.len() as usize, 8 + 14 + 6 + token.len());
        let mut bytes = vec![0u8; encoded.len() as usize];
        encoded.write_to(&mut bytes);
        let view = View(&bytes);
        assert!(view.is_for(&key));
        // The same bytes split differently are another key.
        assert!(!view.is_for(&StoreKey::new("acct/db/order", "suser-1")));
        assert!(!view.is_for(&StoreKey::new("acct/db/orders", "user-")));
        assert!(!view.is_for(&StoreKey::new("acct/db/orders", "user-10")));
        assert_eq!(view.token().unwrap(), SessionToken::parse(token).unwrap());
        assert_eq!(&bytes[view.token_start()..], token.as_bytes());
    }
}
