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

use std::num::NonZeroU64;

use automerge::legacy::{self, ElementId, Key, ObjectId, OpId, OpType, SortedVec};
use automerge::transaction::Transactable;
use automerge::{
    ActorId, Automerge, AutomergeError, Change, ExpandedChange, ObjId, ObjType, ROOT, ReadDoc,
    ScalarValue, hydrate,
};
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

/// The change that puts `fields` into an empty document, by `actor` at
/// `time_ms`: byte for byte what writing a [`JsonEdit::Put`] makes
/// in a transaction on a new document (the tests hold the two equal), but
/// encoded straight from the JSON. `None` for no fields, which is no change.
///
/// Creating a record is the common write (an import, an agent's new memory),
/// and going through a document costs building and dropping a whole
/// Automerge op set: measured natively, 37 µs and 17 KB for three fields,
/// and 115 µs against 5 µs here for a dozen nested values. The ops are the
/// transaction's, in its order: each key of `fields` in turn, a nested
/// object or list as a `make` followed by its contents (depth first), list
/// items inserted each after the previous one, no predecessors (nothing is
/// overwritten), op counters from 1 in a first change (seq 1, no
/// dependencies).
pub fn first_change(fields: &Fields, actor: &ActorId, time_ms: i64) -> Option<Vec<u8>> {
    if fields.is_empty() {
        return None;
    }
    let mut ops = FirstChangeOps {
        actor,
        ops: Vec::with_capacity(fields.len()),
    };
    for (key, value) in fields {
        ops.put(ObjectId::Root, Key::Map(key.as_str().into()), false, value);
    }
    let change = Change::from(ExpandedChange {
        operations: ops.ops,
        actor_id: actor.clone(),
        hash: None,
        seq: 1,
        start_op: NonZeroU64::MIN,
        time: time_ms,
        message: None,
        deps: Vec::new(),
        extra_bytes: Vec::new(),
        author: None,
    });
    Some(change.raw_bytes().to_vec())
}

/// The ops of [`first_change`], numbered as they are pushed.
struct FirstChangeOps<'a> {
    actor: &'a ActorId,
    ops: Vec<legacy::Op>,
}

impl FirstChangeOps<'_> {
    /// Pushes the op(s) that write `value` at `key` of `obj` and returns the
    /// id of the first (the object's id for a `make`, the element's in a list).
    fn put(&mut self, obj: ObjectId, key: Key, insert: bool, value: &Value) -> OpId {
        let id = OpId(self.ops.len() as u64 + 1, self.actor.clone());
        let action = match value {
            Value::Object(_) => OpType::Make(ObjType::Map),
            Value::Array(_) => OpType::Make(ObjType::List),
            scalar => OpType::Put(json_scalar(scalar)),
        };
        self.ops.push(legacy::Op {
            action,
            obj,
            key,
            pred: SortedVec::new(),
            insert,
        });
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    let key = Key::Map(key.as_str().into());
                    self.put(ObjectId::Id(id.clone()), key, false, value);
                }
            }
            Value::Array(items) => {
                let mut previous = ElementId::Head;
                for item in items {
                    let key = Key::Seq(previous);
                    previous = ElementId::Id(self.put(ObjectId::Id(id.clone()), key, true, item));
                }
            }
            _ => {}
        }
        id
    }
}

/// `fields` as [`materialize`] returns them once written to a document:
/// the same values with the keys of every object in sorted order.
pub fn materialized(fields: &Fields) -> Fields {
    let mut entries: Vec<(&String, &Value)> = fields.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
        .into_iter()
        .map(|(key, value)| (key.clone(), materialized_value(value)))
        .collect()
}

fn materialized_value(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(materialized(map)),
        Value::Array(items) => Value::Array(items.iter().map(materialized_value).collect()),
        scalar => scalar.clone(),
    }
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
    use proptest::prelude::*;
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

    /// JSON values of every kind the API takes, nested a few levels.
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1e12f64..1e12).prop_map(Value::from),
            "[a-z0-9 é]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec(("[a-z]{0,6}", inner), 0..4)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    fn json_fields() -> impl Strategy<Value = Fields> {
        prop::collection::vec(("[a-zA-Z_][a-z0-9]{0,8}", json_value()), 0..6)
            .prop_map(|entries| entries.into_iter().collect())
    }

    proptest! {
        #[test]
        fn first_change_is_the_transactions_change(fields in json_fields(), time in any::<i64>()) {
            let actor = ActorId::from(&[9u8; 16][..]);
            let mut doc = Automerge::new();
            doc.set_actor(actor.clone());
            let mut tx = doc.transaction();
            write_edit(&mut tx, &Fields::new(), false, &JsonEdit::Put(fields.clone())).unwrap();
            let (hash, _) = tx.commit_with(CommitOptions::default().with_time(time));
            let expected = hash.map(|h| doc.get_change_by_hash(&h).unwrap().raw_bytes().to_vec());
            prop_assert_eq!(first_change(&fields, &actor, time), expected);
            let state = materialize(&doc);
            prop_assert_eq!(&materialized(&fields), &state);
            // Equal as JSON text too: the key order is the document's.
            prop_assert_eq!(
                serde_json::to_string(&materialized(&fields)).unwrap(),
                serde_json::to_string(&state).unwrap()
            );
        }
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
