//! An ordered list of steps that stops at the first failure and ends with a
//! summary of what ran, how long it took, and what did not run.

use std::process::ExitCode;
use std::time::{Duration, Instant};

enum Outcome {
    Passed,
    Failed(String),
    NotRun,
    Filtered,
}

pub struct Pipeline {
    title: &'static str,
    results: Vec<(String, Duration, Outcome)>,
    /// `TIDEMARK_ONLY`: run only steps whose names contain it.
    only: Option<String>,
    started: Instant,
}

impl Pipeline {
    pub fn new(title: &'static str) -> Self {
        let only = std::env::var("TIDEMARK_ONLY")
            .ok()
            .filter(|s| !s.is_empty());
        Self {
            title,
            results: Vec::new(),
            only,
            started: Instant::now(),
        }
    }

    fn failed(&self) -> bool {
        self.results
            .iter()
            .any(|(_, _, o)| matches!(o, Outcome::Failed(_)))
    }

    pub fn step(&mut self, name: &str, body: impl FnOnce() -> anyhow::Result<()>) {
        let outcome = if self.failed() {
            Outcome::NotRun
        } else if self
            .only
            .as_ref()
            .is_some_and(|only| !name.contains(only.as_str()))
        {
            Outcome::Filtered
        } else {
            println!("\n==> {}: {name}", self.title);
            let started = Instant::now();
            let outcome = match body() {
                Ok(()) => Outcome::Passed,
                Err(err) => Outcome::Failed(format!("{err:#}")),
            };
            self.results
                .push((name.to_string(), started.elapsed(), outcome));
            return;
        };
        self.results
            .push((name.to_string(), Duration::ZERO, outcome));
    }

    pub fn finish(self) -> ExitCode {
        println!(
            "\n{} summary ({:.0} s in all):",
            self.title,
            self.started.elapsed().as_secs_f64()
        );
        let (mut passed, mut failed) = (0, 0);
        for (name, took, outcome) in &self.results {
            let (mark, note) = match outcome {
                Outcome::Passed => {
                    passed += 1;
                    ("ok  ", format!("{:>6.1} s", took.as_secs_f64()))
                }
                Outcome::Failed(why) => {
                    failed += 1;
                    ("FAIL", format!("{:>6.1} s  {why}", took.as_secs_f64()))
                }
                Outcome::NotRun => ("--  ", "not run (an earlier step failed)".to_string()),
                Outcome::Filtered => ("--  ", "skipped (TIDEMARK_ONLY)".to_string()),
            };
            println!("  {mark} {name:<34} {note}");
        }
        println!("steps: {passed} passed, {failed} failed");
        if failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    }
}
