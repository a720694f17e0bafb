//! Field filters of a vector query, evaluated against a record's materialized
//! fields (a JSON object).
//!
//! The syntax is the serde (JSON) form of [`Filter`]:
//!
//! ```json
//! {"eq":    {"field": "lang", "value": "en"}}
//! {"in":    {"field": "section", "values": ["games", "science"]}}
//! {"range": {"field": "price", "gte": 10, "lt": 20}}
//! {"and":   [{"eq": {"field": "lang", "value": "en"}}, {"range": {"field": "year", "gt": 2020}}]}
//! ```
//!
//! `field` is a top-level field name, or a dotted path into nested objects
//! (`"meta.lang"`). `eq` and `in` compare JSON values (numbers by value, so
//! `1` equals `1.0`); when the field holds an array, they match if any element
//! does, which is how tags are filtered. `range` matches numbers only, with any
//! of `gt`, `gte`, `lt`, `lte`. A missing field matches nothing.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

/// A predicate over a record's fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Filter {
    Eq {
        field: String,
        value: Value,
    },
    In {
        field: String,
        values: Vec<Value>,
    },
    Range {
        field: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gt: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gte: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lt: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lte: Option<f64>,
    },
    And(Vec<Filter>),
}

/// Limits that keep one query's filter cheap to evaluate per candidate.
pub const MAX_FILTER_TERMS: usize = 64;
pub const MAX_SET_VALUES: usize = 1024;

#[derive(Debug, Clone, PartialEq, Error)]
pub enum FilterError {
    #[error("a filter may have at most {MAX_FILTER_TERMS} terms")]
    TooManyTerms,
    #[error("an `in` filter may list at most {MAX_SET_VALUES} values")]
    TooManyValues,
    #[error("a range filter on `{0}` needs at least one of gt, gte, lt, lte, all finite")]
    BadRange(String),
    #[error("a filter needs a field name")]
    EmptyField,
}

impl Filter {
    pub fn eq(field: &str, value: impl Into<Value>) -> Self {
        Filter::Eq {
            field: field.to_string(),
            value: value.into(),
        }
    }

    pub fn one_of(field: &str, values: impl IntoIterator<Item = Value>) -> Self {
        Filter::In {
            field: field.to_string(),
            values: values.into_iter().collect(),
        }
    }

    /// `low <= field < high`; `None` leaves that side open.
    pub fn range(field: &str, low: Option<f64>, high: Option<f64>) -> Self {
        Filter::Range {
            field: field.to_string(),
            gt: None,
            gte: low,
            lt: high,
            lte: None,
        }
    }

    /// Checks the limits; queries call this before searching.
    pub fn validate(&self) -> Result<(), FilterError> {
        let mut terms = 0;
        self.validate_counting(&mut terms)
    }

    fn validate_counting(&self, terms: &mut usize) -> Result<(), FilterError> {
        *terms += 1;
        if *terms > MAX_FILTER_TERMS {
            return Err(FilterError::TooManyTerms);
        }
        match self {
            Filter::Eq { field, .. } if field.is_empty() => Err(FilterError::EmptyField),
            Filter::In { field, .. } if field.is_empty() => Err(FilterError::EmptyField),
            Filter::In { values, .. } if values.len() > MAX_SET_VALUES => {
                Err(FilterError::TooManyValues)
            }
            Filter::Range {
                field,
                gt,
                gte,
                lt,
                lte,
            } => {
                let bounds = [gt, gte, lt, lte];
                if field.is_empty() {
                    Err(FilterError::EmptyField)
                } else if bounds.iter().all(|b| b.is_none())
                    || bounds.iter().any(|b| b.is_some_and(|x| !x.is_finite()))
                {
                    Err(FilterError::BadRange(field.clone()))
                } else {
                    Ok(())
                }
            }
            Filter::And(all) => all.iter().try_for_each(|f| f.validate_counting(terms)),
            Filter::Eq { .. } | Filter::In { .. } => Ok(()),
        }
    }

    /// Whether a record with these fields (an object) passes.
    pub fn matches(&self, fields: &Value) -> bool {
        self.matches_by(&|path| lookup(fields, path))
    }

    /// [`Self::matches`] for fields held as a map (a replica's records), so
    /// that a host need not keep a second copy of them as a `Value`.
    pub fn matches_fields(&self, fields: &Map<String, Value>) -> bool {
        self.matches_by(&|path| lookup_in(fields, path))
    }

    /// The filter over a field lookup by path (`a.b` reads `b` inside `a`).
    fn matches_by<'a>(&self, lookup: &dyn Fn(&str) -> Option<&'a Value>) -> bool {
        match self {
            Filter::Eq { field, value } => {
                lookup(field).is_some_and(|v| any_element(v, |x| same(x, value)))
            }
            Filter::In { field, values } => {
                lookup(field).is_some_and(|v| any_element(v, |x| values.iter().any(|w| same(x, w))))
            }
            Filter::Range {
                field,
                gt,
                gte,
                lt,
                lte,
            } => match lookup(field).and_then(Value::as_f64) {
                Some(x) => {
                    gt.is_none_or(|b| x > b)
                        && gte.is_none_or(|b| x >= b)
                        && lt.is_none_or(|b| x < b)
                        && lte.is_none_or(|b| x <= b)
                }
                None => false,
            },
            Filter::And(all) => all.iter().all(|f| f.matches_by(lookup)),
        }
    }
}

fn lookup_in<'a>(fields: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(direct) = fields.get(path) {
        return Some(direct);
    }
    let mut keys = path.split('.');
    let first = fields.get(keys.next()?)?;
    keys.try_fold(first, |value, key| value.as_object()?.get(key))
}

fn lookup<'a>(fields: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(direct) = fields.get(path) {
        return Some(direct);
    }
    path.split('.')
        .try_fold(fields, |value, key| value.as_object()?.get(key))
}

fn any_element(value: &Value, test: impl Fn(&Value) -> bool) -> bool {
    match value {
        Value::Array(items) => items.iter().any(&test),
        other => test(other),
    }
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn equality_membership_and_ranges() {
        let record =
            json!({"lang": "en", "year": 2021, "tags": ["rust", "wasm"], "meta": {"k": 1.0}});
        assert!(Filter::eq("lang", "en").matches(&record));
        let map = record.as_object().unwrap();
        assert!(Filter::eq("meta.k", 1).matches_fields(map));
        assert!(Filter::eq("tags", "rust").matches_fields(map));
        assert!(!Filter::eq("lang", "de").matches_fields(map));
        assert!(!Filter::eq("meta.x", 1).matches_fields(map));
        assert!(!Filter::eq("lang", "de").matches(&record));
        assert!(Filter::eq("tags", "wasm").matches(&record));
        assert!(Filter::eq("meta.k", 1).matches(&record));
        assert!(Filter::one_of("lang", [json!("de"), json!("en")]).matches(&record));
        assert!(!Filter::one_of("lang", [json!("fr")]).matches(&record));
        assert!(Filter::range("year", Some(2021.0), Some(2022.0)).matches(&record));
        assert!(!Filter::range("year", None, Some(2021.0)).matches(&record));
        assert!(!Filter::range("lang", Some(0.0), None).matches(&record));
        assert!(!Filter::eq("missing", 1).matches(&record));
        let both = Filter::And(vec![
            Filter::eq("lang", "en"),
            Filter::range("year", Some(2030.0), None),
        ]);
        assert!(!both.matches(&record));
    }

    #[test]
    fn json_syntax() {
        let f: Filter = serde_json::from_value(json!(
            {"and": [{"eq": {"field": "lang", "value": "en"}}, {"range": {"field": "year", "gt": 2020}}]}
        ))
        .unwrap();
        assert!(f.matches(&json!({"lang": "en", "year": 2021})));
        assert!(serde_json::from_value::<Filter>(json!({"like": {"field": "x"}})).is_err());
        let back: Filter = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
        assert_eq!(back, f);
    }

    #[test]
    fn limits_are_typed_errors() {
        let open = Filter::Range {
            field: "x".into(),
            gt: None,
            gte: None,
            lt: None,
            lte: None,
        };
        assert_eq!(open.validate(), Err(FilterError::BadRange("x".into())));
        let huge = Filter::one_of("x", (0..2000).map(Value::from));
        assert_eq!(huge.validate(), Err(FilterError::TooManyValues));
        let deep = Filter::And((0..100).map(|i| Filter::eq("x", i)).collect());
        assert_eq!(deep.validate(), Err(FilterError::TooManyTerms));
        assert_eq!(Filter::eq("", 1).validate(), Err(FilterError::EmptyField));
        assert_eq!(Filter::eq("x", 1).validate(), Ok(()));
    }
}
