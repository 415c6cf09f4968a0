//! One stored key, compactly: a run of bytes in its shard's arena, and where it starts.
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
//! Record bytes: its length, expiry (seconds on the store's clock), 32 bits of the key's hash,
//! scope length and key length (each a little-endian `u32`), the scope, the key, then the
//! token. The table holds only where each record starts (4 bytes and a control byte a slot):
//! everything else, the sweeper's expiry check and the hash a growing table needs included, is
//! read from the record, in the shard's arena of a few tens of kilobytes.

use session_token::SessionToken;

use crate::storage::{StoreError, StoreKey};

const LEN: usize = 0;
const EXPIRES: usize = 4;
const TAG: usize = 8;
const SCOPE_LEN: usize = 12;
const KEY_LEN: usize = 16;
const HEADER: usize = 20;

fn len_u32(len: usize) -> Result<u32, StoreError> {
    u32::try_from(len)
        .map_err(|_| StoreError::Unavailable("a key too long for the in-memory store".into()))
}

/// A record about to be written: its header, then its parts, in order.
pub(super) struct Encoded<'a> {
    header: [u8; HEADER],
    parts: [&'a [u8]; 3],
    len: u32,
    expires: u32,
}

impl<'a> Encoded<'a> {
    pub(super) fn new(
        key: &'a StoreKey,
        token: &'a str,
        expires: u32,
        tag: u32,
    ) -> Result<Self, StoreError> {
        let (scope, k) = (key.scope.as_bytes(), key.name.as_bytes());
        let len = len_u32(HEADER + scope.len() + k.len() + token.len())?;
        let mut header = [0u8; HEADER];
        for (at, value) in [
            (LEN, len),
            (EXPIRES, expires),
            (TAG, tag),
            (SCOPE_LEN, len_u32(scope.len())?),
            (KEY_LEN, len_u32(k.len())?),
        ] {
            header[at..at + 4].copy_from_slice(&value.to_le_bytes());
        }
        Ok(Self {
            header,
            parts: [scope, k, token.as_bytes()],
            len,
            expires,
        })
    }

    pub(super) fn len(&self) -> usize {
        self.len as usize
    }

    pub(super) fn expires(&self) -> u32 {
        self.expires
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

/// Reads the little-endian `u32` at `at` of `bytes` (0 past the end).
pub(super) fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut le = [0u8; 4];
    if let Some(b) = bytes.get(at..at + 4) {
        le.copy_from_slice(b);
    }
    u32::from_le_bytes(le)
}

/// A record read from the arena (empty when the offset was wrong: it then matches no key).
pub(super) struct View<'a>(pub(super) &'a [u8]);

impl View<'_> {
    fn word(&self, at: usize) -> usize {
        read_u32(self.0, at) as usize
    }

    pub(super) fn len(&self) -> usize {
        self.word(LEN)
    }

    pub(super) fn expires(&self) -> u32 {
        read_u32(self.0, EXPIRES)
    }

    pub(super) fn tag(&self) -> u32 {
        read_u32(self.0, TAG)
    }

    /// True from the record's expiry second on.
    pub(super) fn is_expired(&self, now: u32) -> bool {
        now >= self.expires()
    }

    pub(super) fn is_for(&self, key: &StoreKey) -> bool {
        let (scope, k) = (self.word(SCOPE_LEN), self.word(KEY_LEN));
        scope == key.scope.len()
            && k == key.name.len()
            && self.0.get(HEADER..HEADER + scope) == Some(key.scope.as_bytes())
            && self.0.get(HEADER + scope..HEADER + scope + k) == Some(key.name.as_bytes())
    }

    /// The stored token, parsed.
    pub(super) fn token(&self) -> Result<SessionToken, StoreError> {
        let start = HEADER + self.word(SCOPE_LEN) + self.word(KEY_LEN);
        let text = self
            .0
            .get(start..)
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
    fn a_record_names_its_key_and_holds_its_token_and_expiry() {
        let key = StoreKey::new("acct/db/orders", "user-1");
        let token = "0:1#123456#0=123456#1=123450,1:1#654321#0=654321#1=654320";
        let encoded = Encoded::new(&key, token, 7, 0xdead_beef).unwrap();
        assert_eq!(encoded.len(), 20 + 14 + 6 + token.len());
        let mut bytes = vec![0u8; encoded.len()];
        encoded.write_to(&mut bytes);
        let view = View(&bytes);
        assert!(view.is_for(&key));
        // The same bytes split differently are another key.
        assert!(!view.is_for(&StoreKey::new("acct/db/order", "suser-1")));
        assert!(!view.is_for(&StoreKey::new("acct/db/orders", "user-")));
        assert!(!view.is_for(&StoreKey::new("acct/db/orders", "user-10")));
        assert_eq!(view.token().unwrap(), SessionToken::parse(token).unwrap());
        assert_eq!((view.len(), view.tag()), (bytes.len(), 0xdead_beef));
        assert!(!view.is_expired(6) && view.is_expired(7));
        // A wrong offset reads as an empty record: no key, no token.
        assert!(!View(&[]).is_for(&key) && View(&[]).token().is_err());
    }
}
