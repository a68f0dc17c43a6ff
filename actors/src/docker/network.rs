//! The restricted network's Docker side: one bridge network per deployment, inter-container
//! traffic off, IPv6 off, on a bridge interface of a known name (the firewall matches it).

use std::collections::HashMap;
use std::net::Ipv4Addr;

use bollard::models::{NetworkCreateRequest, NetworkInspect};
use bollard::query_parameters::ListNetworksOptionsBuilder;
use bollard::Docker;

use super::DockerError;
use crate::network::nft::Ipv4Net;
use crate::profile::labels;

const ICC: &str = "com.docker.network.bridge.enable_icc";
const BRIDGE_NAME: &str = "com.docker.network.bridge.name";
const MASQUERADE: &str = "com.docker.network.bridge.enable_ip_masquerade";

/// What termcell asks of its network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSpec {
    pub name: String,
    /// The Linux bridge interface (at most 15 characters).
    pub bridge: String,
    pub deployment: String,
}

/// What sessions and the firewall need of the network once it exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkInfo {
    pub id: String,
    pub name: String,
    pub bridge: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
}

fn error(name: &str, detail: impl Into<String>) -> DockerError {
    DockerError::Network {
        name: name.to_string(),
        detail: detail.into(),
    }
}

fn our_labels(spec: &NetworkSpec) -> HashMap<String, String> {
    HashMap::from([
        (
            labels::MANAGED_BY.to_string(),
            labels::MANAGED_BY_VALUE.to_string(),
        ),
        (labels::DEPLOYMENT.to_string(), spec.deployment.clone()),
    ])
}

/// Whether an existing network is exactly what `spec` asks for.
fn matches(spec: &NetworkSpec, net: &NetworkInspect) -> bool {
    let options = net.options.clone().unwrap_or_default();
    net.driver.as_deref() == Some("bridge")
        && options.get(ICC).map(String::as_str) == Some("false")
        && options.get(BRIDGE_NAME) == Some(&spec.bridge)
        && net.internal != Some(true)
}

fn info(spec: &NetworkSpec, net: &NetworkInspect) -> Result<NetworkInfo, DockerError> {
    let ipam = net
        .ipam
        .as_ref()
        .and_then(|ipam| ipam.config.as_ref())
        .and_then(|configs| {
            configs
                .iter()
                .find(|c| c.subnet.as_deref().and_then(Ipv4Net::parse).is_some())
        })
        .ok_or_else(|| error(&spec.name, "the engine gave it no IPv4 subnet"))?;
    let subnet = ipam
        .subnet
        .as_deref()
        .and_then(Ipv4Net::parse)
        .expect("found above");
    let gateway = ipam
        .gateway
        .as_deref()
        .and_then(|g| g.split('/').next()?.parse().ok())
        .ok_or_else(|| error(&spec.name, "the engine gave it no IPv4 gateway"))?;
    Ok(NetworkInfo {
        id: net.id.clone().unwrap_or_default(),
        name: spec.name.clone(),
        bridge: spec.bridge.clone(),
        subnet,
        gateway,
    })
}

/// Our networks named `spec.name` (the engine's name filter matches substrings).
async fn ours(docker: &Docker, spec: &NetworkSpec) -> Result<Vec<NetworkInspect>, DockerError> {
    let filters = HashMap::from([
        ("name".to_string(), vec![spec.name.clone()]),
        (
            "label".to_string(),
            our_labels(spec)
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
        ),
    ]);
    let options = ListNetworksOptionsBuilder::default()
        .filters(&filters)
        .build();
    let mut found = Vec::new();
    for net in docker.list_networks(Some(options)).await? {
        if net.name.as_deref() != Some(spec.name.as_str()) {
            continue;
        }
        let id = net.id.clone().unwrap_or_default();
        found.push(docker.inspect_network(&id, None).await?);
    }
    Ok(found)
}

pub(super) async fn ensure(
    docker: &Docker,
    spec: &NetworkSpec,
) -> Result<NetworkInfo, DockerError> {
    let mut kept = None;
    for net in ours(docker, spec).await? {
        let id = net.id.clone().unwrap_or_default();
        if kept.is_none() && matches(spec, &net) {
            kept = Some(net);
            continue;
        }
        // A duplicate, or ours with other settings (an older version): nothing of ours may
        // be attached to it any more once the reaper ran, so it goes.
        log::warn!(
            "removing network {} ({id}): a duplicate or with other settings",
            spec.name
        );
        remove(docker, &id).await?;
    }
    if let Some(net) = kept {
        return info(spec, &net);
    }
    let request = NetworkCreateRequest {
        name: spec.name.clone(),
        driver: Some("bridge".into()),
        internal: Some(false),
        attachable: Some(false),
        enable_ipv6: Some(false),
        options: Some(HashMap::from([
            (ICC.to_string(), "false".to_string()),
            (BRIDGE_NAME.to_string(), spec.bridge.clone()),
            (MASQUERADE.to_string(), "true".to_string()),
        ])),
        labels: Some(our_labels(spec)),
        ..Default::default()
    };
    let created = docker.create_network(request).await.map_err(|e| {
        error(
            &spec.name,
            format!("could not be created: {}", DockerError::from(e)),
        )
    })?;
    let net = docker.inspect_network(&created.id, None).await?;
    info(spec, &net)
}

pub(super) async fn remove(docker: &Docker, name: &str) -> Result<(), DockerError> {
    match docker.remove_network(name).await {
        Ok(()) => Ok(()),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

pub(super) async fn addresses(
    docker: &Docker,
    name: &str,
) -> Result<Vec<(String, Ipv4Addr)>, DockerError> {
    let net = docker.inspect_network(name, None).await?;
    Ok(net
        .containers
        .unwrap_or_default()
        .into_values()
        .filter_map(|endpoint| {
            let ip = endpoint.ipv4_address?.split('/').next()?.parse().ok()?;
            Some((endpoint.name?, ip))
        })
        .collect())
}
