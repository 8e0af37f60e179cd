//! What the writer needs to know of an item before queueing it: that it
//! carries its table's key, how much it weighs by DynamoDB's rules (and so
//! how many write units it consumes), and a canonical form of its key, so
//! that two writes of one key are recognised whatever their spelling.

use crate::dynamodb::{AttributeValue, Item, ScalarAttributeType, WriteRequest};
use crate::error::{excerpt, Error, Result};

/// How many characters of an item an error message shows.
const SHOWN_CHARS: usize = 200;

/// DynamoDB's largest item.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;
/// One write unit covers this much of an item.
const WRITE_UNIT_BYTES: usize = 1024;

/// A table's primary key: the hash attribute, then the range attribute if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySchema(pub Vec<(String, ScalarAttributeType)>);

/// A checked write: its canonical key, its size and its write units.
#[derive(Debug)]
pub struct Weighed {
    pub key: Vec<u8>,
    pub bytes: usize,
    pub units: f64,
}

impl KeySchema {
    /// Checks `request` against the key and weighs it; the error names the
    /// table and shows the item.
    pub fn weigh(&self, table: &str, request: &WriteRequest) -> Result<Weighed> {
        let (attributes, is_put) = match request {
            WriteRequest::Put { item } => (item, true),
            WriteRequest::Delete { key } => (key, false),
        };
        let reject = |why: String| {
            Error::InvalidArgument(format!("{why} (table {table}, item {})", show(attributes)))
        };
        let mut key = Vec::new();
        for (name, kind) in &self.0 {
            let value = attributes
                .get(name)
                .ok_or_else(|| reject(format!("the key attribute {name} is missing")))?;
            canonical_key_part(value, kind, &mut key)
                .map_err(|why| reject(format!("the key attribute {name} {why}")))?;
        }
        if !is_put {
            if let Some(extra) = attributes
                .keys()
                .find(|name| !self.0.iter().any(|(key, _)| key == *name))
            {
                return Err(reject(format!(
                    "a delete names only the key, not the attribute {extra}"
                )));
            }
        }
        let bytes = item_bytes(attributes);
        if bytes > MAX_ITEM_BYTES {
            return Err(reject(format!(
                "an item must weigh at most {MAX_ITEM_BYTES} bytes, this one {bytes}"
            )));
        }
        Ok(Weighed {
            key,
            bytes,
            units: bytes.div_ceil(WRITE_UNIT_BYTES).max(1) as f64,
        })
    }
}

/// `value` as JSON for an error message, cut at [`SHOWN_CHARS`]. JSON
/// escapes control characters, so the text stays on one line.
pub fn show(value: &impl serde::Serialize) -> String {
    let text = serde_json::to_string(value).unwrap_or_default();
    match text.char_indices().nth(SHOWN_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text,
    }
}

/// Appends the canonical bytes of one key value, or says what is wrong.
fn canonical_key_part(
    value: &AttributeValue,
    kind: &ScalarAttributeType,
    out: &mut Vec<u8>,
) -> std::result::Result<(), String> {
    let bytes: Vec<u8> = match (kind, value) {
        (ScalarAttributeType::S, AttributeValue::S(text)) if !text.is_empty() => {
            text.clone().into_bytes()
        }
        (ScalarAttributeType::B, AttributeValue::B(data)) if !data.is_empty() => data.clone(),
        (ScalarAttributeType::N, AttributeValue::N(number)) => canonical_number(number)
            .ok_or_else(|| format!("is not a number: {}", excerpt(number)))?
            .into_bytes(),
        (
            ScalarAttributeType::S | ScalarAttributeType::B,
            AttributeValue::S(_) | AttributeValue::B(_),
        ) => {
            return Err("is empty".to_owned());
        }
        (kind, _) => return Err(format!("must be of type {kind:?}")),
    };
    // Length-prefixed, so that ("ab", "c") and ("a", "bc") differ.
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(&bytes);
    Ok(())
}

/// A decimal in one spelling per value: `1`, `1.0`, `+1` and `10e-1` all
/// become `1e0`; zero is `0`.
fn canonical_number(text: &str) -> Option<String> {
    let text = text.trim();
    let (negative, unsigned) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], unsigned[at + 1..].parse::<i64>().ok()?),
        None => (unsigned, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let digits = format!("{whole}{fraction}");
    let Some(first) = digits.find(|c| c != '0') else {
        return Some("0".to_owned());
    };
    let significant = digits[first..].trim_end_matches('0');
    // The value is 0.<significant> × 10^(point), wherever the digits sat.
    let point = exponent + whole.len() as i64 - first as i64;
    let sign = if negative { "-" } else { "" };
    Some(format!("{sign}{significant}e{point}"))
}

/// An item's size as DynamoDB counts it: names and values, with the
/// documented overheads for numbers, lists and maps.
fn item_bytes(item: &Item) -> usize {
    item.iter()
        .map(|(name, value)| name.len() + value_bytes(value))
        .sum()
}

fn value_bytes(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(text) => text.len(),
        AttributeValue::N(number) => number_bytes(number),
        AttributeValue::B(data) => data.len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::M(map) => {
            3 + map
                .iter()
                .map(|(name, value)| 1 + name.len() + value_bytes(value))
                .sum::<usize>()
        }
        AttributeValue::L(values) => 3 + values.iter().map(|v| 1 + value_bytes(v)).sum::<usize>(),
        AttributeValue::Ss(texts) => texts.iter().map(String::len).sum(),
        AttributeValue::Ns(numbers) => numbers.iter().map(|n| number_bytes(n)).sum(),
        AttributeValue::Bs(blobs) => blobs.iter().map(Vec::len).sum(),
    }
}

/// About one byte per two significant digits, plus one (and one more for
/// a negative number), at most 21.
fn number_bytes(number: &str) -> usize {
    let significant = number
        .bytes()
        .take_while(|b| *b != b'e' && *b != b'E')
        .filter(u8::is_ascii_digit)
        .count();
    let sign = usize::from(number.starts_with('-'));
    (significant.div_ceil(2) + 1 + sign).min(21)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dynamodb::item;

    fn schema() -> KeySchema {
        KeySchema(vec![
            ("pk".into(), ScalarAttributeType::S),
            ("sk".into(), ScalarAttributeType::N),
        ])
    }

    #[test]
    fn numbers_have_one_spelling() {
        for (a, b) in [
            ("1", "1.0"),
            ("+1", "10e-1"),
            ("0.5", ".5"),
            ("-0012.30", "-1.23e1"),
        ] {
            assert_eq!(canonical_number(a), canonical_number(b), "{a} vs {b}");
        }
        assert_eq!(canonical_number("0.000").as_deref(), Some("0"));
        assert_ne!(canonical_number("1"), canonical_number("10"));
        assert_ne!(canonical_number("1"), canonical_number("-1"));
        for bad in ["", "-", "1.2.3", "e5", "1e", "abc", "1_0"] {
            assert_eq!(canonical_number(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn keys_are_canonical_and_checked() {
        let put = |sk: &str| {
            WriteRequest::put(item([
                ("pk", AttributeValue::s("a")),
                ("sk", AttributeValue::N(sk.into())),
                ("v", AttributeValue::s("x")),
            ]))
        };
        let one = schema().weigh("t", &put("1")).unwrap();
        assert_eq!(one.key, schema().weigh("t", &put("1.00")).unwrap().key);
        assert_ne!(one.key, schema().weigh("t", &put("2")).unwrap().key);
        let delete = WriteRequest::delete(item([
            ("pk", AttributeValue::s("a")),
            ("sk", AttributeValue::n(1)),
        ]));
        assert_eq!(schema().weigh("t", &delete).unwrap().key, one.key);

        let missing = WriteRequest::put(item([("pk", AttributeValue::s("a"))]));
        let error = schema().weigh("t", &missing).unwrap_err().to_string();
        assert!(
            error.contains("sk is missing") && error.contains("table t"),
            "{error}"
        );
        let wrong_type = WriteRequest::put(item([
            ("pk", AttributeValue::n(1)),
            ("sk", AttributeValue::n(1)),
        ]));
        let error = schema().weigh("t", &wrong_type).unwrap_err().to_string();
        assert!(error.contains("pk must be of type S"), "{error}");
        assert!(error.contains(r#"{"N":"1"}"#), "{error}");
        let wide_delete = WriteRequest::delete(item([
            ("pk", AttributeValue::s("a")),
            ("sk", AttributeValue::n(1)),
            ("v", AttributeValue::s("x")),
        ]));
        assert!(schema().weigh("t", &wide_delete).is_err());
    }

    #[test]
    fn sizes_follow_dynamodbs_rules() {
        let small = item([
            ("pk", AttributeValue::s("abc")),
            ("n", AttributeValue::n(12345)),
            (
                "m",
                AttributeValue::m(item([("x", AttributeValue::Bool(true))])),
            ),
        ]);
        // pk 2+3, n 1+(3+1), m 1+(3+1+1+1).
        assert_eq!(item_bytes(&small), 5 + 5 + 7);
        let big = WriteRequest::put(item([
            ("pk", AttributeValue::s("a")),
            ("sk", AttributeValue::n(1)),
            ("blob", AttributeValue::b(vec![0u8; 2048])),
        ]));
        assert_eq!(schema().weigh("t", &big).unwrap().units, 3.0);
        let huge = WriteRequest::put(item([
            ("pk", AttributeValue::s("a")),
            ("sk", AttributeValue::n(1)),
            ("blob", AttributeValue::b(vec![0u8; MAX_ITEM_BYTES])),
        ]));
        let error = schema().weigh("t", &huge).unwrap_err().to_string();
        assert!(error.contains("at most 409600 bytes"), "{error}");
    }
}
