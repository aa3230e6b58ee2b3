//! The system clock in the unit every format and record here uses: Unix seconds. Code that
//! must be repeatable takes the time as a parameter; only shells call this.

/// Now, in Unix seconds (0 before 1970, saturating far in the future).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
