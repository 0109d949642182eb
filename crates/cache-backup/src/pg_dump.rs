//! The PostgreSQL cache table: schema (columns, defaults, keys, indexes) as SQL, and data as
//! `COPY ... TO STDOUT`, streamed through gzip; put back with `COPY ... FROM STDIN`.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{Context as _, bail};
use cache_core::clients::postgres::quote_ident;
use futures::{SinkExt, StreamExt};
use tokio_postgres::Client;

use cache_core::archive::GzFile;

use crate::redis_dump::Gzip;

/// The `CREATE TABLE` and `CREATE INDEX` statements that rebuild `table`.
pub async fn schema_sql(db: &Client, table: &str) -> anyhow::Result<String> {
    let columns: Option<String> = db
        .query_one(
            "SELECT string_agg(format('%I %s%s%s', a.attname, format_type(a.atttypid, a.atttypmod),
                      CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END,
                      CASE WHEN d.adbin IS NOT NULL THEN ' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid) ELSE '' END),
                    ', ' ORDER BY a.attnum)
               FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
              WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped",
            &[&table],
        )
        .await?
        .get(0);
    let Some(columns) = columns else { bail!("table `{table}` has no columns") };
    let constraints: Option<String> = db
        .query_one(
            "SELECT string_agg(format('ALTER TABLE %s ADD CONSTRAINT %I %s;', $1::text::regclass, conname,
                                      pg_get_constraintdef(oid)), E'\\n')
               FROM pg_constraint WHERE conrelid = $1::text::regclass AND contype IN ('p', 'u')",
            &[&table],
        )
        .await?
        .get(0);
    let indexes: Option<String> = db
        .query_one(
            "SELECT string_agg(pg_get_indexdef(i.indexrelid) || ';', E'\\n')
               FROM pg_index i
              WHERE i.indrelid = $1::text::regclass
                AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
            &[&table],
        )
        .await?
        .get(0);
    Ok(format!(
        "CREATE TABLE {} ({columns});\n{}\n{}\n",
        quote_ident(table),
        constraints.unwrap_or_default(),
        indexes.unwrap_or_default()
    ))
}

/// Streams `table` as COPY text into the gzip file `out`; returns the rows copied and the
/// file's SHA-256 and size.
pub async fn copy_out(db: &Client, table: &str, out: &Path, gzip: Gzip) -> anyhow::Result<(u64, (String, u64))> {
    let mut writer = GzFile::create(out, gzip.level, gzip.threads)?;
    let stream = db.copy_out(&format!("COPY {} TO STDOUT", quote_ident(table))).await?;
    futures::pin_mut!(stream);
    let mut rows = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        rows += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        tokio::task::block_in_place(|| writer.write_all(&chunk))?;
    }
    let written = tokio::task::block_in_place(|| writer.finish())?;
    Ok((rows, written))
}

/// How rows come back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Empty the table, then load the backup: the table becomes the backup.
    Truncate,
    /// Add the backup's rows that are missing; rows present stay as they are.
    Merge,
}

/// Loads the COPY data in `data` into `table`, creating it from `schema` when it is missing.
/// Runs in one transaction. Returns the rows loaded.
pub async fn restore(db: &mut Client, table: &str, schema: &str, data: &Path, mode: Mode) -> anyhow::Result<u64> {
    let t = quote_ident(table);
    let tx = db.transaction().await?;
    let exists: Option<String> = tx.query_one("SELECT to_regclass($1)::text", &[&table]).await?.get(0);
    if exists.is_none() {
        tx.batch_execute(schema).await.context("creating the table from the backup's schema")?;
    }
    let into = match mode {
        Mode::Truncate => {
            tx.batch_execute(&format!("TRUNCATE {t}")).await?;
            t.clone()
        }
        Mode::Merge => {
            tx.batch_execute(&format!("CREATE TEMP TABLE restore_rows (LIKE {t} INCLUDING DEFAULTS) ON COMMIT DROP"))
                .await?;
            "restore_rows".to_owned()
        }
    };
    let sink = tx.copy_in::<_, bytes::Bytes>(&format!("COPY {into} FROM STDIN")).await?;
    futures::pin_mut!(sink);
    let mut reader = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(std::fs::File::open(data)?));
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = tokio::task::block_in_place(|| reader.read(&mut buf))?;
        if n == 0 {
            break;
        }
        sink.send(bytes::Bytes::copy_from_slice(&buf[..n])).await?;
    }
    let copied = sink.finish().await?;
    let loaded = match mode {
        Mode::Truncate => copied,
        Mode::Merge => {
            tx.execute(&format!("INSERT INTO {t} SELECT * FROM restore_rows ON CONFLICT DO NOTHING"), &[]).await?
        }
    };
    tx.commit().await?;
    Ok(loaded)
}
