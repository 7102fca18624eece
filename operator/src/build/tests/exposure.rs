//! Services, the Ingress, PDBs and NetworkPolicies.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::build;

#[test]
fn services_expose_http_and_metrics() {
    let d = build("{}");
    let api = d.api.service.spec.unwrap();
    let ports: Vec<_> = api.ports.unwrap().iter().map(|p| (p.name.clone().unwrap(), p.port)).collect();
    assert_eq!(ports, [("http".to_string(), 80), ("metrics".to_string(), 9090)]);
    let worker = d.worker.service.spec.unwrap();
    assert_eq!(worker.ports.unwrap().len(), 1);
}

#[test]
fn a_pod_monitor_only_when_asked_scraping_both_fleets() {
    assert!(build("{}").pod_monitor.is_none());
    assert!(build("{monitoring: {podMonitor: false}}").pod_monitor.is_none());
    let d = build("{monitoring: {podMonitor: true, interval: 15s, labels: {release: prom}}}");
    let pm = d.pod_monitor.expect("a PodMonitor");
    assert_eq!(pm.types.as_ref().unwrap().api_version, "monitoring.coreos.com/v1");
    assert_eq!(pm.metadata.name.as_deref(), Some("shop"));
    assert_eq!(pm.metadata.labels.as_ref().unwrap()["release"], "prom");
    assert_eq!(pm.metadata.owner_references.as_ref().unwrap()[0].uid, "7a1e2c9e-0000-4000-8000-000000000001");
    let spec = &pm.data["spec"];
    assert_eq!(spec["selector"]["matchLabels"]["app.kubernetes.io/instance"], "shop");
    assert!(spec["selector"]["matchLabels"].get("app.kubernetes.io/component").is_none(), "both fleets");
    let endpoint = &spec["podMetricsEndpoints"][0];
    assert_eq!((endpoint["port"].as_str(), endpoint["interval"].as_str()), (Some("metrics"), Some("15s")));
}

#[test]
fn no_ingress_unless_asked() {
    assert!(build("{}").ingress.is_none());
}

#[test]
fn ingress_fields_come_from_the_spec() {
    let d = build("{api: {ingress: {host: shop.example.com, className: nginx, tlsSecretName: shop-tls}}}");
    let spec = d.ingress.unwrap().spec.unwrap();
    assert_eq!(spec.ingress_class_name.as_deref(), Some("nginx"));
    let rule = &spec.rules.unwrap()[0];
    assert_eq!(rule.host.as_deref(), Some("shop.example.com"));
    let backend = rule.http.as_ref().unwrap().paths[0].backend.service.clone().unwrap();
    assert_eq!(backend.name, "shop-api");
    assert_eq!(backend.port.unwrap().number, Some(80));
    let tls = &spec.tls.unwrap()[0];
    assert_eq!(tls.secret_name.as_deref(), Some("shop-tls"));
    let plain = build("{api: {ingress: {host: shop.example.com}}}").ingress.unwrap().spec.unwrap();
    assert!(plain.tls.is_none() && plain.ingress_class_name.is_none());
}

#[test]
fn pdbs_allow_one_disruption_at_a_time() {
    let d = build("{}");
    for pdb in [d.api.pdb, d.worker.pdb] {
        assert_eq!(pdb.spec.unwrap().max_unavailable, Some(IntOrString::Int(1)));
    }
}

#[test]
fn network_policies_open_only_the_served_ports() {
    let d = build("{}");
    let ports = |np: k8s_openapi::api::networking::v1::NetworkPolicy| -> Vec<IntOrString> {
        let spec = np.spec.unwrap();
        assert_eq!(spec.policy_types, Some(vec!["Ingress".to_string()]));
        spec.ingress.unwrap()[0].ports.clone().unwrap().into_iter().map(|p| p.port.unwrap()).collect()
    };
    assert_eq!(ports(d.api.network_policy), [IntOrString::Int(8080), IntOrString::Int(9090)]);
    assert_eq!(ports(d.worker.network_policy), [IntOrString::Int(9090)]);
}
