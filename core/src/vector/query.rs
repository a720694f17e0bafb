//! A vector query and its answer, shared by every segment and shard.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::filter::{Filter, FilterError};
use super::metric::{Metric, VectorError};

/// Largest k a query may ask for: results are merged across shards in
/// memory, and an edge answers within an isolate's budget.
pub const MAX_K: usize = 1000;
/// Largest beam width a query may ask for.
pub const MAX_EF: usize = 4096;
/// The default recall/speed knob: recall@10 ≈ 0.99 on 384-d text embeddings.
pub const DEFAULT_EF: usize = 64;

/// How a query searches the sealed segment (the fresh segment is always exact).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// HNSW with a per-query beam width: larger `ef`, higher recall, slower.
    Approximate { ef: usize },
    /// Every live point is compared: exact top-k.
    Exact,
}

impl Default for Mode {
    fn default() -> Self {
        Mode::Approximate { ef: DEFAULT_EF }
    }
}

#[derive(Clone, Debug)]
pub struct Query<'a> {
    pub vector: &'a [f32],
    pub k: usize,
    pub mode: Mode,
    pub filter: Option<&'a Filter>,
}

impl<'a> Query<'a> {
    pub fn new(vector: &'a [f32], k: usize) -> Self {
        Self {
            vector,
            k,
            mode: Mode::default(),
            filter: None,
        }
    }

    pub fn exact(mut self) -> Self {
        self.mode = Mode::Exact;
        self
    }

    pub fn ef(mut self, ef: usize) -> Self {
        self.mode = Mode::Approximate { ef };
        self
    }

    pub fn filter(mut self, filter: &'a Filter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// The checks every query passes before it touches an index.
    pub fn validate(&self, metric: Metric, dim: usize) -> Result<(), QueryError> {
        metric.validate(self.vector, dim)?;
        if self.k == 0 || self.k > MAX_K {
            return Err(QueryError::BadK(self.k));
        }
        if let Mode::Approximate { ef } = self.mode
            && (ef == 0 || ef > MAX_EF)
        {
            return Err(QueryError::BadEf(ef));
        }
        if let Some(filter) = self.filter {
            filter.validate()?;
        }
        Ok(())
    }
}

/// One result: a record and its distance to the query (smaller is closer:
/// `-dot` for cosine and dot, squared L2 for l2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    pub id: String,
    pub distance: f32,
}

#[derive(Debug, Clone, PartialEq, Error)]
pub enum QueryError {
    #[error(transparent)]
    Vector(#[from] VectorError),
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error("k must be 1..={MAX_K}, not {0}")]
    BadK(usize),
    #[error("ef must be 1..={MAX_EF}, not {0}")]
    BadEf(usize),
}
