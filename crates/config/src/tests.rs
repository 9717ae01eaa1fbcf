//! The configuration's tests: loading, overrides from the environment, and every refusal
//! naming the key and the fix.

use super::changes::derive_forge_path;
use super::*;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn load_str(text: &str, vars: &[(&str, &str)]) -> anyhow::Result<Config> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spanblame.toml");
    std::fs::write(&path, text).unwrap();
    load(Some(&path), &env(vars))
}

#[test]
fn no_file_gives_the_embedded_defaults() {
    let config = load(None, &env(&[])).unwrap();
    let resolved = resolve(&config, &env(&[])).unwrap();
    assert_eq!(resolved.settings.http_addr.to_string(), "127.0.0.1:7420");
    assert_eq!(resolved.data_dir, PathBuf::from("./spanblame-data"));
    assert_eq!(resolved.settings.retention.spans_max_age_nanos, 7 * 86_400 * 1_000_000_000);
}

#[test]
fn head_and_block_sizes_resolve_and_bad_ones_name_the_keys() {
    let overrides =
        [("SPANBLAME_STORAGE_HEAD_SPANS", "500"), ("SPANBLAME_STORAGE_BLOCK_SPANS", "4000")];
    let config = load(None, &env(&overrides)).unwrap();
    match resolve(&config, &env(&overrides)).unwrap().store {
        store::SpanBackend::Embedded(options) => {
            assert_eq!((options.max_head_spans, options.compacted_block_spans), (500, 4000));
        }
        other => panic!("{other:?}"),
    }
    let config = load_str("[storage]\nhead_spans = 1000\nblock_spans = 10\n", &[]).unwrap();
    let error = resolve(&config, &env(&[])).unwrap_err().to_string();
    assert!(
        error.contains("`storage.head_spans`") && error.contains("`storage.block_spans`"),
        "{error}"
    );
}

#[test]
fn environment_overrides_keys_and_keeps_types() {
    let config = load_str(
        "[server]\nhttp_addr = \"127.0.0.1:1\"\n",
        &[
            ("SPANBLAME_SERVER_HTTP_ADDR", "0.0.0.0:8080"),
            ("SPANBLAME_INGEST_MAX_EXPORTS_IN_FLIGHT", "7"),
            ("SPANBLAME_RETENTION_DISK_BUDGET", "50GiB"),
            ("SPANBLAME_GOGS_SECRET", "not an override"),
        ],
    )
    .unwrap();
    assert_eq!(config.server.http_addr, "0.0.0.0:8080");
    assert_eq!(config.ingest.max_exports_in_flight, 7);
    let resolved = resolve(&config, &env(&[])).unwrap();
    assert_eq!(resolved.settings.retention.disk_budget_bytes, Some(50 << 30));
}

#[test]
fn errors_name_the_key_and_the_fix() {
    let err = |text: &str, vars: &[(&str, &str)]| -> String {
        match load_str(text, vars).and_then(|c| resolve(&c, &env(vars))) {
            Ok(_) => panic!("expected an error for {text:?}"),
            Err(e) => format!("{e:#}"),
        }
    };
    assert!(err("[server]\nhttp_adr = \"x\"\n", &[]).contains("unknown field `http_adr`"));
    assert!(
        err("[server]\nhttp_addr = \"localhost\"\n", &[])
            .contains("`server.http_addr` = `localhost` is not a socket address")
    );
    assert!(err("[retention]\nspans = \"7 days\"\n", &[]).contains("unknown duration unit `days`"));
    assert!(
        err("[storage]\nkind = \"cluster\"\n", &[])
            .contains("`storage.kind` = `cluster` needs `storage.clickhouse_url`")
    );
    let missing = err(
        "[ingest]\nrequire_auth = true\n[[ingest.tokens]]\nname = \"c\"\nsecret_env = \"NOPE_TOKEN\"\n",
        &[],
    );
    assert!(missing.contains("`NOPE_TOKEN` named by `secret_env` is not set"), "{missing}");
    assert!(err("[ingest]\nmax_body = \"lots\"\n", &[]).contains("`ingest.max_body` = `lots`"));
}

#[test]
fn postgresql_keys_are_checked_and_name_the_fix() {
    let cluster = "[storage]\nkind = \"cluster\"\nclickhouse_url = \"http://ch:8123\"\n";
    let resolved = |text: &str, vars: &[(&str, &str)]| {
        load_str(text, vars).and_then(|c| resolve(&c, &env(vars)))
    };
    let err = |text: &str, vars: &[(&str, &str)]| match resolved(text, vars) {
        Ok(_) => panic!("expected an error for {text:?}"),
        Err(e) => format!("{e:#}"),
    };
    let pg = [("PG", "postgres://spanblame:secret@db:5432/meta")];
    let ok =
        resolved(&format!("{cluster}postgres_url_env = \"PG\"\nbackground_lease = \"30s\"\n"), &pg)
            .unwrap();
    match &ok.metadata {
        store::MetadataBackend::Postgres(options) => {
            assert_eq!(options.display_url(), "postgres://spanblame:***@db:5432/meta");
        }
        other => panic!("expected PostgreSQL, got {other:?}"),
    }
    assert_eq!(ok.settings.background_lease, std::time::Duration::from_secs(30));
    assert!(matches!(resolved(cluster, &[]).unwrap().metadata, store::MetadataBackend::Sqlite));
    let unset = err(&format!("{cluster}postgres_url_env = \"NOPE\"\n"), &[]);
    assert!(unset.contains("`storage.postgres_url_env`: environment variable `NOPE`"), "{unset}");
    let embedded = err("[storage]\npostgres_url_env = \"PG\"\n", &pg);
    assert!(embedded.contains("need `storage.kind = \"cluster\"`"), "{embedded}");
    let short = err(&format!("{cluster}background_lease = \"1s\"\n"), &[]);
    assert!(short.contains("`storage.background_lease` must be at least 3s"), "{short}");
    let bad = err(
        &format!("{cluster}postgres_url_env = \"PG\"\n"),
        &[("PG", "postgres://db:notaport/x")],
    );
    assert!(bad.contains("is not valid") && bad.contains("postgres://"), "{bad}");
}

#[test]
fn notifications_resolve_sinks_forge_paths_and_tiers() {
    let vars = [
        ("HOOK", "0123456789abcdef"),
        ("GITEA_TOKEN", "0123456789abcdef0123"),
        ("SLACK", "https://hooks.slack.example/T1/B2/secret"),
    ];
    let resolve_str = |text: &str| load_str(text, &vars).and_then(|c| resolve(&c, &env(&vars)));
    let base = "[[integrations]]\nname = \"gitea-main\"\nkind = \"gitea\"\nsecret_env = \"HOOK\"\n\
        api_url = \"https://git.example.com\"\napi_token_env = \"GITEA_TOKEN\"\n\
        comment_on_findings = true\n\
        [[repositories]]\nname = \"shop\"\nurl = \"https://git.example.com/Acme/shop.git\"\nmirror = false\nintegration = \"gitea-main\"\n\
        [[services]]\nname = \"checkout\"\nrepository = \"shop\"\ntier = 1\nalerts = false\n\
        [[alerts.alertmanager]]\nurl = \"http://alertmanager:9093\"\n\
        [[alerts.webhook]]\nname = \"slack\"\nurl_env = \"SLACK\"\n\
        [notifications]\nmax_attempts = 5\ninitial_backoff = \"2s\"\n";
    let n = resolve_str(base).unwrap().settings.notifications;
    assert_eq!(n.alertmanagers[0].name, "default");
    assert_eq!(n.webhooks[0].url, "https://hooks.slack.example/T1/B2/secret");
    assert!(!format!("{:?}", n.webhooks).contains("secret"), "webhook URLs are redacted");
    assert_eq!(n.repositories[0].path, "acme/shop", "derived from the URL under api_url");
    assert_eq!((n.forges[0].comments, n.forges[0].statuses), (true, false));
    assert_eq!(
        (n.services[0].tier, n.services[0].alerts, n.services[0].comments),
        (1, false, true)
    );
    assert_eq!((n.retry.max_attempts, n.retry.initial_backoff.as_secs()), (5, 2));

    let local = base.replace("https://git.example.com/Acme/shop.git", "/srv/git/shop");
    let err = format!("{:#}", resolve_str(&local).unwrap_err());
    assert!(
        err.contains("`repositories[0]` (`shop`)") && err.contains("set `forge_path`"),
        "{err}"
    );
    let explicit = local.replace(
        "integration = \"gitea-main\"",
        "integration = \"gitea-main\"\nforge_path = \"acme/shop\"",
    );
    assert_eq!(
        resolve_str(&explicit).unwrap().settings.notifications.repositories[0].path,
        "acme/shop"
    );
    let err = format!(
        "{:#}",
        resolve_str(&base.replace("integration = \"gitea-main\"", "integration = \"gogs\""))
            .unwrap_err()
    );
    assert!(err.contains("`integration` = `gogs` is not a configured"), "{err}");
    let no_api = base
        .replace("api_url = \"https://git.example.com\"\napi_token_env = \"GITEA_TOKEN\"\n", "");
    let err = format!("{:#}", resolve_str(&no_api).unwrap_err());
    assert!(err.contains("`status_on_findings` and `gate_on_reviews` need `api_url`"), "{err}");
    let both = base.replace("url_env = \"SLACK\"", "url_env = \"SLACK\"\nurl = \"https://x\"");
    let err = format!("{:#}", resolve_str(&both).unwrap_err());
    assert!(err.contains("`alerts.webhook[0]` (`slack`): set exactly one of"), "{err}");
    let err = format!(
        "{:#}",
        resolve_str(&base.replace("http://alertmanager:9093", "alertmanager:9093")).unwrap_err()
    );
    assert!(err.contains("must start with `https://`"), "{err}");
    assert!(
        derive_forge_path(Some("git@github.com:acme/api.git"), Some("https://api.github.com"))
            .is_some_and(|p| p == "acme/api")
    );
    assert_eq!(
        derive_forge_path(
            Some("https://gl.example.com/gitlab/grp/sub/api"),
            Some("https://gl.example.com/gitlab")
        )
        .as_deref(),
        Some("grp/sub/api")
    );
}

#[test]
fn alert_sinks_take_a_signing_secret_and_credentials_and_name_the_fix() {
    let vars = [
        ("SIGNING", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        ("AM_TOKEN", "am-bearer-token"),
        ("AM_PASSWORD", "am-password"),
        ("SHORT", "whsec_c2hvcnQ="),
        ("PLAIN", "0123456789abcdef0123456789abcdef"),
    ];
    let resolve_str = |text: &str| load_str(text, &vars).and_then(|c| resolve(&c, &env(&vars)));
    let text = "[[alerts.webhook]]\nurl = \"https://hooks.example.com/a\"\nsecret_env = \"SIGNING\"\n\
        [[alerts.alertmanager]]\nname = \"bearer\"\nurl = \"http://am1:9093\"\nbearer_token_env = \"AM_TOKEN\"\n\
        [[alerts.alertmanager]]\nname = \"basic\"\nurl = \"http://am2:9093\"\nusername = \"spanblame\"\npassword_env = \"AM_PASSWORD\"\n";
    let n = resolve_str(text).unwrap().settings.notifications;
    assert_eq!(n.webhooks[0].signing_secret.as_deref(), Some("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
    assert_eq!(n.alertmanagers[0].auth, Some(server::SinkAuth::Bearer("am-bearer-token".into())));
    assert_eq!(
        n.alertmanagers[1].auth,
        Some(server::SinkAuth::Basic {
            username: "spanblame".into(),
            password: "am-password".into()
        })
    );
    let shown = format!("{n:?}");
    assert!(
        !shown.contains("MfKQ9r8")
            && !shown.contains("am-password")
            && !shown.contains("am-bearer"),
        "{shown}"
    );

    let webhook =
        |keys: &str| format!("[[alerts.webhook]]\nurl = \"https://hooks.example.com/a\"\n{keys}");
    for (bad, needle) in [
        (
            webhook("secret_env = \"PLAIN\"\n"),
            "`alerts.webhook[0]` (`default`): the signing secret must start with `whsec_`",
        ),
        (
            webhook("secret_env = \"SHORT\"\n"),
            "not the base64 of 24 to 64 bytes; generate one with `echo whsec_$(openssl rand -base64 32)`",
        ),
        (
            webhook("secret_env = \"UNSET\"\n"),
            "environment variable `UNSET` named by `secret_env` is not set",
        ),
        (webhook("username = \"u\"\n"), "HTTP Basic needs both `username` and `password_env`"),
        (
            webhook(
                "bearer_token_env = \"AM_TOKEN\"\nusername = \"u\"\npassword_env = \"AM_PASSWORD\"\n",
            ),
            "a bearer token or a `username` and password, not both",
        ),
        (
            "[[alerts.alertmanager]]\nurl = \"http://am:9093\"\nsecret_env = \"SIGNING\"\n"
                .to_owned(),
            "Alertmanager does not check signatures",
        ),
    ] {
        let err = format!("{:#}", resolve_str(&bad).unwrap_err());
        assert!(err.contains(needle), "{needle}: {err}");
    }
}

#[test]
fn a_phabricator_integration_needs_conduit_access_and_monograms_are_checked() {
    let vars = [
        ("PHAB_HMAC", "0123456789abcdef0123456789abcdef"),
        ("PHAB_TOKEN", "api-abcdefghijklmnopqrstuvwxyzab"),
    ];
    let resolve_str = |text: &str| load_str(text, &vars).and_then(|c| resolve(&c, &env(&vars)));
    let hook =
        "[[integrations]]\nname = \"phab\"\nkind = \"phabricator\"\nsecret_env = \"PHAB_HMAC\"\n";
    let err = format!("{:#}", resolve_str(hook).unwrap_err());
    assert!(err.contains("needs `api_url`") && err.contains("Conduit API token"), "{err}");
    let full = format!(
        "{hook}api_url = \"https://phab.example.com/\"\napi_token_env = \"PHAB_TOKEN\"\n\
         [[repositories]]\nname = \"web\"\nforge = \"phabricator\"\nmonogram = \"rWEB\"\n"
    );
    let resolved = resolve_str(&full).unwrap();
    let integration = &resolved.settings.changes.integrations[0];
    assert_eq!(integration.api_url.as_deref(), Some("https://phab.example.com"));
    assert_eq!(integration.api_token.as_deref(), Some("api-abcdefghijklmnopqrstuvwxyzab"));
    assert!(!format!("{integration:?}").contains("api-abc"), "the token is redacted");
    let err = format!("{:#}", resolve_str(&full.replace("rWEB", "web")).unwrap_err());
    assert!(err.contains("`monogram` = `web`") && err.contains("`R12`"), "{err}");
    let err = format!("{:#}", resolve_str(&full.replace("https://phab", "phab")).unwrap_err());
    assert!(err.contains("must start with `https://`"), "{err}");
    let gitlab =
        "[[integrations]]\nname = \"gl\"\nkind = \"gitlab\"\nsecret_env = \"GL_SIGNING\"\n";
    let bad = [("GL_SIGNING", "whsec_not*base64*at*all")];
    let err = load_str(gitlab, &bad).and_then(|c| resolve(&c, &env(&bad))).unwrap_err();
    assert!(format!("{err:#}").contains("not base64"), "{err:#}");
    let good = [("GL_SIGNING", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")];
    load_str(gitlab, &good).and_then(|c| resolve(&c, &env(&good))).unwrap();
    // Phabricator has no commit statuses: the gate reaches it through Harbormaster.
    let gated = full.replace(
        "api_token_env = \"PHAB_TOKEN\"\n",
        "api_token_env = \"PHAB_TOKEN\"\ngate_on_reviews = true\n",
    );
    let err = format!("{:#}", resolve_str(&gated).unwrap_err());
    assert!(
        err.contains("`gate_on_reviews` sets commit statuses")
            && err.contains("Harbormaster build step"),
        "{err}"
    );
}

#[test]
fn the_gate_section_names_its_checks_and_window() {
    let resolved = resolve(&load(None, &env(&[])).unwrap(), &env(&[])).unwrap();
    let rules = &resolved.settings.changes.gate;
    assert_eq!(
        rules.required,
        analysis::gate::Check::ALL.to_vec(),
        "every check decides by default"
    );
    assert_eq!(rules.window_nanos, 30 * 60 * 1_000_000_000);
    let text = "[gate]\nrequired = [\"review\", \"spans\"]\nenvironments = [\"staging\", \"ci\"]\nwindow = \"2h\"\n";
    let config = load_str(text, &[]).unwrap();
    let rules = resolve(&config, &env(&[])).unwrap().settings.changes.gate;
    assert_eq!(rules.required, [analysis::gate::Check::Review, analysis::gate::Check::Spans]);
    assert_eq!((rules.environments.len(), rules.window_nanos), (2, 2 * 3600 * 1_000_000_000));
    for (bad, needle) in [
        (
            "[gate]\nrequired = [\"owners\"]\n",
            "`gate.required` names `owners`, which is not a check",
        ),
        ("[gate]\nwindow = \"soon\"\n", "`gate.window` = `soon`"),
        ("[gate]\nenvironments = [\"\"]\n", "`gate.environments` has an empty name"),
    ] {
        let err = format!("{:#}", resolve(&load_str(bad, &[]).unwrap(), &env(&[])).unwrap_err());
        assert!(err.contains(needle), "{err}");
    }
}

#[test]
fn deploy_from_names_forge_events_and_errors_say_what_to_write() {
    let repository = "[[repositories]]\nname = \"cart\"\nurl = \"https://github.com/shop/cart\"\nmirror = false\n";
    let service = |deploy_from: &str| {
        format!(
            "{repository}[[services]]\nname = \"cart\"\nrepository = \"cart\"\ndeploy_from = {deploy_from}\n"
        )
    };
    let text = service(r#"["deployment:production", "release:staging", "deployment"]"#);
    let resolved = resolve(&load_str(&text, &[]).unwrap(), &env(&[])).unwrap();
    assert_eq!(
        resolved.settings.changes.services[0].deploy_from,
        [
            server::DeployTrigger::Deployment { environment: Some("production".into()) },
            server::DeployTrigger::Release { environment: "staging".into() },
            server::DeployTrigger::Deployment { environment: None },
        ]
    );
    for (bad, needle) in [
        (
            service(r#"["release"]"#),
            "`release` needs the environment a published release goes live in: write `release:production`",
        ),
        (
            service(r#"["tag:production"]"#),
            "`tag:production` is not a deploy event: use `deployment`",
        ),
        (service(r#"["deployment:"]"#), "names no environment"),
        (
            "[[services]]\nname = \"cart\"\ndeploy_from = [\"deployment\"]\n".to_owned(),
            "`services[0]` (`cart`): `deploy_from` needs `repository`",
        ),
    ] {
        let err = format!("{:#}", resolve(&load_str(&bad, &[]).unwrap(), &env(&[])).unwrap_err());
        assert!(err.contains(needle), "{err}");
        assert!(err.contains("services[0]"), "the key is named: {err}");
    }
}

#[test]
fn auth_resolves_from_file_and_environment_and_errors_name_the_key() {
    let text = "[auth]\nmode = \"proxy\"\n[[teams]]\nname = \"payments\"\noidc_groups = [\"payments-eng\"]\n";
    let vars = [
        ("SPANBLAME_AUTH_PROXY_ASSERTION_HEADER", "X-Pomerium-Jwt-Assertion"),
        ("SPANBLAME_AUTH_PROXY_JWKS_URL", "https://proxy.example.com/jwks.json"),
        ("SPANBLAME_AUTH_PROXY_ISSUER", "proxy.example.com"),
        ("SPANBLAME_AUTH_PROXY_AUDIENCE", "spanblame.example.com"),
    ];
    let config = load_str(text, &vars).unwrap();
    let access = resolve(&config, &env(&vars)).unwrap().settings.access;
    match &access.mode {
        server::AuthMode::Proxy(proxy) => {
            assert_eq!(proxy.assertion_header, "x-pomerium-jwt-assertion")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(access.identity.teams, [("payments".to_owned(), vec!["payments-eng".to_owned()])]);
    // With sign-in, deploy reports need a token unless opened explicitly (issue 20, item
    // 2); open ingest is named as a warning.
    assert!(!access.deploys_open);
    assert_eq!(open_doors(&access).len(), 1, "{:?}", open_doors(&access));
    let opened = format!("{text}[deploys]\nrequire_auth = false\n");
    let access = resolve(&load_str(&opened, &vars).unwrap(), &env(&vars)).unwrap();
    assert!(access.settings.access.deploys_open);
    assert_eq!(open_doors(&access.settings.access).len(), 2);
    let open = resolve(&load_str("", &[]).unwrap(), &env(&[])).unwrap().settings.access;
    assert!(open.deploys_open && open_doors(&open).is_empty());
    let err = |text: &str| {
        format!("{:#}", load_str(text, &[]).and_then(|c| resolve(&c, &env(&[]))).unwrap_err())
    };
    assert!(err("[auth]\nmode = \"sso\"\n").contains("`auth.mode` = `sso` is not valid"));
    assert!(err("[auth]\nmode = \"oidc\"\n").contains("needs an `[auth.oidc]` table"));
    assert!(err("[auth]\nmode = \"oidc\"\n[auth.oidc]\nissuer = \"https://idp\"\nclient_id = \"x\"\nclient_secret_env = \"NOPE\"\n").contains("`NOPE`"));
    assert!(
        err("[auth.oidc]\nissuer = \"https://idp\"\nclient_id = \"x\"\nadmin_group = []\n")
            .contains("unknown field `admin_group`")
    );
}

#[test]
fn sizes_and_durations_parse() {
    assert_eq!(parse_bytes("16MiB").unwrap(), 16 << 20);
    assert_eq!(parse_bytes("500MB").unwrap(), 500_000_000);
    assert_eq!(parse_duration_nanos("90s").unwrap(), 90_000_000_000);
    assert!(parse_duration_nanos("0d").is_err());
}

#[test]
fn every_problem_is_named_in_one_run() {
    let text = "[server]\nhttp_addr = \"localhost\"\n\n[retention]\nspans = \"a week\"\n\n[detection]\ninterval = \"often\"\n\n[[integrations]]\nname = \"gh\"\nkind = \"svn\"\nsecret_env = \"GH_SECRET\"\n";
    let config = load_str(text, &[]).unwrap();
    let error = resolve(&config, &env(&[])).unwrap_err().to_string();
    assert!(error.starts_with("4 problems in the configuration:\n  - "), "{error}");
    for key in ["`server.http_addr`", "`retention.spans`", "`detection.interval`", "`svn`"] {
        assert!(error.contains(key), "{key} missing from: {error}");
    }
    // One problem alone reads as it always did.
    let config = load_str("[retention]\nspans = \"a week\"\n", &[]).unwrap();
    let error = resolve(&config, &env(&[])).unwrap_err().to_string();
    assert!(error.starts_with("`retention.spans` = `a week`"), "{error}");
}
