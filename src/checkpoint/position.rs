//! Positions in a shard: a sequence number (a decimal string of up to 129
//! digits, which no integer type holds) and a sub-sequence number inside a
//! KPL aggregate.

use std::cmp::Ordering;
use std::fmt;

/// Compares two Kinesis sequence numbers numerically: by length, then
/// lexicographically (they carry no leading zeros).
pub fn compare_sequence_numbers(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Whether `s` is a well-formed sequence number: 1 to 129 digits without a
/// leading zero (so two positions that compare equal are equal).
pub fn is_sequence_number(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 129
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'))
}

/// A user record's place in a shard.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Position {
    /// The Kinesis record's sequence number.
    pub sequence_number: String,
    /// The user record's index inside a KPL aggregate; 0 for plain records.
    pub sub_sequence_number: u64,
}

impl Position {
    /// A position.
    pub fn new(sequence_number: impl Into<String>, sub_sequence_number: u64) -> Position {
        Position {
            sequence_number: sequence_number.into(),
            sub_sequence_number,
        }
    }
}

impl Ord for Position {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_sequence_numbers(&self.sequence_number, &other.sequence_number)
            .then(self.sub_sequence_number.cmp(&other.sub_sequence_number))
    }
}

impl PartialOrd for Position {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.sequence_number, self.sub_sequence_number)
    }
}

/// What a lease records as processed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Checkpoint {
    /// Everything up to and including this position is processed.
    At(Position),
    /// The shard is closed and every record in it is processed.
    ShardEnd,
}

impl Checkpoint {
    /// Whether moving from `self` to `next` goes forward (or stays).
    pub fn allows(&self, next: &Checkpoint) -> bool {
        match (self, next) {
            (Checkpoint::ShardEnd, next) => *next == Checkpoint::ShardEnd,
            (Checkpoint::At(_), Checkpoint::ShardEnd) => true,
            (Checkpoint::At(current), Checkpoint::At(next)) => next >= current,
        }
    }
}

impl Checkpoint {
    /// Whether everything up to `position` is already processed.
    pub fn covers(&self, position: &Position) -> bool {
        match self {
            Checkpoint::ShardEnd => true,
            Checkpoint::At(current) => current >= position,
        }
    }
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Checkpoint::At(position) => position.fmt(f),
            Checkpoint::ShardEnd => f.write_str("SHARD_END"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_compare_numerically_beyond_u128() {
        let small = "49590338271490256608559692538361571095921575989136588898";
        let large = "149590338271490256608559692538361571095921575989136588898";
        assert_eq!(compare_sequence_numbers(small, large), Ordering::Less);
        assert_eq!(compare_sequence_numbers("9", "10"), Ordering::Less);
        assert_eq!(compare_sequence_numbers("10", "10"), Ordering::Equal);
        assert_eq!(compare_sequence_numbers("011", "10"), Ordering::Greater);
        let max = "9".repeat(129);
        assert!(is_sequence_number(&max));
        assert!(!is_sequence_number(&"9".repeat(130)));
        assert!(!is_sequence_number("12a"));
        assert!(!is_sequence_number(""));
        assert!(!is_sequence_number("010"), "a leading zero");
        assert!(is_sequence_number("0"));
    }

    #[test]
    fn positions_order_by_sequence_then_sub_sequence() {
        assert!(Position::new("100", 5) < Position::new("101", 0));
        assert!(Position::new("100", 1) < Position::new("100", 2));
        assert!(Position::new("99", 9) < Position::new("100", 0));
    }

    #[test]
    fn checkpoints_never_move_backwards() {
        let at = |s: &str, sub| Checkpoint::At(Position::new(s, sub));
        assert!(at("10", 0).allows(&at("10", 0)));
        assert!(at("10", 0).allows(&at("10", 1)));
        assert!(!at("10", 1).allows(&at("10", 0)));
        assert!(!at("10", 0).allows(&at("9", 9)));
        assert!(at("10", 0).allows(&Checkpoint::ShardEnd));
        assert!(!Checkpoint::ShardEnd.allows(&at("99", 0)));
    }
}
