//! `seal`: the native half of `cargo xtask bench search`.
//!
//! Seals the dataset into a sealed segment with a fixed seed on every core,
//! as the writer does, and writes its bytes (which the wasm module loads),
//! then searches it natively and writes the results, which the wasm run must
//! reproduce id for id. With `--instant-distance-efs`, it also measures
//! instant-distance's own search on the same data, for the design note: one
//! graph built through instant-distance with owned points, then searched
//! with each ef (set through its serde form, since its API fixes ef at build).
//!
//! usage: seal DATA_DIR OUT_SEGMENT OUT_RESULTS_JSON [--seed N] [--ef-construction N]
//!             [--layer0-links N] [--efs 16,32,...] [--instant-distance-efs 32,64]

// The sealer is a native program; on wasm32 (which `--all-targets` checks)
// the binary only says so.
#[cfg(target_arch = "wasm32")]
fn main() {
    eprintln!("seal is a native program: the writer seals, replicas load");
}

#[cfg(not(target_arch = "wasm32"))]
fn main() -> anyhow::Result<()> {
    native::main()
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::path::PathBuf;
    use std::time::Instant;

    use anyhow::{Context, bail};
    use serde::{Deserialize, Serialize};
    use serde_json::json;
    use tidemark_bench_search::dataset::{f32s, i32s, recall};
    use tidemark_core::vector::topk::Scored;
    use tidemark_core::vector::{BuildOptions, HnswSegment, Metric, Precision, SearchParams};

    const DIM: usize = 384;
    const K: usize = 10;

    struct Args {
        data: PathBuf,
        segment_out: PathBuf,
        results_out: PathBuf,
        seed: u64,
        ef_construction: u32,
        layer0_links: u32,
        efs: Vec<usize>,
        instant_distance_efs: Vec<usize>,
    }

    fn parse_args() -> anyhow::Result<Args> {
        let mut positional = Vec::new();
        let (mut seed, mut ef_construction, mut layer0_links) = (42, 200, 32);
        let (mut efs, mut id_efs) = (vec![16, 32, 64], Vec::new());
        let mut args = std::env::args().skip(1);
        let list = |s: Option<String>| -> anyhow::Result<Vec<usize>> {
            s.context("a list of numbers")?
                .split(',')
                .map(|x| Ok(x.trim().parse()?))
                .collect()
        };
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--seed" => seed = args.next().context("--seed N")?.parse()?,
                "--ef-construction" => {
                    ef_construction = args.next().context("--ef-construction N")?.parse()?
                }
                "--layer0-links" => {
                    layer0_links = args.next().context("--layer0-links N")?.parse()?
                }
                "--efs" => efs = list(args.next())?,
                "--instant-distance-efs" => id_efs = list(args.next())?,
                _ => positional.push(arg),
            }
        }
        let [data, segment_out, results_out] =
            <[String; 3]>::try_from(positional).map_err(|_| {
                anyhow::anyhow!("usage: seal DATA_DIR OUT_SEGMENT OUT_RESULTS_JSON [options]")
            })?;
        Ok(Args {
            data: data.into(),
            segment_out: segment_out.into(),
            results_out: results_out.into(),
            seed,
            ef_construction,
            layer0_links,
            efs,
            instant_distance_efs: id_efs,
        })
    }

    pub fn main() -> anyhow::Result<()> {
        let args = parse_args()?;
        let read = |name: &str| {
            std::fs::read(args.data.join(name))
                .with_context(|| format!("reading {}", args.data.join(name).display()))
        };
        let base = f32s(&read("base.f32")?);
        let queries = f32s(&read("queries.f32")?);
        let truth = i32s(&read("gt.i32")?);
        if !base.len().is_multiple_of(DIM)
            || !queries.len().is_multiple_of(DIM)
            || truth.len() != queries.len() / DIM * K
        {
            bail!("the dataset is not {DIM}-d with top-{K} ground truth");
        }
        let records: Vec<(String, Vec<f32>)> = base
            .chunks_exact(DIM)
            .enumerate()
            .map(|(i, v)| (i.to_string(), v.to_vec()))
            .collect();
        println!(
            "seal: {} × {DIM} vectors, seed {}, ef_construction {}, {} build threads",
            records.len(),
            args.seed,
            args.ef_construction,
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        let options = BuildOptions {
            seed: args.seed,
            ef_construction: args.ef_construction,
            layer0_links: args.layer0_links,
        };
        let started = Instant::now();
        let segment = HnswSegment::build(Metric::Cosine, DIM, &records, options)?;
        let build_s = started.elapsed().as_secs_f64();
        let bytes = segment.to_bytes();
        std::fs::write(&args.segment_out, &bytes)?;
        println!("seal: built in {build_s:.1} s, {} bytes", bytes.len());

        let queries: Vec<Vec<f32>> = queries
            .chunks_exact(DIM)
            .map(|q| Metric::Cosine.prepare(q))
            .collect();
        // The wasm module searches the same bytes in these precisions; it must
        // return exactly these ids.
        let mut native = serde_json::Map::new();
        for precision in ["f32", "int8-rerank"] {
            let mut searched = segment.clone();
            if precision == "int8-rerank" {
                searched.set_precision(Precision::Int8Rerank);
            }
            for &ef in &args.efs {
                let started = Instant::now();
                let found: Vec<Vec<u32>> = queries
                    .iter()
                    .map(|q| {
                        rows(
                            &searched,
                            searched.search(q, SearchParams { k: K, ef }, |_| true),
                        )
                    })
                    .collect();
                let qps = queries.len() as f64 / started.elapsed().as_secs_f64();
                let r = mean_recall(&found, &truth);
                println!(
                    "seal: native {precision} layer walk, ef {ef}: recall@10 {r:.3}, {qps:.0} queries/s"
                );
                native.insert(
                    format!("{precision}/{ef}"),
                    json!({"recall": r, "qps": qps, "ids": found}),
                );
            }
        }
        let exact: Vec<Vec<u32>> = queries
            .iter()
            .map(|q| rows(&segment, segment.scan(q, K, |_| true)))
            .collect();

        let instant_distance = if args.instant_distance_efs.is_empty() {
            serde_json::Value::Null
        } else {
            measure_instant_distance(&records, &queries, &truth, &args)?
        };
        let results = json!({
            "seed": args.seed,
            "ef_construction": args.ef_construction,
            "layer0_links": args.layer0_links,
            "build_s": build_s,
            "segment_bytes": bytes.len(),
            "memory_bytes": segment.memory_bytes(),
            "native": native,
            "exact": exact,
            "instant_distance": instant_distance,
        });
        std::fs::write(&args.results_out, serde_json::to_vec(&results)?)?;
        Ok(())
    }

    fn rows(segment: &HnswSegment, found: Vec<Scored>) -> Vec<u32> {
        found
            .iter()
            .map(|s| segment.id(s.index).parse().expect("row ids"))
            .collect()
    }

    fn mean_recall(found: &[Vec<u32>], truth: &[i32]) -> f64 {
        found
            .iter()
            .zip(truth.chunks_exact(K))
            .map(|(f, t)| recall(f, t, K))
            .sum::<f64>()
            / found.len() as f64
    }

    /// instant-distance's own build and search, with owned points whose
    /// distance is core's SIMD kernel: what "using it as designed" gives.
    #[derive(Clone, Serialize, Deserialize)]
    struct Owned(Vec<f32>);

    impl instant_distance::Point for Owned {
        fn distance(&self, other: &Self) -> f32 {
            Metric::Cosine.distance(&self.0, &other.0)
        }
    }

    fn measure_instant_distance(
        records: &[(String, Vec<f32>)],
        queries: &[Vec<f32>],
        truth: &[i32],
        args: &Args,
    ) -> anyhow::Result<serde_json::Value> {
        let points: Vec<Owned> = records.iter().map(|(_, v)| Owned(v.clone())).collect();
        let started = Instant::now();
        let (hnsw, ids) = instant_distance::Builder::default()
            .seed(args.seed)
            .ef_construction(args.ef_construction as usize)
            .build_hnsw(points);
        let build_s = started.elapsed().as_secs_f64();
        let mut row_of = vec![0u32; ids.len()];
        for (row, pid) in ids.iter().enumerate() {
            // PointId serializes as its number; it has no public accessor.
            let point: usize = serde_json::to_value(pid)?.as_u64().context("point id")? as usize;
            row_of[point] = row as u32;
        }
        let mut form = serde_json::to_value(&hnsw)?;
        drop(hnsw);
        let mut out = serde_json::Map::new();
        for &ef in &args.instant_distance_efs {
            form["ef_search"] = json!(ef);
            let hnsw: instant_distance::Hnsw<Owned> = serde_json::from_value(form.clone())?;
            let mut search = instant_distance::Search::default();
            let started = Instant::now();
            let found: Vec<Vec<instant_distance::PointId>> = queries
                .iter()
                .map(|q| {
                    hnsw.search(&Owned(q.clone()), &mut search)
                        .take(K)
                        .map(|item| item.pid)
                        .collect()
                })
                .collect();
            let qps = queries.len() as f64 / started.elapsed().as_secs_f64();
            let found: Vec<Vec<u32>> = found
                .iter()
                .map(|pids| {
                    pids.iter()
                        .map(|pid| {
                            let point = serde_json::to_value(pid).ok().and_then(|v| v.as_u64());
                            row_of[point.unwrap_or(0) as usize]
                        })
                        .collect()
                })
                .collect();
            let r = mean_recall(&found, truth);
            println!(
                "seal: instant-distance's own search ef {ef}: recall@10 {r:.3}, {qps:.0} queries/s"
            );
            out.insert(ef.to_string(), json!({"recall": r, "qps": qps}));
        }
        Ok(json!({"build_s": build_s, "search": out}))
    }
}
