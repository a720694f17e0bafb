//! Values across the JS boundary: JSON-like objects go through JSON text
//! (the exact representation core keeps), vectors through `Float32Array`
//! or plain number arrays.

use js_sys::{Array, Float32Array, JSON};
use serde_json::Value;
use tidemark_core::model::Fields;
use wasm_bindgen::{JsCast, JsValue};

use crate::error::SdkError;

pub fn to_js(value: &Value) -> JsValue {
    // serde_json always produces valid JSON, which JSON.parse accepts.
    JSON::parse(&value.to_string()).unwrap_or(JsValue::NULL)
}

pub fn from_js(value: &JsValue, what: &str) -> Result<Value, SdkError> {
    if value.is_undefined() {
        return Ok(Value::Null);
    }
    let text = JSON::stringify(value)
        .map_err(|_| SdkError::InvalidArgument(format!("{what} is not JSON-serializable")))?;
    let text = String::from(text);
    serde_json::from_str(&text)
        .map_err(|e| SdkError::InvalidArgument(format!("{what} is not valid JSON: {e}")))
}

pub fn fields_from_js(value: &JsValue, what: &str) -> Result<Fields, SdkError> {
    match from_js(value, what)? {
        Value::Object(fields) => Ok(fields),
        _ => Err(SdkError::InvalidArgument(format!(
            "{what} must be an object"
        ))),
    }
}

/// `undefined`/`null` → `None`; a `Float32Array` or an array of numbers → the vector.
pub fn vector_from_js(value: &JsValue) -> Result<Option<Vec<f32>>, SdkError> {
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    if let Some(array) = value.dyn_ref::<Float32Array>() {
        return Ok(Some(array.to_vec()));
    }
    if let Some(array) = value.dyn_ref::<Array>() {
        return array
            .iter()
            .map(|x| {
                x.as_f64()
                    .map(|x| x as f32)
                    .ok_or_else(|| SdkError::InvalidArgument("vector must hold numbers".into()))
            })
            .collect::<Result<Vec<f32>, _>>()
            .map(Some);
    }
    Err(SdkError::InvalidArgument(
        "vector must be a Float32Array or an array of numbers".into(),
    ))
}
