//! The embedded default store: one SQLite database per writer.
//!
//! WAL mode lets readers run beside the single committer without blocking
//! it; `synchronous = FULL` makes every commit fsync the WAL before it
//! returns, which is what lets the writer acknowledge right after `commit`.
//! (`NORMAL` would only fsync at checkpoints: a power cut could lose
//! acknowledged writes.)

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::{CollectionRow, LogRow, ShardKey, SnapshotRow, Store, StoreError, WriteSet};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS collections (
    namespace TEXT NOT NULL,
    name      TEXT NOT NULL,
    schema    BLOB NOT NULL,
    PRIMARY KEY (namespace, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS log (
    namespace  TEXT    NOT NULL,
    collection TEXT    NOT NULL,
    shard      INTEGER NOT NULL,
    offset     INTEGER NOT NULL,
    entry      BLOB    NOT NULL,
    PRIMARY KEY (namespace, collection, shard, offset)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshots (
    namespace  TEXT    NOT NULL,
    collection TEXT    NOT NULL,
    shard      INTEGER NOT NULL,
    offset     INTEGER NOT NULL,
    body       BLOB    NOT NULL,
    PRIMARY KEY (namespace, collection, shard)
) WITHOUT ROWID;
";

pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed) `dir/tidemark.db` for writing.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Backend(format!("creating {}: {e}", dir.display())))?;
        let path = dir.join("tidemark.db");
        let conn = Connection::open(&path).map_err(backend)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(backend)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(backend)?;
        // Checkpoints copy the WAL into the database; a bigger WAL means fewer,
        // larger checkpoints under sustained ingest.
        conn.pragma_update(None, "wal_autocheckpoint", 4096)
            .map_err(backend)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(backend)?;
        conn.execute_batch(SCHEMA).map_err(backend)?;
        Ok(Self { conn, path })
    }

    /// Another connection to the same database, read-only, for serving reads
    /// next to the committer.
    pub fn reader(&self) -> Result<Self, StoreError> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(backend)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(backend)?;
        Ok(Self {
            conn,
            path: self.path.clone(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn backend(err: rusqlite::Error) -> StoreError {
    StoreError::Backend(err.to_string())
}

fn to_i64(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value)
        .map_err(|_| StoreError::Corrupt(format!("{value} does not fit SQLite's INTEGER")))
}

impl Store for SqliteStore {
    fn commit(&mut self, set: &WriteSet) -> Result<(), StoreError> {
        let tx = self.conn.transaction().map_err(backend)?;
        {
            let mut put_collection = tx
                .prepare_cached("INSERT OR REPLACE INTO collections (namespace, name, schema) VALUES (?1, ?2, ?3)")
                .map_err(backend)?;
            for c in &set.collections {
                put_collection
                    .execute(params![c.namespace, c.name, c.schema])
                    .map_err(backend)?;
            }
            // Plain INSERT: an existing (shard, offset) is a fencing failure,
            // never something to overwrite.
            let mut append = tx
                .prepare_cached(
                    "INSERT INTO log (namespace, collection, shard, offset, entry) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(backend)?;
            for row in &set.log {
                let offset = to_i64(row.offset)?;
                let result = append.execute(params![
                    row.shard.namespace,
                    row.shard.collection,
                    row.shard.shard,
                    offset,
                    row.entry
                ]);
                match result {
                    Ok(_) => {}
                    Err(rusqlite::Error::SqliteFailure(e, _))
                        if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
                    {
                        return Err(StoreError::OffsetTaken {
                            shard: row.shard.clone(),
                            offset: row.offset,
                        });
                    }
                    Err(e) => return Err(backend(e)),
                }
            }
            let mut put_snapshot = tx
                .prepare_cached(
                    // The newest snapshot wins: a seal that finishes after a
                    // later one (the background task beside an admin's) must
                    // not put the shard's snapshot back.
                    "INSERT INTO snapshots (namespace, collection, shard, offset, body)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (namespace, collection, shard) DO UPDATE
                     SET offset = excluded.offset, body = excluded.body
                     WHERE excluded.offset >= snapshots.offset",
                )
                .map_err(backend)?;
            for s in &set.snapshots {
                put_snapshot
                    .execute(params![
                        s.shard.namespace,
                        s.shard.collection,
                        s.shard.shard,
                        to_i64(s.offset)?,
                        s.body
                    ])
                    .map_err(backend)?;
            }
        }
        tx.commit().map_err(backend)
    }

    fn collections(&self) -> Result<Vec<CollectionRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT namespace, name, schema FROM collections ORDER BY namespace, name",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(CollectionRow {
                    namespace: r.get(0)?,
                    name: r.get(1)?,
                    schema: r.get(2)?,
                })
            })
            .map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)
    }

    fn head(&self, shard: &ShardKey) -> Result<u64, StoreError> {
        let last: Option<i64> = self
            .conn
            .prepare_cached("SELECT MAX(offset) FROM log WHERE namespace = ?1 AND collection = ?2 AND shard = ?3")
            .map_err(backend)?
            .query_row(params![shard.namespace, shard.collection, shard.shard], |r| r.get(0))
            .map_err(backend)?;
        match last {
            None => Ok(0),
            Some(last) => u64::try_from(last)
                .map(|l| l + 1)
                .map_err(|_| StoreError::Corrupt(format!("negative log offset {last}"))),
        }
    }

    fn log_range(
        &self,
        shard: &ShardKey,
        from: u64,
        to: u64,
        max_bytes: usize,
    ) -> Result<Vec<LogRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT offset, entry FROM log
                 WHERE namespace = ?1 AND collection = ?2 AND shard = ?3 AND offset >= ?4 AND offset < ?5
                 ORDER BY offset",
            )
            .map_err(backend)?;
        let mut rows = stmt
            .query(params![
                shard.namespace,
                shard.collection,
                shard.shard,
                to_i64(from)?,
                to_i64(to)?
            ])
            .map_err(backend)?;
        let mut out = Vec::new();
        let mut total = 0usize;
        while let Some(row) = rows.next().map_err(backend)? {
            let offset: i64 = row.get(0).map_err(backend)?;
            let entry: Vec<u8> = row.get(1).map_err(backend)?;
            if !out.is_empty() && total + entry.len() > max_bytes {
                break;
            }
            total += entry.len();
            let offset = u64::try_from(offset)
                .map_err(|_| StoreError::Corrupt(format!("log offset {offset}")))?;
            out.push(LogRow {
                shard: shard.clone(),
                offset,
                entry,
            });
        }
        Ok(out)
    }

    fn latest_snapshot(&self, shard: &ShardKey) -> Result<Option<SnapshotRow>, StoreError> {
        let row: Option<(i64, Vec<u8>)> = self
            .conn
            .prepare_cached(
                "SELECT offset, body FROM snapshots WHERE namespace = ?1 AND collection = ?2 AND shard = ?3",
            )
            .map_err(backend)?
            .query_row(params![shard.namespace, shard.collection, shard.shard], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(backend)?;
        row.map(|(offset, body)| {
            let offset = u64::try_from(offset)
                .map_err(|_| StoreError::Corrupt(format!("snapshot offset {offset}")))?;
            Ok(SnapshotRow {
                shard: shard.clone(),
                offset,
                body,
            })
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(n: u32) -> ShardKey {
        ShardKey {
            namespace: "acme".into(),
            collection: "notes".into(),
            shard: n,
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("tidemark-sqlite-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn entry(shard_n: u32, offset: u64) -> LogRow {
        LogRow {
            shard: shard(shard_n),
            offset,
            entry: format!("entry-{shard_n}-{offset}").into_bytes(),
        }
    }

    #[test]
    fn commits_survive_reopening() {
        let dir = temp_dir("reopen");
        {
            let mut store = SqliteStore::open(&dir).unwrap();
            let set = WriteSet {
                collections: vec![CollectionRow {
                    namespace: "acme".into(),
                    name: "notes".into(),
                    schema: b"{}".to_vec(),
                }],
                log: vec![entry(0, 0), entry(0, 1), entry(1, 0)],
                snapshots: vec![SnapshotRow {
                    shard: shard(0),
                    offset: 1,
                    body: vec![9],
                }],
            };
            store.commit(&set).unwrap();
        }
        let store = SqliteStore::open(&dir).unwrap();
        assert_eq!(store.collections().unwrap().len(), 1);
        assert_eq!(store.head(&shard(0)).unwrap(), 2);
        assert_eq!(store.head(&shard(1)).unwrap(), 1);
        assert_eq!(store.head(&shard(7)).unwrap(), 0);
        assert_eq!(store.latest_snapshot(&shard(0)).unwrap().unwrap().offset, 1);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn an_older_snapshot_never_replaces_a_newer_one() {
        let dir = temp_dir("newest");
        let mut store = SqliteStore::open(&dir).unwrap();
        for (offset, byte) in [(5, 1), (3, 2), (5, 3), (8, 4)] {
            store
                .commit(&WriteSet {
                    snapshots: vec![SnapshotRow {
                        shard: shard(0),
                        offset,
                        body: vec![byte],
                    }],
                    ..WriteSet::default()
                })
                .unwrap();
            let latest = store.latest_snapshot(&shard(0)).unwrap().unwrap();
            let expected = match offset {
                3 => (5, vec![1]),
                _ => (offset, vec![byte]),
            };
            assert_eq!((latest.offset, latest.body), expected);
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_taken_offset_fails_the_whole_commit() {
        let dir = temp_dir("fence");
        let mut store = SqliteStore::open(&dir).unwrap();
        store
            .commit(&WriteSet {
                log: vec![entry(0, 0)],
                ..WriteSet::default()
            })
            .unwrap();
        let clash = WriteSet {
            log: vec![entry(0, 1), entry(0, 0)],
            ..WriteSet::default()
        };
        match store.commit(&clash) {
            Err(StoreError::OffsetTaken { offset: 0, .. }) => {}
            other => panic!("expected OffsetTaken, got {other:?}"),
        }
        // Nothing of the failed commit is visible: offset 1 was rolled back.
        assert_eq!(store.head(&shard(0)).unwrap(), 1);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn log_ranges_are_bounded_and_ordered() {
        let dir = temp_dir("range");
        let mut store = SqliteStore::open(&dir).unwrap();
        let log: Vec<LogRow> = (0..10).map(|o| entry(0, o)).collect();
        store
            .commit(&WriteSet {
                log,
                ..WriteSet::default()
            })
            .unwrap();
        let reader = store.reader().unwrap();
        let offsets = |rows: Vec<LogRow>| rows.into_iter().map(|r| r.offset).collect::<Vec<_>>();
        assert_eq!(
            offsets(reader.log_range(&shard(0), 3, 6, usize::MAX).unwrap()),
            vec![3, 4, 5]
        );
        // Each entry is 11 bytes: a 25-byte budget yields two, a tiny one still one.
        assert_eq!(
            offsets(reader.log_range(&shard(0), 0, 10, 25).unwrap()),
            vec![0, 1]
        );
        assert_eq!(
            offsets(reader.log_range(&shard(0), 8, 100, 1).unwrap()),
            vec![8]
        );
        assert!(
            reader
                .log_range(&shard(0), 10, 20, usize::MAX)
                .unwrap()
                .is_empty()
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
