//! Forecasts, anomalies and low-usage windows over metric series (seed 000's "Predictive
//! Analytics", seed 002's capacity planning): pure functions over numbers, so analytics, the
//! optimizer and the scheduler share one tested implementation.
//!
//! - forecasts with calibrated intervals ([`fit_trend`]): a least-squares line in time, with a
//!   daily cycle once the series spans two, and 95% prediction intervals from the residuals that
//!   widen with the horizon and account for the line's own uncertainty and for autocorrelated
//!   noise (the residuals' AR(1) correlation, in a sandwich estimate of the coefficients'
//!   covariance); cache-analytics forecasts memory and the hit ratio with it;
//! - least-squares linear regression ([`linear_regression`]: independent errors) and Holt's
//!   linear (double exponential) smoothing ([`holt`]: intervals of the ETS(A,A,N) model);
//! - response time: moving average;
//! - anomalies: the median/MAD modified z-score (Iglewicz and Hoaglin), with the mean absolute
//!   deviation standing in when the MAD is zero, and a minimum effect size ([`MinEffect`]) so
//!   that a tiny wobble of a quiet series is not one;
//! - low-usage windows: hours under a fraction of the daily average, in runs of a given length.

use serde::Serialize;

/// z for a two-sided 95% interval.
const Z95: f64 = 1.959_964;

/// A forecast value with a 95% interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Estimate {
    /// How far ahead of the last observation, in the series' unit of x (steps for [`holt`],
    /// days for cache-analytics' forecasts).
    pub step: f64,
    /// The forecast.
    pub value: f64,
    /// Lower end of the interval.
    pub low: f64,
    /// Upper end of the interval.
    pub high: f64,
}

/// A least-squares line through `(x, y)` points.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Line {
    /// Change of y per unit of x.
    pub slope: f64,
    /// y at x = 0.
    pub intercept: f64,
    /// Share of the variance explained (1 for a perfect line; 0 when y is flat).
    pub r2: f64,
    /// Standard deviation of the residuals.
    pub residual_sd: f64,
    /// The last x seen.
    pub last_x: f64,
    /// Points fitted.
    pub n: usize,
    /// Mean of their x.
    pub mean_x: f64,
    /// Sum of squared deviations of their x from the mean.
    pub sxx: f64,
}

/// Fits a line; `None` with fewer than two distinct x.
pub fn linear_regression(points: &[(f64, f64)]) -> Option<Line> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    let slope = sxy / sxx;
    let intercept = mean_y - slope * mean_x;
    let ss_res: f64 = points.iter().map(|p| (p.1 - (intercept + slope * p.0)).powi(2)).sum();
    let ss_tot: f64 = points.iter().map(|p| (p.1 - mean_y).powi(2)).sum();
    let r2 = if ss_tot == 0.0 { 0.0 } else { 1.0 - ss_res / ss_tot };
    let dof = (points.len() as f64 - 2.0).max(1.0);
    let last_x = points.iter().map(|p| p.0).fold(f64::MIN, f64::max);
    Some(Line { slope, intercept, r2, residual_sd: (ss_res / dof).sqrt(), last_x, n: points.len(), mean_x, sxx })
}

impl Line {
    /// The value at `x`, with the 95% prediction interval of a new observation there when the
    /// errors are independent: Student's t over the residual spread, widened by the uncertainty
    /// of the line itself (`1 + 1/n + (x - mean)² / Sxx`). For autocorrelated series, such as
    /// snapshots of a cache, use [`fit_trend`].
    pub fn at(&self, x: f64) -> Estimate {
        let value = self.intercept + self.slope * x;
        let n = self.n as f64;
        let spread = (1.0 + 1.0 / n + (x - self.mean_x).powi(2) / self.sxx).sqrt();
        let half = t975(n - 2.0) * self.residual_sd * spread;
        Estimate { step: x - self.last_x, value, low: value - half, high: value + half }
    }
}

/// Holt's linear smoothing: a level and a trend.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Holt {
    /// The smoothed level at the last observation.
    pub level: f64,
    /// The smoothed change per step.
    pub trend: f64,
    /// Standard deviation of the one-step-ahead errors.
    pub error_sd: f64,
    /// The level weight the series was smoothed with.
    pub alpha: f64,
    /// The trend weight.
    pub beta: f64,
}

/// Smooths `series` (evenly spaced) with level weight `alpha` and trend weight `beta`, both in
/// (0, 1]; `None` with fewer than two points.
pub fn holt(series: &[f64], alpha: f64, beta: f64) -> Option<Holt> {
    if series.len() < 2 {
        return None;
    }
    let (mut level, mut trend) = (series[0], series[1] - series[0]);
    let mut errors = Vec::with_capacity(series.len());
    for &y in &series[1..] {
        let predicted = level + trend;
        errors.push(y - predicted);
        let previous = level;
        level = alpha * y + (1.0 - alpha) * (level + trend);
        trend = beta * (level - previous) + (1.0 - beta) * trend;
    }
    let error_sd = (errors.iter().map(|e| e * e).sum::<f64>() / errors.len() as f64).sqrt();
    Some(Holt { level, trend, error_sd, alpha, beta })
}

impl Holt {
    /// The forecast `h` steps ahead, with the 95% interval of the model Holt's method is optimal
    /// for, ETS(A,A,N) (Hyndman et al., *Forecasting with Exponential Smoothing*, table 6.1):
    /// variance `σ² (1 + (h - 1) (α² + α b h + b² h (2h - 1) / 6))` with `b = α β`, which grows
    /// with the cube of `h` as the smoothed trend's errors add up. It holds only for series that
    /// follow that model; [`fit_trend`] is the one calibrated on cache histories.
    pub fn ahead(&self, h: f64) -> Estimate {
        let value = self.level + h * self.trend;
        let (a, b) = (self.alpha, self.alpha * self.beta);
        let h1 = h.max(1.0);
        let variance =
            self.error_sd.powi(2) * (1.0 + (h1 - 1.0) * (a * a + a * b * h1 + b * b * h1 * (2.0 * h1 - 1.0) / 6.0));
        let half = Z95 * variance.sqrt();
        Estimate { step: h, value, low: value - half, high: value + half }
    }

    /// Steps until the forecast reaches `threshold`, when the trend heads there.
    pub fn steps_to(&self, threshold: f64) -> Option<f64> {
        steps_to(self.level, self.trend, threshold)
    }
}

/// Steps until `value + steps * rate` reaches `threshold` (0 when it is there now); `None`
/// when the rate is zero or heads away from it.
pub fn steps_to(value: f64, rate: f64, threshold: f64) -> Option<f64> {
    if value == threshold {
        return Some(0.0);
    }
    let steps = (threshold - value) / rate;
    (steps.is_finite() && steps > 0.0).then_some(steps)
}

/// Student's t quantile for a two-sided 95% interval with `dof` degrees of freedom (rounded
/// down, at least 1): the table to 30, then the Cornish-Fisher expansion around the normal
/// quantile, 1.96.
pub fn t975(dof: f64) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ];
    let nu = if dof.is_finite() { dof.floor().max(1.0) } else { f64::MAX };
    if nu <= 30.0 {
        return TABLE[nu as usize - 1];
    }
    let z = Z95;
    z + (z.powi(3) + z) / (4.0 * nu) + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * nu * nu)
}

/// Daily (or other) cycles a [`Trend`] fits: the first this many harmonics of the period.
const HARMONICS: usize = 2;
/// Terms of a [`Trend`] at most: a constant, the slope, and a cosine and a sine per harmonic.
const MAX_TERMS: usize = 2 + 2 * HARMONICS;
/// A cycle is fitted once the series spans this many periods.
const CYCLES_TO_FIT: f64 = 2.0;
/// The residuals' autocorrelation taken at most: beyond it a series is a random walk, whose
/// trend no interval of this model describes.
const MAX_AUTOCORRELATION: f64 = 0.99;

/// The terms of a [`Trend`]: a constant, `x` (centred), and the cycle's harmonics.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Terms {
    center: f64,
    period: Option<f64>,
}

impl Terms {
    fn len(&self) -> usize {
        2 + if self.period.is_some() { 2 * HARMONICS } else { 0 }
    }

    /// The terms at `x`; the first [`Terms::len`] are used.
    fn row(&self, x: f64) -> [f64; MAX_TERMS] {
        let mut row = [0.0; MAX_TERMS];
        (row[0], row[1]) = (1.0, x - self.center);
        if let Some(period) = self.period {
            for k in 1..=HARMONICS {
                let angle = std::f64::consts::TAU * k as f64 * x / period;
                (row[2 * k], row[2 * k + 1]) = (angle.cos(), angle.sin());
            }
        }
        row
    }
}

/// A trend fitted for forecasting: a least-squares line in time, plus the first harmonics of a
/// cycle (a day) when the series spans at least two, with what the fit says about its own
/// uncertainty.
///
/// The 95% interval of [`Trend::at`] is a prediction interval for the value that will be
/// observed: Student's t times the square root of the noise variance plus the variance of the
/// fitted value there. Snapshots of a cache are autocorrelated (memory wanders for hours), so
/// the residuals are taken as an AR(1) process: their lag-1 correlation `ρ` (corrected for its
/// small-sample bias) gives the coefficients' covariance `σ² (X'X)⁻¹ X'RX (X'X)⁻¹` with
/// `R = ρ^|i-j|`, the noise variance `σ²` from the residuals divided by `n - tr((X'X)⁻¹ X'RX)`,
/// and the degrees of freedom from the effective sample size `n (1 - ρ) / (1 + ρ)`. With
/// independent noise this is the textbook least-squares prediction interval. The further ahead,
/// the wider, as the slope's error is multiplied by the distance.
#[derive(Clone, Debug, PartialEq)]
pub struct Trend {
    terms: Terms,
    coefficients: Vec<f64>,
    covariance: Vec<Vec<f64>>,
    noise_variance: f64,
    dof: f64,
    /// The residuals' lag-1 autocorrelation used (0 to 0.99).
    pub autocorrelation: f64,
    /// The last x seen.
    pub last_x: f64,
    /// Points fitted.
    pub n: usize,
}

/// Fits a [`Trend`] through `(x, y)` points, with the harmonics of a cycle of `period` (in x's
/// unit) when they span two; `None` with fewer points than terms plus three, or when x does not
/// vary.
pub fn fit_trend(points: &[(f64, f64)], period: Option<f64>) -> Option<Trend> {
    let mut points = points.to_vec();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = points.len();
    let (first, last_x) = (points.first()?.0, points.last()?.0);
    let center = points.iter().map(|p| p.0).sum::<f64>() / n as f64;
    let period = period.filter(|p| *p > 0.0 && last_x - first >= CYCLES_TO_FIT * p);
    let terms = Terms { center, period };
    let k = terms.len();
    if n < k + 3 {
        return None;
    }
    let rows: Vec<[f64; MAX_TERMS]> = points.iter().map(|p| terms.row(p.0)).collect();
    let mut xtx = vec![vec![0.0; k]; k];
    let mut xty = vec![0.0; k];
    for (row, p) in rows.iter().zip(&points) {
        for i in 0..k {
            xty[i] += row[i] * p.1;
            for j in 0..k {
                xtx[i][j] += row[i] * row[j];
            }
        }
    }
    let inverse = invert(&xtx)?;
    let coefficients: Vec<f64> = (0..k).map(|i| (0..k).map(|j| inverse[i][j] * xty[j]).sum()).collect();
    let residuals: Vec<f64> = rows.iter().zip(&points).map(|(row, p)| p.1 - dot(&row[..k], &coefficients)).collect();
    let sse: f64 = residuals.iter().map(|e| e * e).sum();
    let autocorrelation = if sse > 0.0 {
        let lag1: f64 = residuals.windows(2).map(|w| w[0] * w[1]).sum::<f64>() / sse;
        // Kendall's correction: the estimate falls short by about (1 + 3ρ) / n.
        (lag1 + (1.0 + 3.0 * lag1) / n as f64).clamp(0.0, MAX_AUTOCORRELATION)
    } else {
        0.0
    };
    // X'RX, R = ρ^|i-j|, column by column: (Rv)_i = f_i + g_i - v_i, f and g the forward and
    // backward exponential sums of v.
    let correlated: Vec<Vec<f64>> = (0..k)
        .map(|j| {
            let column: Vec<f64> = rows.iter().map(|r| r[j]).collect();
            ar1_times(&column, autocorrelation)
        })
        .collect();
    let xrx: Vec<Vec<f64>> = (0..k)
        .map(|i| (0..k).map(|j| rows.iter().zip(&correlated[j]).map(|(r, c)| r[i] * c).sum()).collect())
        .collect();
    let a = multiply(&inverse, &xrx);
    let trace: f64 = (0..k).map(|i| a[i][i]).sum();
    let noise_variance = sse / (n as f64 - trace).max(1.0);
    let covariance: Vec<Vec<f64>> =
        multiply(&a, &inverse).into_iter().map(|row| row.into_iter().map(|v| v * noise_variance).collect()).collect();
    let effective = n as f64 * (1.0 - autocorrelation) / (1.0 + autocorrelation);
    let dof = (effective - k as f64).max(1.0);
    Some(Trend { terms, coefficients, covariance, noise_variance, dof, autocorrelation, last_x, n })
}

impl Trend {
    /// The value expected at `x` (cycle included), with its 95% prediction interval.
    pub fn at(&self, x: f64) -> Estimate {
        let row = self.terms.row(x);
        let row = &row[..self.coefficients.len()];
        let value = dot(row, &self.coefficients);
        let fitted: f64 = (0..row.len()).map(|i| row[i] * dot(&self.covariance[i], row)).sum();
        let half = t975(self.dof) * (fitted.max(0.0) + self.noise_variance).sqrt();
        Estimate { step: x - self.last_x, value, low: value - half, high: value + half }
    }

    /// Change per unit of x.
    pub fn slope(&self) -> f64 {
        self.coefficients[1]
    }

    /// Standard error of the slope.
    pub fn slope_se(&self) -> f64 {
        self.covariance[1][1].max(0.0).sqrt()
    }

    /// The line (without the cycle) at the last x.
    pub fn level(&self) -> f64 {
        self.coefficients[0] + self.coefficients[1] * (self.last_x - self.terms.center)
    }

    /// Standard deviation of the noise about the trend.
    pub fn noise_sd(&self) -> f64 {
        self.noise_variance.sqrt()
    }

    /// Whether the slope differs from zero beyond its 95% interval.
    pub fn slope_is_significant(&self) -> bool {
        self.slope().abs() > t975(self.dof) * self.slope_se()
    }

    /// Units of x from the last x until the line reaches `threshold`, when it heads there and
    /// its slope is not just noise ([`Trend::slope_is_significant`]).
    pub fn time_to(&self, threshold: f64) -> Option<f64> {
        self.slope_is_significant().then(|| steps_to(self.level(), self.slope(), threshold)).flatten()
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn multiply(a: &[Vec<f64>], b: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let k = b.len();
    a.iter().map(|row| (0..b[0].len()).map(|j| (0..k).map(|i| row[i] * b[i][j]).sum()).collect()).collect()
}

/// `R v` for `R = ρ^|i-j|`, in linear time.
fn ar1_times(v: &[f64], rho: f64) -> Vec<f64> {
    let mut forward = vec![0.0; v.len()];
    let mut backward = vec![0.0; v.len()];
    for i in 0..v.len() {
        forward[i] = v[i] + if i > 0 { rho * forward[i - 1] } else { 0.0 };
    }
    for i in (0..v.len()).rev() {
        backward[i] = v[i] + if i + 1 < v.len() { rho * backward[i + 1] } else { 0.0 };
    }
    (0..v.len()).map(|i| forward[i] + backward[i] - v[i]).collect()
}

/// The inverse of a small matrix (Gauss-Jordan, partial pivoting); `None` when singular.
fn invert(m: &[Vec<f64>]) -> Option<Vec<Vec<f64>>> {
    let k = m.len();
    let scale = m.iter().flatten().fold(0.0f64, |s, v| s.max(v.abs()));
    let mut a: Vec<Vec<f64>> = m
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let mut row = row.clone();
            row.extend((0..k).map(|j| if i == j { 1.0 } else { 0.0 }));
            row
        })
        .collect();
    for col in 0..k {
        let pivot = (col..k).max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs()))?;
        if a[pivot][col].abs() <= scale * 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        let p = a[col][col];
        a[col].iter_mut().for_each(|v| *v /= p);
        let pivot_row = a[col].clone();
        for (r, row) in a.iter_mut().enumerate() {
            let factor = row[col];
            if r != col && factor != 0.0 {
                row.iter_mut().zip(&pivot_row).for_each(|(v, p)| *v -= factor * p);
            }
        }
    }
    Some(a.into_iter().map(|row| row[k..].to_vec()).collect())
}

/// The mean of the last `window` values (all of them when fewer); `None` when empty.
pub fn moving_average(series: &[f64], window: usize) -> Option<f64> {
    let tail = &series[series.len().saturating_sub(window.max(1))..];
    (!tail.is_empty()).then(|| tail.iter().sum::<f64>() / tail.len() as f64)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 }
}

/// A value far from the rest.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Anomaly {
    /// Its position in the series.
    pub index: usize,
    /// The value.
    pub value: f64,
    /// The series' median, what the value is judged against.
    pub median: f64,
    /// Its modified z-score (positive: above the median).
    pub score: f64,
}

/// The usual threshold of the modified z-score (Iglewicz and Hoaglin).
pub const ANOMALY_THRESHOLD: f64 = 3.5;

/// The least change from the median, as a share of it, that an anomaly must show (20%).
pub const MIN_RELATIVE_CHANGE: f64 = 0.2;

/// How far from the median a value must be, besides its z-score, to be an anomaly: a z-score
/// alone flags any wobble of a quiet series (0.307 against 0.314 ms is "5 MADs" when every
/// other probe took 0.307).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct MinEffect {
    /// A share of the median (0.2: 20%).
    pub relative: f64,
    /// An amount in the metric's own unit (1 for 1 ms of latency).
    pub absolute: f64,
}

impl MinEffect {
    /// No minimum: the z-score alone decides.
    pub const NONE: Self = Self { relative: 0.0, absolute: 0.0 };

    /// [`MIN_RELATIVE_CHANGE`] and at least `absolute`.
    pub const fn at_least(absolute: f64) -> Self {
        Self { relative: MIN_RELATIVE_CHANGE, absolute }
    }

    /// Whether `value` is far enough from `median`.
    pub fn reached(&self, value: f64, median: f64) -> bool {
        let change = (value - median).abs();
        change >= self.absolute && change >= self.relative * median.abs()
    }
}

/// Values whose modified z-score `0.6745 (x - median) / MAD` is beyond `threshold` in
/// absolute value and whose distance from the median reaches `min_effect`. When the MAD is zero
/// (more than half the values equal), the mean absolute deviation stands in
/// (`(x - median) / (1.2533 * MeanAD)`); when that is zero too, the series is flat and nothing
/// is anomalous.
pub fn anomalies(series: &[f64], threshold: f64, min_effect: MinEffect) -> Vec<Anomaly> {
    if series.len() < 3 {
        return Vec::new();
    }
    let med = median(&mut series.to_vec());
    let mut deviations: Vec<f64> = series.iter().map(|x| (x - med).abs()).collect();
    let mad = median(&mut deviations);
    let score = |x: f64| -> Option<f64> {
        if mad > 0.0 {
            return Some(0.6745 * (x - med) / mad);
        }
        let mean_ad = series.iter().map(|v| (v - med).abs()).sum::<f64>() / series.len() as f64;
        (mean_ad > 0.0).then(|| (x - med) / (1.253_314 * mean_ad))
    };
    series
        .iter()
        .enumerate()
        .filter_map(|(index, &value)| {
            let score = score(value)?;
            (score.abs() > threshold && min_effect.reached(value, med)).then_some(Anomaly {
                index,
                value,
                median: med,
                score,
            })
        })
        .collect()
}

/// A recurring stretch of low usage.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Window {
    /// First hour (0-23).
    pub start_hour: u32,
    /// Length in hours.
    pub duration_hours: u32,
    /// How sure: 1 when the window's usage is nil, falling to 0 at the threshold.
    pub confidence: f64,
}

/// Low-usage windows (seed 000's `predict_maintenance_windows`): runs of `length` consecutive
/// hours (wrapping past midnight) each under `fraction` of the daily average, from an hourly
/// usage profile. Overlapping runs are kept, best first.
pub fn low_usage_windows(hourly: &[f64; 24], fraction: f64, length: u32) -> Vec<Window> {
    let average = hourly.iter().sum::<f64>() / 24.0;
    let limit = average * fraction;
    if average <= 0.0 {
        return Vec::new();
    }
    let mut windows: Vec<Window> = (0..24u32)
        .filter_map(|start| {
            let hours: Vec<f64> = (0..length).map(|i| hourly[((start + i) % 24) as usize]).collect();
            hours.iter().all(|h| *h < limit).then(|| {
                let mean = hours.iter().sum::<f64>() / hours.len() as f64;
                Window { start_hour: start, duration_hours: length, confidence: 1.0 - mean / limit }
            })
        })
        .collect();
    windows.sort_by(|a, b| b.confidence.total_cmp(&a.confidence).then(a.start_hour.cmp(&b.start_hour)));
    windows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn regression_finds_an_exact_trend_and_a_flat_series() {
        let points: Vec<(f64, f64)> = (0..10).map(|i| (f64::from(i), 0.9 - 0.01 * f64::from(i))).collect();
        let line = linear_regression(&points).unwrap();
        assert!(close(line.slope, -0.01) && close(line.intercept, 0.9) && close(line.r2, 1.0));
        assert!(line.residual_sd < 1e-12);
        let week = line.at(16.0);
        assert!(close(week.value, 0.74) && close(week.step, 7.0) && close(week.low, week.high));
        let flat = linear_regression(&[(0.0, 5.0), (1.0, 5.0), (2.0, 5.0)]).unwrap();
        assert!(close(flat.slope, 0.0) && close(flat.r2, 0.0));
        assert!(linear_regression(&[(1.0, 1.0)]).is_none());
        assert!(linear_regression(&[(1.0, 1.0), (1.0, 2.0)]).is_none());
    }

    #[test]
    fn holt_follows_a_linear_trend_and_reports_time_to_threshold() {
        let series: Vec<f64> = (0..20).map(|i| 100.0 + 5.0 * f64::from(i)).collect();
        let fit = holt(&series, 0.5, 0.3).unwrap();
        assert!(close(fit.level, 195.0) && close(fit.trend, 5.0) && fit.error_sd < 1e-9);
        assert!(close(fit.ahead(7.0).value, 230.0));
        // 195 now, +5 a step: 250 is 11 steps away; a falling threshold is never reached.
        assert!(close(fit.steps_to(250.0).unwrap(), 11.0));
        assert_eq!(fit.steps_to(100.0), None);
        let noisy: Vec<f64> = (0..30).map(|i| 100.0 + f64::from(i) + if i % 2 == 0 { 3.0 } else { -3.0 }).collect();
        let fit = holt(&noisy, 0.3, 0.1).unwrap();
        let week = fit.ahead(7.0);
        assert!(week.low < week.value && week.value < week.high && (fit.trend - 1.0).abs() < 0.5, "{fit:?}");
    }

    /// SplitMix64 and Box-Muller: seeded normal noise.
    struct Noise(u64);

    impl Noise {
        fn uniform(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        }

        fn normal(&mut self) -> f64 {
            let (u1, u2) = (1.0 - self.uniform(), self.uniform());
            (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        }

        /// `n` values of an AR(1) process with lag-1 correlation `rho` and marginal sd `sd`.
        fn ar1(&mut self, n: usize, rho: f64, sd: f64) -> Vec<f64> {
            let mut e = sd * self.normal();
            (0..n)
                .map(|_| {
                    e = rho * e + (1.0 - rho * rho).sqrt() * sd * self.normal();
                    e
                })
                .collect()
        }
    }

    #[test]
    fn t975_is_students_t_and_tends_to_the_normal() {
        assert_eq!((t975(1.0), t975(2.9), t975(10.0), t975(30.0)), (12.706, 4.303, 2.228, 2.042));
        assert!((t975(60.0) - 2.000).abs() < 1e-3 && (t975(120.0) - 1.980).abs() < 1e-3);
        assert!((t975(f64::INFINITY) - Z95).abs() < 1e-12 && t975(0.2) == 12.706);
    }

    #[test]
    fn a_trend_recovers_a_line_and_its_daily_cycle() {
        // Three days every 15 minutes: +2 a day, a daily cycle with a second harmonic.
        let cycle = |x: f64| 3.0 * (std::f64::consts::TAU * x).sin() + (2.0 * std::f64::consts::TAU * x).cos();
        let points: Vec<(f64, f64)> =
            (0..288).map(|i| f64::from(i) / 96.0).map(|x| (x, 5.0 + 2.0 * x + cycle(x))).collect();
        let trend = fit_trend(&points, Some(1.0)).unwrap();
        assert!((trend.slope() - 2.0).abs() < 1e-9 && trend.noise_sd() < 1e-9, "{trend:?}");
        let last = 287.0 / 96.0;
        assert!((trend.level() - (5.0 + 2.0 * last)).abs() < 1e-9);
        // A week after the last point, cycle included; an exact fit has no interval to speak of.
        let week = trend.at(last + 7.0);
        assert!((week.value - (5.0 + 2.0 * (last + 7.0) + cycle(last + 7.0))).abs() < 1e-6, "{week:?}");
        assert!(week.high - week.low < 1e-6 && (week.step - 7.0).abs() < 1e-12);
        // 21 - level at +2 a day.
        assert!((trend.time_to(21.0).unwrap() - (21.0 - trend.level()) / 2.0).abs() < 1e-9);
        // Under two periods of data, no cycle is fitted: it stays in the noise.
        let short = fit_trend(&points[..150], Some(1.0)).unwrap();
        assert!(short.noise_sd() > 1.0, "{short:?}");
        assert!(fit_trend(&points[..4], None).is_none() && fit_trend(&points[..5], None).is_some());
        assert!(fit_trend(&[(1.0, 1.0); 10], None).is_none());
    }

    #[test]
    fn trend_intervals_widen_with_the_horizon_and_with_autocorrelated_noise() {
        let mut noise = Noise(7);
        let line = |noise: &[f64]| -> Trend {
            let points: Vec<(f64, f64)> =
                noise.iter().enumerate().map(|(i, e)| (i as f64 / 96.0, 100.0 + i as f64 / 96.0 + e)).collect();
            fit_trend(&points, Some(1.0)).unwrap()
        };
        let white = line(&noise.ar1(480, 0.0, 1.0));
        let wandering = line(&noise.ar1(480, 0.95, 1.0));
        assert!(white.autocorrelation < 0.1 && (wandering.autocorrelation - 0.95).abs() < 0.05, "{wandering:?}");
        let width = |t: &Trend, ahead: f64| {
            let e = t.at(t.last_x + ahead);
            e.high - e.low
        };
        // White noise of sd 1: about ±1.96 next to the data, a little more a week out.
        assert!((width(&white, 0.0) / 2.0 - Z95).abs() < 0.3, "{}", width(&white, 0.0));
        assert!(width(&white, 7.0) > width(&white, 1.0) && width(&white, 1.0) > width(&white, 0.0));
        // The same marginal noise, wandering for hours: the slope is far less certain (an AR(1)
        // of 0.95 has a 20th of the independent points), and so is next week.
        assert!(wandering.slope_se() > 3.0 * white.slope_se(), "{wandering:?}");
        assert!(width(&wandering, 7.0) > 1.3 * width(&white, 7.0), "{wandering:?}");
        // Independent errors: the textbook prediction interval widens the same way.
        let points: Vec<(f64, f64)> =
            noise.ar1(100, 0.0, 1.0).iter().enumerate().map(|(i, e)| (i as f64, *e)).collect();
        let fit = linear_regression(&points).unwrap();
        let (near, far) = (fit.at(fit.mean_x), fit.at(fit.last_x + 100.0));
        // sqrt(1 + 1/n + d²/Sxx) against sqrt(1 + 1/n), d = 149.5 and Sxx = 100 (100² - 1) / 12.
        let widening = ((1.01 + 149.5f64.powi(2) / 83_325.0) / 1.01).sqrt();
        assert!(((far.high - far.low) / (near.high - near.low) - widening).abs() < 1e-9, "{near:?} {far:?}");
        assert!(close(near.high - near.value, t975(98.0) * fit.residual_sd * 1.01f64.sqrt()));
    }

    #[test]
    fn a_slope_within_its_noise_reaches_no_threshold() {
        let mut noise = Noise(3);
        let flat: Vec<(f64, f64)> =
            noise.ar1(300, 0.5, 5.0).iter().enumerate().map(|(i, e)| (i as f64 / 96.0, 100.0 + e)).collect();
        let trend = fit_trend(&flat, Some(1.0)).unwrap();
        assert!(!trend.slope_is_significant(), "{trend:?}");
        assert_eq!((trend.time_to(1000.0), trend.time_to(-1000.0)), (None, None));
        let rising: Vec<(f64, f64)> = flat.iter().map(|(x, y)| (*x, y + 30.0 * x)).collect();
        let trend = fit_trend(&rising, Some(1.0)).unwrap();
        assert!(trend.slope_is_significant() && trend.time_to(1000.0).is_some(), "{trend:?}");
    }

    #[test]
    fn holt_intervals_are_those_of_its_model() {
        let fit = Holt { level: 10.0, trend: 1.0, error_sd: 2.0, alpha: 0.5, beta: 0.2 };
        let one = fit.ahead(1.0);
        assert!(close(one.value, 11.0) && close(one.high - one.value, Z95 * 2.0));
        // h = 10, b = 0.1: σ² (1 + 9 (0.25 + 0.5 + 0.01 * 10 * 19 / 6)).
        let ten = fit.ahead(10.0);
        assert!(close(ten.high - ten.value, Z95 * (4.0f64 * (1.0 + 9.0 * (0.25 + 0.5 + 1.9 / 6.0))).sqrt()));
    }

    #[test]
    fn anomalies_need_a_minimum_effect() {
        // 0.307 ms nearly always, 0.314 ms now and then: far out by the z-score, not by 1 ms.
        let wobble: Vec<f64> = (0..96).map(|i| if i % 20 == 0 { 0.314 } else { 0.307 }).collect();
        assert_eq!(anomalies(&wobble, ANOMALY_THRESHOLD, MinEffect::NONE).len(), 5);
        assert!(anomalies(&wobble, ANOMALY_THRESHOLD, MinEffect::at_least(1.0)).is_empty());
        let mut jump = wobble.clone();
        jump[40] = 5.0;
        let found = anomalies(&jump, ANOMALY_THRESHOLD, MinEffect::at_least(1.0));
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].index, found[0].value, found[0].median), (40, 5.0, 0.307));
        // The relative floor: 130 against 100 is 30%, far enough; 115 is not.
        let series = [100.0, 101.0, 99.0, 100.0, 100.5, 99.5, 130.0, 115.0, 100.0];
        let found = anomalies(&series, ANOMALY_THRESHOLD, MinEffect::at_least(0.0));
        assert_eq!(found.iter().map(|a| a.index).collect::<Vec<_>>(), [6]);
        assert_eq!(anomalies(&series, ANOMALY_THRESHOLD, MinEffect::NONE).len(), 2);
    }

    #[test]
    fn steps_to_a_threshold() {
        assert_eq!(steps_to(80.0, 2.0, 100.0), Some(10.0));
        assert_eq!(steps_to(80.0, -2.0, 60.0), Some(10.0));
        assert_eq!(steps_to(80.0, -2.0, 100.0), None);
        assert_eq!(steps_to(80.0, 0.0, 100.0), None);
        assert_eq!(steps_to(100.0, 0.0, 100.0), Some(0.0));
    }

    #[test]
    fn moving_average_of_the_tail() {
        assert_eq!(moving_average(&[1.0, 2.0, 3.0, 10.0], 2), Some(6.5));
        assert_eq!(moving_average(&[4.0], 5), Some(4.0));
        assert_eq!(moving_average(&[], 3), None);
    }

    #[test]
    fn anomalies_find_a_spike_and_a_step_but_not_a_flat_series() {
        let mut spike = vec![10.0, 11.0, 9.0, 10.0, 12.0, 10.0, 9.0, 11.0, 10.0, 10.0];
        spike[6] = 60.0;
        let found = anomalies(&spike, ANOMALY_THRESHOLD, MinEffect::NONE);
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].index, found[0].value), (6, 60.0));
        assert!(found[0].score > ANOMALY_THRESHOLD);
        // A step down that lasts is a new normal once it is most of the series...
        let step: Vec<f64> = (0..20).map(|i| if i < 15 { 100.0 + f64::from(i % 3) } else { 40.0 }).collect();
        let found = anomalies(&step, ANOMALY_THRESHOLD, MinEffect::NONE);
        assert_eq!(found.iter().map(|a| a.index).collect::<Vec<_>>(), vec![15, 16, 17, 18, 19]);
        assert!(found.iter().all(|a| a.score < 0.0));
        // Flat: MAD and mean absolute deviation are both zero, nothing stands out.
        assert!(anomalies(&[7.0; 12], ANOMALY_THRESHOLD, MinEffect::NONE).is_empty());
        // Zero MAD but not flat: the mean absolute deviation stands in.
        let mostly_flat = [5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 50.0];
        let found = anomalies(&mostly_flat, ANOMALY_THRESHOLD, MinEffect::NONE);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].index, 7);
    }

    #[test]
    fn low_usage_windows_by_the_seed_rule() {
        let mut hourly = [100.0; 24];
        for hour in [2, 3, 4] {
            hourly[hour] = 10.0;
        }
        hourly[23] = 5.0;
        hourly[0] = 5.0;
        let windows = low_usage_windows(&hourly, 0.3, 2);
        let starts: Vec<u32> = windows.iter().map(|w| w.start_hour).collect();
        // 23-00 wraps past midnight and is the quietest; 02-03 and 03-04 follow.
        assert_eq!(starts, vec![23, 2, 3]);
        assert!(windows[0].confidence > windows[1].confidence);
        assert!(windows.iter().all(|w| w.duration_hours == 2 && w.confidence > 0.0 && w.confidence <= 1.0));
        assert!(low_usage_windows(&[50.0; 24], 0.3, 2).is_empty());
        assert!(low_usage_windows(&[0.0; 24], 0.3, 2).is_empty());
    }
}
