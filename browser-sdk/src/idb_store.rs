//! [`Store`] on IndexedDB: one database per client, one object store of
//! `Uint8Array` values, one readwrite transaction per batch (IndexedDB
//! transactions are atomic: all of a batch lands, or none of it).

use js_sys::{Promise, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{IdbDatabase, IdbFactory, IdbOpenDbRequest, IdbRequest, IdbTransactionMode};

use crate::error::SdkError;
use crate::store::{LocalFuture, Store, StoreWrite};

const OBJECT_STORE: &str = "kv";
const SCHEMA_VERSION: u32 = 1;

pub struct IdbStore {
    db: IdbDatabase,
}

impl IdbStore {
    /// Opens (creating if needed) the database `name`.
    pub async fn open(name: &str) -> Result<Self, SdkError> {
        let factory: IdbFactory = js_sys::Reflect::get(&js_sys::global(), &"indexedDB".into())
            .ok()
            .filter(|f| !f.is_undefined() && !f.is_null())
            .ok_or_else(|| {
                SdkError::Storage("IndexedDB is not available here; use persist: \"memory\"".into())
            })?
            .unchecked_into();
        let request: IdbOpenDbRequest = factory
            .open_with_u32(name, SCHEMA_VERSION)
            .map_err(SdkError::storage)?;
        let upgrade = Closure::once_into_js(move |event: web_sys::IdbVersionChangeEvent| {
            let Some(target) = event.target() else { return };
            let request: IdbOpenDbRequest = target.unchecked_into();
            if let Ok(result) = request.result() {
                let db: IdbDatabase = result.unchecked_into();
                if !db.object_store_names().contains(OBJECT_STORE) {
                    // A failure here aborts the upgrade, and open() reports it.
                    let _ = db.create_object_store(OBJECT_STORE);
                }
            }
        });
        request.set_onupgradeneeded(Some(upgrade.unchecked_ref()));
        let db = request_result(&request).await?.unchecked_into();
        Ok(Self { db })
    }

    /// Closes the connection (tests reopen the same database afterwards).
    pub fn close(&self) {
        self.db.close();
    }
}

impl Drop for IdbStore {
    fn drop(&mut self) {
        self.db.close();
    }
}

/// Resolves with a request's result once it succeeds.
async fn request_result(request: &IdbRequest) -> Result<JsValue, SdkError> {
    let promise = Promise::new(&mut |resolve, reject| {
        let ok = request.clone();
        let on_success = Closure::once_into_js(move || {
            let _ = resolve.call1(&JsValue::NULL, &ok.result().unwrap_or(JsValue::UNDEFINED));
        });
        let failed = request.clone();
        let on_error = Closure::once_into_js(move || {
            let error = failed
                .error()
                .ok()
                .flatten()
                .map(|e| JsValue::from(e.message()))
                .unwrap_or_else(|| "IndexedDB request failed".into());
            let _ = reject.call1(&JsValue::NULL, &error);
        });
        request.set_onsuccess(Some(on_success.unchecked_ref()));
        request.set_onerror(Some(on_error.unchecked_ref()));
    });
    JsFuture::from(promise).await.map_err(SdkError::storage)
}

impl Store for IdbStore {
    fn get<'a>(&'a self, key: &'a str) -> LocalFuture<'a, Result<Option<Vec<u8>>, SdkError>> {
        Box::pin(async move {
            let tx = self
                .db
                .transaction_with_str(OBJECT_STORE)
                .map_err(SdkError::storage)?;
            let store = tx.object_store(OBJECT_STORE).map_err(SdkError::storage)?;
            let request = store.get(&key.into()).map_err(SdkError::storage)?;
            let value = request_result(&request).await?;
            if value.is_undefined() || value.is_null() {
                return Ok(None);
            }
            let bytes: Uint8Array = value
                .dyn_into()
                .map_err(|_| SdkError::Storage(format!("{key} does not hold bytes")))?;
            Ok(Some(bytes.to_vec()))
        })
    }

    fn write_all(&self, writes: Vec<StoreWrite>) -> LocalFuture<'_, Result<(), SdkError>> {
        Box::pin(async move {
            let tx = self
                .db
                .transaction_with_str_and_mode(OBJECT_STORE, IdbTransactionMode::Readwrite)
                .map_err(SdkError::storage)?;
            let store = tx.object_store(OBJECT_STORE).map_err(SdkError::storage)?;
            let done = Promise::new(&mut |resolve, reject| {
                let on_complete = Closure::once_into_js(move || {
                    let _ = resolve.call0(&JsValue::NULL);
                });
                let reject_abort = reject.clone();
                let on_error = Closure::once_into_js(move || {
                    let _ = reject.call1(&JsValue::NULL, &"IndexedDB transaction failed".into());
                });
                let on_abort = Closure::once_into_js(move || {
                    let _ =
                        reject_abort.call1(&JsValue::NULL, &"IndexedDB transaction aborted".into());
                });
                tx.set_oncomplete(Some(on_complete.unchecked_ref()));
                tx.set_onerror(Some(on_error.unchecked_ref()));
                tx.set_onabort(Some(on_abort.unchecked_ref()));
            });
            for (key, value) in writes {
                let result = match value {
                    Some(bytes) => {
                        store.put_with_key(&Uint8Array::from(bytes.as_slice()), &key.into())
                    }
                    None => store.delete(&key.into()),
                };
                if let Err(error) = result {
                    let _ = tx.abort();
                    return Err(SdkError::storage(error));
                }
            }
            JsFuture::from(done).await.map_err(SdkError::storage)?;
            Ok(())
        })
    }
}

/// Deletes a client's database (tests start from nothing).
pub async fn delete_database(name: &str) -> Result<(), SdkError> {
    let factory: IdbFactory = js_sys::Reflect::get(&js_sys::global(), &"indexedDB".into())
        .map_err(SdkError::storage)?
        .unchecked_into();
    let request = factory.delete_database(name).map_err(SdkError::storage)?;
    request_result(&request).await.map(|_| ())
}
