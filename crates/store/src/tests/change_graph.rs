//! The change graph: idempotent webhook application, merging sources, deploy inference.

use model::{
    Commit, DeploySource, FileChange, FileChangeKind, ForgeKind, Person, Review, ReviewState,
};

use super::{SECOND, T0, options, resource, span};
use crate::{BranchHead, ChangeBatch, NewDeploy, SpanStore};

fn commit(sha: char, message: &str) -> Commit {
    Commit {
        sha: sha.to_string().repeat(40),
        message: message.into(),
        author: Person { name: Some("Ada".into()), ..Person::default() },
        files: vec![FileChange { path: "src/cart.rs".into(), kind: FileChangeKind::Modified }],
        ..Commit::default()
    }
}

/// Gogs pull requests name only their branch: pushes to it give the head and the
/// commits, whether the push or the pull request arrives first.
#[test]
fn reviews_of_a_branch_take_its_pushes_in_either_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = SpanStore::open(dir.path(), options()).unwrap();
    let push_with = |key: &str, sha: Option<char>, commits: &[char], forced: bool| {
        let batch = ChangeBatch {
            repository: "hello".into(),
            commits: commits.iter().map(|&c| commit(c, "work")).collect(),
            branch_head: Some(BranchHead {
                branch: "feature".into(),
                sha: sha.map(|c| c.to_string().repeat(40)),
                forced,
            }),
            ..ChangeBatch::default()
        };
        store.apply_webhook("gogs", key, "push", &batch, T0).unwrap();
    };
    let push = |key: &str, sha: Option<char>, commits: &[char]| push_with(key, sha, commits, false);
    let pull_request = |key: &str, id: &str, state: ReviewState| {
        let review = Review {
            kind: ForgeKind::Gogs,
            id: id.into(),
            title: "Feature".into(),
            url: None,
            author: Person::default(),
            reviewers: vec![],
            state,
            head_branch: Some("feature".into()),
            head_sha: None,
            merge_commit_sha: None,
            commits: vec![],
        };
        let batch = ChangeBatch {
            repository: "hello".into(),
            reviews: vec![review],
            ..ChangeBatch::default()
        };
        store.apply_webhook("gogs", key, "pull_request", &batch, T0).unwrap();
    };
    let sha = |c: char| c.to_string().repeat(40);

    // The branch is pushed, then the pull request opened: it takes the branch's head.
    push("p1", Some('1'), &['1']);
    pull_request("r1", "1", ReviewState::Open);
    let review = store.review("hello", "1").unwrap().unwrap().review;
    assert_eq!(review.head_sha, Some(sha('1')));
    assert_eq!(review.head_branch.as_deref(), Some("feature"));
    assert_eq!(store.reviews_of_commit(&sha('1')).unwrap().len(), 1);

    // A later push to the branch moves the open review's head and adds its commits.
    push("p2", Some('3'), &['2', '3']);
    let review = store.review("hello", "1").unwrap().unwrap().review;
    assert_eq!(review.head_sha, Some(sha('3')));
    assert_eq!(review.commits, [sha('1'), sha('2'), sha('3')]);

    // The first push replayed under another delivery key (issue 20, item 6) does not move
    // the branch back; a force push to that commit does.
    push("p1-replayed", Some('1'), &['1']);
    pull_request("r1b", "9", ReviewState::Open);
    assert_eq!(store.review("hello", "9").unwrap().unwrap().review.head_sha, Some(sha('3')));
    push_with("p2-forced-back", Some('1'), &[], true);
    pull_request("r1c", "10", ReviewState::Open);
    assert_eq!(store.review("hello", "10").unwrap().unwrap().review.head_sha, Some(sha('1')));
    push("p2-again", Some('3'), &[]);
    pull_request("r2b", "9", ReviewState::Closed);
    pull_request("r2c", "10", ReviewState::Closed);

    // Once closed, the branch's new pushes are not the review's.
    pull_request("r2", "1", ReviewState::Closed);
    push("p3", Some('4'), &['4']);
    let review = store.review("hello", "1").unwrap().unwrap().review;
    assert_eq!(review.head_sha, Some(sha('3')));
    assert!(store.reviews_of_commit(&sha('4')).unwrap().is_empty());

    // A deleted branch is forgotten: a review opened later has no head to take.
    push("p4", None, &[]);
    pull_request("r3", "2", ReviewState::Open);
    assert_eq!(store.review("hello", "2").unwrap().unwrap().review.head_sha, None);
    // Until the branch is pushed again.
    push("p5", Some('5'), &['5']);
    assert_eq!(store.review("hello", "2").unwrap().unwrap().review.head_sha, Some(sha('5')));
}

#[test]
fn deploys_are_inferred_from_spans_and_merge_with_explicit_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = SpanStore::open(dir.path(), options()).unwrap();
    store.append(vec![span(1, 1, T0, &resource("cart", "v1"))]).unwrap();
    store.maintain(T0).unwrap();
    let deploys = store.deploys(Some("cart"), Some("prod"), 10).unwrap();
    assert_eq!(deploys.len(), 1);
    assert_eq!((deploys[0].version.as_str(), deploys[0].source), ("v1", DeploySource::Inferred));
    assert_eq!(deploys[0].started_at_unix_nanos, T0);

    // v2's spans arrive first; CI reports it a minute later with a commit: one deploy.
    store.append(vec![span(2, 1, T0 + 60 * SECOND, &resource("cart", "v2"))]).unwrap();
    store.maintain(T0 + 60 * SECOND).unwrap();
    let reported = NewDeploy {
        service: "cart".into(),
        environment: "prod".into(),
        version: "v2".into(),
        commit: Some("b".repeat(40)),
        started_at_unix_nanos: T0 + 55 * SECOND,
        deployer: Some("ci".into()),
        ..NewDeploy::default()
    };
    let merged = store.record_deploy(&reported).unwrap();
    assert_eq!(merged.source, DeploySource::Merged);
    assert_eq!(merged.commit, Some("b".repeat(40)));
    let v1 = store.deploys(Some("cart"), Some("prod"), 10).unwrap()[1].clone();
    assert_eq!(merged.previous_id, Some(v1.id));

    // v3 reported first, then its spans: also one deploy. A CI retry changes nothing.
    let v3 =
        NewDeploy { version: "v3".into(), started_at_unix_nanos: T0 + 120 * SECOND, ..reported };
    let explicit = store.record_deploy(&v3).unwrap();
    assert_eq!(explicit.source, DeploySource::Explicit);
    assert_eq!(store.record_deploy(&v3).unwrap().id, explicit.id);
    store.append(vec![span(3, 1, T0 + 130 * SECOND, &resource("cart", "v3"))]).unwrap();
    store.maintain(T0 + 130 * SECOND).unwrap();
    let deploys = store.deploys(Some("cart"), None, 10).unwrap();
    assert_eq!(deploys.len(), 3);
    assert_eq!((deploys[0].id, deploys[0].source), (explicit.id, DeploySource::Merged));
    assert_eq!(deploys[0].previous_id, Some(merged.id));

    // Old v1 spans still arriving during a rollout infer nothing new.
    store.append(vec![span(4, 1, T0 + 140 * SECOND, &resource("cart", "v1"))]).unwrap();
    store.maintain(T0 + 140 * SECOND).unwrap();
    assert_eq!(store.deploys(Some("cart"), None, 10).unwrap().len(), 3);
    assert!(store.deploys(Some("other"), None, 10).unwrap().is_empty());
}
