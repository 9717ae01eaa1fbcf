//! The four DORA keys over a window, with their bands and what each band means.

use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct DoraJ {
    pub window: WindowJ,
    pub service: Option<String>,
    pub team: Option<String>,
    pub environment: Option<String>,
    /// The services counted.
    pub services: Vec<String>,
    pub deployment_frequency: FrequencyJ,
    pub lead_time_for_changes: LeadTimeJ,
    pub change_failure_rate: FailureRateJ,
    pub time_to_restore: RestoreJ,
    pub bands: BandsJ,
}

#[derive(Debug, Serialize)]
pub struct WindowJ {
    pub from: String,
    pub to: String,
    pub days: f64,
    /// As asked: `30d`, `12w`.
    pub text: String,
}

#[derive(Debug, Serialize)]
pub struct FrequencyJ {
    pub deployments: usize,
    pub per_day: f64,
    pub median_deploy_days_per_week: f64,
    pub band: String,
}

#[derive(Debug, Serialize)]
pub struct LeadTimeJ {
    pub median_hours: Option<f64>,
    pub changes: usize,
    /// Deploys whose commits no mirror could list.
    pub deploys_without_range: usize,
    pub band: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct FailureRateJ {
    pub rate: Option<f64>,
    pub failed_deployments: usize,
    pub deployments: usize,
    pub band: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct RestoreJ {
    pub median_hours: Option<f64>,
    pub restored: usize,
    pub unrestored: usize,
    pub band: Option<String>,
}

/// What each band means for each key, and where its thresholds come from.
#[derive(Debug, Serialize)]
pub struct BandsJ {
    pub deployment_frequency: BandJ,
    pub lead_time_for_changes: BandJ,
    pub change_failure_rate: BandJ,
    pub time_to_restore: BandJ,
}

#[derive(Debug, Serialize)]
pub struct BandJ {
    pub source: &'static str,
    pub elite: &'static str,
    pub high: &'static str,
    pub medium: &'static str,
    pub low: &'static str,
}
