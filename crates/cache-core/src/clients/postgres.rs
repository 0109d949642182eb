//! PostgreSQL connections through tokio-postgres (the sync `postgres` crate panics inside
//! tokio), with connect and statement timeouts and optional TLS.

use anyhow::Context as _;
use postgres_native_tls::MakeTlsConnector;
use tokio_postgres::Client;

use crate::config::PostgresTarget;
use crate::error::Unreachable;

/// Connects to `target`: TLS as the URL's `sslmode` asks, `statement_timeout` set to the
/// target's timeout, `application_name` set. Fails with [`Unreachable`] within the connect
/// timeout (plus one statement timeout for the startup exchange).
pub async fn connect(target: &PostgresTarget) -> anyhow::Result<Client> {
    let mut config: tokio_postgres::Config = target
        .url
        .expose()
        .parse()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("invalid PostgreSQL URL for target `{}`: {}", target.name, target.url))?;
    let statement_ms = target.timeout.as_millis();
    let mut options = config.get_options().unwrap_or_default().to_owned();
    options.push_str(&format!(" -c statement_timeout={statement_ms}"));
    config.options(options.trim());
    config.connect_timeout(target.connect_timeout);
    if config.get_application_name().is_none() {
        config.application_name("cache-toolkit");
    }
    let budget = target.connect_timeout + target.timeout;
    let unreachable = |message: String| Unreachable {
        tier: "postgres".into(),
        target: target.name.clone(),
        message: format!("{message} ({})", target.url),
    };
    // TLS only when the connection can use it: never over a Unix socket, not with
    // sslmode=disable. (A URL with both a host name and `?host=/dir` lists two hosts.) The
    // connector comes from a blocking thread, built once per process (clients::tls).
    let connected = match trust_of(target, &config) {
        Some(trust) => {
            let tls = MakeTlsConnector::new(super::tls::connector(&trust).await?);
            tokio::time::timeout(budget, config.connect(tls)).await.map(|r| r.map(|(c, conn)| (c, spawn(conn, target))))
        }
        None => tokio::time::timeout(budget, config.connect(tokio_postgres::NoTls))
            .await
            .map(|r| r.map(|(c, conn)| (c, spawn(conn, target)))),
    };
    match connected {
        Ok(Ok((client, ()))) => Ok(client),
        Ok(Err(e)) => Err(unreachable(error_text(&e)).into()),
        Err(_) => Err(unreachable(format!("no connection within {}", humantime::format_duration(budget))).into()),
    }
}

/// Drives a connection in the background until the client is dropped.
fn spawn<S, T>(connection: tokio_postgres::Connection<S, T>, target: &PostgresTarget)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let name = target.name.clone();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("postgres target `{name}`: connection ended: {}", error_text(&e));
        }
    });
}

/// How a connection to `target` verifies the server, when it uses TLS at all; for callers
/// that build the connectors before timing anything ([`super::tls::prepare`]). `None` for a
/// URL that does not parse.
pub fn trust(target: &PostgresTarget) -> Option<super::tls::Trust> {
    let config: tokio_postgres::Config = target.url.expose().parse().ok()?;
    trust_of(target, &config)
}

fn trust_of(target: &PostgresTarget, config: &tokio_postgres::Config) -> Option<super::tls::Trust> {
    let only_unix = config.get_hosts().iter().all(|h| matches!(h, tokio_postgres::config::Host::Unix(_)));
    let wants_tls = config.get_ssl_mode() != tokio_postgres::config::SslMode::Disable && !only_unix;
    wants_tls.then(|| super::tls::Trust {
        ca_file: target.tls.ca_file.clone(),
        accept_invalid: target.tls.accept_invalid_certs,
    })
}

/// A readable message for a tokio-postgres error: the server's message when there is one.
pub fn error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {} (SQLSTATE {})", db.severity(), db.message(), db.code().code()),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            text
        }
    }
}

/// One index of a table, with the figures its bloat is judged by.
#[derive(Clone, Debug, PartialEq)]
pub struct IndexStat {
    /// Its name, as `regclass` prints it (quoted where needed).
    pub name: String,
    /// Scans since statistics were reset.
    pub scans: i64,
    /// Unique or primary key.
    pub unique: bool,
    /// Backs a constraint (primary key, unique, exclusion) or is the replica identity: never
    /// to be dropped, whatever its scans.
    pub required: bool,
    /// Size on disk.
    pub bytes: i64,
    /// The access method (`btree`...).
    pub method: String,
    /// Estimated bloat in bytes: btree indexes whose columns have statistics only.
    pub bloat_bytes: Option<i64>,
}

/// The indexes of `table` (quoted), biggest first, with [`btree_estimate`]'s bloat.
pub async fn index_stats(db: &Client, table: &str) -> Result<Vec<IndexStat>, tokio_postgres::Error> {
    let rows = db
        .query(
            "SELECT ix.indexrelid::regclass::text, coalesce(s.idx_scan, 0), ix.indisunique OR ix.indisprimary,
                    pg_relation_size(ix.indexrelid), c.reltuples::float8, am.amname,
                    (SELECT sum(st.avg_width)::float8 FROM pg_attribute a
                       JOIN pg_stats st ON st.schemaname = n.nspname AND st.tablename = t.relname
                                       AND st.attname = a.attname
                      WHERE a.attrelid = t.oid AND a.attnum = ANY(ix.indkey::int2[])),
                    current_setting('block_size')::float8,
                    ix.indisreplident OR EXISTS (SELECT 1 FROM pg_constraint co WHERE co.conindid = ix.indexrelid)
               FROM pg_index ix
               JOIN pg_class c ON c.oid = ix.indexrelid
               JOIN pg_class t ON t.oid = ix.indrelid
               JOIN pg_namespace n ON n.oid = t.relnamespace
               JOIN pg_am am ON am.oid = c.relam
               LEFT JOIN pg_stat_user_indexes s ON s.indexrelid = ix.indexrelid
              WHERE ix.indrelid = to_regclass($1)
              ORDER BY 4 DESC, 1",
            &[&table],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let bytes: i64 = r.get(3);
            let (tuples, method, width, block): (f64, String, Option<f64>, f64) =
                (r.get(4), r.get(5), r.get(6), r.get(7));
            let bloat_bytes = width
                .filter(|_| method == "btree" && tuples >= 0.0)
                .map(|w| (bytes as f64 - btree_estimate(tuples, w, block) * block).max(0.0) as i64);
            IndexStat {
                name: r.get(0),
                scans: r.get(1),
                unique: r.get(2),
                required: r.get(8),
                bytes,
                method,
                bloat_bytes,
            }
        })
        .collect())
}

/// How long the current database's statistics have been gathered: since `pg_stat_reset`, or
/// (never reset) at least since the server started.
pub async fn stats_observed(db: &Client) -> Result<std::time::Duration, tokio_postgres::Error> {
    let row = db
        .query_one(
            "SELECT extract(epoch FROM now() - coalesce(
                    (SELECT stats_reset FROM pg_stat_database WHERE datname = current_database()),
                    pg_postmaster_start_time()))::float8",
            &[],
        )
        .await?;
    Ok(std::time::Duration::from_secs_f64(row.get::<_, f64>(0).max(0.0)))
}

/// The one rule for advising that indexes be dropped (health and the optimizer).
#[derive(Debug, PartialEq)]
pub enum UnusedIndexes<'a> {
    /// Never scanned, and droppable: neither unique nor backing a constraint nor the replica
    /// identity (a primary key is never named, whatever its scans).
    Judged(Vec<&'a IndexStat>),
    /// Statistics have been gathered too briefly to call an index unused.
    TooSoon {
        /// How long they have been gathered.
        observed: std::time::Duration,
        /// How long they must be (`optimizer.unused_index_after`).
        needed: std::time::Duration,
    },
}

/// The indexes of `stats` that may be advised for dropping, after `observed` of statistics
/// with `needed` required.
pub fn unused_indexes(
    stats: &[IndexStat],
    observed: std::time::Duration,
    needed: std::time::Duration,
) -> UnusedIndexes<'_> {
    if observed < needed {
        return UnusedIndexes::TooSoon { observed, needed };
    }
    UnusedIndexes::Judged(stats.iter().filter(|ix| ix.scans == 0 && !ix.unique && !ix.required).collect())
}

/// The pages a btree index of `reltuples` keys of `key_width` bytes needs when freshly built:
/// its size less this is waste (bloat). A leaf tuple takes MAXALIGN(8-byte header + key width)
/// plus a 4-byte line pointer; leaves are filled to 90% of the page less its header and btree
/// trailer; internal pages and the metapage add about 1%.
pub fn btree_estimate(reltuples: f64, key_width: f64, block_size: f64) -> f64 {
    let tuple = ((8.0 + key_width) / 8.0).ceil() * 8.0 + 4.0;
    let per_page = ((block_size - 24.0 - 16.0) * 0.9 / tuple).floor().max(1.0);
    (reltuples / per_page).ceil() * 1.01 + 1.0
}

/// Quotes a possibly schema-qualified identifier that configuration validation has checked.
pub fn quote_ident(name: &str) -> String {
    name.split('.').map(|part| format!("\"{}\"", part.replace('"', "\"\""))).collect::<Vec<_>>().join(".")
}

#[cfg(test)]
mod tests {
    #[test]
    fn quotes_each_part() {
        assert_eq!(super::quote_ident("public.cache_entries"), "\"public\".\"cache_entries\"");
    }

    #[test]
    fn btree_estimate_of_known_sizes() {
        // 8 kB pages, 16-byte keys: tuples of 24 + 4 bytes, 261 a leaf.
        assert_eq!(super::btree_estimate(261.0 * 100.0, 16.0, 8192.0), 100.0 * 1.01 + 1.0);
        assert_eq!(super::btree_estimate(0.0, 16.0, 8192.0), 1.0);
    }

    #[test]
    fn no_key_or_constraint_index_is_ever_advised_for_dropping_nor_any_too_soon() {
        use super::{IndexStat, UnusedIndexes, unused_indexes};
        use std::time::Duration;
        let ix = |name: &str, scans, unique, required| IndexStat {
            name: name.into(),
            scans,
            unique,
            required,
            bytes: 8192,
            method: "btree".into(),
            bloat_bytes: None,
        };
        let stats = [
            ix("cache_entries_pkey", 0, true, true),
            ix("cache_entries_key_uq", 0, true, false),
            ix("cache_entries_excl", 0, false, true),
            ix("cache_entries_category", 0, false, false),
            ix("cache_entries_expires_at", 12, false, false),
        ];
        let week = Duration::from_secs(7 * 86_400);
        match unused_indexes(&stats, week, week) {
            UnusedIndexes::Judged(v) => {
                assert_eq!(v.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["cache_entries_category"]);
            }
            other => panic!("{other:?}"),
        }
        let soon = unused_indexes(&stats, Duration::from_secs(60), week);
        assert_eq!(soon, UnusedIndexes::TooSoon { observed: Duration::from_secs(60), needed: week });
    }
}
