//! CI's short run of the accuracy harness: a fixed seed range, different from the report's
//! start, must meet issue 4's floor, and the culprit must stay first against comment-only
//! decoys (issue 22: top-1 at least 80%).

#[test]
fn a_short_run_meets_the_floor() {
    let seeds = 1000..1012;
    let outcomes: Vec<eval::Outcome> =
        eval::scenarios(seeds.clone()).iter().map(eval::run).collect();
    let report = eval::report(&outcomes);
    let failures = eval::Floor::failures(&report);
    assert!(failures.is_empty(), "{failures:?}\n{}", eval::markdown(&report, &seeds));
}
