//! How a record's JSON fields live in its Automerge document.
//!
//! Fields are keys of the document's *root* map, not of a nested "fields"
//! object: the root exists in every replica's copy from the start, whereas two
//! offline writers that each created a nested object would create two
//! different objects and one writer's fields would lose the conflict.
//!
//! Root keys that begin with `$` are Tidemark's own. Today there is one,
//! [`DELETED_KEY`], a boolean register: deleting a record is an ordinary
//! change that sets it, so a delete made offline merges like any edit and a
//! later put resurrects the record. Field names starting with `$` are refused
//! by the JSON API and hidden by materialization.
//!
//! JSON maps onto Automerge as: object → map, array → list, string → string
//! scalar (last writer wins, not character-merged text), integer → int or
//! uint, other number → f64, bool, null. Materialization goes the other way;
//! Automerge values JSON has no name for become numbers (counters,
//! timestamps), strings (text objects), arrays of bytes, or null.

use automerge::transaction::Transactable;
use automerge::{Automerge, AutomergeError, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, hydrate};
use serde::{Deserialize, Serialize};
use serde_json::{Number, Value};

use crate::model::Fields;

/// Root key holding the record's deleted flag.
pub const DELETED_KEY: &str = "$deleted";

/// Root keys with this prefix are reserved for Tidemark.
pub const RESERVED_PREFIX: char = '$';

/// An edit expressed as plain JSON, turned into an Automerge change against
/// the record's current document (the writer's JSON API, the SDK's `put`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum JsonEdit {
    /// Replace every field; keys absent from the object are removed.
    Put(#[serde(with = "crate::codec::json_object")] Fields),
    /// RFC 7386 merge patch: `null` removes a key, objects merge recursively,
    /// everything else replaces.
    Patch(#[serde(with = "crate::codec::json_object")] Fields),
    /// Mark the record deleted and clear its fields.
    Delete,
}

impl JsonEdit {
    /// The first field name that the JSON API refuses, if any.
    pub fn reserved_field(&self) -> Option<&str> {
        match self {
            JsonEdit::Put(fields) | JsonEdit::Patch(fields) => fields
                .keys()
                .find(|key| key.starts_with(RESERVED_PREFIX))
                .map(String::as_str),
            JsonEdit::Delete => None,
        }
    }

    /// The fields and deleted flag the record has after this edit, computed
    /// on plain JSON, so the writer can tell a no-op (a re-sent request)
    /// before it creates a change.
    pub fn outcome(&self, current: &Fields) -> (Fields, bool) {
        match self {
            JsonEdit::Put(fields) => (fields.clone(), false),
            JsonEdit::Patch(patch) => {
                let mut merged = current.clone();
                merge_patch(&mut merged, patch);
                (merged, false)
            }
            JsonEdit::Delete => (Fields::new(), true),
        }
    }
}

fn merge_patch(target: &mut Fields, patch: &Fields) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(inner) => match target.get_mut(key) {
                Some(Value::Object(existing)) => merge_patch(existing, inner),
                _ => {
                    let mut fresh = Fields::new();
                    merge_patch(&mut fresh, inner);
                    target.insert(key.clone(), Value::Object(fresh));
                }
            },
            other => {
                target.insert(key.clone(), other.clone());
            }
        }
    }
}

/// The record's fields as JSON, with keys in sorted order so that every
/// replica produces the same bytes for the same state.
pub fn materialize(doc: &Automerge) -> Fields {
    let mut fields = Fields::new();
    if let hydrate::Value::Map(root) = doc.hydrate(None) {
        let mut entries: Vec<_> = root
            .iter()
            .filter(|(key, _)| !key.starts_with(RESERVED_PREFIX))
            .collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        for (key, value) in entries {
            fields.insert(key.clone(), to_json(&value.value));
        }
    }
    fields
}

/// Whether the document's deleted flag is set.
pub fn is_deleted(doc: &Automerge) -> bool {
    matches!(
        doc.get(ROOT, DELETED_KEY),
        Ok(Some((automerge::Value::Scalar(value), _))) if matches!(value.as_ref(), ScalarValue::Boolean(true))
    )
}

fn to_json(value: &hydrate::Value) -> Value {
    match value {
        hydrate::Value::Scalar(scalar) => scalar_to_json(scalar),
        hydrate::Value::Map(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(key, value)| (key.clone(), to_json(&value.value)))
                    .collect(),
            )
        }
        hydrate::Value::List(list) => {
            Value::Array(list.iter().map(|item| to_json(&item.value)).collect())
        }
        hydrate::Value::Text(text) => Value::String(String::from(text)),
    }
}

fn scalar_to_json(scalar: &ScalarValue) -> Value {
    match scalar {
        ScalarValue::Str(s) => Value::String(s.to_string()),
        ScalarValue::Int(n) | ScalarValue::Timestamp(n) => Value::from(*n),
        ScalarValue::Uint(n) => Value::from(*n),
        ScalarValue::Counter(counter) => Value::from(i64::from(counter)),
        // JSON has no NaN or infinity; a change written outside the JSON API
        // may still carry one, and every replica maps it the same way.
        ScalarValue::F64(x) => Number::from_f64(*x).map_or(Value::Null, Value::Number),
        ScalarValue::Boolean(b) => Value::Bool(*b),
        ScalarValue::Bytes(bytes) => Value::Array(bytes.iter().map(|&b| Value::from(b)).collect()),
        ScalarValue::Null | ScalarValue::Unknown { .. } => Value::Null,
    }
}

/// Writes `edit` into a transaction on a document whose current fields (as
/// materialized, even if deleted) are `current`. Only keys whose value
/// changes are written, and the deleted flag only when it flips, so
/// concurrent edits of different keys by different writers all survive.
pub(crate) fn write_edit<T: Transactable>(
    tx: &mut T,
    current: &Fields,
    deleted: bool,
    edit: &JsonEdit,
) -> Result<(), AutomergeError> {
    // A deleted record's leftover fields (from edits concurrent with the
    // delete) are not part of what a patch builds on.
    let visible = if deleted {
        Fields::new()
    } else {
        current.clone()
    };
    let (target, now_deleted) = edit.outcome(&visible);
    write_map(tx, &ROOT, current, &target)?;
    if now_deleted != deleted {
        tx.put(ROOT, DELETED_KEY, now_deleted)?;
    }
    Ok(())
}

fn write_map<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    current: &Fields,
    target: &Fields,
) -> Result<(), AutomergeError> {
    for key in current.keys() {
        if !target.contains_key(key) {
            tx.delete(obj, key.as_str())?;
        }
    }
    for (key, value) in target {
        match (current.get(key), value) {
            (Some(old), new) if old == new => {}
            // Recurse into a map that exists on both sides, so that a patch of
            // one nested key does not overwrite concurrent edits of its siblings.
            (Some(Value::Object(old)), Value::Object(new)) => {
                if let Some((automerge::Value::Object(ObjType::Map), child)) =
                    tx.get(obj, key.as_str())?
                {
                    write_map(tx, &child, old, new)?;
                } else {
                    put_value(tx, obj, key, value)?;
                }
            }
            _ => put_value(tx, obj, key, value)?,
        }
    }
    Ok(())
}

fn put_value<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    key: &str,
    value: &Value,
) -> Result<(), AutomergeError> {
    match value {
        Value::Object(map) => {
            let child = tx.put_object(obj, key, ObjType::Map)?;
            write_map(tx, &child, &Fields::new(), map)
        }
        Value::Array(items) => {
            let child = tx.put_object(obj, key, ObjType::List)?;
            fill_list(tx, &child, items)
        }
        scalar => tx.put(obj, key, json_scalar(scalar)),
    }
}

fn fill_list<T: Transactable>(
    tx: &mut T,
    list: &ObjId,
    items: &[Value],
) -> Result<(), AutomergeError> {
    for (index, item) in items.iter().enumerate() {
        match item {
            Value::Object(map) => {
                let child = tx.insert_object(list, index, ObjType::Map)?;
                write_map(tx, &child, &Fields::new(), map)?;
            }
            Value::Array(inner) => {
                let child = tx.insert_object(list, index, ObjType::List)?;
                fill_list(tx, &child, inner)?;
            }
            scalar => tx.insert(list, index, json_scalar(scalar))?,
        }
    }
    Ok(())
}

fn json_scalar(value: &Value) -> ScalarValue {
    match value {
        Value::Bool(b) => ScalarValue::Boolean(*b),
        Value::String(s) => ScalarValue::Str(s.as_str().into()),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                ScalarValue::Int(i)
            } else if let Some(u) = n.as_u64() {
                ScalarValue::Uint(u)
            } else {
                ScalarValue::F64(n.as_f64().unwrap_or(0.0))
            }
        }
        // Objects and arrays never reach here; null is the only other case.
        _ => ScalarValue::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::CommitOptions;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn obj(value: Value) -> Fields {
        match value {
            Value::Object(map) => map,
            _ => unreachable!("test input is an object"),
        }
    }

    fn edit(doc: &mut Automerge, edit: JsonEdit) {
        let current = materialize(doc);
        let deleted = is_deleted(doc);
        let mut tx = doc.transaction();
        write_edit(&mut tx, &current, deleted, &edit).unwrap();
        tx.commit_with(CommitOptions::default().with_time(0));
    }

    #[test]
    fn json_round_trips_through_a_document() {
        let fields = obj(json!({
            "title": "hello", "n": -3, "big": u64::MAX, "x": 0.1,
            "ok": true, "none": null, "tags": ["a", {"b": [1, 2]}], "meta": {"k": "v"}
        }));
        let mut doc = Automerge::new();
        edit(&mut doc, JsonEdit::Put(fields.clone()));
        assert_eq!(materialize(&doc), fields);
        assert!(!is_deleted(&doc));
    }

    #[test]
    fn patch_merges_and_null_removes() {
        let mut doc = Automerge::new();
        edit(
            &mut doc,
            JsonEdit::Put(obj(json!({"a": 1, "m": {"x": 1, "y": 2}}))),
        );
        edit(
            &mut doc,
            JsonEdit::Patch(obj(json!({"a": null, "m": {"y": 3}, "b": "new"}))),
        );
        assert_eq!(
            materialize(&doc),
            obj(json!({"b": "new", "m": {"x": 1, "y": 3}}))
        );
        edit(&mut doc, JsonEdit::Put(obj(json!({"c": []}))));
        assert_eq!(materialize(&doc), obj(json!({"c": []})));
    }

    #[test]
    fn delete_clears_fields_and_put_resurrects() {
        let mut doc = Automerge::new();
        edit(&mut doc, JsonEdit::Put(obj(json!({"a": 1}))));
        edit(&mut doc, JsonEdit::Delete);
        assert!(is_deleted(&doc));
        assert_eq!(materialize(&doc), Fields::new());
        edit(&mut doc, JsonEdit::Put(obj(json!({"b": 2}))));
        assert!(!is_deleted(&doc));
        assert_eq!(materialize(&doc), obj(json!({"b": 2})));
    }

    #[test]
    fn reserved_names_are_found() {
        assert_eq!(
            JsonEdit::Patch(obj(json!({"ok": 1, "$deleted": false}))).reserved_field(),
            Some("$deleted")
        );
        assert_eq!(JsonEdit::Put(obj(json!({"ok": 1}))).reserved_field(), None);
    }
}
