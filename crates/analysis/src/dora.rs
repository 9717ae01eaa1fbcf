//! The four DORA metrics over a window of deploys, from what spanblame already records:
//! deployment frequency, lead time for changes (commit → its deploy), change failure rate
//! (deploys with a regression attributed to them) and time to restore (the regression's
//! finding → the deploy or person that resolved it), each with its performance band.
//!
//! The rules follow Four Keys (research/change-intelligence.md §5): lead time is the median
//! over (deploy, change) pairs excluding non-positive values; frequency is banded by the median
//! number of days per week with a deploy (≥ 3: daily), then whether the median week, then the
//! median month, has one. Bands are DORA 2024's for frequency, lead time and restore; for the
//! failure rate, whose 2024 clusters are not monotonic, Four Keys' buckets (DORA 2019).

const SECS_PER_HOUR: f64 = 3600.0;
const SECS_PER_DAY: f64 = 24.0 * SECS_PER_HOUR;
const NANOS_PER_SEC: u64 = 1_000_000_000;
const NANOS_PER_DAY: u64 = 86_400 * NANOS_PER_SEC;

/// One deploy in the window, with what the metrics need.
#[derive(Debug, Clone, PartialEq)]
pub struct DeployFacts {
    pub started_unix_nanos: u64,
    /// Author times of the commits it shipped (empty when the range is unknown).
    pub change_times_unix_secs: Vec<i64>,
    /// A regression was attributed to it: (first seen, restored at; `None` while open).
    pub failure: Option<Failure>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    pub detected_unix_nanos: u64,
    pub restored_unix_nanos: Option<u64>,
}

/// A performance band, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Band {
    Elite,
    High,
    Medium,
    Low,
}

impl Band {
    pub fn as_str(self) -> &'static str {
        match self {
            Band::Elite => "elite",
            Band::High => "high",
            Band::Medium => "medium",
            Band::Low => "low",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Dora {
    pub window_days: f64,
    pub deployments: usize,
    pub deploys_per_day: f64,
    /// The median number of days with a deploy per week (full weeks in the window).
    pub median_deploy_days_per_week: f64,
    pub frequency_band: Band,
    pub lead_time_median_secs: Option<f64>,
    /// (deploy, change) pairs the median is taken over.
    pub lead_time_changes: usize,
    pub lead_time_band: Option<Band>,
    pub failed_deployments: usize,
    pub change_failure_rate: Option<f64>,
    pub change_failure_band: Option<Band>,
    pub restore_median_secs: Option<f64>,
    pub restored: usize,
    /// Failures still open: not in the median.
    pub unrestored: usize,
    pub restore_band: Option<Band>,
}

/// The metrics of `deploys` started in `[from, to)`.
pub fn dora(deploys: &[DeployFacts], from_unix_nanos: u64, to_unix_nanos: u64) -> Dora {
    let span_nanos = to_unix_nanos.saturating_sub(from_unix_nanos).max(1);
    let window_days = span_nanos as f64 / NANOS_PER_DAY as f64;
    let inside: Vec<&DeployFacts> = deploys
        .iter()
        .filter(|d| (from_unix_nanos..to_unix_nanos).contains(&d.started_unix_nanos))
        .collect();

    // Frequency: days with a deploy, per full week back from the window's end (at least one).
    let day_of = |t: u64| (to_unix_nanos - 1 - t) / NANOS_PER_DAY;
    let days = (span_nanos / NANOS_PER_DAY).max(1);
    let mut deploy_days = vec![false; days as usize];
    for d in &inside {
        if let Some(slot) = deploy_days.get_mut(day_of(d.started_unix_nanos) as usize) {
            *slot = true;
        }
    }
    let per = |period: usize| -> Vec<f64> {
        let periods = (deploy_days.len() / period).max(1);
        (0..periods)
            .map(|p| {
                let end = ((p + 1) * period).min(deploy_days.len());
                deploy_days[p * period..end].iter().filter(|d| **d).count() as f64
            })
            .collect()
    };
    let week_days = median(per(7)).unwrap_or(0.0);
    let frequency_band = if week_days >= 3.0 {
        Band::Elite
    } else if week_days >= 1.0 {
        Band::High
    } else if median(per(30)).unwrap_or(0.0) >= 1.0 {
        Band::Medium
    } else {
        Band::Low
    };

    let lead_times: Vec<f64> = inside
        .iter()
        .flat_map(|d| {
            let deployed = (d.started_unix_nanos / NANOS_PER_SEC) as i64;
            d.change_times_unix_secs.iter().map(move |&t| (deployed - t) as f64)
        })
        .filter(|&secs| secs > 0.0)
        .collect();
    let lead_time_changes = lead_times.len();
    let lead_time_median_secs = median(lead_times);
    let lead_time_band = lead_time_median_secs.map(|secs| match secs / SECS_PER_DAY {
        d if d < 1.0 => Band::Elite,
        d if d < 7.0 => Band::High,
        d if d < 30.0 => Band::Medium,
        _ => Band::Low,
    });

    let failures: Vec<Failure> = inside.iter().filter_map(|d| d.failure).collect();
    let change_failure_rate =
        (!inside.is_empty()).then(|| failures.len() as f64 / inside.len() as f64);
    let change_failure_band = change_failure_rate.map(|rate| match rate {
        r if r <= 0.15 => Band::Elite,
        r if r <= 0.45 => Band::Medium,
        _ => Band::Low,
    });
    let restore_times: Vec<f64> = failures
        .iter()
        .filter_map(|f| {
            let restored = f.restored_unix_nanos?;
            Some(restored.saturating_sub(f.detected_unix_nanos) as f64 / NANOS_PER_SEC as f64)
        })
        .collect();
    let restored = restore_times.len();
    let restore_median_secs = median(restore_times);
    let restore_band = restore_median_secs.map(|secs| match secs / SECS_PER_HOUR {
        h if h < 1.0 => Band::Elite,
        h if h < 24.0 => Band::High,
        h if h < 7.0 * 24.0 => Band::Medium,
        _ => Band::Low,
    });

    Dora {
        window_days,
        deployments: inside.len(),
        deploys_per_day: inside.len() as f64 / window_days,
        median_deploy_days_per_week: week_days,
        frequency_band,
        lead_time_median_secs,
        lead_time_changes,
        lead_time_band,
        failed_deployments: failures.len(),
        change_failure_rate,
        change_failure_band,
        restore_median_secs,
        restored,
        unrestored: failures.len() - restored,
        restore_band,
    }
}

/// The median (the mean of the middle two for an even count); `None` when empty.
fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = NANOS_PER_DAY;
    const HOUR: u64 = 3600 * NANOS_PER_SEC;
    /// 2026-01-01T00:00:00Z.
    const T0: u64 = 1_767_225_600 * NANOS_PER_SEC;

    fn deploy(
        at: u64,
        changes_hours_before: &[u64],
        failure: Option<(u64, Option<u64>)>,
    ) -> DeployFacts {
        DeployFacts {
            started_unix_nanos: at,
            change_times_unix_secs: changes_hours_before
                .iter()
                .map(|h| ((at - h * HOUR) / NANOS_PER_SEC) as i64)
                .collect(),
            failure: failure.map(|(detected, restored)| Failure {
                detected_unix_nanos: detected,
                restored_unix_nanos: restored,
            }),
        }
    }

    #[test]
    fn a_scripted_history_gives_the_hand_computed_numbers() {
        // 14 days; deploys on days 0, 1, 2, 3 (week 1: 4 days) and 8, 10 (week 2: 2 days).
        let from = T0;
        let to = T0 + 14 * DAY;
        let history = vec![
            deploy(T0 + 2 * HOUR, &[1, 5], None),
            deploy(
                T0 + DAY + 2 * HOUR,
                &[30],
                Some((T0 + DAY + 3 * HOUR, Some(T0 + DAY + 4 * HOUR))),
            ),
            deploy(T0 + 2 * DAY + 2 * HOUR, &[2], None),
            deploy(
                T0 + 3 * DAY + 2 * HOUR,
                &[48, 0],
                Some((T0 + 3 * DAY + 3 * HOUR, Some(T0 + 3 * DAY + 33 * HOUR))),
            ),
            deploy(T0 + 8 * DAY, &[10], None),
            deploy(T0 + 10 * DAY, &[], Some((T0 + 10 * DAY + HOUR, None))),
            // Outside the window: ignored.
            deploy(T0 + 20 * DAY, &[1], Some((T0 + 20 * DAY, None))),
        ];
        let dora = dora(&history, from, to);
        assert_eq!(dora.deployments, 6);
        assert!((dora.deploys_per_day - 6.0 / 14.0).abs() < 1e-12);
        // Weeks back from the end: days 7..13 hold days 8 and 10 (2 days); days 0..6 hold 4.
        assert_eq!(dora.median_deploy_days_per_week, 3.0, "median of 2 and 4");
        assert_eq!(dora.frequency_band, Band::Elite);
        // Lead times in hours: 1, 5, 30, 2, 48, 10 (the 0 is excluded) → median of
        // 1 2 5 10 30 48 = (5 + 10) / 2 = 7.5 h.
        assert_eq!(dora.lead_time_changes, 6);
        assert_eq!(dora.lead_time_median_secs, Some(7.5 * 3600.0));
        assert_eq!(dora.lead_time_band, Some(Band::Elite));
        // 3 of 6 deploys failed.
        assert_eq!((dora.failed_deployments, dora.change_failure_rate), (3, Some(0.5)));
        assert_eq!(dora.change_failure_band, Some(Band::Low));
        // Restored after 1 h and 30 h; one still open.
        assert_eq!((dora.restored, dora.unrestored), (2, 1));
        assert_eq!(dora.restore_median_secs, Some(15.5 * 3600.0));
        assert_eq!(dora.restore_band, Some(Band::High));
    }

    #[test]
    fn sparse_and_empty_histories_band_low_and_say_nothing_they_cannot() {
        let empty = dora(&[], T0, T0 + 30 * DAY);
        assert_eq!((empty.deployments, empty.frequency_band), (0, Band::Low));
        assert_eq!(empty.lead_time_median_secs, None);
        assert_eq!(empty.change_failure_rate, None);
        assert_eq!(empty.restore_band, None);
        // One deploy a week for 8 weeks: high.
        let weekly: Vec<_> =
            (0..8).map(|w| deploy(T0 + w * 7 * DAY + HOUR, &[100], None)).collect();
        let d = dora(&weekly, T0, T0 + 56 * DAY);
        assert_eq!(d.frequency_band, Band::High);
        assert_eq!(d.lead_time_band, Some(Band::High), "100 h is between a day and a week");
        // Two deploys in 90 days, in the second and third month: the median month has one.
        let rare = [deploy(T0 + DAY, &[24 * 40], None), deploy(T0 + 45 * DAY, &[24 * 40], None)];
        let d = dora(&rare, T0, T0 + 90 * DAY);
        assert_eq!(d.frequency_band, Band::Medium, "months 1 and 2 of 3 have one");
        assert_eq!(d.lead_time_band, Some(Band::Low));
        assert_eq!(d.change_failure_band, Some(Band::Elite));
    }
}
