//! Retention through the server's own upkeep job and clock: blocks older than the retention
//! disappear from the API once the job runs at a later "now".

use axum::http::StatusCode;

use crate::support::{DAY, T0, TestApp};

#[tokio::test]
async fn the_upkeep_job_deletes_expired_blocks_at_the_clocks_time() {
    let app = TestApp::new();
    let head_age = app.store_options.max_head_age_nanos;
    let old = "11111111111111111111111111111111";
    let new = "22222222222222222222222222222222";
    let resource = [("service.name", "checkout")];

    // Day 0: a span arrives; the job runs until its head is old enough to seal.
    app.export_span(old, &resource, T0).await;
    app.run_jobs_at(T0);
    app.run_jobs_at(T0 + head_age);
    // Day 8: another (sent at its time: spans from the future are refused).
    app.clock.set(T0 + 8 * DAY);
    app.export_span(new, &resource, T0 + 8 * DAY).await;
    app.run_jobs_at(T0 + 8 * DAY);
    app.run_jobs_at(T0 + 8 * DAY + head_age);
    assert_eq!(app.state_blocks(), 1, "day 0's block is already past 7 days of retention");

    let (status, body) = app.get(&format!("/api/v1/traces/{old}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = app.get(&format!("/api/v1/traces/{new}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Nine days on, the second block has expired too.
    app.run_jobs_at(T0 + 17 * DAY);
    let (status, _) = app.get(&format!("/api/v1/traces/{new}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(app.state_blocks(), 0);
}
