//! The checked-in `schema.graphql` is the contract: it must equal what the code serves.

#[test]
fn checked_in_schema_matches_the_code() {
    let checked_in =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"))
            .expect("schema.graphql at the repository root");
    let current = favicon_finder::api::graphql::sdl();
    assert!(
        checked_in == current,
        "schema.graphql is out of date: run `cargo run -- schema > schema.graphql`"
    );
}

#[test]
fn schema_command_prints_the_same_sdl() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_favicon-finder"))
        .arg("schema")
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        favicon_finder::api::graphql::sdl()
    );
}
