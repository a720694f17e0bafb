//! Where Tidemark's tools live and the environment every sub-command gets.
//!
//! One compiler builds everything `cargo xtask` runs, host and wasm alike:
//! Debian's `rustc-web` (`/usr/bin/rustc`, 1.96). rustup's toolchain on these
//! machines has no `wasm32-unknown-unknown` standard library and cannot be
//! promised one offline, while Debian ships the standard library's sources,
//! from which [`crate::provision`] builds the wasm32 target once. Using the
//! same compiler for host crates means proc-macros and build scripts are
//! compiled once and shared by host and wasm builds in the one target dir.
//! rustup's `cargo` only builds this xtask.
//!
//! Tools that are not Debian packages (wasm-bindgen-cli, worker-build,
//! wasm-pack, node packages) go into a per-user cache outside the clone, so a
//! fresh clone on the same machine (which is what CI is) reuses them.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

pub const RUSTC: &str = "/usr/bin/rustc";
pub const CARGO: &str = "/usr/bin/cargo";
pub const WASM_TARGET: &str = "wasm32-unknown-unknown";
pub const WORKER_BUILD_VERSION: &str = "0.8.7";
pub const WASM_PACK_VERSION: &str = "0.15.1";

pub struct Toolchain {
    /// The workspace root.
    pub repo: PathBuf,
    /// `$TIDEMARK_CACHE`, else `$XDG_CACHE_HOME/tidemark`, else `~/.cache/tidemark`.
    pub cache: PathBuf,
    /// The one target dir every build shares.
    pub target_dir: PathBuf,
    /// The exact `wasm-bindgen` version pinned in the workspace manifest;
    /// wasm-bindgen-cli must be this version.
    pub wasm_bindgen_version: String,
}

impl Toolchain {
    pub fn discover() -> anyhow::Result<Self> {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("xtask lives inside the workspace")?
            .to_path_buf();
        let cache = match std::env::var_os("TIDEMARK_CACHE") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => match std::env::var_os("XDG_CACHE_HOME") {
                Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("tidemark"),
                _ => home()?.join(".cache").join("tidemark"),
            },
        };
        let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => repo.join("target"),
        };
        let manifest = std::fs::read_to_string(repo.join("Cargo.toml"))?;
        let wasm_bindgen_version = pinned_version(&manifest, "wasm-bindgen")?;
        Ok(Self {
            repo,
            cache,
            target_dir,
            wasm_bindgen_version,
        })
    }

    /// `cargo install --root` destination for the Rust-built tools.
    pub fn tools_root(&self) -> PathBuf {
        self.cache.join("tools")
    }

    pub fn tool(&self, name: &str) -> PathBuf {
        self.tools_root().join("bin").join(name)
    }

    pub fn node_modules(&self) -> PathBuf {
        self.repo.join("node_modules")
    }

    pub fn esbuild_bin(&self) -> PathBuf {
        self.node_modules().join("@esbuild/linux-x64/bin/esbuild")
    }

    /// `program` with the project's environment (see [`Self::apply_env`]).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        self.apply_env(&mut cmd);
        cmd.current_dir(&self.repo);
        cmd
    }

    /// Debian's cargo, in the workspace, with the project's environment.
    pub fn cargo(&self) -> Command {
        self.command(CARGO)
    }

    fn apply_env(&self, cmd: &mut Command) {
        // Tools first, then Debian's compiler ahead of rustup's proxies, then
        // whatever the user had.
        let mut path = vec![
            self.tools_root().join("bin"),
            self.node_modules().join(".bin"),
            PathBuf::from("/usr/bin"),
        ];
        path.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        cmd.env(
            "PATH",
            std::env::join_paths(path).unwrap_or_else(|_| OsString::from("/usr/bin")),
        );
        cmd.env("RUSTC", RUSTC);
        cmd.env("RUSTDOC", "/usr/bin/rustdoc");
        cmd.env("CARGO_TARGET_DIR", &self.target_dir);
        // Set by the rustup proxy that started this xtask; they would point
        // the child cargo back at rustup's toolchain.
        for var in [
            "RUSTUP_TOOLCHAIN",
            "CARGO",
            "RUSTC_WRAPPER",
            "RUSTC_WORKSPACE_WRAPPER",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("WASM_BINDGEN_BIN", self.tool("wasm-bindgen"));
        cmd.env("ESBUILD_BIN", self.esbuild_bin());
        cmd.env("WASM_PACK_CACHE", self.cache.join("wasm-pack"));
        // Everything stays on loopback: no telemetry, no edge-preview fetches.
        cmd.env("WRANGLER_SEND_METRICS", "false");
        cmd.env("CLOUDFLARE_CF_FETCH_ENABLED", "false");
        cmd.env("NO_UPDATE_NOTIFIER", "1");
    }
}

fn home() -> anyhow::Result<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .context("HOME is not set; set TIDEMARK_CACHE to choose where tools go")
}

/// The `x.y.z` of a dependency pinned as `name = "=x.y.z"` in a manifest.
fn pinned_version(manifest: &str, name: &str) -> anyhow::Result<String> {
    let prefix = format!("{name} = \"=");
    manifest
        .lines()
        .find_map(|line| {
            Some(
                line.trim()
                    .strip_prefix(&prefix)?
                    .split('"')
                    .next()?
                    .to_string(),
            )
        })
        .with_context(|| {
            format!("the workspace manifest must pin {name} exactly (`{name} = \"=x.y.z\"`)")
        })
}

#[cfg(test)]
mod tests {
    use super::pinned_version;

    #[test]
    fn reads_exact_pins_only() {
        let manifest = "[workspace.dependencies]\nwasm-bindgen = \"=0.2.130\"\nwasm-bindgen-futures = \"0.4\"\n";
        assert_eq!(pinned_version(manifest, "wasm-bindgen").unwrap(), "0.2.130");
        assert!(pinned_version("wasm-bindgen = \"0.2\"\n", "wasm-bindgen").is_err());
    }
}
