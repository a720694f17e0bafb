//! Idempotent provisioning: check, and install only what is missing.
//!
//! Each install says what it installs and why before it starts, since some
//! take minutes (wasm-bindgen-cli, worker-build and wasm-pack are compiled
//! from crates.io: ~25 minutes together on two cores, once per machine).
//! Checks are cheap, so every `cargo xtask` command runs them all.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail, ensure};

use crate::toolchain::{self, Toolchain, WASM_TARGET};

/// Debian packages, with the reason each is needed.
const DEBIAN_PACKAGES: &[(&str, &str)] = &[
    ("rustc-web", "the compiler for host and wasm builds"),
    ("cargo-web", "its cargo"),
    (
        "rust-web-src",
        "standard library sources, to build the wasm32 std offline",
    ),
    ("rust-web-clippy", "clippy for that compiler"),
    ("rustfmt-web", "rustfmt for that compiler"),
    ("lld-22", "rust-lld, the wasm linker"),
    ("chromium", "headless browser tests of the SDK"),
    ("chromium-driver", "WebDriver for those tests"),
    (
        "postgresql",
        "PostgreSQL server binaries for the scale-out suites",
    ),
];

/// Rust tools installed with `cargo install --root <cache>/tools`.
struct CargoTool {
    krate: &'static str,
    bins: &'static [&'static str],
    /// `--locked` where the crate's lockfile builds offline; wasm-bindgen-cli's
    /// does not ("failed to select a version for webpki-roots").
    locked: bool,
}

pub fn all(toolchain: &Toolchain) -> anyhow::Result<()> {
    node()?;
    debian_packages()?;
    wasm_std(toolchain)?;
    let wasm_bindgen = toolchain.wasm_bindgen_version.clone();
    let tools = [
        (
            CargoTool {
                krate: "wasm-bindgen-cli",
                bins: &["wasm-bindgen", "wasm-bindgen-test-runner"],
                locked: false,
            },
            wasm_bindgen.as_str(),
        ),
        (
            CargoTool {
                krate: "worker-build",
                bins: &["worker-build"],
                locked: true,
            },
            toolchain::WORKER_BUILD_VERSION,
        ),
        (
            CargoTool {
                krate: "wasm-pack",
                bins: &["wasm-pack"],
                locked: false,
            },
            toolchain::WASM_PACK_VERSION,
        ),
    ];
    for (tool, version) in &tools {
        cargo_tool(toolchain, tool, version)?;
    }
    node_packages(toolchain)?;
    Ok(())
}

fn node() -> anyhow::Result<()> {
    let out = Command::new("node").arg("--version").output().context(
        "node is not installed: Tidemark needs node >= 20 (Debian: apt-get install nodejs)",
    )?;
    let version = String::from_utf8_lossy(&out.stdout);
    let major: u32 = version
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .unwrap_or("0")
        .parse()?;
    ensure!(
        major >= 20,
        "node {} is too old: Tidemark needs node >= 20",
        version.trim()
    );
    Ok(())
}

fn debian_packages() -> anyhow::Result<()> {
    let missing: Vec<&(&str, &str)> = DEBIAN_PACKAGES
        .iter()
        .filter(|(name, _)| !dpkg_installed(name))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    for (name, why) in &missing {
        println!("provision: installing Debian package {name} ({why})");
    }
    let names: Vec<&str> = missing.iter().map(|(name, _)| *name).collect();
    run(privileged("apt-get")?.args(["update", "-q"]))?;
    run(privileged("apt-get")?
        .args(["install", "-y", "-q"])
        .args(&names)
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    Ok(())
}

fn dpkg_installed(name: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", name])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

/// `program` as root: directly when we are root, else through `sudo -n`.
fn privileged(program: &str) -> anyhow::Result<Command> {
    let uid = Command::new("id").arg("-u").output()?;
    if String::from_utf8_lossy(&uid.stdout).trim() == "0" {
        return Ok(Command::new(program));
    }
    if Command::new("sudo")
        .args(["-n", "true"])
        .status()
        .is_ok_and(|s| s.success())
    {
        let mut cmd = Command::new("sudo");
        cmd.args(["-n", program]);
        return Ok(cmd);
    }
    bail!(
        "installing system packages needs root or passwordless sudo; run `sudo cargo xtask setup` once"
    )
}

/// The wasm32 standard library for Debian's rustc, built once from the
/// vendored sources Debian ships and installed into the compiler's sysroot,
/// which is what `rustup target add` would do. A stamp records the exact
/// compiler it was built by: a std from another rustc fails with E0514, so an
/// upgrade of rustc-web triggers a rebuild.
fn wasm_std(toolchain: &Toolchain) -> anyhow::Result<()> {
    let libdir = PathBuf::from(format!("/usr/lib/rustlib/{WASM_TARGET}/lib"));
    let stamp = libdir.join(".tidemark-std-stamp");
    let compiler = capture(Command::new(toolchain::RUSTC).arg("-vV"))?;
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == compiler) {
        return Ok(());
    }
    println!(
        "provision: building the {WASM_TARGET} standard library from rust-web-src (about a minute)"
    );
    let work = toolchain.cache.join("std-build");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(work.join("src"))?;
    std::fs::write(
        work.join("Cargo.toml"),
        "[package]\nname = \"std-probe\"\nversion = \"0.0.0\"\nedition = \"2021\"\n[workspace]\n",
    )?;
    std::fs::write(work.join("src/lib.rs"), "")?;
    let vendor = "/usr/lib/rustlib/src/rust/library/vendor";
    run(toolchain
        .cargo()
        .current_dir(&work)
        .env("CARGO_TARGET_DIR", work.join("target"))
        .env("RUSTC_BOOTSTRAP", "1")
        // Without bitcode, a later `lto = true` build fails ("Can't find section .llvmbc").
        .env("RUSTFLAGS", "-Cembed-bitcode=yes")
        .args(["build", "--offline", "--release", "--target", WASM_TARGET])
        .args(["-Zbuild-std=std,panic_abort,test"])
        .args(["--config", "source.crates-io.replace-with=\"vendored-std\""])
        .args([
            "--config",
            &format!("source.vendored-std.directory=\"{vendor}\""),
        ]))?;
    let deps = work.join(format!("target/{WASM_TARGET}/release/deps"));
    // Old rlibs next to new ones give E0464 ("multiple candidates for std").
    run(privileged("rm")?.arg("-rf").arg(&libdir))?;
    run(privileged("mkdir")?.arg("-p").arg(&libdir))?;
    let rlibs: Vec<PathBuf> = std::fs::read_dir(&deps)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "rlib"))
        .filter(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("libstd_probe"))
        })
        .collect();
    ensure!(
        rlibs
            .iter()
            .any(|p| p.to_string_lossy().contains("libstd-")),
        "build-std produced no libstd"
    );
    run(privileged("cp")?.args(&rlibs).arg(&libdir))?;
    let stamp_tmp = work.join("stamp");
    std::fs::write(&stamp_tmp, &compiler)?;
    run(privileged("cp")?.arg(&stamp_tmp).arg(&stamp))?;
    println!(
        "provision: installed {} std rlibs into {}",
        rlibs.len(),
        libdir.display()
    );
    Ok(())
}

fn cargo_tool(toolchain: &Toolchain, tool: &CargoTool, version: &str) -> anyhow::Result<()> {
    let present = tool.bins.iter().all(|bin| {
        Command::new(toolchain.tool(bin))
            .arg("--version")
            .output()
            .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains(version))
    });
    if present {
        return Ok(());
    }
    println!(
        "provision: installing {} {version} into {} (compiled from crates.io: several minutes, once)",
        tool.krate,
        toolchain.tools_root().display()
    );
    let mut cmd = toolchain.cargo();
    cmd.args([
        "install",
        tool.krate,
        "--version",
        version,
        "--force",
        "--root",
    ])
    .arg(toolchain.tools_root())
    // One build dir for all tools: they share many dependencies.
    .env("CARGO_TARGET_DIR", toolchain.cache.join("install-target"));
    if tool.locked {
        cmd.arg("--locked");
    }
    run(&mut cmd)
}

/// The node packages of `package.json` (wrangler, miniflare, esbuild,
/// playwright-core), installed from the lockfile into the cache and linked as
/// the clone's `node_modules`.
fn node_packages(toolchain: &Toolchain) -> anyhow::Result<()> {
    node_packages_in(toolchain, Path::new(""), NodeScripts::Run)?;
    Ok(())
}

/// Whether `npm ci` runs the packages' install scripts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum NodeScripts {
    Run,
    /// For packages whose scripts download things (node headers for native
    /// addons): the caller builds what it needs offline afterwards.
    Skip,
}

/// The node packages of `<dir>/package.json`, installed with `npm ci` from
/// `<dir>/package-lock.json` into the cache under a key of both files'
/// content (a fresh clone on the same machine reuses the install), and
/// linked as `<dir>/node_modules`. Returns the installed `node_modules`.
pub fn node_packages_in(
    toolchain: &Toolchain,
    dir: &Path,
    scripts: NodeScripts,
) -> anyhow::Result<PathBuf> {
    let project = toolchain.repo.join(dir);
    let lock = std::fs::read(project.join("package-lock.json"))
        .with_context(|| format!("{}/package-lock.json is missing", project.display()))?;
    let manifest = std::fs::read(project.join("package.json"))?;
    let key = format!("{:016x}", fnv1a64(&[&manifest, &lock]));
    let cached = toolchain.cache.join("node").join(&key);
    let installed = cached.join("node_modules");
    let marker = cached.join(".complete");
    if !marker.exists() {
        println!(
            "provision: installing node packages from {} into {}",
            dir.join("package-lock.json").display(),
            cached.display()
        );
        let _ = std::fs::remove_dir_all(&cached);
        std::fs::create_dir_all(&cached)?;
        std::fs::write(cached.join("package.json"), &manifest)?;
        std::fs::write(cached.join("package-lock.json"), &lock)?;
        let mut npm = Command::new("npm");
        npm.args(["ci", "--no-audit", "--no-fund", "--loglevel=error"]);
        if scripts == NodeScripts::Skip {
            npm.arg("--ignore-scripts");
        }
        run(npm.current_dir(&cached).env("NO_UPDATE_NOTIFIER", "1"))?;
        std::fs::write(&marker, "")?;
    }
    link_node_modules(&project.join("node_modules"), &installed)?;
    Ok(installed)
}

fn link_node_modules(link: &Path, target: &Path) -> anyhow::Result<()> {
    match std::fs::read_link(link) {
        Ok(current) if current == target => return Ok(()),
        Ok(_) => std::fs::remove_file(link)?,
        Err(_) if link.is_dir() => {
            println!(
                "provision: replacing {} with a link to the cached packages",
                link.display()
            );
            std::fs::remove_dir_all(link)?;
        }
        Err(_) => {}
    }
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("linking {} to {}", link.display(), target.display()))
}

/// A cache key, not a security boundary: a collision reuses an install.
pub fn fnv1a64(parts: &[&[u8]]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for byte in parts.iter().flat_map(|p| p.iter()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    ensure!(status.success(), "{} failed ({status})", describe(cmd));
    Ok(())
}

pub fn capture(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("starting {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{} failed ({})",
        describe(cmd),
        out.status
    );
    Ok(String::from_utf8(out.stdout)?)
}

pub fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
