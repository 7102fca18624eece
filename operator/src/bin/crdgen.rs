//! Prints the ThroughputService CRD, or writes it to the path given as the only argument.

fn main() -> std::io::Result<()> {
    let yaml = tps_operator::resource::crd_yaml();
    match std::env::args().nth(1) {
        Some(path) => std::fs::write(path, yaml),
        None => {
            print!("{yaml}");
            Ok(())
        }
    }
}
