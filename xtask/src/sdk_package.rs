//! `cargo xtask build sdk`: the npm package `tidemark` in `browser-sdk/pkg/`.
//!
//! wasm-pack names the package after the crate (`tidemark-browser-sdk`) and
//! has no option for another name, so the manifest it writes is completed
//! here: the npm name, description and keywords.
//! The TypeScript declarations are checked for `any` in the API's
//! signatures: every exported method has a real type.

use anyhow::{Context, ensure};
use serde_json::{Value, json};

use crate::provision::run;
use crate::toolchain::Toolchain;

pub const NPM_NAME: &str = "tidemark";

pub fn build(t: &Toolchain) -> anyhow::Result<()> {
    run(t.command(t.tool("wasm-pack")).args([
        "build",
        "--release",
        "--target",
        "web",
        "--out-name",
        NPM_NAME,
        "browser-sdk",
    ]))?;
    let pkg = t.repo.join("browser-sdk/pkg");
    let manifest_path = pkg.join("package.json");
    let mut manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(&manifest_path).context("wasm-pack's package.json")?,
    )?;
    let object = manifest
        .as_object_mut()
        .context("package.json is an object")?;
    object.insert("name".into(), json!(NPM_NAME));
    object.insert(
        "description".into(),
        json!("Offline-first local replica of a Tidemark document + vector store: IndexedDB, CRDT merge, SIMD vector search"),
    );
    object.insert(
        "keywords".into(),
        json!([
            "offline-first",
            "crdt",
            "automerge",
            "vector-search",
            "indexeddb",
            "wasm"
        ]),
    );
    std::fs::write(
        &manifest_path,
        serde_json::to_string_pretty(&manifest)? + "\n",
    )?;

    let types = std::fs::read_to_string(pkg.join(format!("{NPM_NAME}.d.ts")))?;
    // The API comes first; wasm-bindgen's loader types (the raw exports
    // of the module, typed `any` by design) start at `InitInput`.
    let api = types
        .split("export type InitInput")
        .next()
        .unwrap_or_default();
    let untyped: Vec<&str> = api
        .lines()
        .filter(|line| {
            [": any", "<any>", "any[]", "=> any"]
                .iter()
                .any(|t| line.contains(t))
        })
        .collect();
    ensure!(
        untyped.is_empty(),
        "the SDK's TypeScript API has untyped signatures:\n{}",
        untyped.join("\n")
    );
    println!("npm package {NPM_NAME} in {}", pkg.display());
    Ok(())
}
