use std::path::Path;

use super::groups::{parse_file, parse_json, targets};
use super::*;

fn names(listed: &[Discovered]) -> Vec<(&str, &str)> {
    listed.iter().map(|d| (d.name.as_str(), d.url.as_str())).collect()
}

#[test]
fn file_sd_groups_name_a_lone_target_by_its_pod_and_the_rest_by_address() {
    let json = r#"[
        {"targets": ["10.0.0.5:8000"], "labels": {"pod": "capwatch-7d9f-abcde", "zone": "a"}},
        {"targets": ["10.0.0.6:8000", "10.0.0.7:8000"], "labels": {"pod": "same-for-both"}},
        {"targets": ["secure.internal:8443"], "labels": {"__scheme__": "https", "name": "gpu-1"}}
    ]"#;
    let listed = targets(&parse_json(json, "sd").unwrap(), Scheme::Http).unwrap();
    assert_eq!(
        names(&listed),
        [
            ("capwatch-7d9f-abcde", "http://10.0.0.5:8000"),
            ("10.0.0.6:8000", "http://10.0.0.6:8000"),
            ("10.0.0.7:8000", "http://10.0.0.7:8000"),
            ("gpu-1", "https://secure.internal:8443"),
        ]
    );
    // The same list in YAML, with the default scheme https.
    let yaml = "- targets: ['127.0.0.1:9000']\n  labels: {name: one}\n- targets: []\n";
    let listed = targets(&parse_file(yaml, Path::new("sd.yaml")).unwrap(), Scheme::Https).unwrap();
    assert_eq!(names(&listed), [("one", "https://127.0.0.1:9000")]);
}

#[test]
fn what_is_not_a_target_list_is_refused_with_the_reason() {
    let err = parse_json(r#"[{"targetz": []}]"#, "http://sd/targets").unwrap_err();
    assert!(err.to_string().contains("http://sd/targets is not a target list"), "{err}");
    assert!(err.to_string().contains("targetz"), "{err}");
    let groups = parse_json(r#"[{"targets": ["10.0.0.5:8000"], "labels": {"__scheme__": "ftp"}}]"#, "x").unwrap();
    assert!(targets(&groups, Scheme::Http).unwrap_err().to_string().contains("expected http or https"));
    let groups = parse_json(r#"[{"targets": ["ftp://10.0.0.5"]}]"#, "x").unwrap();
    assert!(targets(&groups, Scheme::Http).is_err());
}

#[test]
fn each_url_is_watched_once_and_a_name_taken_twice_falls_back_to_the_address() {
    let listed = vec![
        Discovered { name: "a".to_owned(), url: "http://10.0.0.5:8000".to_owned() },
        Discovered { name: "a".to_owned(), url: "http://10.0.0.6:8000".to_owned() },
        Discovered { name: "b".to_owned(), url: "http://10.0.0.5:8000".to_owned() },
    ];
    assert_eq!(names(&unique(listed)), [("a", "http://10.0.0.5:8000"), ("10.0.0.6:8000", "http://10.0.0.6:8000")]);
}

#[tokio::test]
async fn a_file_is_read_again_when_it_changes_and_a_missing_one_is_an_error_naming_it() {
    let dir = std::env::temp_dir().join(format!("capwatch-sd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("targets.json");
    let config = DiscoveryConfig { source: Some(DiscoverySource::File(path.clone())), ..DiscoveryConfig::default() };
    let mut discoverer = Discoverer::new(&config, None).unwrap();
    let err = discoverer.discover().await.unwrap_err();
    assert!(err.to_string().contains("targets.json"), "{err}");
    std::fs::write(&path, r#"[{"targets": ["127.0.0.1:1"]}]"#).unwrap();
    assert!(discoverer.file_changed());
    assert_eq!(discoverer.discover().await.unwrap().len(), 1);
    assert!(!discoverer.file_changed());
    std::fs::write(&path, r#"[{"targets": ["127.0.0.1:1", "127.0.0.1:2"]}]"#).unwrap();
    assert!(discoverer.file_changed(), "a longer file is a change even within the same second");
    assert_eq!(discoverer.discover().await.unwrap().len(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sources_parse_from_the_command_line_and_print_back_alike() {
    for (text, shown) in [
        (
            "dns:capwatch-replicas.default.svc.cluster.local:8000",
            "dns:capwatch-replicas.default.svc.cluster.local:8000",
        ),
        ("dns:replicas", "dns:replicas:8000"),
        ("file:logs/targets.yaml", "file:logs/targets.yaml"),
        ("http://127.0.0.1:9/sd", "http://127.0.0.1:9/sd"),
    ] {
        let source: DiscoverySource = text.parse().unwrap();
        assert_eq!(source.to_string(), shown);
    }
    for bad in ["dns:", "dns:name:0", "dns:name:http", "file:", "consul:x", "dns:a b"] {
        let err = bad.parse::<DiscoverySource>().unwrap_err();
        assert!(err.contains(bad.split(':').next().unwrap_or(bad)), "{bad}: {err}");
    }
}
