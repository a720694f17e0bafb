//! A shard's whole log, read back through the API the way a replica reads
//! it, and checked on the way: every range is signed by the writer, starts
//! where it was asked to, and its entries' offsets follow one another from 0
//! up to the head without a gap.

use anyhow::{Context, bail, ensure};
use ed25519_dalek::VerifyingKey;
use tidemark_core::limits::Limits;
use tidemark_core::log::LogEntry;
use tidemark_core::wire::{self, Message};

use crate::client::WriterClient;

/// Ranges asked for at most per request: several requests per shard once
/// the log grows, so the paging itself is exercised.
const PAGE: u64 = 1024;

/// Entries `[0, head)` of `shard`, verified; `head` as the writer reports it.
pub fn read_log(
    client: &WriterClient,
    key: &VerifyingKey,
    collection: &str,
    shard: u32,
) -> anyhow::Result<Vec<LogEntry>> {
    let head = client.head(collection, shard)?;
    let limits = Limits::default();
    let mut entries = Vec::with_capacity(head as usize);
    // At most one request per entry: the loop ends even if the writer
    // answered short ranges forever.
    for _ in 0..=head {
        let from = entries.len() as u64;
        if from >= head {
            break;
        }
        let to = (from + PAGE).min(head);
        let frame = client.log_range(collection, shard, from, to)?;
        let range = match wire::decode_verified(&frame, key, &limits)
            .with_context(|| format!("shard {shard} log [{from}, {to})"))?
        {
            Message::LogRange(range) => range,
            other => bail!("log [{from}, {to}) answered another message: {other:?}"),
        };
        ensure!(
            range.shard.0 == shard && range.collection.collection.as_str() == collection,
            "log [{from}, {to}) of shard {shard} answered for {:?}/{}",
            range.collection,
            range.shard.0
        );
        ensure!(
            range.from.0 == from,
            "asked for the log from {from}, got a range from {}",
            range.from.0
        );
        ensure!(
            !range.entries.is_empty(),
            "shard {shard}: empty range at {from} below head {head}"
        );
        for (i, entry) in range.entries.into_iter().enumerate() {
            ensure!(
                entry.offset.0 == from + i as u64,
                "shard {shard}: entry at position {} has offset {}",
                from + i as u64,
                entry.offset.0
            );
            entries.push(entry);
        }
    }
    ensure!(
        entries.len() as u64 == head,
        "shard {shard}: read {} entries, head is {head}",
        entries.len()
    );
    Ok(entries)
}
