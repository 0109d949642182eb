//! Forecasts, anomalies and low-usage windows over metric series (seed 000's "Predictive
//! Analytics", seed 002's capacity planning): pure functions over numbers, so analytics, the
//! optimizer and the scheduler share one tested implementation.
//!
//! - cache size: Holt's linear (double exponential) smoothing;
//! - hit ratio: least-squares linear regression;
//! - response time: moving average;
//! - anomalies: the median/MAD modified z-score (Iglewicz and Hoaglin), with the mean absolute
//!   deviation standing in when the MAD is zero;
//! - low-usage windows: hours under a fraction of the daily average, in runs of a given length.

use serde::Serialize;

/// z for a two-sided 95% interval.
const Z95: f64 = 1.959_964;

/// A forecast value with a 95% interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Estimate {
    /// Steps ahead of the last observation.
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
    Some(Line { slope, intercept, r2, residual_sd: (ss_res / dof).sqrt(), last_x })
}

impl Line {
    /// The value at `x`, with a 95% interval from the residual spread.
    pub fn at(&self, x: f64) -> Estimate {
        let value = self.intercept + self.slope * x;
        let half = Z95 * self.residual_sd;
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
    Some(Holt { level, trend, error_sd })
}

impl Holt {
    /// The forecast `h` steps ahead; the interval widens with the square root of `h`.
    pub fn ahead(&self, h: f64) -> Estimate {
        let value = self.level + h * self.trend;
        let half = Z95 * self.error_sd * h.max(1.0).sqrt();
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
    /// Its modified z-score (positive: above the median).
    pub score: f64,
}

/// The usual threshold of the modified z-score (Iglewicz and Hoaglin).
pub const ANOMALY_THRESHOLD: f64 = 3.5;

/// Values whose modified z-score `0.6745 (x - median) / MAD` is beyond `threshold` in
/// absolute value. When the MAD is zero (more than half the values equal), the mean absolute
/// deviation stands in (`(x - median) / (1.2533 * MeanAD)`); when that is zero too, the series
/// is flat and nothing is anomalous.
pub fn anomalies(series: &[f64], threshold: f64) -> Vec<Anomaly> {
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
            (score.abs() > threshold).then_some(Anomaly { index, value, score })
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
        let found = anomalies(&spike, ANOMALY_THRESHOLD);
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].index, found[0].value), (6, 60.0));
        assert!(found[0].score > ANOMALY_THRESHOLD);
        // A step down that lasts is a new normal once it is most of the series...
        let step: Vec<f64> = (0..20).map(|i| if i < 15 { 100.0 + f64::from(i % 3) } else { 40.0 }).collect();
        let found = anomalies(&step, ANOMALY_THRESHOLD);
        assert_eq!(found.iter().map(|a| a.index).collect::<Vec<_>>(), vec![15, 16, 17, 18, 19]);
        assert!(found.iter().all(|a| a.score < 0.0));
        // Flat: MAD and mean absolute deviation are both zero, nothing stands out.
        assert!(anomalies(&[7.0; 12], ANOMALY_THRESHOLD).is_empty());
        // Zero MAD but not flat: the mean absolute deviation stands in.
        let mostly_flat = [5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 50.0];
        let found = anomalies(&mostly_flat, ANOMALY_THRESHOLD);
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
