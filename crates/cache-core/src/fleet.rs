//! The fleet lock: the same crontab on many hosts runs each heavy job once per tick. A run
//! takes a lease in Redis (`SET key value NX PX lease`, the key naming the job and the minute it
//! was scheduled for) with a fencing token from `INCR`, renews it every third of the lease while
//! it runs, and leaves it to run out when done, so a host that starts late in the same tick finds
//! the tick taken.

use std::time::Duration;

use crate::clients::redis::Connection;
use chrono::{DateTime, Utc};

use crate::config::RedisTarget;

/// Extends the lease only while it is still ours.
const RENEW: &str =
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";

/// How long a finished tick stays marked taken at least.
const DONE_MARK: Duration = Duration::from_secs(120);

/// A held lease.
pub struct Lease {
    conn: Connection,
    key: String,
    value: String,
    token: i64,
    lease: Duration,
    renew: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("key", &self.key).field("token", &self.token).finish_non_exhaustive()
    }
}

impl Lease {
    /// Takes the lease of `job` for `tick`; `Ok(Err(holder))` when another run has it.
    pub async fn take(
        target: &RedisTarget,
        project: &str,
        job: &str,
        tick: DateTime<Utc>,
        lease: Duration,
    ) -> anyhow::Result<Result<Self, String>> {
        let key = format!("cache-toolkit:{project}:lease:{job}:{}", tick.format("%Y%m%dT%H%M"));
        let fence = format!("cache-toolkit:{project}:fence:{job}");
        // Each key on the primary serving its slot (on a Redis Cluster they differ).
        let router = crate::keyspace::primaries(target).await?.router().await?;
        let route = |k: &str| {
            router
                .conn_for(k.as_bytes())
                .ok_or_else(|| anyhow::anyhow!("no reachable primary serves the slot of `{k}`"))
        };
        let mut conn = route(&key)?;
        let token: i64 = redis::cmd("INCR").arg(&fence).query_async(&mut route(&fence)?).await?;
        let value = format!("{}:{}:{token}", crate::system::hostname(), std::process::id());
        let ms = lease.as_millis().max(1) as u64;
        let set: Option<String> =
            redis::cmd("SET").arg(&key).arg(&value).arg("NX").arg("PX").arg(ms).query_async(&mut conn).await?;
        if set.is_none() {
            let holder: Option<String> = redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
            return Ok(Err(holder.map_or("the lease just ran out".into(), |h| format!("held by {h}"))));
        }
        let renew = {
            let (mut conn, key, value) = (conn.clone(), key.clone(), value.clone());
            tokio::spawn(async move {
                let script = redis::Script::new(RENEW);
                loop {
                    tokio::time::sleep(lease / 3).await;
                    let kept: redis::RedisResult<i64> =
                        script.key(&key).arg(&value).arg(ms).invoke_async(&mut conn).await;
                    if !matches!(kept, Ok(1)) {
                        tracing::warn!("lost the fleet lock `{key}`");
                        return;
                    }
                }
            })
        };
        Ok(Ok(Self { conn, key, value, token, lease, renew }))
    }

    /// The fencing token: larger for every later holder of this job's lease.
    pub fn token(&self) -> i64 {
        self.token
    }

    /// Stops renewing, and keeps the tick marked taken for a while.
    pub async fn finish(mut self) {
        self.renew.abort();
        let keep = self.lease.max(DONE_MARK).as_millis() as u64;
        let script = redis::Script::new(RENEW);
        if let Err(e) = script.key(&self.key).arg(&self.value).arg(keep).invoke_async::<i64>(&mut self.conn).await {
            tracing::warn!("marking the fleet lock `{}` done: {e}", self.key);
        }
    }
}
