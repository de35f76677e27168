#![allow(clippy::unwrap_used)]
use super::*;

fn try_serve(args: &[&str]) -> Result<ServeArgs, String> {
    let mut argv = vec!["capwatch", "serve", "--config", "/nonexistent/config.yaml"];
    argv.extend_from_slice(args);
    match Cli::try_parse_from(argv).map_err(|e| e.to_string())?.command {
        Some(Command::Serve(serve)) => Ok(serve),
        _ => unreachable!("a serve command"),
    }
}

fn serve(args: &[&str]) -> ServeArgs {
    try_serve(args).unwrap()
}

/// The shipped config (tests run in the crate's directory) under the flags; a flag that does
/// not parse, or a config it makes that does not check, is an error.
fn resolve(args: &[&str]) -> Result<Config, String> {
    let flags = ServeArgs { config: PathBuf::from(DEFAULT_CONFIG_PATH), ..try_serve(args)? };
    flags.resolve_config().map_err(|e| e.to_string())
}

#[test]
fn variants_split_and_shadow_come_from_flags_and_survive_the_child_config() {
    let config =
        resolve(&["--model", "a=models/default", "--model", "b=/tmp/b", "--split", "a=90,b=10", "--shadow", "b=25"])
            .unwrap();
    let variants = config.service.variants().unwrap();
    let summary: Vec<(String, u32)> = variants.iter().map(|v| (v.name.clone(), v.weight)).collect();
    assert_eq!(summary, [("a".to_owned(), 90), ("b".to_owned(), 10)]);
    let shadow = config.service.shadow.as_ref().unwrap();
    assert_eq!((shadow.model.as_str(), shadow.share.0), ("b", 0.25));

    // What the dashboard hands its child (the serialised config, no flags) is the same service.
    let again = serve(&[]).apply_to(Config::parse(&config.to_text().unwrap(), Path::new("child")).unwrap()).unwrap();
    assert_eq!(again.service.variants().unwrap(), variants);
    assert_eq!(again.service.shadow, config.service.shadow);

    let single = resolve(&["--model", "models/default"]).unwrap();
    assert!(single.service.models.is_empty());
    assert_eq!(single.service.variants().unwrap()[0].name, "default");
}

#[test]
fn thread_flags_override_the_config_and_reach_the_child() {
    let config = resolve(&["--workers", "3", "--intra-op-threads", "2"]).unwrap();
    let threads = |c: &Config| (c.service.workers.map(|n| n.get()), c.service.intra_op_threads.map(|n| n.get()));
    assert_eq!(threads(&config), (Some(3), Some(2)));
    let child = Config::parse(&config.to_text().unwrap(), Path::new("child")).unwrap();
    assert_eq!(threads(&child), (Some(3), Some(2)));
}

#[test]
fn bad_variant_flags_name_the_flag() {
    let errors = [
        (&["--model", "a=x", "--model", "y"][..], "--model"),
        (&["--model", "a=x", "--model", "b=y", "--split", "c=1"][..], "--split"),
        (&["--model", "a=x", "--model", "b=y", "--split", "a=ten"][..], "--split"),
        (&["--model", "a=x", "--model", "b=y", "--shadow", "b=150"][..], "--shadow"),
        (&["--model", "a=x", "--model", "b=y", "--shadow", "c"][..], "service.shadow.model"),
        (&["--model", "a=x", "--model", "a=y"][..], "two models are named `a`"),
        (&["--model", "a=x", "--model", "b=y", "--split", "a=0,b=0"][..], "every weight is 0"),
    ];
    for (args, expected) in errors {
        let error = resolve(args).unwrap_err();
        assert!(error.contains(expected), "{args:?}: {error}");
    }
}
