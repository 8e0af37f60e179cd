//! DynamoDB's typed values (`{"S": "…"}`, `{"N": "1"}`, …) and items.

use std::collections::HashMap;
use std::fmt::Display;

use serde::{Deserialize, Serialize};

/// An item or a key: attribute names to values.
pub type Item = HashMap<String, AttributeValue>;

/// An item built from `(name, value)` pairs, e.g.
/// `item([("pk", AttributeValue::s("a")), ("n", 1.into())])`.
pub fn item<K: Into<String>>(pairs: impl IntoIterator<Item = (K, AttributeValue)>) -> Item {
    pairs.into_iter().map(|(k, v)| (k.into(), v)).collect()
}

/// One DynamoDB attribute value, serialized exactly as DynamoDB JSON:
/// `{"S":"x"}`, `{"N":"12"}`, `{"B":"<base64>"}`, `{"BOOL":true}`,
/// `{"NULL":true}`, `{"M":{…}}`, `{"L":[…]}`, `{"SS":[…]}`, `{"NS":[…]}`,
/// `{"BS":[…]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttributeValue {
    /// A string.
    S(String),
    /// A number, kept as DynamoDB's decimal string.
    N(String),
    /// Binary data (base64 in JSON).
    #[serde(with = "base64_bytes")]
    B(Vec<u8>),
    /// A boolean.
    #[serde(rename = "BOOL")]
    Bool(bool),
    /// The null value; DynamoDB always sends `true`.
    #[serde(rename = "NULL")]
    Null(bool),
    /// A map of named values.
    M(HashMap<String, AttributeValue>),
    /// A list of values.
    L(Vec<AttributeValue>),
    /// A string set.
    #[serde(rename = "SS")]
    Ss(Vec<String>),
    /// A number set, as decimal strings.
    #[serde(rename = "NS")]
    Ns(Vec<String>),
    /// A binary set (each member base64 in JSON).
    #[serde(rename = "BS", with = "base64_list")]
    Bs(Vec<Vec<u8>>),
}

impl AttributeValue {
    /// A string value.
    pub fn s(value: impl Into<String>) -> Self {
        AttributeValue::S(value.into())
    }

    /// A number value from anything that prints as a number.
    pub fn n(value: impl Display) -> Self {
        AttributeValue::N(value.to_string())
    }

    /// A binary value.
    pub fn b(value: impl Into<Vec<u8>>) -> Self {
        AttributeValue::B(value.into())
    }

    /// The null value.
    pub fn null() -> Self {
        AttributeValue::Null(true)
    }

    /// A map value.
    pub fn m(value: Item) -> Self {
        AttributeValue::M(value)
    }

    /// A list value.
    pub fn l(values: impl IntoIterator<Item = AttributeValue>) -> Self {
        AttributeValue::L(values.into_iter().collect())
    }

    /// A string set.
    pub fn ss<S: Into<String>>(values: impl IntoIterator<Item = S>) -> Self {
        AttributeValue::Ss(values.into_iter().map(Into::into).collect())
    }

    /// A number set.
    pub fn ns<N: Display>(values: impl IntoIterator<Item = N>) -> Self {
        AttributeValue::Ns(values.into_iter().map(|n| n.to_string()).collect())
    }

    /// The string, if this is `S`.
    pub fn as_s(&self) -> Option<&str> {
        match self {
            AttributeValue::S(s) => Some(s),
            _ => None,
        }
    }

    /// The number's decimal string, if this is `N`.
    pub fn as_n(&self) -> Option<&str> {
        match self {
            AttributeValue::N(n) => Some(n),
            _ => None,
        }
    }

    /// The number parsed as `i64`, if this is an `N` that fits.
    pub fn as_i64(&self) -> Option<i64> {
        self.as_n()?.trim().parse().ok()
    }

    /// The number parsed as `u64`, if this is an `N` that fits.
    pub fn as_u64(&self) -> Option<u64> {
        self.as_n()?.trim().parse().ok()
    }

    /// The bytes, if this is `B`.
    pub fn as_b(&self) -> Option<&[u8]> {
        match self {
            AttributeValue::B(b) => Some(b),
            _ => None,
        }
    }

    /// The boolean, if this is `BOOL`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            AttributeValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// Whether this is `NULL`.
    pub fn is_null(&self) -> bool {
        matches!(self, AttributeValue::Null(_))
    }

    /// The map, if this is `M`.
    pub fn as_m(&self) -> Option<&Item> {
        match self {
            AttributeValue::M(m) => Some(m),
            _ => None,
        }
    }

    /// The list, if this is `L`.
    pub fn as_l(&self) -> Option<&[AttributeValue]> {
        match self {
            AttributeValue::L(l) => Some(l),
            _ => None,
        }
    }

    /// The members, if this is `SS`.
    pub fn as_ss(&self) -> Option<&[String]> {
        match self {
            AttributeValue::Ss(v) => Some(v),
            _ => None,
        }
    }

    /// The members' decimal strings, if this is `NS`.
    pub fn as_ns(&self) -> Option<&[String]> {
        match self {
            AttributeValue::Ns(v) => Some(v),
            _ => None,
        }
    }

    /// The members, if this is `BS`.
    pub fn as_bs(&self) -> Option<&[Vec<u8>]> {
        match self {
            AttributeValue::Bs(v) => Some(v),
            _ => None,
        }
    }
}

impl From<&str> for AttributeValue {
    fn from(value: &str) -> Self {
        AttributeValue::s(value)
    }
}

impl From<String> for AttributeValue {
    fn from(value: String) -> Self {
        AttributeValue::S(value)
    }
}

impl From<bool> for AttributeValue {
    fn from(value: bool) -> Self {
        AttributeValue::Bool(value)
    }
}

impl From<Vec<u8>> for AttributeValue {
    fn from(value: Vec<u8>) -> Self {
        AttributeValue::B(value)
    }
}

impl From<Item> for AttributeValue {
    fn from(value: Item) -> Self {
        AttributeValue::M(value)
    }
}

impl From<Vec<AttributeValue>> for AttributeValue {
    fn from(value: Vec<AttributeValue>) -> Self {
        AttributeValue::L(value)
    }
}

macro_rules! number_from {
    ($($t:ty),*) => {$(
        impl From<$t> for AttributeValue {
            fn from(value: $t) -> Self {
                AttributeValue::n(value)
            }
        }
    )*};
}
number_from!(i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize, f32, f64);

/// `B`: bytes as one base64 string.
mod base64_bytes {
    use base64_simd::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode_to_string(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        decode(&text).map_err(serde::de::Error::custom)
    }

    pub(super) fn decode(text: &str) -> Result<Vec<u8>, String> {
        STANDARD
            .decode_to_vec(text.trim())
            .map_err(|_| "invalid base64 in a binary attribute".to_owned())
    }
}

/// `BS`: a list of base64 strings.
mod base64_list {
    use base64_simd::STANDARD;
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        members: &[Vec<u8>],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(members.len()))?;
        for member in members {
            seq.serialize_element(&STANDARD.encode_to_string(member))?;
        }
        seq.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Vec<u8>>, D::Error> {
        <Vec<std::borrow::Cow<'de, str>>>::deserialize(deserializer)?
            .iter()
            .map(|text| super::base64_bytes::decode(text).map_err(serde::de::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(value: &AttributeValue, expected: serde_json::Value) {
        let encoded = serde_json::to_value(value).unwrap();
        assert_eq!(encoded, expected);
        let decoded: AttributeValue = serde_json::from_value(encoded).unwrap();
        assert_eq!(&decoded, value);
    }

    #[test]
    fn scalars_round_trip_as_dynamodb_json() {
        round_trip(&AttributeValue::s("x"), json!({"S": "x"}));
        round_trip(&AttributeValue::n(-12.5), json!({"N": "-12.5"}));
        round_trip(&42u64.into(), json!({"N": "42"}));
        round_trip(
            &AttributeValue::b(b"hi\x00\xff".to_vec()),
            json!({"B": "aGkA/w=="}),
        );
        round_trip(&AttributeValue::b(Vec::new()), json!({"B": ""}));
        round_trip(&true.into(), json!({"BOOL": true}));
        round_trip(&AttributeValue::null(), json!({"NULL": true}));
    }

    #[test]
    fn sets_and_nested_documents_round_trip() {
        round_trip(&AttributeValue::ss(["a", "b"]), json!({"SS": ["a", "b"]}));
        round_trip(&AttributeValue::ns([1, 2]), json!({"NS": ["1", "2"]}));
        round_trip(
            &AttributeValue::Bs(vec![b"a".to_vec(), vec![0xfb, 0xff]]),
            json!({"BS": ["YQ==", "+/8="]}),
        );
        let nested = AttributeValue::m(item([
            (
                "list",
                AttributeValue::l([1.into(), "two".into(), AttributeValue::null()]),
            ),
            (
                "map",
                AttributeValue::m(item([("deep", AttributeValue::l([]))])),
            ),
            ("empty", AttributeValue::m(Item::new())),
        ]));
        round_trip(
            &nested,
            json!({"M": {
                "list": {"L": [{"N": "1"}, {"S": "two"}, {"NULL": true}]},
                "map": {"M": {"deep": {"L": []}}},
                "empty": {"M": {}},
            }}),
        );
    }

    #[test]
    fn accessors_match_only_their_type() {
        let n = AttributeValue::n(7);
        assert_eq!(n.as_n(), Some("7"));
        assert_eq!(n.as_i64(), Some(7));
        assert_eq!(n.as_u64(), Some(7));
        assert_eq!(n.as_s(), None);
        assert_eq!(AttributeValue::n(-1).as_u64(), None);
        assert_eq!(AttributeValue::s("x").as_s(), Some("x"));
        assert_eq!(AttributeValue::from(false).as_bool(), Some(false));
        assert!(AttributeValue::null().is_null());
        assert_eq!(AttributeValue::b(*b"z").as_b(), Some(&b"z"[..]));
        assert_eq!(
            AttributeValue::ss(["q"]).as_ss(),
            Some(&["q".to_string()][..])
        );
    }

    #[test]
    fn malformed_values_are_errors_not_panics() {
        for bad in [
            json!({"B": "not base64!"}),
            json!({"BS": ["YQ==", 3]}),
            json!({"X": "unknown type"}),
            json!({"S": "a", "N": "1"}),
            json!({"N": 1}),
            json!({}),
            json!("S"),
            json!(null),
        ] {
            assert!(
                serde_json::from_value::<AttributeValue>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }
}
