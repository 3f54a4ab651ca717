//! The plugin as go-plugin sees it: the handshake, auto-mTLS, the side
//! services, and the behaviour of a plugin started by hand.

use std::process::Command;

use coffer_tfplugin::server::go_plugin_proto::Empty;
use coffer_tfplugin::server::go_plugin_proto::grpc_controller_client::GrpcControllerClient;
use coffer_tfplugin::server::tfplugin6::get_provider_schema;

use crate::support::plugin::{ClientIdentity, PluginProcess};
use crate::support::{block_on, provider_binary};

#[test]
fn started_by_hand_it_explains_how_to_use_it_and_exits_1() {
    let out = Command::new(provider_binary()).env_remove(coffer_tfplugin::server::MAGIC_COOKIE_KEY).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "nothing but a handshake may reach stdout");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("started by `terraform`"), "{stderr}");
    assert!(stderr.contains("terraform init"), "{stderr}");
}

#[test]
fn a_terraform_without_protocol_6_is_told_why() {
    let out = Command::new(provider_binary())
        .env(coffer_tfplugin::server::MAGIC_COOKIE_KEY, coffer_tfplugin::server::MAGIC_COOKIE_VALUE)
        .env("PLUGIN_PROTOCOL_VERSIONS", "4,5")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Terraform 1.0 or newer"));
}

#[test]
fn the_handshake_announces_protocol_6_over_tcp_with_a_certificate() {
    let terraform = ClientIdentity::terraform();
    let plugin = PluginProcess::start(&provider_binary(), Some(&terraform));
    let handshake = &plugin.handshake;
    assert_eq!(handshake.core_version, "1");
    assert_eq!(handshake.protocol_version, "6");
    assert!(handshake.address.ip().is_loopback(), "{}", handshake.raw);
    assert!(handshake.server_cert.is_some(), "auto-mTLS must announce a certificate");
}

#[test]
fn only_terraforms_own_certificate_can_connect() {
    let terraform = ClientIdentity::terraform();
    let stranger = ClientIdentity::stranger();
    let plugin = PluginProcess::start(&provider_binary(), Some(&terraform));
    block_on(async {
        let mut client = plugin.connect(Some(&terraform)).await.expect("Terraform's certificate connects");
        let schema = client
            .get_provider_schema(get_provider_schema::Request {})
            .await
            .expect("GetProviderSchema over mTLS")
            .into_inner();
        assert!(schema.resource_schemas.contains_key("coffer_worker_configuration"));

        for (who, identity) in [("another certificate", Some(&stranger)), ("no certificate", None)] {
            let refused = match plugin.connect(identity).await {
                Err(_) => true,
                Ok(mut client) => client.get_provider_schema(get_provider_schema::Request {}).await.is_err(),
            };
            assert!(refused, "a client with {who} must not be served");
        }
    });
}

#[test]
fn interrupts_are_ignored_and_the_controller_shuts_the_plugin_down() {
    let terraform = ClientIdentity::terraform();
    let mut plugin = PluginProcess::start(&provider_binary(), Some(&terraform));
    let status = Command::new("kill").args(["-INT", &plugin.pid().to_string()]).status().unwrap();
    assert!(status.success());
    block_on(async {
        let channel = plugin.channel(Some(&terraform)).await.unwrap();
        let mut provider = coffer_tfplugin::server::tfplugin6::provider_client::ProviderClient::new(channel.clone());
        provider
            .get_provider_schema(get_provider_schema::Request {})
            .await
            .expect("still serving after SIGINT: Terraform stops providers through StopProvider");
        GrpcControllerClient::new(channel).shutdown(Empty {}).await.expect("Shutdown");
    });
    let status = plugin.wait_for_exit(std::time::Duration::from_secs(10));
    assert_eq!(status.and_then(|s| s.code()), Some(0), "the plugin exits cleanly after Shutdown");
}
