//! Names of models, sources and seeds.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

/// The name of a model, source or seed: shown as written, and compared,
/// ordered and hashed by its lowercase key, the way DuckDB matches
/// identifiers (`Revenue_Daily` and `revenue_daily` are one model). State
/// stores the key.
///
/// ```
/// use hubforge::name::ModelName;
/// let a = ModelName::new("Revenue_Daily");
/// assert_eq!(a, ModelName::new("revenue_daily"));
/// assert_eq!((a.as_str(), a.key()), ("Revenue_Daily", "revenue_daily"));
/// ```
#[derive(Clone)]
pub struct ModelName {
    shown: Box<str>,
    key: Box<str>,
}

impl ModelName {
    pub fn new(name: &str) -> Self {
        ModelName {
            shown: name.into(),
            key: name.to_lowercase().into(),
        }
    }

    /// The name as written in the project.
    pub fn as_str(&self) -> &str {
        &self.shown
    }

    /// The lowercase key it is compared and stored by.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl PartialEq for ModelName {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for ModelName {}

impl PartialOrd for ModelName {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ModelName {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key.cmp(&other.key)
    }
}

impl Hash for ModelName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

/// The name as written, wherever text is wanted (quoting, messages).
impl std::ops::Deref for ModelName {
    type Target = str;

    fn deref(&self) -> &str {
        &self.shown
    }
}

/// Maps keyed by names are looked up by key.
impl Borrow<str> for ModelName {
    fn borrow(&self) -> &str {
        &self.key
    }
}

impl PartialEq<str> for ModelName {
    fn eq(&self, other: &str) -> bool {
        self.key.as_ref() == other.to_lowercase()
    }
}

impl PartialEq<&str> for ModelName {
    fn eq(&self, other: &&str) -> bool {
        *self == **other
    }
}

impl PartialEq<String> for ModelName {
    fn eq(&self, other: &String) -> bool {
        *self == *other.as_str()
    }
}

impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.shown, f)
    }
}

impl From<&str> for ModelName {
    fn from(s: &str) -> Self {
        ModelName::new(s)
    }
}

impl From<String> for ModelName {
    fn from(s: String) -> Self {
        ModelName::new(&s)
    }
}

impl serde::Serialize for ModelName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.shown)
    }
}

impl<'de> serde::Deserialize<'de> for ModelName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(ModelName::new(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::ModelName;
    use std::collections::BTreeMap;

    #[test]
    fn names_compare_by_key_and_show_as_written() {
        let cases = [
            ("orders", "ORDERS", true),
            ("Stg_Orders", "stg_orders", true),
            ("orders", "orders_v2", false),
        ];
        for (a, b, same) in cases {
            assert_eq!(ModelName::new(a) == ModelName::new(b), same, "{a} vs {b}");
        }
        let n = ModelName::new("Stg_Orders");
        assert_eq!(n.to_string(), "Stg_Orders");
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"Stg_Orders\"");
        let map = BTreeMap::from([(n, 1)]);
        assert_eq!(map.get("stg_orders"), Some(&1));
    }
}
