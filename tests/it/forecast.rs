//! Forecasts, reports and anomalies on synthetic histories with a known truth.
