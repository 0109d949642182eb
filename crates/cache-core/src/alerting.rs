//! Alert rule conditions and message templates (seed 000's `ALERT_RULES`).
//!
//! A condition is comparisons of metrics with numbers and named conditions, combined with
//! `and`, `or`, `not` and parentheses:
//!
//! ```text
//! memory_usage > 0.8
//! hit_ratio < 70% and not tier_unavailable
//! (latency_ms >= 50 or connection_usage > 90%) and status >= 1
//! ```
//!
//! A number may end in `%` (`70%` is `0.7`). A comparison with a metric the target does not
//! have is false. A message template puts metrics in with Python's format specs, as seed 000
//! writes them: `{hit_ratio:.1%}`, `{latency_ms:.0f}`, `{target}`; `{{` and `}}` are braces.

pub mod flapping;

use std::collections::BTreeMap;
use std::fmt;

/// A figure alert rules judge: the typed contract between the health probes, which measure
/// them, and the conditions operators write, which name them (see docs/alerts.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// 0 healthy, 1 degraded, 2 failed.
    Status,
    /// The wire round trip of one request on an open connection, milliseconds (connecting is
    /// reported apart); the host's and directories' probe time.
    LatencyMs,
    /// `used_memory / maxmemory` (a cluster: the fullest primary); the host's memory in use.
    MemoryUsage,
    /// Clients of `maxclients`.
    ClientsUsage,
    /// Backends of `max_connections`.
    ConnectionUsage,
    /// The applications' keyspace hits of their lookups since the previous check (the
    /// toolkit's own taken out); an HTTP cache's `hit_rate`.
    HitRatio,
    /// `mem_fragmentation_ratio` (a cluster: the worst primary).
    Fragmentation,
    /// `evicted_keys`.
    EvictedKeys,
    /// `used_memory` (a cluster: summed).
    UsedMemory,
    /// Keys (a cluster: summed over the primaries).
    Keys,
    /// Dead tuples of the cache table.
    DeadTuples,
    /// Rows of the cache table.
    Rows,
    /// The HTTP status of a health URL.
    HttpStatus,
    /// One-minute load per CPU.
    LoadPerCpu,
    /// A scheduled job missed its run (0 or 1).
    Overdue,
    /// A scheduled job ran more often than its schedule allows (0 or 1).
    TooFast,
    /// A scheduled job's last run was skipped (0 or 1).
    Skipped,
    /// Runs of a scheduled job in a row that failed or were only partly done.
    Failures,
    /// Runs of a scheduled job in a row that a gate skipped (not while automation was stopped).
    Skips,
    /// A heavy scheduled job that no maintenance window can ever admit (0 or 1).
    NeverAdmitted,
    /// No disaster-recovery drill has passed within `backup.drill_max_age` (0 or 1).
    DrillOverdue,
    /// The score of the latest complete security audit (0 to 100).
    SecurityScore,
    /// Points the latest complete security audit scores below the best of those within
    /// `debug.security_baseline` before it.
    SecurityScoreDrop,
    /// The busiest GPU's utilisation (0..1), where NVML gave one.
    GpuUtilization,
    /// The fullest GPU's memory in use (0..1), where NVML gave it.
    GpuMemoryUsage,
    /// The hottest GPU's temperature, degrees Celsius, where NVML gave one.
    GpuTemperatureCelsius,
}

impl Metric {
    /// Every metric, in the order docs/alerts.md lists them.
    pub const ALL: [Self; 26] = [
        Self::Status,
        Self::LatencyMs,
        Self::MemoryUsage,
        Self::HitRatio,
        Self::ClientsUsage,
        Self::ConnectionUsage,
        Self::Fragmentation,
        Self::EvictedKeys,
        Self::UsedMemory,
        Self::Keys,
        Self::DeadTuples,
        Self::Rows,
        Self::LoadPerCpu,
        Self::GpuUtilization,
        Self::GpuMemoryUsage,
        Self::GpuTemperatureCelsius,
        Self::HttpStatus,
        Self::Overdue,
        Self::TooFast,
        Self::Skipped,
        Self::Failures,
        Self::Skips,
        Self::NeverAdmitted,
        Self::DrillOverdue,
        Self::SecurityScore,
        Self::SecurityScoreDrop,
    ];

    /// The name conditions and message templates use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::LatencyMs => "latency_ms",
            Self::MemoryUsage => "memory_usage",
            Self::ClientsUsage => "clients_usage",
            Self::ConnectionUsage => "connection_usage",
            Self::HitRatio => "hit_ratio",
            Self::Fragmentation => "fragmentation",
            Self::EvictedKeys => "evicted_keys",
            Self::UsedMemory => "used_memory",
            Self::Keys => "keys",
            Self::DeadTuples => "dead_tuples",
            Self::Rows => "rows",
            Self::HttpStatus => "http_status",
            Self::LoadPerCpu => "load_per_cpu",
            Self::Overdue => "overdue",
            Self::TooFast => "too_fast",
            Self::Skipped => "skipped",
            Self::Failures => "failures",
            Self::Skips => "skips",
            Self::NeverAdmitted => "never_admitted",
            Self::DrillOverdue => "drill_overdue",
            Self::SecurityScore => "security_score",
            Self::SecurityScoreDrop => "security_score_drop",
            Self::GpuUtilization => "gpu_utilization",
            Self::GpuMemoryUsage => "gpu_memory_usage",
            Self::GpuTemperatureCelsius => "gpu_temperature_celsius",
        }
    }

    /// The metric called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// A ratio (0..1): compared with `0.8` or `80%`, never a bare `80`.
    pub fn is_ratio(self) -> bool {
        matches!(
            self,
            Self::HitRatio
                | Self::MemoryUsage
                | Self::ClientsUsage
                | Self::ConnectionUsage
                | Self::GpuUtilization
                | Self::GpuMemoryUsage
        )
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One target's figures, by metric.
pub type Figures = BTreeMap<Metric, f64>;

/// The names of cache-health's default rules (seed 000's and seed 002's), which apply when no
/// rule is configured; cache-health's `default_rules` are these (a test keeps them equal).
pub const DEFAULT_RULE_NAMES: &[&str] = &[
    "Critical System Down",
    "Tier Unavailable",
    "High Memory Usage",
    "Low Hit Ratio",
    "High Latency",
    "Slow Cache Table",
    "Scheduled Job Failing",
    "Scheduled Job Overdue",
    "Scheduled Job Skipped",
    "Connection Usage",
    "Backup Drill Overdue",
    "Security Score Drop",
    "GPU Saturated",
];

/// The names of the rules `cache-health monitor` judges under `settings` (what a maintenance
/// window may silence): the configured rules, or the default ones when none are configured.
pub fn rule_names(settings: &crate::config::AlertSettings) -> Vec<String> {
    if settings.rules.is_empty() && settings.default_rules {
        DEFAULT_RULE_NAMES.iter().map(|n| (*n).to_owned()).collect()
    } else {
        settings.rules.iter().map(|r| r.name.clone()).collect()
    }
}

/// Refuses a ratio metric compared with a bare number above 1 (`hit_ratio < 70`), which would
/// be true, or false, for ever.
pub fn check_ratios(condition: &Condition) -> Result<(), ParseError> {
    match condition {
        Condition::Compare(m, _, n) if m.is_ratio() && *n > 1.0 => Err(ParseError(format!(
            "`{m}` is a ratio: compare it with a fraction such as {} or a percentage such as {n}%, not a bare {n}",
            n / 100.0
        ))),
        Condition::Compare(..) | Condition::Named(_) => Ok(()),
        Condition::And(a, b) | Condition::Or(a, b) => check_ratios(a).and_then(|()| check_ratios(b)),
        Condition::Not(c) => check_ratios(c),
    }
}

/// Named conditions, true or false per target.
pub const NAMED: &[&str] = &["all_tiers_unavailable", "tier_unavailable", "tier_degraded"];

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

/// A parsed condition.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    /// `metric op number`
    Compare(Metric, Op, f64),
    /// A named condition.
    Named(String),
    /// Both.
    And(Box<Condition>, Box<Condition>),
    /// Either.
    Or(Box<Condition>, Box<Condition>),
    /// Not.
    Not(Box<Condition>),
}

/// Why a condition does not parse.
#[derive(Debug, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Ident(String),
    Number(f64),
    Op(Op),
    Open,
    Close,
}

fn tokens(text: &str) -> Result<Vec<Token>, ParseError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' || c == ')' {
            out.push(if c == '(' { Token::Open } else { Token::Close });
            i += 1;
        } else if "<>=!".contains(c) {
            let two = chars.get(i + 1) == Some(&'=');
            let op = match (c, two) {
                ('<', false) => Op::Lt,
                ('<', true) => Op::Le,
                ('>', false) => Op::Gt,
                ('>', true) => Op::Ge,
                ('=', true) => Op::Eq,
                ('!', true) => Op::Ne,
                _ => return Err(ParseError(format!("unexpected `{c}` at character {}", i + 1))),
            };
            out.push(Token::Op(op));
            i += if two { 2 } else { 1 };
        } else if c.is_ascii_digit() || c == '.' || c == '-' {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.' || chars[i] == 'e') {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            let mut n: f64 = text.parse().map_err(|_| ParseError(format!("`{text}` is not a number")))?;
            if chars.get(i) == Some(&'%') {
                n /= 100.0;
                i += 1;
            }
            out.push(Token::Number(n));
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token::Ident(chars[start..i].iter().collect()));
        } else {
            return Err(ParseError(format!("unexpected `{c}` at character {}", i + 1)));
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn keyword(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some(Token::Ident(w)) if w == word) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<Condition, ParseError> {
        let mut left = self.and()?;
        while self.keyword("or") {
            left = Condition::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Condition, ParseError> {
        let mut left = self.not()?;
        while self.keyword("and") {
            left = Condition::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Condition, ParseError> {
        if self.keyword("not") {
            return Ok(Condition::Not(Box::new(self.not()?)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Condition, ParseError> {
        match self.tokens.get(self.at).cloned() {
            Some(Token::Open) => {
                self.at += 1;
                let inner = self.or()?;
                if self.peek() != Some(&Token::Close) {
                    return Err(ParseError("missing `)`".into()));
                }
                self.at += 1;
                Ok(inner)
            }
            Some(Token::Ident(name)) if !matches!(name.as_str(), "and" | "or" | "not") => {
                self.at += 1;
                match self.peek().cloned() {
                    Some(Token::Op(op)) => {
                        self.at += 1;
                        match self.peek().cloned() {
                            Some(Token::Number(n)) => {
                                self.at += 1;
                                let metric = Metric::from_name(&name).ok_or_else(|| {
                                    let known: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
                                    ParseError(format!(
                                        "`{name}` is not a metric; the metrics are {}",
                                        known.join(", ")
                                    ))
                                })?;
                                Ok(Condition::Compare(metric, op, n))
                            }
                            _ => Err(ParseError(format!("`{name}` must be compared with a number"))),
                        }
                    }
                    _ if NAMED.contains(&name.as_str()) => Ok(Condition::Named(name)),
                    _ => Err(ParseError(format!(
                        "`{name}` is not a named condition ({}); compare a metric, e.g. `{name} > 0.8`",
                        NAMED.join(", ")
                    ))),
                }
            }
            Some(t) => Err(ParseError(format!("unexpected {t:?}"))),
            None => Err(ParseError("the condition ends too soon".into())),
        }
    }
}

/// Parses a condition.
pub fn parse(text: &str) -> Result<Condition, ParseError> {
    let mut p = Parser { tokens: tokens(text)?, at: 0 };
    let c = p.or()?;
    if p.at != p.tokens.len() {
        return Err(ParseError(format!("unexpected {:?} after a complete condition", p.tokens[p.at])));
    }
    Ok(c)
}

impl Condition {
    /// Evaluates against one target's metrics and the named conditions' values.
    pub fn eval(&self, metrics: &Figures, named: &dyn Fn(&str) -> bool) -> bool {
        match self {
            Self::Compare(m, op, n) => metrics.get(m).is_some_and(|v| match op {
                Op::Lt => v < n,
                Op::Le => v <= n,
                Op::Gt => v > n,
                Op::Ge => v >= n,
                Op::Eq => (v - n).abs() < f64::EPSILON,
                Op::Ne => (v - n).abs() >= f64::EPSILON,
            }),
            Self::Named(name) => named(name),
            Self::And(a, b) => a.eval(metrics, named) && b.eval(metrics, named),
            Self::Or(a, b) => a.eval(metrics, named) || b.eval(metrics, named),
            Self::Not(a) => !a.eval(metrics, named),
        }
    }

    /// The metrics it compares, in order of appearance.
    pub fn metrics(&self) -> Vec<Metric> {
        match self {
            Self::Compare(m, ..) => vec![*m],
            Self::Named(_) => Vec::new(),
            Self::And(a, b) | Self::Or(a, b) => {
                let mut v = a.metrics();
                v.extend(b.metrics());
                v
            }
            Self::Not(a) => a.metrics(),
        }
    }

    /// Whether it is about the whole system rather than one target.
    pub fn is_global(&self) -> bool {
        match self {
            Self::Named(n) => n == "all_tiers_unavailable",
            Self::Compare(..) => false,
            Self::And(a, b) | Self::Or(a, b) => a.is_global() && b.is_global(),
            Self::Not(a) => a.is_global(),
        }
    }
}

/// Checks a template's syntax; returns the first problem.
pub fn check_template(template: &str) -> Result<(), ParseError> {
    render(template, &Figures::new(), &BTreeMap::new()).map(|_| ())
}

/// Renders a template with numeric `metrics` and text `labels` (`target`, `rule`...). A
/// metric the target lacks renders as `n/a`.
pub fn render(template: &str, metrics: &Figures, labels: &BTreeMap<&str, String>) -> Result<String, ParseError> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let c = rest.as_bytes()[i];
        if rest[i + 1..].starts_with(c as char) {
            out.push(c as char);
            rest = &rest[i + 2..];
            continue;
        }
        if c == b'}' {
            return Err(ParseError("a lone `}` (write `}}` for a brace)".into()));
        }
        let end = rest[i..].find('}').ok_or_else(|| ParseError("a `{` without its `}`".into()))? + i;
        let field = &rest[i + 1..end];
        let (name, spec) = field.split_once(':').unwrap_or((field, ""));
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(ParseError(format!("`{{{field}}}` does not name a metric")));
        }
        out.push_str(&format_value(name, spec, metrics, labels)?);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn format_value(
    name: &str,
    spec: &str,
    metrics: &Figures,
    labels: &BTreeMap<&str, String>,
) -> Result<String, ParseError> {
    let bad = || ParseError(format!("format spec `{spec}` of `{name}`: use `.Nf`, `.N%` or nothing"));
    let (precision, percent) = if spec.is_empty() {
        (None, false)
    } else {
        let body = spec.strip_prefix('.').ok_or_else(bad)?;
        let (digits, kind) = body.split_at(body.find(|c: char| !c.is_ascii_digit()).unwrap_or(body.len()));
        let p: usize = digits.parse().map_err(|_| bad())?;
        match kind {
            "" | "f" => (Some(p), false),
            "%" => (Some(p), true),
            _ => return Err(bad()),
        }
    };
    if let Some(text) = labels.get(name) {
        return Ok(text.clone());
    }
    let Some(v) = Metric::from_name(name).and_then(|m| metrics.get(&m)) else { return Ok("n/a".into()) };
    let v = if percent { v * 100.0 } else { *v };
    let text = match precision {
        Some(p) => format!("{v:.p$}"),
        None => format!("{v}"),
    };
    Ok(if percent { text + "%" } else { text })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pairs: &[(&str, f64)]) -> Figures {
        pairs.iter().map(|(k, v)| (Metric::from_name(k).unwrap(), *v)).collect()
    }

    #[test]
    fn conditions_parse_and_evaluate() {
        let c = parse("hit_ratio < 70% and not tier_unavailable").unwrap();
        let named = |n: &str| n == "tier_unavailable";
        assert!(c.eval(&m(&[("hit_ratio", 0.5)]), &|_| false));
        assert!(!c.eval(&m(&[("hit_ratio", 0.5)]), &named));
        assert!(!c.eval(&m(&[("hit_ratio", 0.7)]), &|_| false));
        // A metric the target lacks makes the comparison false.
        assert!(!c.eval(&m(&[]), &|_| false));
        let c = parse("(latency_ms >= 50 or connection_usage > 90%) and status >= 1").unwrap();
        assert!(c.eval(&m(&[("latency_ms", 50.0), ("status", 1.0)]), &|_| false));
        assert!(!c.eval(&m(&[("connection_usage", 0.9), ("status", 1.0)]), &|_| false));
        assert_eq!(c.metrics(), [Metric::LatencyMs, Metric::ConnectionUsage, Metric::Status]);
        assert!(parse("all_tiers_unavailable").unwrap().is_global());
        assert!(!parse("tier_unavailable").unwrap().is_global());
    }

    #[test]
    fn bad_conditions_say_what_is_wrong() {
        assert!(parse("memory_usage >").unwrap_err().0.contains("compared with a number"));
        assert!(parse("memory_usage").unwrap_err().0.contains("not a named condition"));
        assert!(parse("(keys > 1").unwrap_err().0.contains("missing `)`"));
        assert!(parse("keys > 1 b").unwrap_err().0.contains("after a complete condition"));
        assert!(parse("keys ~ 1").unwrap_err().0.contains("unexpected `~`"));
        // A misspelt metric would never match: refused, with the list.
        let e = parse("memry_usage > 80%").unwrap_err().0;
        assert!(e.contains("`memry_usage` is not a metric") && e.contains("memory_usage, hit_ratio"), "{e}");
        assert!(parse("").unwrap_err().0.contains("ends too soon"));
    }

    #[test]
    fn every_metric_is_documented_and_every_documented_metric_exists() {
        let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/alerts.md")).unwrap();
        let table: Vec<&str> = docs
            .lines()
            .skip_while(|l| !l.starts_with("| metric |"))
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .collect();
        let documented: Vec<&str> = table
            .iter()
            .filter_map(|l| l.split('|').nth(1))
            .flat_map(|cell| cell.split('`').skip(1).step_by(2))
            .collect();
        for m in Metric::ALL {
            assert!(documented.contains(&m.name()), "`{m}` is missing from docs/alerts.md's metric table");
        }
        for name in documented {
            assert!(Metric::from_name(name).is_some(), "docs/alerts.md documents `{name}`, which is no metric");
        }
    }

    #[test]
    fn templates_format_like_seed_000() {
        let labels: BTreeMap<&str, String> = [("target", "redis/main".to_owned())].into();
        let text = render(
            "{target}: memory at {memory_usage:.1%}, {latency_ms:.0f} ms, {keys} keys, {missing:.2f} {{x}}",
            &m(&[("memory_usage", 0.8734), ("latency_ms", 12.6), ("keys", 3.0)]),
            &labels,
        )
        .unwrap();
        assert_eq!(text, "redis/main: memory at 87.3%, 13 ms, 3 keys, n/a {x}");
        assert!(check_template("{hit_ratio:.1x}").is_err());
        assert!(check_template("{hit_ratio").is_err());
        assert!(check_template("oops }").is_err());
        assert!(check_template("{}").is_err());
    }
}
