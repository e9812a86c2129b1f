//! A lane's rate as a token bucket: `per_minute` messages a minute, in bursts
//! of up to ten seconds' worth (so that a bundle can still carry several). The
//! bucket is kept in the store, so that every instance draws from the same one;
//! this is its arithmetic. Times are Unix milliseconds.

/// A bucket as stored: its tokens at `at`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub tokens: f64,
    pub at: i64,
}

/// The most tokens a bucket holds: ten seconds' worth, at least one.
pub fn capacity(per_minute: u32) -> f64 {
    (f64::from(per_minute) / 6.0).max(1.0)
}

/// A full bucket at `now`: a lane starts with its burst.
pub fn full(per_minute: u32, now: i64) -> Bucket {
    Bucket { tokens: capacity(per_minute), at: now }
}

/// Takes up to `wanted` whole tokens from `bucket` at `now`: how many it got, and the bucket after.
pub fn take(bucket: Bucket, per_minute: u32, wanted: u32, now: i64) -> (u32, Bucket) {
    let elapsed = (now - bucket.at).max(0) as f64 / 1000.0;
    let tokens = (bucket.tokens + elapsed * f64::from(per_minute) / 60.0).min(capacity(per_minute));
    let got = (tokens.floor() as u32).min(wanted);
    (got, Bucket { tokens: tokens - f64::from(got), at: now.max(bucket.at) })
}

/// Milliseconds until a bucket left with `tokens` holds a whole one again.
pub fn until_next(tokens: f64, per_minute: u32) -> i64 {
    let missing = (1.0 - tokens).max(0.0);
    (missing * 60_000.0 / f64::from(per_minute.max(1))).ceil() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_the_rate_and_no_more() {
        let start = full(120, 0);
        let (got, b) = take(start, 120, 100, 0);
        assert_eq!(got, 20, "ten seconds' worth at once");
        let (got, b) = take(b, 120, 10, 0);
        assert_eq!(got, 0);
        assert_eq!(until_next(b.tokens, 120), 500);
        let (got, b) = take(b, 120, 10, 500);
        assert_eq!(got, 1);
        assert_eq!(take(b, 120, 10, 499).0, 0, "a clock running behind takes nothing back");

        let slow = full(6, 0);
        let (got, b) = take(slow, 6, 5, 0);
        assert_eq!(got, 1, "a burst of at least one");
        assert_eq!(take(b, 6, 5, 9_000).0, 0);
        assert_eq!(take(b, 6, 5, 10_000).0, 1);
    }

    #[test]
    fn two_takers_share_one_bucket() {
        // Two instances drawing in turn get what one would, not twice as much.
        let mut bucket = full(60, 0);
        let mut total = 0;
        for second in 0..=20 {
            for _instance in 0..2 {
                let (got, after) = take(bucket, 60, 100, second * 1000);
                total += got;
                bucket = after;
            }
        }
        assert_eq!(total, 10 + 20, "the burst, then one a second");
    }
}
