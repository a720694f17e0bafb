//! The fields of an index's rows, for its filters: a `Value` per row, or
//! nothing at all while every row's is `null`.
//!
//! A host that keeps the records' fields itself (the edge's replica) gives
//! the index `null` and filters through its own copy
//! ([`super::ShardIndex::search_with_fields`]); a column of nulls would
//! still cost a `Value` (48 bytes on wasm32) per row, a megabyte for 20k
//! records of an isolate's 128. So an all-null column stores only its
//! length, and becomes a plain vector the first time a row gets fields.

use serde_json::Value;

static NULL: Value = Value::Null;

#[derive(Clone, Debug, Default)]
pub(crate) struct FieldColumn {
    /// Empty while every row is `null`; else one value per row.
    values: Vec<Value>,
    len: usize,
    /// Rows reserved while all-null, honoured if the column becomes dense.
    reserved: usize,
}

impl FieldColumn {
    fn is_sparse(&self) -> bool {
        self.values.is_empty()
    }

    /// Turns an all-null column into one value per row.
    fn densify(&mut self) {
        if self.is_sparse() {
            self.values = Vec::with_capacity(self.len.max(self.reserved) + 1);
            self.values.resize(self.len, Value::Null);
        }
    }

    pub fn get(&self, row: usize) -> &Value {
        self.values.get(row).unwrap_or(&NULL)
    }

    pub fn push(&mut self, fields: Value) {
        if self.is_sparse() && fields.is_null() {
            self.len += 1;
            return;
        }
        self.densify();
        self.values.push(fields);
        self.len += 1;
    }

    pub fn set(&mut self, row: usize, fields: Value) {
        debug_assert!(row < self.len);
        if self.is_sparse() && fields.is_null() {
            return;
        }
        self.densify();
        self.values[row] = fields;
    }

    /// Takes a row's fields, leaving `null`.
    pub fn take(&mut self, row: usize) -> Value {
        self.values
            .get_mut(row)
            .map(std::mem::take)
            .unwrap_or(Value::Null)
    }

    pub fn swap_remove(&mut self, row: usize) {
        if !self.is_sparse() {
            self.values.swap_remove(row);
        }
        self.len -= 1;
    }

    /// Room for `additional` more rows, exactly, once the column holds values
    /// (an all-null one needs none).
    pub fn reserve_exact(&mut self, additional: usize) {
        if self.is_sparse() {
            self.reserved = self.reserved.max(self.len + additional);
        } else {
            self.values.reserve_exact(additional);
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }
}

impl FromIterator<Value> for FieldColumn {
    fn from_iter<I: IntoIterator<Item = Value>>(values: I) -> Self {
        let mut column = FieldColumn::default();
        for value in values {
            column.push(value);
        }
        column
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn nulls_cost_nothing_until_a_row_has_fields() {
        let mut column: FieldColumn = (0..4).map(|_| Value::Null).collect();
        assert!(column.is_sparse());
        assert_eq!((column.len(), column.get(3)), (4, &Value::Null));
        column.set(1, Value::Null);
        column.swap_remove(0);
        assert!(column.is_sparse());
        column.set(2, json!({"a": 1}));
        assert!(!column.is_sparse());
        assert_eq!(column.get(2), &json!({"a": 1}));
        assert_eq!(column.get(0), &Value::Null);
        column.push(Value::Null);
        assert_eq!(column.len(), 4);
        assert_eq!(column.take(2), json!({"a": 1}));
        assert_eq!(column.get(2), &Value::Null);
    }
}
