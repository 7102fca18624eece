//! Opaque keyset cursors: a position (timestamp, id) that the next page starts after.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::ApiError;

/// A position in a list ordered by (timestamp, id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cursor {
    /// The timestamp of the last item seen.
    pub at: DateTime<Utc>,
    /// The id of the last item seen (the tie-breaker).
    pub id: Uuid,
}

impl Cursor {
    /// Hex of `micros:id`, so clients treat it as opaque.
    pub fn encode(&self) -> String {
        hex::encode(format!("{}:{}", self.at.timestamp_micros(), self.id))
    }

    /// Parses what [`Cursor::encode`] made; anything else is a 400.
    pub fn decode(text: &str) -> Result<Self, ApiError> {
        let bad = || ApiError::BadRequest("invalid cursor".into());
        let bytes = hex::decode(text).map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let (micros, id) = text.split_once(':').ok_or_else(bad)?;
        let at = DateTime::from_timestamp_micros(micros.parse().map_err(|_| bad())?).ok_or_else(bad)?;
        Ok(Self { at, id: id.parse().map_err(|_| bad())? })
    }
}

/// Page size: default 20, at most 100; 0 or more than 100 is a 400.
pub fn page_limit(limit: Option<u32>) -> Result<i64, ApiError> {
    match limit.unwrap_or(20) {
        n @ 1..=100 => Ok(i64::from(n)),
        _ => Err(ApiError::BadRequest("limit must be within 1..=100".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let c = Cursor {
            at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            id: Uuid::new_v4(),
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        assert!(Cursor::decode("zz").is_err());
        assert!(Cursor::decode(&hex::encode("1:not-a-uuid")).is_err());
    }
}
