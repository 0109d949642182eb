//! The PostgreSQL cache table as the tools see it: its quoted name and column names (from
//! `target.columns`), the project scope, and the statements several tools share.
//!
//! A [`CacheTable`] is built from a [`PostgresTarget`] and the project name. It is the only
//! place that reads `columns` or decides whether rows are scoped to a project: a table whose
//! `columns.project` is empty holds one project and is never filtered; otherwise every
//! statement on the project's rows carries `AND <project> = $n`, numbered after the
//! statement's other parameters ([`CacheTable::scope`] over [`Params`]). The tidy test
//! `no_tool_spells_the_cache_table_columns_or_project_scope` keeps the tools on it.

use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use crate::clients::postgres::quote_ident;
use crate::config::PostgresTarget;

/// A statement's parameters, numbered `$1`, `$2`... in the order they are pushed.
#[derive(Default)]
pub struct Params(Vec<Box<dyn ToSql + Sync + Send>>);

impl Params {
    /// No parameters yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `value` and returns its placeholder (`$n`).
    pub fn push(&mut self, value: impl ToSql + Sync + Send + 'static) -> String {
        self.0.push(Box::new(value));
        format!("${}", self.0.len())
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The parameters as tokio-postgres takes them.
    pub fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.0.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect()
    }
}

impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.iter()).finish()
    }
}

/// The error for a table lacking configured columns ([`CacheTable::missing_columns`]), naming
/// each setting: "misconfigured: the table `t` has no column `k` (`postgres[0].columns.key`)".
pub fn misconfigured(table: &str, index: usize, missing: &[(&'static str, String)]) -> String {
    let each: Vec<String> =
        missing.iter().map(|(key, name)| format!("`{name}` (postgres[{index}].columns.{key})")).collect();
    format!(
        "misconfigured: the table `{table}` has no column {}; set the column names in the configuration",
        each.join(", ")
    )
}

/// The cache table of one PostgreSQL target, for one project.
#[derive(Clone, Debug)]
pub struct CacheTable {
    /// The configured table name (unquoted, possibly schema-qualified).
    name: String,
    /// The table, quoted.
    table: String,
    key: String,
    expires_at: String,
    accessed_at: String,
    category: String,
    value: String,
    access_count: String,
    /// The project column (quoted) and the project, when the table holds several projects.
    scope: Option<(String, String)>,
    /// Every configured column: (`columns.KEY`, its name unquoted).
    configured: Vec<(&'static str, String)>,
}

/// Rows and size of the project's part of the table (smart's figures).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Rows of the project.
    pub rows: i64,
    /// Rows of the project accessed in the last hour.
    pub recent: i64,
    /// `pg_total_relation_size` of the whole table, bytes.
    pub total_bytes: i64,
}

/// Seed 000's statistics of the project's rows (analytics' snapshot).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Statistics {
    /// Rows.
    pub total_entries: i64,
    /// Mean access count (the `access_count` column), 0 without rows.
    pub avg_access_count: f64,
    /// Rows accessed in the last hour.
    pub hot_entries: i64,
    /// Distinct categories.
    pub active_categories: i64,
    /// Mean age (`now() - created_at`), seconds.
    pub avg_age_seconds: f64,
    /// Rows whose `metadata` has `optimized`.
    pub optimized_entries: i64,
}

/// One of the hottest live rows ([`CacheTable::hottest`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HotRow {
    /// The key, as text.
    pub key: String,
    /// The value, as text.
    pub value: String,
    /// The category, as text.
    pub category: Option<String>,
    /// The access count.
    pub access_count: i64,
    /// Milliseconds until the row expires; `None`: never.
    pub ttl_ms: Option<i64>,
}

impl CacheTable {
    /// The cache table of `target`, scoped to `project` when the table has a project column.
    pub fn new(target: &PostgresTarget, project: &str) -> Self {
        let c = &target.columns;
        Self {
            name: target.table.clone(),
            table: quote_ident(&target.table),
            key: quote_ident(&c.key),
            expires_at: quote_ident(&c.expires_at),
            accessed_at: quote_ident(&c.accessed_at),
            category: quote_ident(&c.category),
            value: quote_ident(&c.value),
            access_count: quote_ident(&c.access_count),
            scope: (!c.project.is_empty()).then(|| (quote_ident(&c.project), project.to_owned())),
            configured: [
                ("key", &c.key),
                ("expires_at", &c.expires_at),
                ("accessed_at", &c.accessed_at),
                ("category", &c.category),
                ("project", &c.project),
                ("value", &c.value),
                ("access_count", &c.access_count),
            ]
            .into_iter()
            .filter(|(_, name)| !name.is_empty())
            .map(|(key, name)| (key, name.clone()))
            .collect(),
        }
    }

    /// The configured columns the table lacks, as (`columns.KEY`, name): a table whose
    /// columns do not match the configuration is misconfigured, said before any statement
    /// fails on it. Empty when the table does not exist (that is said elsewhere).
    pub async fn missing_columns(&self, db: &Client) -> Result<Vec<(&'static str, String)>, tokio_postgres::Error> {
        let rows = db
            .query(
                "SELECT attname::text FROM pg_attribute
                  WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped",
                &[&self.table],
            )
            .await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let present: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
        Ok(self.configured.iter().filter(|(_, name)| !present.contains(name)).cloned().collect())
    }

    /// The configured table name, unquoted (for `to_regclass` and messages).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The table, quoted.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The key column, quoted.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The expiry column, quoted.
    pub fn expires_at(&self) -> &str {
        &self.expires_at
    }

    /// The last-access column, quoted.
    pub fn accessed_at(&self) -> &str {
        &self.accessed_at
    }

    /// The category column, quoted.
    pub fn category(&self) -> &str {
        &self.category
    }

    /// The value column, quoted.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The access-count column, quoted.
    pub fn access_count(&self) -> &str {
        &self.access_count
    }

    /// The project the rows are scoped to; `None` when the table holds one project.
    pub fn scoped_project(&self) -> Option<&str> {
        self.scope.as_ref().map(|(_, project)| project.as_str())
    }

    /// The project scope to append to a condition: ` AND <project> = $n` with the project
    /// pushed onto `params` (so numbered after the parameters already there), or nothing when
    /// the table holds one project.
    pub fn scope(&self, params: &mut Params) -> String {
        match &self.scope {
            Some((column, project)) => format!(" AND {column} = {}", params.push(project.clone())),
            None => String::new(),
        }
    }

    /// The statement behind [`CacheTable::counts`].
    pub fn counts_statement(&self) -> (String, Params) {
        let mut params = Params::new();
        let table = params.push(self.name.clone());
        let sql = format!(
            "SELECT count(*)::bigint, count(*) FILTER (WHERE {acc} > now() - interval '1 hour')::bigint, \
                    pg_total_relation_size({table}::text::regclass)::bigint FROM {t} WHERE true{scope}",
            acc = self.accessed_at,
            t = self.table,
            scope = self.scope(&mut params),
        );
        (sql, params)
    }

    /// The project's rows, those accessed in the last hour, and the table's total size.
    pub async fn counts(&self, db: &Client) -> Result<Counts, tokio_postgres::Error> {
        let (sql, params) = self.counts_statement();
        let row = db.query_one(&sql, &params.refs()).await?;
        Ok(Counts { rows: row.get(0), recent: row.get(1), total_bytes: row.get(2) })
    }

    /// The statement behind [`CacheTable::statistics`]: seed 000's statistics query.
    pub fn statistics_statement(&self) -> (String, Params) {
        let mut params = Params::new();
        let sql = format!(
            "SELECT count(*)::bigint, coalesce(avg({ac}), 0)::float8,
                    count(*) FILTER (WHERE {acc} > now() - interval '1 hour')::bigint,
                    count(DISTINCT {cat})::bigint,
                    coalesce(avg(extract(epoch FROM (now() - created_at))), 0)::float8,
                    coalesce(sum(CASE WHEN metadata ? 'optimized' THEN 1 ELSE 0 END), 0)::bigint
               FROM {table} WHERE true{scope}",
            ac = self.access_count,
            acc = self.accessed_at,
            cat = self.category,
            table = self.table,
            scope = self.scope(&mut params),
        );
        (sql, params)
    }

    /// Seed 000's statistics of the project's rows.
    pub async fn statistics(&self, db: &Client) -> Result<Statistics, tokio_postgres::Error> {
        let (sql, params) = self.statistics_statement();
        let row = db.query_one(&sql, &params.refs()).await?;
        Ok(Statistics {
            total_entries: row.get(0),
            avg_access_count: row.get(1),
            hot_entries: row.get(2),
            active_categories: row.get(3),
            avg_age_seconds: row.get(4),
            optimized_entries: row.get(5),
        })
    }

    /// The statement behind [`CacheTable::extend_expiry`].
    pub fn extend_expiry_statement(&self, seconds: f64) -> (String, Params) {
        let mut params = Params::new();
        let secs = params.push(seconds);
        let sql = format!(
            "UPDATE {table} SET {exp} = {exp} + make_interval(secs => {secs}) WHERE {exp} > now(){scope}",
            table = self.table,
            exp = self.expires_at,
            scope = self.scope(&mut params),
        );
        (sql, params)
    }

    /// Moves the expiry of the project's live rows that expire `seconds` later (rows that never
    /// expire stay so); returns how many rows changed.
    pub async fn extend_expiry(&self, db: &Client, seconds: f64) -> Result<u64, tokio_postgres::Error> {
        let (sql, params) = self.extend_expiry_statement(seconds);
        db.execute(&sql, &params.refs()).await
    }

    /// The statement behind [`CacheTable::hottest`].
    pub fn hottest_statement(&self, limit: i64) -> (String, Params) {
        let mut params = Params::new();
        let limit = params.push(limit);
        // Round-robin over categories: every category's hottest entry, then every second...
        let sql = format!(
            "SELECT k, v, cat, ac, ttl_ms FROM (
                SELECT {key}::text AS k, {value}::text AS v, {cat}::text AS cat, {ac}::bigint AS ac, {acc} AS acc,
                       CASE WHEN {exp} IS NULL THEN NULL
                            ELSE (extract(epoch FROM {exp} - now()) * 1000)::bigint END AS ttl_ms,
                       row_number() OVER (PARTITION BY {cat} ORDER BY {ac} DESC, {acc} DESC) AS rn
                  FROM {table}
                 WHERE ({exp} IS NULL OR {exp} > now()){scope}
             ) s ORDER BY rn, ac DESC, acc DESC LIMIT {limit}",
            key = self.key,
            value = self.value,
            cat = self.category,
            ac = self.access_count,
            acc = self.accessed_at,
            exp = self.expires_at,
            table = self.table,
            scope = self.scope(&mut params),
        );
        (sql, params)
    }

    /// At most `limit` live rows of the project, hottest first (access count, then last
    /// access), taken round-robin across categories so that one cannot crowd out the rest.
    pub async fn hottest(&self, db: &Client, limit: i64) -> Result<Vec<HotRow>, tokio_postgres::Error> {
        let (sql, params) = self.hottest_statement(limit);
        let rows = db.query(&sql, &params.refs()).await?;
        Ok(rows
            .iter()
            .map(|row| HotRow {
                key: row.get(0),
                value: row.get(1),
                category: row.get(2),
                access_count: row.get(3),
                ttl_ms: row.get(4),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CacheColumns;

    fn target(project_column: &str) -> PostgresTarget {
        let text = format!(
            "[[postgres]]\nname = \"main\"\nurl = \"postgres://localhost/db\"\ntable = \"public.cache\"\n\
             columns = {{ project = \"{project_column}\", access_count = \"hits\" }}\n"
        );
        let config = crate::config::parse(&text, "test.toml").unwrap();
        config.postgres.into_iter().next().unwrap()
    }

    #[test]
    fn the_scope_is_numbered_after_the_other_parameters_or_absent() {
        let scoped = CacheTable::new(&target("project_name"), "app");
        let mut params = Params::new();
        assert_eq!(params.push(1.5f64), "$1");
        assert_eq!(scoped.scope(&mut params), " AND \"project_name\" = $2");
        assert_eq!(params.len(), 2);
        assert_eq!(scoped.scoped_project(), Some("app"));

        let single = CacheTable::new(&target(""), "app");
        let mut params = Params::new();
        assert_eq!(single.scope(&mut params), "");
        assert!(params.is_empty());
        assert_eq!(single.scoped_project(), None);
    }

    #[test]
    fn statements_use_the_configured_columns() {
        let t = CacheTable::new(&target("proj"), "app");
        assert_eq!(t.table(), "\"public\".\"cache\"");
        let (sql, params) = t.statistics_statement();
        assert!(sql.contains("avg(\"hits\")"), "{sql}");
        assert!(!sql.contains("access_count"), "{sql}");
        assert!(sql.ends_with("WHERE true AND \"proj\" = $1"), "{sql}");
        assert_eq!(params.len(), 1);
        let (sql, params) = t.extend_expiry_statement(60.0);
        assert!(sql.ends_with("AND \"proj\" = $2"), "{sql}");
        assert_eq!(params.len(), 2);
        let (sql, _) = t.hottest_statement(10);
        assert!(sql.contains("\"hits\"::bigint AS ac") && sql.contains("AND \"proj\" = $2"), "{sql}");
        let (sql, params) = t.counts_statement();
        assert!(sql.contains("pg_total_relation_size($1::text::regclass)") && sql.ends_with("= $2"), "{sql}");
        assert_eq!(params.len(), 2);
        assert_eq!(CacheColumns::default().access_count, "access_count");
    }

    /// The tidy rule keeping the cache table's shape in this module. In every `.rs` file under
    /// `crates/*/src` except cache-core's:
    ///
    /// 1. no `.columns` field access (`target.columns.key`, `&pg.columns`): column names are
    ///    read from [`CacheTable`]'s accessors, already quoted;
    /// 2. no parameter list `&[...]` naming `project_name`: the project is passed to a
    ///    statement only by [`CacheTable::scope`];
    /// 3. no string literal holding an SQL keyword (`SELECT`, `UPDATE`, `DELETE`, `INSERT`,
    ///    `WHERE`) and `project_name`: the default project column is never spelled in SQL.
    ///
    /// The code before `cache_table` failed rule 1 in every tool listed in issue 13 and rule 2
    /// in smart's figures and the expiry extension; messages naming the `project_name` setting
    /// (no SQL keyword) pass.
    #[test]
    fn no_tool_spells_the_cache_table_columns_or_project_scope() {
        let crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut offences = Vec::new();
        let mut stack: Vec<_> = std::fs::read_dir(&crates)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().is_some_and(|n| n != "cache-core"))
            .map(|p| p.join("src"))
            .filter(|p| p.is_dir())
            .collect();
        assert!(stack.len() >= 5, "found too few tool crates under {}", crates.display());
        while let Some(dir) = stack.pop() {
            for path in std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()) {
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    for why in offences_in(&text) {
                        offences.push(format!("{}: {why}", path.display()));
                    }
                }
            }
        }
        assert!(offences.is_empty(), "use cache_core::cache_table::CacheTable:\n{}", offences.join("\n"));
    }

    /// What [`no_tool_spells_the_cache_table_columns_or_project_scope`] finds in one file.
    fn offences_in(text: &str) -> Vec<String> {
        let mut found = Vec::new();
        let line_of = |at: usize| text[..at].lines().count().max(1);
        for (at, _) in text.match_indices(".columns") {
            let next = text[at + ".columns".len()..].chars().next();
            if !next.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                found.push(format!("line {}: `.columns` field access", line_of(at)));
            }
        }
        for (at, _) in text.match_indices("&[") {
            let mut depth = 0usize;
            let mut end = text.len();
            for (i, c) in text[at + 1..].char_indices() {
                match c {
                    '[' => depth += 1,
                    ']' => {
                        depth -= 1;
                        if depth == 0 {
                            end = at + 1 + i;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            if text[at..end].contains("project_name") {
                found.push(format!("line {}: `project_name` passed as a statement parameter", line_of(at)));
            }
        }
        for (start, literal) in string_literals(text) {
            let sql = ["SELECT", "UPDATE", "DELETE", "INSERT", "WHERE"].iter().any(|k| literal.contains(k));
            if sql && literal.contains("project_name") {
                found.push(format!("line {}: `project_name` in SQL", line_of(start)));
            }
        }
        found
    }

    /// The `"..."` literals of Rust source (escapes skipped, `'"'` and comments left alone).
    fn string_literals(text: &str) -> Vec<(usize, &str)> {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'/' if bytes.get(i + 1) == Some(&b'/') => {
                    while i < bytes.len() && bytes[i] != b'\n' {
                        i += 1;
                    }
                }
                b'\'' if bytes.get(i + 2) == Some(&b'\'') || bytes.get(i + 1) == Some(&b'\\') => {
                    // A char literal such as '"' or '\"'.
                    i += 1;
                    while i < bytes.len() && bytes[i] != b'\'' {
                        i += if bytes[i] == b'\\' { 2 } else { 1 };
                    }
                }
                b'"' => {
                    let start = i + 1;
                    i += 1;
                    while i < bytes.len() && bytes[i] != b'"' {
                        i += if bytes[i] == b'\\' { 2 } else { 1 };
                    }
                    out.push((start, &text[start..i.min(text.len())]));
                }
                _ => {}
            }
            i += 1;
        }
        out
    }

    #[test]
    fn the_tidy_rule_catches_the_old_code() {
        let old = r#"
            let c = &target.columns;
            let sql = format!("UPDATE t SET x = 1 WHERE {} = $2", q(&c.project));
            db.execute(&sql, &[&seconds, &config.project_name]).await;
            let raw = "SELECT 1 FROM cache_entries WHERE project_name = $1";
        "#;
        assert_eq!(offences_in(old).len(), 3, "{:?}", offences_in(old));
        let fine = r#"
            let t = CacheTable::new(target, &config.project_name);
            let note = "set `user_id` or `project_name`";
            let columns = target_columns();
        "#;
        assert!(offences_in(fine).is_empty(), "{:?}", offences_in(fine));
    }
}
