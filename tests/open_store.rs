//! Opens the saga store at the path given and prints the error, if any: the bad-file tests run
//! it as an unprivileged user, for whom a read-only file really is read-only.

fn main() {
    let path = std::env::args().nth(1).expect("a path");
    match saga_runtime::store::SqliteStore::open(&path) {
        Ok(_) => println!("opened"),
        Err(error) => {
            println!("{error}");
            std::process::exit(3);
        }
    }
}
