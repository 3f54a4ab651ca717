//! Checks of the support layer itself, independent of what the provider
//! implements: `cargo test --test coffer-tests support`.

use super::terraform::{OLDEST_VERSION, PROVIDER_SOURCE, PROVIDER_VERSION};
use super::*;

#[test]
fn moto_starts_resets_and_serves_the_default_vpc() {
    let moto = Moto::start();
    assert!(moto.endpoint.starts_with("http://127.0.0.1:"), "{}", moto.endpoint);
    moto.reset();
    let vpcs = block_on(async {
        let ec2 = aws_sdk_ec2::Client::new(&moto.sdk_config("eu-west-1").await);
        // A reset must not remove the default VPC: like a real account, every
        // region always has one.
        let created = ec2.create_vpc().cidr_block("10.9.0.0/16").send().await.unwrap();
        assert!(created.vpc().and_then(|v| v.vpc_id()).is_some());
        moto.reset();
        ec2.describe_vpcs().send().await.unwrap().vpcs().to_vec()
    });
    assert_eq!(vpcs.len(), 1, "after reset only the default VPC remains: {vpcs:?}");
    assert_eq!(vpcs[0].is_default(), Some(true), "{vpcs:?}");
}

#[test]
fn moto_servers_are_private_to_each_test() {
    let a = Moto::start();
    let b = Moto::start();
    assert_ne!(a.port(), b.port());
    block_on(async {
        let ec2_a = aws_sdk_ec2::Client::new(&a.sdk_config("us-east-1").await);
        let ec2_b = aws_sdk_ec2::Client::new(&b.sdk_config("us-east-1").await);
        ec2_a.create_vpc().cidr_block("10.1.0.0/16").send().await.unwrap();
        let in_b = ec2_b.describe_vpcs().send().await.unwrap();
        assert_eq!(in_b.vpcs().len(), 1, "b sees only its default VPC");
        let in_a = ec2_a.describe_vpcs().send().await.unwrap();
        assert_eq!(in_a.vpcs().len(), 2, "a sees its default VPC and the new one");
    });
}

#[test]
fn moto_stops_on_drop() {
    let moto = Moto::start();
    let port = moto.port();
    drop(moto);
    assert!(moto::http_request(port, "GET", "/moto-api/").is_err(), "port {port} still answers after drop");
}

#[test]
fn terraform_versions_include_the_oldest_and_run() {
    let versions = terraform_versions();
    // COFFER_TF_VERSIONS may narrow the list; unrestricted it must hold 1.0.3.
    if std::env::var("COFFER_TF_VERSIONS").map_or(true, |v| v.is_empty() || v == "all") {
        assert_eq!(versions[0].version, OLDEST_VERSION, "{versions:?}");
    }
    assert!(
        versions.windows(2).all(|w| w[0].version_tuple() < w[1].version_tuple()),
        "sorted oldest first, no duplicates: {versions:?}"
    );
    for tf in &versions {
        let out = std::process::Command::new(&tf.path)
            .arg("version")
            .env("CHECKPOINT_DISABLE", "1")
            .env_remove("TF_CLI_CONFIG_FILE")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}: {out:?}", tf.path.display());
        assert!(text.starts_with(&format!("Terraform v{}\n", tf.version)), "{text}");
    }
}

/// `init` installs the plugin from the filesystem mirror, offline, for every
/// CLI; this needs no working provider (init does not start it).
#[test]
fn workdir_init_installs_the_provider_from_the_mirror() {
    for tf in terraform_versions() {
        let wd = Workdir::new(&tf, &provider_binary());
        wd.write(
            "main.tf",
            r#"terraform {
  required_providers {
    coffer = { source = "coffer/coffer" }
  }
}
"#,
        );
        let out = wd.init();
        assert!(
            out.contains(&format!("Installed coffer/coffer v{PROVIDER_VERSION}"))
                || out.contains(&format!("Installing coffer/coffer v{PROVIDER_VERSION}")),
            "terraform {}: {out}",
            tf.version
        );
        let lock = std::fs::read_to_string(wd.path().join(".terraform.lock.hcl")).unwrap();
        assert!(lock.contains(&format!("provider \"{PROVIDER_SOURCE}\"")), "{lock}");

        // Same configuration, no state, not initialised yet.
        let copy = wd.fresh_state_copy();
        assert!(copy.path().join("main.tf").is_file());
        assert!(!copy.path().join(".terraform").exists());
        copy.init();
    }
}

#[test]
fn provider_block_points_at_moto() {
    let moto = Moto::start();
    let hcl = provider_block(&moto, "eu-central-1");
    assert!(hcl.contains(&format!("endpoint_url      = \"http://127.0.0.1:{}\"", moto.port())));
    assert!(hcl.contains("region            = \"eu-central-1\""));
    assert!(hcl.contains("source = \"coffer/coffer\""));
}

#[test]
fn resource_values_finds_nested_resources() {
    let state = serde_json::json!({
        "values": {"root_module": {
            "resources": [{"address": "coffer_x.a", "values": {"id": "a"}}],
            "child_modules": [{"resources": [{"address": "module.m.coffer_x.b", "values": {"id": "b"}}]}]
        }}
    });
    assert_eq!(resource_values(&state, "coffer_x.a").unwrap()["id"], "a");
    assert_eq!(resource_values(&state, "module.m.coffer_x.b").unwrap()["id"], "b");
    assert!(resource_values(&state, "coffer_x.c").is_none());
}

/// The Workdir commands (apply, plan exit codes, outputs, state, failures,
/// fresh copies) on every CLI, with a configuration that needs no provider.
#[test]
fn workdir_commands_work_on_every_terraform() {
    for tf in terraform_versions() {
        eprintln!("terraform {} at {}", tf.version, tf.path.display());
        let wd = Workdir::new(&tf, &provider_binary());
        wd.write("main.tf", "output \"greeting\" {\n  value = \"hello\"\n}\n");
        wd.init();

        let (code, out) = wd.plan_exit_code();
        assert_eq!(code, 2, "terraform {}: a new output is a change:\n{out}", tf.version);
        wd.apply();
        wd.assert_no_changes();
        assert_eq!(wd.output_json()["greeting"]["value"], "hello");
        assert_eq!(wd.state_json()["values"]["outputs"]["greeting"]["value"], "hello");
        assert!(wd.path().join("terraform.tfstate").is_file());

        let plan = wd.plan_json();
        assert!(plan.get("planned_values").is_some(), "{plan}");

        // Expected failures come back as Err with terraform's message.
        wd.write("broken.tf", "resource \"coffer_nonsense\" {\n");
        let err = wd.try_plan().unwrap_err();
        assert!(err.contains("Error"), "{err}");
        let (code, _) = wd.plan_exit_code();
        assert_eq!(code, 1);
        assert!(wd.try_apply().is_err());
        wd.remove("broken.tf");

        // The fresh copy has the configuration but none of the state.
        let fresh = wd.fresh_state_copy();
        fresh.init();
        assert!(fresh.state_json()["values"].is_null(), "{}", fresh.state_json());
        let (code, _) = fresh.plan_exit_code();
        assert_eq!(code, 2);

        wd.destroy();
        assert!(wd.output_json().as_object().is_some_and(|o| o.is_empty()));
    }
}

/// The environment terraform (and so the provider) gets: a stand-in
/// "terraform" that prints its environment shows it.
#[test]
fn workdir_environment_is_hermetic() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = tmp.path().join("terraform");
    std::fs::write(&fake, "#!/bin/sh\nenv\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let tf = Terraform { path: fake, version: OLDEST_VERSION.to_owned() };
    let mut wd = Workdir::new(&tf, &provider_binary());
    wd.set_env("COFFER_SELFTEST", "yes");
    let out = wd.run(&["plan"]);
    let env: std::collections::HashMap<String, String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let cli_config = std::path::PathBuf::from(&env["TF_CLI_CONFIG_FILE"]);
    let config = std::fs::read_to_string(&cli_config).unwrap();
    assert!(config.contains("filesystem_mirror"), "{config}");
    assert!(config.contains("exclude = [\"registry.terraform.io/coffer/coffer\"]"), "{config}");
    for (name, value) in [
        ("CHECKPOINT_DISABLE", "1"),
        ("TF_IN_AUTOMATION", "1"),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("COFFER_SELFTEST", "yes"),
    ] {
        assert_eq!(env.get(name).map(String::as_str), Some(value), "{name}");
    }
    for name in env.keys() {
        assert!(
            !name.starts_with("AWS_ENDPOINT_URL") && name != "AWS_PROFILE" && !name.starts_with("TF_CLI_ARGS"),
            "{name} leaked into terraform's environment"
        );
    }
    assert_eq!(env.get("PWD").map(std::path::PathBuf::from).as_deref(), Some(wd.path()));
}

/// Item 0 of issue 21: the tests ran whatever moto the system Python had,
/// and the launcher's patches broke on another release. The emulator must be
/// the version `tests/support/moto-requirements.txt` pins, from `.venv/`.
#[test]
fn the_emulator_is_the_pinned_moto_from_the_project_venv() {
    if std::env::var_os("COFFER_MOTO_SERVER").is_some() {
        eprintln!("skipped: COFFER_MOTO_SERVER names another emulator on purpose");
        return;
    }
    let requirements = std::fs::read_to_string(tools::repo_root().join("tests/support/moto-requirements.txt")).unwrap();
    let pinned = requirements.lines().find_map(|l| l.strip_prefix("moto==")).expect("moto-requirements.txt pins moto");
    let moto = Moto::start();
    let (status, body) = super::moto::http_request(moto.port(), "GET", "/_coffer/version").unwrap();
    assert_eq!(status, 200, "{body}");
    let mut words = body.split_whitespace();
    assert_eq!(words.next(), Some("moto"), "{body}");
    assert_eq!(words.next(), Some(pinned), "the emulator is not the pinned moto: {body}");
    let python = std::path::PathBuf::from(words.next().expect("python path"));
    assert!(
        python.starts_with(tools::repo_root().join(".venv")),
        "moto runs under {} instead of the project's .venv",
        python.display()
    );
}

/// The fault proxy really breaks what it says it breaks: a client sees a
/// cut body as an error and a dropped response as a failed call.
#[test]
fn the_fault_proxy_cuts_bodies_and_drops_responses() {
    use super::fault_proxy::{Fault, FaultProxy, Rule};
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto);
    block_on(async {
        let direct = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&moto.sdk_config("us-east-1").await).force_path_style(true).build(),
        );
        direct.create_bucket().bucket("proxied").send().await.unwrap();
        direct.put_object().bucket("proxied").key("big").body(vec![7u8; 100_000].into()).send().await.unwrap();
        let config = aws_sdk_s3::config::Builder::from(&moto.sdk_config("us-east-1").await)
            .endpoint_url(&proxy.endpoint)
            .force_path_style(true)
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
            .build();
        let via_proxy = aws_sdk_s3::Client::from_conf(config);
        let cut = proxy.add(Rule::new(Fault::CutBody { after: 1000 }).method("GET").times(1));
        let out = via_proxy.get_object().bucket("proxied").key("big").send().await.expect("the headers arrive");
        assert_eq!(out.content_length(), Some(100_000));
        let body = out.body.collect().await;
        assert!(body.is_err(), "the cut body read as whole: {} bytes", body.map(|b| b.into_bytes().len()).unwrap_or(0));
        assert_eq!(proxy.injected(cut), 1);
        let whole =
            via_proxy.get_object().bucket("proxied").key("big").send().await.unwrap().body.collect().await.unwrap();
        assert_eq!(whole.into_bytes().len(), 100_000, "one cut only");

        let dropped = proxy.add(Rule::new(Fault::DropResponse).method("PUT").times(1));
        let put = via_proxy.put_object().bucket("proxied").key("small").body(b"x".to_vec().into()).send().await;
        assert!(put.is_err(), "a dropped response reads as a failed call");
        assert_eq!(proxy.injected(dropped), 1);
        // moto applied it all the same.
        direct.head_object().bucket("proxied").key("small").send().await.expect("the write was applied");
    });
}
